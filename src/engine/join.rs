//! Connections, Scope's `Connections()`: first a host-wide owner index from
//! every pid's fds, then each namespace's tables read once and joined
//! against it. Reading the fds first closes the race between tables and fds
//! that the walk only narrows: a socket in a table was open when its
//! holder's fds were listed, unless it opened after that (owner `None`).
//! Where the BPF scan built the index it also read the sockets themselves,
//! and a namespace whose kernel counts it matches exactly is listed from
//! that, its tables not read.

use std::ffi::CStr;
use std::ops::ControlFlow;

use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::error::Error;
use super::namespaces::{Namespaces, via_of};
use super::pace::Wait;
use super::query::{Query, Scope};
use super::walker::{
    OwnerScan, PROBE_NO, PROBE_UNKNOWN, PROBE_YES, Scan, Socket, Source, State, Stats, TCP, TCP6, Table, UDP, UDP6,
    Walker,
};
use crate::parse::diag::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, Reply, Request, replies};
use crate::parse::sockstat::{SockCounts, parse_sockstat};
use crate::parse::tcp::{Admit, Conn, Dedup, parse_table};
use crate::procfs::{
    DiagSocket, HostProc, Netns, Refusal, SOCK_RECORD_LEN, SockIter, SockRecord, SockRecords, TableBuf,
};

/// Table bytes a walker's own scratch may grow to for one namespace.
const OWN_TABLES_LIMIT: usize = 1 << 30;

/// Which tables `connections` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protocols {
    pub tcp: bool,
    pub udp: bool,
}

/// One table line, the namespace whose table listed it, and its owner.
#[derive(Clone, Copy, Debug)]
pub struct Connection<'a> {
    pub conn: Conn,
    /// 1 = TCP, 2 = UDP.
    pub protocol: u8,
    pub netns: u64,
    /// The lowest pid holding the socket, and of its fds the lowest; `None`
    /// where no holder is visible (TIME_WAIT, or opened after the fd scan).
    pub owner: Option<Socket<'a>>,
}

/// The owner index and the join's scratch, kept from walk to walk.
#[derive(Debug, Default)]
pub(super) struct JoinState {
    pub(super) index: Index,
    /// The walker's own table scratch, for callers that lend none.
    tables: Vec<u8>,
    /// Netlink replies land here.
    diag: Vec<u8>,
    dedup: Dedup,
    /// The BPF owner scan, loaded at the first call that may use it, or
    /// why it can't be used here, where that lasts (see `sock_iter`).
    sock_iter: Option<Result<SockIter, Error>>,
    /// (pid, netns) of the listed pids, sorted by pid.
    by_pid: Vec<(i32, u64)>,
    /// The TCP and UDP sockets the BPF scan found held, as their tables
    /// would list them, sorted by (netns, protocol, inode), once each;
    /// `None` where this call's owners came from `PID/fd`.
    held: Option<Vec<Held>>,
    /// `net/sockstat` and `net/sockstat6` of one namespace.
    sockstat: [Vec<u8>; 2],
    /// Netlink sockets made ahead of their dumps; none outlives a call.
    ahead: Vec<Ahead>,
    /// Namespaces found beyond the processes', and how to reach them.
    pub(super) found: Namespaces,
    /// The pass's query, as the join applies it.
    pub(super) scope: Scope,
    /// Inodes of the lines delivered, where the sockets no table listed are
    /// asked their namespace (`find_by_sockets`).
    delivered: Vec<u64>,
}

/// A namespace next in line for a dump, and its socket made ahead.
#[derive(Debug)]
struct Ahead {
    netns: u64,
    /// The namespace to enter, until its socket is made.
    enter: Option<Netns>,
    /// Its socket, or why it could not be made; neither this nor `enter`:
    /// no pid leads to the namespace any more.
    sock: Option<Result<DiagSocket, Errno>>,
}

/// Namespaces whose sockets one thread makes: a thread handoff costs far
/// more than a socket (most of a millisecond of CPU, measured in a loaded
/// VM), and each socket made ahead holds an fd until its dump.
const AHEAD: usize = 16;

impl JoinState {
    /// Swaps the last pass's processes (what its owners point at) with `other`.
    pub(super) fn swap_procs(&mut self, other: &mut Procs) {
        std::mem::swap(&mut self.index.procs, other);
    }
}

/// A socket the BPF scan found held (or that told itself): its table line.
#[derive(Clone, Copy, Debug)]
pub(super) struct Held {
    pub netns: u64,
    pub protocol: u8,
    pub conn: Conn,
    /// Connection requests pending on a TCP listener.
    pending: u32,
}

impl Held {
    /// The line a namespace's table lists for this socket, if it lists one:
    /// TCP sockets are hashed (in a table) in every state but CLOSE, UDP
    /// sockets once they have a local port.
    pub(super) fn of(r: &SockRecord) -> Option<Self> {
        const SOCK_STREAM: u16 = 1;
        const SOCK_DGRAM: u16 = 2;
        const CLOSE: u8 = 7;
        let family = match r.family {
            2 => 4,
            10 => 6,
            _ => return None,
        };
        let protocol = match (r.protocol, r.sock_type) {
            (6, SOCK_STREAM) if r.state != CLOSE && r.state <= 12 => 1,
            (17, SOCK_DGRAM) if r.local_port != 0 => 2,
            _ => return None,
        };
        let conn = Conn {
            inode: r.inode,
            family,
            state: r.state,
            local_addr: r.local_addr,
            remote_addr: r.remote_addr,
            local_port: r.local_port,
            remote_port: r.remote_port,
            uid: r.uid,
        };
        Some(Held { netns: r.netns, protocol, conn, pending: r.pending })
    }
}

/// A kernel dump reply fits in 32 KiB.
const DIAG_BUF: usize = 64 * 1024;

/// A dump with no reply believed for this long fails. The kernel answers at
/// once; silence means someone else read our replies (a forked child that
/// went on with the walk) or a kernel fault, and would otherwise hang.
const DUMP_SILENCE: Duration = Duration::from_secs(5);

/// Why a pass over a kernel interface (a netlink dump, the BPF owner scan)
/// did not finish.
enum DiagStop {
    /// Netlink can't be used there: read the text tables instead.
    Unavailable(Errno),
    /// The callback (or a stop, which `with_state` tells apart) ended the walk.
    Ended(Error),
}

/// Socket inode -> owner, host-wide.
#[derive(Debug, Default)]
pub(super) struct Index {
    /// Sorted by inode, then pid, then fd; then one entry per inode.
    owners: Vec<Owner>,
    procs: Procs,
}

#[derive(Clone, Copy, Debug)]
struct Owner {
    inode: u64,
    pid: i32,
    fd: i32,
    proc: u32,
}

/// The processes that hold sockets, each with its name: what an owner
/// points at, in the index and in a changes snapshot alike.
#[derive(Debug, Default)]
pub(super) struct Procs {
    procs: Vec<Proc>,
    /// Every process's name, each followed by a NUL.
    names: Vec<u8>,
}

#[derive(Clone, Copy, Debug)]
struct Proc {
    netns: u64,
    start_time: u64,
    pid: i32,
    name_at: u32,
}

impl Procs {
    /// The owner record of socket `inode` at `fd` of process `at`.
    pub(super) fn socket(&self, at: u32, inode: u64, fd: i32) -> Socket<'_> {
        let p = self.procs[at as usize];
        let name = CStr::from_bytes_until_nul(&self.names[p.name_at as usize..]).unwrap_or_default();
        Socket { inode, netns: p.netns, start_time: p.start_time, pid: p.pid, fd, name }
    }

    /// (pid, start_time) of process `at`: who it is across pid reuse.
    pub(super) fn id(&self, at: u32) -> (i32, u64) {
        let p = self.procs[at as usize];
        (p.pid, p.start_time)
    }

    /// The bytes its processes and their names take.
    pub(super) fn bytes(&self) -> usize {
        self.procs.len() * std::mem::size_of::<Proc>() + self.names.len()
    }
}

impl Index {
    /// (inode, pid, fd) of every socket fd indexed, in the order found.
    pub(super) fn sockets(&self) -> impl Iterator<Item = (u64, i32, i32)> + '_ {
        self.owners.iter().map(|o| (o.inode, o.pid, o.fd))
    }

    pub(super) fn clear(&mut self) {
        self.owners.clear();
        self.procs.procs.clear();
        self.procs.names.clear();
    }

    /// Keeps the lowest pid, then the lowest fd, of each inode's holders.
    fn finish(&mut self) {
        self.owners.sort_unstable_by_key(|o| (o.inode, o.pid, o.fd));
        self.owners.dedup_by_key(|o| o.inode);
    }

    fn add(&mut self, s: &Socket<'_>) {
        let Procs { procs, names } = &mut self.procs;
        if procs.last().is_none_or(|p| p.pid != s.pid || p.netns != s.netns) {
            procs.push(Proc { netns: s.netns, start_time: s.start_time, pid: s.pid, name_at: names.len() as u32 });
            names.extend_from_slice(s.name.to_bytes_with_nul());
        }
        let proc = (procs.len() - 1) as u32;
        self.owners.push(Owner { inode: s.inode, pid: s.pid, fd: s.fd, proc });
    }

    /// The owner of `inode`, and where its process is in `procs`.
    fn owner(&self, inode: u64) -> Option<(Socket<'_>, u32)> {
        if inode == 0 {
            return None;
        }
        let i = self.owners.binary_search_by_key(&inode, |o| o.inode).ok()?;
        let o = self.owners[i];
        Some((self.procs.socket(o.proc, inode, o.fd), o.proc))
    }
}

/// Where a delivered connection's owner is in the pass's `Procs`, if it has one.
pub(super) type OwnerAt = Option<u32>;

/// The tables `protocols` names, or why the arguments are out of range.
pub(super) fn tables_of(protocols: Protocols, state_mask: u32) -> Result<(&'static [Table], &'static [Table]), Error> {
    if !protocols.tcp && !protocols.udp {
        return Err(Error::Invalid("protocols must name TCP, UDP or both"));
    }
    if state_mask == 0 {
        return Err(Error::Invalid("state_mask must not be 0"));
    }
    let tcp: &[Table] = if protocols.tcp { &[TCP, TCP6] } else { &[] };
    let udp: &[Table] = if protocols.udp { &[UDP, UDP6] } else { &[] };
    Ok((tcp, udp))
}

impl Walker {
    /// Every line of the chosen tables in every namespace that passes
    /// `state_mask`, once, with its owner. `out` is the caller's scratch
    /// (`None`: the walker's own); a namespace whose tables don't fit it is
    /// skipped whole and the result is `BufferTooSmall`.
    pub fn connections(
        &self,
        out: Option<&mut TableBuf<'_>>,
        protocols: Protocols,
        state_mask: u32,
        stats: &mut Stats,
        on_connection: &mut dyn FnMut(&Connection<'_>) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        self.query(out, &Query::default(), protocols, state_mask, stats, on_connection)
    }

    /// The connections pass on the locked walk state: `on_connection` also
    /// learns where each owner's process is in `state.join`'s `Procs`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn join(
        &self,
        state: &mut State,
        mut out: Option<&mut TableBuf<'_>>,
        query: &Query<'_>,
        protocols: Protocols,
        (tcp, udp): (&[Table], &[Table]),
        state_mask: u32,
        stats: &mut Stats,
        on_connection: &mut dyn FnMut(&Connection<'_>, OwnerAt) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        {
            self.scope_groups(state, query, stats)?;
            let mut groups = std::mem::take(&mut state.groups);
            let indexed = self
                .owners_for(query, &groups, &mut state.scan, &mut state.join, stats)
                .and_then(|()| self.widen(query, &mut groups, &mut state.scan, &mut state.join, stats));
            let JoinState { index, tables, diag, dedup, held, sockstat, ahead, found, scope, delivered, .. } =
                &mut state.join;
            if indexed.is_ok() {
                index.finish();
            }
            let mut too_small = None;
            let source = self.source();
            // Where netlink sockets are made is decided from the caller's own
            // procfs, whatever the walker's root.
            let host = match source {
                Source::Text => None,
                _ => match HostProc::open() {
                    Ok(host) => Some(host),
                    Err(e) if source == Source::Netlink => {
                        return Err(Error::io("/proc/thread-self/ns/net (netlink needs the caller's procfs)", e));
                    }
                    Err(_) => None,
                },
            };
            if host.is_some() && diag.len() < DIAG_BUF {
                diag.resize(DIAG_BUF, 0);
            }
            // Every namespace but ours will be dumped: make their sockets ahead, a batch at a time.
            let batch = held.is_none() || source == Source::Netlink;
            // Without the BPF scan, which reads each socket's namespace, the
            // sockets no table listed are asked theirs once every namespace
            // found so far is read; the new ones are read in a second round.
            let mut probe = held.is_none()
                && query.pids.is_none()
                && !query.no_owners
                && !query.process_namespaces_only
                && self.root.shows_kernel_ids();
            delivered.clear();
            let mut from = 0;
            let joined = indexed.and_then(|()| {
                loop {
                    let mut at = from;
                    groups[from..].chunk_by(|a, b| a.0 == b.0).try_for_each(|group| {
                        let rest = &groups[at + group.len()..];
                        at += group.len();
                        if self.stop.is_set() {
                            return Err(Error::Stopped);
                        }
                        dedup.clear();
                        let netns = group[0].0;
                        if !scope.wants(netns) {
                            return Ok(());
                        }
                        let mut deliver = |conn: &Conn, protocol: u8| {
                            if !scope.admits(conn.inode) {
                                return ControlFlow::Continue(());
                            }
                            if probe {
                                delivered.push(conn.inode);
                            }
                            let owner = index.owner(conn.inode);
                            let c = Connection { conn: *conn, protocol, netns, owner: owner.map(|o| o.0) };
                            if self.stop.is_set() {
                                ControlFlow::Break(())
                            } else {
                                on_connection(&c, owner.map(|o| o.1))
                            }
                        };
                        if let Some(mine) = scope.direct(netns).or_else(|| {
                            held.as_deref()
                                .filter(|_| source == Source::Auto)
                                .and_then(|held| self.accounted(group, held, protocols, sockstat))
                        }) {
                            stats.accounted += 1;
                            for (protocol, wanted) in [(1, protocols.tcp), (2, protocols.udp)] {
                                for h in mine.iter().filter(|h| wanted && h.protocol == protocol) {
                                    if dedup.admit(protocol, &h.conn, state_mask) == Admit::Fresh
                                        && deliver(&h.conn, protocol).is_break()
                                    {
                                        return Err(Error::Aborted);
                                    }
                                }
                            }
                            return Ok(());
                        }
                        if let Some(host) = &host {
                            let dumped =
                                self.socket_for(host, group, rest, batch, ahead, found, stats).and_then(|sock| {
                                    match sock {
                                        Some(sock) => self.dump_namespace(
                                            sock,
                                            netns,
                                            protocols,
                                            state_mask,
                                            dedup,
                                            diag,
                                            stats,
                                            &mut deliver,
                                        ),
                                        // Every pid of it exited or was reused since the grouping: nothing to list.
                                        None => Ok(()),
                                    }
                                });
                            match dumped {
                                Ok(()) => return Ok(()),
                                Err(DiagStop::Ended(e)) => return Err(e),
                                Err(DiagStop::Unavailable(e)) if source == Source::Netlink => {
                                    return Err(Error::io(format_args!("sock_diag in netns {netns}"), e));
                                }
                                // What was delivered stays in `dedup`: the text adds only the rest.
                                Err(DiagStop::Unavailable(_)) => {}
                            }
                        }
                        let spill = &mut state.scan.spill;
                        let read = match out.as_deref_mut() {
                            Some(buf) => {
                                buf.clear();
                                self.read_split(group, tcp, udp, buf, spill).map(|split| Tables {
                                    text: buf.filled(),
                                    split,
                                    needed: buf.needed(),
                                    overflowed: buf.overflowed(),
                                })
                            }
                            None => self.read_own(group, tcp, udp, tables, spill),
                        };
                        let Some(read) = read else {
                            // A namespace no thread is in has no text tables to read.
                            stats.netns_unreachable += u64::from(via_of(group[0].1).is_some());
                            return Ok(());
                        };
                        stats.bytes_needed = stats.bytes_needed.max(read.needed);
                        if read.overflowed {
                            too_small = Some(out.as_ref().map_or(0, |b| b.capacity()));
                            return Ok(());
                        }
                        stats.bytes_written = stats.bytes_written.max(read.text.len() as u64);
                        let (text, split) = (read.text, read.split);
                        for (part, protocol) in [(&text[..split], 1), (&text[split..], 2)] {
                            // A stop also ends here; `with_state` reports it as such.
                            parse_table(part, protocol, state_mask, dedup, |conn| deliver(conn, protocol))
                                .map_err(|_| Error::Aborted)?;
                        }
                        Ok(())
                    })?;
                    from = groups.len();
                    if !std::mem::take(&mut probe) || !self.find_by_sockets(&mut groups, found, index, delivered, stats)
                    {
                        break Ok(());
                    }
                }
            });
            groups.sort_unstable();
            state.groups = groups;
            state.join.ahead.clear();
            state.join.found.release();
            joined?;
            match too_small {
                Some(cap) => Err(Error::BufferTooSmall { needed: stats.bytes_needed, capacity: cap as u64 }),
                None => Ok(()),
            }
        }
    }

    /// Builds the owner index from every pid's fds: the BPF iterator where
    /// the owner scan allows it and it works, `PID/fd` otherwise.
    pub(super) fn index_owners(
        &self,
        groups: &[(u64, i32)],
        scan: &mut Scan,
        join: &mut JoinState,
        stats: &mut Stats,
    ) -> Result<(), Error> {
        join.index.clear();
        let mode = self.owner_scan();
        if mode != OwnerScan::Proc {
            let before = *stats;
            join.held.get_or_insert_default().clear();
            let in_pass = |e| Error::io("BPF owner scan (task_file iterator)", e);
            let refused = match self.sock_iter(&mut join.sock_iter).map(SockIter::start) {
                Ok(Ok(records)) => match self.index_by_bpf(records, groups, scan, join, stats) {
                    Ok(()) => return Ok(()),
                    Err(DiagStop::Ended(e)) => return Err(e),
                    Err(DiagStop::Unavailable(e)) => in_pass(e),
                },
                Ok(Err(e)) => in_pass(e),
                Err(e) => e,
            };
            if mode == OwnerScan::Bpf {
                return Err(refused);
            }
            join.index.clear();
            *stats = Stats { ticks: stats.ticks, ..before };
        }
        self.index_fds(groups, scan, join, stats)
    }

    /// The owner index from `PID/fd` of every pid of `groups`, with a tick
    /// before each namespace.
    pub(super) fn index_fds(
        &self,
        groups: &[(u64, i32)],
        scan: &mut Scan,
        join: &mut JoinState,
        stats: &mut Stats,
    ) -> Result<(), Error> {
        join.index.clear();
        join.held = None;
        let index = &mut join.index;
        groups.chunk_by(|a, b| a.0 == b.0).try_for_each(|group| {
            if !self.tick(&mut scan.ticker, stats) {
                return Err(Error::Stopped);
            }
            self.scan_group(scan, group, stats, &mut |_, _| {}, &mut |s| {
                index.add(s);
                ControlFlow::Continue(())
            })
        })
    }

    /// The BPF owner scan, loaded into `slot` at the first call. What lasts
    /// is kept there: the program, a proc root that is not the host's, a
    /// kernel that lacks or refuses it. A failed system call (EMFILE, EPERM)
    /// is tried again at the next call.
    fn sock_iter<'s>(&self, slot: &'s mut Option<Result<SockIter, Error>>) -> Result<&'s SockIter, Error> {
        let loaded = match slot {
            Some(loaded) => loaded,
            None if !self.root.shows_kernel_ids() => slot.insert(Err(Error::Invalid(
                "the BPF owner scan needs the host's own procfs as the proc root, seen from the initial pid and user namespaces",
            ))),
            None => slot.insert(match SockIter::load() {
                Ok(iter) => Ok(iter),
                Err(Refusal::Unsupported(why)) => Err(Error::Unsupported(why.into())),
                Err(Refusal::Sys { call, errno }) => return Err(Error::io(format_args!("BPF owner scan: {call}"), errno)),
            }),
        };
        loaded.as_ref().map_err(Clone::clone)
    }

    /// The owner index from one pass of the BPF `task_file` iterator: each
    /// socket fd's pid is looked up among the listed pids for its namespace
    /// (or stat()ed, if it appeared since), and its `stat` read once. The
    /// sockets' own fields go to `join.held`.
    fn index_by_bpf(
        &self,
        mut records: SockRecords,
        groups: &[(u64, i32)],
        scan: &mut Scan,
        join: &mut JoinState,
        stats: &mut Stats,
    ) -> Result<(), DiagStop> {
        join.by_pid.clear();
        join.by_pid.extend(groups.iter().map(|&(netns, pid)| (pid, netns)));
        join.by_pid.sort_unstable();
        if !self.tick(&mut scan.ticker, stats) {
            return Err(DiagStop::Ended(Error::Stopped));
        }
        let Scan { dents: buf, stat, name, ticker, nsfs, .. } = scan;
        let held = join.held.get_or_insert_default();
        let (block, mut in_block) = (self.fd_block(), 0u64);
        // The pid of the last record, with its namespace and start time if it can be read.
        let mut holder: Option<(i32, Option<(u64, u64)>)> = None;
        while let Some(len) = records.read(buf).map_err(DiagStop::Unavailable)? {
            for rec in buf[..len].chunks_exact(SOCK_RECORD_LEN).map(SockRecord::decode) {
                if self.stop.is_set() {
                    return Err(DiagStop::Ended(Error::Stopped));
                }
                if block != 0 && in_block == block {
                    if !self.tick(ticker, stats) {
                        return Err(DiagStop::Ended(Error::Stopped));
                    }
                    in_block = 0;
                }
                in_block += 1;
                stats.fds += 1;
                if holder.is_none_or(|(pid, _)| pid != rec.pid) {
                    let netns = match join.by_pid.binary_search_by_key(&rec.pid, |p| p.0) {
                        Ok(i) => Some(join.by_pid[i].1),
                        Err(_) => self.netns(rec.pid).ok(),
                    };
                    let found = netns.and_then(|ns| {
                        let (start_time, threads) = self.read_stat(rec.pid, stat, name)?;
                        nsfs.saw_process(rec.pid, threads);
                        Some((ns, start_time))
                    });
                    if found.is_none() {
                        stats.skipped += 1;
                    }
                    holder = Some((rec.pid, found));
                }
                // A holder that exited took its sockets along, or soon will.
                let Some((_, Some((netns, start_time)))) = holder else { continue };
                // A socket in a namespace its holder is not in: that namespace may have no process.
                if rec.netns != netns {
                    join.found.sockets.push((rec.netns, rec.pid, rec.fd, rec.inode));
                }
                stats.sockets += 1;
                let name = CStr::from_bytes_until_nul(name).unwrap_or_default();
                join.index.add(&Socket { inode: rec.inode, netns, start_time, pid: rec.pid, fd: rec.fd, name });
                held.extend(Held::of(&rec));
            }
        }
        held.sort_unstable_by_key(|h| (h.netns, h.protocol, h.conn.inode));
        held.dedup_by_key(|h| (h.netns, h.conn.inode));
        Ok(())
    }

    /// The held sockets of the namespace `group`, if they are all its
    /// tables would list: its `sockstat` counts exactly the held sockets of
    /// the chosen protocols, and it has no TIME_WAIT socket and no pending
    /// connection request (which no process holds). Anything else, such as a
    /// socket not yet accepted, orphaned, kernel-owned or in flight between
    /// processes, is counted but not held and so sends the namespace to its
    /// tables.
    fn accounted<'h>(
        &self,
        group: &[(u64, i32)],
        held: &'h [Held],
        protocols: Protocols,
        bufs: &mut [Vec<u8>; 2],
    ) -> Option<&'h [Held]> {
        let netns = group[0].0;
        let lo = held.partition_point(|h| h.netns < netns);
        let hi = lo + held[lo..].partition_point(|h| h.netns == netns);
        let mine = &held[lo..hi];
        let counts = group.iter().find_map(|&(_, pid)| self.sockstat(pid, bufs))?;
        let mut seen = SockCounts::default();
        for h in mine {
            match (h.protocol, h.conn.family) {
                (1, 4) => seen.tcp4 += 1,
                (1, _) => seen.tcp6 += 1,
                (_, 4) => seen.udp4 += 1,
                _ => seen.udp6 += 1,
            }
        }
        let tcp_ok = !protocols.tcp
            || (counts.time_wait == 0
                && (counts.tcp4, counts.tcp6) == (seen.tcp4, seen.tcp6)
                && mine.iter().all(|h| h.pending == 0));
        let udp_ok = !protocols.udp || (counts.udp4, counts.udp6) == (seen.udp4, seen.udp6);
        (tcp_ok && udp_ok).then_some(mine)
    }

    /// `pid`'s namespace's socket counts; a host without IPv6 has no `sockstat6`.
    fn sockstat(&self, pid: i32, bufs: &mut [Vec<u8>; 2]) -> Option<SockCounts> {
        let [v4, v6] = bufs;
        let read = |file: &[u8], buf: &mut Vec<u8>| -> Result<usize, Errno> {
            let fd = self.root.open_file(pid, file)?;
            crate::procfs::read_all(fd.as_fd(), buf, 1 << 16)
        };
        let n4 = read(b"net/sockstat", v4).ok()?;
        let v6_text: &[u8] = match read(b"net/sockstat6", v6) {
            Ok(n6) => &v6[..n6],
            Err(Errno::ENOENT) if self.v6_absent() || self.root.stat(pid, b"net").is_ok() => {
                b"TCP6: inuse 0\nUDP6: inuse 0\n"
            }
            Err(_) => return None,
        };
        parse_sockstat(&v4[..n4], v6_text)
    }

    /// Streams a namespace's sockets from netlink `sock_diag`, through the
    /// same de-duplication and state mask as the text. Only the kernel's
    /// answers to our requests are believed; the rest is counted in
    /// `stats.dropped`.
    #[allow(clippy::too_many_arguments)]
    fn dump_namespace(
        &self,
        mut sock: DiagSocket,
        netns: u64,
        protocols: Protocols,
        state_mask: u32,
        dedup: &mut Dedup,
        buf: &mut [u8],
        stats: &mut Stats,
        deliver: &mut dyn FnMut(&Conn, u8) -> ControlFlow<()>,
    ) -> Result<(), DiagStop> {
        let mut dump = |request: fn(u32) -> Request, protocol: u8, dedup: &mut Dedup, buf: &mut [u8]| {
            let seq = sock.next_seq();
            // A callback may have forked: the child must not use the socket it shares with its parent.
            self.check_fork().map_err(DiagStop::Ended)?;
            sock.send(request(seq).bytes()).map_err(DiagStop::Unavailable)?;
            let mut deadline = Instant::now() + DUMP_SILENCE;
            loop {
                self.check_fork().map_err(DiagStop::Ended)?;
                let (n, sender) = match sock.try_recv(buf) {
                    Ok(got) => got,
                    Err(Errno::EAGAIN) => match self.stop.wait(Some(sock.as_fd()), deadline) {
                        Wait::Ready => continue,
                        Wait::Stopped => return Err(DiagStop::Ended(Error::Stopped)),
                        Wait::TimedOut => {
                            let what = format_args!(
                                "sock_diag in netns {netns}: no reply for {} s ({} messages dropped)",
                                DUMP_SILENCE.as_secs(),
                                stats.dropped
                            );
                            return Err(DiagStop::Ended(Error::io(what, Errno::ETIMEDOUT)));
                        }
                    },
                    Err(e) => return Err(DiagStop::Unavailable(e)),
                };
                if n == 0 {
                    return Err(DiagStop::Unavailable(Errno::EPIPE));
                }
                if sender != 0 {
                    stats.dropped += replies(&buf[..n], seq, sock.port_id()).count().max(1) as u64;
                    continue;
                }
                let mut believed = false;
                for reply in replies(&buf[..n], seq, sock.port_id()) {
                    match reply {
                        Reply::Sock(c) => {
                            believed = true;
                            if dedup.admit(protocol, &c, state_mask) == Admit::Fresh && deliver(&c, protocol).is_break()
                            {
                                return Err(DiagStop::Ended(Error::Aborted));
                            }
                        }
                        Reply::Done => return Ok(()),
                        Reply::Error(e) => return Err(DiagStop::Unavailable(Errno::from_raw(e))),
                        Reply::Skip => stats.dropped += 1,
                    }
                }
                if believed {
                    deadline = Instant::now() + DUMP_SILENCE;
                }
            }
        };
        if protocols.tcp {
            let both = self.tcp_both_probe.load(Ordering::Relaxed);
            let mut done = false;
            if both != PROBE_NO {
                match dump(Request::tcp_both, 1, dedup, buf) {
                    Ok(()) => done = true,
                    Err(DiagStop::Unavailable(_)) if both == PROBE_UNKNOWN => {}
                    Err(e) => return Err(e),
                }
                self.tcp_both_probe.store(if done { PROBE_YES } else { PROBE_NO }, Ordering::Relaxed);
            }
            if !done {
                dump(|s| Request::by_family(AF_INET, IPPROTO_TCP, s), 1, dedup, buf)?;
                if !self.v6_absent() {
                    dump(|s| Request::by_family(AF_INET6, IPPROTO_TCP, s), 1, dedup, buf)?;
                }
            }
        }
        if protocols.udp {
            dump(|s| Request::by_family(AF_INET, IPPROTO_UDP, s), 2, dedup, buf)?;
            if !self.v6_absent() {
                dump(|s| Request::by_family(AF_INET6, IPPROTO_UDP, s), 2, dedup, buf)?;
            }
        }
        Ok(())
    }

    /// The diag socket of `group`'s namespace; `None` if no pid of it leads
    /// there any more. Ours is made on this thread. Another's is taken from
    /// those made ahead, or made with those of up to `AHEAD - 1` namespaces
    /// after it (in `rest`, if `batch`: they will be dumped too) on one
    /// thread of the library's own.
    #[allow(clippy::too_many_arguments)]
    fn socket_for(
        &self,
        host: &HostProc,
        group: &[(u64, i32)],
        rest: &[(u64, i32)],
        batch: bool,
        ahead: &mut Vec<Ahead>,
        found: &Namespaces,
        stats: &mut Stats,
    ) -> Result<Option<DiagSocket>, DiagStop> {
        let netns = group[0].0;
        if netns == host.home() {
            return host.diag_socket().map(Some).map_err(DiagStop::Unavailable);
        }
        if !ahead.iter().any(|a| a.netns == netns) {
            ahead.clear();
            let next = rest.chunk_by(|a, b| a.0 == b.0).filter(|g| g[0].0 != host.home());
            for g in std::iter::once(group).chain(next.take(if batch { AHEAD - 1 } else { 0 })) {
                let (enter, sock) = match self.netns_of_group(host, g, found, stats) {
                    Ok(ns) => (ns, None),
                    Err(e) => (None, Some(Err(e))),
                };
                ahead.push(Ahead { netns: g[0].0, enter, sock });
            }
            let jobs = ahead.iter_mut().filter_map(|a| {
                let Ahead { enter, sock, .. } = a;
                let enter: &Option<Netns> = enter;
                Some((enter.as_ref()?, sock))
            });
            if let Err(e) = host.diag_sockets(jobs) {
                ahead.iter_mut().filter(|a| a.enter.is_some()).for_each(|a| a.sock = Some(Err(e)));
            }
            ahead.iter_mut().for_each(|a| a.enter = None);
        }
        // Found: a batch made here starts with this group.
        let i = ahead.iter().position(|a| a.netns == netns).unwrap_or_default();
        match ahead.swap_remove(i).sock {
            Some(Ok(sock)) => Ok(Some(sock)),
            Some(Err(e)) => Err(DiagStop::Unavailable(e)),
            None => Ok(None),
        }
    }

    /// The namespace `group` was keyed by, to enter through the first of its
    /// pids whose `ns/net` is that namespace. A pid whose file is anything
    /// else (the pid was reused, or it is no namespace at all) is skipped
    /// and counted. `None`: no pid leads there any more.
    pub(super) fn netns_of_group(
        &self,
        host: &HostProc,
        group: &[(u64, i32)],
        found: &Namespaces,
        stats: &mut Stats,
    ) -> Result<Option<Netns>, Errno> {
        if let Some(i) = via_of(group[0].1) {
            return self.enter_found(host, found, i, group[0].0, stats);
        }
        if !self.has_ns_files() {
            // Before Linux 3.8: no namespace file to enter.
            return Err(Errno::ENOENT);
        }
        let mut last = Errno::ENOENT;
        for &(netns, pid) in group {
            match self.root.open_netns(pid).and_then(|fd| host.netns(fd, netns)) {
                Ok(Some(ns)) => return Ok(Some(ns)),
                Ok(None) => {
                    stats.skipped += 1;
                    stats.netns_mismatch += 1;
                }
                Err(Errno::ENOENT | Errno::ESRCH) => {}
                Err(e) => last = e,
            }
        }
        match last {
            Errno::ENOENT => Ok(None),
            e => Err(e),
        }
    }

    /// Reads the TCP tables then the UDP ones of `group` into `buf`; returns
    /// the offset where UDP starts, or `None` if no pid could be read.
    fn read_split(
        &self,
        group: &[(u64, i32)],
        tcp: &[Table],
        udp: &[Table],
        buf: &mut TableBuf<'_>,
        spill: &mut [u8],
    ) -> Option<usize> {
        let tcp_ok = tcp.is_empty() || self.read_group_tables(group, tcp, buf, spill);
        let split = buf.written();
        let udp_ok = udp.is_empty() || self.read_group_tables(group, udp, buf, spill);
        (tcp_ok && udp_ok).then_some(split)
    }

    /// `read_split` into the walker's own scratch, grown until the tables fit.
    fn read_own<'b>(
        &self,
        group: &[(u64, i32)],
        tcp: &[Table],
        udp: &[Table],
        tables: &'b mut Vec<u8>,
        spill: &mut [u8],
    ) -> Option<Tables<'b>> {
        loop {
            let mut buf = TableBuf::from_init(tables);
            let split = self.read_split(group, tcp, udp, &mut buf, spill)?;
            let (written, needed, overflowed) = (buf.written(), buf.needed(), buf.overflowed());
            if !overflowed || needed > OWN_TABLES_LIMIT as u64 {
                return Some(Tables { text: &tables[..written], split, needed, overflowed });
            }
            // Tables grow under churn: leave room for some.
            let needed = needed as usize;
            tables.resize(needed + needed / 4 + 4096, 0);
        }
    }
}

/// One namespace's tables as read: TCP text before `split`, UDP after.
struct Tables<'a> {
    text: &'a [u8],
    split: usize,
    needed: u64,
    overflowed: bool,
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
    let r = parse_table(text, 1, state_mask, &mut dedup, |conn| {
        on_connection(&Connection { conn: *conn, protocol: 1, netns: 0, owner: None })
    });
    match r {
        Ok(p) => ParseOutcome { malformed: p.malformed, result: Ok(()) },
        Err(p) => ParseOutcome { malformed: p.malformed, result: Err(Error::Aborted) },
    }
}
