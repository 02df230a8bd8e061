//! Walks and connections under process and socket churn (needs root, as CI
//! has): a generator (tests/common/churn.py) forks short-lived processes that
//! open and close loopback sockets, some in fresh network namespaces, while
//! threads walk on one shared walker, on a paced one, and on walkers stopped
//! mid-walk. Every record must name a process that existed during the call,
//! a generator process only with a socket it logged, and every socket of the
//! stable holders must be found every time.
//!
//! PROCSPY_CHURN_SECS sets how long the churn runs (default 3).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Read};
use std::mem::MaybeUninit;
use std::ops::ControlFlow;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Holder;
use common::child::{python3, script, start_until_ready};
use common::proc;
use common::rec::{Rec, walk_into};
use procspy::engine::{Connection, Protocols, Source};
use procspy::{Error, Protocol, StateMask, Stats, TableBuf, Walker};

/// Failure messages kept (the first ones tell the story).
const MAX_FAILURES: usize = 40;

/// Every process in /proc now: pid -> start time.
fn snapshot() -> HashMap<i32, u64> {
    let mut out = HashMap::new();
    for e in std::fs::read_dir("/proc").unwrap() {
        let Ok(e) = e else { continue };
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if let Some(st) = std::fs::read(format!("/proc/{pid}/stat")).ok().and_then(|s| proc::parse_start_time(&s)) {
            out.insert(pid, st);
        }
    }
    out
}

/// CLOCK_BOOTTIME in clock ticks, the unit of a process's start time
/// (which the kernel truncates, as this does).
fn boot_ticks() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec to fill.
    assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) }, 0);
    // SAFETY: plain sysconf.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
    ns / (1_000_000_000 / hz)
}

/// One generator child, as its log lines tell.
#[derive(Default, Debug)]
struct ChildLog {
    inodes: HashSet<u64>,
    ended: bool,
}

/// The generator's log, read incrementally (whole lines only).
struct GenLog {
    file: std::fs::File,
    partial: Vec<u8>,
    parent: Option<(i32, u64)>,
    /// The start time of the latest child with each pid (pids are reused).
    current: HashMap<i32, u64>,
    children: HashMap<(i32, u64), ChildLog>,
    lines: u64,
}

impl GenLog {
    fn open(path: &str) -> GenLog {
        let file = std::fs::File::open(path).unwrap();
        GenLog { file, partial: Vec::new(), parent: None, current: HashMap::new(), children: HashMap::new(), lines: 0 }
    }

    /// Reads what was appended since the last call.
    fn refresh(&mut self) {
        let mut more = Vec::new();
        self.file.read_to_end(&mut more).unwrap();
        self.partial.extend_from_slice(&more);
        let Some(end) = self.partial.iter().rposition(|&c| c == b'\n') else { return };
        let whole: Vec<u8> = self.partial.drain(..=end).collect();
        for line in whole.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
            self.lines += 1;
            let line = std::str::from_utf8(line).unwrap();
            let f: Vec<&str> = line.split(' ').collect();
            let num = |i: usize| -> u64 { f[i].parse().unwrap_or_else(|_| panic!("bad log line {line:?}")) };
            let pid = num(1) as i32;
            match f[0] {
                "P" => self.parent = Some((pid, num(2))),
                "S" => {
                    let st = num(2);
                    self.current.insert(pid, st);
                    self.children.insert((pid, st), ChildLog::default());
                }
                "I" | "E" => {
                    let st = *self.current.get(&pid).unwrap_or_else(|| panic!("{line:?} before its S line"));
                    let child = self.children.get_mut(&(pid, st)).unwrap();
                    if f[0] == "I" {
                        child.inodes.insert(num(2));
                    } else {
                        child.ended = true;
                    }
                }
                _ => panic!("bad log line {line:?}"),
            }
        }
    }
}

/// What a judgement of one (pid, start time, inode) fact came to.
enum Verdict {
    Fine,
    /// A generator child's socket not (yet) logged: judge again at the end.
    Later,
    Bad(String),
}

/// Everything the threads share for judging records.
struct Judge {
    log: Mutex<GenLog>,
    deferred: Mutex<Vec<(i32, u64, u64, String)>>,
    failures: Mutex<Vec<String>>,
    failed: AtomicU64,
    /// Records (walk) and owners (connections) that were generator children's.
    churn_seen: AtomicU64,
    holders: Vec<HolderFacts>,
}

struct HolderFacts {
    pid: i32,
    netns: u64,
    start_time: u64,
    socks: Vec<common::Held>,
}

/// The processes that existed around one call.
struct Around {
    before: HashMap<i32, u64>,
    after: HashMap<i32, u64>,
    /// Boot-time ticks when `before` began and `after` ended.
    t0: u64,
    t1: u64,
}

impl Judge {
    fn fail(&self, msg: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut f = self.failures.lock().unwrap();
        if f.len() < MAX_FAILURES {
            eprintln!("churn failure: {msg}");
            f.push(msg);
        }
    }

    /// Runs `call` between two snapshots of the processes.
    fn around<R>(&self, call: impl FnOnce() -> R) -> (R, Around) {
        let t0 = boot_ticks();
        let before = snapshot();
        let r = call();
        let after = snapshot();
        let t1 = boot_ticks();
        (r, Around { before, after, t0, t1 })
    }

    /// A socket `inode` of (pid, start_time), as delivered by `what`.
    /// The log must have been refreshed after the call.
    fn judge(&self, log: &GenLog, around: &Around, pid: i32, st: u64, inode: u64, what: &str) -> Verdict {
        let existed = around.before.get(&pid) == Some(&st)
            || around.after.get(&pid) == Some(&st)
            // Born during the call (another user's short-lived process, say).
            || (around.t0..=around.t1).contains(&st)
            || log.children.contains_key(&(pid, st));
        if !existed {
            return Verdict::Bad(format!(
                "{what}: pid {pid} start_time {st} (inode {inode}) did not exist during the call \
                 (before: {:?}, after: {:?}, ticks {}..={})",
                around.before.get(&pid),
                around.after.get(&pid),
                around.t0,
                around.t1
            ));
        }
        if log.parent == Some((pid, st)) {
            return Verdict::Bad(format!("{what}: the generator {pid} holds no socket, yet inode {inode}"));
        }
        match log.children.get(&(pid, st)) {
            None => Verdict::Fine,
            Some(c) if c.inodes.contains(&inode) => Verdict::Fine,
            Some(c) if c.ended => Verdict::Bad(format!(
                "{what}: generator child {pid} (start {st}) never opened inode {inode}; it logged {:?}",
                c.inodes
            )),
            Some(_) => Verdict::Later,
        }
    }

    /// Judges every (pid, start_time, inode) of one call.
    fn judge_all(&self, around: &Around, facts: &[(i32, u64, u64)], what: &str) {
        let mut log = self.log.lock().unwrap();
        log.refresh();
        for &(pid, st, inode) in facts {
            if log.children.contains_key(&(pid, st)) {
                self.churn_seen.fetch_add(1, Ordering::Relaxed);
            }
            match self.judge(&log, around, pid, st, inode, what) {
                Verdict::Fine => {}
                Verdict::Later => self.deferred.lock().unwrap().push((pid, st, inode, what.to_string())),
                Verdict::Bad(m) => self.fail(m),
            }
        }
    }

    /// A finished walk: facts, holders, no (pid, fd) twice, namespaces contiguous.
    fn check_walk(&self, around: &Around, recs: &[Rec], what: &str) {
        let facts: Vec<_> = recs.iter().map(|r| (r.pid, r.start_time, r.inode)).collect();
        self.judge_all(around, &facts, what);
        let mut seen = HashSet::new();
        for r in recs {
            if !seen.insert((r.pid, r.fd)) {
                self.fail(format!("{what}: pid {} fd {} delivered twice", r.pid, r.fd));
            }
        }
        let mut done = HashSet::new();
        for pair in recs.windows(2) {
            if pair[0].netns != pair[1].netns && !done.insert(pair[0].netns) {
                self.fail(format!("{what}: records of namespace {} are not contiguous", pair[0].netns));
            }
        }
    }

    fn check_walk_holders(&self, recs: &[Rec], what: &str) {
        for h in &self.holders {
            let mine: HashMap<i32, &Rec> = recs.iter().filter(|r| r.pid == h.pid).map(|r| (r.fd, r)).collect();
            if mine.len() != h.socks.len() {
                self.fail(format!("{what}: holder {} has {} records, not {}", h.pid, mine.len(), h.socks.len()));
            }
            for s in &h.socks {
                match mine.get(&s.fd) {
                    Some(r) if r.inode == s.inode && r.netns == h.netns && r.start_time == h.start_time => {}
                    other => {
                        self.fail(format!("{what}: holder {} fd {} inode {}: got {other:?}", h.pid, s.fd, s.inode))
                    }
                }
            }
        }
    }

    fn check_connections(&self, around: &Around, conns: &[Conn], what: &str) {
        let mut seen = HashSet::new();
        let mut facts = Vec::new();
        for c in conns {
            if c.inode != 0 && !seen.insert((c.netns, c.inode)) {
                self.fail(format!("{what}: (netns {}, inode {}) delivered twice", c.netns, c.inode));
            }
            if let Some(o) = &c.owner {
                if o.inode != c.inode || c.inode == 0 {
                    self.fail(format!("{what}: line inode {} has owner with inode {}", c.inode, o.inode));
                }
                facts.push((o.pid, o.start_time, o.inode));
            }
        }
        self.judge_all(around, &facts, what);
        for h in &self.holders {
            for s in &h.socks {
                let want = (s.proto, s.family, s.state, s.local_port, s.remote_port);
                match conns.iter().find(|c| c.netns == h.netns && c.inode == s.inode) {
                    Some(c)
                        if (c.protocol, c.family, c.state, c.local_port, c.remote_port) == want
                            && c.owner.as_ref().is_some_and(|o| {
                                (o.pid, o.fd, o.netns, o.start_time) == (h.pid, s.fd, h.netns, h.start_time)
                            }) => {}
                    other => {
                        self.fail(format!("{what}: holder {} socket {s:?} in netns {}: got {other:?}", h.pid, h.netns))
                    }
                }
            }
        }
    }
}

#[derive(Clone, Debug)]
struct Conn {
    inode: u64,
    netns: u64,
    protocol: Protocol,
    family: u8,
    state: u8,
    local_port: u16,
    remote_port: u16,
    owner: Option<Rec>,
}

impl Conn {
    fn of(c: &Connection<'_>) -> Conn {
        Conn {
            inode: c.conn.inode,
            netns: c.netns,
            protocol: c.protocol,
            family: c.conn.family,
            state: c.conn.state,
            local_port: c.conn.local_port,
            remote_port: c.conn.remote_port,
            owner: c.owner.as_ref().map(Rec::of),
        }
    }
}

fn connections(w: &Walker, mem: Option<&mut [MaybeUninit<u8>]>, conns: &mut Vec<Conn>) -> (Result<(), Error>, Stats) {
    conns.clear();
    let mut stats = Stats::default();
    let mut out = mem.map(TableBuf::new);
    let r = w.connections(out.as_mut(), Protocols::BOTH, StateMask::ALL, &mut stats, &mut |c| {
        conns.push(Conn::of(c));
        ControlFlow::Continue(())
    });
    (r, stats)
}

/// Counts of one thread's calls.
#[derive(Default, Debug, Clone, Copy)]
struct Tally {
    walks_ok: u64,
    conns_ok: u64,
    busy: u64,
    stopped: u64,
    sockets: u64,
    lines: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.walks_ok += o.walks_ok;
        self.conns_ok += o.conns_ok;
        self.busy += o.busy;
        self.stopped += o.stopped;
        self.sockets += o.sockets;
        self.lines += o.lines;
    }
}

/// What one walking thread does.
struct Role {
    name: &'static str,
    /// It starts with a walk (else with connections).
    walk_first: bool,
    /// Its connections get a caller buffer (else the walker's own).
    own_buf: bool,
    /// The walker is shared: `Busy` is expected.
    busy_ok: bool,
    /// Its connections alternate between the text tables and the default
    /// source (netlink where permitted); the walker must be its alone.
    flip_source: bool,
}

/// Calls go on while the churn runs, then until the thread has done what the
/// test asks of it (on a loaded machine one call can outlast the whole
/// churn), for at most a minute more.
fn go_on(done: &AtomicBool, ended: &mut Option<Instant>, needs_more: bool) -> bool {
    if !done.load(Ordering::Relaxed) {
        return true;
    }
    needs_more && ended.get_or_insert_with(Instant::now).elapsed() < Duration::from_secs(60)
}

/// Walks (and connections) on `w` until `done` and one of each has
/// finished, judging each one.
fn worker(judge: &Judge, w: &Walker, done: &AtomicBool, role: Role) -> Tally {
    let Role { name, walk_first, own_buf, busy_ok, flip_source } = role;
    let mut mem = vec![MaybeUninit::new(0u8); 64 << 20];
    let mut recs = Vec::new();
    let mut conns = Vec::new();
    let mut t = Tally::default();
    let (mut i, mut ended) = (0u64, None);
    while go_on(done, &mut ended, t.walks_ok == 0 || t.conns_ok == 0) {
        let do_walk = (i % 2 == 0) == walk_first;
        i += 1;
        let what = format!("{name} call {i} ({})", if do_walk { "walk" } else { "connections" });
        if do_walk {
            // Every other walk counts only (capacity 0).
            let cap = if i % 4 < 2 { mem.len() } else { 0 };
            let ((r, stats), around) = judge.around(|| walk_into(w, &mut TableBuf::new(&mut mem[..cap]), &mut recs));
            match r {
                Ok(()) => {
                    t.walks_ok += 1;
                    t.sockets += recs.len() as u64;
                    if stats.sockets != recs.len() as u64 {
                        judge.fail(format!("{what}: stats.sockets {} but {} records", stats.sockets, recs.len()));
                    }
                    judge.check_walk(&around, &recs, &what);
                    judge.check_walk_holders(&recs, &what);
                }
                Err(Error::Busy) if busy_ok => {
                    t.busy += 1;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(e) => judge.fail(format!("{what}: {e:?}")),
            }
        } else {
            if flip_source {
                w.set_source(if i % 4 < 2 { Source::Text } else { Source::Auto });
            }
            let buf = own_buf.then_some(&mut mem[..]);
            let ((r, _), around) = judge.around(|| connections(w, buf, &mut conns));
            match r {
                Ok(()) => {
                    t.conns_ok += 1;
                    t.lines += conns.len() as u64;
                    judge.check_connections(&around, &conns, &what);
                }
                Err(Error::Busy) if busy_ok => {
                    t.busy += 1;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(e) => judge.fail(format!("{what}: {e:?}")),
            }
        }
    }
    t
}

/// Walkers stopped from this thread while another walks on them: at the
/// k-th record (the callback waits until `stop` has returned), or after a
/// random delay. Paced or not, walk or connections.
fn stopper(judge: &Judge, done: &AtomicBool) -> Tally {
    const BLOCK: u64 = 8;
    let mut t = Tally::default();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let (mut i, mut ended) = (0u64, None);
    while go_on(done, &mut ended, t.stopped == 0) {
        i += 1;
        let paced = i % 2 == 0;
        let conn = i % 3 == 0;
        let by_callback = i % 4 < 2;
        let what = format!(
            "stop case {i} ({}, {}, {})",
            if paced { "paced" } else { "unpaced" },
            if conn { "connections" } else { "walk" },
            if by_callback { "in callback" } else { "on a timer" }
        );
        let w = Arc::new(Walker::new(None).unwrap());
        if i % 5 < 2 {
            w.set_source(Source::Text);
        }
        if paced {
            w.set_rate_limit(BLOCK, Duration::from_millis(1));
        }
        // The holders alone hold 30 sockets, so the k-th record comes.
        let k = 1 + next(20) as usize;
        let delay = Duration::from_micros(next(30_000));
        let (at_k, wait_stop) = (mpsc::channel::<()>(), mpsc::channel::<()>());
        let (at_k_tx, at_k_rx) = at_k;
        let (stopped_tx, stopped_rx) = wait_stop;
        let stopped_flag = Arc::new(AtomicBool::new(false));
        let w2 = w.clone();
        let flag2 = stopped_flag.clone();
        let th = std::thread::spawn(move || {
            let mut n = 0usize;
            let mut after_stop = 0u64;
            let mut facts = Vec::new();
            let mut on_one = |pid: i32, st: u64, inode: u64| {
                n += 1;
                facts.push((pid, st, inode));
                if flag2.load(Ordering::SeqCst) {
                    after_stop += 1;
                }
                if by_callback && n == k {
                    at_k_tx.send(()).unwrap();
                    stopped_rx.recv().unwrap();
                }
            };
            let t0 = boot_ticks();
            let before = snapshot();
            let mut stats = Stats::default();
            let r = if conn {
                w2.connections(None, Protocols::BOTH, StateMask::ALL, &mut stats, &mut |c| {
                    if let Some(o) = &c.owner {
                        on_one(o.pid, o.start_time, o.inode);
                    } else {
                        on_one(0, 0, 0);
                    }
                    ControlFlow::Continue(())
                })
            } else {
                w2.walk(&mut TableBuf::new(&mut []), &mut stats, &mut |s| {
                    on_one(s.pid, s.start_time, s.inode);
                    ControlFlow::Continue(())
                })
            };
            let around = Around { before, after: snapshot(), t0, t1: boot_ticks() };
            (r, n, after_stop, facts, around)
        });
        if by_callback {
            at_k_rx.recv().expect("the k-th record never came");
        } else {
            std::thread::sleep(delay);
        }
        stopped_flag.store(true, Ordering::SeqCst);
        w.stop();
        if by_callback {
            stopped_tx.send(()).unwrap();
        }
        let (r, n, after_stop, facts, around) = th.join().expect("a stopped walk panicked");
        let facts: Vec<_> = facts.into_iter().filter(|f| f.0 != 0).collect();
        judge.judge_all(&around, &facts, &what);
        match r {
            Err(Error::Stopped) => t.stopped += 1,
            // A timer may fire after the walk ended.
            Ok(()) if !by_callback => t.walks_ok += 1,
            other => judge.fail(format!("{what}: {other:?} after {n} records, stopped at {k}")),
        }
        // Within one block of work: a paced walk stats at most BLOCK more fds;
        // connections check the stop before every line.
        let limit = if conn {
            0
        } else if paced {
            BLOCK
        } else {
            u64::MAX
        };
        if by_callback && after_stop > limit {
            judge.fail(format!("{what}: {after_stop} records after stop (limit {limit})"));
        }
        // Stop is final.
        let mut stats = Stats::default();
        let mut later = 0;
        let r = w.walk(&mut TableBuf::new(&mut []), &mut stats, &mut |_| {
            later += 1;
            ControlFlow::Continue(())
        });
        if r != Err(Error::Stopped) || later != 0 {
            judge.fail(format!("{what}: a walk after stop gave {r:?} with {later} records"));
        }
    }
    t
}

#[test]
fn walks_and_connections_stay_sound_under_churn() {
    let secs = common::churn_secs();
    let holders = [
        Holder::start(true, Some("churn-hold-a")),
        Holder::start(true, None),
        Holder::start(false, Some("churn-hold-root")),
    ];
    let facts = holders
        .iter()
        .map(|h| HolderFacts { pid: h.pid, netns: h.netns, start_time: h.start_time(), socks: h.socks.clone() })
        .collect();

    let log_path = format!("{}/procspy-churn-{}.log", std::env::temp_dir().display(), std::process::id());
    let _ = std::fs::remove_file(&log_path);
    std::fs::File::create(&log_path).unwrap();
    let max_children = (secs * 5000.0) as u64 + 100;
    // Killed if the test ends early.
    let mut generator = start_until_ready(
        Command::new(python3())
            .args([&script("churn.py"), &log_path, &secs.to_string(), &max_children.to_string(), "8"])
            .stdin(Stdio::null()),
        "churn.py",
    );
    assert!(generator.lines.is_empty(), "churn.py did not start: {:?}", generator.lines);

    let judge = Judge {
        log: Mutex::new(GenLog::open(&log_path)),
        deferred: Mutex::new(Vec::new()),
        failures: Mutex::new(Vec::new()),
        failed: AtomicU64::new(0),
        churn_seen: AtomicU64::new(0),
        holders: facts,
    };
    let shared = Walker::new(None).unwrap();
    let paced = Walker::new(None).unwrap();
    paced.set_rate_limit(16, Duration::from_millis(1));
    let done = AtomicBool::new(false);
    let t0 = Instant::now();
    let (tallies, summary) = std::thread::scope(|s| {
        let threads = [
            s.spawn(|| {
                let role =
                    Role { name: "shared A", walk_first: true, own_buf: false, busy_ok: true, flip_source: false };
                worker(&judge, &shared, &done, role)
            }),
            s.spawn(|| {
                let role =
                    Role { name: "shared B", walk_first: false, own_buf: true, busy_ok: true, flip_source: false };
                worker(&judge, &shared, &done, role)
            }),
            s.spawn(|| {
                let role = Role { name: "paced", walk_first: true, own_buf: false, busy_ok: false, flip_source: true };
                worker(&judge, &paced, &done, role)
            }),
            s.spawn(|| stopper(&judge, &done)),
        ];
        // The churn ends by itself; its summary line comes when it does.
        let mut summary = String::new();
        let read = generator.out.read_line(&mut summary);
        done.store(true, Ordering::Relaxed);
        let tallies: Vec<Tally> = threads.into_iter().map(|t| t.join().expect("a walking thread panicked")).collect();
        read.expect("churn.py output");
        (tallies, summary)
    });
    let took = t0.elapsed();
    let status = generator.child.0.wait().unwrap();
    assert!(status.success(), "churn.py: {status}");

    // The log is final now: judge what had to wait for it.
    let deferred = std::mem::take(&mut *judge.deferred.lock().unwrap());
    {
        let mut log = judge.log.lock().unwrap();
        log.refresh();
        for (pid, st, inode, what) in &deferred {
            match log.children.get(&(*pid, *st)) {
                Some(c) if c.inodes.contains(inode) => {}
                other => judge
                    .fail(format!("{what}: generator child {pid} (start {st}) never logged inode {inode}: {other:?}")),
            }
        }
    }

    // "children N sockets N netns N errors N secs F"
    let f: Vec<&str> = summary.split_whitespace().collect();
    assert_eq!(f.len(), 10, "churn.py summary {summary:?}");
    let num = |i: usize| -> f64 { f[i].parse().unwrap() };
    let (children, sockets, netns, errors, gen_secs) = (num(1), num(3), num(5), num(7), num(9));
    let log_lines = judge.log.lock().unwrap().lines;
    let mut all = Tally::default();
    for t in &tallies {
        all += *t;
    }
    let [a, b, p, st] = [tallies[0], tallies[1], tallies[2], tallies[3]];
    println!(
        "churn: {children} processes ({:.0}/s), {sockets} sockets ({:.0}/s), {netns} in fresh namespaces, \
         {errors} child errors, over {gen_secs:.1} s; log {log_lines} lines",
        children / gen_secs,
        sockets / gen_secs
    );
    println!(
        "calls in {:.1} s: shared walker {} walks + {} connections ok, {} busy; paced walker {} walks + {} connections; \
         stop cases {} stopped, {} finished first; {} records, {} table lines; {} records/owners of churn processes, \
         {} judged after the churn",
        took.as_secs_f64(),
        a.walks_ok + b.walks_ok,
        a.conns_ok + b.conns_ok,
        a.busy + b.busy,
        p.walks_ok,
        p.conns_ok,
        st.stopped,
        st.walks_ok,
        all.sockets,
        all.lines,
        judge.churn_seen.load(Ordering::Relaxed),
        deferred.len()
    );
    let _ = std::fs::remove_file(&log_path);

    let failures = judge.failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failures, the first ones:\n{}",
        judge.failed.load(Ordering::Relaxed),
        failures.join("\n")
    );
    assert_eq!(errors, 0.0, "churn children failed");
    assert!(children >= 20.0, "too little churn: {summary}");
    assert!(a.walks_ok + b.walks_ok > 0 && a.conns_ok + b.conns_ok > 0, "the shared walker never finished a call");
    assert!(p.walks_ok > 0 && p.conns_ok > 0, "the paced walker never finished a call");
    assert!(st.stopped > 0, "no walk was stopped");
    assert!(judge.churn_seen.load(Ordering::Relaxed) > 0, "no walk ever saw a churn process's socket");
    drop(holders);
}
