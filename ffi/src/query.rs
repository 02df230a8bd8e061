//! A slice of the connections: some processes', some namespaces', or the
//! tables without owners.

use std::ffi::c_void;

use super::guard::{Fail, guard};
use super::types::*;
use super::walker::connections_body;
use procspy::Query;

/// `procspy_walker_query` flag: only the sockets of the processes
/// `pids[0..n_pids]` (with `PROCSPY_QUERY_EVERY_LINE`, every line of their
/// namespaces).
pub const PROCSPY_QUERY_PIDS: u32 = 1;
/// `procspy_walker_query` flag: only the lines of the network namespaces
/// `netns[0..n_netns]` (inodes, as `procspy_connection.netns` has them).
pub const PROCSPY_QUERY_NETNS: u32 = 2;
/// `procspy_walker_query` flag: no owner lookup. No process's fds are read
/// and every `owner` is NULL; the tables of every namespace are read
/// (none is listed from the BPF owner scan).
pub const PROCSPY_QUERY_NO_OWNERS: u32 = 4;
/// `procspy_walker_query` flag, with `PROCSPY_QUERY_PIDS`: every line of
/// the namespaces the processes, their threads and their sockets are in,
/// not only their sockets' lines.
pub const PROCSPY_QUERY_EVERY_LINE: u32 = 8;
/// `procspy_walker_query` flag: only the namespaces some process is in, as
/// `procspy_walker_connections` listed them before namespaces were looked
/// for elsewhere (no thread, mount or fd is examined).
pub const PROCSPY_QUERY_PROCESS_NAMESPACES_ONLY: u32 = 16;

const QUERY_FLAGS: u32 = PROCSPY_QUERY_PIDS
    | PROCSPY_QUERY_NETNS
    | PROCSPY_QUERY_NO_OWNERS
    | PROCSPY_QUERY_EVERY_LINE
    | PROCSPY_QUERY_PROCESS_NAMESPACES_ONLY;

/// `set[0..len]` if `flag` is in `flags`; a set without its flag is an error.
///
/// # Safety
/// A non-NULL `set` must be valid for reads of `len` elements.
unsafe fn set_of<'a, T>(
    flags: u32,
    flag: u32,
    set: *const T,
    len: usize,
    name: &'static str,
) -> Result<Option<&'a [T]>, Fail> {
    if flags & flag == 0 {
        if !set.is_null() || len != 0 {
            return Err(Fail::Invalid(format!("{name} given without its flag: it would be ignored")));
        }
        return Ok(None);
    }
    if len == 0 {
        return Ok(Some(&[]));
    }
    if set.is_null() {
        return Err(Fail::Null(name));
    }
    if len > isize::MAX as usize / std::mem::size_of::<T>() {
        return Err(Fail::Invalid(format!("{name}: {len} elements exceed the address space")));
    }
    // SAFETY: the caller lends `len` readable elements at `set`.
    Ok(Some(unsafe { std::slice::from_raw_parts(set, len) }))
}

/// `procspy_walker_connections`, restricted (`flags`, any combination of
/// `PROCSPY_QUERY_*`; other bits are `PROCSPY_INVALID_ARGUMENT`):
///
/// - `PROCSPY_QUERY_PIDS`: only the lines of sockets the processes
///   `pids[0..n_pids]` hold, with owners among them. Only their fds are
///   scanned (and those of their threads with an fd table of their own),
///   and only their namespaces, their threads' and their sockets' are
///   read; where the caller may take their fds (`pidfd_getfd`: the right
///   to ptrace them) each socket tells its line and no table is read.
///   With `PROCSPY_QUERY_EVERY_LINE`, every line of those namespaces.
/// - `PROCSPY_QUERY_NETNS`: only the lines of the namespaces
///   `netns[0..n_netns]`, whose tables alone are read; owners host-wide.
/// - `PROCSPY_QUERY_NO_OWNERS`: the tables without the owner lookup.
/// - `PROCSPY_QUERY_PROCESS_NAMESPACES_ONLY`: only namespaces a process is in.
///
/// A set is used only with its flag: a set without its flag, or
/// `PROCSPY_QUERY_EVERY_LINE` without `PROCSPY_QUERY_PIDS`, is
/// `PROCSPY_INVALID_ARGUMENT`; so is an empty set (`n == 0`; never "all"),
/// a pid that is not positive or names no process, and a namespace that
/// no process, thread, nsfs mount or fd leads to (with pids, one that is
/// none of theirs lists nothing); the message names which. A pid whose
/// namespace file can't be read is `PROCSPY_IO`. A set that is NULL with `n > 0` is
/// `PROCSPY_NULL_ARGUMENT`. Nothing is delivered before every one is found.
/// The rest is `procspy_walker_connections`': `buf`/`cap`, `protocols`,
/// `state_mask`, the callback, `stats` (may be NULL), threads and results.
#[unsafe(no_mangle)]
#[must_use]
pub extern "C" fn procspy_walker_query(
    walker: *mut procspy_walker,
    pids: *const i32,
    n_pids: usize,
    netns: *const u64,
    n_netns: usize,
    flags: u32,
    buf: *mut u8,
    cap: usize,
    protocols: u32,
    state_mask: u32,
    on_connection: procspy_connection_fn,
    userdata: *mut c_void,
    stats: *mut procspy_walk_stats,
) -> procspy_status {
    guard("procspy_walker_query", || {
        connections_body(walker, (buf, cap), (protocols, state_mask), (on_connection, userdata), stats, || {
            // SAFETY: the caller lends the sets for this call.
            let sets = unsafe {
                (
                    set_of(flags, PROCSPY_QUERY_PIDS, pids, n_pids, "pids"),
                    set_of(flags, PROCSPY_QUERY_NETNS, netns, n_netns, "netns"),
                )
            };
            // A NULL argument is reported before an invalid one.
            let (pids, netns) = match sets {
                (Err(Fail::Null(n)), _) | (_, Err(Fail::Null(n))) => return Err(Fail::Null(n)),
                (pids, netns) => (pids?, netns?),
            };
            if flags & !QUERY_FLAGS != 0 {
                return Err(Fail::Invalid(format!("flags {flags:#x}: use PROCSPY_QUERY_* values")));
            }
            Ok(Query {
                pids,
                netns,
                no_owners: flags & PROCSPY_QUERY_NO_OWNERS != 0,
                every_line: flags & PROCSPY_QUERY_EVERY_LINE != 0,
                process_namespaces_only: flags & PROCSPY_QUERY_PROCESS_NAMESPACES_ONLY != 0,
            })
        })
    })
}
