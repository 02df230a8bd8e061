//! Connections, Scope's `Connections()`: first a host-wide owner index
//! from every pid's fds (`owners`), then each namespace's tables (`tables`)
//! listed once and joined against it.

use std::ops::ControlFlow;

use super::ctx::Ctx;
use super::error::Error;
use super::owners::{OwnerAt, OwnerScan, Socket};
use super::query::{Pass, Query, Told};
use super::stats::Stats;
use super::tables::{
    Accounted, Listed, Namespace, Netlink, Protocols, Sink, Source, TCP, TCP6, Table, TableSource, Text, UDP, UDP6,
};
use crate::parse::kernel::Protocol;
use crate::parse::tcp::{Conn, Dedup, parse_table};
use crate::procfs::TableBuf;

/// One table line, the namespace whose table listed it, and its owner.
#[derive(Clone, Copy, Debug)]
pub struct Connection<'a> {
    pub conn: Conn,
    /// `Protocol::number`: 1 TCP, 2 UDP.
    pub protocol: u8,
    pub netns: u64,
    /// The lowest pid holding the socket, and of its fds the lowest; `None`
    /// where no holder is visible (TIME_WAIT, or opened after the fd scan).
    pub owner: Option<Socket<'a>>,
}

/// What one connections pass is asked for, checked.
#[derive(Clone, Copy, Debug)]
pub(super) struct Plan {
    pub protocols: Protocols,
    pub state_mask: u32,
    pub source: Source,
    pub owner_scan: OwnerScan,
    tcp: &'static [Table],
    udp: &'static [Table],
}

impl Plan {
    /// The plan, or why the arguments are out of range.
    pub fn new(protocols: Protocols, state_mask: u32, source: Source, owner_scan: OwnerScan) -> Result<Self, Error> {
        if !protocols.tcp && !protocols.udp {
            return Err(Error::Invalid("protocols must name TCP, UDP or both"));
        }
        if state_mask == 0 {
            return Err(Error::Invalid("state_mask must not be 0"));
        }
        let tcp: &[Table] = if protocols.tcp { &[TCP, TCP6] } else { &[] };
        let udp: &[Table] = if protocols.udp { &[UDP, UDP6] } else { &[] };
        Ok(Plan { protocols, state_mask, source, owner_scan, tcp, udp })
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
        if !std::mem::take(&mut probe) || !ctx.find_by_sockets(groups, found, owners.sockets(), delivered, stats) {
            break;
        }
        round.record = false;
    }
    pass.groups.sort_unstable();
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
    let owners = &*owners;
    // Tried in turn for each namespace, until one lists it.
    let mut accounted = owners.held().filter(|_| plan.source == Source::Auto).map(|held| Accounted { held, sockstat });
    let mut netlink = match plan.source {
        Source::Text => None,
        // Every namespace but ours will be dumped where no BPF accounting may spare one.
        source => {
            let batch = owners.held().is_none() || source == Source::Netlink;
            Netlink::open(diag, ahead, found, batch, source == Source::Netlink)?
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
    let mut deliver = |conn: &Conn, protocol: u8, netns: u64| {
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
    for pids in groups[round.from..].chunk_by(|a, b| a.0 == b.0) {
        at += pids.len();
        if ctx.stop.is_set() {
            return Err(Error::Stopped);
        }
        if !scope.wants(pids[0].0) {
            continue;
        }
        dedup.clear();
        let ns = Namespace { netns: pids[0].0, pids, rest: &groups[at..] };
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

/// What `parse_tcp` saw: malformed lines are counted even when it fails.
#[derive(Debug)]
pub struct ParseOutcome {
    pub malformed: u64,
    pub result: Result<(), Error>,
}

/// Parses table text as `connections` does (one `Dedup` over the whole
/// input), reporting every line as TCP with no namespace and no owner.
pub fn parse_tcp(
    text: &[u8],
    state_mask: u32,
    on_connection: &mut dyn FnMut(&Connection<'_>) -> ControlFlow<()>,
) -> ParseOutcome {
    if state_mask == 0 {
        return ParseOutcome { malformed: 0, result: Err(Error::Invalid("state_mask must not be 0")) };
    }
    let mut dedup = Dedup::new();
    let mut deliver =
        |conn: &Conn, protocol, netns| on_connection(&Connection { conn: *conn, protocol, netns, owner: None });
    let protocols = Protocols { tcp: true, udp: false };
    let mut sink = Sink { protocols, state_mask, netns: 0, dedup: &mut dedup, deliver: &mut deliver };
    let r = parse_table(text, |conn| sink.offer(Protocol::Tcp, conn));
    match r {
        Ok(p) => ParseOutcome { malformed: p.malformed, result: Ok(()) },
        Err(p) => ParseOutcome { malformed: p.malformed, result: Err(Error::Aborted) },
    }
}
