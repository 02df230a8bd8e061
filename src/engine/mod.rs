//! The plain Rust API: a `Walker` over a proc root, closures for records,
//! `Result<_, Error>`. Knows nothing of C.
//!
//! Modules depend one way: `walker` (the API and its lock) over `changes`
//! over `pass` (one pass, and what it keeps from call to call) over
//! `connections` (what a pass delivers) and `query` (what it is asked)
//! over `tables` over `owners` over `namespaces`, all over `ctx` (what a
//! pass reads: the root, the stop, the pacing, the closer). `events` (the
//! live tracer) sits beside `changes`, over `ctx` and `bpf`.
#![forbid(unsafe_code)]

mod changes;
mod closed;
mod connections;
mod ctx;
mod error;
mod events;
mod namespaces;
mod owners;
mod pace;
mod pass;
mod query;
mod state;
mod stats;
mod tables;
mod walker;

pub use crate::parse::StateMask;
pub use crate::parse::kernel::{Protocol, TcpState};
pub use crate::parse::tcp::Conn;
pub use crate::procfs::TableBuf;
pub use changes::{Change, ChangeKind};
pub use connections::{Connection, ParseOutcome, parse_tcp};
pub use error::Error;
pub use events::{Event, EventKind};
pub use owners::{OwnerScan, Socket};
pub use query::Query;
pub use state::{state_name, state_name_cstr};
pub use stats::Stats;
pub use tables::{Protocols, Source};
pub use walker::{StopToken, Walker};
