//! The C ABI. The only place with `extern "C"`, raw pointers and unsafe
//! about caller memory; it knows nothing of where sockets come from.
//!
//! Every entry point runs its body inside [`guard`], which catches panics
//! and records the message `procspy_last_error` returns.
#![deny(missing_docs)]
#![allow(non_camel_case_types)]

mod guard;
mod info;
mod parse;
mod types;
mod walker;

pub use info::*;
pub use parse::*;
pub use types::*;
pub use walker::*;
