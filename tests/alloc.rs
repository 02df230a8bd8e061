//! A warm walker makes no heap allocation per process or per fd: counted
//! by a global allocator, on this thread only (the test harness allocates
//! on its own threads).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::mem::MaybeUninit;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};

use procspy::engine::Protocols;
use procspy::{StateMask, Stats, TableBuf, Walker};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}
static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counted<R>(f: impl FnOnce() -> R) -> (R, u64) {
    ALLOCS.store(0, Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, ALLOCS.load(Ordering::Relaxed))
}

#[test]
fn warm_walks_allocate_nothing() {
    let _holders = [common::Holder::start(true, None), common::Holder::start(true, None)];
    let w = Walker::new(None).unwrap();
    let mut mem = vec![MaybeUninit::new(0u8); 16 << 20];
    let mut walk = || {
        let mut out = TableBuf::new(&mut mem);
        let mut stats = Stats::default();
        let mut n = 0u64;
        w.walk(&mut out, &mut stats, &mut |_| {
            n += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(n, stats.sockets);
        stats
    };
    let conns = |stats: &mut Stats| {
        w.connections(None, Protocols::BOTH, StateMask::ALL, stats, &mut |_| ControlFlow::Continue(())).unwrap();
    };
    let changes = |stats: &mut Stats| {
        w.changes(None, Protocols::BOTH, StateMask::ALL, stats, &mut |_| ControlFlow::Continue(())).unwrap();
    };
    // Warm up; then a walk may allocate only if the host grew (a new
    // process, a new namespace), so take the best of a few.
    let mut stats = Stats::default();
    for _ in 0..3 {
        walk();
        conns(&mut stats);
        changes(&mut stats);
    }
    let (stats, allocs) = (0..5).map(|_| counted(&mut walk)).min_by_key(|r| r.1).unwrap();
    println!(
        "warm walk: {} processes, {} fds, {} sockets, {allocs} allocations",
        stats.processes, stats.fds, stats.sockets
    );
    assert!(stats.processes > 3 && stats.sockets >= 20, "{stats:?}");
    assert_eq!(allocs, 0, "a warm walk allocated");
    let mut cstats = Stats::default();
    let (_, allocs) = (0..5).map(|_| counted(|| conns(&mut cstats))).min_by_key(|r| r.1).unwrap();
    println!("warm connections: {} sockets, {allocs} allocations", cstats.sockets);
    assert_eq!(allocs, 0, "a warm connections walk allocated");
    // Its two snapshots take turns: a warm changes call allocates nothing either.
    let (_, allocs) = (0..5).map(|_| counted(|| changes(&mut cstats))).min_by_key(|r| r.1).unwrap();
    println!("warm changes: {} sockets, {allocs} allocations", cstats.sockets);
    assert_eq!(allocs, 0, "a warm changes call allocated");
    // With PID/fd owners too (a kernel without the BPF scan, or a caller
    // without CAP_BPF), which asks the sockets no line listed their namespace.
    w.set_owner_scan(procspy::OwnerScan::Proc);
    for _ in 0..3 {
        conns(&mut cstats);
    }
    let (_, allocs) = (0..5).map(|_| counted(|| conns(&mut cstats))).min_by_key(|r| r.1).unwrap();
    println!("warm connections, PID/fd owners: {} sockets, {allocs} allocations", cstats.sockets);
    assert_eq!(allocs, 0, "a warm connections walk with PID/fd owners allocated");
    // The counter counts: a cold walker allocates its buffers.
    let (_, cold) = counted(|| Walker::new(None).unwrap());
    assert!(cold > 0);
}
