//! Netlink `sock_diag`: each namespace's sockets dumped by the kernel on a
//! socket made inside that namespace. Only the kernel's answers to our
//! requests are believed; the rest is counted in `stats.dropped`.

use std::cell::Cell;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::accounted::{Hint, offer_held};
use super::recall::{Recall, whole};
use super::{Listed, Namespace, Protocols, Sink, TableSource};
use crate::engine::ctx::{Ctx, by_netns};
use crate::engine::error::{DiagStop, Error};
use crate::engine::namespaces::Namespaces;
use crate::engine::pace::Wait;
use crate::engine::stats::Stats;
use crate::parse::diag::{Reply, Request, SockId, replies};
use crate::parse::kernel::{Family, Protocol};
use crate::parse::tcp::Conn;
use crate::procfs::{DiagSocket, HostProc, Known, Netns};

/// A kernel dump reply fits in 32 KiB.
pub(in crate::engine) const DIAG_BUF: usize = 64 * 1024;

/// A dump with no reply believed for this long fails. The kernel answers at
/// once; silence means someone else read our replies (a forked child that
/// went on with the walk) or a kernel fault, and would otherwise hang.
const DUMP_SILENCE: Duration = Duration::from_secs(5);

/// Namespaces whose sockets one thread makes: a thread handoff costs far
/// more than a socket (most of a millisecond of CPU, measured in a loaded
/// VM), and each socket made ahead holds an fd until its dump.
const AHEAD: usize = 16;

/// Lookups sent at once: their replies (a few hundred bytes each) fit a
/// netlink socket's default receive buffer many times over, and one that
/// did not fit would be lost, not refused.
const LOOKUPS: usize = 32;

/// A namespace next in line for a dump, and its socket made ahead.
#[derive(Debug)]
pub(in crate::engine) struct Ahead {
    netns: u64,
    /// The namespace to enter, until its socket is made.
    enter: Option<Netns>,
    /// Its socket, or why it could not be made; neither this nor `enter`:
    /// no pid leads to the namespace any more.
    sock: Option<Result<DiagSocket, Errno>>,
}

/// The netlink source of one pass. Its sockets made ahead are closed when
/// it is dropped: none outlives a call.
pub(in crate::engine) struct Netlink<'a> {
    host: HostProc,
    /// Netlink replies land here.
    buf: &'a mut Vec<u8>,
    ahead: &'a mut Vec<Ahead>,
    /// How to enter the namespaces no process is in.
    found: &'a Namespaces,
    /// Make the sockets of the namespaces after one, a batch at a time:
    /// every namespace will be dumped or asked for its remembered sockets
    /// (none is accounted for without recall, or some are remembered).
    batch: bool,
    /// A namespace netlink can't list is an error, not one for the text.
    only: bool,
    recaller: Option<Recaller<'a>>,
}

/// What the netlink source needs to list a namespace from its remembered
/// sockets (`recall.rs`), and to remember those each dump lists.
pub(in crate::engine) struct Recaller<'a> {
    pub recall: &'a mut Recall,
    /// The accounted source's word on the namespace at hand.
    pub hint: &'a Cell<Option<Hint<'a>>>,
    /// Scratch: a namespace's remembered sockets, and those found again.
    pub ids: &'a mut Vec<SockId>,
    pub found: &'a mut Vec<(Conn, SockId)>,
}

impl Drop for Netlink<'_> {
    fn drop(&mut self) {
        self.ahead.clear();
    }
}

impl<'a> Netlink<'a> {
    /// The source, or `None` where netlink sockets can't be placed: where
    /// they go is decided from the caller's own procfs, whatever the
    /// walker's root, and without it only `only` makes that an error.
    pub fn open(
        buf: &'a mut Vec<u8>,
        ahead: &'a mut Vec<Ahead>,
        found: &'a Namespaces,
        only: bool,
        recaller: Option<Recaller<'a>>,
    ) -> Result<Option<Self>, Error> {
        let host = match HostProc::open() {
            Ok(host) => host,
            Err(e) if only => return Err(Error::io("/proc/thread-self/ns/net (netlink needs the caller's procfs)", e)),
            Err(_) => return Ok(None),
        };
        if buf.len() < DIAG_BUF {
            buf.resize(DIAG_BUF, 0);
        }
        let batch = recaller.as_ref().is_none_or(|r| !r.recall.is_empty());
        Ok(Some(Netlink { host, buf, ahead, found, batch, only, recaller }))
    }

    /// The diag socket of `group`'s namespace; `None` if no pid of it leads
    /// there any more. Ours is made on this thread. Another's is taken from
    /// those made ahead, or made with those of up to `AHEAD - 1` namespaces
    /// after it (in `rest`, if `batch`: they will be dumped too) on one
    /// thread of the library's own.
    fn socket_for(&mut self, ctx: &Ctx, ns: &Namespace<'_>, stats: &mut Stats) -> Result<Option<DiagSocket>, Errno> {
        let host = &self.host;
        if ns.netns == host.home() {
            return host.socket().map(Some);
        }
        let ahead = &mut *self.ahead;
        if !ahead.iter().any(|a| a.netns == ns.netns) {
            ahead.clear();
            let next = by_netns(ns.rest).filter(|g| g[0].netns != host.home());
            for g in std::iter::once(ns.members).chain(next.take(if self.batch { AHEAD - 1 } else { 0 })) {
                let (enter, sock) = match self.found.netns_of_group(ctx, host, g, stats) {
                    Ok(enter) => (enter, None),
                    Err(e) => (None, Some(Err(e))),
                };
                ahead.push(Ahead { netns: g[0].netns, enter, sock });
            }
            let jobs = ahead.iter_mut().filter_map(|a| {
                let Ahead { enter, sock, .. } = a;
                let enter: &Option<Netns> = enter;
                Some((enter.as_ref()?, sock))
            });
            if let Err(e) = host.sockets(jobs) {
                ahead.iter_mut().filter(|a| a.enter.is_some()).for_each(|a| a.sock = Some(Err(e)));
            }
            ahead.iter_mut().for_each(|a| a.enter = None);
        }
        // Found: a batch made here starts with this group.
        let i = ahead.iter().position(|a| a.netns == ns.netns).unwrap_or_default();
        ahead.swap_remove(i).sock.transpose()
    }
}

impl TableSource for Netlink<'_> {
    fn list(&mut self, ctx: &Ctx, ns: &Namespace<'_>, sink: &mut Sink<'_>, stats: &mut Stats) -> Result<Listed, Error> {
        let dumped = match self.socket_for(ctx, ns, stats) {
            Ok(Some(mut sock)) => self.list_on(ctx, &mut sock, ns.netns, sink, stats),
            // Every pid of it exited or was reused since the grouping: nothing to list.
            Ok(None) => Ok(()),
            Err(e) => Err(DiagStop::Unavailable(e)),
        };
        match dumped {
            Ok(()) => Ok(Listed::Done),
            Err(DiagStop::Ended(e)) => Err(e),
            Err(DiagStop::Unavailable(e)) if self.only => {
                Err(Error::io(format_args!("sock_diag in netns {}", ns.netns), e))
            }
            // What was delivered stays in the sink's dedup: the next source adds only the rest.
            Err(DiagStop::Unavailable(_)) => Ok(Listed::Unavailable),
        }
    }
}

impl Netlink<'_> {
    /// Lists namespace `netns` on its diag socket: from its held and
    /// remembered sockets where the accounted source's counts prove those
    /// whole, else by a dump, whose unheld TCP sockets are remembered.
    fn list_on(
        &mut self,
        ctx: &Ctx,
        sock: &mut DiagSocket,
        netns: u64,
        sink: &mut Sink<'_>,
        stats: &mut Stats,
    ) -> Result<(), DiagStop> {
        let buf = &mut self.buf[..];
        let Some(Recaller { recall, hint, ids, found }) = &mut self.recaller else {
            return dump_namespace(ctx, sock, netns, buf, sink, None, stats);
        };
        ids.clear();
        ids.extend(recall.of(netns));
        // Fewer remembered than counted can't be all there is: dumped, unasked.
        if let Some(hint) = hint.take().filter(|h| h.netns == netns && ids.len() >= h.unheld.total()) {
            match look_up(ctx, sock, netns, ids, buf, found, stats) {
                Ok(()) if whole(found, hint.unheld) => {
                    offer_held(hint.mine, sink, stats).map_err(DiagStop::Ended)?;
                    for (c, _) in found.iter() {
                        if sink.offer(Protocol::Tcp, c).is_break() {
                            return Err(DiagStop::Ended(Error::Aborted));
                        }
                    }
                    recall.replace(netns, found.iter().map(|f| f.1));
                    return Ok(());
                }
                // Counts unmatched, or the lookups refused: dumped.
                Ok(()) | Err(DiagStop::Unavailable(_)) => {}
                Err(e) => return Err(e),
            }
        }
        ids.clear();
        let dumped = dump_namespace(ctx, sock, netns, buf, sink, Some(ids), stats);
        // A dump cut short is not remembered.
        if dumped.is_err() {
            ids.clear();
        }
        recall.replace(netns, ids.drain(..));
        dumped
    }
}

/// Reads the replies to request `seq` on `sock` into `on_reply` until it
/// says they are all in (`true`), waiting at most `DUMP_SILENCE` for each
/// batch of them.
fn read_replies(
    ctx: &Ctx,
    sock: &DiagSocket,
    seq: u32,
    netns: u64,
    buf: &mut [u8],
    stats: &mut Stats,
    on_reply: &mut dyn FnMut(Reply, &mut Stats) -> Result<bool, DiagStop>,
) -> Result<(), DiagStop> {
    let mut deadline = Instant::now() + DUMP_SILENCE;
    loop {
        // A callback may have forked: the child must not use the socket it shares with its parent.
        ctx.check_fork().map_err(DiagStop::Ended)?;
        let (n, sender) = match sock.try_recv(buf) {
            Ok(got) => got,
            Err(Errno::EAGAIN) => match ctx.stop.wait(Some(sock.as_fd()), deadline) {
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
        for reply in replies(&buf[..n], seq, sock.port_id()) {
            if reply == Reply::Skip {
                stats.dropped += 1;
                continue;
            }
            deadline = Instant::now() + DUMP_SILENCE;
            if on_reply(reply, stats)? {
                return Ok(());
            }
        }
    }
}

/// Asks for each socket of `ids` by its id; `found` gets those still there
/// that have no inode (one accepted since is held: the scan lists it).
fn look_up(
    ctx: &Ctx,
    sock: &mut DiagSocket,
    netns: u64,
    ids: &[SockId],
    buf: &mut [u8],
    found: &mut Vec<(Conn, SockId)>,
    stats: &mut Stats,
) -> Result<(), DiagStop> {
    found.clear();
    let mut requests = [0u8; LOOKUPS * Request::LOOKUP_LEN];
    for chunk in ids.chunks(LOOKUPS) {
        let seq = sock.next_seq();
        ctx.check_fork().map_err(DiagStop::Ended)?;
        for (id, to) in chunk.iter().zip(requests.chunks_mut(Request::LOOKUP_LEN)) {
            to.copy_from_slice(Request::lookup(id, seq).bytes());
        }
        sock.send(&requests[..chunk.len() * Request::LOOKUP_LEN]).map_err(DiagStop::Unavailable)?;
        let mut answers = 0;
        read_replies(ctx, sock, seq, netns, buf, stats, &mut |reply, _| {
            match reply {
                Reply::Sock(c, id) if c.inode == 0 => found.push((c, id)),
                Reply::Sock(..) => {}
                // Gone, or another socket on its tuple.
                Reply::Error(e) if [Errno::ENOENT, Errno::ESTALE].contains(&Errno::from_raw(e)) => {}
                Reply::Error(e) => return Err(DiagStop::Unavailable(Errno::from_raw(e))),
                Reply::Done | Reply::Skip => return Err(DiagStop::Unavailable(Errno::EPROTO)),
            }
            answers += 1;
            Ok(answers == chunk.len())
        })?;
    }
    Ok(())
}

/// Streams a namespace's sockets of the sink's protocols into it; `unheld`
/// gets the id of each TCP socket without an inode.
fn dump_namespace(
    ctx: &Ctx,
    sock: &mut DiagSocket,
    netns: u64,
    buf: &mut [u8],
    sink: &mut Sink<'_>,
    mut unheld: Option<&mut Vec<SockId>>,
    stats: &mut Stats,
) -> Result<(), DiagStop> {
    let mut dump = |request: &dyn Fn(u32) -> Request,
                    protocol: Protocol,
                    sink: &mut Sink<'_>,
                    mut unheld: Option<&mut Vec<SockId>>| {
        let seq = sock.next_seq();
        ctx.check_fork().map_err(DiagStop::Ended)?;
        sock.send(request(seq).bytes()).map_err(DiagStop::Unavailable)?;
        read_replies(ctx, sock, seq, netns, buf, stats, &mut |reply, _| match reply {
            Reply::Sock(c, id) => {
                if let Some(ids) = unheld.as_mut().filter(|_| c.inode == 0) {
                    ids.push(id);
                }
                if sink.offer(protocol, &c).is_break() {
                    return Err(DiagStop::Ended(Error::Aborted));
                }
                Ok(false)
            }
            Reply::Done => Ok(true),
            Reply::Error(e) => Err(DiagStop::Unavailable(Errno::from_raw(e))),
            Reply::Skip => Ok(false),
        })
    };
    let Protocols { tcp, udp } = sink.protocols;
    let families: &[Family] = if ctx.v6_absent() { &[Family::Inet] } else { &[Family::Inet, Family::Inet6] };
    if tcp {
        let both = &ctx.root.probes().tcp_both;
        let known = both.get();
        let mut done = false;
        if known != Known::No {
            match dump(&Request::tcp_both, Protocol::Tcp, sink, unheld.as_deref_mut()) {
                Ok(()) => done = true,
                // What it delivered stays in the sink's dedup; its ids are read again.
                Err(DiagStop::Unavailable(_)) if known == Known::Unknown => {
                    if let Some(ids) = unheld.as_mut() {
                        ids.clear();
                    }
                }
                Err(e) => return Err(e),
            }
            both.set(done);
        }
        if !done {
            for &f in families {
                dump(&|s| Request::by_family(f, Protocol::Tcp, s), Protocol::Tcp, sink, unheld.as_deref_mut())?;
            }
        }
    }
    if udp {
        for &f in families {
            dump(&|s| Request::by_family(f, Protocol::Udp, s), Protocol::Udp, sink, None)?;
        }
    }
    Ok(())
}
