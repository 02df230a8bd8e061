//! The assembler: registers, the instructions the programs use, their
//! encoding (`struct bpf_insn`, `linux/bpf.h`) and decoding, forward jumps
//! to labels, and a listing in the kernel verifier's notation annotated with
//! the labels and, on each load and store, the field it reads or writes.
//! Pure: it knows no kernel, no BTF and no fd (a map is an index into the
//! fds given to `Code::encode`); a program's labels are its own enum.

use std::fmt;

/// A register. r1-r5 pass a helper's arguments (and do not survive a
/// call), r0 takes its result, r6-r9 survive calls, r10 is the frame pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Reg(u8);

pub(super) const R0: Reg = Reg(0);
pub(super) const R1: Reg = Reg(1);
pub(super) const R2: Reg = Reg(2);
pub(super) const R3: Reg = Reg(3);
pub(super) const R4: Reg = Reg(4);
pub(super) const R6: Reg = Reg(6);
pub(super) const R7: Reg = Reg(7);
pub(super) const R8: Reg = Reg(8);
pub(super) const R9: Reg = Reg(9);
pub(super) const FP: Reg = Reg(10);

impl fmt::Display for Reg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// The width of a load or store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Size {
    B,
    H,
    W,
    DW,
}

impl Size {
    pub(super) fn of(bytes: u32) -> Option<Self> {
        Some(match bytes {
            1 => Size::B,
            2 => Size::H,
            4 => Size::W,
            8 => Size::DW,
            _ => return None,
        })
    }
    pub(super) fn bytes(self) -> usize {
        match self {
            Size::B => 1,
            Size::H => 2,
            Size::W => 4,
            Size::DW => 8,
        }
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
    #[cfg(test)]
    fn of_code(code: u8) -> Self {
        match code & 0x18 {
            0x10 => Size::B,
            0x08 => Size::H,
            0x00 => Size::W,
            _ => Size::DW,
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

/// A conditional jump's test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Jmp {
    /// `BPF_JEQ`
    Eq,
    /// `BPF_JNE`
    Ne,
    /// `BPF_JGT`: unsigned `>`.
    Gt,
}

/// What a conditional jump compares its register with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Src {
    Reg(Reg),
    Imm(i32),
}

/// A kernel helper: its name (after `bpf_`) and its number on this kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Helper {
    pub name: &'static str,
    pub id: i32,
}

/// The instructions, as the programs use them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Insn {
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
    /// `lock *(size *)(dst + off) += src` (W or DW)
    AtomicAdd {
        dst: Reg,
        off: i16,
        src: Reg,
        size: Size,
    },
    /// `dst = ` map `map` (an index into the fds given to `encode`): the
    /// one 16-byte instruction, `BPF_LD | BPF_IMM | BPF_DW` with `BPF_PSEUDO_MAP_FD`.
    LoadMap {
        dst: Reg,
        map: i32,
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
    /// `dst += src`
    Add {
        dst: Reg,
        src: Reg,
    },
    /// `dst >>= imm` (unsigned)
    RshImm {
        dst: Reg,
        imm: i32,
    },
    /// `dst <<= imm`
    LshImm {
        dst: Reg,
        imm: i32,
    },
    /// `goto` the instruction `off` past the next.
    Ja {
        off: i16,
    },
    /// `if dst == src` (`Eq`) or `!=` (`Ne`), `goto` the instruction `off` past the next.
    Jmp {
        op: Jmp,
        dst: Reg,
        src: Src,
        off: i16,
    },
    /// A helper, by its number.
    Call {
        id: i32,
    },
    Exit,
}

/// Classes, modes, sources and operations (`linux/bpf_common.h`, `linux/bpf.h`).
const BPF_LD: u8 = 0x00;
const BPF_LDX: u8 = 0x01;
const BPF_STX: u8 = 0x03;
const BPF_JMP: u8 = 0x05;
const BPF_ALU64: u8 = 0x07;
const BPF_IMM: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_ATOMIC: u8 = 0xc0;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_ADD: u8 = 0x00;
const BPF_LSH: u8 = 0x60;
const BPF_RSH: u8 = 0x70;
const BPF_MOV: u8 = 0xb0;
const BPF_JA: u8 = 0x00;
const BPF_JEQ: u8 = 0x10;
const BPF_JGT: u8 = 0x20;
const BPF_JNE: u8 = 0x50;
const BPF_CALL: u8 = 0x80;
const BPF_EXIT: u8 = 0x90;
const BPF_PSEUDO_MAP_FD: u8 = 1;

/// Why bytes are not an instruction of `Insn`.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum DecodeError {
    #[error("instruction {0:#04x} is not one the assembler makes")]
    Unknown(u8),
    #[error("a 16-byte instruction is cut short")]
    Short,
}

impl Insn {
    /// How many 8-byte `struct bpf_insn` it takes: jumps count these.
    pub(super) fn slots(self) -> usize {
        if matches!(self, Insn::LoadMap { .. }) { 2 } else { 1 }
    }

    /// Appends its `struct bpf_insn`s (code, dst and src registers in one
    /// byte, off, imm) to `out`; a map's index is looked up in `maps` (its
    /// fd, or -1 if there is none).
    pub(super) fn encode(self, maps: &[i32], out: &mut Vec<[u8; 8]>) {
        let jmp = |op| match op {
            Jmp::Eq => BPF_JEQ,
            Jmp::Ne => BPF_JNE,
            Jmp::Gt => BPF_JGT,
        };
        let (code, dst, src, off, imm) = match self {
            Insn::Load { dst, src, off, size } => (BPF_LDX | BPF_MEM | size.code(), dst.0, src.0, off, 0),
            Insn::Store { dst, off, src, size } => (BPF_STX | BPF_MEM | size.code(), dst.0, src.0, off, 0),
            Insn::AtomicAdd { dst, off, src, size } => {
                (BPF_STX | BPF_ATOMIC | size.code(), dst.0, src.0, off, i32::from(BPF_ADD))
            }
            Insn::LoadMap { dst, map } => {
                let fd = usize::try_from(map).ok().and_then(|i| maps.get(i)).copied().unwrap_or(-1);
                (BPF_LD | BPF_IMM | Size::DW.code(), dst.0, BPF_PSEUDO_MAP_FD, 0, fd)
            }
            Insn::Mov { dst, src } => (BPF_ALU64 | BPF_MOV | BPF_X, dst.0, src.0, 0, 0),
            Insn::MovImm { dst, imm } => (BPF_ALU64 | BPF_MOV | BPF_K, dst.0, 0, 0, imm),
            Insn::AddImm { dst, imm } => (BPF_ALU64 | BPF_ADD | BPF_K, dst.0, 0, 0, imm),
            Insn::Add { dst, src } => (BPF_ALU64 | BPF_ADD | BPF_X, dst.0, src.0, 0, 0),
            Insn::RshImm { dst, imm } => (BPF_ALU64 | BPF_RSH | BPF_K, dst.0, 0, 0, imm),
            Insn::LshImm { dst, imm } => (BPF_ALU64 | BPF_LSH | BPF_K, dst.0, 0, 0, imm),
            Insn::Ja { off } => (BPF_JMP | BPF_JA, 0, 0, off, 0),
            Insn::Jmp { op, dst, src: Src::Imm(imm), off } => (BPF_JMP | jmp(op) | BPF_K, dst.0, 0, off, imm),
            Insn::Jmp { op, dst, src: Src::Reg(src), off } => (BPF_JMP | jmp(op) | BPF_X, dst.0, src.0, off, 0),
            Insn::Call { id } => (BPF_JMP | BPF_CALL, 0, 0, 0, id),
            Insn::Exit => (BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
        };
        let regs = if cfg!(target_endian = "little") { (src << 4) | dst } else { (dst << 4) | src };
        let [o0, o1] = off.to_ne_bytes();
        let [i0, i1, i2, i3] = imm.to_ne_bytes();
        out.push([code, regs, o0, o1, i0, i1, i2, i3]);
        if self.slots() == 2 {
            // The upper half of the 64-bit immediate: none for a map.
            out.push([0; 8]);
        }
    }

    /// The instruction at the start of `code` and the slots it takes; a
    /// map is named by what its slot holds (the index encoded, if `encode`
    /// was given the identity). The encoder's check: the tests decode
    /// every form, and every program, back to what was encoded.
    #[cfg(test)]
    pub(super) fn decode(code: &[[u8; 8]]) -> Result<(Insn, usize), DecodeError> {
        let [op, regs, o0, o1, i0, i1, i2, i3] = *code.first().ok_or(DecodeError::Short)?;
        let (dst, src) = if cfg!(target_endian = "little") { (regs & 0xf, regs >> 4) } else { (regs >> 4, regs & 0xf) };
        let (dst, src, off, imm) =
            (Reg(dst), Reg(src), i16::from_ne_bytes([o0, o1]), i32::from_ne_bytes([i0, i1, i2, i3]));
        let size = Size::of_code(op);
        let insn = match op & !0x18 {
            x if x == BPF_LDX | BPF_MEM => Insn::Load { dst, src, off, size },
            x if x == BPF_STX | BPF_MEM => Insn::Store { dst, off, src, size },
            x if x == BPF_STX | BPF_ATOMIC && imm == i32::from(BPF_ADD) => Insn::AtomicAdd { dst, off, src, size },
            x if x == BPF_LD | BPF_IMM && size == Size::DW && src.0 == BPF_PSEUDO_MAP_FD => {
                if code.len() < 2 {
                    return Err(DecodeError::Short);
                }
                return Ok((Insn::LoadMap { dst, map: imm }, 2));
            }
            _ => match op {
                x if x == BPF_ALU64 | BPF_MOV | BPF_X => Insn::Mov { dst, src },
                x if x == BPF_ALU64 | BPF_MOV | BPF_K => Insn::MovImm { dst, imm },
                x if x == BPF_ALU64 | BPF_ADD | BPF_K => Insn::AddImm { dst, imm },
                x if x == BPF_ALU64 | BPF_ADD | BPF_X => Insn::Add { dst, src },
                x if x == BPF_ALU64 | BPF_RSH | BPF_K => Insn::RshImm { dst, imm },
                x if x == BPF_ALU64 | BPF_LSH | BPF_K => Insn::LshImm { dst, imm },
                x if x == BPF_JMP | BPF_JA => Insn::Ja { off },
                x if x == BPF_JMP | BPF_JEQ | BPF_K => Insn::Jmp { op: Jmp::Eq, dst, src: Src::Imm(imm), off },
                x if x == BPF_JMP | BPF_JNE | BPF_K => Insn::Jmp { op: Jmp::Ne, dst, src: Src::Imm(imm), off },
                x if x == BPF_JMP | BPF_JEQ | BPF_X => Insn::Jmp { op: Jmp::Eq, dst, src: Src::Reg(src), off },
                x if x == BPF_JMP | BPF_JNE | BPF_X => Insn::Jmp { op: Jmp::Ne, dst, src: Src::Reg(src), off },
                x if x == BPF_JMP | BPF_JGT | BPF_K => Insn::Jmp { op: Jmp::Gt, dst, src: Src::Imm(imm), off },
                x if x == BPF_JMP | BPF_JGT | BPF_X => Insn::Jmp { op: Jmp::Gt, dst, src: Src::Reg(src), off },
                x if x == BPF_JMP | BPF_CALL => Insn::Call { id: imm },
                x if x == BPF_JMP | BPF_EXIT => Insn::Exit,
                _ => return Err(DecodeError::Unknown(op)),
            },
        };
        Ok((insn, 1))
    }

    /// Where a jump's offset is, to be pointed at its label.
    fn jump_off(&mut self) -> Option<&mut i16> {
        match self {
            Insn::Ja { off } | Insn::Jmp { off, .. } => Some(off),
            _ => None,
        }
    }
}

/// The kernel verifier's notation.
impl fmt::Display for Insn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Insn::Load { dst, src, off, size } => write!(f, "{dst} = *({} *)({src} {off:+})", size.c_type()),
            Insn::Store { dst, off, src, size } => write!(f, "*({} *)({dst} {off:+}) = {src}", size.c_type()),
            Insn::AtomicAdd { dst, off, src, size } => {
                write!(f, "lock *({} *)({dst} {off:+}) += {src}", size.c_type())
            }
            Insn::LoadMap { dst, map } => write!(f, "{dst} = map[{map}] ll"),
            Insn::Mov { dst, src } => write!(f, "{dst} = {src}"),
            Insn::MovImm { dst, imm } => write!(f, "{dst} = {imm}"),
            Insn::AddImm { dst, imm } => write!(f, "{dst} += {imm}"),
            Insn::Add { dst, src } => write!(f, "{dst} += {src}"),
            Insn::RshImm { dst, imm } => write!(f, "{dst} >>= {imm}"),
            Insn::LshImm { dst, imm } => write!(f, "{dst} <<= {imm}"),
            Insn::Ja { off } => write!(f, "goto pc{off:+}"),
            Insn::Jmp { op, dst, src, off } => {
                let op = match op {
                    Jmp::Eq => "==",
                    Jmp::Ne => "!=",
                    Jmp::Gt => ">",
                };
                match src {
                    Src::Imm(imm) => write!(f, "if {dst} {op} {imm} goto pc{off:+}"),
                    Src::Reg(src) => write!(f, "if {dst} {op} {src} goto pc{off:+}"),
                }
            }
            Insn::Call { id } => write!(f, "call #{id}"),
            Insn::Exit => write!(f, "exit"),
        }
    }
}

/// A field of a program's own record, which it builds at the top of its
/// stack and writes out: the one description the program stores by and
/// its decoder reads by.
#[derive(Clone, Copy, Debug)]
pub(super) struct Slot {
    pub name: &'static str,
    pub off: usize,
    pub size: Size,
}

impl Slot {
    pub(super) const fn new(name: &'static str, off: usize, size: Size) -> Self {
        Slot { name, off, size }
    }
    /// Its bytes in `record`.
    pub(super) fn bytes(self, record: &[u8]) -> &[u8] {
        &record[self.off..self.off + self.size.bytes()]
    }
    /// Its value in `record` (native byte order), as the program stored it.
    pub(super) fn read(self, record: &[u8]) -> u64 {
        let b = self.bytes(record);
        match self.size {
            Size::B => u64::from(b[0]),
            Size::H => u64::from(u16::from_ne_bytes([b[0], b[1]])),
            Size::W => u64::from(u32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
            Size::DW => u64::from_ne_bytes(b.try_into().unwrap_or_default()),
        }
    }
}

/// A field a program reads from the kernel: its offset and width, and its
/// path for the listing (`sock.__sk_common.skc_net`).
#[derive(Clone, Debug)]
pub(super) struct Field {
    pub path: String,
    pub off: i16,
    pub size: Size,
}

/// Why a program could not be assembled: a label left unplaced or placed
/// twice, or more instructions than a jump can span.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("jumps to {unplaced} unplaced, labels placed twice: {twice}, {slots} instructions")]
pub(super) struct Malformed {
    unplaced: String,
    twice: String,
    slots: usize,
}

/// A program being assembled. `L` is its labels: every jump runs forward to
/// a label placed once after it. `record_len` bytes at the top of the stack
/// are its record.
pub(super) struct Asm<L> {
    code: Code,
    record_len: usize,
    /// Each jump not yet pointed: its instruction index, slot, label, and
    /// what the registers held when it jumped.
    pending: Vec<(usize, usize, L, Holds)>,
    placed: Vec<L>,
    /// What each register holds, for the listing of a store.
    holds: Holds,
}

/// What each register was last loaded with (a field's path, a number), where
/// every way to here agrees; for the listing.
type Holds = [Option<String>; 11];

/// An assembled program: its instructions and, for the listing, a note on
/// each and the labels placed before some.
#[derive(Clone, Debug, Default)]
pub(super) struct Code {
    insns: Vec<Insn>,
    notes: Vec<String>,
    /// (instruction index, label), in order.
    labels: Vec<(usize, String)>,
    slots: usize,
}

impl<L: Copy + PartialEq + fmt::Debug> Asm<L> {
    pub(super) fn new(record_len: usize) -> Self {
        Self { code: Code::default(), record_len, pending: Vec::new(), placed: Vec::new(), holds: Default::default() }
    }

    /// Appends `i` with a note for the listing (or none).
    pub(super) fn push_noted(&mut self, i: Insn, note: impl Into<String>) {
        let note = note.into();
        match i {
            Insn::Load { dst, .. } => self.holds[usize::from(dst.0)] = Some(note.clone()),
            Insn::Mov { dst, src } => self.holds[usize::from(dst.0)] = self.holds[usize::from(src.0)].clone(),
            Insn::MovImm { dst, imm } => self.holds[usize::from(dst.0)] = Some(imm.to_string()),
            Insn::AddImm { dst, .. }
            | Insn::Add { dst, .. }
            | Insn::RshImm { dst, .. }
            | Insn::LshImm { dst, .. }
            | Insn::LoadMap { dst, .. } => self.holds[usize::from(dst.0)] = None,
            Insn::Call { .. } => {
                for r in &mut self.holds[..6] {
                    *r = None;
                }
            }
            _ => {}
        }
        self.code.slots += i.slots();
        self.code.insns.push(i);
        self.code.notes.push(note);
    }

    pub(super) fn push(&mut self, i: Insn) {
        self.push_noted(i, "");
    }

    /// `dst = ` the kernel's `field` at `src`.
    pub(super) fn load(&mut self, dst: Reg, src: Reg, field: &Field) {
        self.push_noted(Insn::Load { dst, src, off: field.off, size: field.size }, field.path.clone());
    }

    /// Record field `slot` = `src`.
    pub(super) fn store(&mut self, slot: Slot, src: Reg) {
        let from = self.holds[usize::from(src.0)].clone().unwrap_or_else(|| src.to_string());
        let off = self.record_off(slot.off);
        self.push_noted(Insn::Store { dst: FP, off, src, size: slot.size }, format!("{from} -> record.{}", slot.name));
    }

    /// Where byte `at` of the record is, from the frame pointer.
    pub(super) fn record_off(&self, at: usize) -> i16 {
        at as i16 - self.record_len as i16
    }

    /// `dst` = the address of byte `at` of the record.
    pub(super) fn record_addr(&mut self, dst: Reg, at: usize) {
        self.push(Insn::Mov { dst, src: FP });
        self.push(Insn::AddImm { dst, imm: self.record_off(at).into() });
    }

    pub(super) fn call(&mut self, helper: Helper) {
        self.push_noted(Insn::Call { id: helper.id }, format!("bpf_{}", helper.name));
    }

    pub(super) fn load_map(&mut self, dst: Reg, map: i32, name: &str) {
        self.push_noted(Insn::LoadMap { dst, map }, format!("map {name}"));
    }

    fn jump_to(&mut self, jump: Insn, to: L) {
        self.pending.push((self.code.insns.len(), self.code.slots, to, self.holds.clone()));
        self.push_noted(jump, format!("-> {to:?}"));
    }

    /// `goto to`
    pub(super) fn ja(&mut self, to: L) {
        self.jump_to(Insn::Ja { off: 0 }, to);
    }
    /// `if dst == src goto to`
    pub(super) fn jeq(&mut self, dst: Reg, src: impl Into<Src>, to: L) {
        self.jump_to(Insn::Jmp { op: Jmp::Eq, dst, src: src.into(), off: 0 }, to);
    }
    /// `if dst != src goto to`
    pub(super) fn jne(&mut self, dst: Reg, src: impl Into<Src>, to: L) {
        self.jump_to(Insn::Jmp { op: Jmp::Ne, dst, src: src.into(), off: 0 }, to);
    }
    /// `if dst > src goto to` (unsigned)
    pub(super) fn jgt(&mut self, dst: Reg, src: impl Into<Src>, to: L) {
        self.jump_to(Insn::Jmp { op: Jmp::Gt, dst, src: src.into(), off: 0 }, to);
    }

    /// Points every jump to `label` here. A register holds here what it
    /// held on every way in (each jump, and the instruction before unless
    /// it is a `goto` or an `exit`).
    pub(super) fn place(&mut self, label: L) {
        let here = self.code.slots;
        self.placed.push(label);
        self.code.labels.push((self.code.insns.len(), format!("{label:?}")));
        let falls_in = !matches!(self.code.insns.last(), Some(Insn::Ja { .. } | Insn::Exit));
        let mut ways: Vec<Holds> = falls_in.then(|| self.holds.clone()).into_iter().collect();
        for (at, slot, _, holds) in self.pending.iter_mut().filter(|j| j.2 == label) {
            if let Some(off) = self.code.insns[*at].jump_off() {
                *off = i16::try_from(here - *slot - 1).unwrap_or(i16::MAX);
            }
            ways.push(std::mem::take(holds));
        }
        self.pending.retain(|j| j.2 != label);
        if let Some((first, rest)) = ways.split_first() {
            self.holds =
                std::array::from_fn(|r| first[r].clone().filter(|h| rest.iter().all(|w| w[r].as_ref() == Some(h))));
        }
    }

    /// The program, once every jump has found its label, no label is placed
    /// twice and every jump can reach.
    pub(super) fn finish(self) -> Result<Code, Malformed> {
        let twice: Vec<L> =
            self.placed.iter().enumerate().filter(|(i, l)| self.placed[..*i].contains(l)).map(|p| *p.1).collect();
        if self.pending.is_empty() && twice.is_empty() && self.code.slots <= i16::MAX as usize {
            return Ok(self.code);
        }
        let unplaced: Vec<L> = self.pending.iter().map(|j| j.2).collect();
        Err(Malformed { unplaced: format!("{unplaced:?}"), twice: format!("{twice:?}"), slots: self.code.slots })
    }
}

impl From<Reg> for Src {
    fn from(r: Reg) -> Self {
        Src::Reg(r)
    }
}

impl From<i32> for Src {
    fn from(imm: i32) -> Self {
        Src::Imm(imm)
    }
}

impl Code {
    #[cfg(test)]
    pub(super) fn insns(&self) -> &[Insn] {
        &self.insns
    }

    /// The `struct bpf_insn`s to load, with map `i` at fd `maps[i]`.
    pub(super) fn encode(&self, maps: &[i32]) -> Vec<[u8; 8]> {
        let mut out = Vec::with_capacity(self.slots);
        for i in &self.insns {
            i.encode(maps, &mut out);
        }
        out
    }
}

/// The listing: each label on a line of its own, each instruction numbered
/// by its slot (as jumps count) with its note.
impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut slot = 0;
        let mut labels = self.labels.iter().peekable();
        for (at, (insn, note)) in self.insns.iter().zip(&self.notes).enumerate() {
            while let Some((_, label)) = labels.next_if(|l| l.0 == at) {
                writeln!(f, "{label}:")?;
            }
            let text = insn.to_string();
            match note.as_str() {
                "" => writeln!(f, "{slot:4}: {text}")?,
                note => writeln!(f, "{slot:4}: {text:<32} ; {note}")?,
            }
            slot += insn.slots();
        }
        labels.try_for_each(|(_, label)| writeln!(f, "{label}:"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of every instruction form, each register and a negative and a
    /// positive offset among them.
    fn every_form() -> Vec<Insn> {
        let mut all = Vec::new();
        for size in [Size::B, Size::H, Size::W, Size::DW] {
            all.push(Insn::Load { dst: R3, src: R9, off: -516, size });
            all.push(Insn::Store { dst: FP, off: -80, src: R8, size });
        }
        for size in [Size::W, Size::DW] {
            all.push(Insn::AtomicAdd { dst: R0, off: 8, src: R1, size });
        }
        all.extend([
            Insn::LoadMap { dst: R1, map: 1 },
            Insn::Mov { dst: R7, src: R2 },
            Insn::MovImm { dst: R0, imm: -1 },
            Insn::AddImm { dst: R2, imm: -88 },
            Insn::Add { dst: R3, src: R7 },
            Insn::RshImm { dst: R0, imm: 32 },
            Insn::LshImm { dst: R3, imm: 2 },
            Insn::Ja { off: 70 },
            Insn::Call { id: 162 },
            Insn::Exit,
        ]);
        for op in [Jmp::Eq, Jmp::Ne, Jmp::Gt] {
            all.push(Insn::Jmp { op, dst: R4, src: Src::Imm(10), off: 3 });
            all.push(Insn::Jmp { op, dst: R3, src: Src::Reg(R4), off: 35 });
        }
        all.extend([R0, R1, R2, R3, R4, R6, R7, R8, R9, FP].map(|r| Insn::Mov { dst: r, src: r }));
        all
    }

    #[test]
    fn every_form_decodes_to_what_was_encoded() {
        let maps = [0, 1, 2];
        for i in every_form() {
            let mut code = Vec::new();
            i.encode(&maps, &mut code);
            assert_eq!(code.len(), i.slots(), "{i}");
            assert_eq!(Insn::decode(&code), Ok((i, i.slots())), "{i}: {code:?}");
        }
        // A whole program: decoding walks it slot by slot.
        let code: Vec<[u8; 8]> = every_form()
            .iter()
            .flat_map(|i| {
                let mut out = Vec::new();
                i.encode(&maps, &mut out);
                out
            })
            .collect();
        let mut back = Vec::new();
        let mut at = 0;
        while at < code.len() {
            let (i, n) = Insn::decode(&code[at..]).unwrap();
            back.push(i);
            at += n;
        }
        assert_eq!(back, every_form());
    }

    #[test]
    fn encodings_are_the_kernels() {
        let enc = |i: Insn| {
            let mut out = Vec::new();
            i.encode(&[7], &mut out);
            out
        };
        assert_eq!(enc(Insn::Load { dst: R6, src: R1, off: 0, size: Size::DW }), [[0x79, 0x16, 0, 0, 0, 0, 0, 0]]);
        assert_eq!(enc(Insn::Call { id: 162 }), [[0x85, 0, 0, 0, 162, 0, 0, 0]]);
        assert_eq!(enc(Insn::RshImm { dst: R0, imm: 32 }), [[0x77, 0, 0, 0, 32, 0, 0, 0]]);
        assert_eq!(enc(Insn::LoadMap { dst: R1, map: 0 }), [[0x18, 0x11, 0, 0, 7, 0, 0, 0], [0; 8]], "fd 7");
        assert_eq!(enc(Insn::AtomicAdd { dst: R0, off: 0, src: R1, size: Size::DW }), [[0xdb, 0x10, 0, 0, 0, 0, 0, 0]]);
        assert_eq!(
            enc(Insn::Jmp { op: Jmp::Ne, dst: R3, src: Src::Reg(R4), off: 2 }),
            [[0x5d, 0x43, 2, 0, 0, 0, 0, 0]]
        );
        assert_eq!(Insn::decode(&[[0x18, 0x11, 0, 0, 7, 0, 0, 0]]), Err(DecodeError::Short));
        assert_eq!(Insn::decode(&[[0x95 ^ 0x40, 0, 0, 0, 0, 0, 0, 0]]), Err(DecodeError::Unknown(0xd5)));
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum L {
        Out,
        Other,
    }

    #[test]
    fn every_jump_needs_its_label_placed_once_after_it() {
        let mut a = Asm::<L>::new(8);
        a.jeq(R1, 0, L::Out);
        a.load_map(R1, 0, "m");
        a.jne(R1, R2, L::Out);
        a.place(L::Out);
        a.push(Insn::Exit);
        let code = a.finish().unwrap();
        // Offsets count slots: the map load takes two.
        assert_eq!(code.insns()[0], Insn::Jmp { op: Jmp::Eq, dst: R1, src: Src::Imm(0), off: 3 });
        assert_eq!(code.insns()[2], Insn::Jmp { op: Jmp::Ne, dst: R1, src: Src::Reg(R2), off: 0 });
        assert_eq!(code.to_string().lines().nth(3), Some("Out:"));
        let mut twice = Asm::<L>::new(8);
        twice.place(L::Out);
        twice.place(L::Out);
        assert!(twice.finish().unwrap_err().to_string().contains("twice: [Out]"));
        // A jump after its label was placed would run backwards: never pointed.
        let mut back = Asm::<L>::new(8);
        back.place(L::Out);
        back.ja(L::Out);
        back.jeq(R0, 0, L::Other);
        assert!(back.finish().unwrap_err().to_string().contains("[Out, Other] unplaced"));
    }

    #[test]
    fn the_listing_names_what_each_store_writes() {
        let field = Field { path: "sock.__sk_common.skc_net".into(), off: 48, size: Size::DW };
        let mut a = Asm::<L>::new(16);
        a.load(R3, R2, &field);
        a.push(Insn::Mov { dst: R4, src: R3 });
        a.store(Slot::new("netns", 8, Size::DW), R4);
        a.call(Helper { name: "seq_write", id: 127 });
        a.store(Slot::new("fd", 0, Size::W), R1);
        let listing = a.finish().unwrap().to_string();
        assert!(listing.contains("r3 = *(u64 *)(r2 +48)            ; sock.__sk_common.skc_net\n"), "{listing}");
        assert!(listing.contains("*(u64 *)(r10 -8) = r4            ; sock.__sk_common.skc_net -> record.netns\n"));
        assert!(listing.contains("call #127                        ; bpf_seq_write\n"));
        assert!(listing.contains("; r1 -> record.fd\n"), "a call leaves r1 holding nothing known: {listing}");
    }

    #[test]
    fn slots_read_what_the_program_stored() {
        let mut rec = [0u8; 16];
        rec[8..12].copy_from_slice(&4026531833u32.to_ne_bytes());
        rec[2] = 9;
        assert_eq!(Slot::new("netns", 8, Size::W).read(&rec), 4026531833);
        assert_eq!(Slot::new("state", 2, Size::B).read(&rec), 9);
    }
}
