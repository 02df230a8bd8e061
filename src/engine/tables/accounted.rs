//! Accounted: a namespace whose every socket the BPF owner scan found held
//! is listed from what the scan read of those sockets, its tables not read.
//! One whose TCP sockets beyond those are all unheld (TIME_WAIT and the
//! like) is handed to the netlink source with what its counts say they are
//! (`Hint`), for `recall.rs`.

use std::cell::Cell;
use std::os::fd::AsFd;

use nix::errno::Errno;

use super::{Listed, Namespace, Protocols, Sink, TableSource};
use crate::engine::ctx::{Ctx, Member};
use crate::engine::error::Error;
use crate::engine::owners::Held;
use crate::engine::stats::Stats;
use crate::parse::kernel::{Family, Protocol};
use crate::parse::sockstat::{SockCounts, parse_sockstat};

/// The accounted source of one pass over the BPF scan's `held` sockets.
pub(in crate::engine) struct Accounted<'a> {
    pub held: &'a [Held],
    /// `net/sockstat` and `net/sockstat6` of one namespace.
    pub sockstat: &'a mut [Vec<u8>; 2],
    /// Where a namespace held but for unheld TCP sockets is told of.
    pub hint: &'a Cell<Option<Hint<'a>>>,
}

/// TCP sockets a namespace's counts say no process holds: full sockets by
/// family (connections waiting to be accepted, orphans), TIME_WAIT sockets
/// and the listeners' pending requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(in crate::engine) struct Unheld {
    pub tcp4: u64,
    pub tcp6: u64,
    pub time_wait: u64,
    pub requests: u64,
}

/// A namespace whose held sockets are all its tables list but for `unheld`.
#[derive(Clone, Copy, Debug)]
pub(in crate::engine) struct Hint<'a> {
    pub netns: u64,
    pub mine: &'a [Held],
    pub unheld: Unheld,
}

impl TableSource for Accounted<'_> {
    fn list(&mut self, ctx: &Ctx, ns: &Namespace<'_>, sink: &mut Sink<'_>, stats: &mut Stats) -> Result<Listed, Error> {
        self.hint.set(None);
        match self.accounted(ctx, ns, sink.protocols) {
            Some((mine, unheld)) if unheld == Unheld::default() => offer_held(mine, sink, stats),
            Some((mine, unheld)) => {
                self.hint.set(Some(Hint { netns: ns.netns, mine, unheld }));
                Ok(Listed::Unavailable)
            }
            None => Ok(Listed::Unavailable),
        }
    }
}

/// Lists a namespace from sockets' own lines (`mine`, sorted by protocol):
/// its tables are not read, which `stats.accounted` counts.
pub(in crate::engine) fn offer_held(mine: &[Held], sink: &mut Sink<'_>, stats: &mut Stats) -> Result<Listed, Error> {
    stats.accounted += 1;
    let Protocols { tcp, udp } = sink.protocols;
    for (protocol, wanted) in [(Protocol::Tcp, tcp), (Protocol::Udp, udp)] {
        for h in mine.iter().filter(|h| wanted && h.protocol == protocol) {
            if sink.offer(protocol, &h.conn).is_break() {
                return Err(Error::Aborted);
            }
        }
    }
    Ok(Listed::Done)
}

impl<'a> Accounted<'a> {
    /// The held sockets of namespace `ns`, and the TCP sockets its `sockstat`
    /// counts beyond them (TIME_WAIT sockets and pending connection requests
    /// among them, which no process holds), if those are all its tables
    /// would list: `Unheld::default()` when they are the held ones exactly.
    /// Anything else, such as a UDP socket kernel-owned or in flight between
    /// processes, sends the namespace to its tables.
    fn accounted(&mut self, ctx: &Ctx, ns: &Namespace<'_>, protocols: Protocols) -> Option<(&'a [Held], Unheld)> {
        let held = self.held;
        let lo = held.partition_point(|h| h.netns < ns.netns);
        let hi = lo + held[lo..].partition_point(|h| h.netns == ns.netns);
        let mine = &held[lo..hi];
        let counts = ns.members.iter().filter_map(Member::as_pid).find_map(|pid| sockstat(ctx, pid, self.sockstat))?;
        let mut seen = SockCounts::default();
        for h in mine {
            let v4 = h.conn.family == Family::Inet.version();
            match (h.protocol, v4) {
                (Protocol::Tcp, true) => seen.tcp4 += 1,
                (Protocol::Tcp, false) => seen.tcp6 += 1,
                (Protocol::Udp, true) => seen.udp4 += 1,
                (Protocol::Udp, false) => seen.udp6 += 1,
            }
        }
        if protocols.udp && (counts.udp4, counts.udp6) != (seen.udp4, seen.udp6) {
            return None;
        }
        if !protocols.tcp {
            return Some((mine, Unheld::default()));
        }
        let unheld = Unheld {
            tcp4: counts.tcp4.checked_sub(seen.tcp4)?,
            tcp6: counts.tcp6.checked_sub(seen.tcp6)?,
            time_wait: counts.time_wait,
            requests: mine.iter().map(|h| u64::from(h.pending)).sum(),
        };
        Some((mine, unheld))
    }
}

/// `pid`'s namespace's socket counts; a host without IPv6 has no `sockstat6`.
fn sockstat(ctx: &Ctx, pid: i32, bufs: &mut [Vec<u8>; 2]) -> Option<SockCounts> {
    let [v4, v6] = bufs;
    let read = |file: &[u8], buf: &mut Vec<u8>| -> Result<usize, Errno> {
        let fd = ctx.root.open_file(pid, file)?;
        crate::procfs::read_all(fd.as_fd(), buf, 1 << 16, crate::procfs::Records::Short)
    };
    let n4 = read(b"net/sockstat", v4).ok()?;
    let v6_text: &[u8] = match read(b"net/sockstat6", v6) {
        Ok(n6) => &v6[..n6],
        Err(Errno::ENOENT) if ctx.v6_absent() || ctx.root.stat(pid, b"net").is_ok() => {
            b"TCP6: inuse 0\nUDP6: inuse 0\n"
        }
        Err(_) => return None,
    };
    parse_sockstat(&v4[..n4], v6_text)
}
