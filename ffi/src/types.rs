//! The public types of the C ABI, laid out as `procspy.h` shows them.

use std::ffi::{c_char, c_int, c_void};

use procspy::{ChangeKind, Connection, EventKind, Protocol, Socket, Stats, StopToken};

/// The result of every call that can fail. Values are fixed; new ones are
/// only ever appended. `procspy_status_str` names any value, known or not.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum procspy_status {
    /// Success.
    PROCSPY_OK = 0,
    /// `procspy_walker_stop()` was called (before or during this walk).
    PROCSPY_STOPPED = 1,
    /// A callback returned non-zero.
    PROCSPY_CALLBACK_ABORTED = 2,
    /// The buffer was too small; `stats->bytes_needed` says how much is needed.
    PROCSPY_BUFFER_TOO_SMALL = 3,
    /// A pointer argument that must not be NULL was NULL.
    PROCSPY_NULL_ARGUMENT = 4,
    /// An argument was out of range.
    PROCSPY_INVALID_ARGUMENT = 5,
    /// A system call failed where no other way was left: the proc root (or,
    /// for calls that name pids, such a pid's file) could not be read, a
    /// netlink dump went unanswered for 5 s, an explicit
    /// `PROCSPY_SOURCE_NETLINK` or `PROCSPY_OWNERS_BPF` met a failing system
    /// call (EPERM without the capabilities, EMFILE), or a walker's eventfd
    /// could not be made. `procspy_last_error` names the call, the path and
    /// the errno; the next call tries again.
    PROCSPY_IO = 6,
    /// A walk on this walker is already running; or, in a child forked
    /// during a walk, that walk, which goes on in the parent only.
    PROCSPY_BUSY = 7,
    /// An internal fault was caught at the boundary; the walker stays usable.
    PROCSPY_PANIC = 8,
    /// The running kernel lacks what was asked for, or refused it (an
    /// explicit `PROCSPY_OWNERS_BPF` where the BPF owner scan cannot load);
    /// `procspy_last_error` says what, for a verifier's refusal with the end
    /// of its log.
    PROCSPY_UNSUPPORTED = 9,
}

/// TCP tables (`tcp`, `tcp6`), for `procspy_walker_connections`' `protocols`.
pub const PROCSPY_PROTO_TCP: u32 = 1;
/// UDP tables (`udp`, `udp6`), for `procspy_walker_connections`' `protocols`.
pub const PROCSPY_PROTO_UDP: u32 = 2;

/// `protocol` of a record: the C constant of the engine's protocol.
pub(crate) fn protocol_to_c(p: Protocol) -> u8 {
    let c = match p {
        Protocol::Tcp => PROCSPY_PROTO_TCP,
        Protocol::Udp => PROCSPY_PROTO_UDP,
    };
    c as u8
}

/// The engine's protocol a C constant names, if it names one.
pub(crate) fn protocol_of_c(c: u32) -> Option<Protocol> {
    match c {
        PROCSPY_PROTO_TCP => Some(Protocol::Tcp),
        PROCSPY_PROTO_UDP => Some(Protocol::Udp),
        _ => None,
    }
}

/// `procspy_walker_set_source`: no tables for a namespace whose every
/// socket the BPF owner scan holds, netlink `sock_diag` where it can be used
/// (entering another namespace needs `CAP_SYS_ADMIN`), the text tables
/// elsewhere. The default.
pub const PROCSPY_SOURCE_AUTO: u32 = 0;
/// `procspy_walker_set_source`: the text tables under `PID/net/` only.
pub const PROCSPY_SOURCE_TEXT: u32 = 1;
/// `procspy_walker_set_source`: netlink only; a namespace it can't be used
/// for makes `procspy_walker_connections` fail with `PROCSPY_IO`.
pub const PROCSPY_SOURCE_NETLINK: u32 = 2;

/// `procspy_walker_set_owner_scan`: the kernel's BPF `task_file` iterator
/// where it can be loaded (`CAP_BPF` and `CAP_PERFMON`, kernel BTF, the
/// host's own procfs as the proc root, seen from the initial pid namespace),
/// `PID/fd` elsewhere. The default.
pub const PROCSPY_OWNERS_AUTO: u32 = 0;
/// `procspy_walker_set_owner_scan`: list `PID/fd` of every pid and `stat()`
/// each entry.
pub const PROCSPY_OWNERS_PROC: u32 = 1;
/// `procspy_walker_set_owner_scan`: the BPF iterator only; where it can't be
/// used `procspy_walker_connections` fails: `PROCSPY_UNSUPPORTED` where the
/// kernel lacks it or its verifier refuses it, `PROCSPY_IO` where a system
/// call fails (EPERM without CAP_BPF and CAP_PERFMON), and
/// `PROCSPY_INVALID_ARGUMENT` for a proc root that is not the host's.
pub const PROCSPY_OWNERS_BPF: u32 = 2;

/// Kernel state ESTABLISHED (UDP: a connected socket).
pub const PROCSPY_STATE_ESTABLISHED: u8 = 1;
/// Kernel state SYN_SENT.
pub const PROCSPY_STATE_SYN_SENT: u8 = 2;
/// Kernel state SYN_RECV.
pub const PROCSPY_STATE_SYN_RECV: u8 = 3;
/// Kernel state FIN_WAIT1.
pub const PROCSPY_STATE_FIN_WAIT1: u8 = 4;
/// Kernel state FIN_WAIT2.
pub const PROCSPY_STATE_FIN_WAIT2: u8 = 5;
/// Kernel state TIME_WAIT.
pub const PROCSPY_STATE_TIME_WAIT: u8 = 6;
/// Kernel state CLOSE (UDP: an unconnected socket).
pub const PROCSPY_STATE_CLOSE: u8 = 7;
/// Kernel state CLOSE_WAIT.
pub const PROCSPY_STATE_CLOSE_WAIT: u8 = 8;
/// Kernel state LAST_ACK.
pub const PROCSPY_STATE_LAST_ACK: u8 = 9;
/// Kernel state LISTEN.
pub const PROCSPY_STATE_LISTEN: u8 = 10;
/// Kernel state CLOSING.
pub const PROCSPY_STATE_CLOSING: u8 = 11;
/// Kernel state NEW_SYN_RECV.
pub const PROCSPY_STATE_NEW_SYN_RECV: u8 = 12;

/// Each `PROCSPY_STATE_*` is the kernel's number of the state it names.
const _: () = {
    use procspy::TcpState as S;
    let pairs = [
        (PROCSPY_STATE_ESTABLISHED, S::Established),
        (PROCSPY_STATE_SYN_SENT, S::SynSent),
        (PROCSPY_STATE_SYN_RECV, S::SynRecv),
        (PROCSPY_STATE_FIN_WAIT1, S::FinWait1),
        (PROCSPY_STATE_FIN_WAIT2, S::FinWait2),
        (PROCSPY_STATE_TIME_WAIT, S::TimeWait),
        (PROCSPY_STATE_CLOSE, S::Close),
        (PROCSPY_STATE_CLOSE_WAIT, S::CloseWait),
        (PROCSPY_STATE_LAST_ACK, S::LastAck),
        (PROCSPY_STATE_LISTEN, S::Listen),
        (PROCSPY_STATE_CLOSING, S::Closing),
        (PROCSPY_STATE_NEW_SYN_RECV, S::NewSynRecv),
    ];
    let mut i = 0;
    while i < pairs.len() {
        assert!(pairs[i].0 == pairs[i].1.number());
        i += 1;
    }
    assert!(pairs.len() == S::all().len());
};

/// State mask (`1u << state`) that lets every state through.
pub const PROCSPY_STATES_ALL: u32 = u32::MAX;
/// ESTABLISHED | FIN_WAIT1 | FIN_WAIT2 | CLOSE_WAIT: what Weave Scope's
/// procspy calls a connection.
pub const PROCSPY_STATES_CONNECTED: u32 = (1 << 1) | (1 << 4) | (1 << 5) | (1 << 8);
/// LISTEN only.
pub const PROCSPY_STATES_LISTEN: u32 = 1 << 10;

/// Each `PROCSPY_STATES_*` is the Rust API's mask of the same name.
const _: () = {
    use procspy::StateMask;
    assert!(PROCSPY_STATES_ALL == StateMask::ALL.bits());
    assert!(PROCSPY_STATES_CONNECTED == StateMask::CONNECTED.bits());
    assert!(PROCSPY_STATES_LISTEN == StateMask::LISTEN.bits());
};

/// A walker over one proc root. Opaque; create with `procspy_walker_new`,
/// free with `procspy_walker_free`.
pub struct procspy_walker {
    pub(crate) inner: procspy::Walker,
}

/// Stops a walker's walks as `procspy_walker_stop` does, and stays valid
/// after the walker is freed (it then stops nothing). Opaque; create with
/// `procspy_walker_stop_token`, free with `procspy_stop_token_free`.
pub struct procspy_stop_token {
    pub(crate) inner: StopToken,
}

/// One socket file descriptor of one process. Lent to a callback: valid
/// until it returns. May grow at its end in later versions.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct procspy_socket {
    /// Socket inode = the `inode` column of /proc/net/tcp etc.
    pub inode: u64,
    /// Inode of the process's network namespace.
    pub netns: u64,
    /// Process start, clock ticks after boot (/proc/PID/stat field 22);
    /// (pid, start_time) names a process across pid reuse.
    pub start_time: u64,
    /// Process id, as the calling process sees it.
    pub pid: i32,
    /// The file descriptor number.
    pub fd: i32,
    /// Process name (comm), NUL-terminated; valid during the callback only.
    pub name: *const c_char,
    /// Bytes before the NUL; names may hold any byte but NUL.
    pub name_len: usize,
}

/// One line of a kernel socket table. Lent to a callback: valid until it
/// returns. May grow at its end in later versions.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct procspy_connection {
    /// Socket inode; 0 for sockets no longer owned (TIME_WAIT).
    pub inode: u64,
    /// Namespace whose table listed it; 0 from `procspy_parse_tcp`.
    pub netns: u64,
    /// `PROCSPY_PROTO_TCP` or `PROCSPY_PROTO_UDP`.
    pub protocol: u8,
    /// 4 or 6 (a v4-mapped address in tcp6 stays 6).
    pub family: u8,
    /// Kernel state number (`PROCSPY_STATE_*`).
    pub state: u8,
    /// Network byte order; IPv4 uses the first 4 bytes, the rest are zero.
    pub local_addr: [u8; 16],
    /// Network byte order; IPv4 uses the first 4 bytes, the rest are zero.
    pub remote_addr: [u8; 16],
    /// Host byte order.
    pub local_port: u16,
    /// Host byte order.
    pub remote_port: u16,
    /// Owner uid of the socket, as the calling process sees it.
    pub uid: u32,
    /// The process holding it, NULL if none is visible; if several hold
    /// it, the one with the lowest pid (and of its fds the lowest).
    pub owner: *const procspy_socket,
}

/// What a walk saw; filled by every walk, whatever it returns. The caller
/// allocates it, so its layout is frozen for ABI 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct procspy_walk_stats {
    /// Network namespaces seen.
    pub namespaces: u64,
    /// Pids examined.
    pub processes: u64,
    /// Pids that vanished or could not be read, and fds that could not be
    /// stat()ed (closed meanwhile, or not ours to follow).
    pub skipped: u64,
    /// fd entries stat()ed; with the BPF owner scan (connections), the
    /// socket fds it listed.
    pub fds: u64,
    /// Socket fds found (walk: = records delivered).
    pub sockets: u64,
    /// walk: table bytes now in the buffer; connections: the most held at once.
    pub bytes_written: u64,
    /// walk: table bytes the walk produced; connections: the largest one
    /// namespace needed. More than the capacity means too small.
    pub bytes_needed: u64,
    /// Rate-limit ticks passed (one per namespace, or one before the BPF
    /// owner scan, and one per fd block), whether or not they had to wait.
    pub ticks: u64,
    /// Wall time of the call.
    pub elapsed_ns: u64,
}

/// What happened to a connection between two `procspy_walker_changes`
/// calls. Values are fixed; new ones are only ever appended; 0 is never one.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum procspy_change_kind {
    /// Listed now, not by the previous call (every connection, at the first call).
    PROCSPY_CHANGE_APPEARED = 1,
    /// Listed by the previous call, not now; `connection` is as it was then.
    PROCSPY_CHANGE_DISAPPEARED = 2,
    /// Listed by both, in another state: `old_state` was its state.
    PROCSPY_CHANGE_STATE = 3,
    /// Listed by both, with another owner: `old_owner` was its owner (NULL
    /// where none was visible; `connection->owner` is NULL where none is now).
    PROCSPY_CHANGE_OWNER = 4,
    /// Listed by neither call: it opened and closed between them, as the
    /// kernel's destroy notification tells it (see
    /// `procspy_walker_changes`): inode 0, the state it was freed in (TCP:
    /// `PROCSPY_STATE_CLOSE`; a connected UDP socket: ESTABLISHED), its uid,
    /// the tuple as far as the kernel kept it, and its owner where the BPF
    /// tracer saw one (else NULL).
    PROCSPY_CHANGE_SEEN_CLOSED = 5,
}

/// One change, lent to a `procspy_change_fn`: it, its connection and the
/// owners they point at live until the callback returns. May grow at its
/// end in later versions.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct procspy_change {
    /// What happened.
    pub kind: procspy_change_kind,
    /// The connection's state at the previous call; 0 for
    /// `PROCSPY_CHANGE_APPEARED` and `PROCSPY_CHANGE_SEEN_CLOSED`.
    pub old_state: u8,
    /// The connection now (for `PROCSPY_CHANGE_DISAPPEARED`, as the previous
    /// call saw it), with its owner where one is visible. Never NULL.
    pub connection: *const procspy_connection,
    /// Its owner at the previous call; NULL for `PROCSPY_CHANGE_APPEARED`
    /// and `PROCSPY_CHANGE_SEEN_CLOSED`, and where the previous call saw no
    /// owner.
    pub old_owner: *const procspy_socket,
}

/// Called once per change, synchronously on the walking thread. The
/// record lives until the callback returns. Return 0 to go on, non-zero to
/// end the call (`PROCSPY_CALLBACK_ABORTED`; it then keeps nothing, and
/// the next call reports against the same previous snapshot).
pub type procspy_change_fn =
    Option<unsafe extern "C" fn(userdata: *mut c_void, change: *const procspy_change) -> c_int>;

impl From<ChangeKind> for procspy_change_kind {
    fn from(k: ChangeKind) -> Self {
        match k {
            ChangeKind::Appeared => procspy_change_kind::PROCSPY_CHANGE_APPEARED,
            ChangeKind::Disappeared => procspy_change_kind::PROCSPY_CHANGE_DISAPPEARED,
            ChangeKind::State => procspy_change_kind::PROCSPY_CHANGE_STATE,
            ChangeKind::Owner => procspy_change_kind::PROCSPY_CHANGE_OWNER,
            ChangeKind::SeenClosed => procspy_change_kind::PROCSPY_CHANGE_SEEN_CLOSED,
        }
    }
}

/// What a live event tells (`procspy_walker_events`). Values are fixed;
/// new ones are only ever appended; 0 is never one.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum procspy_event_kind {
    /// TCP: CLOSE -> SYN_SENT, in the connecting process (its local port is
    /// not bound yet: 0); UDP: a connect.
    PROCSPY_EVENT_CONNECT = 1,
    /// A TCP connection accepted, in the accepting process.
    PROCSPY_EVENT_ACCEPT = 2,
    /// The process closed the socket (its last fd): TCP, or a UDP socket
    /// that connected or sent before.
    PROCSPY_EVENT_CLOSE = 3,
    /// A UDP socket's first send; the remote address is the datagram's.
    PROCSPY_EVENT_SEND = 4,
    /// Any other TCP state change: `old_state` to the connection's state.
    PROCSPY_EVENT_STATE = 5,
    /// TCP: CLOSE -> LISTEN, in the listening process.
    PROCSPY_EVENT_LISTEN = 6,
    /// Events were lost before this one (`lost` of them), the tracer's ring
    /// being full: re-read a snapshot (`procspy_walker_connections`) to
    /// know what is open. Its connection is all zeros.
    PROCSPY_EVENT_LOST = 7,
}

impl From<EventKind> for procspy_event_kind {
    fn from(k: EventKind) -> Self {
        match k {
            EventKind::Connect => procspy_event_kind::PROCSPY_EVENT_CONNECT,
            EventKind::Accept => procspy_event_kind::PROCSPY_EVENT_ACCEPT,
            EventKind::Close => procspy_event_kind::PROCSPY_EVENT_CLOSE,
            EventKind::Send => procspy_event_kind::PROCSPY_EVENT_SEND,
            EventKind::State => procspy_event_kind::PROCSPY_EVENT_STATE,
            EventKind::Listen => procspy_event_kind::PROCSPY_EVENT_LISTEN,
            EventKind::Lost => procspy_event_kind::PROCSPY_EVENT_LOST,
        }
    }
}

/// One live event, lent to a `procspy_event_fn`: it, its connection and the
/// owner it points at live until the callback returns. May grow at its end
/// in later versions.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct procspy_event {
    /// What happened.
    pub kind: procspy_event_kind,
    /// `PROCSPY_EVENT_STATE`: the state it left; 0 otherwise.
    pub old_state: u8,
    /// The socket as the kernel held it then (its inode 0 where it had no
    /// file: not accepted yet, or closed), with its owner: the process that
    /// acted where the hook runs in it (connect, listen, accept, close, a
    /// UDP send; a close or shutdown entering FIN_WAIT1 or LAST_ACK), else
    /// the one seen acting on that socket before, else NULL; never the
    /// process a softirq interrupted. The owner's pid is the initial pid
    /// namespace's, its `fd` -1, its `start_time` and name its thread group
    /// leader's. Never NULL.
    pub connection: *const procspy_connection,
    /// When, `CLOCK_BOOTTIME` ns.
    pub time_ns: u64,
    /// The kernel's socket cookie: one socket's events share it.
    pub cookie: u64,
    /// `PROCSPY_EVENT_LOST`: how many were lost; 0 otherwise.
    pub lost: u64,
}

/// Called once per event, synchronously on the calling thread. The record
/// lives until the callback returns. Return 0 to go on, non-zero to end the
/// call (`PROCSPY_CALLBACK_ABORTED`; the events not yet delivered wait for
/// the next call).
pub type procspy_event_fn = Option<unsafe extern "C" fn(userdata: *mut c_void, event: *const procspy_event) -> c_int>;

/// Counters of a walk that the frozen `procspy_walk_stats` has no room for,
/// copied by `procspy_walker_stats_ext`. Fields are only ever added at the
/// end.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct procspy_walk_stats_ext {
    /// connections: namespaces listed from the BPF owner scan, their tables
    /// not read.
    pub accounted: u64,
    /// connections, changes: netlink messages not believed and dropped (not
    /// sent by the kernel, not for this walker's socket or request, a
    /// destroy notification not sent to exactly one destroy group, or
    /// unreadable). Each socket is connected to the kernel, which turns away
    /// messages from other sockets; this counts what got past that.
    pub dropped: u64,
    /// connections: pids skipped (also counted in `skipped`) because their
    /// namespace file was not the namespace they were grouped by: the pid
    /// was reused meanwhile, or the file is no namespace.
    pub netns_mismatch: u64,
    /// changes: the bytes of the snapshot it kept for the next call (its
    /// connections, their addresses, their owners' processes and names); 0
    /// where it kept none.
    pub snapshot_bytes: u64,
    /// changes: times destroy notifications were lost (the kernel's queue
    /// for a namespace overflowed since the last call, or more were waiting
    /// than a walker keeps), plus the namespaces left unsubscribed for want
    /// of room: connections that opened and closed then may be missing from
    /// the `PROCSPY_CHANGE_SEEN_CLOSED` events.
    pub closed_lost: u64,
    /// connections, changes, query: network namespaces found that no
    /// process is in (a thread's own, an nsfs bind mount's such as
    /// `/run/netns/NAME`, one a process holds open by an fd, one a socket
    /// lives in); also counted in `procspy_walk_stats.namespaces`.
    pub netns_found: u64,
    /// Of those, the ones whose tables could not be read (skipped, never an
    /// error): the way in was gone by the time it was taken (a mount
    /// removed, an fd closed), entering was refused (`CAP_SYS_ADMIN`), the
    /// way in would have waited on a filesystem's server (an nsfs mount
    /// below a FUSE mount), or the text source was chosen for a namespace
    /// no thread is in.
    pub netns_unreachable: u64,
    /// connections, changes, query: of `netns_unreachable`, the namespaces
    /// not entered for want of an fd (the process's `RLIMIT_NOFILE` or the
    /// system's limit was reached). A pass holds a bounded number of fds
    /// however many namespaces it finds.
    pub netns_unreachable_fds: u64,
    /// connections, changes, query: sockets of other processes not asked
    /// where they live (nor used to enter a namespace) because copies taken
    /// before (`pidfd_getfd`) had not all been closed yet: the holder put a
    /// file there whose close does not return (a FUSE server that does not
    /// answer, a socket lingering on close). Those closes are made on a
    /// thread of the library's own and never on the caller's.
    pub closes_stalled: u64,
    /// connections, changes, query: files not read whole because they
    /// outgrew their bound (a `PID/mountinfo` past 16 MiB, or past what
    /// one pass reads of them all, 64 MiB): nsfs mounts listed past the cut
    /// are not looked at.
    pub files_truncated: u64,
    /// connections, changes, query: socket tables of a namespace (`tcp`,
    /// `udp`, their v6) that could not be read while others of it were;
    /// the lines of those that were read are delivered.
    pub tables_unreadable: u64,
    /// events: events delivered.
    pub events: u64,
    /// events: events the kernel could not write, the tracer's ring being
    /// full (each loss also comes as a `PROCSPY_EVENT_LOST` event).
    pub events_lost: u64,
    /// events: records in the ring that made no sense (an unknown kind,
    /// family, protocol or state, a wrong length), dropped.
    pub events_dropped: u64,
}

/// Called once per socket fd, synchronously on the walking thread. The
/// record lives until the callback returns. Return 0 to go on, non-zero to
/// end the walk (it then returns `PROCSPY_CALLBACK_ABORTED`).
pub type procspy_socket_fn =
    Option<unsafe extern "C" fn(userdata: *mut c_void, socket: *const procspy_socket) -> c_int>;

/// Called once per table line, synchronously on the walking thread. The
/// record (and its owner) lives until the callback returns. Return 0 to go
/// on, non-zero to end the walk (`PROCSPY_CALLBACK_ABORTED`).
pub type procspy_connection_fn =
    Option<unsafe extern "C" fn(userdata: *mut c_void, connection: *const procspy_connection) -> c_int>;

impl From<&Socket<'_>> for procspy_socket {
    fn from(s: &Socket<'_>) -> Self {
        procspy_socket {
            inode: s.inode,
            netns: s.netns,
            start_time: s.start_time,
            pid: s.pid,
            fd: s.fd,
            name: s.name.as_ptr(),
            name_len: s.name.to_bytes().len(),
        }
    }
}

impl procspy_connection {
    /// The record of `c`, pointing at `owner` (which must outlive it).
    pub(crate) fn new(c: &Connection<'_>, owner: Option<&procspy_socket>) -> Self {
        procspy_connection {
            inode: c.conn.inode,
            netns: c.netns,
            protocol: protocol_to_c(c.protocol),
            family: c.conn.family,
            state: c.conn.state,
            local_addr: c.conn.local_addr,
            remote_addr: c.conn.remote_addr,
            local_port: c.conn.local_port,
            remote_port: c.conn.remote_port,
            uid: c.conn.uid,
            owner: owner.map_or(std::ptr::null(), |o| o as *const _),
        }
    }
}

impl From<&Stats> for procspy_walk_stats_ext {
    fn from(s: &Stats) -> Self {
        procspy_walk_stats_ext {
            accounted: s.accounted,
            dropped: s.dropped,
            netns_mismatch: s.netns_mismatch,
            snapshot_bytes: s.snapshot_bytes,
            closed_lost: s.closed_lost,
            netns_found: s.netns_found,
            netns_unreachable: s.netns_unreachable,
            netns_unreachable_fds: s.netns_unreachable_fds,
            closes_stalled: s.closes_stalled,
            files_truncated: s.files_truncated,
            tables_unreadable: s.tables_unreadable,
            events: s.events,
            events_lost: s.events_lost,
            events_dropped: s.events_dropped,
        }
    }
}

impl From<&Stats> for procspy_walk_stats {
    fn from(s: &Stats) -> Self {
        procspy_walk_stats {
            namespaces: s.namespaces,
            processes: s.processes,
            skipped: s.skipped,
            fds: s.fds,
            sockets: s.sockets,
            bytes_written: s.bytes_written,
            bytes_needed: s.bytes_needed,
            ticks: s.ticks,
            elapsed_ns: s.elapsed_ns,
        }
    }
}
