//! A slice of `connections`: some processes' sockets, some namespaces'
//! lines, or the tables without their owners, for what it costs to get
//! just that.
//!
//! A pid query scans only those processes' fds (and those of their threads
//! that have an fd table of their own), and lists only their own
//! namespaces, their threads', and those their sockets live in. Where the
//! caller may take their fds (`pidfd_getfd`: ptrace rights, Linux 5.6, a
//! proc root that shows the kernel's ids), each socket is asked for what
//! its table line holds and where it lives (`SIOCGSKNS`), and no table is
//! read; a socket whose line it cannot tell (a TCP connect in progress:
//! the kernel names no peer yet) sends its namespace to its tables, and
//! without `pidfd_getfd` every such namespace's tables are read and
//! filtered by the sockets' inodes.

use std::os::fd::AsFd;

use nix::errno::Errno;

use super::ctx::{Ctx, Groups};
use super::error::Error;
use super::namespaces::Look;
use super::namespaces::Namespaces;
use super::owners::{Held, OwnerScan, Owners, Scan};
use super::stats::Stats;
use super::tables::{Ahead, Listed, Namespace, Sink, TableSource, offer_held};
use crate::parse::tcp::Dedup;
use crate::procfs::{PidFd, same_fd_table};

/// What a query asks for; `Query::default()` is every connection, as
/// `connections` delivers them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Query<'a> {
    /// Only the sockets these processes hold (`every_line`: every line of
    /// the namespaces they and their sockets are in). `None`: every
    /// process's; an empty set is an error, never "all".
    pub pids: Option<&'a [i32]>,
    /// Only the lines of these namespaces (inodes). `None`: every
    /// namespace; an empty set is an error. Each must be reachable, else
    /// `Error::NotFound` (with `pids`, one that is none of theirs lists
    /// nothing).
    pub netns: Option<&'a [u64]>,
    /// No owner lookup: no fd of any process is read and every line's
    /// owner is `None` (so no namespace is found through a process's fd or
    /// socket). With `pids`, their sockets are still found, to know them.
    pub no_owners: bool,
    /// With `pids`: every line of their namespaces, not only their sockets.
    pub every_line: bool,
    /// Only the namespaces some process is in, as before namespaces were
    /// looked for elsewhere: no thread, mount or fd is examined.
    pub process_namespaces_only: bool,
}

impl Query<'_> {
    /// The arguments alone, before anything is read.
    pub(super) fn check(&self) -> Result<(), Error> {
        match (self.pids, self.netns) {
            (Some([]), _) => Err(Error::Invalid("the set of pids is empty (pass none for every process)")),
            (_, Some([])) => Err(Error::Invalid("the set of namespaces is empty (pass none for every namespace)")),
            (Some(p), _) if p.iter().any(|&p| p <= 0) => Err(Error::Invalid("a pid must be positive")),
            (_, Some(n)) if n.contains(&0) => Err(Error::Invalid("a namespace inode must not be 0")),
            (None, _) if self.every_line => Err(Error::Invalid("every_line needs a set of pids")),
            _ => Ok(()),
        }
    }
}

/// A pass's query as the join applies it, kept from pass to pass for its
/// buffers.
#[derive(Debug, Default)]
pub(super) struct Scope {
    /// The namespaces asked for, sorted, if any were.
    netns: Option<Vec<u64>>,
    /// The asked processes' socket inodes, sorted, if only their lines go out.
    inodes: Option<Vec<u64>>,
    /// Lines the asked processes' sockets told themselves, sorted by
    /// (netns, protocol, inode), once each; `None` where they could not.
    direct: Option<Vec<Held>>,
    /// Namespaces whose lines `direct` lacks: their tables are read.
    tables: Vec<u64>,
    /// A pid query's pids, sorted, and the entries whose fds it scans.
    pids: Vec<i32>,
    scan: Vec<(u64, i32)>,
    tids: Vec<i32>,
}

impl Scope {
    /// Whether namespace `netns`'s lines are wanted.
    pub fn wants(&self, netns: u64) -> bool {
        self.netns.as_ref().is_none_or(|n| n.binary_search(&netns).is_ok())
    }

    /// Whether the line of socket `inode` goes out.
    pub fn admits(&self, inode: u64) -> bool {
        self.inodes.as_ref().is_none_or(|i| inode != 0 && i.binary_search(&inode).is_ok())
    }

    /// The lines of `netns` if the sockets told them all: no table is read.
    pub fn direct(&self, netns: u64) -> Option<&[Held]> {
        let direct = self.direct.as_deref()?;
        if self.tables.binary_search(&netns).is_ok() {
            return None;
        }
        let lo = direct.partition_point(|h| h.netns < netns);
        Some(&direct[lo..lo + direct[lo..].partition_point(|h| h.netns == netns)])
    }
}

/// A pass's buffers, kept from pass to pass so a warm one allocates nothing.
#[derive(Debug, Default)]
pub(super) struct Pass {
    pub pids: Vec<i32>,
    /// (netns, pid), sorted: each namespace's pids are contiguous. An
    /// entry for a namespace no listed process is in names its way in
    /// instead of a pid (`namespaces::via_of`).
    pub groups: Groups,
    pub scan: Scan,
    pub owners: Owners,
    /// Namespaces found beyond the processes', and how to reach them.
    pub found: Namespaces,
    /// The pass's query, as it applies.
    pub scope: Scope,
    /// The walker's own table scratch, for callers that lend none.
    pub tables: Vec<u8>,
    /// Netlink replies land here.
    pub diag: Vec<u8>,
    pub dedup: Dedup,
    /// `net/sockstat` and `net/sockstat6` of one namespace.
    pub sockstat: [Vec<u8>; 2],
    /// Netlink sockets made ahead of their dumps; none outlives a pass.
    pub ahead: Vec<Ahead>,
    /// Inodes of the lines delivered, where the sockets no line listed are
    /// asked their namespace (`Ctx::find_by_sockets`).
    pub delivered: Vec<u64>,
}

impl Pass {
    /// The pass's groups: a pid query's processes (and those of their
    /// threads in a namespace of their own), else every process's.
    pub(super) fn scope_groups(&mut self, ctx: &Ctx, query: &Query<'_>, stats: &mut Stats) -> Result<(), Error> {
        let Some(pids) = query.pids else {
            return ctx.group_by_netns(&mut self.scan.dents, &mut self.pids, &mut self.groups, stats);
        };
        let scope = &mut self.scope;
        let (groups, scan) = (&mut self.groups, &mut scope.scan);
        groups.clear();
        scan.clear();
        scope.pids.clear();
        scope.pids.extend_from_slice(pids);
        scope.pids.sort_unstable();
        scope.pids.dedup();
        let own_table_check = ctx.root.shows_kernel_ids();
        for &pid in &scope.pids {
            stats.processes += 1;
            let netns = match ctx.netns(pid) {
                Ok(ns) => ns,
                Err(Errno::ENOENT | Errno::ESRCH) => {
                    return Err(Error::NotFound(format!("pid {pid}: no such process")));
                }
                Err(e) => return Err(Error::io(format_args!("{}/{pid}/ns/net", ctx.root_path), e)),
            };
            groups.push((netns, pid));
            scan.push((netns, pid));
            if !ctx.root.thread_count(pid).is_ok_and(|n| n > 1) {
                continue;
            }
            scope.tids.clear();
            if ctx.root.list_threads(pid, &mut self.scan.dents, &mut scope.tids).is_err() {
                continue;
            }
            for &tid in &scope.tids {
                let Ok(ns) = ctx.netns(tid) else { continue };
                if ns != netns {
                    groups.push((ns, tid));
                }
                // A thread with an fd table of its own (`unshare(CLONE_FILES)`).
                if own_table_check && same_fd_table(pid, tid) == Ok(false) {
                    scan.push((ns, tid));
                }
            }
        }
        groups.sort_unstable();
        groups.dedup_by_key(|g| g.0);
        scan.sort_unstable();
        stats.namespaces = groups.len() as u64;
        Ok(())
    }

    /// Builds the owner index as `query` needs it: none, the asked
    /// processes' fds only, or every process's (host-wide, by `mode`).
    pub(super) fn owners_for(
        &mut self,
        ctx: &Ctx,
        query: &Query<'_>,
        mode: OwnerScan,
        stats: &mut Stats,
    ) -> Result<(), Error> {
        let Pass { groups, scan, owners, found, scope, .. } = self;
        found.sockets.clear();
        if query.pids.is_some() {
            return owners.index_fds(ctx, &scope.scan, scan, stats);
        }
        if query.no_owners {
            return owners.index_fds(ctx, &[], scan, stats);
        }
        if !query.process_namespaces_only {
            ctx.look_for_nsfs_fds(groups, &mut scan.nsfs);
        }
        owners.index(ctx, mode, groups, scan, &mut found.sockets, stats)
    }

    /// After the owner index: the namespaces found beyond the processes',
    /// what a pid query's sockets told, and the namespaces asked for,
    /// checked.
    pub(super) fn widen(&mut self, ctx: &Ctx, query: &Query<'_>, stats: &mut Stats) -> Result<(), Error> {
        let scope = &mut self.scope;
        scope.inodes = None;
        scope.direct = None;
        scope.tables.clear();
        if query.pids.is_none() {
            if !query.process_namespaces_only {
                let look = Look { threads: true, mounts: true };
                let Pass { groups, scan, found, .. } = self;
                ctx.discover(groups, &mut scan.dents, found, &mut scan.nsfs, look, stats)?;
            }
        } else {
            self.pid_sockets(ctx, query, stats);
            if query.no_owners {
                self.owners.clear();
            }
        }
        let (groups, scan, scope) = (&self.groups, &mut self.scan, &mut self.scope);
        let mut asked = scope.netns.take().unwrap_or_default();
        asked.clear();
        let Some(netns) = query.netns else { return Ok(()) };
        asked.extend_from_slice(netns);
        asked.sort_unstable();
        asked.dedup();
        for &ns in &asked {
            // With pids, a namespace none of theirs is in lists nothing, if it is there at all.
            let there = groups.binary_search_by_key(&ns, |g| g.0).is_ok()
                || (query.pids.is_some() && ctx.namespace_exists(ns, &mut scan.dents)?);
            if !there {
                let what = "no process, thread, nsfs mount or fd of this host leads to it";
                return Err(Error::NotFound(format!("netns {ns}: {what}")));
            }
        }
        scope.netns = Some(asked);
        Ok(())
    }

    /// A pid query: the inodes of the asked processes' sockets, the
    /// namespaces those live in (added to `groups`), and, where the sockets
    /// can be asked, their lines.
    fn pid_sockets(&mut self, ctx: &Ctx, query: &Query<'_>, stats: &mut Stats) {
        let Pass { groups, scope, found, owners, .. } = self;
        let mut inodes = scope.inodes.take().unwrap_or_default();
        inodes.clear();
        let mut direct = scope.direct.take().unwrap_or_default();
        direct.clear();
        let mut told = ctx.root.shows_kernel_ids();
        let mut pidfd: Option<(i32, Result<PidFd, Errno>)> = None;
        for (inode, pid, fd) in owners.sockets() {
            inodes.push(inode);
            if !told {
                continue;
            }
            if pidfd.as_ref().is_none_or(|p| p.0 != pid) {
                pidfd = Some((pid, PidFd::open(pid)));
            }
            let sock = match pidfd.as_ref().map(|p| p.1.as_ref()) {
                Some(Ok(p)) => p.socket(fd, inode, &ctx.closer),
                Some(Err(e)) => Err(*e),
                None => Err(Errno::ENOENT),
            };
            let sock = match sock {
                Ok(s) => s,
                // Closed since the scan: not in any table now either.
                Err(Errno::ESTALE | Errno::EBADF) => continue,
                Err(e) => {
                    stats.closes_stalled += u64::from(e == Errno::EAGAIN);
                    told = false;
                    continue;
                }
            };
            let Ok(nsfd) = sock.netns() else {
                told = false;
                continue;
            };
            let Ok(netns) = nix::sys::stat::fstat(nsfd.as_fd()).map(|st| st.st_ino) else { continue };
            ctx.add_socket_namespace(groups, found, netns, (pid, fd, inode), stats);
            match sock.record(pid, fd, netns) {
                Ok(rec) => direct.extend(Held::of(&rec)),
                Err(_) => scope.tables.push(netns),
            }
        }
        inodes.sort_unstable();
        inodes.dedup();
        if !query.every_line {
            scope.inodes = Some(inodes);
        }
        if told && !query.every_line {
            direct.sort_unstable_by_key(|h| (h.netns, h.protocol, h.conn.inode));
            direct.dedup_by_key(|h| (h.netns, h.conn.inode));
            scope.tables.sort_unstable();
            scope.tables.dedup();
            scope.direct = Some(direct);
        }
    }
}

/// The source for a pid query whose sockets told their own lines: a
/// namespace all of whose asked-for lines they told is listed from those.
pub(super) struct Told<'a>(pub &'a Scope);

impl TableSource for Told<'_> {
    fn list(&mut self, _: &Ctx, ns: &Namespace<'_>, sink: &mut Sink<'_>, stats: &mut Stats) -> Result<Listed, Error> {
        match self.0.direct(ns.netns) {
            Some(mine) => offer_held(mine, sink, stats),
            None => Ok(Listed::Unavailable),
        }
    }
}
