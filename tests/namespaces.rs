//! Network namespaces no process is in, found where the kernel keeps them
//! reachable, each listed once with the right owners: one made by `ip netns
//! add` whose sockets a process made there through `setns` before going
//! back (with its mount, and with only those sockets left to hold it); one
//! held only by an open fd; one only a thread is in. And, with a
//! fake proc tree, a bind mount that is gone by the time it is entered:
//! skipped and counted, never an error.

use std::io::{BufRead, BufReader};
use std::ops::ControlFlow;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};

use common::fake::FakeRoot;
use common::netns::IpNetns;
use procspy::{OwnerScan, Protocols, Query, Source, StateMask, Stats, Walker};

const NSHOLDER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/nsholder.py");

/// One real-namespace test at a time: each pass lists every namespace of
/// the host, and another test's namespaces coming and going (a mount
/// removed, a holder ended) would be what that pass sees of them.
static SERIAL: Mutex<()> = Mutex::new(());

/// nsholder.py: (fd, inode) of its sockets, the extra line ("nsfd"/"tid") if any.
struct NsHolder {
    child: Child,
    pid: i32,
    socks: Vec<(i32, u64)>,
    extra: Option<i64>,
}

impl NsHolder {
    fn start(mode: &str, nsfile: &str) -> NsHolder {
        let mut child = Command::new("python3")
            .args([NSHOLDER, mode, nsfile])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let (mut socks, mut extra) = (Vec::new(), None);
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            let f: Vec<&str> = line.split(' ').collect();
            match f[0] {
                "ready" => break,
                "nsfd" | "tid" => extra = Some(f[1].parse().unwrap()),
                _ => socks.push((f[0].parse().unwrap(), f[1].parse().unwrap())),
            }
        }
        assert_eq!(socks.len(), if mode == "unix" { 1 } else { 4 }, "nsholder {mode} did not get ready");
        NsHolder { child, pid, socks, extra }
    }
}

impl Drop for NsHolder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A line: its inode and its owner's (pid, fd).
type Line = (u64, Option<(i32, i32)>);

/// Every line of namespace `netns`, and the stats.
fn lines_of(w: &Walker, netns: u64, query: &Query<'_>) -> (Vec<Line>, Stats) {
    let mut stats = Stats::default();
    let mut got = Vec::new();
    w.query(None, query, Protocols::BOTH, StateMask::ALL, &mut stats, &mut |c| {
        if c.netns == netns {
            got.push((c.conn.inode, c.owner.map(|o| (o.pid, o.fd))));
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    got.sort();
    (got, stats)
}

/// What the holder's sockets should give: each its line, owned by it.
fn expected(h: &NsHolder) -> Vec<Line> {
    let mut want: Vec<_> = h.socks.iter().map(|&(fd, inode)| (inode, Some((h.pid, fd)))).collect();
    want.sort();
    want
}

/// Every owner scan and source this kernel should run, and whether that
/// combination can read the namespace at all (`text`: only where a thread
/// is in it).
fn check_listed(h: &NsHolder, netns: u64, text_reaches: bool, why: &str) {
    for scan in [OwnerScan::Proc, OwnerScan::Auto] {
        for source in [Source::Auto, Source::Netlink, Source::Text] {
            let w = Walker::new(None).unwrap();
            w.set_owner_scan(scan);
            w.set_source(source);
            let (got, stats) = lines_of(&w, netns, &Query::default());
            if source == Source::Text && !text_reaches {
                assert!(got.is_empty(), "{why} {scan:?}/{source:?}: {got:?}");
                assert!(stats.netns_unreachable >= 1, "{why} {scan:?}/{source:?}: not counted: {stats:?}");
                continue;
            }
            assert_eq!(got, expected(h), "{why}, owners {scan:?}, source {source:?}: {stats:?}");
            assert!(stats.netns_found >= 1, "{stats:?}");
            // Without the search, only namespaces a process is in are listed.
            let before = Query { process_namespaces_only: true, ..Query::default() };
            assert!(lines_of(&w, netns, &before).0.is_empty(), "{why}: listed without looking");
        }
    }
}

/// A holder of `mode` (nsholder.py) whose sockets live in a new `ip netns`
/// namespace, which then loses its name where `delete` says; the lock
/// first, which keeps the other real-namespace tests out until it is dropped.
fn holder_in_new_netns(mode: &str, delete: bool) -> (MutexGuard<'static, ()>, IpNetns, NsHolder) {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ns = IpNetns::add(mode);
    let h = NsHolder::start(mode, &ns.path());
    if delete {
        ns.delete();
    }
    (serial, ns, h)
}

/// `holder_in_new_netns(mode, delete)`; `path` is the proc file that
/// should then lead to the namespace (`{pid}` and `{extra}` filled in), if
/// any; then the namespace is listed as `check_listed` says.
fn listed_through(mode: &str, delete: bool, path: Option<&str>, text_reaches: bool, why: &str) {
    let (_serial, ns, h) = holder_in_new_netns(mode, delete);
    match path {
        Some(p) => {
            let extra = h.extra.unwrap_or_else(|| panic!("{why}: the holder's {mode} id"));
            let p = p.replace("{pid}", &h.pid.to_string()).replace("{extra}", &extra.to_string());
            assert_eq!(std::fs::metadata(p).unwrap().ino(), ns.inode, "{why}");
        }
        None => assert_ne!(std::fs::metadata(format!("/proc/{}/ns/net", h.pid)).unwrap().ino(), ns.inode),
    }
    check_listed(&h, ns.inode, text_reaches, why);
}

#[test]
fn ip_netns_namespace_with_sockets_made_through_setns() {
    listed_through("setns", false, None, false, "ip netns + setns and back");
}

#[test]
fn namespace_held_only_by_sockets_of_a_process_not_in_it() {
    let (_serial, ns, h) = holder_in_new_netns("setns", true);
    // No mount, no fd, no thread: only the sockets keep it; each is asked where it lives.
    check_listed(&h, ns.inode, false, "held by its sockets");
}

/// Copies, in this process, of `pid`'s fds `fds` (`pidfd_getfd`); `None`
/// where this kernel or this caller can't take them.
fn copies_of(pid: i32, fds: impl Iterator<Item = i32>) -> Option<Vec<OwnedFd>> {
    // SAFETY: plain system calls; each fd returned is new and ours alone.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        return None;
    }
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    fds.map(|fd| {
        let copy = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
        (copy >= 0).then(|| unsafe { OwnedFd::from_raw_fd(copy as i32) })
    })
    .collect()
}

/// The 5.10 miss: a namespace held only by sockets, each also held for a
/// while by a process of a lower pid (this one: as the copies the library
/// itself took and has not closed yet were, or as a parent's are that
/// forked a child to serve a connection and closes its own). The `PID/fd`
/// index names the lowest holder of each socket; those copies are closed
/// while the first round is delivered, before the sockets are asked where
/// they live. Each is then asked through a holder that still has it: the
/// namespace is listed, not missed with nothing counted.
#[test]
fn a_socket_whose_lowest_holder_lets_go_mid_pass_still_leads_to_its_namespace() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ns = IpNetns::add("letgo");
    let h = NsHolder::start("setns", &ns.path());
    ns.delete();
    assert!((std::process::id() as i32) < h.pid, "the holder's pid is not above this process's");
    // A line of this process's namespace: the first round delivers it.
    let _mine = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut want: Vec<u64> = h.socks.iter().map(|s| s.1).collect();
    want.sort();
    for scan in [OwnerScan::Proc, OwnerScan::Auto] {
        let Some(copies) = copies_of(h.pid, h.socks.iter().map(|s| s.0)) else {
            eprintln!("no pidfd_getfd here: nothing to test");
            return;
        };
        let mut copies = Some(copies);
        let w = Walker::new(None).unwrap();
        w.set_owner_scan(scan);
        let mut stats = Stats::default();
        let mut got = Vec::new();
        w.query(None, &Query::default(), Protocols::BOTH, StateMask::ALL, &mut stats, &mut |c| {
            copies = None;
            if c.netns == ns.inode {
                got.push(c.conn.inode);
            }
            ControlFlow::Continue(())
        })
        .unwrap();
        assert!(copies.is_none(), "owners {scan:?}: nothing was delivered");
        got.sort();
        assert_eq!(got, want, "owners {scan:?}: {stats:?}");
    }
}

/// A namespace held only by a unix socket of a process not in it: no TCP
/// or UDP socket of it is held (its one line is a TIME_WAIT), and the BPF
/// scan, which lists a unix socket only where it lives in a namespace other
/// than its holder's, still leads there, as `PID/fd` does.
#[test]
fn namespace_held_only_by_a_unix_socket_of_a_process_not_in_it() {
    let (_serial, ns, h) = holder_in_new_netns("unix", true);
    for scan in [OwnerScan::Proc, OwnerScan::Auto] {
        for source in [Source::Auto, Source::Netlink] {
            let w = Walker::new(None).unwrap();
            w.set_owner_scan(scan);
            w.set_source(source);
            // Again on the same walker: where the BPF scan asks only TCP and
            // UDP sockets where they live, the last pass's answer for the
            // namespaces nothing else leads to is used while it holds.
            for pass in 0..3 {
                let (got, stats) = lines_of(&w, ns.inode, &Query::default());
                assert_eq!(
                    got,
                    [(0, None)],
                    "the TIME_WAIT, owners {scan:?}, source {source:?}, pass {pass}: {stats:?}"
                );
                assert!(stats.netns_found >= 1, "{stats:?}");
            }
        }
    }
    drop(h);
}

#[test]
fn namespace_held_only_by_an_open_fd() {
    // Opened by its path, the fd's link names no namespace: the file itself does.
    listed_through("fd", true, Some("/proc/{pid}/fd/{extra}"), false, "held by an fd");
}

#[test]
fn namespace_only_a_thread_is_in() {
    listed_through("thread", true, Some("/proc/{pid}/task/{extra}/ns/net"), true, "a thread's");
}

/// A fake tree whose process's mountinfo names nsfs mounts that are gone
/// (nothing there, or the empty file a removed bind mount leaves): each is
/// skipped and counted, and the pass succeeds.
#[test]
fn a_bind_mount_gone_before_it_is_entered_is_skipped_and_counted() {
    let f = FakeRoot::new("nsmount");
    let me = std::process::id() as i32;
    f.pid(7, me, &[], b"seven");
    f.link("7/ns/mnt", "mnt:[4026531841]");
    f.dir("7/root/run/netns");
    f.file("7/root/run/netns/left", b"");
    f.file(
        "7/mountinfo",
        b"540 25 0:4 net:[4026599001] /run/netns/gone rw shared:5 - nsfs nsfs rw\n\
          541 25 0:4 net:[4026599002] /run/netns/left rw shared:5 - nsfs nsfs rw\n\
          542 25 0:4 net:[4026599003] /../../etc/passwd rw - nsfs nsfs rw\n",
    );
    let w = Walker::new(Some(f.path.as_os_str().as_bytes())).unwrap();
    for source in [Source::Auto, Source::Netlink, Source::Text] {
        w.set_source(source);
        let mut stats = Stats::default();
        let mut got = 0;
        let r = w.connections(None, Protocols::BOTH, StateMask::ALL, &mut stats, &mut |c| {
            got += u64::from(c.netns > 4026599000);
            ControlFlow::Continue(())
        });
        assert_eq!(r, Ok(()), "{source:?}: {stats:?}");
        assert_eq!((got, stats.netns_found, stats.netns_unreachable), (0, 3, 3), "{source:?}: {stats:?}");
    }
}
