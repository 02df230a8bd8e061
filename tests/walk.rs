//! The engine against real /proc: real processes, real sockets, real
//! network namespaces (needs root, as CI has).

#![allow(clippy::type_complexity)] // tuples of record fields read best inline here

use std::collections::{HashMap, HashSet};
use std::mem::MaybeUninit;
use std::ops::ControlFlow;

use common::Holder;
use common::rec::{Rec, walk_all};
use procspy::engine::{OwnerScan, Protocols};
use procspy::{Error, Protocol, StateMask, Stats, TableBuf, TcpState, Walker};

/// A table line: (netns, protocol, line, owner's (pid, fd)).
type Line = (u64, Protocol, procspy::engine::Conn, Option<(i32, i32)>);

/// The lines of one connections call from `source`, in the namespaces
/// `keep` keeps, sorted by namespace, inode and ports; the call must succeed.
fn lines_from(w: &Walker, source: procspy::engine::Source, keep: impl Fn(u64) -> bool) -> (Vec<Line>, Stats) {
    w.set_source(source);
    let mut stats = Stats::default();
    let mut lines: Vec<Line> = Vec::new();
    let r = w.connections(None, Protocols::BOTH, StateMask::ALL, &mut stats, &mut |c| {
        if keep(c.netns) {
            lines.push((c.netns, c.protocol, c.conn, c.owner.map(|o| (o.pid, o.fd))));
        }
        ControlFlow::Continue(())
    });
    assert_eq!(r, Ok(()), "{source:?}");
    lines.sort_by_key(|l| (l.0, l.2.inode, l.2.local_port, l.2.remote_port));
    (lines, stats)
}

#[test]
fn walk_delivers_every_socket_of_every_namespace() {
    let hostile = "a) R 1 (x\ny";
    let holders = [
        Holder::start(true, None),
        Holder::start(true, Some(hostile)),
        Holder::start(true, None),
        Holder::start(false, Some("root-ns holder")),
    ];
    let w = Walker::new(None).unwrap();
    let (r, recs, text, stats) = walk_all(&w, 256 << 20);
    assert_eq!(r, Ok(()));
    assert_eq!(stats.sockets, recs.len() as u64);
    assert!(stats.namespaces >= 4, "{stats:?}");
    for h in &holders {
        let mine: Vec<&Rec> = recs.iter().filter(|r| r.pid == h.pid).collect();
        assert_eq!(mine.len(), h.socks.len(), "pid {} records {:?}", h.pid, mine);
        let name = std::fs::read(format!("/proc/{}/comm", h.pid)).unwrap();
        for s in &h.socks {
            let rec = mine.iter().find(|r| r.fd == s.fd).unwrap_or_else(|| panic!("fd {} of {}", s.fd, h.pid));
            assert_eq!(rec.inode, s.inode);
            assert_eq!(rec.netns, h.netns);
            assert_eq!(rec.start_time, h.start_time());
            assert_eq!(rec.name, name.strip_suffix(b"\n").unwrap());
        }
        // The namespace's tables are in the buffer: its listening ports are there.
        for s in h.socks.iter().filter(|s| s.state == 10) {
            let port = format!(":{:04X} ", s.local_port);
            assert!(text.windows(port.len()).any(|w| w == port.as_bytes()), "port {port}");
        }
    }
    assert_eq!(
        holders[1].socks.len(),
        recs.iter().filter(|r| r.name == hostile.as_bytes()[..hostile.len().min(15)]).count()
    );
    // Records of one namespace are contiguous.
    let mut seen = HashSet::new();
    for pair in recs.windows(2) {
        if pair[0].netns != pair[1].netns {
            assert!(seen.insert(pair[0].netns), "namespace {} split", pair[0].netns);
        }
    }
    assert!(!seen.contains(&recs.last().unwrap().netns));
}

#[test]
fn too_small_buffer_keeps_whole_files_and_every_socket() {
    let h = Holder::start(true, None);
    let w = Walker::new(None).unwrap();
    let (r, full, _, stats) = walk_all(&w, 0);
    assert_eq!(r, Ok(()), "cap 0 counts only");
    assert_eq!(stats.bytes_written, 0);
    assert!(stats.bytes_needed > 0);
    let (r, recs, text, stats) = walk_all(&w, 300);
    assert!(matches!(r, Err(Error::BufferTooSmall { .. })), "{r:?}");
    assert!(stats.bytes_needed > 300);
    assert_eq!(text.len() as u64, stats.bytes_written);
    assert!(text.is_empty() || text.ends_with(b"\n"));
    let mine = |v: &[Rec]| v.iter().filter(|r| r.pid == h.pid).count();
    assert_eq!(mine(&recs), h.socks.len());
    assert_eq!(mine(&full), h.socks.len());
}

#[test]
fn connections_join_every_table_line_to_its_owner() {
    let holders = [Holder::start(true, Some("conn-a")), Holder::start(true, Some("conn-b")), Holder::start(true, None)];
    let w = Walker::new(None).unwrap();
    let mut stats = Stats::default();
    let mut got: HashMap<(u64, u64), (Protocol, u8, u8, u16, u16, Option<(i32, i32)>)> = HashMap::new();
    let mut dup = Vec::new();
    let r = w.connections(None, Protocols::BOTH, StateMask::ALL, &mut stats, &mut |c| {
        let owner = c.owner.map(|o| (o.pid, o.fd));
        let v = (c.protocol, c.conn.family, c.conn.state, c.conn.local_port, c.conn.remote_port, owner);
        if got.insert((c.netns, c.conn.inode), v).is_some() && c.conn.inode != 0 {
            dup.push((c.netns, c.conn.inode));
        }
        ControlFlow::Continue(())
    });
    assert_eq!(r, Ok(()));
    assert!(dup.is_empty(), "delivered twice: {dup:?}");
    for h in &holders {
        for s in &h.socks {
            let v = got.get(&(h.netns, s.inode)).unwrap_or_else(|| panic!("{s:?} of {} missing", h.pid));
            assert_eq!(*v, (s.proto, s.family, s.state, s.local_port, s.remote_port, Some((h.pid, s.fd))), "{s:?}");
        }
        // Nothing else is listed in a namespace that only the holder uses.
        assert_eq!(got.keys().filter(|k| k.0 == h.netns).count(), h.socks.len());
    }

    // Filters: LISTEN only, TCP only.
    let mut listeners = Vec::new();
    let r = w.connections(None, Protocols::TCP, StateMask::LISTEN, &mut stats, &mut |c| {
        listeners.push((c.netns, c.conn.inode, c.conn.state, c.protocol));
        ControlFlow::Continue(())
    });
    assert_eq!(r, Ok(()));
    assert!(listeners.iter().all(|l| l.2 == TcpState::Listen.number() && l.3 == Protocol::Tcp));
    for h in &holders {
        assert_eq!(listeners.iter().filter(|l| l.0 == h.netns).count(), 2);
    }
}

#[test]
fn connections_skip_a_namespace_that_does_not_fit() {
    let _holders = [Holder::start(true, None), Holder::start(true, None)];
    let w = Walker::new(None).unwrap();
    // Only the text tables need the buffer.
    w.set_source(procspy::engine::Source::Text);
    let mut stats = Stats::default();
    let count = |cap: usize, stats: &mut Stats| {
        let mut mem = vec![MaybeUninit::new(0u8); cap];
        let mut out = TableBuf::new(&mut mem);
        let mut per_ns: HashMap<u64, usize> = HashMap::new();
        let r = w.connections(Some(&mut out), Protocols::BOTH, StateMask::ALL, stats, &mut |c| {
            *per_ns.entry(c.netns).or_default() += 1;
            ControlFlow::Continue(())
        });
        (r, per_ns)
    };
    let (r, small) = count(64, &mut stats);
    assert!(matches!(r, Err(Error::BufferTooSmall { .. })), "{r:?}");
    assert!(small.is_empty(), "a namespace whose tables don't fit delivers nothing: {small:?}");
    let needed = stats.bytes_needed as usize;
    let (r, fit) = count(needed + 4096, &mut stats);
    assert_eq!(r, Ok(()), "bytes_needed makes every namespace fit");
    assert!(fit.len() >= 3);
    assert!(stats.bytes_written <= stats.bytes_needed);
}

#[test]
fn stop_ends_a_paced_walk_at_once_and_for_good() {
    let _h = Holder::start(true, None);
    let w = std::sync::Arc::new(Walker::new(None).unwrap());
    w.set_rate_limit(0, std::time::Duration::from_secs(30));
    let w2 = w.clone();
    let t = std::thread::spawn(move || {
        let t0 = std::time::Instant::now();
        let (r, _, _, stats) = walk_all(&w2, 0);
        (r, stats, t0.elapsed())
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    let (r, _, _, _) = walk_all(&w, 0);
    assert_eq!(r, Err(Error::Busy), "a second walk on a busy walker");
    w.stop();
    let (r, stats, took) = t.join().unwrap();
    assert_eq!(r, Err(Error::Stopped));
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    assert_eq!(stats.ticks, 1);
    assert_eq!(walk_all(&w, 0).0, Err(Error::Stopped));
}

#[test]
fn netlink_and_text_give_the_same_records() {
    use procspy::engine::Source;
    let holders = [Holder::start(true, Some("nl-a")), Holder::start(true, None), Holder::start(true, None)];
    let ours: HashSet<u64> = holders.iter().map(|h| h.netns).collect();
    let w = Walker::new(None).unwrap();
    let collect = |source| lines_from(&w, source, |netns| ours.contains(&netns));
    let (text, text_stats) = collect(Source::Text);
    let (netlink, nl_stats) = collect(Source::Netlink);
    let (auto, auto_stats) = collect(Source::Auto);
    assert_eq!(text.len(), 30);
    assert_eq!(text, netlink, "record for record");
    // Auto: these namespaces hold only the holders' sockets, which the BPF
    // scan accounts for where the kernel runs it: no table is read for them.
    assert_eq!(text, auto);
    if common::kernel_has_bpf_owner_scan() {
        assert!(auto_stats.accounted >= 3, "{auto_stats:?}");
    } else {
        assert_eq!(auto_stats.accounted, 0, "{auto_stats:?}");
    }
    assert_eq!(text_stats.accounted + nl_stats.accounted, 0, "an explicit source reads the tables");
    assert!(text_stats.bytes_needed > 0);
    assert_eq!(nl_stats.bytes_needed, 0, "netlink reads no table text");
}

/// A line owned by one of ours: (netns, inode, protocol, owner's (pid, fd,
/// netns, start time, name)).
type Owned = (u64, u64, Protocol, (i32, i32, u64, u64, Vec<u8>));

/// The lines of one connections call with owner scan `scan` whose owner is
/// one of `ours`, sorted.
fn owned_lines(w: &Walker, scan: OwnerScan, ours: &HashSet<i32>) -> (Result<(), Error>, Vec<Owned>, Stats) {
    w.set_owner_scan(scan);
    let mut stats = Stats::default();
    let mut recs = Vec::new();
    let r = w.connections(None, Protocols::BOTH, StateMask::ALL, &mut stats, &mut |c| {
        if let Some(o) = c.owner.filter(|o| ours.contains(&o.pid)) {
            let owner = (o.pid, o.fd, o.netns, o.start_time, o.name.to_bytes().to_vec());
            recs.push((c.netns, c.conn.inode, c.protocol, owner));
        }
        ControlFlow::Continue(())
    });
    recs.sort();
    (r, recs, stats)
}

#[test]
fn bpf_and_proc_owner_scans_agree_record_for_record() {
    let holders = [
        Holder::start(true, Some("own ) R 1")),
        Holder::start(true, Some("bpf-b")),
        Holder::start(false, Some("root-ns")),
    ];
    let ours: HashSet<i32> = holders.iter().map(|h| h.pid).collect();
    let w = Walker::new(None).unwrap();
    let (r, proc, proc_stats) = owned_lines(&w, OwnerScan::Proc, &ours);
    assert_eq!(r, Ok(()));
    let (r, bpf, bpf_stats) = owned_lines(&w, OwnerScan::Bpf, &ours);
    let (auto_r, auto, _) = owned_lines(&w, OwnerScan::Auto, &ours);
    assert_eq!(auto_r, Ok(()));
    assert_eq!(proc.len(), 30);
    assert_eq!(proc, auto, "the default scan");
    if !common::assert_bpf_owner_scan_as_the_kernel_should(&r) {
        return;
    }
    for h in &holders {
        let name = std::fs::read(format!("/proc/{}/comm", h.pid)).unwrap();
        for s in &h.socks {
            let want = (h.pid, s.fd, h.netns, h.start_time(), name[..name.len() - 1].to_vec());
            assert!(bpf.iter().any(|r| r.0 == h.netns && r.1 == s.inode && r.3 == want), "{s:?} of {}", h.pid);
        }
    }
    assert_eq!(proc, bpf, "record for record");
    for st in [proc_stats, bpf_stats] {
        assert!(st.fds >= st.sockets && st.sockets >= 30 && st.namespaces >= 3, "{st:?}");
    }
    // One pass over the iterator: a tick, not one per namespace.
    assert_eq!(bpf_stats.ticks, 1);
    assert!(proc_stats.ticks >= 3);
}

/// The BPF scan lists only the socket fds a pass can use and counts the
/// others in the kernel: a holder of 2,000 unix sockets (in its own
/// namespace) gets the same lines and owners as with `PID/fd`, and its
/// unix sockets count among the sockets found by both.
#[test]
fn a_holder_of_many_unix_sockets_gets_the_same_owners_from_both_scans() {
    const UNIX: u64 = 2000;
    let h = Holder::start_with_unix(UNIX as usize);
    let ours = HashSet::from([h.pid]);
    let w = Walker::new(None).unwrap();
    let (r, proc, proc_stats) = owned_lines(&w, OwnerScan::Proc, &ours);
    assert_eq!(r, Ok(()));
    assert_eq!(proc.len(), 10);
    let (r, bpf, bpf_stats) = owned_lines(&w, OwnerScan::Bpf, &ours);
    if !common::assert_bpf_owner_scan_as_the_kernel_should(&r) {
        return;
    }
    assert_eq!(proc, bpf, "record for record");
    // Other tests' holders come and go between the two passes, by far fewer.
    assert!(proc_stats.sockets.abs_diff(bpf_stats.sockets) < UNIX / 2, "{proc_stats:?} {bpf_stats:?}");
    for st in [proc_stats, bpf_stats] {
        assert!(st.fds >= st.sockets && st.sockets >= UNIX + 10, "{st:?}");
    }
}

#[test]
fn a_namespace_with_sockets_no_process_holds_is_read_from_its_tables() {
    use procspy::engine::Source;
    let h = Holder::start_with_unheld();
    let w = Walker::new(None).unwrap();
    let collect = |source| lines_from(&w, source, |netns| netns == h.netns);
    let (auto, auto_stats) = collect(Source::Auto);
    let (netlink, _) = collect(Source::Netlink);
    assert_eq!(auto, netlink, "record for record");
    // Held: the 10 reported, the unaccepted one's listener and client. Not
    // held: the TIME_WAIT and the connection waiting in the accept queue.
    assert_eq!(auto.len(), 14, "{auto:?}");
    // Neither has an inode or an owner; only the tables list them, so their
    // presence shows the namespace was read from its tables.
    assert_eq!(auto.iter().filter(|r| r.2.state == 6 && r.2.inode == 0 && r.3.is_none()).count(), 1, "TIME_WAIT");
    assert_eq!(auto.iter().filter(|r| r.2.state == 1 && r.2.inode == 0 && r.3.is_none()).count(), 1, "not accepted");
    for s in &h.socks {
        assert!(auto.iter().any(|r| r.2.inode == s.inode && r.3 == Some((h.pid, s.fd))), "{s:?}");
    }
    assert!(auto_stats.accounted < auto_stats.namespaces, "{auto_stats:?}");
}

#[test]
fn bpf_owner_scan_is_refused_for_a_proc_root_not_the_hosts() {
    let dir = std::env::temp_dir().join(format!("procspy-notproc-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("1/fd")).unwrap();
    let w = Walker::new(Some(dir.as_os_str().as_encoded_bytes())).unwrap();
    w.set_owner_scan(OwnerScan::Bpf);
    let mut stats = Stats::default();
    let r = w.connections(None, Protocols::BOTH, StateMask::ALL, &mut stats, &mut |_| ControlFlow::Continue(()));
    std::fs::remove_dir_all(&dir).unwrap();
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("BPF owner scan") && msg.contains("host's own procfs"), "{msg}");
}

#[test]
fn tables_end_without_a_final_empty_read_and_lose_nothing() {
    // Long tables: many 4 KiB seq_file reads, the last one short.
    let h = Holder::start_big(300);
    let w = Walker::new(None).unwrap();
    let mut want = std::fs::read(format!("/proc/{}/net/tcp", h.pid)).unwrap();
    want.extend(std::fs::read(format!("/proc/{}/net/tcp6", h.pid)).unwrap());
    assert!(want.len() > 40_000, "{}", want.len());
    for cap in [want.len(), want.len() + 1, 1 << 20] {
        let mut mem = vec![MaybeUninit::new(0u8); cap];
        let mut out = TableBuf::new(&mut mem);
        assert_eq!(w.read_tcp(h.pid, &mut out), Ok(want.len() as u64));
        assert_eq!(out.filled(), &want[..], "cap {cap}");
    }
}
