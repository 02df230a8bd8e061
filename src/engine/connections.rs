//! Connections, Scope's `Connections()`: first a host-wide owner index
//! from every pid's fds (`owners`), then each namespace's tables (`tables`)
//! listed once and joined against it.

use std::ops::ControlFlow;

use super::error::Error;
use super::owners::{OwnerScan, Socket};
use super::tables::{Protocols, Sink, Source, TCP, TCP6, Table, UDP, UDP6};
use crate::parse::StateMask;
use crate::parse::kernel::Protocol;
use crate::parse::tcp::{Conn, Dedup, parse_table};

/// One table line, the namespace whose table listed it, and its owner.
#[derive(Clone, Copy, Debug)]
pub struct Connection<'a> {
    pub conn: Conn,
    /// The table's protocol.
    pub protocol: Protocol,
    pub netns: u64,
    /// The lowest pid holding the socket, and of its fds the lowest; `None`
    /// where no holder is visible (TIME_WAIT, or opened after the fd scan).
    pub owner: Option<Socket<'a>>,
}

impl Connection<'_> {
    /// The name of its state in its protocol's table, as [`state_name`]
    /// gives it: `"LISTEN"`, `"ESTABLISHED"`, UDP's `"UNCONN"`, ...;
    /// `None` for a state number the kernel does not define.
    ///
    /// [`state_name`]: crate::state_name
    pub fn state_name(&self) -> Option<&'static str> {
        super::state::state_name(self.protocol, self.conn.state)
    }
}

/// What one connections pass is asked for, checked.
#[derive(Clone, Copy, Debug)]
pub(super) struct Plan {
    pub protocols: Protocols,
    pub state_mask: StateMask,
    pub source: Source,
    pub owner_scan: OwnerScan,
    pub tcp: &'static [Table],
    pub udp: &'static [Table],
}

impl Plan {
    /// The plan, or why the arguments are out of range.
    pub fn new(
        protocols: Protocols,
        state_mask: StateMask,
        source: Source,
        owner_scan: OwnerScan,
    ) -> Result<Self, Error> {
        if !protocols.tcp && !protocols.udp {
            return Err(Error::Invalid("protocols must name TCP, UDP or both"));
        }
        if state_mask.is_empty() {
            return Err(Error::Invalid("state_mask must not be 0"));
        }
        let tcp: &[Table] = if protocols.tcp { &[TCP, TCP6] } else { &[] };
        let udp: &[Table] = if protocols.udp { &[UDP, UDP6] } else { &[] };
        Ok(Plan { protocols, state_mask, source, owner_scan, tcp, udp })
    }
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
    state_mask: StateMask,
    on_connection: &mut dyn FnMut(&Connection<'_>) -> ControlFlow<()>,
) -> ParseOutcome {
    if state_mask.is_empty() {
        return ParseOutcome { malformed: 0, result: Err(Error::Invalid("state_mask must not be 0")) };
    }
    let mut dedup = Dedup::new();
    let mut deliver =
        |conn: &Conn, protocol, netns| on_connection(&Connection { conn: *conn, protocol, netns, owner: None });
    let protocols = Protocols { tcp: true, udp: false };
    let mut sink = Sink { protocols, state_mask, netns: 0, dedup: &mut dedup, deliver: &mut deliver };
    let r = parse_table(text, |conn| sink.offer(Protocol::Tcp, conn));
    match r {
        Ok(p) => ParseOutcome { malformed: p.malformed, result: Ok(()) },
        Err(p) => ParseOutcome { malformed: p.malformed, result: Err(Error::Aborted) },
    }
}
