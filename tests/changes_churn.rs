//! The changes call under churn, judged against the kernel's own tables
//! (needs root, as CI has). While tests/common/churn.py forks short-lived
//! processes that open and close loopback sockets (some in fresh network
//! namespaces), one walker makes changes calls, switching its source and
//! owner scan between them and aborting some. Around each call the test
//! reads every namespace's `/proc/PID/net/{tcp,udp}{,6}` itself: the truth
//! before and after. The events of each call that returned OK are applied
//! to a mirror, strictly (nothing appears twice, nothing disappears or
//! changes that the mirror lacks, old states and owners are what the mirror
//! holds); then:
//!
//! - every event is real: what appeared was in the kernel's tables around
//!   this call (or was a churn socket, born and gone within it), and was not
//!   there throughout the last committed call; what disappeared was not
//!   there throughout this call;
//! - nothing is missed: a connection in the tables before and after a call,
//!   in the same state, is in the mirror in that state; one the tables
//!   listed earlier and list neither before nor after is not;
//! - the stable holders' sockets are in the mirror with their owners.
//!
//! The churn runs for PROCSPY_CHURN_SECS (default 3) and, on a host whose
//! tables take long to read, on until five calls have committed and one
//! was aborted, for 90 seconds at most.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::ops::ControlFlow;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Holder;
use common::child::{python3, script, start_until_ready};
use procspy::engine::{Change, ChangeKind, OwnerScan, Protocols, Source};
use procspy::{Error, Protocol, StateMask, Stats, TcpState, Walker};

const TIME_WAIT: u8 = 6;
const MAX_FAILURES: usize = 40;

/// A line's (family, local address and port, remote address and port, state).
type Tuple = (u8, [u8; 16], u16, [u8; 16], u16, u8);

/// A connection's identity, as the mirror and the truth key it: the inode
/// in its namespace's table, or for a line without one its tuple and state
/// (one tuple may be listed in several states).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    netns: u64,
    protocol: Protocol,
    inode: u64,
    tuple: Option<Tuple>,
}

impl Key {
    /// A table line's key: `tuple` is the line's (family, addresses, ports, state).
    fn new(netns: u64, protocol: Protocol, inode: u64, tuple: Tuple) -> Key {
        Key { netns, protocol, inode, tuple: (inode == 0).then_some(tuple) }
    }

    /// A line without an inode that is not TIME_WAIT (an orphan closing, a
    /// request) lives for microseconds: no table read can be held to it.
    fn fleeting(&self) -> bool {
        self.tuple.is_some_and(|t| t.5 != TIME_WAIT)
    }
}

/// The kernel's tables at one moment: key -> state.
type Truth = HashMap<Key, u8>;

/// A 32-bit word of a table's address column, as the kernel printed it.
fn hex_word(s: &str) -> Option<[u8; 4]> {
    Some(u32::from_str_radix(s, 16).ok()?.to_ne_bytes())
}

/// "ADDR:PORT" of a table line: the address in network order, as the library gives it.
fn endpoint(s: &str) -> Option<(u8, [u8; 16], u16)> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut a = [0u8; 16];
    let family = match addr.len() {
        8 => 4,
        32 => 6,
        _ => return None,
    };
    for (i, chunk) in addr.as_bytes().chunks(8).enumerate() {
        a[4 * i..4 * i + 4].copy_from_slice(&hex_word(std::str::from_utf8(chunk).ok()?)?);
    }
    Some((family, a, port))
}

/// One pid's four tables, or `None` if any of them can't be read.
fn tables_of(pid: &str, netns: u64, into: &mut Truth) -> Option<()> {
    let mut lines = Truth::new();
    for (file, protocol) in
        [("tcp", Protocol::Tcp), ("tcp6", Protocol::Tcp), ("udp", Protocol::Udp), ("udp6", Protocol::Udp)]
    {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")).ok()?;
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some((family, la, lp)), Some((_, ra, rp))) = (endpoint(f[1]), endpoint(f[2])) else { continue };
            let (Ok(state), Ok(inode)) = (u8::from_str_radix(f[3], 16), f[9].parse::<u64>()) else { continue };
            lines.insert(Key::new(netns, protocol, inode, (family, la, lp, ra, rp, state)), state);
        }
    }
    into.extend(lines);
    Some(())
}

/// Every namespace's tables, read from the first of its pids that can be read.
fn truth() -> Truth {
    let mut out = Truth::new();
    let mut done = HashSet::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else { continue };
        let Ok(ns) = std::fs::metadata(format!("/proc/{pid}/ns/net")).map(|m| m.ino()) else { continue };
        if !done.contains(&ns) && tables_of(pid, ns, &mut out).is_some() {
            done.insert(ns);
        }
    }
    out
}

/// Whether the destroy notification `d` may be of the connection listed
/// as `t` in the same namespace and protocol: family, local port and remote
/// address alike, and the local address and remote port too where the
/// notification still has them (a reset socket loses its remote port, an
/// unbound one its local address; a listener never had a remote address;
/// a reset socket is never a TIME_WAIT).
fn may_be(d: &Tuple, t: &Tuple) -> bool {
    let reset = d.4 == 0 && d.3 != [0; 16] && t.5 != TcpState::TimeWait.number();
    (d.0, d.2, d.3) == (t.0, t.2, t.3) && (d.1 == t.1 || d.1 == [0; 16]) && (d.4 == t.4 || reset)
}

/// What the mirror holds of a connection: its state and owner (pid, fd, start time).
type Held = (u8, Option<(i32, i32, u64)>);

/// The mirror: every connection the committed calls' events left, with its tuple.
type Mirror = HashMap<Key, (Held, Tuple)>;

#[derive(Clone, Debug)]
struct Ev {
    kind: ChangeKind,
    key: Key,
    tuple: Tuple,
    state: u8,
    owner: Option<(i32, i32, u64)>,
    owner_inode: Option<u64>,
    old_key: Key,
    old_state: u8,
    old_owner: Option<(i32, i32, u64)>,
}

impl Ev {
    fn of(c: &Change<'_>) -> Ev {
        let k = &c.connection;
        let n = &k.conn;
        let in_state = |state| (n.family, n.local_addr, n.local_port, n.remote_addr, n.remote_port, state);
        let key_in = |state| Key::new(k.netns, k.protocol, n.inode, in_state(state));
        let id = |s: &procspy::Socket<'_>| (s.pid, s.fd, s.start_time);
        Ev {
            kind: c.kind,
            key: key_in(k.conn.state),
            tuple: in_state(n.state),
            state: k.conn.state,
            owner: k.owner.as_ref().map(id),
            owner_inode: k.owner.as_ref().map(|o| o.inode),
            old_key: key_in(c.old_state),
            old_state: c.old_state,
            old_owner: c.old_owner.as_ref().map(id),
        }
    }
}

/// Truth before and after one call.
struct Around {
    before: Truth,
    after: Truth,
}

impl Around {
    fn anywhere(&self, k: &Key) -> bool {
        self.before.contains_key(k) || self.after.contains_key(k)
    }

    /// The state `k` had throughout, if it was listed before and after alike.
    fn stable(&self, k: &Key) -> Option<u8> {
        let s = *self.before.get(k)?;
        (self.after.get(k) == Some(&s)).then_some(s)
    }
}

struct Judge {
    failures: Vec<String>,
    failed: usize,
    log_path: String,
}

impl Judge {
    fn fail(&mut self, msg: String) {
        self.failed += 1;
        if self.failures.len() < MAX_FAILURES {
            eprintln!("changes churn failure: {msg}");
            self.failures.push(msg);
        }
    }

    /// The children the churn generator logged.
    fn churn_children(&self) -> usize {
        let text = std::fs::read_to_string(&self.log_path).unwrap();
        text.lines().filter(|l| l.starts_with("S ")).count()
    }

    /// The inodes the churn generator logged so far.
    fn churn_inodes(&self) -> HashSet<u64> {
        let file = std::fs::File::open(&self.log_path).unwrap();
        std::io::BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| l.strip_prefix("I ").and_then(|r| r.split(' ').nth(1)).and_then(|i| i.parse().ok()))
            .collect()
    }

    /// Applies one committed call's events to `mirror`, judging each.
    fn apply(&mut self, what: &str, evs: &[Ev], mirror: &mut Mirror, now: &Around, last: Option<&Around>) {
        let before: Vec<(Key, Tuple)> = mirror.iter().map(|(k, v)| (*k, v.1)).collect();
        let churn = self.churn_inodes();
        // Listed at some moment of this call, by the truth or (born and gone
        // within it) by the churn's log.
        let real_now = |k: &Key| now.anywhere(k) || churn.contains(&k.inode) || k.fleeting();
        for e in evs {
            if let Some(inode) = e.owner_inode
                && (inode != e.key.inode || inode == 0)
            {
                self.fail(format!("{what}: {e:?}: its owner holds inode {inode}"));
            }
            match e.kind {
                ChangeKind::Appeared => {
                    if mirror.insert(e.key, ((e.state, e.owner), e.tuple)).is_some() {
                        self.fail(format!("{what}: appeared twice: {e:?}"));
                    }
                    if !real_now(&e.key) {
                        self.fail(format!("{what}: appeared, but no table listed it: {e:?}"));
                    }
                    if let Some(s) = last.and_then(|l| l.stable(&e.key)) {
                        self.fail(format!(
                            "{what}: appeared, but was listed throughout the last call (state {s}): {e:?}"
                        ));
                    }
                }
                ChangeKind::Disappeared => {
                    match mirror.remove(&e.key) {
                        Some((held, _)) if held == (e.state, e.owner) => {}
                        other => self.fail(format!("{what}: disappeared from {other:?}: {e:?}")),
                    }
                    if let Some(s) = now.stable(&e.key) {
                        self.fail(format!("{what}: disappeared, but was listed throughout (state {s}): {e:?}"));
                    }
                }
                ChangeKind::State => {
                    match mirror.remove(&e.old_key) {
                        Some((held, _)) if held == (e.old_state, e.old_owner) && e.old_state != e.state => {
                            mirror.insert(e.key, ((e.state, e.old_owner), e.tuple));
                        }
                        other => self.fail(format!("{what}: state change from {other:?}: {e:?}")),
                    }
                    if !real_now(&e.key) {
                        self.fail(format!("{what}: changed state, but no table listed it so: {e:?}"));
                    }
                    if let Some(s) = last.and_then(|l| l.stable(&e.old_key)).filter(|&s| s != e.old_state) {
                        self.fail(format!("{what}: old state {} but {s} throughout the last call: {e:?}", e.old_state));
                    }
                }
                ChangeKind::Owner => match mirror.get_mut(&e.key) {
                    Some((held, _)) if *held == (e.state, e.old_owner) && e.old_owner != e.owner => held.1 = e.owner,
                    other => self.fail(format!("{what}: owner change from {other:?}: {e:?}")),
                },
                ChangeKind::SeenClosed => {
                    if (e.key.inode, e.old_state, e.owner, e.old_owner) != (0, 0, None, None) {
                        self.fail(format!("{what}: seen closed, yet more than the kernel tells: {e:?}"));
                    }
                    // Reported otherwise: listed before this call (gone in it, or still).
                    let same_place = |k: &Key| (k.netns, k.protocol) == (e.key.netns, e.key.protocol);
                    if let Some(k) = before.iter().find(|(k, t)| same_place(k) && may_be(&e.tuple, t)) {
                        self.fail(format!("{what}: seen closed, but {k:?} was listed: {e:?}"));
                    }
                }
            }
        }
    }

    /// After a committed call: what was listed throughout is in the mirror
    /// as listed; what was listed once and is gone is not.
    fn check_mirror(&mut self, what: &str, mirror: &Mirror, now: &Around, ever: &HashSet<Key>) {
        for (k, &s) in &now.before {
            if now.after.get(k) == Some(&s) && mirror.get(k).map(|h| h.0.0) != Some(s) {
                self.fail(format!("{what}: {k:?} listed throughout in state {s}, the mirror has {:?}", mirror.get(k)));
            }
        }
        for k in mirror.keys() {
            if k.inode != 0 && ever.contains(k) && !now.anywhere(k) {
                self.fail(format!("{what}: {k:?} was gone before and after, yet is in the mirror"));
            }
        }
    }

    fn check_holders(&mut self, what: &str, mirror: &Mirror, holders: &[(Holder, u64)]) {
        for (h, st) in holders {
            for s in &h.socks {
                let k = Key { netns: h.netns, protocol: s.proto, inode: s.inode, tuple: None };
                let want = (s.state, Some((h.pid, s.fd, *st)));
                if mirror.get(&k).map(|m| m.0) != Some(want) {
                    self.fail(format!("{what}: holder {} {s:?}: mirror {:?}, want {want:?}", h.pid, mirror.get(&k)));
                }
            }
        }
    }
}

#[test]
fn changes_under_churn_are_real_complete_and_single() {
    let secs = common::churn_secs();
    let holders: Vec<(Holder, u64)> =
        [Holder::start(true, Some("chg-hold-ns")), Holder::start(false, Some("chg-hold"))]
            .into_iter()
            .map(|h| {
                let st = h.start_time();
                (h, st)
            })
            .collect();
    let log_path = format!("{}/procspy-changes-churn-{}.log", std::env::temp_dir().display(), std::process::id());
    std::fs::File::create(&log_path).unwrap();
    // Ended by this test (SIGKILL; its children end by themselves within milliseconds).
    let churn = start_until_ready(
        Command::new(python3())
            .args([&script("churn.py"), &log_path, "600", "10000000", "6", "4"])
            .stdin(Stdio::null()),
        "churn.py",
    );
    assert!(churn.lines.is_empty(), "churn.py did not start: {:?}", churn.lines);

    let mut judge = Judge { failures: Vec::new(), failed: 0, log_path: log_path.clone() };
    let w = Walker::new(None).unwrap();
    let bpf = common::kernel_has_bpf_owner_scan();
    let settings = [
        (Source::Auto, OwnerScan::Auto),
        (Source::Text, OwnerScan::Proc),
        (Source::Netlink, OwnerScan::Auto),
        (Source::Auto, OwnerScan::Proc),
        (Source::Text, if bpf { OwnerScan::Bpf } else { OwnerScan::Auto }),
        (Source::Netlink, OwnerScan::Proc),
    ];
    let mut mirror = Mirror::new();
    let mut ever: HashSet<Key> = HashSet::new();
    let mut last: Option<Around> = None;
    let (mut calls, mut committed, mut aborted, mut failed, mut events, mut kinds) =
        (0u64, 0u64, 0u64, 0u64, 0u64, [0u64; 5]);
    let t0 = Instant::now();
    let enough = |committed, aborted, t: Duration| {
        (committed >= 5 && aborted > 0 && t.as_secs_f64() >= secs) || t > Duration::from_secs(90)
    };
    while !enough(committed, aborted, t0.elapsed()) {
        calls += 1;
        let (source, scan) = settings[calls as usize % settings.len()];
        w.set_source(source);
        w.set_owner_scan(scan);
        // Every third call (but the first) ends at its first event.
        let abort_at = (calls % 3 == 0 && committed > 0).then_some(1);
        let what = format!("call {calls} ({source:?}, {scan:?}{})", if abort_at.is_some() { ", aborted" } else { "" });
        let before = truth();
        let mut evs = Vec::new();
        let mut stats = Stats::default();
        let r = w.changes(None, Protocols::BOTH, StateMask::ALL, &mut stats, &mut |c| {
            evs.push(Ev::of(c));
            if abort_at == Some(evs.len()) { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        });
        let now = Around { before, after: truth() };
        match r {
            Ok(()) => {
                committed += 1;
                events += evs.len() as u64;
                for e in &evs {
                    kinds[e.kind as usize] += 1;
                }
                judge.apply(&what, &evs, &mut mirror, &now, last.as_ref());
                judge.check_mirror(&what, &mirror, &now, &ever);
                judge.check_holders(&what, &mirror, &holders);
                ever.extend(now.before.keys().chain(now.after.keys()).filter(|k| k.inode != 0));
                last = Some(now);
            }
            Err(Error::Aborted) if abort_at.is_some() => aborted += 1,
            // Netlink only fails where one namespace can't be dumped (on a
            // shared host, another's may refuse): a failed call, which keeps
            // nothing, as an aborted one.
            Err(Error::Io { .. }) if source == Source::Netlink => failed += 1,
            Err(e) => judge.fail(format!("{what}: {e:?}")),
        }
    }
    drop(churn);
    let children = judge.churn_children();
    let _ = std::fs::remove_file(&log_path);
    println!(
        "changes under churn: {children} churn processes; {calls} calls in {:.1} s, {committed} committed, {aborted} aborted, {failed} failed (netlink only); \
         {events} events (appeared, disappeared, state, owner, seen closed: {kinds:?}); mirror {} connections",
        t0.elapsed().as_secs_f64(),
        mirror.len()
    );
    assert!(judge.failures.is_empty(), "{} failures, the first ones:\n{}", judge.failed, judge.failures.join("\n"));
    assert!(committed >= 5 && aborted > 0, "{committed} committed, {aborted} aborted");
    assert!(children >= 20, "too little churn: {children} processes");
    assert!(kinds[1] > 0 && kinds[0] > 0, "no churn seen: {kinds:?}");
}
