//! The plain Rust API: a `Walker` over a proc root, closures for records,
//! `Result<_, Error>`. Knows nothing of C.
#![forbid(unsafe_code)]

mod changes;
mod closed;
mod error;
mod join;
mod namespaces;
mod pace;
mod query;
mod state;
mod walker;

pub use crate::parse::tcp::Conn;
pub use crate::procfs::TableBuf;
pub use changes::{Change, ChangeKind};
pub use error::Error;
pub use join::{Connection, ParseOutcome, Protocols, parse_tcp};
pub use query::Query;
pub use state::state_name;
pub(crate) use state::state_name_cstr;
pub use walker::{OwnerScan, Socket, Source, Stats, StopToken, Walker};
