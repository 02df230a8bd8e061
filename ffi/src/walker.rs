//! The walker's entry points.

use std::ffi::{CStr, c_char, c_void};
use std::ops::ControlFlow;
use std::time::Duration;

use super::guard::{Fail, guard};
use super::mem::{caller_buffer, copy_out, give, out_ref, out_reset, put_stats, take_back, walker_ref};
use super::types::*;
use procspy::{
    Change, Connection, Event, OwnerScan, Protocols, Query, Socket, Source, StateMask, Stats, TableBuf, Walker,
};

/// Lends `f` the record of `c`, pointing at its owner's.
fn with_record<R>(c: &Connection<'_>, f: impl FnOnce(&procspy_connection) -> R) -> R {
    let owner = c.owner.as_ref().map(procspy_socket::from);
    f(&procspy_connection::new(c, owner.as_ref()))
}

/// A callback's answer: 0 goes on.
fn verdict(answer: std::ffi::c_int) -> ControlFlow<()> {
    if answer == 0 { ControlFlow::Continue(()) } else { ControlFlow::Break(()) }
}

/// The one body of every call that walks (walk, connections, query,
/// changes, events): its stats zeroed at once, then the walker, the
/// callback (NULL is `PROCSPY_NULL_ARGUMENT` naming `cb_name`) and the
/// buffer `buf`/`cap` checked in that order, then `run` on a fresh `Stats`,
/// which the caller gets whatever the outcome.
fn pass<'a, F>(
    walker: *const procspy_walker,
    (buf, cap): (*mut u8, usize),
    stats: *mut procspy_walk_stats,
    (cb, cb_name): (Option<F>, &'static str),
    run: impl FnOnce(&Walker, &'a mut [std::mem::MaybeUninit<u8>], &mut Stats, F) -> Result<(), Fail>,
) -> Result<(), Fail> {
    put_stats(stats, &Stats::default());
    let w = walker_ref(walker)?;
    let cb = cb.ok_or(Fail::Null(cb_name))?;
    // SAFETY: the caller lends `cap` bytes at `buf` for this call.
    let mem = unsafe { caller_buffer(buf, cap) }?;
    let mut st = Stats::default();
    let r = run(w, mem, &mut st, cb);
    put_stats(stats, &st);
    r
}

/// The tables a connections or changes call asks for: `buf`'s memory as
/// its table buffer (none: the walker's own), and the checked `protocols`
/// and `state_mask`.
fn tables(
    mem: &mut [std::mem::MaybeUninit<u8>],
    protocols: u32,
    state_mask: u32,
) -> Result<(Option<TableBuf<'_>>, Protocols, StateMask), Fail> {
    let protocols = protocols_of(protocols)?;
    Ok(((!mem.is_empty()).then(|| TableBuf::new(mem)), protocols, StateMask::from_bits(state_mask)))
}

/// Calls `cb` with the record of `s`; `ControlFlow::Break` if it said stop.
fn deliver_socket(
    cb: unsafe extern "C" fn(*mut c_void, *const procspy_socket) -> std::ffi::c_int,
    userdata: *mut c_void,
    s: &Socket<'_>,
) -> ControlFlow<()> {
    let rec = procspy_socket::from(s);
    // SAFETY: the caller's callback, given a record that outlives the call.
    verdict(unsafe { cb(userdata, &rec) })
}

/// Calls `cb` with the record of `c`; `ControlFlow::Break` if it said stop.
pub(crate) fn deliver_connection(
    cb: unsafe extern "C" fn(*mut c_void, *const procspy_connection) -> std::ffi::c_int,
    userdata: *mut c_void,
    c: &Connection<'_>,
) -> ControlFlow<()> {
    // SAFETY: the caller's callback, given records that outlive the call.
    with_record(c, |rec| verdict(unsafe { cb(userdata, rec) }))
}

/// The body of both stops: `stop` on the handle, if it is not NULL. No
/// guard: nothing here can panic, and a guard is not async-signal-safe.
fn stop_through<T>(handle: *const T, stop: impl FnOnce(&T)) {
    // SAFETY: a non-NULL handle is live: the header makes that the caller's part.
    if let Some(h) = unsafe { handle.as_ref() } {
        stop(h);
    }
}

/// Each `PROCSPY_SOURCE_*` and the engine's source it names.
const SOURCES: [(u32, Source); 3] = [
    (PROCSPY_SOURCE_AUTO, Source::Auto),
    (PROCSPY_SOURCE_TEXT, Source::Text),
    (PROCSPY_SOURCE_NETLINK, Source::Netlink),
];

/// Each `PROCSPY_OWNERS_*` and the engine's owner scan it names.
const OWNER_SCANS: [(u32, OwnerScan); 3] = [
    (PROCSPY_OWNERS_AUTO, OwnerScan::Auto),
    (PROCSPY_OWNERS_PROC, OwnerScan::Proc),
    (PROCSPY_OWNERS_BPF, OwnerScan::Bpf),
];

/// The body of a setter that takes a C constant: the walker checked, then
/// `c`, which must be one of `table`'s (else invalid, and the message names
/// `what` and the `constants` to use), then the engine's value `apply`ed.
fn set_from_c<T: Copy>(
    walker: *mut procspy_walker,
    c: u32,
    table: &[(u32, T)],
    (what, constants): (&str, &str),
    apply: fn(&Walker, T),
) -> Result<(), Fail> {
    let w = walker_ref(walker)?;
    let value = table.iter().find(|&&(k, _)| k == c).map(|&(_, v)| v);
    apply(w, value.ok_or_else(|| Fail::Invalid(format!("{what} {c}: use a {constants} value")))?);
    Ok(())
}

/// The `protocols` bits as the engine takes them.
fn protocols_of(protocols: u32) -> Result<Protocols, Fail> {
    if protocols == 0 || protocols & !(PROCSPY_PROTO_TCP | PROCSPY_PROTO_UDP) != 0 {
        return Err(Fail::Invalid(format!(
            "protocols {protocols:#x}: use PROCSPY_PROTO_TCP, PROCSPY_PROTO_UDP or both"
        )));
    }
    Ok(Protocols { tcp: protocols & PROCSPY_PROTO_TCP != 0, udp: protocols & PROCSPY_PROTO_UDP != 0 })
}

/// Creates a walker over `proc_root` (NULL: the host's proc root; any bytes
/// but NUL). The root must be a readable directory, else `PROCSPY_IO`.
/// `*out` is set to the new walker, or to NULL on every failure. Free it
/// with `procspy_walker_free`.
#[unsafe(no_mangle)]
#[must_use]
pub extern "C" fn procspy_walker_new(proc_root: *const c_char, out: *mut *mut procspy_walker) -> procspy_status {
    guard("procspy_walker_new", || {
        let out = out_reset(out, "out", std::ptr::null_mut())?;
        // SAFETY: a non-NULL `proc_root` is a NUL-terminated string.
        let root = (!proc_root.is_null()).then(|| unsafe { CStr::from_ptr(proc_root) }.to_bytes());
        give(out, procspy_walker { inner: Walker::new(root)? });
        Ok(())
    })
}

/// Frees a walker. NULL is a no-op. Must not race a walk on it, nor be
/// called from one of its callbacks, nor race `procspy_walker_stop` on it:
/// a signal handler that may run while it is freed stops the walker
/// through a `procspy_stop_token` instead.
#[unsafe(no_mangle)]
pub extern "C" fn procspy_walker_free(walker: *mut procspy_walker) {
    // SAFETY: a non-NULL `walker` came from `procspy_walker_new` and is freed once.
    let _ = guard("procspy_walker_free", || unsafe { take_back(walker) });
}

/// Paces walks: a tick before each namespace and after every
/// `fd_block_size` fd stats (0 = no per-fd limit), ticks `tick_ns` apart
/// (0 = never wait, the default). Ticks fall on a fixed grid that starts
/// one `tick_ns` after the change; a tick missed while busy is taken at
/// once, as with a Go ticker. May be called during a walk (from its
/// callback or another thread); takes effect at the next tick.
#[unsafe(no_mangle)]
#[must_use]
pub extern "C" fn procspy_walker_set_rate_limit(
    walker: *mut procspy_walker,
    fd_block_size: u64,
    tick_ns: u64,
) -> procspy_status {
    guard("procspy_walker_set_rate_limit", || {
        let w = walker_ref(walker)?;
        w.set_rate_limit(fd_block_size, Duration::from_nanos(tick_ns));
        Ok(())
    })
}

/// Chooses where `procspy_walker_connections` reads the kernel's socket
/// tables: `PROCSPY_SOURCE_AUTO` (the default: no tables for namespaces the
/// BPF owner scan accounts for, see `procspy_walker_set_owner_scan`, then
/// netlink, then text), `PROCSPY_SOURCE_TEXT` or `PROCSPY_SOURCE_NETLINK`
/// (every namespace's tables from there); anything else is
/// `PROCSPY_INVALID_ARGUMENT`.
/// Netlink gives the same records as the text, for less work in the
/// kernel, and uses no table buffer: a namespace read through it never
/// makes `PROCSPY_BUFFER_TOO_SMALL` and adds nothing to the `bytes_*`
/// stats. `procspy_walker_walk` always copies the text tables. Takes effect
/// at the next call.
#[unsafe(no_mangle)]
#[must_use]
pub extern "C" fn procspy_walker_set_source(walker: *mut procspy_walker, source: u32) -> procspy_status {
    guard("procspy_walker_set_source", || {
        set_from_c(walker, source, &SOURCES, ("source", "PROCSPY_SOURCE_*"), Walker::set_source)
    })
}

/// Chooses how `procspy_walker_connections` finds each socket's owner:
/// `PROCSPY_OWNERS_AUTO` (the default), `PROCSPY_OWNERS_PROC` or
/// `PROCSPY_OWNERS_BPF`; anything else is `PROCSPY_INVALID_ARGUMENT`. Both
/// give the same owners; the BPF iterator lists every process's socket fds
/// in one pass inside the kernel, for about a fifth of the CPU of reading
/// `PID/fd`, and reads each socket's addresses, ports and state as it goes.
/// With `PROCSPY_SOURCE_AUTO`, a namespace whose `net/sockstat` counts
/// exactly the TCP and UDP sockets it found held, with no TIME_WAIT and no
/// connection request pending, is listed from those without reading its
/// tables (the same records; anything no process holds, such as a
/// TIME_WAIT or a connection not yet accepted, sends the namespace to its
/// tables). It is loaded at the first call that uses it and kept with the
/// walker (two fds: the program's link and a one-entry map). With it the
/// owner scan is one pass, so `fd_block_size` ticks count its records and
/// there is no tick per namespace; `fds` and `sockets` count the socket fds
/// it saw (those no pass uses, such as a unix socket in its holder's
/// namespace, are counted in the kernel, not listed). `procspy_walker_walk`
/// always reads `PID/fd`. Takes effect at the next call.
#[unsafe(no_mangle)]
#[must_use]
pub extern "C" fn procspy_walker_set_owner_scan(walker: *mut procspy_walker, scan: u32) -> procspy_status {
    guard("procspy_walker_set_owner_scan", || {
        set_from_c(walker, scan, &OWNER_SCANS, ("owner scan", "PROCSPY_OWNERS_*"), Walker::set_owner_scan)
    })
}

/// Stops the walk in progress within one block of work (within 10 ms if it
/// is waiting for a tick or for the kernel), and makes every later walk
/// return `PROCSPY_STOPPED` at once. Final. Any thread, any time, also from
/// a callback or a signal handler: it is async-signal-safe (one atomic
/// store and one write(2) to an eventfd; no lock, no allocation). NULL is a
/// no-op. It must not race `procspy_walker_free`: where a signal handler
/// may run while the walker is freed, use `procspy_walker_stop_token`. In
/// a child forked from the walker's process it stops the child's walks
/// only, never the parent's.
#[unsafe(no_mangle)]
pub extern "C" fn procspy_walker_stop(walker: *const procspy_walker) {
    stop_through(walker, |w| w.inner.stop());
}

/// Makes a stop token for `walker` (`*out`, NULL on failure):
/// `procspy_stop_token_stop(token)` is `procspy_walker_stop(walker)`, and
/// the token stays valid after `procspy_walker_free(walker)` (it then
/// stops nothing). This is the way for a signal handler to stop walks with
/// no use-after-free at shutdown: the handler reads a token from a global,
/// the program frees the walker whenever it likes, and frees the token only
/// once no handler can run with it any more (after resetting the signal's
/// disposition), or never. Free it with `procspy_stop_token_free`.
#[unsafe(no_mangle)]
#[must_use]
pub extern "C" fn procspy_walker_stop_token(
    walker: *const procspy_walker,
    out: *mut *mut procspy_stop_token,
) -> procspy_status {
    guard("procspy_walker_stop_token", || {
        let out = out_reset(out, "out", std::ptr::null_mut())?;
        give(out, procspy_stop_token { inner: walker_ref(walker)?.stop_token() });
        Ok(())
    })
}

/// `procspy_walker_stop` on the token's walker, or nothing if that walker
/// was freed. Async-signal-safe, like it. NULL is a no-op.
#[unsafe(no_mangle)]
pub extern "C" fn procspy_stop_token_stop(token: *const procspy_stop_token) {
    stop_through(token, |t| t.inner.stop());
}

/// Frees a stop token. NULL is a no-op. Must not race
/// `procspy_stop_token_stop` on it.
#[unsafe(no_mangle)]
pub extern "C" fn procspy_stop_token_free(token: *mut procspy_stop_token) {
    // SAFETY: a non-NULL `token` came from `procspy_walker_stop_token` and is freed once.
    let _ = guard("procspy_stop_token_free", || unsafe { take_back(token) });
}

/// Walks every pid: one `on_socket` call per socket fd (any socket family),
/// namespace by namespace, synchronously on this thread. `buf` receives,
/// per namespace, the tcp then tcp6 table text as the kernel wrote it, plus
/// the re-reads after each rate-limit tick: whole files only.
///
/// `cap == 0` counts only (OK, `bytes_written` 0, `bytes_needed` set);
/// `buf` NULL with `cap > 0` is `PROCSPY_NULL_ARGUMENT`. If the tables
/// don't fit, every socket is still delivered, the buffer keeps the whole
/// files before the first that did not fit, and the result is
/// `PROCSPY_BUFFER_TOO_SMALL`. `stats` may be NULL. Results, first that
/// applies: NULL_ARGUMENT, INVALID_ARGUMENT, BUSY, IO, STOPPED,
/// CALLBACK_ABORTED, BUFFER_TOO_SMALL, OK.
#[unsafe(no_mangle)]
#[must_use]
pub extern "C" fn procspy_walker_walk(
    walker: *mut procspy_walker,
    buf: *mut u8,
    cap: usize,
    on_socket: procspy_socket_fn,
    userdata: *mut c_void,
    stats: *mut procspy_walk_stats,
) -> procspy_status {
    guard("procspy_walker_walk", || {
        pass(walker, (buf, cap), stats, (on_socket, "on_socket"), |w, mem, st, cb| {
            Ok(w.walk(&mut TableBuf::new(mem), st, &mut |s| deliver_socket(cb, userdata, s))?)
        })
    })
}

/// The main job: every line of the chosen tables (`protocols`: a non-empty
/// combination of `PROCSPY_PROTO_TCP` and `PROCSPY_PROTO_UDP`) in every
/// namespace, that passes `state_mask` (`1u << state`, non-zero), once,
/// with the process holding it. Builds a host-wide owner index from every
/// pid's fds first (paced like a walk), then reads each namespace's tables
/// once and joins them; the records of one namespace are contiguous.
///
/// Tables come from netlink `sock_diag` or the text files, as
/// `procspy_walker_set_source` chose (by default netlink where permitted).
/// A netlink reply is believed only from the kernel, for this walker's
/// socket and request (the rest is counted, see
/// `procspy_walker_stats_ext`); a dump the kernel leaves unanswered for 5 s
/// fails (`PROCSPY_IO`, ETIMEDOUT).
///
/// Threads: the calling thread never changes network namespace. To open
/// netlink sockets in other namespaces, the call starts a thread of its own
/// for up to 16 of them at a time, which enters each in turn (`setns`),
/// opens its socket and exits; the call waits for it. That thread has every
/// signal blocked from its start (the calling thread's mask is full for the
/// moment of `pthread_create`, then restored), runs no callback and
/// outlives no call. One more thread may serve a walker: where a call takes
/// a copy of another process's socket (`pidfd_getfd`: a pid query, the
/// namespaces found through sockets), the copy is closed on a thread of the
/// walker's own, made at its first copy with every signal blocked, because
/// a last close can wait as long as the holder wishes (a file of its FUSE
/// server swapped in for the socket, a lingering socket). No call waits for
/// it past 500 ms: while its closes do not return, no more copies are taken
/// and what they would have found is counted (`procspy_walk_stats_ext`).
/// It runs no callback and ends once the walker is freed and its closes
/// have returned. The library creates no other thread.
///
/// `buf`/`cap` is scratch for one namespace's text tables; `cap == 0` means
/// the walker's own, whatever `buf` is. A namespace whose tables don't fit a
/// caller's buffer is skipped before anything of it is delivered, the walk
/// goes on, and the result is `PROCSPY_BUFFER_TOO_SMALL`
/// (`stats->bytes_needed` is the size that makes every namespace fit).
#[unsafe(no_mangle)]
#[must_use]
pub extern "C" fn procspy_walker_connections(
    walker: *mut procspy_walker,
    buf: *mut u8,
    cap: usize,
    protocols: u32,
    state_mask: u32,
    on_connection: procspy_connection_fn,
    userdata: *mut c_void,
    stats: *mut procspy_walk_stats,
) -> procspy_status {
    guard("procspy_walker_connections", || {
        let tables = (protocols, state_mask);
        connections_body(walker, (buf, cap), tables, (on_connection, userdata), stats, || Ok(Query::default()))
    })
}

/// The body of `procspy_walker_connections` and `procspy_walker_query`:
/// the pointers checked, then `query()` (which checks its own arguments),
/// then the pass over the tables `(protocols, state_mask)` choose.
pub(super) fn connections_body<'q>(
    walker: *mut procspy_walker,
    (buf, cap): (*mut u8, usize),
    (protocols, state_mask): (u32, u32),
    (on_connection, userdata): (procspy_connection_fn, *mut c_void),
    stats: *mut procspy_walk_stats,
    query: impl FnOnce() -> Result<Query<'q>, Fail>,
) -> Result<(), Fail> {
    pass(walker, (buf, cap), stats, (on_connection, "on_connection"), |w, mem, st, cb| {
        let query = query()?;
        let (mut out, protocols, states) = tables(mem, protocols, state_mask)?;
        Ok(w.query(out.as_mut(), &query, protocols, states, st, &mut |c| deliver_connection(cb, userdata, c))?)
    })
}

/// What changed since the previous `procspy_walker_changes` call on this
/// walker that returned `PROCSPY_OK`: one `on_change` call per connection
/// that appeared (at the first call, every connection), disappeared,
/// changed state or changed owner (both: two calls, the state first). The
/// arguments and the pass are `procspy_walker_connections`' (`protocols`,
/// `state_mask`, `buf`/`cap`, `stats`); a connection whose state leaves
/// `state_mask` disappears, one that enters it appears, and a change of
/// `protocols` or `state_mask` between calls is reported the same way (a
/// change of source or owner scan changes nothing: the same records).
/// Identity is (netns, protocol, inode), and the tuple for lines without an
/// inode (TIME_WAIT and the like); changes come in that order. Owners are
/// compared as (pid, start time, fd): a reused pid is an owner change, and
/// so is an owner becoming visible or going.
///
/// The whole pass runs before the first change is delivered, and only a
/// call that returns `PROCSPY_OK` keeps what it saw: one that is stopped,
/// aborted by its callback, `PROCSPY_BUFFER_TOO_SMALL` (then nothing is
/// delivered) or failed leaves the previous snapshot as it was, so the next
/// call reports against it again: nothing is lost, and treating an
/// unfinished call's changes as not delivered doubles nothing. The walker
/// keeps that snapshot, about 48 bytes per connection (72 for IPv6) and
/// one entry and name per owning process, so a disappeared connection
/// keeps its owner's name.
/// `on_change` NULL is `PROCSPY_NULL_ARGUMENT`; a call while another runs
/// on the walker is `PROCSPY_BUSY`.
///
/// After those, one `PROCSPY_CHANGE_SEEN_CLOSED` per connection of the
/// chosen protocols (whatever `state_mask`) that opened and closed between
/// two calls, from the kernel's sock_diag destroy notifications: the first
/// call subscribes the namespaces it sees (at most 256, one fd each; the
/// others on the library's namespace thread, as the dump sockets are made),
/// each later one reads what they were
/// told, without waiting, and delivers each freed socket that neither
/// snapshot lists and that the previous call did not report disappeared.
/// The kernel names no process; where the walker's BPF tracer runs
/// (started by `procspy_walker_events_fd` or `procspy_walker_events`; the
/// command's `--watch` starts it), `owner` is the process it saw act on
/// that socket last: the connecting one for a
/// connect, the one that closed it for a close (its pid in the initial pid
/// namespace, `fd` -1); else NULL. A reset socket has
/// lost its remote port, an unbound one its local address. A call that
/// does not return `PROCSPY_OK` keeps them for the next. How the
/// subscriptions are bounded and checked, and what the kernel cannot tell:
/// docs/changes.md in the source tree.
#[unsafe(no_mangle)]
#[must_use]
pub extern "C" fn procspy_walker_changes(
    walker: *mut procspy_walker,
    buf: *mut u8,
    cap: usize,
    protocols: u32,
    state_mask: u32,
    on_change: procspy_change_fn,
    userdata: *mut c_void,
    stats: *mut procspy_walk_stats,
) -> procspy_status {
    guard("procspy_walker_changes", || {
        pass(walker, (buf, cap), stats, (on_change, "on_change"), |w, mem, st, cb| {
            let (mut out, protocols, states) = tables(mem, protocols, state_mask)?;
            Ok(w.changes(out.as_mut(), protocols, states, st, &mut |c| deliver_change(cb, userdata, c))?)
        })
    })
}

/// Calls `cb` with the record of `c`; `ControlFlow::Break` if it said stop.
fn deliver_change(
    cb: unsafe extern "C" fn(*mut c_void, *const procspy_change) -> std::ffi::c_int,
    userdata: *mut c_void,
    c: &Change<'_>,
) -> ControlFlow<()> {
    let old_owner = c.old_owner.as_ref().map(procspy_socket::from);
    with_record(&c.connection, |connection| {
        let rec = procspy_change {
            kind: c.kind.into(),
            old_state: c.old_state,
            connection,
            old_owner: old_owner.as_ref().map_or(std::ptr::null(), |o| o as *const _),
        };
        // SAFETY: the caller's callback, given records that outlive the call.
        verdict(unsafe { cb(userdata, &rec) })
    })
}

/// Live events: each connect, accept, listen, close, TCP state change and
/// first UDP send on the host, in every network namespace, with the
/// process that did it, as the kernel reports it through the library's
/// BPF tracer. Delivers what waits, or waits at most `timeout_ms` for the
/// first (0: does not wait), then returns `PROCSPY_OK`; at most a ring's
/// worth of events per call, so a call ends under a flood too. Call it in
/// a loop, or poll `procspy_walker_events_fd` in your own.
///
/// The first call starts the tracer: it assembles its programs from the
/// running kernel's BTF, loads and attaches them (needs `CAP_BPF` and
/// `CAP_PERFMON`, or `CAP_SYS_ADMIN`, and the host's procfs as the proc
/// root seen from the initial pid namespace), and maps its ring buffer
/// (`procspy_walker_set_events_ring`, 4 MiB unless set). They stay attached
/// until the walker is freed; a tracer nobody reads costs its ring and the
/// hooks' work. Each hook attaches on its own (`procspy_walker_diagnose`
/// lists them): the TCP state tracepoint is needed (connect, listen, every
/// state change, and closes through FIN_WAIT1 or LAST_ACK, with their
/// processes); the accept, close and UDP hooks (fentry/fexit) add their
/// events where the kernel lets them attach. Where the tracer can't run:
/// `PROCSPY_UNSUPPORTED` naming what the kernel lacks or refused (BTF, the
/// ring buffer, the tracepoint), `PROCSPY_IO` for a failed system call
/// (EPERM without the capabilities; the next call tries again), or
/// `PROCSPY_INVALID_ARGUMENT` for a proc root that is not the host's.
///
/// Events are in the order the ring holds them (per CPU, near enough in
/// time; `time_ns` orders them). When the ring was full the kernel counts
/// what it could not write, and the next call delivers one
/// `PROCSPY_EVENT_LOST` first: nothing is invented, and nothing lost goes
/// unsaid; the tracer keeps running. `protocols` filters what is delivered
/// (`PROCSPY_PROTO_TCP`, `PROCSPY_PROTO_UDP` or both). `procspy_walker_stop`
/// ends a waiting call at once (`PROCSPY_STOPPED`). It runs beside a walk
/// on the same walker; a second events call at the same time is
/// `PROCSPY_BUSY`. `on_event` NULL is `PROCSPY_NULL_ARGUMENT`.
#[unsafe(no_mangle)]
#[must_use]
pub extern "C" fn procspy_walker_events(
    walker: *mut procspy_walker,
    timeout_ms: u32,
    protocols: u32,
    on_event: procspy_event_fn,
    userdata: *mut c_void,
    stats: *mut procspy_walk_stats,
) -> procspy_status {
    guard("procspy_walker_events", || {
        pass(walker, (std::ptr::null_mut(), 0), stats, (on_event, "on_event"), |w, _, st, cb| {
            let protocols = protocols_of(protocols)?;
            let timeout = Duration::from_millis(timeout_ms.into());
            Ok(w.events(timeout, protocols, st, &mut |e| deliver_event(cb, userdata, e))?)
        })
    })
}

/// Calls `cb` with the record of `e`; `ControlFlow::Break` if it said stop.
fn deliver_event(
    cb: unsafe extern "C" fn(*mut c_void, *const procspy_event) -> std::ffi::c_int,
    userdata: *mut c_void,
    e: &Event<'_>,
) -> ControlFlow<()> {
    with_record(&e.connection, |connection| {
        let rec = procspy_event {
            kind: e.kind.into(),
            old_state: e.old_state,
            connection,
            time_ns: e.time_ns,
            cookie: e.cookie,
            lost: e.lost,
        };
        // SAFETY: the caller's callback, given records that outlive the call.
        verdict(unsafe { cb(userdata, &rec) })
    })
}

/// Sets `*fd` to a file descriptor for the caller's own poll or epoll loop
/// (then `procspy_walker_events` with timeout 0): it becomes readable once
/// 16 KiB of events wait (about 130), since a wake-up per event would cost
/// the host more than the events do; poll it with a timeout of a few
/// milliseconds to see fewer sooner (`procspy_walker_events` looks every 5
/// ms while it waits). Starts the tracer as `procspy_walker_events` does,
/// failing as it does. The fd stays the walker's: do not close it; it is
/// valid until the walker is freed. `*fd` is -1 on every failure.
#[unsafe(no_mangle)]
#[must_use]
pub extern "C" fn procspy_walker_events_fd(walker: *mut procspy_walker, fd: *mut std::ffi::c_int) -> procspy_status {
    guard("procspy_walker_events_fd", || {
        let out = out_reset(fd, "fd", -1)?;
        *out = walker_ref(walker)?.events_fd()?;
        Ok(())
    })
}

/// The size in bytes of the tracer's ring buffer: a power of two from 64
/// KiB to 1 GiB (default 4 MiB, about 30,000 events). Only before the first
/// `procspy_walker_events` or `procspy_walker_events_fd` call on the
/// walker; after it, `PROCSPY_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
#[must_use]
pub extern "C" fn procspy_walker_set_events_ring(walker: *mut procspy_walker, bytes: usize) -> procspy_status {
    guard("procspy_walker_set_events_ring", || Ok(walker_ref(walker)?.set_events_ring(bytes)?))
}

/// Copies the counters of the last walk on `walker` that ended (walk,
/// connections or changes, whatever it returned) that `procspy_walk_stats` has no
/// room for: the first `size` bytes of a `procspy_walk_stats_ext` into
/// `out`. Pass `sizeof *out`: a program built against a shorter, older
/// struct gets the fields it knows. All zero before the first walk; from a
/// callback, those of the walk before.
#[unsafe(no_mangle)]
#[must_use]
pub extern "C" fn procspy_walker_stats_ext(
    walker: *const procspy_walker,
    out: *mut procspy_walk_stats_ext,
    size: usize,
) -> procspy_status {
    guard("procspy_walker_stats_ext", || {
        let w = walker_ref(walker)?;
        if out.is_null() {
            return Err(Fail::Null("out"));
        }
        let ext = procspy_walk_stats_ext::from(&w.last_stats());
        let n = size.min(std::mem::size_of::<procspy_walk_stats_ext>());
        // SAFETY: the caller lends `size` writable bytes at `out`; n <= size.
        unsafe { std::ptr::copy_nonoverlapping((&raw const ext).cast::<u8>(), out.cast::<u8>(), n) };
        Ok(())
    })
}

/// The inode of `pid`'s network namespace (`PID/ns/net`, or `PID/net/dev`
/// on kernels before 3.8), as the walker's proc root shows it. `pid` must be
/// positive (`PROCSPY_INVALID_ARGUMENT`); a pid that can't be read is
/// `PROCSPY_IO`. Safe to call during a walk.
#[unsafe(no_mangle)]
#[must_use]
pub extern "C" fn procspy_walker_netns_of(walker: *const procspy_walker, pid: i32, out: *mut u64) -> procspy_status {
    guard("procspy_walker_netns_of", || {
        let w = walker_ref(walker)?;
        let out = out_ref(out, "out")?;
        if pid <= 0 {
            return Err(Fail::Invalid(format!("pid {pid} is not positive")));
        }
        *out = w.netns_of(pid)?;
        Ok(())
    })
}

/// Reads `pid`'s tcp and tcp6 tables (tcp6 where it exists) into `buf`,
/// whole files only. `*out_len` is set to the tables' full length: when it
/// exceeds `cap` the result is `PROCSPY_BUFFER_TOO_SMALL` and `buf` holds
/// the whole files that fit. `cap == 0` asks for the length only. Safe to
/// call during a walk.
#[unsafe(no_mangle)]
#[must_use]
pub extern "C" fn procspy_walker_read_tcp(
    walker: *const procspy_walker,
    pid: i32,
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> procspy_status {
    guard("procspy_walker_read_tcp", || {
        let w = walker_ref(walker)?;
        let out_len = out_reset(out_len, "out_len", 0)?;
        // SAFETY: the caller lends `cap` bytes at `buf` for this call.
        let mut out = TableBuf::new(unsafe { caller_buffer(buf, cap) }?);
        if pid <= 0 {
            return Err(Fail::Invalid(format!("pid {pid} is not positive")));
        }
        let r = w.read_tcp(pid, &mut out);
        *out_len = usize::try_from(out.needed()).unwrap_or(usize::MAX);
        r.map(drop).map_err(Fail::from)
    })
}

/// What the walker has learnt of the running kernel, for diagnostics: a
/// line each, "what: answer", for each probe (namespace files, IPv6
/// tables, the one TCP dump of both families, openat2, its walks from the
/// kernel's caches alone, a proc root that shows the kernel's own pids),
/// the BPF owner scan (loaded, or why not),
/// whether the closes of other processes' fds return, and what the last
/// pass could not read (namespaces unreachable, sockets not asked, files
/// truncated, tables unreadable). A probe no call
/// has needed yet says so: ask after a `procspy_walker_connections`.
/// Copies at most `cap - 1` bytes and a NUL into `buf` (NULL when `cap` is
/// 0) and sets `*out_len` to the full length; `PROCSPY_BUFFER_TOO_SMALL` if
/// it was cut. The text is for people: its wording may change. Safe to
/// call during a walk.
#[unsafe(no_mangle)]
#[must_use]
pub extern "C" fn procspy_walker_diagnose(
    walker: *const procspy_walker,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> procspy_status {
    guard("procspy_walker_diagnose", || {
        let w = walker_ref(walker)?;
        let out_len = out_ref(out_len, "out_len")?;
        if buf.is_null() && cap != 0 {
            return Err(Fail::Null("buf"));
        }
        let text = w.diagnose();
        *out_len = text.len();
        // SAFETY: the caller lends `cap` writable bytes at `buf` (checked above).
        if !unsafe { copy_out(text.as_bytes(), buf, cap) } {
            let (needed, capacity) = (text.len() as u64 + 1, cap as u64);
            return Err(Fail::from(procspy::Error::BufferTooSmall { needed, capacity }));
        }
        Ok(())
    })
}
