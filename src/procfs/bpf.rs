//! Every task's socket fds listed by the kernel itself: a BPF `task_file`
//! iterator whose program writes one record per socket fd, with what the
//! kernel holds of the socket (namespace, addresses, ports, state, uid). It
//! does in one pass what listing `PID/fd` and `stat()`ing each entry does
//! with two syscalls per fd, for about a fifth of the CPU.
//!
//! The program is assembled here, with the field offsets of this kernel's
//! structs read from its BTF, so no compiler or BPF library is needed. Loading it needs `CAP_BPF` and
//! `CAP_PERFMON` (or `CAP_SYS_ADMIN`); callers fall back to `PID/fd` without.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;

use nix::errno::Errno;

use super::sys;
use crate::parse::btf::{Btf, KIND_FUNC, KIND_STRUCT};
use crate::parse::kernel::{Family, Protocol, tcp_state};

/// Where the running kernel describes its types.
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// One record per socket fd, native byte order: where each field sits.
pub(crate) const RECORD_LEN: usize = 80;
const INODE: i16 = 0; // u64
const PID: i16 = 8; // u32, the tgid
const FD: i16 = 12; // u32
const NETNS: i16 = 16; // u32, the socket's namespace inode
const UID: i16 = 20; // u32
const FAMILY: i16 = 24; // u16
const PROTOCOL: i16 = 26; // u16
const TYPE: i16 = 28; // u16
const STATE: i16 = 30; // u8
const KIND: i16 = 31; // u8: SOCKET, or TALLY for the pass's last record
const LPORT: i16 = 32; // u16, host order
const RPORT: i16 = 34; // u16, network order
const QLEN: i16 = 36; // u32, a listener's pending connection requests
const LADDR4: i16 = 40;
const RADDR4: i16 = 44;
const LADDR6: i16 = 48;
const RADDR6: i16 = 64;
/// In the tally record, at `INODE`: the socket fds the program passed over.
const PASSED_OVER: i16 = INODE;
const SOCKET: i32 = 0;
const TALLY: i32 = 1;
/// Below the record on the stack: the key (0) of the tally map's one entry.
const TALLY_KEY: i16 = -(RECORD_LEN as i16) - 8;

/// A socket fd of a process and what the kernel holds of the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockRecord {
    pub inode: u64,
    /// The process (thread group) id, as the initial pid namespace numbers it.
    pub pid: i32,
    pub fd: i32,
    pub netns: u64,
    pub uid: u32,
    pub family: u16,
    pub protocol: u16,
    pub sock_type: u16,
    pub state: u8,
    pub local_port: u16,
    pub remote_port: u16,
    /// Requests (SYN_RECV) waiting on a TCP listener; 0 for other sockets.
    pub pending: u32,
    /// Network order; for an IPv4 socket only the first 4 bytes are set.
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
}

/// One record of a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// A socket fd the pass can use: a TCP or UDP one, or one that lives in
    /// a namespace other than its holder task's.
    Socket(SockRecord),
    /// The pass's last record: how many socket fds the program passed over
    /// (a unix socket in its holder's namespace, say), counted in the kernel.
    Tally { passed_over: u64 },
}

impl Record {
    pub fn decode(b: &[u8]) -> Self {
        let at = |off: i16, n: usize| &b[off as usize..off as usize + n];
        let u64_ = |off| u64::from_ne_bytes(at(off, 8).try_into().unwrap_or_default());
        if i32::from(b[KIND as usize]) == TALLY {
            return Record::Tally { passed_over: u64_(PASSED_OVER) };
        }
        let u16_ = |off| u16::from_ne_bytes(at(off, 2).try_into().unwrap_or_default());
        let u32_ = |off| u32::from_ne_bytes(at(off, 4).try_into().unwrap_or_default());
        let family = u16_(FAMILY);
        let (mut local_addr, mut remote_addr) = ([0u8; 16], [0u8; 16]);
        if Family::of_af(family) == Some(Family::Inet6) {
            local_addr.copy_from_slice(at(LADDR6, 16));
            remote_addr.copy_from_slice(at(RADDR6, 16));
        } else {
            local_addr[..4].copy_from_slice(at(LADDR4, 4));
            remote_addr[..4].copy_from_slice(at(RADDR4, 4));
        }
        Record::Socket(SockRecord {
            inode: u64_(INODE),
            pid: u32_(PID) as i32,
            fd: u32_(FD) as i32,
            netns: u64::from(u32_(NETNS)),
            uid: u32_(UID),
            family,
            protocol: u16_(PROTOCOL),
            sock_type: u16_(TYPE),
            state: b[STATE as usize],
            local_port: u16_(LPORT),
            remote_port: u16::from_be(u16_(RPORT)),
            pending: u32_(QLEN),
            local_addr,
            remote_addr,
        })
    }
}

/// Why the scan can't be used here.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The kernel lacks what the scan needs, or its verifier refused the
    /// program: this lasts as long as the kernel does.
    #[error("{0}")]
    Unsupported(String),
    /// A system call failed; it may pass later (EMFILE, ENOMEM) or with
    /// other privileges (EPERM without CAP_BPF).
    #[error("{call}: {}", errno.desc())]
    Sys { call: &'static str, errno: Errno },
}

fn lacks(what: impl std::fmt::Display) -> Refusal {
    Refusal::Unsupported(format!("the running kernel's BTF has no {what}, which the BPF owner scan needs"))
}

/// A register. r1-r5 pass a helper's arguments, r0 takes its result, r6-r9
/// survive calls, r10 is the frame pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Reg(u8);

const R0: Reg = Reg(0);
const R1: Reg = Reg(1);
const R2: Reg = Reg(2);
const R3: Reg = Reg(3);
const R4: Reg = Reg(4);
const R6: Reg = Reg(6);
const R7: Reg = Reg(7);
const R8: Reg = Reg(8);
const R9: Reg = Reg(9);
const FP: Reg = Reg(10);

impl std::fmt::Display for Reg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// The width of a load or store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Size {
    B,
    H,
    W,
    DW,
}

impl Size {
    fn of(bytes: u32) -> Option<Self> {
        Some(match bytes {
            1 => Size::B,
            2 => Size::H,
            4 => Size::W,
            8 => Size::DW,
            _ => return None,
        })
    }
    /// `BPF_B` ... `BPF_DW` (`linux/bpf_common.h`).
    fn code(self) -> u8 {
        match self {
            Size::B => 0x10,
            Size::H => 0x08,
            Size::W => 0x00,
            Size::DW => 0x18,
        }
    }
    fn c_type(self) -> &'static str {
        match self {
            Size::B => "u8",
            Size::H => "u16",
            Size::W => "u32",
            Size::DW => "u64",
        }
    }
}

/// The helpers the program calls. Their numbers are this kernel's own,
/// read from its BTF (`enum bpf_func_id`), so a kernel that lacks one says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Helper {
    /// `bpf_sock_from_file(file)`: the socket behind a file, or NULL (5.11).
    SockFromFile,
    /// `bpf_probe_read_kernel(dst, size, src)`: a read the verifier need not
    /// trust, for fields past `struct sock` (5.5).
    ProbeReadKernel,
    /// `bpf_seq_write(seq, data, len)`: one record out to the reader (5.8).
    SeqWrite,
    /// `bpf_map_lookup_elem(map, key)`: a map entry's value, or NULL.
    MapLookupElem,
}

impl Helper {
    const ALL: [Helper; 4] = [Helper::SockFromFile, Helper::ProbeReadKernel, Helper::SeqWrite, Helper::MapLookupElem];

    /// Its name in `enum bpf_func_id`, "BPF_FUNC_" and the helper's name.
    fn enumerator(self) -> &'static str {
        match self {
            Helper::SockFromFile => "BPF_FUNC_sock_from_file",
            Helper::ProbeReadKernel => "BPF_FUNC_probe_read_kernel",
            Helper::SeqWrite => "BPF_FUNC_seq_write",
            Helper::MapLookupElem => "BPF_FUNC_map_lookup_elem",
        }
    }
}

/// The program's instructions, as it uses them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Insn {
    /// `dst = *(size *)(src + off)`
    Load {
        dst: Reg,
        src: Reg,
        off: i16,
        size: Size,
    },
    /// `*(size *)(dst + off) = src`
    Store {
        dst: Reg,
        off: i16,
        src: Reg,
        size: Size,
    },
    /// `lock *(size *)(dst + off) += src`
    AtomicAdd {
        dst: Reg,
        off: i16,
        src: Reg,
        size: Size,
    },
    /// `dst = ` the tally map (a 16-byte instruction, its fd filled in at load).
    LoadTally {
        dst: Reg,
    },
    /// `dst = src`
    Mov {
        dst: Reg,
        src: Reg,
    },
    /// `dst = imm`
    MovImm {
        dst: Reg,
        imm: i32,
    },
    /// `dst += imm`
    AddImm {
        dst: Reg,
        imm: i32,
    },
    /// `if reg == imm` (or `!=`) `goto` the instruction `off` past the next.
    JumpIf {
        equal: bool,
        reg: Reg,
        imm: i32,
        off: i16,
    },
    /// `if dst == src` (or `!=`) `goto` the instruction `off` past the next.
    JumpIfReg {
        equal: bool,
        dst: Reg,
        src: Reg,
        off: i16,
    },
    /// `goto` the instruction `off` past the next.
    Jump {
        off: i16,
    },
    /// A helper, with its number on this kernel.
    Call {
        helper: Helper,
        id: i32,
    },
    Exit,
}

/// Instruction classes, modes and operations (`linux/bpf_common.h`, `linux/bpf.h`).
const BPF_LD: u8 = 0x00;
const BPF_LDX: u8 = 0x01;
const BPF_STX: u8 = 0x03;
const BPF_JMP: u8 = 0x05;
const BPF_ALU64: u8 = 0x07;
const BPF_IMM: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_ATOMIC: u8 = 0xc0;
const BPF_PSEUDO_MAP_FD: Reg = Reg(1);
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_ADD: u8 = 0x00;
const BPF_MOV: u8 = 0xb0;
const BPF_JA: u8 = 0x00;
const BPF_JEQ: u8 = 0x10;
const BPF_JNE: u8 = 0x50;
const BPF_CALL: u8 = 0x80;
const BPF_EXIT: u8 = 0x90;

impl Insn {
    /// How many 8-byte `struct bpf_insn` it takes: jumps count these.
    fn slots(self) -> usize {
        if matches!(self, Insn::LoadTally { .. }) { 2 } else { 1 }
    }

    /// `struct bpf_insn`s: code, dst and src registers in one byte, off,
    /// imm; `tally` is the fd of the tally map.
    fn encode(self, tally: i32, out: &mut Vec<[u8; 8]>) {
        let jump = |equal| if equal { BPF_JEQ } else { BPF_JNE };
        let (code, dst, src, off, imm) = match self {
            Insn::Load { dst, src, off, size } => (BPF_LDX | BPF_MEM | size.code(), dst, src, off, 0),
            Insn::Store { dst, off, src, size } => (BPF_STX | BPF_MEM | size.code(), dst, src, off, 0),
            Insn::AtomicAdd { dst, off, src, size } => {
                (BPF_STX | BPF_ATOMIC | size.code(), dst, src, off, i32::from(BPF_ADD))
            }
            Insn::LoadTally { dst } => (BPF_LD | BPF_IMM | Size::DW.code(), dst, BPF_PSEUDO_MAP_FD, 0, tally),
            Insn::Mov { dst, src } => (BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0),
            Insn::MovImm { dst, imm } => (BPF_ALU64 | BPF_MOV | BPF_K, dst, R0, 0, imm),
            Insn::AddImm { dst, imm } => (BPF_ALU64 | BPF_ADD | BPF_K, dst, R0, 0, imm),
            Insn::JumpIf { equal, reg, imm, off } => (BPF_JMP | jump(equal) | BPF_K, reg, R0, off, imm),
            Insn::JumpIfReg { equal, dst, src, off } => (BPF_JMP | jump(equal) | BPF_X, dst, src, off, 0),
            Insn::Jump { off } => (BPF_JMP | BPF_JA, R0, R0, off, 0),
            Insn::Call { id, .. } => (BPF_JMP | BPF_CALL, R0, R0, 0, id),
            Insn::Exit => (BPF_JMP | BPF_EXIT, R0, R0, 0, 0),
        };
        let regs = if cfg!(target_endian = "little") { (src.0 << 4) | dst.0 } else { (dst.0 << 4) | src.0 };
        let [o0, o1] = off.to_ne_bytes();
        let [i0, i1, i2, i3] = imm.to_ne_bytes();
        out.push([code, regs, o0, o1, i0, i1, i2, i3]);
        if self.slots() == 2 {
            // The upper half of a 64-bit immediate: none for a map's fd.
            out.push([0; 8]);
        }
    }
}

/// The kernel verifier's notation.
impl std::fmt::Display for Insn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Insn::Load { dst, src, off, size } => write!(f, "{dst} = *({} *)({src} {off:+})", size.c_type()),
            Insn::Store { dst, off, src, size } => write!(f, "*({} *)({dst} {off:+}) = {src}", size.c_type()),
            Insn::AtomicAdd { dst, off, src, size } => {
                write!(f, "lock *({} *)({dst} {off:+}) += {src}", size.c_type())
            }
            Insn::LoadTally { dst } => write!(f, "{dst} = map[tally] ll"),
            Insn::Mov { dst, src } => write!(f, "{dst} = {src}"),
            Insn::MovImm { dst, imm } => write!(f, "{dst} = {imm}"),
            Insn::AddImm { dst, imm } => write!(f, "{dst} += {imm}"),
            Insn::JumpIf { equal, reg, imm, off } => {
                write!(f, "if {reg} {} {imm} goto pc{off:+}", if equal { "==" } else { "!=" })
            }
            Insn::JumpIfReg { equal, dst, src, off } => {
                write!(f, "if {dst} {} {src} goto pc{off:+}", if equal { "==" } else { "!=" })
            }
            Insn::Jump { off } => write!(f, "goto pc{off:+}"),
            Insn::Call { helper, id } => write!(f, "call bpf_{}#{id}", &helper.enumerator()["BPF_FUNC_".len()..]),
            Insn::Exit => write!(f, "exit"),
        }
    }
}

/// A field as the program reads it: offset and width.
#[derive(Clone, Copy)]
struct At(i16, Size);

/// The offset of `names` inside struct `st`, whose last field must be `size` bytes.
fn offset(btf: &Btf<'_>, st: &str, names: &[&str], size: u32) -> Result<i16, Refusal> {
    let missing = || lacks(format_args!("struct {st} field {} of {size} bytes", names.join(".")));
    let id = btf.find(KIND_STRUCT, st.as_bytes()).ok_or_else(missing)?;
    let path: Vec<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
    let f = btf.path(id, &path).ok_or_else(missing)?;
    if btf.size(f.type_id) != Some(size) {
        return Err(missing());
    }
    i16::try_from(f.byte_offset).map_err(|_| missing())
}

/// A field the program loads whole: `offset`, and a width a load has.
fn field(btf: &Btf<'_>, st: &str, names: &[&str], size: u32) -> Result<At, Refusal> {
    let width = Size::of(size).ok_or_else(|| lacks(format_args!("{size}-byte load")))?;
    Ok(At(offset(btf, st, names, size)?, width))
}

/// Where a jump goes, placed once after every jump to it: all jumps run forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Label {
    /// An AF_INET or AF_INET6 socket: is it TCP or UDP?
    Inet,
    /// Any other socket: is its namespace its holder's?
    Other,
    /// A socket the pass can use: its record.
    Record,
    /// The call after the last fd: the tally record.
    Stop,
    Write,
    Out,
}

/// Instructions, the jumps still waiting for their label (the jump's index
/// and its slot), and this kernel's helper numbers.
struct Asm {
    insns: Vec<Insn>,
    slots: usize,
    pending: Vec<(usize, usize, Label)>,
    placed: Vec<Label>,
    helpers: [i32; Helper::ALL.len()],
}

impl Asm {
    fn new(btf: &Btf<'_>) -> Result<Self, Refusal> {
        let mut helpers = [0; Helper::ALL.len()];
        for (id, h) in helpers.iter_mut().zip(Helper::ALL) {
            let n = btf.enumerator(b"bpf_func_id", h.enumerator().as_bytes());
            *id = n
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| lacks(format_args!("helper {}", h.enumerator())))?;
        }
        Ok(Self { insns: Vec::new(), slots: 0, pending: Vec::new(), placed: Vec::new(), helpers })
    }
    fn push(&mut self, i: Insn) {
        self.insns.push(i);
        self.slots += i.slots();
    }
    fn load(&mut self, dst: Reg, src: Reg, f: At) {
        self.push(Insn::Load { dst, src, off: f.0, size: f.1 });
    }
    /// Stores `src` at offset `off` of the record, which is the top of the stack.
    fn store(&mut self, off: i16, src: Reg, size: Size) {
        self.push(Insn::Store { dst: FP, off: off - RECORD_LEN as i16, src, size });
    }
    /// `dst` = the address of the record's field at `off`.
    fn record_addr(&mut self, dst: Reg, off: i16) {
        self.push(Insn::Mov { dst, src: FP });
        self.push(Insn::AddImm { dst, imm: i32::from(off) - RECORD_LEN as i32 });
    }
    /// A jump to `to`, to be pointed there when it is placed.
    fn jump_to(&mut self, jump: Insn, to: Label) {
        self.pending.push((self.insns.len(), self.slots, to));
        self.push(jump);
    }
    fn jump_if(&mut self, equal: bool, reg: Reg, imm: i32, to: Label) {
        self.jump_to(Insn::JumpIf { equal, reg, imm, off: 0 }, to);
    }
    fn jump_if_reg(&mut self, equal: bool, dst: Reg, src: Reg, to: Label) {
        self.jump_to(Insn::JumpIfReg { equal, dst, src, off: 0 }, to);
    }
    fn jump(&mut self, to: Label) {
        self.jump_to(Insn::Jump { off: 0 }, to);
    }
    fn call(&mut self, helper: Helper) {
        let at = Helper::ALL.iter().position(|&h| h == helper).unwrap_or_default();
        self.push(Insn::Call { helper, id: self.helpers[at] });
    }
    /// Points every jump to `label` here.
    fn place(&mut self, label: Label) {
        let here = self.slots;
        self.placed.push(label);
        for &(at, slot, _) in self.pending.iter().filter(|j| j.2 == label) {
            let to = i16::try_from(here - slot - 1).unwrap_or(i16::MAX);
            if let Insn::JumpIf { off, .. } | Insn::JumpIfReg { off, .. } | Insn::Jump { off } = &mut self.insns[at] {
                *off = to;
            }
        }
        self.pending.retain(|j| j.2 != label);
    }
    /// The program, once every jump has found its label and no label is placed twice.
    fn finish(self) -> Result<Vec<Insn>, Refusal> {
        let twice = self.placed.iter().enumerate().any(|(i, l)| self.placed[..i].contains(l));
        if !self.pending.is_empty() || twice || self.slots > i16::MAX as usize {
            let unplaced: Vec<Label> = self.pending.iter().map(|j| j.2).collect();
            return Err(Refusal::Unsupported(format!(
                "the BPF owner scan's program is malformed (jumps to {unplaced:?} unplaced, a label placed twice: {twice})"
            )));
        }
        Ok(self.insns)
    }
}

/// `r0` = the tally map's one value, or on to `Out` (it is never missing).
fn tally(a: &mut Asm) {
    a.push(Insn::MovImm { dst: R1, imm: 0 });
    a.push(Insn::Store { dst: FP, off: TALLY_KEY, src: R1, size: Size::W });
    a.push(Insn::Mov { dst: R2, src: FP });
    a.push(Insn::AddImm { dst: R2, imm: TALLY_KEY.into() });
    a.push(Insn::LoadTally { dst: R1 });
    a.call(Helper::MapLookupElem);
    a.jump_if(true, R0, 0, Label::Out);
}

/// The program and the BTF id of the iterator it attaches to.
#[derive(Debug)]
struct Program {
    insns: Vec<Insn>,
    attach_btf_id: u32,
}

impl Program {
    /// r1 = the context. Skips entries that are not sockets; copies the
    /// fields of a socket the pass can use into a record on the stack and
    /// writes it: a TCP or UDP socket (its table line, its owner), or any
    /// socket in a namespace other than its holder task's (how a namespace
    /// no process is in is found; a task that is exiting has no namespaces
    /// left, and its sockets are written too). The others (a unix socket in
    /// its holder's namespace, say) are only counted, in the tally map, and
    /// the call after the last fd writes that count. Only direct loads
    /// through pointers the verifier hands out, which every kernel allows
    /// even where it calls them untrusted (a NULL one reads as 0); a TCP
    /// listener's request queue lies past `struct sock`, so it is read with
    /// `bpf_probe_read_kernel`.
    fn assemble(btf: &Btf<'_>) -> Result<Self, Refusal> {
        let attach_btf_id = btf
            .find(KIND_FUNC, b"bpf_iter_task_file")
            .ok_or_else(|| lacks("task_file iterator (bpf_iter_task_file)"))?;
        let ctx = |name, size| field(btf, "bpf_iter__task_file", &[name], size);
        let sk = |names: &[&str], size| field(btf, "sock", names, size);
        let common = |name, size| sk(&["__sk_common", name], size);
        let netns_inum = field(btf, "net", &["ns", "inum"], 4)?;
        let mut a = Asm::new(btf)?;
        // r6 = meta, r7 = task, r8 = fd, r9 = file; the rest are scratch.
        a.load(R6, R1, ctx("meta", 8)?);
        a.load(R7, R1, ctx("task", 8)?);
        a.load(R8, R1, ctx("fd", 4)?);
        a.load(R9, R1, ctx("file", 8)?);
        a.jump_if(true, R9, 0, Label::Stop);
        a.jump_if(true, R7, 0, Label::Out);
        a.push(Insn::Mov { dst: R1, src: R9 });
        a.call(Helper::SockFromFile);
        a.jump_if(true, R0, 0, Label::Out);
        // r2 = sk; r3 = its namespace's inode number. Whether the pass can
        // use it is read from the sock alone: a socket passed over costs no
        // more of the memory it touches.
        a.load(R2, R0, field(btf, "socket", &["sk"], 8)?);
        a.jump_if(true, R2, 0, Label::Out);
        a.load(R3, R2, common("skc_net", 8)?); // possible_net_t holds one pointer
        a.load(R3, R3, netns_inum);
        a.load(R4, R2, common("skc_family", 2)?);
        a.jump_if(true, R4, Family::Inet.af().into(), Label::Inet);
        a.jump_if(false, R4, Family::Inet6.af().into(), Label::Other);
        a.place(Label::Inet);
        a.load(R4, R2, sk(&["sk_protocol"], 2)?);
        a.jump_if(true, R4, Protocol::Tcp.ipproto().into(), Label::Record);
        a.jump_if(true, R4, Protocol::Udp.ipproto().into(), Label::Record);
        a.place(Label::Other);
        a.load(R4, R7, field(btf, "task_struct", &["nsproxy"], 8)?);
        a.load(R4, R4, field(btf, "nsproxy", &["net_ns"], 8)?);
        a.load(R4, R4, netns_inum);
        a.jump_if_reg(false, R3, R4, Label::Record);
        // Of no use to the pass: counted.
        tally(&mut a);
        a.push(Insn::MovImm { dst: R1, imm: 1 });
        a.push(Insn::AtomicAdd { dst: R0, off: 0, src: R1, size: Size::DW });
        a.jump(Label::Out);
        // The tally record: its count, and zeros.
        a.place(Label::Stop);
        a.push(Insn::MovImm { dst: R3, imm: 0 });
        for off in (0..RECORD_LEN as i16).step_by(8) {
            a.store(off, R3, Size::DW);
        }
        tally(&mut a);
        a.load(R3, R0, At(0, Size::DW));
        a.store(PASSED_OVER, R3, Size::DW);
        a.push(Insn::MovImm { dst: R3, imm: TALLY });
        a.store(KIND, R3, Size::B);
        a.jump(Label::Write);
        a.place(Label::Record);
        a.store(NETNS, R3, Size::W);
        a.load(R3, R9, field(btf, "file", &["f_inode"], 8)?);
        a.load(R3, R3, field(btf, "inode", &["i_ino"], 8)?);
        a.store(INODE, R3, Size::DW);
        // From here on r9 = sk.
        a.push(Insn::Mov { dst: R9, src: R2 });
        a.load(R3, R7, field(btf, "task_struct", &["tgid"], 4)?);
        a.store(PID, R3, Size::W);
        a.store(FD, R8, Size::W);
        // From here on r8 = the socket's protocol, r7 = its state.
        a.load(R3, R9, sk(&["sk_uid", "val"], 4)?);
        a.store(UID, R3, Size::W);
        a.load(R3, R9, common("skc_family", 2)?);
        a.store(FAMILY, R3, Size::H);
        a.load(R8, R9, sk(&["sk_protocol"], 2)?);
        a.store(PROTOCOL, R8, Size::H);
        a.load(R3, R9, sk(&["sk_type"], 2)?);
        a.store(TYPE, R3, Size::H);
        a.load(R7, R9, common("skc_state", 1)?);
        a.store(STATE, R7, Size::B);
        for (name, to, size) in
            [("skc_num", LPORT, 2), ("skc_dport", RPORT, 2), ("skc_rcv_saddr", LADDR4, 4), ("skc_daddr", RADDR4, 4)]
        {
            let f = common(name, size)?;
            a.load(R3, R9, f);
            a.store(to, R3, f.1);
        }
        for (name, to) in [("skc_v6_rcv_saddr", LADDR6), ("skc_v6_daddr", RADDR6)] {
            let off = offset(btf, "sock", &["__sk_common", name], 16)?;
            for half in [0, 8] {
                a.load(R3, R9, At(off + half, Size::DW));
                a.store(to + half, R3, Size::DW);
            }
        }
        a.push(Insn::MovImm { dst: R3, imm: 0 });
        a.store(QLEN, R3, Size::W);
        a.push(Insn::MovImm { dst: R3, imm: SOCKET });
        a.store(KIND, R3, Size::B);
        // Only a TCP listener has a request queue; its sock is a tcp_sock.
        a.jump_if(false, R8, Protocol::Tcp.ipproto().into(), Label::Write);
        a.jump_if(false, R7, tcp_state::LISTEN.into(), Label::Write);
        let qlen = field(btf, "tcp_sock", &["inet_conn", "icsk_accept_queue", "qlen", "counter"], 4)?;
        a.record_addr(R1, QLEN);
        a.push(Insn::MovImm { dst: R2, imm: 4 });
        a.push(Insn::Mov { dst: R3, src: R9 });
        a.push(Insn::AddImm { dst: R3, imm: i32::from(qlen.0) });
        a.call(Helper::ProbeReadKernel);
        a.place(Label::Write);
        a.load(R1, R6, field(btf, "bpf_iter_meta", &["seq"], 8)?);
        a.record_addr(R2, 0);
        a.push(Insn::MovImm { dst: R3, imm: RECORD_LEN as i32 });
        a.call(Helper::SeqWrite);
        a.place(Label::Out);
        a.push(Insn::MovImm { dst: R0, imm: 0 });
        a.push(Insn::Exit);
        Ok(Program { insns: a.finish()?, attach_btf_id })
    }

    /// Assembled once per process, the kernel's layout does not change under
    /// it; a failed read of its BTF (EMFILE, ENOMEM) is tried again next time.
    fn get() -> Result<&'static Program, Refusal> {
        static PROGRAM: OnceLock<Result<Program, Refusal>> = OnceLock::new();
        if let Some(built) = PROGRAM.get() {
            return built.as_ref().map_err(Clone::clone);
        }
        let built = match std::fs::read(VMLINUX_BTF) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Refusal::Unsupported(format!(
                "the running kernel has no BTF ({VMLINUX_BTF}), which the BPF owner scan needs"
            ))),
            Err(e) => {
                let errno = Errno::from_raw(e.raw_os_error().unwrap_or(0));
                return Err(Refusal::Sys { call: "read BTF", errno });
            }
            Ok(blob) => match Btf::parse(&blob) {
                Ok(btf) => Program::assemble(&btf),
                Err(e) => Err(Refusal::Unsupported(format!("the running kernel's BTF could not be read: {e}"))),
            },
        };
        PROGRAM.get_or_init(|| built).as_ref().map_err(Clone::clone)
    }

    /// Loads it into the kernel. A refusal by the verifier (EACCES, EINVAL)
    /// is loaded once more with a log, to say why in its own words.
    fn load(&self, tally: BorrowedFd<'_>) -> Result<OwnedFd, Refusal> {
        let mut code = Vec::with_capacity(self.insns.len() + 2);
        for i in &self.insns {
            i.encode(tally.as_raw_fd(), &mut code);
        }
        let prog = sys::ProgLoad {
            prog_type: sys::BPF_PROG_TYPE_TRACING,
            expected_attach_type: sys::BPF_TRACE_ITER,
            attach_btf_id: self.attach_btf_id,
            insns: &code,
            license: c"GPL",
            name: c"procspy_fds",
        };
        let load = |log| sys::bpf_prog_load(&prog, log);
        match load(None) {
            Ok(prog) => Ok(prog),
            Err(first @ (Errno::EACCES | Errno::EINVAL)) => {
                let mut log = vec![0u8; LOG_LEN];
                load(Some(&mut log)).map_err(|_| {
                    let why = verdict(&log);
                    Refusal::Unsupported(if why.is_empty() {
                        format!("the kernel refused the BPF owner scan's program ({first}) and gave no reason")
                    } else {
                        format!("the kernel's verifier refused the BPF owner scan's program: {why}")
                    })
                })
            }
            Err(errno) => Err(Refusal::Sys { call: "bpf(BPF_PROG_LOAD)", errno }),
        }
    }
}

/// The listing, one instruction a line, numbered by slot as jumps count.
impl std::fmt::Display for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "; attach to BTF id {} (bpf_iter_task_file)", self.attach_btf_id)?;
        let mut slot = 0;
        self.insns.iter().try_for_each(|insn| {
            writeln!(f, "{slot:3}: {insn}")?;
            slot += insn.slots();
            Ok(())
        })
    }
}

/// Bytes of verifier log asked for after a refusal: a few times what this
/// program's log needs, and newer kernels keep the end if it overflows.
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

/// The tally map: one u64, keyed by a u32 (0).
fn tally_map() -> Result<sys::BpfMap, Errno> {
    sys::BpfMap::create(sys::BPF_MAP_TYPE_ARRAY, 4, 8, 1, c"procspy_tally")
}

/// A loaded iterator program, ready to list every task's fds, and its
/// tally map (one u64: the socket fds a pass passed over).
#[derive(Debug)]
pub struct SockIter {
    link: OwnedFd,
    tally: sys::BpfMap,
}

impl SockIter {
    /// Loads the program and links it to its iterator.
    pub fn load() -> Result<Self, Refusal> {
        let program = Program::get()?;
        let tally = tally_map().map_err(|errno| Refusal::Sys { call: "bpf(BPF_MAP_CREATE)", errno })?;
        let prog = program.load(tally.as_fd())?;
        // The link holds the program; its own fd can go.
        let link = sys::bpf_link_create(prog.as_fd(), sys::BPF_TRACE_ITER)
            .map_err(|errno| Refusal::Sys { call: "bpf(BPF_LINK_CREATE)", errno })?;
        Ok(Self { link, tally })
    }

    /// A fresh pass over every task's socket fds, its tally at zero.
    pub fn start(&self) -> Result<SockRecords, Errno> {
        self.tally.update(&0u32.to_ne_bytes(), &0u64.to_ne_bytes())?;
        Ok(SockRecords { fd: sys::bpf_iter_create(self.link.as_fd())?, tail_at: 0, tail_len: 0 })
    }
}

/// The records of one pass, read in batches.
#[derive(Debug)]
pub struct SockRecords {
    fd: OwnedFd,
    /// A record cut by the last read, kept in the caller's buffer.
    tail_at: usize,
    tail_len: usize,
}

impl SockRecords {
    /// Reads whole records into `buf` (at least `RECORD_LEN` bytes) and
    /// returns their length, or `None` at the end. Between calls the caller
    /// must leave `buf` as it was.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<Option<usize>, Errno> {
        buf.copy_within(self.tail_at..self.tail_at + self.tail_len, 0);
        let mut len = self.tail_len;
        loop {
            match sys::retry(|| nix::unistd::read(self.fd.as_fd(), &mut buf[len..])) {
                Ok(0) if len == 0 => return Ok(None),
                Ok(0) => return Err(Errno::EIO),
                Ok(n) => len += n,
                // EAGAIN: a long run of tasks without output; the next read goes on.
                Err(Errno::EAGAIN) => continue,
                Err(e) => return Err(e),
            }
            let whole = len - len % RECORD_LEN;
            if whole > 0 {
                (self.tail_at, self.tail_len) = (whole, len - whole);
                return Ok(Some(whole));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_both_families() {
        let mut b = [0u8; RECORD_LEN];
        let put =
            |b: &mut [u8; RECORD_LEN], off: i16, v: &[u8]| b[off as usize..off as usize + v.len()].copy_from_slice(v);
        put(&mut b, INODE, &77u64.to_ne_bytes());
        put(&mut b, PID, &1234u32.to_ne_bytes());
        put(&mut b, FD, &5u32.to_ne_bytes());
        put(&mut b, NETNS, &4026531833u32.to_ne_bytes());
        put(&mut b, UID, &1000u32.to_ne_bytes());
        put(&mut b, FAMILY, &2u16.to_ne_bytes());
        put(&mut b, PROTOCOL, &6u16.to_ne_bytes());
        put(&mut b, TYPE, &1u16.to_ne_bytes());
        put(&mut b, STATE, &[10]);
        put(&mut b, LPORT, &8080u16.to_ne_bytes());
        put(&mut b, RPORT, &443u16.to_be_bytes());
        put(&mut b, QLEN, &3u32.to_ne_bytes());
        put(&mut b, LADDR4, &[127, 0, 0, 1]);
        put(&mut b, RADDR4, &[127, 0, 0, 2]);
        put(&mut b, LADDR6, &[0xfe; 16]);
        let Record::Socket(r) = Record::decode(&b) else { panic!("a socket") };
        assert_eq!((r.inode, r.pid, r.fd, r.netns, r.uid), (77, 1234, 5, 4026531833, 1000));
        assert_eq!((r.family, r.protocol, r.sock_type, r.state, r.pending), (2, 6, 1, 10, 3));
        assert_eq!((r.local_port, r.remote_port), (8080, 443));
        assert_eq!(r.local_addr[..4], [127, 0, 0, 1]);
        assert_eq!(r.local_addr[4..], [0; 12], "a v4 socket's v6 fields are not read");
        assert_eq!(r.remote_addr[..4], [127, 0, 0, 2]);
        put(&mut b, FAMILY, &10u16.to_ne_bytes());
        let Record::Socket(r) = Record::decode(&b) else { panic!("a socket") };
        assert_eq!((r.local_addr, r.remote_addr), ([0xfe; 16], [0; 16]));
        put(&mut b, KIND, &[TALLY as u8]);
        assert_eq!(Record::decode(&b), Record::Tally { passed_over: 77 });
    }

    use crate::parse::btf::build::{W, blob};
    use crate::parse::btf::{KIND_ENUM, KIND_INT, KIND_PTR, KIND_TYPEDEF};

    /// Every jump of `p` lands on an instruction of it, forward, and it ends in `exit`.
    fn check_jumps(p: &Program) {
        assert_eq!(p.insns.last(), Some(&Insn::Exit));
        let starts: Vec<usize> =
            p.insns.iter().scan(0, |slot, i| Some(std::mem::replace(slot, *slot + i.slots()))).collect();
        for (&at, ins) in starts.iter().zip(&p.insns) {
            if let Insn::JumpIf { off, .. } | Insn::JumpIfReg { off, .. } | Insn::Jump { off } = *ins {
                assert!(off >= 0 && starts.contains(&(at + 1 + off as usize)), "jump at {at}: {off}");
            }
        }
    }

    /// A kernel's BTF cut down to what the program reads, at fixed offsets,
    /// with `helpers` as its `enum bpf_func_id`.
    fn small_kernel(helpers: &[(&'static str, u32)]) -> Vec<u8> {
        use W::{N, Name};
        let bits = |bytes: u32| N(bytes * 8);
        let ids: Vec<W> = helpers.iter().flat_map(|&(name, id)| [Name(name), N(id)]).collect();
        blob(&[
            ("unsigned int", KIND_INT, 0, 4, &[N(32)]),           // 1
            ("long long unsigned int", KIND_INT, 0, 8, &[N(64)]), // 2
            ("short unsigned int", KIND_INT, 0, 2, &[N(16)]),     // 3
            ("unsigned char", KIND_INT, 0, 1, &[N(8)]),           // 4
            ("", KIND_PTR, 0, 0, &[]),                            // 5
            ("bpf_iter_task_file", KIND_FUNC, 0, 0, &[]),         // 6
            (
                "bpf_iter__task_file",
                KIND_STRUCT,
                4,
                32,
                &[
                    Name("meta"),
                    N(5),
                    bits(0),
                    Name("task"),
                    N(5),
                    bits(8),
                    Name("fd"),
                    N(1),
                    bits(16),
                    Name("file"),
                    N(5),
                    bits(24),
                ],
            ), // 7
            ("bpf_iter_meta", KIND_STRUCT, 1, 24, &[Name("seq"), N(5), bits(0)]), // 8
            ("socket", KIND_STRUCT, 1, 128, &[Name("sk"), N(5), bits(24)]), // 9
            ("file", KIND_STRUCT, 1, 256, &[Name("f_inode"), N(5), bits(32)]), // 10
            ("inode", KIND_STRUCT, 1, 600, &[Name("i_ino"), N(2), bits(64)]), // 11
            ("task_struct", KIND_STRUCT, 2, 4096, &[Name("tgid"), N(1), bits(2000), Name("nsproxy"), N(5), bits(2040)]), // 12
            ("possible_net_t", KIND_STRUCT, 1, 8, &[Name("net"), N(5), bits(0)]), // 13
            ("in6_addr", KIND_STRUCT, 0, 16, &[]),                                // 14
            (
                "sock_common",
                KIND_STRUCT,
                9,
                136,
                &[
                    Name("skc_daddr"),
                    N(1),
                    bits(0),
                    Name("skc_rcv_saddr"),
                    N(1),
                    bits(4),
                    Name("skc_dport"),
                    N(3),
                    bits(12),
                    Name("skc_num"),
                    N(3),
                    bits(14),
                    Name("skc_family"),
                    N(3),
                    bits(16),
                    Name("skc_state"),
                    N(4),
                    bits(18),
                    Name("skc_net"),
                    N(13),
                    bits(48),
                    Name("skc_v6_daddr"),
                    N(14),
                    bits(56),
                    Name("skc_v6_rcv_saddr"),
                    N(14),
                    bits(72),
                ],
            ), // 15
            ("kuid_t", KIND_TYPEDEF, 0, 17, &[]),                                 // 16
            ("", KIND_STRUCT, 1, 4, &[Name("val"), N(1), bits(0)]),               // 17
            (
                "sock",
                KIND_STRUCT,
                4,
                760,
                &[
                    Name("__sk_common"),
                    N(15),
                    bits(0),
                    Name("sk_protocol"),
                    N(3),
                    bits(516),
                    Name("sk_type"),
                    N(3),
                    bits(518),
                    Name("sk_uid"),
                    N(16),
                    bits(600),
                ],
            ), // 18
            ("ns_common", KIND_STRUCT, 1, 24, &[Name("inum"), N(1), bits(16)]),   // 19
            ("net", KIND_STRUCT, 1, 4000, &[Name("ns"), N(19), bits(120)]),       // 20
            ("atomic_t", KIND_TYPEDEF, 0, 22, &[]),                               // 21
            ("", KIND_STRUCT, 1, 4, &[Name("counter"), N(23), bits(0)]),          // 22
            ("int", KIND_INT, 0, 4, &[N((1 << 24) | 32)]),                        // 23
            ("request_sock_queue", KIND_STRUCT, 1, 64, &[Name("qlen"), N(21), bits(8)]), // 24
            ("inet_connection_sock", KIND_STRUCT, 1, 1400, &[Name("icsk_accept_queue"), N(24), bits(1000)]), // 25
            ("tcp_sock", KIND_STRUCT, 1, 2200, &[Name("inet_conn"), N(25), bits(0)]), // 26
            ("bpf_func_id", KIND_ENUM, helpers.len() as u32, 4, &ids),            // 27
            ("nsproxy", KIND_STRUCT, 1, 72, &[Name("net_ns"), N(5), bits(64)]),   // 28
        ])
    }

    const HELPERS: [(&str, u32); 4] = [
        ("BPF_FUNC_map_lookup_elem", 1),
        ("BPF_FUNC_probe_read_kernel", 113),
        ("BPF_FUNC_seq_write", 127),
        ("BPF_FUNC_sock_from_file", 162),
    ];

    /// The program for a fixed kernel, as a listing: a change to what it
    /// does shows up as a diff of `bpf.listing`. `PROCSPY_BLESS=1` rewrites it.
    #[test]
    fn the_program_is_the_committed_listing() {
        let kernel = small_kernel(&HELPERS);
        let p = Program::assemble(&Btf::parse(&kernel).unwrap()).unwrap();
        check_jumps(&p);
        let listing = p.to_string();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/procfs/bpf.listing");
        if std::env::var_os("PROCSPY_BLESS").is_some() {
            std::fs::write(path, &listing).unwrap();
        }
        assert_eq!(listing, include_str!("bpf.listing"), "the program changed: PROCSPY_BLESS=1 to accept");
        assert_eq!(p.attach_btf_id, 6);
        // The encoding: class, registers, offset, immediate.
        let code = |i: &Insn| {
            let mut out = Vec::new();
            i.encode(7, &mut out);
            out
        };
        assert_eq!(code(&p.insns[0]), [[0x79, 0x16, 0, 0, 0, 0, 0, 0]], "r6 = *(u64 *)(r1 +0)");
        let call = p.insns.iter().find(|i| matches!(i, Insn::Call { .. })).unwrap();
        assert_eq!(code(call), [[0x85, 0, 0, 0, 162, 0, 0, 0]]);
        let map = p.insns.iter().find(|i| matches!(i, Insn::LoadTally { .. })).unwrap();
        assert_eq!(code(map), [[0x18, 0x11, 0, 0, 7, 0, 0, 0], [0; 8]], "r1 = map[tally] (fd 7)");
    }

    #[test]
    fn assembles_wherever_the_btf_has_what_it_reads() {
        let Ok(blob) = std::fs::read(VMLINUX_BTF) else {
            assert!(matches!(Program::get(), Err(Refusal::Unsupported(m)) if m.contains("no BTF")));
            return;
        };
        let btf = Btf::parse(&blob).unwrap();
        let has = btf.find(KIND_FUNC, b"bpf_iter_task_file").is_some()
            && Helper::ALL.iter().all(|h| btf.enumerator(b"bpf_func_id", h.enumerator().as_bytes()).is_some());
        match Program::assemble(&btf) {
            Ok(p) => {
                assert!(has);
                check_jumps(&p);
                assert!((60..140).contains(&p.insns.len()), "{p}");
            }
            Err(e) => assert!(!has, "{e}"),
        }
    }

    #[test]
    fn a_kernel_without_what_it_needs_is_refused_by_name() {
        let without = |name: &str| {
            let helpers: Vec<_> = HELPERS.into_iter().filter(|h| h.0 != name).collect();
            Program::assemble(&Btf::parse(&small_kernel(&helpers)).unwrap()).unwrap_err().to_string()
        };
        // Linux 5.10 has the iterator but not bpf_sock_from_file.
        let e = without("BPF_FUNC_sock_from_file");
        assert!(e.contains("BPF_FUNC_sock_from_file") && e.contains("kernel"), "{e}");
        assert!(without("BPF_FUNC_probe_read_kernel").contains("BPF_FUNC_probe_read_kernel"));
        let empty = [0x9fu8, 0xeb, 1, 0, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        let e = Program::assemble(&Btf::parse(&empty).unwrap()).unwrap_err();
        assert!(e.to_string().contains("bpf_iter_task_file"), "{e}");
    }

    #[test]
    fn every_jump_needs_its_label_placed_once() {
        let kernel = small_kernel(&HELPERS);
        let btf = Btf::parse(&kernel).unwrap();
        let mut a = Asm::new(&btf).unwrap();
        a.jump_if(true, R1, 0, Label::Out);
        a.push(Insn::Exit);
        assert!(Asm::new(&btf).unwrap().finish().is_ok());
        let mut twice = Asm::new(&btf).unwrap();
        twice.place(Label::Out);
        twice.place(Label::Out);
        assert!(twice.finish().is_err());
        // A jump after its label was placed would run backwards: never patched.
        a.place(Label::Out);
        a.jump_if(true, R1, 0, Label::Out);
        a.push(Insn::Exit);
        assert!(a.finish().unwrap_err().to_string().contains("Out"));
    }

    /// A program this kernel's verifier must refuse (it reads the stack
    /// above the frame) is reported in the verifier's words, not as EACCES.
    #[test]
    fn a_verifier_refusal_is_unsupported_with_its_log() {
        let Ok(blob) = std::fs::read(VMLINUX_BTF) else { return };
        let Some(attach_btf_id) = Btf::parse(&blob).unwrap().find(KIND_FUNC, b"bpf_iter_task_file") else { return };
        let insns = vec![Insn::Load { dst: R0, src: FP, off: 8, size: Size::DW }, Insn::Exit];
        let tally = tally_map().unwrap();
        match (Program { insns, attach_btf_id }).load(tally.as_fd()) {
            Err(Refusal::Unsupported(m)) => {
                assert!(m.contains("verifier refused") && !m.contains("Permission denied"), "{m}");
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
