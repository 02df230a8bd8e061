//! Seen closed: connections that opened and closed between two changes
//! calls, which no table read could list, from sock_diag's destroy
//! notifications (`SKNLGRP_INET_TCP_DESTROY`, `SKNLGRP_INET6_TCP_DESTROY`,
//! `SKNLGRP_INET_UDP_DESTROY`, `SKNLGRP_INET6_UDP_DESTROY`).
//!
//! A subscription is one netlink socket per namespace, made inside it (the
//! kernel tells each namespace's subscribers of the sockets freed there).
//! The kernel lets any user subscribe (sock_diag's groups are
//! `NL_CFG_F_NONROOT_RECV`); one that refuses (EPERM) is not asked again,
//! and only seen-closed events are missing then. At most
//! `MAX_SUBSCRIBED` namespaces are subscribed, the first met in inode order;
//! a namespace's subscription ends with the first call that no longer sees
//! it (a socket keeps its namespace alive), which frees its place.
//! Subscriptions are made in the calling thread's own namespace only, for
//! now: entering others waits for the library's own namespace thread.
//!
//! Notifications are drained at the start of each call, without waiting,
//! and kept until a call commits; each datagram is believed only if the
//! kernel sent it to one destroy group (`parse::diag::destroyed`).

use crate::parse::diag::destroyed;
use crate::parse::tcp::Conn;
use crate::procfs::{DestroySocket, home_netns};

use super::walker::Stats;

/// Namespaces subscribed at most: one fd and up to 512 KiB of queued
/// notifications each.
const MAX_SUBSCRIBED: usize = 256;

/// Notifications kept for delivery at most; more wait in the kernel.
const MAX_PENDING: usize = 1 << 16;

/// A freed socket, as the notification of its namespace told it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Closed {
    pub netns: u64,
    /// 1 = TCP, 2 = UDP.
    pub protocol: u8,
    pub conn: Conn,
}

impl Closed {
    /// Whether this notification may be of the socket listed as `(netns,
    /// protocol, c)`: the same namespace, protocol, family, local port and
    /// remote address, and the same local address and remote port where the
    /// notification still has them. A reset socket has lost its remote port
    /// (not its remote address), and an unbound one its local address, by
    /// the time the kernel frees it; a listener never had a remote address.
    pub fn may_be(&self, netns: u64, protocol: u8, c: &Conn) -> bool {
        let d = &self.conn;
        (self.netns, self.protocol, d.family, d.local_port, d.remote_addr)
            == (netns, protocol, c.family, c.local_port, c.remote_addr)
            && (d.local_addr == c.local_addr || d.local_addr == [0; 16])
            && (d.remote_port == c.remote_port || (d.remote_port == 0 && d.remote_addr != [0; 16]))
    }

    /// The order `may_be` searches in: what it compares exactly.
    pub fn key(netns: u64, protocol: u8, c: &Conn) -> (u64, u8, u8, u16) {
        (netns, protocol, c.family, c.local_port)
    }
}

/// The destroy subscriptions of a walker.
#[derive(Debug, Default)]
pub(super) struct Subscriptions {
    /// Sorted by namespace.
    subs: Vec<(u64, DestroySocket)>,
    /// Whether the calling thread's namespace refused (EPERM): not asked
    /// again while the walker lives.
    home_refused: bool,
}

impl Subscriptions {
    /// Appends what every subscription has queued to `pending`, up to
    /// `MAX_PENDING`; counts datagrams not believed in `stats.dropped` and
    /// notifications lost (the kernel's queue overflowed, or `pending` is
    /// full) in `stats.closed_lost`.
    pub fn drain(&self, pending: &mut Vec<Closed>, stats: &mut Stats) {
        let mut buf = [0u8; 4096];
        for (netns, sock) in &self.subs {
            while pending.len() < MAX_PENDING {
                match sock.try_recv(&mut buf) {
                    Ok((n, sender, groups)) => match destroyed(&buf[..n.min(buf.len())], sender, groups) {
                        // A socket never bound was never in a table either.
                        Some((_, conn)) if conn.local_port == 0 => {}
                        Some((protocol, conn)) => pending.push(Closed { netns: *netns, protocol, conn }),
                        None => stats.dropped += 1,
                    },
                    Err(nix::errno::Errno::ENOBUFS) => stats.closed_lost += 1,
                    Err(_) => break,
                }
            }
            if pending.len() == MAX_PENDING {
                stats.closed_lost += 1;
                return;
            }
        }
    }

    /// Subscribes the namespaces of `groups` (sorted by namespace) that are
    /// not yet, up to `MAX_SUBSCRIBED`, and ends the subscriptions of those
    /// it no longer lists.
    pub fn update(&mut self, groups: &[(u64, i32)]) {
        let listed = |ns: u64| groups.binary_search_by_key(&ns, |g| g.0).is_ok();
        self.subs.retain(|(ns, _)| listed(*ns));
        if self.home_refused || self.subs.len() >= MAX_SUBSCRIBED {
            return;
        }
        let Ok(home) = home_netns() else { return };
        if !listed(home) || self.subs.iter().any(|(ns, _)| *ns == home) {
            return;
        }
        match DestroySocket::open() {
            Ok(sock) => {
                let at = self.subs.partition_point(|(ns, _)| *ns < home);
                self.subs.insert(at, (home, sock));
            }
            Err(nix::errno::Errno::EPERM) => self.home_refused = true,
            // EMFILE and the like pass: the next call tries again.
            Err(_) => {}
        }
    }
}
