//! The network namespaces the kernel has, listed by the owner scan as it
//! goes: each call of its program (one per fd) first takes one step along
//! the kernel's list of them (each `struct net`'s `list`, from the reading
//! task's own namespace round to it again) and writes the inode number of
//! the namespace it stands on into a map. A pass that finds every one of
//! them through processes, mounts, fds and TCP/UDP sockets need not ask
//! the other sockets (unix ones, say) where they live.
//!
//! One step a call, not a loop: the verifier checks a step once, where a
//! loop it would walk as many times as it may run. A host needs as many
//! fds as namespaces (plus one) for the walk to end; a walk that has not
//! come back to where it started by the scan's end, that outgrows `MAX`, or
//! whose read fails is marked incomplete, and it is not believed.
//!
//! The list is read as the kernel's own lockless readers read it (the
//! iterator's program runs under RCU), each field through
//! `bpf_probe_read_kernel`. Its head is no `struct net`: it is told by its
//! `ns.ops`, which in every namespace points at the same operations (the
//! reading task's namespace's).

use nix::errno::Errno;

use super::Refusal;
use super::asm::Size::{DW, W};
use super::asm::{Asm, FP, Insn, R0, R1, R2, R3, R6, R7, R8, Reg, Size};
use super::kernel::Kernel;
use crate::procfs::bpf_sys::{BPF_MAP_TYPE_ARRAY, BpfMap};

/// Namespaces listed at most: a host with more is read as if it had no
/// list.
const MAX: usize = 4096;

/// The walk's map value: how many were written, how the walk stands, the
/// reading task's namespace's `ns.ops`, where the walk started and where it
/// stands, then the inode numbers.
const COUNT: i16 = 0;
const STATE: i16 = 4;
const OPS: i16 = 8;
const START: i16 = 16;
const NODE: i16 = 24;
const INUMS: i16 = 32;
const VALUE_LEN: usize = INUMS as usize + 4 * MAX;
/// `STATE`: still walking, back where it started, or given up.
const WALKING: i32 = 0;
const COMPLETE: i32 = 1;
const INCOMPLETE: i32 = 2;

/// The map the walk keeps its state and its findings in.
pub(super) fn map() -> Result<BpfMap, Errno> {
    BpfMap::create(BPF_MAP_TYPE_ARRAY, 4, VALUE_LEN as u32, 1, c"procspy_netns")
}

/// Where a program's step of the walk jumps: `done`, where the program
/// goes on with its own work; the others are the step's own.
pub(super) struct Labels<L> {
    pub done: L,
    pub step: L,
    pub next: L,
    pub incomplete: L,
}

/// `dst = *(size *)src`, read with `bpf_probe_read_kernel` into the stack
/// at `at`; a read that fails gives the walk up.
fn read<L: Copy + PartialEq + std::fmt::Debug>(
    a: &mut Asm<L>,
    k: &Kernel<'_>,
    (dst, src, size, what): (Reg, Reg, Size, &str),
    at: i16,
    give_up: L,
) -> Result<(), Refusal> {
    a.push(Insn::Mov { dst: R3, src });
    a.push(Insn::Mov { dst: R1, src: FP });
    a.push(Insn::AddImm { dst: R1, imm: at.into() });
    a.push(Insn::MovImm { dst: R2, imm: size.bytes() as i32 });
    a.call(k.helper("probe_read_kernel")?);
    a.jne(R0, 0, give_up);
    a.push_noted(Insn::Load { dst, src: FP, off: at, size }, what);
    Ok(())
}

/// The step, at the start of a program whose context `r1` holds: it keeps
/// `r1` in `ctx` and clobbers r0-r8 but `ctx`; `map` is the walk's map's
/// index, and `scratch` two 8-byte stack slots (the map's key, what a read
/// lands in).
pub(super) fn step<L: Copy + PartialEq + std::fmt::Debug>(
    a: &mut Asm<L>,
    k: &Kernel<'_>,
    (map, ctx, scratch): (i32, Reg, i16),
    l: Labels<L>,
) -> Result<(), Refusal> {
    let off = |st: &str, path: &[&str], size| k.offset(st, path, size);
    let (nsproxy, net_ns) = (off("task_struct", &["nsproxy"], 8)?, off("nsproxy", &["net_ns"], 8)?);
    let (list, next) = (off("net", &["list"], 16)?, off("list_head", &["next"], 8)?);
    let (ops, inum) = (off("net", &["ns", "ops"], 8)?, off("net", &["ns", "inum"], 4)?);
    let current_task = k.helper("get_current_task")?;
    let at = scratch - 8;
    let (walk, node) = (R8, R7);
    a.push(Insn::Mov { dst: ctx, src: R1 });
    a.push(Insn::MovImm { dst: R1, imm: 0 });
    a.push_noted(Insn::Store { dst: FP, off: scratch, src: R1, size: W }, "0 -> key");
    a.push(Insn::Mov { dst: R2, src: FP });
    a.push(Insn::AddImm { dst: R2, imm: scratch.into() });
    a.load_map(R1, map, "netns");
    a.call(k.helper("map_lookup_elem")?);
    a.jeq(R0, 0, l.done);
    a.push(Insn::Mov { dst: walk, src: R0 });
    a.push_noted(Insn::Load { dst: R1, src: walk, off: STATE, size: W }, "state");
    a.jne(R1, WALKING, l.done);
    a.push_noted(Insn::Load { dst: node, src: walk, off: NODE, size: DW }, "node");
    a.jne(node, 0, l.step);
    // The first step: the reading task's namespace, where the walk starts.
    a.call(current_task);
    a.push(Insn::AddImm { dst: R0, imm: nsproxy.into() });
    read(a, k, (node, R0, DW, "task_struct.nsproxy"), at, l.incomplete)?;
    a.push(Insn::AddImm { dst: node, imm: net_ns.into() });
    read(a, k, (node, node, DW, "nsproxy.net_ns"), at, l.incomplete)?;
    a.push(Insn::Mov { dst: R6, src: node });
    a.push(Insn::AddImm { dst: R6, imm: ops.into() });
    read(a, k, (R6, R6, DW, "net.ns.ops"), at, l.incomplete)?;
    a.push_noted(Insn::Store { dst: walk, off: OPS, src: R6, size: DW }, "net.ns.ops -> ops");
    a.push(Insn::AddImm { dst: node, imm: list.into() });
    a.push_noted(Insn::Store { dst: walk, off: START, src: node, size: DW }, "start");

    // The namespace the walk stands on, unless it is the list's head.
    a.place(l.step);
    a.push(Insn::Mov { dst: R6, src: node });
    a.push(Insn::AddImm { dst: R6, imm: (ops - list).into() });
    read(a, k, (R6, R6, DW, "net.ns.ops"), at, l.incomplete)?;
    a.push_noted(Insn::Load { dst: R1, src: walk, off: OPS, size: DW }, "ops");
    a.jne(R6, R1, l.next);
    a.push(Insn::Mov { dst: R6, src: node });
    a.push(Insn::AddImm { dst: R6, imm: (inum - list).into() });
    read(a, k, (R6, R6, W, "net.ns.inum"), at, l.incomplete)?;
    a.push_noted(Insn::Load { dst: R1, src: walk, off: COUNT, size: W }, "count");
    a.jgt(R1, MAX as i32 - 1, l.incomplete);
    a.push(Insn::Mov { dst: R2, src: R1 });
    a.push(Insn::LshImm { dst: R2, imm: 2 });
    a.push(Insn::Add { dst: R2, src: walk });
    a.push_noted(Insn::Store { dst: R2, off: INUMS, src: R6, size: W }, "net.ns.inum -> inums[count]");
    a.push(Insn::AddImm { dst: R1, imm: 1 });
    a.push_noted(Insn::Store { dst: walk, off: COUNT, src: R1, size: W }, "count + 1 -> count");
    // On to the next; back where it started, the walk is complete.
    a.place(l.next);
    a.push(Insn::AddImm { dst: node, imm: next.into() });
    read(a, k, (node, node, DW, "list_head.next"), at, l.incomplete)?;
    a.push_noted(Insn::Store { dst: walk, off: NODE, src: node, size: DW }, "node");
    a.push_noted(Insn::Load { dst: R1, src: walk, off: START, size: DW }, "start");
    a.jne(node, R1, l.done);
    a.push(Insn::MovImm { dst: R1, imm: COMPLETE });
    a.push_noted(Insn::Store { dst: walk, off: STATE, src: R1, size: W }, "complete -> state");
    a.ja(l.done);
    a.place(l.incomplete);
    a.push(Insn::MovImm { dst: R1, imm: INCOMPLETE });
    a.push_noted(Insn::Store { dst: walk, off: STATE, src: R1, size: W }, "incomplete -> state");
    a.place(l.done);
    a.push(Insn::Mov { dst: R1, src: ctx });
    Ok(())
}

/// The walk's map, cleared before each scan and read after it.
#[derive(Debug)]
pub(super) struct Walk {
    map: BpfMap,
    /// A cleared value.
    zero: Vec<u8>,
}

impl Walk {
    pub(super) fn new(map: BpfMap) -> Self {
        Walk { map, zero: vec![0; VALUE_LEN] }
    }

    pub(super) fn map(&self) -> &BpfMap {
        &self.map
    }

    /// A walk from the start at the next scan.
    pub(super) fn clear(&self) -> Result<(), Errno> {
        self.map.update(&0u32.to_ne_bytes(), &self.zero)
    }

    /// Every network namespace's inode number into `out` (sorted), if the
    /// last scan's walk listed them all; `buf` is scratch.
    pub(super) fn read(&self, buf: &mut Vec<u8>, out: &mut Vec<u64>) -> Result<bool, Errno> {
        buf.resize(VALUE_LEN, 0);
        self.map.lookup(&0u32.to_ne_bytes(), buf)?;
        let word = |at: usize| u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap_or_default());
        let count = (word(COUNT as usize) as usize).min(MAX);
        out.clear();
        out.extend((0..count).map(|i| u64::from(word(INUMS as usize + 4 * i))));
        out.sort_unstable();
        Ok(word(STATE as usize) == COMPLETE as u32)
    }
}
