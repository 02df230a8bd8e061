//! What a program needs of the running kernel, read from its BTF: where a
//! struct keeps a field and how wide it is, a helper's number, the BTF id
//! of what it attaches to. Each is asked of the kernel, never guessed from
//! its version; one it lacks refuses the program, naming what is missing.

use super::Refusal;
use super::asm::{Field, Helper, Size};
use crate::parse::btf::{Btf, Kind};

/// A kernel's BTF, as a program (named for the messages) reads it.
pub(super) struct Kernel<'a> {
    btf: &'a Btf<'a>,
    program: &'static str,
}

impl<'a> Kernel<'a> {
    pub(super) fn new(btf: &'a Btf<'a>, program: &'static str) -> Self {
        Self { btf, program }
    }

    /// The refusal for a kernel without `what`.
    pub(super) fn lacks(&self, what: impl std::fmt::Display) -> Refusal {
        Refusal::Unsupported(format!("the running kernel's BTF has no {what}, which {} needs", self.program))
    }

    /// The offset of `path` inside struct `st`, whose last field must be
    /// `size` bytes.
    pub(super) fn offset(&self, st: &str, path: &[&str], size: u32) -> Result<i16, Refusal> {
        let missing = || self.lacks(format_args!("struct {st} field {} of {size} bytes", path.join(".")));
        let id = self.btf.find(Kind::Struct, st.as_bytes()).ok_or_else(missing)?;
        let names: Vec<&[u8]> = path.iter().map(|n| n.as_bytes()).collect();
        let f = self.btf.path(id, &names).ok_or_else(missing)?;
        if self.btf.size(f.type_id) != Some(size) {
            return Err(missing());
        }
        i16::try_from(f.byte_offset).map_err(|_| missing())
    }

    /// A field a program loads whole: its offset, a width a load has, and
    /// its path for the listing.
    pub(super) fn field(&self, st: &str, path: &[&str], size: u32) -> Result<Field, Refusal> {
        let width = Size::of(size).ok_or_else(|| self.lacks(format_args!("{size}-byte load")))?;
        Ok(Field { path: format!("{st}.{}", path.join(".")), off: self.offset(st, path, size)?, size: width })
    }

    /// Helper `bpf_NAME` and its number on this kernel (`enum bpf_func_id`).
    pub(super) fn helper(&self, name: &'static str) -> Result<Helper, Refusal> {
        let enumerator = format!("BPF_FUNC_{name}");
        let id = self.btf.enumerator(b"bpf_func_id", enumerator.as_bytes()).and_then(|n| i32::try_from(n).ok());
        Ok(Helper { name, id: id.ok_or_else(|| self.lacks(format_args!("helper {enumerator}")))? })
    }

    /// The BTF id of kernel function `name` (what a program attaches to);
    /// `what` names it in a refusal.
    pub(super) fn func(&self, name: &str, what: &str) -> Result<u32, Refusal> {
        self.named(Kind::Func, name, what)
    }

    /// The BTF id of the `kind` named `name` (a tracepoint's `btf_trace_`
    /// typedef, say); `what` names it in a refusal.
    pub(super) fn named(&self, kind: Kind, name: &str, what: &str) -> Result<u32, Refusal> {
        self.btf.find(kind, name.as_bytes()).ok_or_else(|| self.lacks(format_args!("{what} ({name})")))
    }

    /// The size of struct `st`.
    pub(super) fn size(&self, st: &str) -> Result<u32, Refusal> {
        let id = self.btf.find(Kind::Struct, st.as_bytes());
        id.and_then(|id| self.btf.size(id)).ok_or_else(|| self.lacks(format_args!("struct {st}")))
    }
}
