//! Changes, from one connections pass and the snapshot the previous call
//! kept. What a call promises is `procspy_walker_changes`' comment in the
//! header; this is how.
//!
//! A snapshot holds every connection the pass delivered, sorted by
//! identity. Two snapshots merge in one pass over both, so a call costs a
//! sort of what it saw plus one step per connection and per change, never
//! a product of them. A connection is 40 bytes plus its addresses; its
//! owner is an index into the pass's process table, which the snapshot
//! takes over whole, so an owner that has gone keeps its name for the
//! events that name it. The snapshot is committed only by a call that
//! returns OK.
//!
//! Connections that opened and closed between two calls come from the
//! kernel's destroy notifications (`closed.rs`), each delivered unless it
//! may be of a connection either snapshot lists, or that the last call
//! reported gone: those are reported as disappeared, or will be.

use std::cmp::Ordering;
use std::ops::ControlFlow;

use super::closed::{Closed, Subscriptions};
use super::connections::{Connection, Plan};
use super::ctx::Ctx;
use super::error::Error;
use super::events::owner_socket;
use super::owners::{OwnerAt, Procs, Socket};
use super::pace::Stop;
use super::pass::{Pass, join};
use super::query::Query;
use super::stats::Stats;
use super::tables::Protocols;
use crate::bpf::Owners;
use crate::parse::kernel::{Family, Protocol};
use crate::parse::tcp::Conn;
use crate::procfs::TableBuf;

/// What happened to a connection between two changes calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// Listed now, not by the previous call (every connection, at the first call).
    Appeared,
    /// Listed by the previous call, not now; the connection is as it was then.
    Disappeared,
    /// Listed by both, in another state.
    State,
    /// Listed by both, with another owner (or one where there was none, or
    /// none where there was one).
    Owner,
    /// Listed by neither: it opened and closed between the two calls, as the
    /// kernel's destroy notification tells it: inode 0, the state it was
    /// freed in (TCP: CLOSE; a connected UDP socket: ESTABLISHED) and the
    /// tuple as far as the kernel kept it; its owner the process the
    /// walker's BPF tracer saw act on it last (fd -1), where it runs and saw
    /// one, else none.
    SeenClosed,
}

/// One change, lent to the callback.
#[derive(Clone, Copy, Debug)]
pub struct Change<'a> {
    pub kind: ChangeKind,
    /// The connection now; for `Disappeared`, as the previous call saw it.
    pub connection: Connection<'a>,
    /// Its state at the previous call; 0 for `Appeared` and `SeenClosed`.
    pub old_state: u8,
    /// Its owner at the previous call; `None` for `Appeared` and
    /// `SeenClosed`, or where the previous call saw no owner.
    pub old_owner: Option<Socket<'a>>,
}

/// What a walker keeps from one changes call to the next.
#[derive(Debug, Default)]
pub(super) struct ChangeState {
    /// What the last call that returned OK saw.
    prev: Snapshot,
    /// This call's, kept for its buffers.
    next: Snapshot,
    subs: Subscriptions,
    /// Destroy notifications drained and not yet delivered by a call that
    /// committed.
    pending: Vec<Closed>,
    /// Whether each of `pending` may be of a listed connection.
    listed: Vec<bool>,
    /// What the last committed call reported disappeared, and this call.
    gone: Vec<Closed>,
    gone_next: Vec<Closed>,
    /// The BPF tracer's owners map, where it runs: seen-closed owners.
    pub owners: Option<Owners>,
}

#[derive(Debug, Default)]
struct Snapshot {
    /// Sorted by `Snapshot::identity`, then state.
    entries: Vec<Entry>,
    /// Each entry's local then remote address: 4 bytes each for IPv4, 16 for IPv6.
    addrs: Vec<u8>,
    /// The owners' processes (`Entry::proc`).
    procs: Procs,
}

/// One connection of a snapshot, as compact as its events allow.
#[derive(Clone, Copy, Debug)]
struct Entry {
    netns: u64,
    inode: u64,
    uid: u32,
    /// The owner's process in `Snapshot::procs`; `NO_OWNER` where none was visible.
    proc: u32,
    fd: i32,
    /// Where its addresses start in `Snapshot::addrs`.
    addr_at: u32,
    local_port: u16,
    remote_port: u16,
    protocol: Protocol,
    family: u8,
    state: u8,
}

const NO_OWNER: u32 = u32::MAX;

impl Snapshot {
    fn clear(&mut self) {
        self.entries.clear();
        self.addrs.clear();
    }

    /// Adds `c`, whose owner's process is `at` in the pass's `Procs`; false
    /// where the addresses would outgrow what an entry can point at.
    fn push(&mut self, c: &Connection<'_>, at: OwnerAt) -> bool {
        let Ok(addr_at) = u32::try_from(self.addrs.len()) else { return false };
        let n = addr_len(c.conn.family);
        self.addrs.extend_from_slice(&c.conn.local_addr[..n]);
        self.addrs.extend_from_slice(&c.conn.remote_addr[..n]);
        self.entries.push(Entry {
            netns: c.netns,
            inode: c.conn.inode,
            uid: c.conn.uid,
            proc: at.unwrap_or(NO_OWNER),
            fd: c.owner.map_or(-1, |o| o.fd),
            addr_at,
            local_port: c.conn.local_port,
            remote_port: c.conn.remote_port,
            protocol: c.protocol,
            family: c.conn.family,
            state: c.conn.state,
        });
        true
    }

    fn addrs_of(&self, e: &Entry) -> &[u8] {
        &self.addrs[e.addr_at as usize..][..2 * addr_len(e.family)]
    }

    /// The order of identities: a socket is its inode in its namespace's
    /// table; a line without one (TIME_WAIT, a request) is its tuple there.
    fn identity(&self, a: &Entry, other: &Snapshot, b: &Entry) -> Ordering {
        (a.netns, a.protocol, a.inode).cmp(&(b.netns, b.protocol, b.inode)).then_with(|| {
            if a.inode != 0 {
                return Ordering::Equal;
            }
            (a.family, a.local_port, a.remote_port)
                .cmp(&(b.family, b.local_port, b.remote_port))
                .then_with(|| self.addrs_of(a).cmp(other.addrs_of(b)))
        })
    }

    fn sort(&mut self) {
        let mut entries = std::mem::take(&mut self.entries);
        // State last: lines of one tuple in several states stay apart.
        entries.sort_unstable_by(|a, b| self.identity(a, self, b).then(a.state.cmp(&b.state)));
        self.entries = entries;
    }

    fn owner(&self, e: &Entry) -> Option<Socket<'_>> {
        (e.proc != NO_OWNER).then(|| self.procs.socket(e.proc, e.inode, e.fd))
    }

    /// Who owns `e`, across pid reuse: (pid, start time, fd).
    fn owner_id(&self, e: &Entry) -> Option<(i32, u64, i32)> {
        (e.proc != NO_OWNER).then(|| {
            let (pid, start_time) = self.procs.id(e.proc);
            (pid, start_time, e.fd)
        })
    }

    /// `e`'s table line.
    fn conn(&self, e: &Entry) -> Conn {
        let (local, remote) = self.addrs_of(e).split_at(addr_len(e.family));
        let mut local_addr = [0u8; 16];
        local_addr[..local.len()].copy_from_slice(local);
        let mut remote_addr = [0u8; 16];
        remote_addr[..remote.len()].copy_from_slice(remote);
        Conn {
            inode: e.inode,
            family: e.family,
            state: e.state,
            local_addr,
            remote_addr,
            local_port: e.local_port,
            remote_port: e.remote_port,
            uid: e.uid,
        }
    }

    fn connection(&self, e: &Entry) -> Connection<'_> {
        Connection { conn: self.conn(e), protocol: e.protocol, netns: e.netns, owner: self.owner(e) }
    }

    /// The bytes its connections and their owners take.
    fn bytes(&self) -> usize {
        self.entries.len() * std::mem::size_of::<Entry>() + self.addrs.len() + self.procs.bytes()
    }
}

/// Bytes of one address of a record's `family` (4 or 6).
fn addr_len(family: u8) -> usize {
    if family == Family::Inet.version() { Family::Inet } else { Family::Inet6 }.addr_len()
}

/// Calls `emit` with each change from `old` to `new`, in identity order.
fn merge(old: &Snapshot, new: &Snapshot, emit: &mut dyn FnMut(&Change<'_>) -> ControlFlow<()>) -> ControlFlow<()> {
    let appeared =
        |e: &Entry| Change { kind: ChangeKind::Appeared, connection: new.connection(e), old_state: 0, old_owner: None };
    let disappeared = |e: &Entry| {
        let connection = old.connection(e);
        Change { kind: ChangeKind::Disappeared, connection, old_state: e.state, old_owner: connection.owner }
    };
    let (o, n) = (&old.entries, &new.entries);
    let (mut i, mut j) = (0, 0);
    while i < o.len() || j < n.len() {
        let ord = match (o.get(i), n.get(j)) {
            (Some(a), Some(b)) => old.identity(a, new, b),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match ord {
            Ordering::Less => {
                emit(&disappeared(&o[i]))?;
                i += 1;
            }
            Ordering::Greater => {
                emit(&appeared(&n[j]))?;
                j += 1;
            }
            // An inode is listed once in its namespace's tables.
            Ordering::Equal if o[i].inode != 0 => {
                same(old, &o[i], new, &n[j], emit)?;
                (i, j) = (i + 1, j + 1);
            }
            Ordering::Equal => {
                // A run of one tuple: one line, but for a tuple listed in several states.
                let i_end = i + 1 + o[i + 1..].iter().take_while(|a| old.identity(a, old, &o[i]).is_eq()).count();
                let j_end = j + 1 + n[j + 1..].iter().take_while(|b| new.identity(b, new, &n[j]).is_eq()).count();
                let (run_o, run_n) = (&o[i..i_end], &n[j..j_end]);
                // Lines in the same state are the same line; the rest pair up in
                // order as state changes, and what is left came or went.
                let only_o = || run_o.iter().filter(|a| run_n.iter().all(|b| b.state != a.state));
                let only_n = || run_n.iter().filter(|b| run_o.iter().all(|a| a.state != b.state));
                for a in run_o {
                    if let Some(b) = run_n.iter().find(|b| b.state == a.state) {
                        same(old, a, new, b, emit)?;
                    }
                }
                let paired = only_o().count().min(only_n().count());
                for (a, b) in only_o().zip(only_n()) {
                    same(old, a, new, b, emit)?;
                }
                for a in only_o().skip(paired) {
                    emit(&disappeared(a))?;
                }
                for b in only_n().skip(paired) {
                    emit(&appeared(b))?;
                }
                (i, j) = (i_end, j_end);
            }
        }
    }
    ControlFlow::Continue(())
}

/// The changes of one connection listed by both calls: its state, then its owner.
fn same(
    old: &Snapshot,
    a: &Entry,
    new: &Snapshot,
    b: &Entry,
    emit: &mut dyn FnMut(&Change<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let state_changed = a.state != b.state;
    let owner_changed = old.owner_id(a) != new.owner_id(b);
    if !state_changed && !owner_changed {
        return ControlFlow::Continue(());
    }
    let change = |kind| Change { kind, connection: new.connection(b), old_state: a.state, old_owner: old.owner(a) };
    if state_changed {
        emit(&change(ChangeKind::State))?;
    }
    if owner_changed {
        emit(&change(ChangeKind::Owner))?;
    }
    ControlFlow::Continue(())
}

/// Marks in `listed` each of `pending` (sorted by `Closed::key`) that may
/// be of one of `conns`.
fn mark_listed(pending: &[Closed], listed: &mut [bool], conns: impl Iterator<Item = (u64, Protocol, Conn)>) {
    for (netns, protocol, c) in conns {
        let key = Closed::key(netns, protocol, &c);
        let from = pending.partition_point(|p| Closed::key(p.netns, p.protocol, &p.conn) < key);
        for (i, p) in pending.iter().enumerate().skip(from) {
            if Closed::key(p.netns, p.protocol, &p.conn) != key {
                break;
            }
            listed[i] |= p.may_be(netns, protocol, &c);
        }
    }
}

/// What changed since the previous changes call on this walker that
/// returned OK (at the first, every connection appears): one
/// connections pass (`connections`' arguments, its rules), then
/// `on_change` for each change, in the order of the connections'
/// identities, then a `SeenClosed` for each connection of the chosen
/// protocols (whatever `state_mask`) that the kernel said it freed and
/// that neither call listed. Nothing is delivered unless the pass
/// succeeded; a call that does not return OK leaves the previous
/// snapshot, and the notifications not yet delivered, as they were.
pub(super) fn changes(
    ctx: &Ctx,
    plan: &Plan,
    pass: &mut Pass,
    changes: &mut ChangeState,
    out: Option<&mut TableBuf<'_>>,
    stats: &mut Stats,
    on_change: &mut dyn FnMut(&Change<'_>) -> ControlFlow<()>,
) -> Result<(), Error> {
    // Put back below; a panic in between loses it, and the next call
    // starts afresh, as a new walker's first does.
    let mut ch = std::mem::take(changes);
    ch.subs.drain(&mut ch.pending, stats);
    ch.next.clear();
    // About what the last call saw: no doubling past it while the pass fills it.
    ch.next.entries.reserve(ch.prev.entries.len());
    ch.next.addrs.reserve(ch.prev.addrs.len());
    let mut fits = true;
    let joined = join(ctx, plan, &Query::default(), pass, out, stats, &mut |c, at| {
        fits = ch.next.push(c, at);
        if fits { ControlFlow::Continue(()) } else { ControlFlow::Break(()) }
    });
    let r = match joined {
        Err(Error::Aborted) if !fits => Err(Error::Invalid("more connections than a changes snapshot holds")),
        Err(e) => Err(e),
        Ok(()) => {
            pass.owners.swap_procs(&mut ch.next.procs);
            ch.next.sort();
            ch.subs.subscribe(ctx, &pass.groups, &pass.found, stats);
            let delivered = deliver(&mut ch, plan.protocols, &ctx.stop, on_change);
            match delivered {
                ControlFlow::Break(()) => Err(Error::Aborted),
                ControlFlow::Continue(()) => {
                    std::mem::swap(&mut ch.prev, &mut ch.next);
                    std::mem::swap(&mut ch.gone, &mut ch.gone_next);
                    ch.pending.clear();
                    stats.snapshot_bytes = ch.prev.bytes() as u64;
                    Ok(())
                }
            }
        }
    };
    *changes = ch;
    r
}

/// Delivers a finished pass's changes (`ch.next` against `ch.prev`), then
/// the notifications of sockets no snapshot lists; notes what disappeared
/// in `ch.gone_next`. Breaks where `on_change` or a stop did.
fn deliver(
    ch: &mut ChangeState,
    protocols: Protocols,
    stop: &Stop,
    on_change: &mut dyn FnMut(&Change<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let ChangeState { prev, next, pending, listed, gone, gone_next, owners, .. } = ch;
    let mut emit = |change: &Change<'_>| {
        if stop.is_set() { ControlFlow::Break(()) } else { on_change(change) }
    };
    gone_next.clear();
    merge(prev, next, &mut |change| {
        if change.kind == ChangeKind::Disappeared {
            let c = &change.connection;
            gone_next.push(Closed { netns: c.netns, protocol: c.protocol, conn: c.conn, cookie: 0 });
        }
        emit(change)
    })?;
    pending.sort_unstable_by_key(|p| Closed::key(p.netns, p.protocol, &p.conn));
    listed.clear();
    listed.resize(pending.len(), false);
    if !pending.is_empty() {
        for snap in [&*prev, &*next] {
            let conns = snap.entries.iter().map(|e| (e.netns, e.protocol, snap.conn(e)));
            mark_listed(pending, listed, conns);
        }
        mark_listed(pending, listed, gone.iter().map(|g| (g.netns, g.protocol, g.conn)));
    }
    for (p, _) in pending.iter().zip(listed.iter()).filter(|(_, listed)| !**listed) {
        let wanted = match p.protocol {
            Protocol::Tcp => protocols.tcp,
            Protocol::Udp => protocols.udp,
        };
        if wanted {
            let mut name = [0u8; 17];
            let owner = owners.as_ref().and_then(|o| o.get(p.cookie)).map(|o| owner_socket(&o, 0, p.netns, &mut name));
            let connection = Connection { conn: p.conn, protocol: p.protocol, netns: p.netns, owner };
            emit(&Change { kind: ChangeKind::SeenClosed, connection, old_state: 0, old_owner: None })?;
        }
    }
    ControlFlow::Continue(())
}
