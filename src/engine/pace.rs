//! Rate limiting and stopping. `Stop` is an atomic flag plus an eventfd, so
//! `request` is one store and one `write(2)`: lock-free and
//! async-signal-safe. A paced wait polls that eventfd, so it ends at once.
//!
//! The eventfd is shared with any child forked meanwhile, the flag is not:
//! only the process that made the `Stop` writes to or waits on it, and a
//! child waits in short slices instead. So a child's stop neither wakes its
//! parent nor is missed by the child.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::time::TimeSpec;

/// How often a forked child, which can't be woken, looks at its stop flag.
const CHILD_SLICE: Duration = Duration::from_millis(5);

/// A final, wake-up stop request.
#[derive(Debug)]
pub struct Stop {
    flag: AtomicBool,
    wake: EventFd,
    /// The process that made it: the only one whose waits the eventfd wakes.
    owner: u32,
}

/// How a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// The fd waited on is readable.
    Ready,
    Stopped,
    TimedOut,
}

impl Stop {
    pub fn new() -> Result<Self, Errno> {
        let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        Ok(Self { flag: AtomicBool::new(false), wake, owner: std::process::id() })
    }

    /// Async-signal-safe: no lock, no allocation.
    pub fn request(&self) {
        self.flag.store(true, Ordering::SeqCst);
        // The counter only saturates; a wake that is already pending is enough.
        if std::process::id() == self.owner {
            let _ = self.wake.write(1);
        }
    }

    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Waits until `fd` (if any) is readable, a stop request, or `deadline`.
    pub fn wait(&self, fd: Option<BorrowedFd<'_>>, deadline: Instant) -> Wait {
        loop {
            if self.is_set() {
                return Wait::Stopped;
            }
            let now = Instant::now();
            if now >= deadline {
                return Wait::TimedOut;
            }
            let owner = std::process::id() == self.owner;
            let left = if owner { deadline - now } else { (deadline - now).min(CHILD_SLICE) };
            let wake = PollFd::new(self.wake.as_fd(), PollFlags::POLLIN);
            let mut set = [fd.map_or_else(|| wake.clone(), |f| PollFd::new(f, PollFlags::POLLIN)), wake];
            // The fd if any, and the eventfd where this process may use it.
            let polled = match (fd.is_some(), owner) {
                (true, true) => &mut set[..],
                (true, false) => &mut set[..1],
                (false, true) => &mut set[1..],
                (false, false) => &mut set[..0],
            };
            match ppoll(polled, Some(TimeSpec::from_duration(left)), None) {
                Ok(_) | Err(Errno::EINTR) => {}
                // poll cannot fail on valid fds short of ENOMEM; don't spin.
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
            let ready = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
            if fd.is_some() && ready(&set[0]) {
                return Wait::Ready;
            }
            if owner && !self.is_set() && ready(&set[1]) {
                // A wake with no stop: a process that shares the eventfd
                // (across fork, with this pid in another pid namespace)
                // wrote it. Drain it, or every wait would spin.
                let _ = self.wake.read();
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
        if stop.wait(None, next) == Wait::Stopped {
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
    fn a_wait_for_an_fd_ends_when_it_is_readable_stopped_or_late() {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
        let (a, b) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).unwrap();
        let stop = Arc::new(Stop::new().unwrap());
        let t0 = Instant::now();
        assert_eq!(stop.wait(Some(a.as_fd()), t0 + Duration::from_millis(30)), Wait::TimedOut);
        assert!(t0.elapsed() >= Duration::from_millis(30));
        nix::unistd::write(&b, b"x").unwrap();
        assert_eq!(stop.wait(Some(a.as_fd()), Instant::now() + Duration::from_secs(60)), Wait::Ready);
        let mut one = [0u8; 1];
        nix::unistd::read(a.as_fd(), &mut one).unwrap();
        let s2 = stop.clone();
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            s2.request();
            Instant::now()
        });
        assert_eq!(stop.wait(Some(a.as_fd()), Instant::now() + Duration::from_secs(60)), Wait::Stopped);
        let woke = Instant::now();
        // Generous, as below: the 10 ms bound is held by the C harness.
        assert!(woke - stopper.join().unwrap() < Duration::from_millis(50));
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
        // ffi/tests/signal.rs hold the 10 ms bound.
        assert!(woke - asked < Duration::from_millis(50), "woke {:?} after stop", woke - asked);
        assert!(!t.tick(Duration::ZERO, &stop));
        assert!(!t.tick(Duration::from_secs(60), &stop));
    }
}
