//! Soak: many walks on one walker, and many walkers created and freed,
//! through the Rust API and through the C ABI, leave the process as they
//! found it: the same open fds, the same RSS (give or take 2 MiB after a
//! warm-up), and the same live heap (give or take a little), counted by a
//! global allocator; a freed walker gives back every byte it held.
//!
//! The host is shared: where other processes open sockets meanwhile, a
//! live walker's state may grow with them, and RSS and heap may grow by what
//! that growth (seen in the walks' stats) explains.
//!
//! PROCSPY_SOAK_WALKS (default 1000) and PROCSPY_SOAK_WALKERS (default 1000)
//! set the counts; the C ABI runs a tenth of each, at least 300.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::{c_int, c_void};
use std::mem::MaybeUninit;
use std::ops::ControlFlow;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use common::Holder;
use procspy::{Protocols, Source, StateMask, Stats, TableBuf, Walker};
use procspy_ffi::{self as ffi, procspy_socket, procspy_status, procspy_walk_stats, procspy_walker};

/// Live heap bytes, process-wide.
struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// fds and RSS are process-wide: one soak at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// RSS may grow this much over a soak after its warm-up.
const RSS_SLACK_KIB: u64 = 2048;
/// The live heap may grow this much over walks on one walker (its vectors
/// may still grow by a step); a leak of 64+ bytes per walk over 1000 walks
/// does not fit.
const HEAP_SLACK_ONE_WALKER: i64 = 64 << 10;
/// Walkers created and freed keep nothing: only noise may remain.
const HEAP_SLACK_WALKERS: i64 = 1 << 10;

fn env_count(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn open_fds() -> usize {
    // The directory's own fd is counted every time alike.
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn live_heap() -> i64 {
    LIVE.load(Ordering::Relaxed)
}

/// A buffer whose pages are all resident already, so that tables growing
/// into it later don't count as growth.
fn touched(len: usize) -> Vec<MaybeUninit<u8>> {
    vec![MaybeUninit::new(1u8); len]
}

/// The largest host a walker saw (its retained state grows with it): other
/// processes on the host may open sockets while a soak runs.
#[derive(Clone, Copy, Debug, Default)]
struct Host {
    namespaces: u64,
    processes: u64,
    sockets: u64,
    bytes: u64,
    /// Lines a connections pass delivered, those of no process (TIME_WAIT)
    /// among them.
    lines: u64,
}

impl Host {
    fn see(&mut self, s: &Stats) {
        self.namespaces = self.namespaces.max(s.namespaces);
        self.processes = self.processes.max(s.processes);
        self.sockets = self.sockets.max(s.sockets);
        self.bytes = self.bytes.max(s.bytes_needed);
    }

    /// Heap a walker may keep for a host grown from `self` to `later`: its
    /// pid, namespace and owner vectors, de-duplication sets, table scratch
    /// and the sockets no process holds that it remembers from a dump, each
    /// at most doubled by a Vec's growth. (Namespaces are only told: four
    /// that appeared during a run cost 32 bytes.)
    fn growth_allowance(&self, later: &Host) -> i64 {
        let d = |a: u64, b: u64| b.saturating_sub(a) as i64;
        128 * d(self.processes, later.processes)
            + 256 * d(self.sockets, later.sockets)
            + 3 * d(self.bytes, later.bytes)
            + 256 * d(self.lines, later.lines)
    }
}

/// The process's fds, RSS and live heap at one moment.
#[derive(Clone, Copy, Debug)]
struct Footprint {
    fds: usize,
    rss_kib: u64,
    heap: i64,
}

impl Footprint {
    fn now() -> Footprint {
        let fds = open_fds();
        let rss_kib = rss_kib();
        Footprint { fds, rss_kib, heap: live_heap() }
    }

    /// Prints both and asserts that `after` is back where `self` was:
    /// fds exactly; RSS and heap within their slack plus what the host's
    /// growth from `warm` to `run` lets a walker keep (RSS: the allocator's
    /// high-water mark, also where walkers are freed).
    /// `freed`: each walker was freed, so no heap allowance.
    fn check(
        &self,
        after: &Footprint,
        heap_slack: i64,
        (warm, run, freed): (Host, Host, bool),
        what: &str,
        runs: u64,
        secs: f64,
    ) {
        let allowance = warm.growth_allowance(&run);
        println!(
            "{what}: {runs} runs in {secs:.2} s; fds {} -> {}; RSS {} -> {} KiB ({:+}); live heap {} -> {} bytes ({:+}); \
             host {} -> {} namespaces, {} -> {} processes, {} -> {} sockets (allowance {allowance} bytes)",
            self.fds,
            after.fds,
            self.rss_kib,
            after.rss_kib,
            after.rss_kib as i64 - self.rss_kib as i64,
            self.heap,
            after.heap,
            after.heap - self.heap,
            warm.namespaces,
            run.namespaces,
            warm.processes,
            run.processes,
            warm.sockets,
            run.sockets,
        );
        assert_eq!(after.fds, self.fds, "{what}: open fds");
        let rss_slack = RSS_SLACK_KIB + allowance as u64 / 1024;
        assert!(
            after.rss_kib <= self.rss_kib + rss_slack,
            "{what}: RSS grew {} -> {} KiB",
            self.rss_kib,
            after.rss_kib
        );
        let heap_slack = heap_slack + if freed { 0 } else { allowance };
        assert!(after.heap - self.heap <= heap_slack, "{what}: live heap grew {} -> {} bytes", self.heap, after.heap);
    }
}

/// Asserts that freeing a walker gave back all its heap: `pre` was taken
/// just before it was created, `post` just after it was freed.
fn check_freed(pre: i64, post: i64, what: &str) {
    println!("{what}: live heap {pre} before the walker, {post} after it was freed ({:+})", post - pre);
    assert!((post - pre).abs() <= HEAP_SLACK_WALKERS, "{what}: the freed walker left {} bytes", post - pre);
}

/// A walk into `mem`, checked: Ok, every socket of `holders` delivered.
fn walk_checked(w: &Walker, mem: &mut [MaybeUninit<u8>], holders: &[Holder], host: &mut Host) -> Stats {
    let mut out = TableBuf::new(mem);
    let mut stats = Stats::default();
    let mut mine = 0usize;
    let r = w.walk(&mut out, &mut stats, &mut |s| {
        mine += holders
            .iter()
            .filter(|h| h.pid == s.pid && h.socks.iter().any(|x| x.fd == s.fd && x.inode == s.inode))
            .count();
        ControlFlow::Continue(())
    });
    assert_eq!(r, Ok(()), "{stats:?}");
    assert_eq!(mine, holders.len() * 10, "the holders' sockets");
    host.see(&stats);
    stats
}

fn connections_checked(w: &Walker, mem: Option<&mut [MaybeUninit<u8>]>, holders: &[Holder], host: &mut Host) {
    let mut stats = Stats::default();
    let mut out = mem.map(TableBuf::new);
    let (mut mine, mut lines) = (0usize, 0u64);
    let r = w.connections(out.as_mut(), Protocols::BOTH, StateMask::ALL, &mut stats, &mut |c| {
        let owner = c.owner.map(|o| o.pid);
        mine += holders.iter().filter(|h| Some(h.pid) == owner && h.netns == c.netns).count();
        lines += 1;
        ControlFlow::Continue(())
    });
    assert_eq!(r, Ok(()), "{stats:?}");
    assert_eq!(mine, holders.len() * 10, "the holders' sockets");
    host.see(&stats);
    host.lines = host.lines.max(lines);
}

#[test]
fn many_walks_on_one_walker_leak_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let walks = env_count("PROCSPY_SOAK_WALKS", 1000);
    let holders = [Holder::start(true, None), Holder::start(false, Some("soak-root"))];
    let mut mem = touched(64 << 20);
    let (mut warm, mut run) = (Host::default(), Host::default());
    // What a process keeps once, whichever walker first needs it (the BPF
    // program, assembled from the kernel's BTF), is made before the count
    // starts: this test may be the first of its binary to run a pass.
    connections_checked(&Walker::new(None).unwrap(), None, &holders, &mut warm);
    let pre = live_heap();
    let w = Walker::new(None).unwrap();
    // Warm up: every path twice.
    for _ in 0..2 {
        walk_checked(&w, &mut mem, &holders, &mut warm);
        for source in [Source::Text, Source::Auto] {
            w.set_source(source);
            connections_checked(&w, None, &holders, &mut warm);
            connections_checked(&w, Some(&mut mem), &holders, &mut warm);
        }
    }
    let before = Footprint::now();
    let t0 = Instant::now();
    let mut fds = 0;
    for i in 0..walks {
        fds += walk_checked(&w, &mut mem, &holders, &mut run).fds;
        // Connections too, a tenth as often, from either source into either buffer.
        if i % 10 == 0 {
            w.set_source(if i % 20 == 0 { Source::Text } else { Source::Auto });
            connections_checked(&w, (i % 40 < 20).then_some(&mut mem[..]), &holders, &mut run);
        }
    }
    let took = t0.elapsed().as_secs_f64();
    let after = Footprint::now();
    drop(w);
    let post = live_heap();
    println!("  {walks} walks ({} connections) stat()ed {fds} fds", walks.div_ceil(10));
    before.check(&after, HEAP_SLACK_ONE_WALKER, (warm, run, false), "walks on one walker", walks, took);
    check_freed(pre, post, "walks on one walker");
}

#[test]
fn many_walkers_created_and_freed_leak_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let walkers = env_count("PROCSPY_SOAK_WALKERS", 1000);
    let holders = [Holder::start(true, None)];
    let mut mem = touched(64 << 20);
    let mut one = |i: u64, host: &mut Host| {
        let w = Walker::new(None).unwrap();
        // Every walker walks once (its state grows), some connect, some stop.
        walk_checked(&w, &mut mem, &holders, host);
        if i % 10 == 0 {
            connections_checked(&w, None, &holders, host);
        }
        if i % 10 == 5 {
            w.set_source(Source::Text);
            connections_checked(&w, None, &holders, host);
        }
        if i % 7 == 0 {
            w.stop();
        }
        // Failures leave their messages.
        assert!(Walker::new(Some(b"/nonexistent/proc")).is_err());
    };
    let (mut warm, mut run) = (Host::default(), Host::default());
    for i in [0, 1, 5, 7] {
        one(i, &mut warm);
    }
    let before = Footprint::now();
    let t0 = Instant::now();
    for i in 0..walkers {
        one(i, &mut run);
    }
    let took = t0.elapsed().as_secs_f64();
    let after = Footprint::now();
    before.check(&after, HEAP_SLACK_WALKERS, (warm, run, true), "walkers created, walked, freed", walkers, took);
}

unsafe extern "C" fn count_socket(userdata: *mut c_void, s: *const procspy_socket) -> c_int {
    // SAFETY: userdata is the (u64 total, i32 holder pid, u64 holder's) the caller passes.
    let (n, pid, mine) = unsafe { &mut *(userdata as *mut (u64, i32, u64)) };
    // SAFETY: the record lives during the callback.
    let s = unsafe { &*s };
    *n += 1;
    if s.pid == *pid {
        *mine += 1;
    }
    // The name is readable and NUL-terminated where it says.
    // SAFETY: name points at name_len bytes and a NUL.
    assert_eq!(unsafe { *s.name.add(s.name_len) }, 0);
    0
}

/// One walk through the C ABI; returns the records delivered.
fn ffi_walk(w: *mut procspy_walker, buf: &mut [u8], holder: &Holder, host: &mut Host) -> u64 {
    let mut stats = procspy_walk_stats::default();
    let mut counts = (0u64, holder.pid, 0u64);
    let st = ffi::procspy_walker_walk(
        w,
        buf.as_mut_ptr(),
        buf.len(),
        Some(count_socket),
        &mut counts as *mut _ as *mut c_void,
        &mut stats,
    );
    if st != procspy_status::PROCSPY_OK {
        let mut msg = [0u8; 512];
        let n = ffi::procspy_last_error(msg.as_mut_ptr().cast(), msg.len()).min(511);
        panic!("procspy_walker_walk: {st:?}: {} {stats:?}", String::from_utf8_lossy(&msg[..n]));
    }
    assert_eq!(counts.0, stats.sockets);
    assert_eq!(counts.2, 10, "the holder's sockets");
    host.see(&Stats {
        processes: stats.processes,
        sockets: stats.sockets,
        bytes_needed: stats.bytes_needed,
        ..Stats::default()
    });
    counts.0
}

#[test]
fn ffi_walks_and_walkers_leak_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let walks = (env_count("PROCSPY_SOAK_WALKS", 1000) / 10).max(300);
    let walkers = (env_count("PROCSPY_SOAK_WALKERS", 1000) / 10).max(300);
    let holder = Holder::start(true, Some("soak-ffi"));
    let mut buf = vec![1u8; 64 << 20];
    let new = || {
        let mut w = std::ptr::null_mut();
        assert_eq!(ffi::procspy_walker_new(std::ptr::null(), &mut w), procspy_status::PROCSPY_OK);
        assert!(!w.is_null());
        w
    };
    let bad_new = || {
        let mut w = std::ptr::null_mut();
        let st = ffi::procspy_walker_new(c"/nonexistent/proc".as_ptr(), &mut w);
        assert_eq!(st, procspy_status::PROCSPY_IO);
        assert!(w.is_null());
        let mut msg = [0u8; 256];
        assert!(ffi::procspy_last_error(msg.as_mut_ptr().cast(), msg.len()) > 0);
    };

    // Many walks on one walker.
    bad_new();
    let pre = live_heap();
    let w = new();
    let (mut warm, mut run) = (Host::default(), Host::default());
    for _ in 0..3 {
        ffi_walk(w, &mut buf, &holder, &mut warm);
        bad_new();
    }
    let before = Footprint::now();
    let t0 = Instant::now();
    let mut records = 0;
    for _ in 0..walks {
        records += ffi_walk(w, &mut buf, &holder, &mut run);
        bad_new();
    }
    let took = t0.elapsed().as_secs_f64();
    let after = Footprint::now();
    ffi::procspy_walker_free(w);
    let post = live_heap();
    println!("  {walks} C walks delivered {records} records");
    before.check(&after, HEAP_SLACK_ONE_WALKER, (warm, run, false), "C ABI: walks on one walker", walks, took);
    check_freed(pre, post, "C ABI: walks on one walker");

    // Many walkers: new, walk, (paced, stopped,) free.
    let one = |i: u64, buf: &mut [u8], host: &mut Host| {
        let w = new();
        if i % 5 == 0 {
            assert_eq!(ffi::procspy_walker_set_rate_limit(w, 64, 1), procspy_status::PROCSPY_OK);
        }
        ffi_walk(w, buf, &holder, host);
        if i % 7 == 0 {
            ffi::procspy_walker_stop(w);
        }
        ffi::procspy_walker_free(w);
    };
    let (mut warm, mut run) = (Host::default(), Host::default());
    for i in [0, 1, 5, 7] {
        one(i, &mut buf, &mut warm);
    }
    let before = Footprint::now();
    let t0 = Instant::now();
    for i in 0..walkers {
        one(i, &mut buf, &mut run);
    }
    let took = t0.elapsed().as_secs_f64();
    let after = Footprint::now();
    before.check(&after, HEAP_SLACK_WALKERS, (warm, run, true), "C ABI: walkers new, walk, free", walkers, took);
    ffi::procspy_walker_free(std::ptr::null_mut());
}
