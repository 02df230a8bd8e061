//! `Walker::query`: one process's sockets, one namespace's lines, the
//! tables without owners; each checked against a full pass or against the
//! kernel's own tables, and bad input refused with a clear error.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::ops::ControlFlow;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Holder;
use common::rec::{Line, query_lines};
use procspy::{Error, OwnerScan, Protocol, Protocols, Query, Source, StateMask, Stats, Walker};

fn all(w: &Walker) -> Vec<Line> {
    let (r, got, _) = query_lines(w, &Query::default());
    r.unwrap();
    got
}

/// Every owner scan and source.
fn walkers() -> Vec<(String, Walker)> {
    let mut v = Vec::new();
    for scan in [OwnerScan::Auto, OwnerScan::Proc] {
        for source in [Source::Auto, Source::Netlink, Source::Text] {
            let w = Walker::new(None).unwrap();
            w.set_owner_scan(scan);
            w.set_source(source);
            v.push((format!("{scan:?}/{source:?}"), w));
        }
    }
    v
}

#[test]
fn one_pid_gets_its_sockets_as_a_full_pass_lists_them() {
    let (a, b, c) = (Holder::start(true, Some("qa")), Holder::start(false, Some("qb")), Holder::start(true, None));
    for (how, w) in walkers() {
        let full = all(&w);
        for h in [&a, &b, &c] {
            let (r, got, stats) = query_lines(&w, &Query { pids: Some(&[h.pid]), ..Query::default() });
            assert_eq!(r, Ok(()), "{how}");
            let mine: Vec<Line> = full.iter().filter(|l| l.10.is_some_and(|o| o.0 == h.pid)).cloned().collect();
            assert_eq!(got, mine, "{how}: pid {} query vs full pass; {stats:?}", h.pid);
            assert_eq!(got.len(), h.socks.len(), "{how}");
            assert_eq!(stats.processes, 1, "{how}: only the one process is examined");
            // As root on a kernel with pidfd_getfd, the sockets tell their lines: no table is read.
            assert_eq!(stats.accounted, stats.namespaces, "{how}: a table was read: {stats:?}");
            assert_eq!(stats.bytes_needed, 0, "{how}: {stats:?}");
        }
        // Two pids: the union.
        let (r, got, _) = query_lines(&w, &Query { pids: Some(&[a.pid, c.pid]), ..Query::default() });
        assert_eq!(r, Ok(()), "{how}");
        let want: Vec<Line> =
            full.iter().filter(|l| l.10.is_some_and(|o| o.0 == a.pid || o.0 == c.pid)).cloned().collect();
        assert_eq!(got, want, "{how}");
    }
}

#[test]
fn every_line_and_namespace_queries_equal_the_full_pass_there() {
    let a = Holder::start_with_unheld();
    for (how, w) in walkers() {
        let full = all(&w);
        let ns_lines: Vec<Line> = full.iter().filter(|l| l.0 == a.netns).cloned().collect();
        assert!(ns_lines.iter().any(|l| l.10.is_none()), "{how}: the holder's namespace has unheld lines");
        let (r, got, _) = query_lines(&w, &Query { netns: Some(&[a.netns]), ..Query::default() });
        assert_eq!(r, Ok(()), "{how}");
        assert_eq!(got, ns_lines, "{how}: netns query");
        let (r, got, _) = query_lines(&w, &Query { pids: Some(&[a.pid]), every_line: true, ..Query::default() });
        assert_eq!(r, Ok(()), "{how}");
        assert_eq!(got, ns_lines, "{how}: pid query, every line");
        let (r, got, _) = query_lines(&w, &Query { pids: Some(&[a.pid]), netns: Some(&[a.netns]), ..Query::default() });
        assert_eq!(r, Ok(()), "{how}");
        assert_eq!(
            got,
            ns_lines.iter().filter(|l| l.10.is_some()).cloned().collect::<Vec<_>>(),
            "{how}: pid and netns"
        );
        // A namespace that is there but none of the pid's: nothing, and no error.
        let ours = [std::fs::metadata("/proc/self/ns/net").map(|m| std::os::unix::fs::MetadataExt::ino(&m)).unwrap()];
        let (r, got, _) = query_lines(&w, &Query { pids: Some(&[a.pid]), netns: Some(&ours), ..Query::default() });
        assert_eq!((r, got), (Ok(()), Vec::new()), "{how}: pid and another namespace");
    }
}

/// (inode, state, local address and port, remote address and port) of
/// every line of one table file, parsed here apart from the library.
fn kernel_lines(path: &str) -> Vec<(u64, u8, String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut v = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        v.push((f[9].parse().unwrap(), u8::from_str_radix(f[3], 16).unwrap(), f[1].to_string(), f[2].to_string()));
    }
    v
}

/// The same fields from a line delivered by the library, as the kernel's
/// text writes them (IPv4: one host-order word; IPv6: four).
fn as_kernel(l: &Line) -> (u64, u8, String, String) {
    let hex = |a: &[u8; 16], port: u16| {
        let words = if l.3 == 4 { 1 } else { 4 };
        let mut s = String::new();
        for w in a.chunks(4).take(words) {
            s.push_str(&format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]])));
        }
        format!("{s}:{port:04X}")
    };
    (l.2, l.4, hex(&l.5, l.6), hex(&l.7, l.8))
}

#[test]
fn no_owners_delivers_exactly_the_kernels_table_lines() {
    let a = Holder::start_with_unheld();
    for (how, w) in walkers() {
        let q = Query { netns: Some(&[a.netns]), no_owners: true, ..Query::default() };
        let (before, (r, got, stats), after) = loop {
            let read = || {
                let mut k = Vec::new();
                for t in ["tcp", "tcp6", "udp", "udp6"] {
                    k.extend(kernel_lines(&format!("/proc/{}/net/{t}", a.pid)));
                }
                k.sort();
                k
            };
            let before = read();
            let got = query_lines(&w, &q);
            let after = read();
            // A TIME_WAIT may end meanwhile: judge a pass the tables did not change around.
            if before == after {
                break (before, got, after);
            }
        };
        assert_eq!(r, Ok(()), "{how}");
        assert!(got.iter().all(|l| l.10.is_none()), "{how}: an owner without owners");
        assert_eq!(stats.fds, 0, "{how}: no fd read: {stats:?}");
        let mut mine: Vec<_> = got.iter().map(as_kernel).collect();
        mine.sort();
        assert_eq!(mine, before, "{how}: no-owners lines vs the kernel's tables");
        assert_eq!(before, after);
        // Over every namespace: every line a full pass lists, none owned.
        let (r, every, _) = query_lines(&w, &Query { no_owners: true, ..Query::default() });
        assert_eq!(r, Ok(()), "{how}");
        let strip = |v: &[Line]| -> BTreeSet<(u64, Protocol, u64)> {
            v.iter().filter(|l| l.0 == a.netns).map(|l| (l.0, l.1, l.2)).collect()
        };
        assert_eq!(strip(&every), strip(&all(&w)), "{how}: no-owners pass vs full pass, holder's namespace");
    }
}

#[test]
fn bad_input_is_refused_clearly_never_taken_as_all() {
    let w = Walker::new(None).unwrap();
    let mut child = Command::new("true").spawn().unwrap();
    let gone = child.id() as i32;
    child.wait().unwrap();
    let me = [std::process::id() as i32];
    let me_and_gone = [me[0], gone];
    let cases: Vec<(Query<'_>, String)> = vec![
        (Query { pids: Some(&[]), ..Query::default() }, "set of pids is empty".into()),
        (Query { netns: Some(&[]), ..Query::default() }, "set of namespaces is empty".into()),
        (Query { pids: Some(&[0]), ..Query::default() }, "positive".into()),
        (Query { pids: Some(&me_and_gone), ..Query::default() }, format!("pid {gone}: no such process")),
        (Query { netns: Some(&[1]), ..Query::default() }, "netns 1: no process".into()),
        (Query { every_line: true, ..Query::default() }, "every_line needs".into()),
        (Query { pids: Some(&me), netns: Some(&[1]), ..Query::default() }, "netns 1: no process".into()),
    ];
    for (q, msg) in cases {
        let mut delivered = 0;
        let r = w.query(None, &q, Protocols::BOTH, StateMask::ALL, &mut Stats::default(), &mut |_| {
            delivered += 1;
            ControlFlow::Continue(())
        });
        let e = r.expect_err(&msg);
        assert!(matches!(e, Error::Invalid(_) | Error::NotFound(_)), "{q:?}: {e:?}");
        assert!(e.to_string().contains(&msg), "{q:?}: {e}");
        assert_eq!(delivered, 0, "{q:?}: delivered before failing");
    }
}

/// A pid query while processes open and close sockets around it (and pids
/// are reused): only the asked process's sockets, each with it as owner.
#[test]
fn a_pid_query_under_churn_never_delivers_another_processs_socket() {
    let target = Holder::start(false, Some("target"));
    let mine: BTreeSet<u64> = target.socks.iter().map(|s| s.inode).collect();
    let secs: f64 = std::env::var("PROCSPY_CHURN_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let log = format!("{}/procspy-qchurn-{}.log", std::env::temp_dir().display(), std::process::id());
    std::fs::File::create(&log).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/churn.py");
    let max = ((secs * 5000.0) as u64 + 100).to_string();
    let mut churn = Command::new("python3")
        .args([script, &log, &secs.to_string(), &max, "8"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(churn.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let ws = walkers();
    let t0 = Instant::now();
    let mut passes = 0;
    while t0.elapsed() < Duration::from_secs_f64(secs) {
        for (how, w) in &ws {
            for q in [
                Query { pids: Some(&[target.pid]), ..Query::default() },
                Query { pids: Some(&[target.pid]), no_owners: true, ..Query::default() },
            ] {
                let (r, got, _) = query_lines(w, &q);
                assert_eq!(r, Ok(()), "{how}");
                for l in &got {
                    assert!(mine.contains(&l.2), "{how}: {q:?} delivered socket {} not the target's: {l:?}", l.2);
                    let owner = if q.no_owners { None } else { Some(target.pid) };
                    assert_eq!(l.10.map(|o| o.0), owner, "{how}: {l:?}");
                }
                assert_eq!(got.len(), mine.len(), "{how}: {q:?}");
                passes += 1;
            }
        }
    }
    assert!(churn.wait().unwrap().success());
    let _ = std::fs::remove_file(&log);
    assert!(passes > 0);
}
