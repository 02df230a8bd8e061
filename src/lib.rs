//! libprocspy: which process owns this socket, in every network namespace,
//! by walking a proc root.
//!
//! Layers, one direction: `ffi` (the C ABI) over `engine` (a plain Rust
//! API), which joins what `procfs` reads and `parse` understands.

pub mod engine;
pub mod ffi;
pub mod parse;
mod procfs;

pub use engine::{Error, Socket, Stats, TableBuf, Walker};
