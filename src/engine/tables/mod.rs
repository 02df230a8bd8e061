//! Tables: each namespace's socket table lines, from one of three sources
//! tried in turn until one can list the namespace: what the BPF owner scan
//! accounts for (`accounted.rs`), netlink `sock_diag` (`netlink.rs`), and
//! the text tables under `PID/net/` (`text.rs`). Every line goes through
//! one `Sink`, which keeps a socket listed twice (read twice, or by two
//! sources) from being delivered twice.

mod accounted;
mod netlink;
mod protocols;
mod recall;
mod text;

use std::ops::ControlFlow;

pub(super) use accounted::{Accounted, offer_held};
pub(super) use netlink::{Ahead, Netlink, Recaller};
pub use protocols::Protocols;
pub(super) use recall::Recall;
pub(super) use text::{TCP, TCP6, Table, Text, UDP, UDP6, append_tables, read_group_tables};

use super::ctx::{Ctx, Group};
use super::error::Error;
use super::stats::Stats;
use crate::parse::StateMask;
use crate::parse::kernel::Protocol;
use crate::parse::tcp::{Conn, Dedup};

/// Where `connections` reads the kernel's socket tables from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Nothing for a namespace the BPF owner scan accounts for (every socket
    /// its `sockstat` counts is one the scan found held), netlink `sock_diag`
    /// where it can be used (entering a namespace needs `CAP_SYS_ADMIN`),
    /// the text tables elsewhere. The default.
    Auto,
    /// The text tables under `PID/net/` only.
    Text,
    /// Netlink only: a namespace it can't be used for is an error.
    Netlink,
}

/// One namespace to list: its members, and the namespaces after it (a
/// source may prepare for them).
pub(super) struct Namespace<'g> {
    pub netns: u64,
    pub members: &'g Group,
    pub rest: &'g Group,
}

/// What a source made of a namespace.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Listed {
    /// Every line it has is delivered.
    Done,
    /// It can't list this namespace: the next source does, adding only
    /// what this one did not deliver.
    Unavailable,
}

/// A way to list a namespace's tables.
pub(super) trait TableSource {
    fn list(&mut self, ctx: &Ctx, ns: &Namespace<'_>, sink: &mut Sink<'_>, stats: &mut Stats) -> Result<Listed, Error>;
}

/// Where every source's lines go: de-duplicated within a namespace, the
/// state mask applied, then delivered.
pub(super) struct Sink<'a> {
    pub protocols: Protocols,
    pub state_mask: StateMask,
    /// The namespace being listed.
    pub netns: u64,
    pub dedup: &'a mut Dedup,
    /// Takes a line, its protocol and its namespace.
    pub deliver: &'a mut dyn FnMut(&Conn, Protocol, u64) -> ControlFlow<()>,
}

impl Sink<'_> {
    /// Delivers `c` of `protocol` if it is new in this namespace and its
    /// state passes the mask (bit `1 << state`; states from 32 never pass);
    /// `Break` where the callback said stop. De-duplication comes first: a
    /// socket's first reading decides, so one that changed state between
    /// two reads is not delivered because its later state passes.
    pub fn offer(&mut self, protocol: Protocol, c: &Conn) -> ControlFlow<()> {
        let passes = self.state_mask.contains(c.state);
        if self.dedup.insert(protocol.number(), c) && passes {
            (self.deliver)(c, protocol, self.netns)
        } else {
            ControlFlow::Continue(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::kernel::TcpState;

    fn conn(inode: u64, state: u8) -> Conn {
        Conn { inode, state, local_port: 1, ..Conn::V4 }
    }

    /// The inodes `offer` delivers of `conns`, through one sink.
    fn delivered(state_mask: StateMask, conns: &[(Protocol, Conn)]) -> Vec<u64> {
        let (mut dedup, mut out) = (Dedup::new(), Vec::new());
        let mut deliver = |c: &Conn, _, _| {
            out.push(c.inode);
            ControlFlow::Continue(())
        };
        let protocols = Protocols { tcp: true, udp: true };
        let mut sink = Sink { protocols, state_mask, netns: 1, dedup: &mut dedup, deliver: &mut deliver };
        for (p, c) in conns {
            assert!(sink.offer(*p, c).is_continue());
        }
        out
    }

    #[test]
    fn the_mask_applies_after_dedup() {
        use TcpState::{Close, Established, Listen};
        // A listener read again as established (two reads of a changing table):
        // its first reading decides, whichever state the mask passes.
        let twice = [(Protocol::Tcp, conn(7, Listen.number())), (Protocol::Tcp, conn(7, Established.number()))];
        assert_eq!(delivered(StateMask::ESTABLISHED, &twice), [] as [u64; 0]);
        assert_eq!(delivered(StateMask::LISTEN, &twice), [7]);
        let both = [(Protocol::Tcp, conn(7, Established.number())), (Protocol::Udp, conn(8, Close.number()))];
        assert_eq!(delivered(StateMask::ALL, &both), [7, 8]);
    }

    #[test]
    fn states_from_32_never_pass() {
        for st in [0x1F_u8, 0x20, 0x3F, 0xFF] {
            let got = delivered(StateMask::ALL, &[(Protocol::Tcp, conn(9, st))]);
            assert_eq!(got.len(), usize::from(st < 32), "state {st:#x}");
        }
    }
}
