//! libprocspy: which process owns this socket, in every network namespace,
//! by walking a proc root.
//!
//! This crate is the safe Rust API: a [`Walker`] over a proc root, closures
//! for records, [`Result`]s with an [`Error`]. C, C++, Go and Python use it
//! through its C ABI (`include/procspy.h`), the crate `libprocspy` in
//! `ffi/`, which a Rust program does not build.
//!
//! # Depending on it
//!
//! The crate is `procspy`; it is not on crates.io. Name its checkout, or
//! its git repository, in `Cargo.toml`:
//!
//! ```toml
//! [dependencies]
//! procspy = { path = "../libprocspy" }
//! # or: procspy = { git = "https://.../libprocspy.git", tag = "v0.1.0" }
//! ```
//!
//! # Listing connections
//!
//! [`Walker::connections`] delivers every line of the TCP and UDP tables of
//! every network namespace once, each with the process holding the socket
//! (the lowest pid of its holders), to a closure that returns
//! [`ControlFlow::Continue`](std::ops::ControlFlow) to go on:
//!
//! ```
//! use std::ops::ControlFlow;
//! use procspy::{Protocols, StateMask, Stats, Walker};
//!
//! let walker = Walker::new(None)?; // None: the host's /proc
//! let mut stats = Stats::default();
//! walker.connections(None, Protocols::BOTH, StateMask::ALL, &mut stats, &mut |c| {
//!     let state = c.state_name().unwrap_or("UNKNOWN");
//!     match &c.owner {
//!         Some(o) => println!("{state} {} pid {} ({})", c.conn.local(), o.pid, o.name.to_string_lossy()),
//!         None => println!("{state} {} (no visible owner)", c.conn.local()),
//!     }
//!     ControlFlow::Continue(())
//! })?;
//! println!("{} namespaces, {} processes", stats.namespaces, stats.processes);
//! # Ok::<(), procspy::Error>(())
//! ```
//!
//! Run as root (or with the capabilities `docs/privileges.md` lists) to see every
//! process's sockets; without them the walk still runs, and finds the
//! owners among the caller's own processes. A walker is reusable and may be
//! shared between threads: one walk at a time runs on it (another gets
//! [`Error::Busy`]), and [`Walker::stop`] ends one from any thread.
//! `examples/connections.rs` is a complete program:
//! `cargo run --release --example connections`.
//!
//! # Layers
//!
//! One direction: the C ABI (`ffi/`, another crate) over `engine` (the
//! plain Rust API), which joins what `procfs` reads and `parse`
//! understands. `parse` is public for the fuzz targets, and hidden from
//! these docs: a Rust program does not need it.

#![deny(clippy::undocumented_unsafe_blocks)]

mod bpf;
pub mod engine;
#[doc(hidden)]
pub mod parse;
mod procfs;

pub use engine::{
    Change, ChangeKind, Conn, Connection, Error, Event, EventKind, OwnerScan, Protocol, Protocols, Query, Socket,
    Source, StateMask, Stats, StopToken, TableBuf, TcpState, Walker, state_name, state_name_cstr,
};
