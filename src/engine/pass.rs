//! One pass: its groups (every process's namespace, or a pid query's),
//! its owner index, the namespaces found beyond the processes', then each
//! namespace listed from the first source that can, in rounds. Everything
//! a pass keeps from one call to the next is its `Pass`.

use std::cell::Cell;
use std::ops::ControlFlow;

use nix::errno::Errno;

use super::connections::{Connection, Plan};
use super::ctx::{Ctx, Groups, Member, by_netns};
use super::error::Error;
use super::namespaces::{Look, Namespaces};
use super::owners::{Held, OwnerAt, OwnerScan, Owners, Scan};
use super::query::{Query, Scope, Told};
use super::stats::Stats;
use super::tables::{Accounted, Ahead, Listed, Namespace, Netlink, Recall, Recaller, Sink, Source, TableSource, Text};
use crate::parse::diag::SockId;
use crate::parse::kernel::Protocol;
use crate::parse::tcp::{Conn, Dedup};
use crate::procfs::{PidFd, TableBuf, same_fd_table};

/// A pass's buffers, kept from pass to pass so a warm one allocates nothing.
#[derive(Debug, Default)]
pub(super) struct Pass {
    pub pids: Vec<i32>,
    /// Every namespace of the pass and its ways in, sorted: a process's or
    /// thread's pid, or (for a namespace no listed process is in) the way
    /// the namespace search found.
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
    /// Each namespace's unheld TCP sockets, as its last listing found them,
    /// and the scratch of their lookups.
    pub recall: Recall,
    pub recall_ids: Vec<SockId>,
    pub recall_found: Vec<(Conn, SockId)>,
    /// Inodes of the lines delivered, where the sockets no line listed are
    /// asked their namespace (`Namespaces::find_by_sockets`).
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
            groups.push(Member::pid(netns, pid));
            scan.push(Member::pid(netns, pid));
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
                    groups.push(Member::pid(ns, tid));
                }
                // A thread with an fd table of its own (`unshare(CLONE_FILES)`).
                if own_table_check && same_fd_table(pid, tid) == Ok(false) {
                    scan.push(Member::pid(ns, tid));
                }
            }
        }
        groups.sort_unstable();
        groups.dedup_by_key(|g| g.netns);
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
            scan.noticed.look(ctx, groups);
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
                let Pass { groups, scan, found, owners, .. } = self;
                found.discover(ctx, groups, &mut scan.dents, &mut scan.noticed, look, stats)?;
                owners.explain(ctx, groups, found, stats)?;
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
            let there = groups.binary_search_by_key(&ns, |g| g.netns).is_ok()
                || (query.pids.is_some() && Namespaces::namespace_exists(ctx, ns, &mut scan.dents)?);
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
        // The last socket told of: its other holders are not asked.
        let mut answered = None;
        for (inode, pid, fd) in owners.sockets() {
            inodes.push(inode);
            if !told || answered == Some(inode) {
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
                // This holder closed it since the scan: another may hold it still.
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
            let Ok(netns) = nix::sys::stat::fstat(&nsfd).map(|st| st.st_ino) else { continue };
            answered = Some(inode);
            found.add_socket_namespace(groups, netns, (pid, fd, inode), stats);
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

/// The connections pass: every line `query` asks for of the planned
/// tables, in every namespace found, that passes the state mask, once,
/// with its owner, and where that owner's process is in `pass.owners`'
/// `Procs`. `out` is the caller's scratch (`None`: the pass's own); a
/// namespace whose tables don't fit it is skipped whole and the result is
/// `BufferTooSmall`.
pub(super) fn join(
    ctx: &Ctx,
    plan: &Plan,
    query: &Query<'_>,
    pass: &mut Pass,
    out: Option<&mut TableBuf<'_>>,
    stats: &mut Stats,
    on_connection: &mut dyn FnMut(&Connection<'_>, OwnerAt) -> ControlFlow<()>,
) -> Result<(), Error> {
    // The ways in of the last pass lead where they led then.
    pass.found.release();
    let r = pass
        .scope_groups(ctx, query, stats)
        .and_then(|()| pass.owners_for(ctx, query, plan.owner_scan, stats))
        .and_then(|()| pass.widen(ctx, query, stats))
        .and_then(|()| list(ctx, plan, query, pass, out, stats, on_connection));
    if !ctx.stop.is_set() {
        ctx.closer.settle();
    }
    r
}

/// Lists each namespace of the pass from the first source that can.
/// Without the BPF scan, which reads each socket's namespace, the sockets
/// no line listed are then asked theirs (`find_by_sockets`), and the
/// namespaces that finds are listed in a second round.
fn list(
    ctx: &Ctx,
    plan: &Plan,
    query: &Query<'_>,
    pass: &mut Pass,
    mut out: Option<&mut TableBuf<'_>>,
    stats: &mut Stats,
    on_connection: &mut dyn FnMut(&Connection<'_>, OwnerAt) -> ControlFlow<()>,
) -> Result<(), Error> {
    let mut probe = pass.owners.held().is_none()
        && query.pids.is_none()
        && !query.no_owners
        && !query.process_namespaces_only
        && ctx.root.shows_kernel_ids();
    pass.delivered.clear();
    let mut round = Round { from: 0, record: probe, too_small: None };
    loop {
        list_round(ctx, plan, pass, out.as_deref_mut(), &mut round, stats, on_connection)?;
        round.from = pass.groups.len();
        let Pass { groups, owners, found, delivered, .. } = pass;
        if !std::mem::take(&mut probe) || !found.find_by_sockets(ctx, groups, owners.sockets(), delivered, stats) {
            break;
        }
        round.record = false;
    }
    pass.groups.sort_unstable();
    // A pass of every namespace forgets those gone.
    if query.pids.is_none() && pass.scope.netns.is_none() {
        let groups = &pass.groups;
        pass.recall.retain(|ns| groups.binary_search_by_key(&ns, |g| g.netns).is_ok());
    }
    match round.too_small {
        Some(cap) => Err(Error::BufferTooSmall { needed: stats.bytes_needed, capacity: cap as u64 }),
        None => Ok(()),
    }
}

/// Where a round of `list` starts in the pass's groups, whether it notes
/// the lines it delivers, and the capacity a namespace's tables outgrew.
struct Round {
    from: usize,
    record: bool,
    too_small: Option<usize>,
}

/// One round of `list`: the namespaces of `pass.groups[round.from..]`.
fn list_round(
    ctx: &Ctx,
    plan: &Plan,
    pass: &mut Pass,
    out: Option<&mut TableBuf<'_>>,
    round: &mut Round,
    stats: &mut Stats,
    on_connection: &mut dyn FnMut(&Connection<'_>, OwnerAt) -> ControlFlow<()>,
) -> Result<(), Error> {
    let Pass { groups, scan, owners, found, scope, tables, diag, dedup, sockstat, ahead, delivered, .. } = pass;
    let (recall, ids, found_again) = (&mut pass.recall, &mut pass.recall_ids, &mut pass.recall_found);
    let owners = &*owners;
    // Tried in turn for each namespace, until one lists it. The accounted
    // source tells the netlink one of a namespace it can list from the held
    // sockets and those no process holds that it remembers.
    let hint = Cell::new(None);
    let held = owners.held().filter(|_| plan.source == Source::Auto);
    let mut accounted = held.map(|held| Accounted { held, sockstat, hint: &hint });
    let mut netlink = match plan.source {
        Source::Text => None,
        source => {
            let recaller = held.map(|_| Recaller { recall, hint: &hint, ids, found: found_again });
            Netlink::open(diag, ahead, found, source == Source::Netlink, recaller)?
        }
    };
    let mut text = (plan.source != Source::Netlink).then(|| Text {
        out,
        own: tables,
        spill: &mut scan.spill,
        tcp: plan.tcp,
        udp: plan.udp,
        too_small: None,
    });
    let mut told = Told(scope);
    let record = round.record;
    let mut deliver = |conn: &Conn, protocol: Protocol, netns: u64| {
        if !scope.admits(conn.inode) {
            return ControlFlow::Continue(());
        }
        if record {
            delivered.push(conn.inode);
        }
        let owner = owners.owner(conn.inode);
        let c = Connection { conn: *conn, protocol, netns, owner: owner.map(|o| o.0) };
        if ctx.stop.is_set() { ControlFlow::Break(()) } else { on_connection(&c, owner.map(|o| o.1)) }
    };
    let mut at = round.from;
    for members in by_netns(&groups[round.from..]) {
        at += members.len();
        if ctx.stop.is_set() {
            return Err(Error::Stopped);
        }
        if !scope.wants(members[0].netns) {
            continue;
        }
        dedup.clear();
        let ns = Namespace { netns: members[0].netns, members, rest: &groups[at..] };
        let (protocols, state_mask) = (plan.protocols, plan.state_mask);
        let mut sink = Sink { protocols, state_mask, netns: ns.netns, dedup, deliver: &mut deliver };
        let sources: [Option<&mut dyn TableSource>; 4] = [
            Some(&mut told),
            accounted.as_mut().map(|s| s as &mut dyn TableSource),
            netlink.as_mut().map(|s| s as &mut dyn TableSource),
            text.as_mut().map(|s| s as &mut dyn TableSource),
        ];
        for source in sources.into_iter().flatten() {
            if source.list(ctx, &ns, &mut sink, stats)? == Listed::Done {
                break;
            }
        }
    }
    round.too_small = round.too_small.or(text.and_then(|t| t.too_small));
    Ok(())
}
