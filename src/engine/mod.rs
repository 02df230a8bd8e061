//! The plain Rust API: a `Walker` over a proc root, closures for records,
//! `Result<_, Error>`. Knows nothing of C.
#![forbid(unsafe_code)]

mod error;
mod join;
mod pace;
mod walker;

pub use error::Error;
pub use join::{parse_tcp, Connection, ParseOutcome, Protocols};
pub use crate::parse::tcp::Conn;
pub use walker::{Socket, Source, Stats, Walker};
pub use crate::procfs::TableBuf;
