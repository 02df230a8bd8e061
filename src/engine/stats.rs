//! What a walk saw, counted as it went.

/// What a walk saw. Filled on every return of a walk, failed or not. Each
/// field is the C field of the same name, which says what it counts (in
/// `include/procspy.h`): `procspy_walk_stats` has the first nine,
/// `procspy_walk_stats_ext` the rest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub namespaces: u64,
    pub processes: u64,
    pub skipped: u64,
    pub fds: u64,
    pub sockets: u64,
    pub bytes_written: u64,
    pub bytes_needed: u64,
    pub ticks: u64,
    pub elapsed_ns: u64,
    pub accounted: u64,
    pub dropped: u64,
    pub netns_mismatch: u64,
    pub snapshot_bytes: u64,
    pub closed_lost: u64,
    pub netns_found: u64,
    pub netns_unreachable: u64,
    pub netns_unreachable_fds: u64,
    pub closes_stalled: u64,
    pub files_truncated: u64,
    pub tables_unreadable: u64,
    pub events: u64,
    pub events_lost: u64,
    pub events_dropped: u64,
}
