//! Trust, round three, attack 1: a FUSE file swapped in for a socket fd.
//! An unprivileged user with a FUSE device it may open, in a user and mount
//! namespace of its own, flips fd numbers between its sockets and a file on
//! its own FUSE mount, whose server answers no one's FLUSH but its own.
//! Where the library took such a file for the socket its scan saw there,
//! the close of its copy waited for that FLUSH, uninterruptibly, and the
//! pass with it. Every way the library takes fds is run against it (the pid
//! query, the PID/fd owners, the default pass that enters a namespace found
//! through a socket, the changes call): each pass must end within its
//! bound, deliver what it can still get, and the library must recover once
//! the server is gone. And the same server below a namespace's nsfs mount,
//! which the library walks to (`an_nsfs_mount_below_a_fuse_mount_…`).
//! Needs root, FUSE and user namespaces.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::ops::ControlFlow;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::child::{AS_NOBODY, ForNobody, Reaped, python3, script};
use common::proc::netns_of;
use procspy::engine::{Change, ChangeKind};
use procspy::{Connection, Error, OwnerScan, Protocol, Protocols, Query, StateMask, Stats, Walker};

/// How long one pass may take while the server stalls: some 20 ms on an
/// idle host, seconds on one where other tests hold a thousand namespaces;
/// the rest is room for a slow guest. Without a closer of its own, the
/// first pass whose copy was the file never returns.
const PASS_BOUND: Duration = Duration::from_secs(10);

/// How long each path is run against the attacker at most.
const PATH_TIME: Duration = Duration::from_secs(4);

/// Passes each path runs at least, and passes whose takes were refused
/// (the closer stalled) after which it has seen enough.
const MIN_PASSES: usize = 5;
const REFUSED_PASSES: usize = 3;

/// How long the library has to see its closes return once the server is gone.
const RECOVERY: Duration = Duration::from_secs(3);

/// What the diagnostics say of the closer.
const STALLED: &str = "closes of other processes' fds (on the library's own thread): stalled";
const RETURNING: &str = "closes of other processes' fds (on the library's own thread): returning";

/// One delivered line: namespace, protocol, inode, local port, owner (pid, fd).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rec {
    netns: u64,
    protocol: Protocol,
    inode: u64,
    local_port: u16,
    owner: Option<(i32, i32)>,
}

impl Rec {
    fn of(c: &Connection<'_>) -> Rec {
        Rec {
            netns: c.netns,
            protocol: c.protocol,
            inode: c.conn.inode,
            local_port: c.conn.local_port,
            owner: c.owner.as_ref().map(|o| (o.pid, o.fd)),
        }
    }
}

/// Whether the kernel has FUSE (loaded, or loadable now).
fn kernel_has_fuse() -> bool {
    let has = || {
        std::path::Path::new("/sys/fs/fuse").exists()
            || std::fs::read_to_string("/proc/filesystems")
                .is_ok_and(|f| f.lines().any(|l| l.split_whitespace().last() == Some("fuse")))
    };
    if !has() {
        let _ = Command::new("modprobe").args(["-q", "fuse"]).stderr(Stdio::null()).status();
    }
    has() || {
        eprintln!("this kernel has no FUSE (no /sys/fs/fuse, no fuse in /proc/filesystems): nothing to test");
        false
    }
}

/// fuse_attacker.py, as nobody: the server (the test's child; killing it
/// aborts the FUSE connection, which releases every close waiting on it),
/// and the holder of the flipping fds, which dies with it.
struct Attacker {
    server: Option<Reaped>,
    /// The holder: alone in its network namespace.
    pid: i32,
    /// The namespace no process is in that the attack is about: B, where
    /// the holder's sockets live, or D, whose nsfs mount is below the FUSE
    /// mount.
    netns: u64,
    /// The holder's TCP listener's port, in B.
    port: Option<u16>,
    _copies: ForNobody,
}

impl Attacker {
    /// The attacker that flips fds, ready; `Err` where this host gives it
    /// no FUSE or no user namespace.
    fn start() -> Result<Attacker, String> {
        // A FUSE device node of the test's own, which the user nobody may
        // open (the host's /dev/fuse may be root's alone), on a tmpfs
        // mounted without nodev (the temporary directory may be on a nodev
        // mount, /dev/shm usually is) in a mount namespace made for the
        // attacker: the host's mounts are never touched, and the node and
        // its tmpfs go with the attacker. The mount point of the attacker's
        // FUSE filesystem is there too, owned by nobody.
        let run = format!(
            "chown 65534:65534 \"$1/mnt\" && exec {} {} \"$2\" \"$1/fuse\" \"$1/mnt\"",
            AS_NOBODY.join(" "),
            python3()
        );
        let (server, lines, copies) = Attacker::launch("fuse", &run)?;
        let (pid, netns, port) = (field(&lines, "pid ") as i32, field(&lines, "netns_b "), field(&lines, "listen "));
        Attacker::check(server, pid, netns, Some(port as u16), copies)
    }

    /// The attacker whose holder bind-mounts D below a FUSE mount that root
    /// may walk: mounted by root here, with `allow_other`, in the initial
    /// user namespace, on a device fd handed to the server (as fusermount
    /// does for any user where /etc/fuse.conf says `user_allow_other`).
    fn start_nsfs() -> Result<Attacker, String> {
        let run = format!(
            "exec 3<>\"$1/fuse\" && mount -i -t fuse -o \
             fd=3,rootmode=40000,user_id=65534,group_id=65534,allow_other procspy-fuse \"$1/mnt\" \
             && exec {} {} \"$2\" --mounted 3 \"$1/mnt\"",
            AS_NOBODY.join(" "),
            python3()
        );
        let (server, lines, copies) = Attacker::launch("fuse-nsfs", &run)?;
        let (pid, netns) = (field(&lines, "pid ") as i32, field(&lines, "netns_d "));
        Attacker::check(server, pid, netns, None, copies)
    }

    /// fuse_attacker.py as `run` starts it, from a shell of root's in a
    /// mount namespace of its own, with a tmpfs at `$1` holding a FUSE
    /// device node (`$1/fuse`) and a mount point (`$1/mnt`), and the script
    /// at `$2`; its lines until "ready".
    fn launch(tag: &str, run: &str) -> Result<(Reaped, Vec<String>, ForNobody), String> {
        let copies = ForNobody::new(tag);
        let attacker = copies.copy(script("fuse_attacker.py"), "fuse_attacker.py", 0o644);
        copies.copy(script("loopback.py"), "loopback.py", 0o644);
        let dev = copies.dir.join("dev");
        std::fs::create_dir(&dev).unwrap();
        let setup = format!(
            "mount -t tmpfs -o mode=0755,size=64k procspy-fuse \"$1\" && mknod -m 0666 \"$1/fuse\" c 10 229 \
             && mkdir -m 0755 \"$1/mnt\" && {run}"
        );
        let mut child = Reaped(
            Command::new("unshare")
                .args(["-m", "--propagation", "private", "--", "sh", "-c", &setup, "sh"])
                .arg(&dev)
                .arg(&attacker)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start fuse_attacker.py"),
        );
        // Its lines, read apart: a setup that hangs fails the test, after a while.
        let (tx, rx) = channel();
        let out = BufReader::new(child.0.stdout.take().unwrap());
        std::thread::spawn(move || out.lines().map_while(Result::ok).try_for_each(|l| tx.send(l)));
        let mut lines = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let line = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => line,
                Err(e) => panic!("fuse_attacker.py did not get ready ({e}): {lines:?}"),
            };
            if let Some(why) = line.strip_prefix("unsupported ") {
                return Err(why.to_string());
            }
            if line == "ready" {
                return Ok((child, lines, copies));
            }
            lines.push(line);
        }
    }

    /// The attacker, once its holder is seen to be nobody's and alone outside `netns`.
    fn check(server: Reaped, pid: i32, netns: u64, port: Option<u16>, copies: ForNobody) -> Result<Attacker, String> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(status.lines().any(|l| l.starts_with("Uid:") && l.contains("65534")), "{status}");
        assert_ne!(netns_of(pid), netns, "the holder is still in the namespace the attack is about");
        Ok(Attacker { server: Some(server), pid, netns, port, _copies: copies })
    }

    /// Kills the server: the FUSE connection is aborted, every close
    /// waiting on it returns, and the holder dies too. Waits (a little)
    /// for the holder to be gone.
    fn kill(&mut self) {
        let Some(server) = self.server.take() else { return };
        drop(server);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
                Ok(stat) if !stat.contains(") Z ") => std::thread::sleep(Duration::from_millis(10)),
                _ => return,
            }
        }
        eprintln!("the attacker's holder {} outlived its server by 5 s", self.pid);
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The number after `name` in the attacker's lines.
fn field(lines: &[String], name: &str) -> u64 {
    let line = lines.iter().find_map(|l| l.strip_prefix(name)).unwrap_or_else(|| panic!("{name}: {lines:?}"));
    line.trim().parse().unwrap()
}

/// The ways the library takes fds of other processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// A query for the holder's pid: each of its sockets is taken and asked.
    PidQuery,
    /// Connections with the PID/fd owners: sockets no line listed are taken
    /// and asked where they live, and namespace B is entered through one.
    ProcOwners,
    /// The default pass (the BPF owners where this kernel loads them): B
    /// is entered through one of the sockets recorded in it.
    Default,
    /// The changes call, on the default pass.
    Changes,
    /// A query for one namespace's lines (D's, found through its mount).
    NetnsQuery,
}

const PATHS: [Path; 4] = [Path::PidQuery, Path::ProcOwners, Path::Default, Path::Changes];

/// What one pass gave.
#[derive(Debug)]
struct PassOut {
    r: Result<(), Error>,
    recs: Vec<Rec>,
    changes: Vec<(ChangeKind, Rec)>,
    stats: Stats,
    took: Duration,
}

/// One pass of `path`; `of` is the pid a pid query asks for, the namespace
/// a namespace query asks for.
fn pass(w: &Walker, path: Path, of: u64) -> PassOut {
    let mut stats = Stats::default();
    let (mut recs, mut changes) = (Vec::new(), Vec::new());
    let mut each = |c: &Connection<'_>| {
        recs.push(Rec::of(c));
        ControlFlow::Continue(())
    };
    let t0 = Instant::now();
    let r = match path {
        Path::PidQuery => {
            let query = Query { pids: Some(&[of as i32]), ..Query::default() };
            w.query(None, &query, Protocols::BOTH, StateMask::ALL, &mut stats, &mut each)
        }
        Path::NetnsQuery => {
            let query = Query { netns: Some(&[of]), ..Query::default() };
            w.query(None, &query, Protocols::BOTH, StateMask::ALL, &mut stats, &mut each)
        }
        Path::ProcOwners | Path::Default => w.connections(None, Protocols::BOTH, StateMask::ALL, &mut stats, &mut each),
        Path::Changes => w.changes(None, Protocols::BOTH, StateMask::ALL, &mut stats, &mut |c: &Change<'_>| {
            changes.push((c.kind, Rec::of(&c.connection)));
            ControlFlow::Continue(())
        }),
    };
    PassOut { r, recs, changes, stats, took: t0.elapsed() }
}

/// A walker for one path, whose passes run on a thread of their own, so
/// that one that does not return fails the test instead of hanging it.
struct Runner {
    path: Path,
    walker: Arc<Walker>,
    /// Each pass asked for, with what a query asks for.
    ask: Option<Sender<u64>>,
    done: Receiver<PassOut>,
    thread: Option<JoinHandle<()>>,
}

impl Runner {
    fn new(path: Path) -> Runner {
        let walker = Arc::new(Walker::new(None).unwrap());
        if path == Path::ProcOwners {
            walker.set_owner_scan(OwnerScan::Proc);
        }
        let (ask, asked) = channel::<u64>();
        let (tx, done) = channel();
        let w = Arc::clone(&walker);
        let thread = std::thread::spawn(move || {
            for of in asked {
                if tx.send(pass(&w, path, of)).is_err() {
                    return;
                }
            }
        });
        Runner { path, walker, ask: Some(ask), done, thread: Some(thread) }
    }

    /// One pass (a query asks for `of`), which must return within
    /// `PASS_BOUND`. If it does not, the attacker is killed (which releases
    /// the library) and the test fails, saying which path hung.
    fn pass(&self, of: u64, attacker: &mut Attacker) -> PassOut {
        self.ask.as_ref().unwrap().send(of).unwrap();
        match self.done.recv_timeout(PASS_BOUND) {
            Ok(out) => out,
            Err(RecvTimeoutError::Timeout) => {
                let killed = Instant::now();
                attacker.kill();
                let after = match self.done.recv_timeout(Duration::from_secs(10)) {
                    Ok(out) => {
                        format!("it returned {:?} after the server was killed: {:?}", killed.elapsed(), out.stats)
                    }
                    Err(_) => "it did not return even once the server was killed".to_string(),
                };
                panic!(
                    "{:?}: a pass did not return within {PASS_BOUND:?} while the attacker's FUSE server stalled \
                     (the library waited for it: a close's FLUSH, a lookup); {after}",
                    self.path
                );
            }
            Err(RecvTimeoutError::Disconnected) => panic!("{:?}: the pass panicked", self.path),
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.ask.take();
        if let Some(t) = self.thread.take() {
            if !std::thread::panicking() {
                t.join().unwrap();
            }
        }
    }
}

/// The connections the changes calls so far told of, by (netns, inode).
fn apply(live: &mut BTreeMap<(u64, u64), Rec>, changes: &[(ChangeKind, Rec)]) {
    for &(kind, rec) in changes {
        match kind {
            ChangeKind::Appeared | ChangeKind::State | ChangeKind::Owner => {
                live.insert((rec.netns, rec.inode), rec);
            }
            ChangeKind::Disappeared => {
                live.remove(&(rec.netns, rec.inode));
            }
            ChangeKind::SeenClosed => {}
        }
    }
}

/// What a path's passes came to.
#[derive(Debug, Default)]
struct Tally {
    passes: usize,
    /// Passes after which the closer said it was stalled.
    stalled: usize,
    /// Passes some of whose takes were refused for it, and the takes refused.
    refused_passes: usize,
    refused: u64,
    /// Of the stalled passes, those that delivered the test's own listener
    /// with its owner: all, on the paths that list every namespace.
    delivered_while_stalled: usize,
    /// Passes that delivered the holder's listener in B.
    attacker_listener: usize,
    slowest: Duration,
}

/// What a pass delivered: its lines, or for the changes call every
/// connection the calls so far told of.
fn delivered(path: Path, out: &PassOut, live: &mut BTreeMap<(u64, u64), Rec>) -> Vec<Rec> {
    if path != Path::Changes {
        return out.recs.clone();
    }
    apply(live, &out.changes);
    live.values().copied().collect()
}

/// Passes of `runner`'s path against the attacker until the closer was
/// seen refusing takes for a while (or `PATH_TIME` passed); each must
/// return within its bound and deliver what the library can still get.
fn attack(runner: &Runner, attacker: &mut Attacker, mine: &Rec, live: &mut BTreeMap<(u64, u64), Rec>) -> Tally {
    let (path, holder) = (runner.path, attacker.pid);
    let mut t = Tally::default();
    let t0 = Instant::now();
    while t.passes < MIN_PASSES || (t.refused_passes < REFUSED_PASSES && t0.elapsed() < PATH_TIME) {
        let out = runner.pass(holder as u64, attacker);
        t.passes += 1;
        t.slowest = t.slowest.max(out.took);
        assert_eq!(out.r, Ok(()), "{path:?}, pass {}: {:?}", t.passes, out.stats);
        let stalled = runner.walker.diagnose().contains(STALLED);
        t.stalled += usize::from(stalled);
        t.refused += out.stats.closes_stalled;
        t.refused_passes += usize::from(out.stats.closes_stalled > 0);
        let recs = delivered(path, &out, live);
        let attackers =
            |r: &Rec| r.netns == attacker.netns && Some(r.local_port) == attacker.port && r.protocol == Protocol::Tcp;
        t.attacker_listener += usize::from(recs.iter().any(attackers));
        if path == Path::PidQuery {
            // Only the holder's sockets, each with it as owner.
            let others: Vec<&Rec> = recs.iter().filter(|r| r.owner.is_none_or(|o| o.0 != holder)).collect();
            assert!(others.is_empty(), "{path:?}, pass {}: not the holder's: {others:?}", t.passes);
        } else {
            let got = recs.iter().find(|r| (r.netns, r.inode) == (mine.netns, mine.inode));
            assert_eq!(got, Some(mine), "{path:?}, pass {} (stalled: {stalled}): {:?}", t.passes, out.stats);
            t.delivered_while_stalled += usize::from(stalled);
        }
    }
    t
}

/// Once the server is gone every close returns: the closer says so within
/// `RECOVERY`, and the next pass takes fds again (a pid query, the test's
/// own: the holder is gone) and refuses none.
fn recover(runner: &Runner, attacker: &mut Attacker, mine: &Rec, live: &mut BTreeMap<(u64, u64), Rec>) {
    let path = runner.path;
    let t0 = Instant::now();
    while runner.walker.diagnose().contains(STALLED) && t0.elapsed() < RECOVERY {
        std::thread::sleep(Duration::from_millis(10));
    }
    let diagnose = runner.walker.diagnose();
    assert!(
        diagnose.contains(RETURNING),
        "{path:?}: not recovered {:?} after the server was killed: {diagnose}",
        t0.elapsed()
    );
    let out = runner.pass(mine.owner.unwrap().0 as u64, attacker);
    assert_eq!(out.r, Ok(()), "{path:?}, after the server was killed");
    assert_eq!(out.stats.closes_stalled, 0, "{path:?}, after the server was killed: {:?}", out.stats);
    let diagnose = runner.walker.diagnose();
    assert!(diagnose.contains(RETURNING), "{path:?}, after the server was killed: {diagnose}");
    let recs = delivered(path, &out, live);
    let got = recs.iter().find(|r| (r.netns, r.inode) == (mine.netns, mine.inode));
    assert_eq!(got, Some(mine), "{path:?}, after the server was killed: {:?}", out.stats);
}

#[test]
fn a_fuse_file_swapped_in_for_a_socket_never_holds_a_pass() {
    if !kernel_has_fuse() || !common::user_namespaces_allowed(AS_NOBODY) {
        return;
    }
    let me = std::process::id() as i32;
    // The test's own listener, in the initial namespace: every pass that
    // lists it must deliver it with its owner, stalled or not.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let fd = listener.as_raw_fd();
    let mine = Rec {
        netns: netns_of("self"),
        protocol: Protocol::Tcp,
        inode: std::fs::metadata(format!("/proc/self/fd/{fd}")).unwrap().ino(),
        local_port: listener.local_addr().unwrap().port(),
        owner: Some((me, fd)),
    };
    let mut tallies = Vec::new();
    for path in PATHS {
        // An attacker for each path: the copies a stalled walker has not
        // closed yet are sockets this process holds, which the next walker
        // would take (the lowest pid's) instead of the holder's.
        let mut attacker = match Attacker::start() {
            Ok(a) => a,
            Err(why) if tallies.is_empty() => {
                eprintln!("the attacker can't run here ({why}): nothing to test");
                return;
            }
            Err(why) => panic!("{path:?}: the attacker did not start again: {why}"),
        };
        let runner = Runner::new(path);
        let mut live = BTreeMap::new();
        let t = attack(&runner, &mut attacker, &mine, &mut live);
        eprintln!("{path:?}: {t:?}");
        if t.stalled == 0 && t.refused == 0 {
            eprintln!(
                "!!! {path:?}: in {} passes no take found the FUSE file where a socket was: the attack was \
                 not hit on this path here, which proves nothing of it",
                t.passes
            );
        }
        if t.attacker_listener == 0 {
            // Legitimate where the closer stalled before B was ever entered
            // (other processes' sockets taken first fill its places).
            eprintln!("{path:?}: the holder's namespace, found only through its sockets, was never listed");
        }
        attacker.kill();
        recover(&runner, &mut attacker, &mine, &mut live);
        tallies.push((path, t));
    }
    assert!(
        tallies.iter().any(|(_, t)| t.stalled > 0 || t.refused > 0),
        "no path ever took the FUSE file for a socket: the attack was not hit at all: {tallies:?}"
    );
}

/// Trust, round three, what was left: a FUSE mount root may walk (made
/// with `allow_other` in the initial user namespace, as fusermount makes
/// one for any user where /etc/fuse.conf says `user_allow_other`), and
/// below it, in a user and mount namespace of its owner's own, the nsfs
/// mount of a network namespace D that no process is in. The library reads
/// that mount namespace's `mountinfo` (its holder is alone in a network
/// namespace) and walked to D's mount point to enter it, through the FUSE
/// mount, whose server never answers the library's LOOKUP: the pass waited
/// for ever. Every pass that looks for such namespaces must end within its
/// bound, D found and counted as unreachable.
#[test]
fn an_nsfs_mount_below_a_fuse_mount_never_holds_a_pass() {
    if !kernel_has_fuse() || !common::user_namespaces_allowed(AS_NOBODY) {
        return;
    }
    let mut attacker = match Attacker::start_nsfs() {
        Ok(a) => a,
        Err(why) => {
            eprintln!("the attacker can't run here ({why}): nothing to test");
            return;
        }
    };
    let d = attacker.netns;
    for path in [Path::Default, Path::ProcOwners, Path::Changes, Path::NetnsQuery] {
        let runner = Runner::new(path);
        for n in 1..=3 {
            let out = runner.pass(d, &mut attacker);
            assert_eq!(out.r, Ok(()), "{path:?}, pass {n}: {:?}", out.stats);
            let s = out.stats;
            assert!(s.netns_found >= 1 && s.netns_unreachable >= 1, "{path:?}, pass {n}: D not counted: {s:?}");
            eprintln!("{path:?}, pass {n}: {:?}", out.took);
        }
    }
}
