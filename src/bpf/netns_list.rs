//! The network namespaces the kernel has: a `bpf_map` iterator's program
//! that, when the iterator ends, walks the kernel's list of them (each
//! `struct net`'s `list`, from the reading task's own round to it again)
//! and writes each one's inode number into a map. A pass that finds every
//! one of them through processes, mounts, fds and TCP/UDP sockets need not
//! ask the other sockets (unix ones, say) where they live (`owner_scan.rs`).
//!
//! The list is read as the kernel's own lockless readers read it (the
//! iterator's program runs under RCU), each field through
//! `bpf_probe_read_kernel`. The list's head is no `struct net`: it is told
//! by its `ns.ops`, which in every namespace points at the same operations
//! (those of the reading task's). A walk that does not come back to where
//! it started within `MAX` namespaces, or a read that fails, leaves the
//! list marked incomplete, and it is not believed.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::OnceLock;

use nix::errno::Errno;

use super::Refusal;
use super::asm::Size::{DW, W};
use super::asm::{Asm, FP, Insn, R0, R1, R2, R3, R6, R7, R8, R9, Reg, Size};
use super::kernel::Kernel;
use super::load::{Program, assembled_once};
use crate::parse::btf::Btf;
use crate::procfs::bpf_sys::{self, BPF_MAP_TYPE_ARRAY, BPF_TRACE_ITER, BpfMap};
use crate::procfs::retry;

/// What the messages call it.
const WHAT: &str = "the BPF namespace list";

/// Namespaces listed at most: a host with more is read as if it had no
/// list (the verifier walks the loop this many times).
pub(crate) const MAX: usize = 1024;

/// The map's one value: how many were written, whether the walk came back
/// to where it started, then their inode numbers.
const COUNT: i16 = 0;
const COMPLETE: i16 = 4;
const INUMS: i16 = 8;
const VALUE_LEN: usize = INUMS as usize + 4 * MAX;

/// The stack: what a read lands in, the reading task's `ns.ops` and where
/// the walk started; the map's key.
const READ: i16 = -8;
const OPS: i16 = -16;
const START: i16 = -24;
const KEY: i16 = -32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Label {
    /// Each namespace of the list in turn (and its head).
    Walk,
    /// Not a `struct net`: the list's head.
    Next,
    Complete,
    Out,
}

/// `dst = *(size *)src`, read with `bpf_probe_read_kernel`; a read that
/// fails goes to `Out`.
fn read(a: &mut Asm<Label>, k: &Kernel<'_>, dst: Reg, src: Reg, size: Size, what: &str) -> Result<(), Refusal> {
    a.push(Insn::Mov { dst: R3, src });
    a.push(Insn::Mov { dst: R1, src: FP });
    a.push(Insn::AddImm { dst: R1, imm: READ.into() });
    a.push(Insn::MovImm { dst: R2, imm: size.bytes() as i32 });
    a.call(k.helper("probe_read_kernel")?);
    a.jne(R0, 0, Label::Out);
    a.push_noted(Insn::Load { dst, src: FP, off: READ, size }, what);
    Ok(())
}

/// r1 = the context. Per map, nothing; at the end (no map), the walk.
fn assemble(btf: &Btf<'_>) -> Result<Program, Refusal> {
    let k = Kernel::new(btf, WHAT);
    let attach_to = "bpf_iter_bpf_map";
    let attach_btf_id = k.func(attach_to, "bpf_map iterator")?;
    let lookup = k.helper("map_lookup_elem")?;
    let current_task = k.helper("get_current_task")?;
    let off = |st: &str, path: &[&str], size| k.offset(st, path, size);
    let (nsproxy, net_ns) = (off("task_struct", &["nsproxy"], 8)?, off("nsproxy", &["net_ns"], 8)?);
    let (list, next) = (off("net", &["list"], 16)?, off("list_head", &["next"], 8)?);
    let (ops, inum) = (off("net", &["ns", "ops"], 8)?, off("net", &["ns", "inum"], 4)?);
    let mut a = Asm::new(0);

    let (value, node, steps) = (R7, R8, R9);
    a.load(R6, R1, &k.field("bpf_iter__bpf_map", &["map"], 8)?);
    a.jne(R6, 0, Label::Out);
    a.push(Insn::MovImm { dst: R1, imm: 0 });
    a.push_noted(Insn::Store { dst: FP, off: KEY, src: R1, size: W }, "0 -> key");
    a.push(Insn::Mov { dst: R2, src: FP });
    a.push(Insn::AddImm { dst: R2, imm: KEY.into() });
    a.load_map(R1, 0, "netns");
    a.call(lookup);
    a.jeq(R0, 0, Label::Out);
    a.push(Insn::Mov { dst: value, src: R0 });
    a.push(Insn::MovImm { dst: R1, imm: 0 });
    a.push_noted(Insn::Store { dst: value, off: COUNT, src: R1, size: W }, "0 -> count");
    a.push_noted(Insn::Store { dst: value, off: COMPLETE, src: R1, size: W }, "0 -> complete");
    // The reading task's namespace: where the walk starts and ends.
    a.call(current_task);
    a.push(Insn::AddImm { dst: R0, imm: nsproxy.into() });
    read(&mut a, &k, node, R0, DW, "task_struct.nsproxy")?;
    a.push(Insn::AddImm { dst: node, imm: net_ns.into() });
    read(&mut a, &k, node, node, DW, "nsproxy.net_ns")?;
    a.push(Insn::Mov { dst: R6, src: node });
    a.push(Insn::AddImm { dst: R6, imm: ops.into() });
    read(&mut a, &k, R6, R6, DW, "net.ns.ops")?;
    a.push_noted(Insn::Store { dst: FP, off: OPS, src: R6, size: DW }, "ops");
    a.push(Insn::AddImm { dst: node, imm: list.into() });
    a.push_noted(Insn::Store { dst: FP, off: START, src: node, size: DW }, "start");
    a.push(Insn::MovImm { dst: steps, imm: 0 });

    // Each `list` in turn, from the reading task's namespace's own.
    a.place_loop(Label::Walk);
    a.push(Insn::Mov { dst: R6, src: node });
    a.push(Insn::AddImm { dst: R6, imm: (ops - list).into() });
    read(&mut a, &k, R6, R6, DW, "net.ns.ops")?;
    a.push_noted(Insn::Load { dst: R1, src: FP, off: OPS, size: DW }, "ops");
    a.jne(R6, R1, Label::Next);
    a.push(Insn::Mov { dst: R6, src: node });
    a.push(Insn::AddImm { dst: R6, imm: (inum - list).into() });
    read(&mut a, &k, R6, R6, W, "net.ns.inum")?;
    a.push_noted(Insn::Load { dst: R1, src: value, off: COUNT, size: W }, "count");
    a.jgt(R1, MAX as i32 - 1, Label::Out);
    a.push(Insn::Mov { dst: R2, src: R1 });
    a.push(Insn::LshImm { dst: R2, imm: 2 });
    a.push(Insn::Add { dst: R2, src: value });
    a.push_noted(Insn::Store { dst: R2, off: INUMS, src: R6, size: W }, "net.ns.inum -> inums[count]");
    a.push(Insn::AddImm { dst: R1, imm: 1 });
    a.push_noted(Insn::Store { dst: value, off: COUNT, src: R1, size: W }, "count + 1 -> count");
    a.place(Label::Next);
    a.push(Insn::AddImm { dst: steps, imm: 1 });
    a.jgt(steps, MAX as i32, Label::Out);
    a.push(Insn::AddImm { dst: node, imm: next.into() });
    read(&mut a, &k, node, node, DW, "list_head.next")?;
    a.push_noted(Insn::Load { dst: R1, src: FP, off: START, size: DW }, "start");
    a.jeq(node, R1, Label::Complete);
    a.again(Label::Walk);

    a.place(Label::Complete);
    a.push(Insn::MovImm { dst: R1, imm: 1 });
    a.push_noted(Insn::Store { dst: value, off: COMPLETE, src: R1, size: W }, "1 -> complete");
    a.place(Label::Out);
    a.push(Insn::MovImm { dst: R0, imm: 0 });
    a.push(Insn::Exit);
    Program::iterator(WHAT, c"procspy_netns", a, attach_btf_id, attach_to)
}

fn program() -> Result<&'static Program, Refusal> {
    static PROGRAM: OnceLock<Result<Program, Refusal>> = OnceLock::new();
    assembled_once(&PROGRAM, WHAT, assemble)
}

/// The loaded program, linked to its iterator, and its map.
#[derive(Debug)]
pub struct NetnsList {
    link: OwnedFd,
    map: BpfMap,
}

impl NetnsList {
    pub fn load() -> Result<Self, Refusal> {
        let program = program()?;
        let map = BpfMap::create(BPF_MAP_TYPE_ARRAY, 4, VALUE_LEN as u32, 1, c"procspy_netns")
            .map_err(|errno| Refusal::Sys { call: "bpf(BPF_MAP_CREATE)", errno })?;
        let prog = program.load(&[map.as_fd()])?;
        let link = bpf_sys::bpf_link_create(prog.as_fd(), BPF_TRACE_ITER)
            .map_err(|errno| Refusal::Sys { call: "bpf(BPF_LINK_CREATE)", errno })?;
        Ok(Self { link, map })
    }

    /// Every network namespace's inode number into `out` (sorted), if the
    /// walk listed them all; `buf` is scratch.
    pub fn read(&self, buf: &mut Vec<u8>, out: &mut Vec<u64>) -> Result<bool, Errno> {
        let iter = bpf_sys::bpf_iter_create(self.link.as_fd())?;
        // The program writes nothing: the first read ends the iterator.
        let mut byte = [0u8; 1];
        while retry(|| nix::unistd::read(iter.as_fd(), &mut byte))? != 0 {}
        buf.resize(VALUE_LEN, 0);
        self.map.lookup(&0u32.to_ne_bytes(), buf)?;
        let word = |at: usize| u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap_or_default());
        let count = (word(COUNT as usize) as usize).min(MAX);
        out.clear();
        out.extend((0..count).map(|i| u64::from(word(INUMS as usize + 4 * i))));
        out.sort_unstable();
        Ok(word(COMPLETE as usize) == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::test_kernel::{HELPERS, check_listing, small_kernel};

    /// The program for a fixed kernel, as an annotated listing
    /// (`PROCSPY_BLESS=1` rewrites it).
    #[test]
    fn the_program_is_the_committed_listing() {
        let p = assemble(&Btf::parse(&small_kernel(&HELPERS)).unwrap()).unwrap();
        check_listing(std::slice::from_ref(&p), "netns_list.listing", include_str!("netns_list.listing"));
    }

    /// On this kernel: this process's namespace and one `ip netns add`
    /// made (held by its mount alone) are listed. A kernel whose BTF lacks
    /// what the program reads refuses it by name; any other refusal (the
    /// verifier's) fails. The tests run as root.
    #[test]
    fn lists_the_namespaces_of_this_host() {
        use std::os::unix::fs::MetadataExt;
        let list = match NetnsList::load() {
            Ok(list) => list,
            Err(Refusal::Unsupported(why)) if why.contains("has no") => return eprintln!("not on this kernel: {why}"),
            Err(e) => panic!("{e}"),
        };
        let name = format!("procspy-list-{}", std::process::id());
        let ip = |verb| std::process::Command::new("ip").args(["netns", verb, &name]).status().unwrap().success();
        assert!(ip("add"));
        let made = std::fs::metadata(format!("/run/netns/{name}")).map(|m| m.ino());
        let (mut buf, mut all) = (Vec::new(), Vec::new());
        let read = list.read(&mut buf, &mut all);
        assert!(ip("delete"));
        assert_eq!(read, Ok(true));
        let mine = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        for ns in [mine, made.unwrap()] {
            assert!(all.binary_search(&ns).is_ok(), "{ns} not in {all:?}");
        }
    }
}
