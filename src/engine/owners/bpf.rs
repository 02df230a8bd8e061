//! The BPF owner scan (`crate::bpf`'s `owner_scan.rs`): one pass of the
//! kernel's `task_file` iterator lists the socket fds a pass uses with their
//! pids and the sockets' own fields, which `Held` keeps as the line its
//! table would list, and counts the others.

use std::ffi::CStr;

use super::{Owners, Socket};
use crate::bpf::{RECORD_LEN, Record, Refusal, SockIter, SockRecords};
use crate::engine::ctx::{Ctx, Group, Groups};
use crate::engine::error::{DiagStop, Error};
use crate::engine::namespaces::Namespaces;
use crate::engine::stats::Stats;
use crate::parse::kernel::TcpState;
use crate::parse::kernel::{Family, Protocol, SOCK_DGRAM, SOCK_STREAM};
use crate::parse::tcp::Conn;
use crate::procfs::{Ends, LINK_MAX, SockRecord};

use super::Scan;

/// A socket the BPF scan found held (or that told itself): its table line.
#[derive(Clone, Copy, Debug)]
pub(in crate::engine) struct Held {
    pub netns: u64,
    pub protocol: Protocol,
    pub conn: Conn,
    /// Connection requests pending on a TCP listener.
    pub pending: u32,
}

impl Held {
    /// The line a namespace's table lists for this socket, if it lists one:
    /// TCP sockets are hashed (in a table) in every state but CLOSE, UDP
    /// sockets once they have a local port.
    pub(in crate::engine) fn of(r: &SockRecord) -> Option<Self> {
        Family::of_af(r.family)?;
        let tcp = Protocol::Tcp.ipproto().into();
        let udp = Protocol::Udp.ipproto().into();
        let protocol = match (r.protocol, r.sock_type) {
            (p, SOCK_STREAM) if p == tcp && TcpState::from_u8(r.state).is_some_and(|s| s != TcpState::Close) => {
                Protocol::Tcp
            }
            (p, SOCK_DGRAM) if p == udp && r.ends.local_port != 0 => Protocol::Udp,
            _ => return None,
        };
        let conn = line(r.inode, r.family, r.state, &r.ends, r.uid);
        Some(Held { netns: r.netns, protocol, conn, pending: r.pending })
    }
}

/// The table line of a socket as the kernel described it: its inode, its
/// family (`AF_*`; 0 for one of no family a table lists), state, ends, uid.
pub(in crate::engine) fn line(inode: u64, af: u16, state: u8, ends: &Ends, uid: u32) -> Conn {
    let Ends { local_port, remote_port, local_addr, remote_addr } = *ends;
    let family = Family::of_af(af).map_or(0, Family::version);
    Conn { inode, family, state, local_addr, remote_addr, local_port, remote_port, uid }
}

/// The BPF owner scan, loaded into `slot` at the first call. What lasts
/// is kept there: the program, a proc root that is not the host's, a
/// kernel that lacks or refuses it. A failed system call (EMFILE, EPERM)
/// is tried again at the next call.
pub(super) fn sock_iter<'s>(ctx: &Ctx, slot: &'s mut Option<Result<SockIter, Error>>) -> Result<&'s SockIter, Error> {
    let loaded = match slot {
        Some(loaded) => loaded,
        None if !ctx.root.shows_kernel_ids() => slot.insert(Err(Error::Invalid(
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
/// sockets' own fields go to `owners.held`. The program lists only the
/// socket fds a pass can use (TCP and UDP ones, and those in a namespace
/// other than their holder's); the others it counts, and its tally, the
/// last record, counts in `fds` and `sockets` as the `PID/fd` scan counts
/// them (whatever became of their holders since).
pub(super) fn index(
    ctx: &Ctx,
    mut records: SockRecords,
    groups: &Group,
    scan: &mut Scan,
    owners: &mut Owners,
    elsewhere: &mut Vec<(u64, i32, i32, u64)>,
    stats: &mut Stats,
) -> Result<(), DiagStop> {
    let by_pid = &mut owners.by_pid;
    by_pid.clear();
    by_pid.extend(groups.iter().filter_map(|m| Some((m.as_pid()?, m.netns))));
    by_pid.sort_unstable();
    if !ctx.tick(&mut scan.ticker, stats) {
        return Err(DiagStop::Ended(Error::Stopped));
    }
    let Scan { dents: buf, stat, name, ticker, noticed, .. } = scan;
    // Put back once whole: a pass that fails here builds no index.
    let mut held = owners.held.take().unwrap_or_default();
    let (block, mut in_block) = (ctx.fd_block(), 0u64);
    // The pid of the last record, with its namespace and start time if it can be read.
    let mut holder: Option<(i32, Option<(u64, u64)>)> = None;
    while let Some(len) = records.read(buf).map_err(DiagStop::Unavailable)? {
        for rec in buf[..len].chunks_exact(RECORD_LEN).map(Record::decode) {
            let rec = match rec {
                Record::Socket(rec) => rec,
                Record::Tally { passed_over } => {
                    stats.fds += passed_over;
                    stats.sockets += passed_over;
                    continue;
                }
            };
            if ctx.stop.is_set() {
                return Err(DiagStop::Ended(Error::Stopped));
            }
            if block != 0 && in_block == block {
                if !ctx.tick(ticker, stats) {
                    return Err(DiagStop::Ended(Error::Stopped));
                }
                in_block = 0;
            }
            in_block += 1;
            stats.fds += 1;
            if holder.is_none_or(|(pid, _)| pid != rec.pid) {
                let netns = match owners.by_pid.binary_search_by_key(&rec.pid, |p| p.0) {
                    Ok(i) => Some(owners.by_pid[i].1),
                    Err(_) => ctx.netns(rec.pid).ok(),
                };
                let found = netns.and_then(|ns| {
                    let (start_time, threads) = ctx.read_stat(rec.pid, stat, name)?;
                    noticed.saw_process(rec.pid, threads);
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
                elsewhere.push((rec.netns, rec.pid, rec.fd, rec.inode));
            }
            stats.sockets += 1;
            let name = CStr::from_bytes_until_nul(name).unwrap_or_default();
            owners.add(&Socket { inode: rec.inode, netns, start_time, pid: rec.pid, fd: rec.fd, name });
            held.extend(Held::of(&rec));
        }
    }
    held.sort_unstable_by_key(|h| (h.netns, h.protocol, h.conn.inode));
    held.dedup_by_key(|h| (h.netns, h.conn.inode));
    owners.held = Some(held);
    Ok(())
}

/// What the owner scan found of the namespaces nothing else led to: the
/// sockets of other families than TCP's and UDP's that live in them, as the
/// last scan that asked every socket found them, and the namespaces it
/// looked for. While a pass's unfound namespaces are among those and each
/// such socket is still where it was, the scan does not ask every socket
/// again: a socket moved into one since, with nothing else leading there,
/// is found when the set of unfound namespaces changes.
#[derive(Debug, Default)]
pub(super) struct Others {
    /// Whether the last scan's walk of the kernel's list stopped short:
    /// the next scan asks every socket from the start.
    pub short: bool,
    /// Sorted.
    looked_for: Vec<u64>,
    /// (netns, pid, fd, inode), sorted.
    ways: Vec<(u64, i32, i32, u64)>,
    /// Scratch: the kernel's list, the namespaces nothing led to, the
    /// list's map value.
    list: Vec<u64>,
    unfound: Vec<u64>,
    buf: Vec<u8>,
}

impl Others {
    /// Whether the last answer holds for `unfound`: each was looked for,
    /// and one with sockets still has one of them at its fd (its link
    /// names the socket; a `readlink` asks no filesystem anything).
    fn holds(&self, ctx: &Ctx) -> bool {
        let mut link = [0u8; LINK_MAX];
        self.unfound.iter().all(|ns| {
            let lo = self.ways.partition_point(|w| w.0 < *ns);
            let mine = self.ways[lo..].iter().take_while(|w| w.0 == *ns);
            self.looked_for.binary_search(ns).is_ok()
                && mine.clone().next().is_none_or(|_| {
                    mine.clone().any(|&(_, pid, fd, inode)| {
                        let at = format!("fd/{fd}");
                        ctx.root
                            .read_link(pid, at.as_bytes(), &mut link)
                            .is_ok_and(|l| l == format!("socket:[{inode}]").as_bytes())
                    })
                })
        })
    }
}

/// After the namespace search of a pass the BPF scan indexed: whether its
/// walk of the kernel's list was whole (the next scan asks every socket
/// if not). Where this scan asked only TCP and UDP sockets where they live
/// (`inet_only`), the namespaces the kernel lists that no process, mount,
/// fd or TCP/UDP socket led to are looked for among every socket (a unix
/// socket can hold one), by a second scan unless the last answer holds;
/// each found joins `groups` with its sockets as ways in. Where the list
/// can't be read whole, every socket is asked, as without it.
pub(super) fn explain(
    ctx: &Ctx,
    iter: &SockIter,
    inet_only: bool,
    others: &mut Others,
    groups: &mut Groups,
    found: &mut Namespaces,
    stats: &mut Stats,
) -> Result<(), Error> {
    let o = others;
    let listed = iter.netns_list(&mut o.buf, &mut o.list).unwrap_or(false);
    o.short = !listed;
    if !inet_only {
        return Ok(());
    }
    let unknown = |groups: &Groups, ns: &u64| groups.binary_search_by_key(ns, |g| g.netns).is_err();
    o.unfound.clear();
    if listed {
        o.unfound.extend(o.list.iter().filter(|ns| unknown(groups, ns)));
        if o.unfound.is_empty() {
            return Ok(());
        }
    }
    if !listed || !o.holds(ctx) {
        let mut records = iter.start(true).map_err(|e| Error::io("BPF owner scan (task_file iterator)", e))?;
        o.ways.clear();
        let buf = &mut o.buf;
        buf.resize(buf.len().max(64 * RECORD_LEN), 0);
        while let Some(len) = records.read(buf).map_err(|e| Error::io("BPF owner scan (task_file iterator)", e))? {
            for rec in buf[..len].chunks_exact(RECORD_LEN).map(Record::decode) {
                let Record::Socket(r) = rec else { continue };
                if unknown(groups, &r.netns) && (!listed || o.unfound.binary_search(&r.netns).is_ok()) {
                    o.ways.push((r.netns, r.pid, r.fd, r.inode));
                }
            }
        }
        o.ways.sort_unstable();
        o.looked_for.clear();
        if listed {
            o.looked_for.extend_from_slice(&o.unfound);
        }
    }
    let unfound = &o.unfound;
    let ways = o.ways.iter().filter(|w| !listed || unfound.binary_search(&w.0).is_ok());
    found.add_sockets(groups, ways.copied(), stats);
    Ok(())
}
