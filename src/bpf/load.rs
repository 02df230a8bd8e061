//! A program with what it attaches to, loaded into the kernel: a refusal
//! by the verifier is told in the verifier's own words. And the running
//! kernel's BTF, which programs are assembled from.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;

use nix::errno::Errno;

use super::Refusal;
use super::asm::{Asm, Code};
use crate::parse::btf::Btf;
use crate::procfs::bpf_sys::{self, BPF_PROG_TYPE_TRACING, BPF_TRACE_ITER, ProgLoad};

/// Where the running kernel describes its types.
pub(super) const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// `f` of the running kernel's BTF. No BTF is `Unsupported`, naming
/// `program`; a failed read (EMFILE, ENOMEM) is `Sys`, to be tried again.
pub(super) fn with_vmlinux<T>(program: &str, f: impl FnOnce(&Btf<'_>) -> Result<T, Refusal>) -> Result<T, Refusal> {
    match std::fs::read(VMLINUX_BTF) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Refusal::Unsupported(format!("the running kernel has no BTF ({VMLINUX_BTF}), which {program} needs")))
        }
        Err(e) => Err(Refusal::Sys { call: "read BTF", errno: Errno::from_raw(e.raw_os_error().unwrap_or(0)) }),
        Ok(blob) => match Btf::parse(&blob) {
            Ok(btf) => f(&btf),
            Err(e) => Err(Refusal::Unsupported(format!("the running kernel's BTF could not be read: {e}"))),
        },
    }
}

/// `assemble`d from the running kernel's BTF once per process into `cell`
/// (the kernel's layout does not change under it); a failed read of its
/// BTF (EMFILE, ENOMEM) is tried again next time.
pub(super) fn assembled_once(
    cell: &'static OnceLock<Result<Program, Refusal>>,
    what: &str,
    assemble: impl FnOnce(&Btf<'_>) -> Result<Program, Refusal>,
) -> Result<&'static Program, Refusal> {
    if let Some(built) = cell.get() {
        return built.as_ref().map_err(Clone::clone);
    }
    let built = match with_vmlinux(what, assemble) {
        Err(e @ Refusal::Sys { .. }) => return Err(e),
        built => built,
    };
    cell.get_or_init(|| built).as_ref().map_err(Clone::clone)
}

/// An assembled program and what it attaches to.
#[derive(Debug)]
pub(super) struct Program {
    /// What it is, for messages ("the BPF owner scan").
    pub what: &'static str,
    /// Its name in the kernel (15 bytes at most).
    pub name: &'static CStr,
    pub code: Code,
    /// `BPF_PROG_TYPE_*` and `BPF_*` attach type.
    pub prog_type: u32,
    pub attach_type: u32,
    /// The kernel function it attaches to, by BTF id and name.
    pub attach_btf_id: u32,
    pub attach_to: &'static str,
}

impl Program {
    /// The program `a` assembled, attached to iterator `attach_to` (its
    /// BTF id `attach_btf_id`).
    pub(super) fn iterator<L: Copy + PartialEq + std::fmt::Debug>(
        what: &'static str,
        name: &'static CStr,
        a: Asm<L>,
        attach_btf_id: u32,
        attach_to: &'static str,
    ) -> Result<Self, Refusal> {
        let code = a.finish().map_err(|e| Refusal::Unsupported(format!("{what}'s program is malformed: {e}")))?;
        let (prog_type, attach_type) = (BPF_PROG_TYPE_TRACING, BPF_TRACE_ITER);
        Ok(Program { what, name, code, prog_type, attach_type, attach_btf_id, attach_to })
    }

    /// Loads it into the kernel, with its maps at these fds. A refusal by
    /// the verifier (EACCES, EINVAL) is loaded once more with a log, to say
    /// why in its own words.
    pub(super) fn load(&self, maps: &[BorrowedFd<'_>]) -> Result<OwnedFd, Refusal> {
        let fds: Vec<i32> = maps.iter().map(|m| m.as_raw_fd()).collect();
        let insns = self.code.encode(&fds);
        let prog = ProgLoad {
            prog_type: self.prog_type,
            expected_attach_type: self.attach_type,
            attach_btf_id: self.attach_btf_id,
            insns: &insns,
            license: c"GPL",
            name: self.name,
        };
        let load = |log| bpf_sys::bpf_prog_load(&prog, log);
        match load(None) {
            Ok(prog) => Ok(prog),
            Err(first @ (Errno::EACCES | Errno::EINVAL | Errno::EPERM)) => {
                let mut log = vec![0u8; LOG_LEN];
                load(Some(&mut log)).map_err(|_| {
                    let why = verdict(&log);
                    Refusal::Unsupported(if why.is_empty() {
                        format!("the kernel refused {}'s program ({first}) and gave no reason", self.what)
                    } else {
                        format!("the kernel's verifier refused {}'s program: {why}", self.what)
                    })
                })
            }
            Err(errno) => Err(Refusal::Sys { call: "bpf(BPF_PROG_LOAD)", errno }),
        }
    }
}

/// The listing: what it attaches to, then its code.
impl std::fmt::Display for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "; {}: attach to BTF id {} ({})", self.what, self.attach_btf_id, self.attach_to)?;
        write!(f, "{}", self.code)
    }
}

/// Bytes of verifier log asked for after a refusal: a few times what these
/// programs' logs need, and newer kernels keep the end if it overflows.
const LOG_LEN: usize = 256 * 1024;

/// The end of a verifier's log, where it says why: its last lines, less the
/// statistics it prints after every verdict.
fn verdict(log: &[u8]) -> String {
    let text = String::from_utf8_lossy(&log[..memchr::memchr(0, log).unwrap_or(log.len())]).into_owned();
    let stats = ["processed ", "verification time", "stack depth", "max_states_per_insn"];
    let lines: Vec<&str> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !stats.iter().any(|s| l.starts_with(s))).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::asm::{Asm, FP, Insn, R0, Size};
    use crate::parse::btf::Kind;

    /// A program this kernel's verifier must refuse (it reads the stack
    /// above the frame) is reported in the verifier's words, not as EACCES.
    #[test]
    fn a_verifier_refusal_is_unsupported_with_its_log() {
        let Ok(blob) = std::fs::read(VMLINUX_BTF) else { return };
        let Some(attach_btf_id) = Btf::parse(&blob).unwrap().find(Kind::Func, b"bpf_iter_task_file") else { return };
        let mut a = Asm::<()>::new(0);
        a.push(Insn::Load { dst: R0, src: FP, off: 8, size: Size::DW });
        a.push(Insn::Exit);
        let p = Program {
            what: "a test",
            name: c"procspy_test",
            code: a.finish().unwrap(),
            prog_type: BPF_PROG_TYPE_TRACING,
            attach_type: BPF_TRACE_ITER,
            attach_btf_id,
            attach_to: "bpf_iter_task_file",
        };
        match p.load(&[]) {
            Err(Refusal::Unsupported(m)) => {
                assert!(m.contains("verifier refused a test's") && !m.contains("Permission denied"), "{m}");
            }
            other => panic!("the verifier took a read above the frame: {other:?}"),
        }
    }

    #[test]
    fn a_refusal_quotes_the_end_of_the_verifier_log() {
        let log = b"0: R1=ctx() R10=fp0\n52: (bf) r1 = r7\n53: (85) call bpf_skc_to_tcp_sock#137\nR1 type=untrusted_ptr_ expected=sock_common\nprocessed 55 insns (limit 1000000) max_states_per_insn 0\n\0garbage";
        assert_eq!(
            verdict(log),
            "52: (bf) r1 = r7 | 53: (85) call bpf_skc_to_tcp_sock#137 | R1 type=untrusted_ptr_ expected=sock_common"
        );
        assert_eq!(verdict(b"\0"), "");
    }
}
