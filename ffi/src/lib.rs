//! The C ABI of procspy: libprocspy.so, libprocspy.a, and through
//! cbindgen `include/procspy.h`, over the safe core (the `procspy` crate at
//! the top of the repository). The only place with `extern "C"`, raw
//! pointers and unsafe about caller memory; it knows nothing of where
//! sockets come from.
//!
//! Every entry point runs its body inside `guard`, which catches panics
//! and records the message `procspy_last_error` returns.
#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![allow(non_camel_case_types)]
// Entry points take pointers from C, where nothing is `unsafe fn`; each
// dereference is checked for NULL and justified where it is made.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod guard;
mod info;
mod mem;
mod parse;
mod types;
mod walker;
// Last: the header lists its items after those it had before.
mod query;
// After it, where the header has always had it.
mod kept;

pub use info::*;
pub use kept::*;
pub use parse::*;
pub use query::*;
pub use types::*;
pub use walker::*;
