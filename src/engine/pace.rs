//! Rate limiting and stopping. `Stop` is an atomic flag plus an eventfd, so
//! `request` is one store and one `write(2)`: lock-free and
//! async-signal-safe. A paced wait polls that eventfd, so it ends at once.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::time::TimeSpec;

/// A final, wake-up stop request.
#[derive(Debug)]
pub struct Stop {
    flag: AtomicBool,
    wake: EventFd,
}

impl Stop {
    pub fn new() -> Result<Self, Errno> {
        let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        Ok(Self { flag: AtomicBool::new(false), wake })
    }

    /// Async-signal-safe: no lock, no allocation.
    pub fn request(&self) {
        self.flag.store(true, Ordering::SeqCst);
        // The counter only saturates; a wake that is already pending is enough.
        let _ = self.wake.write(1);
    }

    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Sleeps until `deadline` or a stop request; true if stopped.
    fn sleep_until(&self, deadline: Instant) -> bool {
        loop {
            if self.is_set() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let mut fds = [PollFd::new(self.wake.as_fd(), PollFlags::POLLIN)];
            let left = TimeSpec::from_duration(deadline - now);
            match ppoll(&mut fds, Some(left), None) {
                Ok(_) | Err(Errno::EINTR) => {}
                // poll cannot fail on one valid fd short of ENOMEM; don't spin.
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }
}

/// A ticker on a fixed grid, like Go's `time.Ticker`: the first tick comes
/// one interval after the ticker starts; a tick missed while busy is taken
/// at once, and the rest of the missed ones are dropped.
#[derive(Debug, Default)]
pub struct Ticker {
    interval: Duration,
    next: Option<Instant>,
}

impl Ticker {
    /// Waits for the next tick with `interval` (0 = don't wait). Changing the
    /// interval restarts the grid. Returns false if stopped.
    pub fn tick(&mut self, interval: Duration, stop: &Stop) -> bool {
        if interval != self.interval {
            self.interval = interval;
            self.next = None;
        }
        if interval.is_zero() {
            return !stop.is_set();
        }
        let next = *self.next.get_or_insert_with(|| Instant::now() + interval);
        if stop.sleep_until(next) {
            return false;
        }
        let late = Instant::now().saturating_duration_since(next);
        let skipped = (late.as_nanos() / interval.as_nanos()) as u32;
        self.next = Some(next + interval * (skipped + 1));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn ticks_fall_on_a_grid_and_one_missed_tick_is_immediate() {
        let stop = Stop::new().unwrap();
        let mut t = Ticker::default();
        let i = Duration::from_millis(40);
        let t0 = Instant::now();
        assert!(t.tick(i, &stop));
        assert!(t0.elapsed() >= i);
        assert!(t.tick(i, &stop));
        assert!(t0.elapsed() >= 2 * i);
        std::thread::sleep(3 * i);
        let t1 = Instant::now();
        assert!(t.tick(i, &stop));
        assert!(t1.elapsed() < i, "a missed tick is pending");
        let t2 = Instant::now();
        assert!(t.tick(i, &stop));
        assert!(t2.elapsed() > Duration::ZERO && t2.elapsed() <= i + Duration::from_millis(50));
    }

    #[test]
    fn zero_interval_never_waits() {
        let stop = Stop::new().unwrap();
        let mut t = Ticker::default();
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert!(t.tick(Duration::ZERO, &stop));
        }
        assert!(t0.elapsed() < Duration::from_millis(100));
    }

    #[test]
    fn stop_wakes_a_waiting_tick_and_is_final() {
        let stop = Arc::new(Stop::new().unwrap());
        let s2 = stop.clone();
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let at = Instant::now();
            s2.request();
            at
        });
        let mut t = Ticker::default();
        assert!(!t.tick(Duration::from_secs(60), &stop));
        let woke = Instant::now();
        let asked = stopper.join().unwrap();
        // Generous: parallel unit tests share 2 cores; the C harness and
        // tests/signal.rs hold the 10 ms bound.
        assert!(woke - asked < Duration::from_millis(50), "woke {:?} after stop", woke - asked);
        assert!(!t.tick(Duration::ZERO, &stop));
        assert!(!t.tick(Duration::from_secs(60), &stop));
    }
}
