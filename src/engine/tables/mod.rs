//! Tables: each namespace's socket table lines, from one of three sources
//! tried in turn until one can list the namespace: what the BPF owner scan
//! accounts for (`accounted.rs`), netlink `sock_diag` (`netlink.rs`), and
//! the text tables under `PID/net/` (`text.rs`). Every line goes through
//! one `Sink`, which keeps a socket listed twice (read twice, or by two
//! sources) from being delivered twice.

mod accounted;
mod netlink;
mod text;

use std::ops::ControlFlow;

pub(super) use accounted::Accounted;
pub(super) use netlink::{Ahead, Netlink};
pub(super) use text::{TCP, TCP6, Table, Text, UDP, UDP6, append_tables, read_group_tables};

use super::ctx::{Ctx, Group};
use super::error::Error;
use super::stats::Stats;
use crate::parse::kernel::Protocol;
use crate::parse::tcp::{Admit, Conn, Dedup};

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

/// Which tables `connections` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protocols {
    pub tcp: bool,
    pub udp: bool,
}

/// One namespace to list: its pids, and the namespaces after it (a source
/// may prepare for them).
pub(super) struct Namespace<'g> {
    pub netns: u64,
    pub pids: &'g Group,
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
    pub state_mask: u32,
    /// The namespace being listed.
    pub netns: u64,
    pub dedup: &'a mut Dedup,
    /// Takes a line, its protocol's number and its namespace.
    pub deliver: &'a mut dyn FnMut(&Conn, u8, u64) -> ControlFlow<()>,
}

impl Sink<'_> {
    /// Delivers `c` of `protocol` if it is new in this namespace and its
    /// state passes; `Break` where the callback said stop.
    pub fn offer(&mut self, protocol: Protocol, c: &Conn) -> ControlFlow<()> {
        let protocol = protocol.number();
        if self.dedup.admit(protocol, c, self.state_mask) == Admit::Fresh {
            (self.deliver)(c, protocol, self.netns)
        } else {
            ControlFlow::Continue(())
        }
    }
}
