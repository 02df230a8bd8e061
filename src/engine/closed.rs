//! Seen closed: connections that opened and closed between two changes
//! calls, which no table read could list, from sock_diag's destroy
//! notifications (`SKNLGRP_INET_TCP_DESTROY`, `SKNLGRP_INET6_TCP_DESTROY`,
//! `SKNLGRP_INET_UDP_DESTROY`, `SKNLGRP_INET6_UDP_DESTROY`).
//!
//! A subscription is one netlink socket per namespace, made inside it (the
//! kernel tells each namespace's subscribers of the sockets freed there):
//! in the calling thread's own directly, in the others on one thread of
//! the library's own that enters them in turn, as the dump sockets are
//! made (`procfs::HostProc`), after the same checks of where it goes. The
//! kernel lets any user subscribe (sock_diag's groups are
//! `NL_CFG_F_NONROOT_RECV`); entering another namespace needs
//! `CAP_SYS_ADMIN`. A namespace that refuses either (EPERM, EACCES) is not
//! asked again while it lasts, and only its seen-closed events are missing.
//! At most `MAX_SUBSCRIBED` namespaces are subscribed, in an order drawn
//! from a key each walker picks at random (`rank`), so no one can place
//! namespaces of theirs first; a namespace's subscription ends with the
//! first call that no longer sees it (a socket keeps its namespace alive),
//! which frees its place for another.
//!
//! Notifications are drained at the start of each call, without waiting,
//! and kept until a call commits; each datagram is believed only if the
//! kernel sent it to one destroy group (`parse::diag::destroyed`).

use nix::errno::Errno;

use crate::parse::diag::destroyed;
use crate::parse::kernel::{Protocol, TcpState};
use crate::parse::tcp::Conn;
use crate::procfs::{DestroySocket, HostProc, Netns};

use super::ctx::{Ctx, Group, by_netns};
use super::namespaces::Namespaces;
use super::stats::Stats;

/// Namespaces subscribed at most: one fd and up to 512 KiB of queued
/// notifications each.
const MAX_SUBSCRIBED: usize = 256;

/// Notifications kept for delivery at most; more wait in the kernel.
const MAX_PENDING: usize = 1 << 16;

/// Where namespace `netns` comes in the subscription order of `key`: a
/// multiplication by an odd key and a rotation, a permutation of the inodes
/// that no one who does not know the key can aim at.
fn rank(key: u64, netns: u64) -> u64 {
    (netns ^ key.rotate_left(29)).wrapping_mul(key).rotate_right(31)
}

/// A freed socket, as the notification of its namespace told it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Closed {
    pub netns: u64,
    /// `Protocol::number`.
    pub protocol: Protocol,
    pub conn: Conn,
    /// The kernel's socket cookie; 0 where not known (a snapshot's).
    pub cookie: u64,
}

impl Closed {
    /// Whether this notification may be of the socket listed as `(netns,
    /// protocol, c)`: the same namespace, protocol, family, local port and
    /// remote address, and the same local address and remote port where the
    /// notification still has them. A reset socket has lost its remote port
    /// (not its remote address), and an unbound one its local address, by
    /// the time the kernel frees it; a listener never had a remote address.
    /// A reset socket never becomes a TIME_WAIT: one listed with another
    /// remote port is another connection from the same port (on loopback,
    /// a new connection takes a port that another's TIME_WAIT holds).
    pub fn may_be(&self, netns: u64, protocol: Protocol, c: &Conn) -> bool {
        let d = &self.conn;
        let reset = d.remote_port == 0 && d.remote_addr != [0; 16] && c.state != TcpState::TimeWait.number();
        (self.netns, self.protocol, d.family, d.local_port, d.remote_addr)
            == (netns, protocol, c.family, c.local_port, c.remote_addr)
            && (d.local_addr == c.local_addr || d.local_addr == [0; 16])
            && (d.remote_port == c.remote_port || reset)
    }

    /// The order `may_be` searches in: what it compares exactly.
    pub fn key(netns: u64, protocol: Protocol, c: &Conn) -> (u64, Protocol, u8, u16) {
        (netns, protocol, c.family, c.local_port)
    }
}

/// The destroy subscriptions of a walker.
#[derive(Debug, Default)]
pub(super) struct Subscriptions {
    /// Sorted by namespace.
    subs: Vec<(u64, DestroySocket)>,
    /// Namespaces that refused, sorted: not asked again while they last.
    refused: Vec<u64>,
    /// The namespaces being subscribed: where to enter, what came of it.
    jobs: Vec<Job>,
    /// The namespaces to subscribe this call: (rank, where in `groups`).
    new: Vec<(u64, usize, usize)>,
    /// Which subscriptions `drain` still reads from this call.
    open: Vec<bool>,
    /// Calls drained: where the next starts.
    turn: usize,
    /// The order namespaces are subscribed in when there are more than
    /// `MAX_SUBSCRIBED`: a random permutation of their inodes, so that no
    /// user takes every place by making the namespaces met first.
    key: u64,
}

#[derive(Debug)]
struct Job {
    netns: u64,
    enter: Option<Netns>,
    sock: Option<Result<DestroySocket, Errno>>,
}

impl Subscriptions {
    /// Appends what every subscription has queued to `pending`, up to
    /// `MAX_PENDING`; counts datagrams not believed in `stats.dropped` and
    /// notifications lost (the kernel's queue overflowed, or `pending` is
    /// full) in `stats.closed_lost`.
    pub fn drain(&mut self, pending: &mut Vec<Closed>, stats: &mut Stats) {
        let mut buf = [0u8; 4096];
        let Subscriptions { subs, open, turn, .. } = self;
        *turn = turn.wrapping_add(1);
        let full = in_turn(subs.len(), *turn, open, |i| {
            if pending.len() == MAX_PENDING {
                return Turn::Full;
            }
            let (netns, sock) = &subs[i];
            match sock.try_recv(&mut buf) {
                Ok((n, sender, groups)) => match destroyed(&buf[..n.min(buf.len())], sender, groups) {
                    // A socket never bound was never in a table either.
                    Some((_, conn, _)) if conn.local_port == 0 => {}
                    Some((protocol, conn, cookie)) => pending.push(Closed { netns: *netns, protocol, conn, cookie }),
                    None => stats.dropped += 1,
                },
                Err(Errno::ENOBUFS) => stats.closed_lost += 1,
                Err(_) => return Turn::Empty,
            }
            Turn::More
        });
        stats.closed_lost += u64::from(full);
    }
}

/// What one read of a subscription came to.
#[derive(Debug, PartialEq, Eq)]
enum Turn {
    More,
    /// Nothing more waits there this call.
    Empty,
    /// No more is kept this call.
    Full,
}

/// Reads each of `n` sources once in turn (`read(i)`), round after round,
/// starting from a different one on each `turn`, until all are empty;
/// whether it stopped because `read` said full. A source with a flood
/// takes no more than its share of what is kept. `open` is scratch.
fn in_turn(n: usize, turn: usize, open: &mut Vec<bool>, mut read: impl FnMut(usize) -> Turn) -> bool {
    let first = if n == 0 { 0 } else { turn % n };
    open.clear();
    open.resize(n, true);
    while open.iter().any(|&o| o) {
        for i in (first..n).chain(0..first) {
            if open[i] {
                match read(i) {
                    Turn::More => {}
                    Turn::Empty => open[i] = false,
                    Turn::Full => return true,
                }
            }
        }
    }
    false
}

impl Subscriptions {
    /// Subscribes the namespaces of `groups` (sorted by namespace) that are
    /// not yet, up to `MAX_SUBSCRIBED` (those past it, in the order of
    /// `key`, are counted in `stats.closed_lost`: their seen-closed events
    /// are missing), and ends the subscriptions of those it no longer
    /// lists. A namespace no process is in is not subscribed: the
    /// subscription's socket would keep it alive, and every later pass
    /// would find it through that socket. Nothing here fails a call: a
    /// namespace not subscribed only has no seen-closed events.
    pub(super) fn subscribe(&mut self, ctx: &Ctx, groups: &Group, found: &Namespaces, stats: &mut Stats) {
        let subs = self;
        let listed = |ns: u64| groups.binary_search_by_key(&ns, |g| g.netns).is_ok();
        subs.subs.retain(|(ns, _)| listed(*ns));
        subs.refused.retain(|&ns| listed(ns));
        if subs.key == 0 {
            let random = || crate::procfs::random_u32().map_or(0x9E37_79B9, u64::from);
            subs.key = (random() << 32 | random()) | 1;
        }
        let Subscriptions { subs: made, refused, new, key, .. } = subs;
        new.clear();
        let mut at = 0;
        for g in by_netns(groups) {
            let ns = g[0].netns;
            if g[0].as_pid().is_some()
                && made.binary_search_by_key(&ns, |s| s.0).is_err()
                && refused.binary_search(&ns).is_err()
            {
                new.push((rank(*key, ns), at, at + g.len()));
            }
            at += g.len();
        }
        let room = MAX_SUBSCRIBED - made.len();
        if new.len() > room {
            stats.closed_lost += (new.len() - room) as u64;
            new.sort_unstable();
            new.truncate(room);
        }
        if new.is_empty() {
            return;
        }
        let Ok(host) = HostProc::open() else { return };
        // The walk's stats describe its pass, not this.
        let mut scratch = Stats::default();
        let Subscriptions { subs: made, refused, jobs, new, .. } = subs;
        for &(_, from, to) in new.iter() {
            let g = &groups[from..to];
            let netns = g[0].netns;
            let job = if netns == host.home() {
                Job { netns, enter: None, sock: Some(host.socket()) }
            } else {
                match found.netns_of_group(ctx, &host, g, &mut scratch) {
                    Ok(enter) => Job { netns, enter, sock: None },
                    Err(e) => Job { netns, enter: None, sock: Some(Err(e)) },
                }
            };
            jobs.push(job);
        }
        if jobs.iter().any(|j| j.enter.is_some()) {
            let to_make = jobs.iter_mut().filter_map(|j| Some((j.enter.as_ref()?, &mut j.sock)));
            if let Err(e) = host.sockets(to_make) {
                jobs.iter_mut().filter(|j| j.enter.is_some()).for_each(|j| j.sock = Some(Err(e)));
            }
        }
        for job in jobs.drain(..) {
            match job.sock {
                Some(Ok(sock)) => {
                    let at = made.partition_point(|s| s.0 < job.netns);
                    made.insert(at, (job.netns, sock));
                }
                Some(Err(Errno::EPERM | Errno::EACCES)) => {
                    let at = refused.partition_point(|&ns| ns < job.netns);
                    refused.insert(at, job.netns);
                }
                // Gone meanwhile, or a failure that may pass (EMFILE): asked again next call.
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reset client's notification (remote port lost) is of its own
    /// listed line, not of a TIME_WAIT another connection left on its port.
    #[test]
    fn a_reset_socket_is_not_another_connections_time_wait() {
        let lo = [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let line = |remote_port, state: TcpState| Conn {
            family: 4,
            local_addr: lo,
            local_port: 40968,
            remote_addr: lo,
            remote_port,
            state: state.number(),
            ..Conn::ZERO
        };
        let reset = Closed { netns: 1, protocol: Protocol::Tcp, conn: line(0, TcpState::Close), cookie: 9 };
        assert!(reset.may_be(1, Protocol::Tcp, &line(43607, TcpState::Established)), "its own line");
        assert!(!reset.may_be(1, Protocol::Tcp, &line(38467, TcpState::TimeWait)), "another's TIME_WAIT");
        let graceful = Closed { conn: line(38467, TcpState::Close), ..reset };
        assert!(graceful.may_be(1, Protocol::Tcp, &line(38467, TcpState::TimeWait)), "its own TIME_WAIT");
    }

    #[test]
    fn a_flooding_source_takes_only_its_share() {
        // Source 0 never runs dry; 1 and 2 hold three each; 10 are kept.
        let mut left = [usize::MAX, 3, 3];
        let mut kept = Vec::new();
        let full = in_turn(3, 0, &mut Vec::new(), |i| {
            if kept.len() == 10 {
                return Turn::Full;
            }
            if left[i] == 0 {
                return Turn::Empty;
            }
            left[i] -= 1;
            kept.push(i);
            Turn::More
        });
        assert!(full);
        let count = |s| kept.iter().filter(|&&k| k == s).count();
        assert_eq!((count(0), count(1), count(2)), (4, 3, 3), "{kept:?}");
    }

    #[test]
    fn each_call_starts_with_another_source() {
        for turn in 0..6 {
            let mut first = None;
            in_turn(3, turn, &mut Vec::new(), |i| {
                first.get_or_insert(i);
                Turn::Full
            });
            assert_eq!(first, Some(turn % 3));
        }
    }

    #[test]
    fn the_lowest_inodes_do_not_take_every_place() {
        // 300 namespaces, inodes from 4026531840 up, of which 256 are subscribed.
        let chosen = |key: u64| {
            let mut ns: Vec<u64> = (4_026_531_840..4_026_532_140).collect();
            ns.sort_unstable_by_key(|&n| rank(key, n));
            ns.truncate(MAX_SUBSCRIBED);
            ns.sort_unstable();
            ns
        };
        let lowest: Vec<u64> = (4_026_531_840..4_026_531_840 + MAX_SUBSCRIBED as u64).collect();
        let (a, b) = (chosen(0x0123_4567_89ab_cdef), chosen(0xfedc_ba98_7654_3211));
        assert_ne!(a, lowest);
        assert_ne!(a, b, "the order depends on the key");
        // Of the 44 highest, some are subscribed.
        assert!(a.iter().any(|&n| n >= 4_026_531_840 + MAX_SUBSCRIBED as u64));
    }
}
