//! BPF programs, assembled at run time with the field offsets of the
//! running kernel's BTF: no compiler, no BPF library. What every program
//! uses is here; each program is a file of its own, with its registers'
//! roles named and its record layout shared by its code and its decoder.
//!
//! - `asm.rs`: the assembler: registers, instructions, their encoding and
//!   decoding, labels, the annotated listing. Pure: no kernel, no fd.
//! - `kernel.rs`: what a program needs of this kernel, read from its BTF
//!   (parsed by `parse::btf`): a field's offset, a helper's number, an
//!   attach point; a kernel that lacks one is refused by name.
//! - `load.rs`: a program with what it attaches to, loaded (the verifier's
//!   own words when it refuses), and the BTF it was assembled from. The
//!   `bpf(2)` calls themselves, with `union bpf_attr` as `repr(C)`
//!   structs, are `procfs`'s (`sys.rs`), where all unsafe code is.
//! - `ends.rs`: a socket's ports and addresses, as both programs record
//!   them and their decoders read them back.
//! - `owner_scan.rs`: the owner scan's `task_file` iterator and its record.
//! - `netns_list.rs`: the kernel's list of network namespaces, walked a
//!   step per call of the owner scan's program.
//! - `tracer.rs`: the tracer's programs on the socket hooks, their event
//!   record, and the ring buffer they write it to.
//!
//! The engine uses this module; this module uses `procfs` (its syscalls,
//! and the record the owner scan decodes into) and `parse` (BTF); neither
//! of those uses it.

#![forbid(unsafe_code)]

mod asm;
mod ends;
mod kernel;
mod load;
mod netns_list;
mod owner_scan;
#[cfg(test)]
mod test_kernel;
mod tracer;

use nix::errno::Errno;

pub(crate) use owner_scan::{RECORD_LEN, Record, SockIter, SockRecords};
pub(crate) use tracer::{EVENT_LEN, Event, EventKind, EventOwner, Hook, Next, Owners, Tracer};

/// Why a program can't be used here.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The kernel lacks what the program needs, or its verifier refused
    /// it: this lasts as long as the kernel does.
    #[error("{0}")]
    Unsupported(String),
    /// A system call failed; it may pass later (EMFILE, ENOMEM) or with
    /// other privileges (EPERM without CAP_BPF).
    #[error("{call}: {}", errno.desc())]
    Sys { call: &'static str, errno: Errno },
}
