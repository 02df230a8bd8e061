//! Pure parsers over bytes the kernel wrote: no I/O, safe Rust only, and no read
//! outside the input whatever its bytes.
#![forbid(unsafe_code)]

pub mod btf;
pub mod diag;
pub mod kernel;
pub mod mountinfo;
pub mod num;
pub mod proc;
pub mod sockstat;
pub mod stat;
mod state_mask;
pub mod tcp;

pub use state_mask::StateMask;
