//! `procspy_walker_stop` from a real signal handler, as an agent stopping
//! on SIGTERM does: the walk waiting for a tick ends at once.

use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::{Duration, Instant};

use nix::sys::pthread::{pthread_kill, pthread_self};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use procspy_ffi::*;

static WALKER: AtomicPtr<procspy_walker> = AtomicPtr::new(ptr::null_mut());

extern "C" fn on_sigterm(_: i32) {
    procspy_walker_stop(WALKER.load(Ordering::SeqCst));
}

unsafe extern "C" fn count(userdata: *mut std::ffi::c_void, _: *const procspy_socket) -> i32 {
    unsafe { *userdata.cast::<u64>() += 1 };
    0
}

#[test]
fn stop_from_a_signal_handler_ends_a_waiting_walk() {
    let mut w = ptr::null_mut();
    assert_eq!(procspy_walker_new(ptr::null(), &mut w), procspy_status::PROCSPY_OK);
    WALKER.store(w, Ordering::SeqCst);
    let action = SigAction::new(SigHandler::Handler(on_sigterm), SaFlags::empty(), SigSet::empty());
    unsafe { sigaction(Signal::SIGTERM, &action) }.unwrap();
    assert_eq!(procspy_walker_set_rate_limit(w, 0, 60_000_000_000), procspy_status::PROCSPY_OK);

    let walking = pthread_self();
    let (tx, rx) = std::sync::mpsc::channel();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        let sent = Instant::now();
        pthread_kill(walking, Signal::SIGTERM).unwrap();
        tx.send(sent).unwrap();
    });
    let mut n = 0u64;
    let mut stats = procspy_walk_stats::default();
    let r = procspy_walker_walk(w, ptr::null_mut(), 0, Some(count), (&raw mut n).cast(), &mut stats);
    let done = Instant::now();
    killer.join().unwrap();
    let sent = rx.recv().unwrap();
    assert_eq!(r, procspy_status::PROCSPY_STOPPED);
    // 10 ms on real hardware; a kernel under software emulation (the
    // kernel matrix) runs slower by PROCSPY_TEST_TIME_SCALE.
    let scale = std::env::var("PROCSPY_TEST_TIME_SCALE").map_or(1, |v| v.parse().unwrap());
    assert!(done - sent < Duration::from_millis(10) * scale, "ended {:?} after the signal", done - sent);
    assert_eq!((n, stats.ticks), (0, 1), "stopped while waiting for the first tick");
    let r = procspy_walker_walk(w, ptr::null_mut(), 0, Some(count), (&raw mut n).cast(), ptr::null_mut());
    assert_eq!(r, procspy_status::PROCSPY_STOPPED, "stop is final");
    WALKER.store(ptr::null_mut(), Ordering::SeqCst);
    procspy_walker_free(w);
}
