//! Pure parsers over bytes the kernel wrote: no I/O, safe Rust only, and no read
//! outside the input whatever its bytes.
#![forbid(unsafe_code)]

pub(crate) mod btf;
pub mod diag;
pub(crate) mod sockstat;
pub mod stat;
pub mod tcp;
