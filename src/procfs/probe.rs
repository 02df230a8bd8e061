//! What the library has learnt about the running kernel, each fact probed
//! once by the first call that needs it, never guessed from a version.
//! They live with the proc root because that is where they are learnt:
//! a walker has one root, so one walker's probes are one kernel's answers.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

/// A fact about the kernel, as far as it has been probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Known {
    /// Not asked yet.
    Unknown,
    Yes,
    No,
}

impl fmt::Display for Known {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Known::Unknown => "not probed yet",
            Known::Yes => "yes",
            Known::No => "no",
        })
    }
}

/// One `Known`, shared between threads: a probe may race another, and both
/// learn the same answer.
#[derive(Debug, Default)]
pub struct Probe(AtomicU8);

impl Probe {
    pub fn get(&self) -> Known {
        match self.0.load(Ordering::Relaxed) {
            1 => Known::Yes,
            2 => Known::No,
            _ => Known::Unknown,
        }
    }

    pub fn set(&self, yes: bool) {
        self.0.store(if yes { 1 } else { 2 }, Ordering::Relaxed);
    }

    pub fn is_no(&self) -> bool {
        self.get() == Known::No
    }
}

/// Every probe of one proc root's kernel but the BPF owner scan, which is
/// loaded once per process (`SockIter::load`).
#[derive(Debug, Default)]
pub struct Probes {
    /// Pids have `ns/net` (Linux 3.8); no: only a per-namespace proc file
    /// (`net/dev`) tells namespaces apart, and none can be entered.
    pub ns_file: Probe,
    /// The IPv6 tables exist.
    pub v6: Probe,
    /// sock_diag takes one TCP dump of both families (`AF_UNSPEC`).
    pub tcp_both: Probe,
    /// `openat2` exists (Linux 5.6), so opens stay beneath the root.
    pub openat2: Probe,
    /// `openat2` walks from the kernel's caches alone (`RESOLVE_CACHED`,
    /// Linux 5.12); no: a walk to a mount point is made on a thread of the
    /// library's own, bounded.
    pub resolve_cached: Probe,
    /// The root is the host's procfs, seen from the initial pid and user
    /// namespaces: the kernel's pids and uids are its own.
    pub kernel_ids: Probe,
}

impl Probes {
    /// Each probe, named as `--diagnose` prints it.
    pub fn each(&self) -> [(&'static str, Known); 6] {
        [
            ("namespace files (PID/ns/net)", self.ns_file.get()),
            ("IPv6 tables", self.v6.get()),
            ("one TCP dump of both families", self.tcp_both.get()),
            ("openat2 (opens beneath the proc root)", self.openat2.get()),
            ("nsfs mount points walked from the kernel's caches alone (RESOLVE_CACHED)", self.resolve_cached.get()),
            ("the proc root shows the kernel's own pids (BPF scan, pidfd_getfd)", self.kernel_ids.get()),
        ]
    }
}
