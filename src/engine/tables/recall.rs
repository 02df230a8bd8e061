//! Recall: what a namespace's last dump listed that no process holds
//! (TIME_WAIT sockets, connection requests, connections waiting to be
//! accepted, orphans), kept by the id the kernel gave each, so that the
//! next pass can ask for exactly those sockets instead of dumping the
//! namespace, whose every dump walks the host's whole TCP hash.
//!
//! Believed only when the counts prove it whole: the accounted source reads
//! the namespace's `sockstat` first, then each remembered socket is looked
//! up by its tuple and cookie; the ones still there, with the held ones,
//! must be every socket those counts and the listeners' pending requests
//! say the namespace has. Any socket made since the counts were read is not
//! among them, and one made before them and not remembered leaves a count
//! unmatched: the namespace is dumped, and remembered anew.

use super::accounted::Unheld;
use crate::parse::diag::SockId;
use crate::parse::kernel::{Family, TcpState};
use crate::parse::tcp::Conn;

/// Sockets remembered across every namespace at most; a namespace whose
/// do not fit is not remembered, and is dumped.
const RECALL_MAX: usize = 1 << 16;

/// A namespace's sockets remembered at most: asking for each costs a few
/// microseconds, and a few hundred of them cost what one walk of a host's
/// TCP hash (262,144 buckets) does.
const NAMESPACE_MAX: usize = 512;

/// Every namespace's remembered sockets, kept from pass to pass.
#[derive(Debug, Default)]
pub(in crate::engine) struct Recall {
    /// Sorted by namespace.
    ids: Vec<(u64, SockId)>,
}

impl Recall {
    /// `netns`'s remembered sockets.
    pub fn of(&self, netns: u64) -> impl Iterator<Item = &SockId> {
        let lo = self.ids.partition_point(|e| e.0 < netns);
        self.ids[lo..].iter().take_while(move |e| e.0 == netns).map(|e| &e.1)
    }

    /// `netns`'s sockets are `ids` from now on (none, if they do not fit).
    pub fn replace(&mut self, netns: u64, ids: impl ExactSizeIterator<Item = SockId>) {
        let lo = self.ids.partition_point(|e| e.0 < netns);
        let hi = lo + self.ids[lo..].partition_point(|e| e.0 == netns);
        if ids.len() <= NAMESPACE_MAX && self.ids.len() - (hi - lo) + ids.len() <= RECALL_MAX {
            // An iterator of exact length: spliced in place.
            self.ids.splice(lo..hi, ids.map(|id| (netns, id)));
        } else {
            self.ids.drain(lo..hi);
        }
    }

    /// Forgets every namespace `keep` says is gone.
    pub fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        self.ids.retain(|e| keep(e.0));
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

impl Unheld {
    /// How many sockets these are.
    pub(super) fn total(&self) -> usize {
        (self.tcp4 + self.tcp6 + self.time_wait + self.requests).try_into().unwrap_or(usize::MAX)
    }
}

/// Whether the unheld sockets found again (`found`, each a lookup's answer
/// of inode 0) are exactly what the counts say no process holds.
pub(super) fn whole(found: &[(Conn, SockId)], want: Unheld) -> bool {
    let mut got = Unheld::default();
    for (c, _) in found {
        match c.tcp_state() {
            Some(TcpState::TimeWait) => got.time_wait += 1,
            // A request: the kernel gives a request socket SYN_RECV.
            Some(TcpState::SynRecv | TcpState::NewSynRecv) => got.requests += 1,
            _ if c.family == Family::Inet.version() => got.tcp4 += 1,
            _ => got.tcp6 += 1,
        }
    }
    got == want
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(cookie: u64) -> SockId {
        SockId::for_test(Family::Inet, cookie)
    }

    #[test]
    fn each_namespace_is_replaced_alone_and_kept_in_order() {
        let mut r = Recall::default();
        r.replace(7, [id(1), id(2)].into_iter());
        r.replace(3, [id(3)].into_iter());
        r.replace(9, [id(4)].into_iter());
        r.replace(7, [id(5)].into_iter());
        let cookies = |r: &Recall, ns| r.of(ns).map(SockId::cookie).collect::<Vec<_>>();
        assert_eq!(cookies(&r, 7), [5]);
        assert_eq!(cookies(&r, 3), [3]);
        assert_eq!(cookies(&r, 9), [4]);
        r.retain(|ns| ns != 3);
        assert_eq!(cookies(&r, 3), [] as [u64; 0]);
        r.replace(9, std::iter::empty());
        assert_eq!(cookies(&r, 9), [] as [u64; 0]);
        assert_eq!(cookies(&r, 7), [5]);
    }

    #[test]
    fn memory_is_bounded_and_a_namespace_remembered_whole_or_not_at_all() {
        let mut r = Recall::default();
        let ids = |n: usize| (0..n as u32).map(|c| id(c.into()));
        r.replace(1, ids(NAMESPACE_MAX + 1));
        assert_eq!(r.of(1).count(), 0, "too many: none, so dumped, never a part looked up");
        let full = RECALL_MAX / NAMESPACE_MAX;
        for ns in 0..full as u64 {
            r.replace(ns, ids(NAMESPACE_MAX));
        }
        assert_eq!(r.of(1).count(), NAMESPACE_MAX);
        r.replace(full as u64, ids(1));
        assert_eq!(r.of(full as u64).count(), 0, "full");
        r.replace(1, ids(1));
        r.replace(full as u64, ids(1));
        assert_eq!(r.of(full as u64).count(), 1);
    }

    #[test]
    fn only_exactly_the_counted_sockets_are_whole() {
        let sock = |state: TcpState, family| (Conn { state: state.number(), family, ..Conn::ZERO }, id(0));
        let found = [
            sock(TcpState::TimeWait, 4),
            sock(TcpState::TimeWait, 6),
            sock(TcpState::SynRecv, 4),
            sock(TcpState::Established, 4),
            sock(TcpState::FinWait1, 6),
        ];
        let want = Unheld { tcp4: 1, tcp6: 1, time_wait: 2, requests: 1 };
        assert!(whole(&found, want));
        assert!(!whole(&found[1..], want), "a TIME_WAIT short");
        assert!(!whole(&found, Unheld { requests: 2, ..want }), "a request not found again");
        assert!(!whole(&found, Unheld { tcp6: 0, ..want }), "one more than counted");
    }
}
