//! What a walk saw, counted as it went.

/// What a walk saw. Filled on every return of a walk, failed or not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Network namespaces seen.
    pub namespaces: u64,
    /// Pids examined.
    pub processes: u64,
    /// Pids that vanished or could not be read, and fds that could not be
    /// `stat()`ed (closed meanwhile, or not ours to follow).
    pub skipped: u64,
    /// fd entries `stat()`ed; with the BPF owner scan, the socket fds it listed.
    pub fds: u64,
    /// Socket fds found.
    pub sockets: u64,
    /// Table bytes stored (walk), or the most held at once (connections).
    pub bytes_written: u64,
    /// Table bytes produced (walk), or the most one namespace needed (connections).
    pub bytes_needed: u64,
    /// Rate-limit ticks passed, waited for or not.
    pub ticks: u64,
    pub elapsed_ns: u64,
    /// Namespaces whose tables `connections` did not read: the BPF owner
    /// scan held every socket their `sockstat` counts.
    pub accounted: u64,
    /// Netlink messages not believed: not from the kernel, not for our
    /// port id or request, not to one destroy group, or unreadable.
    pub dropped: u64,
    /// Pids whose namespace file was not the namespace they were grouped
    /// by (reused meanwhile, or not a namespace at all); also in `skipped`.
    pub netns_mismatch: u64,
    /// `changes`: the bytes of the snapshot it kept for the next call (its
    /// connections, their addresses, their owners' processes and names);
    /// 0 where it kept none.
    pub snapshot_bytes: u64,
    /// `changes`: times destroy notifications were lost, the kernel's queue
    /// for a namespace having overflowed since the last call, or more being
    /// waiting than a walker keeps.
    pub closed_lost: u64,
    /// Network namespaces found that no listed process is in (a thread's,
    /// an nsfs mount's, one an fd holds or a socket lives in); also in
    /// `namespaces`.
    pub netns_found: u64,
    /// Of those, the ones whose tables could not be read: the way in was
    /// gone (a mount removed, an fd closed) or refused.
    pub netns_unreachable: u64,
    /// Of those, the ones not entered for want of an fd (the process's fd
    /// limit or the system's was reached).
    pub netns_unreachable_fds: u64,
    /// Sockets of other processes not asked where they live (nor used to
    /// enter a namespace) because the copies taken before had not all been
    /// closed: a holder put something there whose close does not return (a
    /// file of a FUSE server that does not answer, a lingering socket).
    pub closes_stalled: u64,
    /// Files not read whole because they outgrew their bound (a
    /// `mountinfo` past 16 MiB, or past what a pass reads of them all).
    pub files_truncated: u64,
    /// Tables of a namespace (`tcp`, `udp`, ...) that could not be read
    /// while others of it were: its lines from those are delivered.
    pub tables_unreadable: u64,
}
