//! Running out of file descriptors, and running without privileges: a
//! clear status or counted skips, and a walker that works again after.
//! (Its own test binary: the fd limit is process-wide.)

use common::rec::{Rec, walk_all};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use procspy::{Error, Protocols, StateMask, Stats, Walker};

/// A walk that counts only: the host's tables may be any size.
fn walk(w: &Walker) -> (Result<(), Error>, Vec<Rec>, Stats) {
    let (r, recs, _, stats) = walk_all(w, 0);
    (r, recs, stats)
}

/// The lowest free fd number: a limit of it allows no new fd, of it + 1 one.
fn lowest_free_fd() -> u64 {
    let f = std::fs::File::open("/dev/null").unwrap();
    std::os::fd::AsRawFd::as_raw_fd(&f) as u64
}

/// The fd limit is process-wide: tests here run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn fd_limit_gives_a_clear_status_or_counted_skips_then_recovers() {
    let _serial = SERIAL.lock();
    let h = common::Holder::start(true, None);
    let w = Walker::new(None).unwrap();
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let free = lowest_free_fd();
    let limited = |limit: u64| {
        setrlimit(Resource::RLIMIT_NOFILE, limit, hard).unwrap();
        let r = walk(&w);
        setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
        r
    };
    // No fd at all: the proc root can't be listed.
    let (r, _, _) = limited(free);
    match r {
        Err(Error::Io { errno, ref path }) => assert_eq!((errno, path.as_str()), (libc::EMFILE, "/proc")),
        other => panic!("no fd for the proc root listing: {other:?}"),
    }
    // One fd: the listing and each fd directory open, but a socket holder's
    // stat can't be read beside its fd directory: skipped, counted.
    let (r, recs, stats) = limited(free + 1);
    assert_eq!(r, Ok(()), "out of fds per pid: skips, not an error");
    assert!(recs.is_empty(), "{recs:?}");
    assert!(stats.skipped >= 1 && stats.processes > stats.skipped, "{stats:?}");
    // The case, RLIMIT_NOFILE 8: whatever fits, the rest counted.
    let (r, _, stats) = limited(8);
    assert!(matches!(r, Ok(()) | Err(Error::Io { .. })), "{r:?} {stats:?}");
    // And the walker works again.
    let (r, recs, _) = walk(&w);
    assert_eq!(r, Ok(()));
    assert_eq!(recs.iter().filter(|r| r.pid == h.pid).count(), h.socks.len(), "works again");
}

const NOBODY: &[&str] =
    &["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"];

#[test]
fn unprivileged_walk_sees_its_own_and_counts_the_rest() {
    let _serial = SERIAL.lock();
    // Copies of what nobody runs.
    let copies = common::child::ForNobody::new("nobody");
    let exe = copies.copy(std::env::current_exe().unwrap(), "limits-test", 0o755);
    let script = copies.copy(common::HOLDER_SCRIPT, "holder.py", 0o644);
    let theirs = common::Holder::start(false, Some("root-holder"));
    let mine = common::Holder::start_script(NOBODY, Some("nobody-holder"), script.to_str().unwrap());
    let out = std::process::Command::new(NOBODY[0])
        .args(&NOBODY[1..])
        .arg(&exe)
        .args(["--exact", "unprivileged_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env("PROCSPY_TEST_MINE", mine.pid.to_string())
        .env("PROCSPY_TEST_THEIRS", theirs.pid.to_string())
        .env("PROCSPY_TEST_MINE_SOCKETS", mine.socks.len().to_string())
        .output()
        .unwrap();
    drop(copies);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("1 passed"), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
}

/// Runs as nobody, started by the test above.
#[test]
#[ignore = "run by unprivileged_walk_sees_its_own_and_counts_the_rest"]
fn unprivileged_child() {
    let var = |k: &str| std::env::var(k).unwrap().parse::<i32>().unwrap();
    assert_eq!(nix::unistd::geteuid().as_raw(), 65534);
    let w = Walker::new(None).unwrap();
    let (r, recs, stats) = walk(&w);
    println!("as nobody: {stats:?}");
    assert_eq!(r, Ok(()));
    assert_eq!(
        recs.iter().filter(|r| r.pid == var("PROCSPY_TEST_MINE")).count() as i32,
        var("PROCSPY_TEST_MINE_SOCKETS")
    );
    assert_eq!(recs.iter().filter(|r| r.pid == var("PROCSPY_TEST_THEIRS")).count(), 0);
    assert!(stats.skipped > 0 && stats.skipped < stats.processes, "{stats:?}");

    // Connections: no BPF without CAP_BPF, so owners come from PID/fd.
    let mut owners = Vec::new();
    let mut stats = Stats::default();
    let r = w.connections(None, Protocols::BOTH, StateMask::ALL, &mut stats, &mut |c| {
        owners.extend(c.owner.map(|o| o.pid));
        std::ops::ControlFlow::Continue(())
    });
    assert_eq!(r, Ok(()));
    assert_eq!(
        owners.iter().filter(|&&p| p == var("PROCSPY_TEST_MINE")).count() as i32,
        var("PROCSPY_TEST_MINE_SOCKETS")
    );
    assert!(!owners.contains(&var("PROCSPY_TEST_THEIRS")));
    w.set_owner_scan(procspy::engine::OwnerScan::Bpf);
    let r =
        w.connections(None, Protocols::BOTH, StateMask::ALL, &mut stats, &mut |_| std::ops::ControlFlow::Continue(()));
    if common::kernel_has_bpf_owner_scan() {
        assert!(matches!(r, Err(Error::Io { errno: libc::EPERM, .. })), "{r:?}");
    } else {
        assert!(matches!(r, Err(Error::Unsupported(_))), "{r:?}");
    }
}
