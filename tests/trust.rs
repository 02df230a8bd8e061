//! Trust nothing (issue 12): the caller's thread never changes namespace,
//! whatever the proc root says or the caller's rights are; no signal
//! handler of the host runs in a foreign namespace; no forged netlink reply
//! is believed; namespace files are checked before they are used. Real
//! processes in namespaces of their own (needs root), fake proc roots for
//! the hostile cases.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::Holder;
use common::child::{AS_NOBODY, ForNobody, Reaped, script, start_until_ready};
use common::fake::FakeRoot;
use common::proc::netns_of;
use procspy::engine::{OwnerScan, Protocols, Source};
use procspy::{Error, StateMask, Stats, Walker};

/// Signal handlers and namespaces are process-wide: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// One record: (netns, protocol, inode, local port).
type Rec = (u64, procspy::Protocol, u64, u16);

fn netlink_walker(root: Option<&FakeRoot>) -> Walker {
    use std::os::unix::ffi::OsStrExt;
    let w = Walker::new(root.map(|f| f.path.as_os_str().as_bytes())).unwrap();
    w.set_source(Source::Netlink);
    w.set_owner_scan(OwnerScan::Proc);
    w
}

fn connections(w: &Walker, mut each: impl FnMut(&Rec)) -> (Result<(), Error>, Vec<Rec>, Stats) {
    let mut stats = Stats::default();
    let mut recs = Vec::new();
    let r = w.connections(None, Protocols::BOTH, StateMask::ALL, &mut stats, &mut |c| {
        let rec = (c.netns, c.protocol, c.conn.inode, c.conn.local_port);
        each(&rec);
        recs.push(rec);
        ControlFlow::Continue(())
    });
    (r, recs, stats)
}

/// The network namespace of the calling thread.
fn thread_netns() -> u64 {
    netns_of("thread-self")
}

fn inodes_in(recs: &[Rec], netns: u64) -> BTreeSet<u64> {
    recs.iter().filter(|r| r.0 == netns).map(|r| r.2).collect()
}

fn held_inodes(h: &Holder) -> BTreeSet<u64> {
    h.socks.iter().map(|s| s.inode).collect()
}

/// A fake root whose pids lead to the holders' namespaces and sockets.
fn fake_of(tag: &str, holders: &[&Holder]) -> FakeRoot {
    let f = FakeRoot::new(tag);
    for (i, h) in holders.iter().enumerate() {
        let fds: Vec<(i32, i32)> = h.socks.iter().map(|s| (s.fd, s.fd)).collect();
        f.pid(10 * (i as i32 + 1), h.pid, &fds, b"holder");
    }
    f
}

/// Item 1: "home" came from the proc root's `thread-self`; a root whose
/// `thread-self` leads into a container sent the caller's thread there.
#[test]
fn a_proc_root_cannot_choose_where_the_callers_thread_goes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (container, other) = (Holder::start(true, None), Holder::start(true, None));
    let f = fake_of("thread-self", &[&container, &other]);
    f.link("thread-self", format!("/proc/{}", container.pid));
    let w = netlink_walker(Some(&f));
    let before = thread_netns();
    let (r, recs, _) = connections(&w, |_| {});
    assert_eq!(r, Ok(()));
    assert_eq!(thread_netns(), before, "the caller's thread changed namespace");
    // Each namespace's records are its own sockets, and all of them.
    for h in [&container, &other] {
        assert_eq!(inodes_in(&recs, h.netns), held_inodes(h), "netns {}", h.netns);
    }
}

/// Item 2: a caller in a user namespace may enter a namespace its user
/// namespace owns and then not be allowed back (EPERM); the code panicked
/// and left the thread there.
#[test]
fn a_caller_in_a_user_namespace_stays_home() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !common::user_namespaces_allowed(&[]) {
        return;
    }
    let out = Command::new("unshare")
        .args(["-U", "-r", "--"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "in_a_user_namespace", "--ignored", "--nocapture", "--test-threads=1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("1 passed"), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
}

/// Runs inside `unshare -U -r`, started by the test above.
#[test]
#[ignore = "run by a_caller_in_a_user_namespace_stays_home"]
fn in_a_user_namespace() {
    assert!(std::fs::read_to_string("/proc/self/uid_map").unwrap().split_whitespace().eq(["0", "0", "1"]));
    // Its namespace belongs to our user namespace: we may enter it, and
    // then may not enter the host's again.
    let h = Holder::start(true, None);
    let w = Walker::new(None).unwrap();
    w.set_owner_scan(OwnerScan::Proc);
    let before = thread_netns();
    for _ in 0..3 {
        let (r, recs, stats) = connections(&w, |_| {});
        assert_eq!(r, Ok(()), "{stats:?}");
        assert_eq!(thread_netns(), before, "the caller's thread changed namespace");
        assert_eq!(inodes_in(&recs, h.netns), held_inodes(&h));
    }
}

/// A process started as nobody in a user and network namespace of its
/// own, forging sock_diag replies; killed on drop.
struct Forger {
    _child: Reaped,
    netns: u64,
    inodes: BTreeSet<u64>,
}

impl Forger {
    fn start(port_id: u32) -> Forger {
        let copies = ForNobody::new("forger");
        let script = copies.copy(script("forger.py"), "forger.py", 0o644);
        let started = start_until_ready(
            Command::new(AS_NOBODY[0])
                .args(&AS_NOBODY[1..])
                .args(["unshare", "-U", "-r", "-n", "/usr/bin/python3"])
                .arg(&script)
                .arg(port_id.to_string()),
            "the forger",
        );
        let inodes: BTreeSet<u64> =
            started.lines.iter().map(|l| l.split(' ').nth(1).unwrap().parse().unwrap()).collect();
        drop(copies);
        assert_eq!(inodes.len(), 2, "the forger did not get ready");
        let pid = started.child.0.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(status.lines().any(|l| l.starts_with("Uid:") && l.contains("65534")), "{status}");
        Forger { _child: started.child, netns: netns_of(pid), inodes }
    }
}

/// Item 3: the diag socket was not connected and its replies not checked;
/// an unprivileged user with a namespace of its own could add sockets to
/// it and cut its dumps short.
#[test]
fn forged_replies_are_never_believed() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !common::user_namespaces_allowed(AS_NOBODY) {
        return;
    }
    let forger = Forger::start(std::process::id());
    let w = netlink_walker(None);
    let walks = std::env::var("PROCSPY_FORGER_WALKS").map_or(300, |v| v.parse().unwrap());
    let (mut forged, mut lost, mut failed, mut dropped) = (0, 0, 0, 0);
    for _ in 0..walks {
        let (r, recs, stats) = connections(&w, |_| {});
        if r.is_err() {
            println!("{r:?}");
            failed += 1;
        }
        let seen = inodes_in(&recs, forger.netns);
        forged += seen.difference(&forger.inodes).count();
        lost += forger.inodes.difference(&seen).count();
        dropped += stats.dropped;
    }
    println!("{walks} walks: {forged} forged records, {lost} lost, {failed} walks failed, {dropped} messages dropped");
    assert_eq!((forged, lost, failed), (0, 0, 0), "over {walks} walks");
}

static HOME_NETNS: AtomicU64 = AtomicU64::new(0);
static DELIVERED: AtomicU64 = AtomicU64::new(0);
static FOREIGN: AtomicU64 = AtomicU64::new(0);

/// Records which namespace it runs in (async-signal-safe: one stat).
extern "C" fn record_netns(_: i32) {
    let errno = nix::errno::Errno::last_raw();
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: a NUL-terminated path and a buffer for one struct stat.
    if unsafe { libc::stat(c"/proc/thread-self/ns/net".as_ptr(), st.as_mut_ptr()) } == 0 {
        // SAFETY: stat filled it.
        if unsafe { st.assume_init() }.st_ino != HOME_NETNS.load(Ordering::Relaxed) {
            FOREIGN.fetch_add(1, Ordering::Relaxed);
        }
    }
    DELIVERED.fetch_add(1, Ordering::Relaxed);
    nix::errno::Errno::set_raw(errno);
}

/// Item 4: signals were not blocked while the caller's thread was in
/// another namespace, so the host's handlers ran there.
#[test]
fn no_signal_handler_runs_in_a_foreign_namespace() {
    use nix::sys::pthread::{pthread_kill, pthread_self};
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, kill, sigaction};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _holders: Vec<Holder> = (0..4).map(|_| Holder::start(true, None)).collect();
    HOME_NETNS.store(thread_netns(), Ordering::Relaxed);
    let action = SigAction::new(SigHandler::Handler(record_netns), SaFlags::SA_RESTART, SigSet::empty());
    // SAFETY: the handler is async-signal-safe.
    let old = unsafe { sigaction(Signal::SIGUSR1, &action) }.unwrap();
    let w = netlink_walker(None);
    let done = AtomicBool::new(false);
    let walking = pthread_self();
    let walks = std::thread::scope(|s| {
        s.spawn(|| {
            // At the walking thread, and at the process (any thread that does not block it).
            for i in 0u64.. {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                if i % 8 == 0 {
                    kill(nix::unistd::getpid(), Signal::SIGUSR1).unwrap();
                } else {
                    pthread_kill(walking, Signal::SIGUSR1).unwrap();
                }
                std::thread::yield_now();
            }
        });
        let t0 = Instant::now();
        let mut walks = 0;
        // At least 4 s, and on a loaded machine until a thousand signals were handled (30 s at most).
        while t0.elapsed() < Duration::from_secs(4)
            || (DELIVERED.load(Ordering::Relaxed) <= 1000 && t0.elapsed() < Duration::from_secs(30))
        {
            let (r, _, stats) = connections(&w, |_| {});
            assert_eq!(r, Ok(()), "{stats:?}");
            walks += 1;
        }
        done.store(true, Ordering::Relaxed);
        walks
    });
    // SAFETY: restores what was there.
    unsafe { sigaction(Signal::SIGUSR1, &old) }.unwrap();
    let (delivered, foreign) = (DELIVERED.load(Ordering::Relaxed), FOREIGN.load(Ordering::Relaxed));
    println!("{walks} walks, {delivered} signals handled, {foreign} in a foreign namespace");
    assert!(delivered > 1000, "{delivered} signals handled");
    assert_eq!(foreign, 0, "of {delivered} signals handled");
}

/// Item 5: `PID/ns/net` was opened blocking: a FIFO there hung the walk,
/// and a stop did not end it.
#[test]
fn a_fifo_for_a_namespace_file_is_skipped_and_counted() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let h = Holder::start(true, None);
    let f = fake_of("fifo-ns", &[&h]);
    f.link("thread-self", "/proc/thread-self");
    f.file("11/stat", &common::fake::stat_line(11, b"fifo", 1));
    f.file("11/net/tcp", b"");
    f.dir("11/fd");
    f.dir("11/ns");
    let fifo = f.path.join("11/ns/net");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let w = std::sync::Arc::new(netlink_walker(Some(&f)));
    let (tx, rx) = std::sync::mpsc::channel();
    let w2 = w.clone();
    std::thread::spawn(move || {
        let _ = tx.send(connections(&w2, |_| {}));
    });
    let (r, recs, stats) = match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(done) => done,
        Err(_) => {
            w.stop();
            let stopped = rx.recv_timeout(Duration::from_secs(2)).is_ok();
            panic!("the walk hung on the FIFO; a stop {} it", if stopped { "ended" } else { "did not end" });
        }
    };
    assert_eq!(r, Ok(()));
    assert_eq!(inodes_in(&recs, h.netns), held_inodes(&h));
    // A FIFO is no namespace file: its pid is skipped as it is grouped,
    // before anything opens it.
    assert_eq!((stats.netns_mismatch, stats.skipped), (0, 1), "{stats:?}");
}

/// Item 7: the fd opened from `PID/ns/net` was never compared with the
/// namespace its pid was grouped by: a pid reused meanwhile gave another
/// namespace's sockets that namespace's inode.
#[test]
fn a_reused_pid_does_not_relabel_a_namespace() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (a, b, elsewhere) = (Holder::start(true, None), Holder::start(true, None), Holder::start(true, None));
    let f = fake_of("reused-pid", &[&a, &b]);
    f.link("thread-self", "/proc/thread-self");
    // Our own namespace is listed first (the initial one has the lowest
    // inode), before any other's file is opened: b's pid is "reused" then.
    let home = thread_netns();
    assert!(home < a.netns && home < b.netns, "run this test in the initial network namespace");
    f.pid(5, std::process::id() as i32, &[], b"us");
    let w = netlink_walker(Some(&f));
    let mut swapped = false;
    let (r, recs, stats) = connections(&w, |rec| {
        if rec.0 == home && !swapped {
            let link = f.path.join("20/ns/net");
            std::fs::remove_file(&link).unwrap();
            std::os::unix::fs::symlink(format!("/proc/{}/ns/net", elsewhere.pid), &link).unwrap();
            swapped = true;
        }
    });
    assert!(swapped);
    assert_eq!(r, Ok(()));
    assert_eq!(inodes_in(&recs, a.netns), held_inodes(&a));
    let relabelled: Vec<&Rec> = recs.iter().filter(|r| held_inodes(&elsewhere).contains(&r.2)).collect();
    assert!(relabelled.is_empty(), "another namespace's sockets as netns {}: {relabelled:?}", b.netns);
    assert_eq!(inodes_in(&recs, b.netns), BTreeSet::new(), "its only pid is gone");
    assert_eq!((stats.netns_mismatch, stats.skipped), (1, 1), "{stats:?}");
}
