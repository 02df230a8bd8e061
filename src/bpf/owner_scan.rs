//! The owner scan: every task's socket fds listed by the kernel itself, a
//! `task_file` iterator whose program writes a record for each socket fd a
//! pass can use, with what the kernel holds of the socket (namespace,
//! addresses, ports, state, uid). It does in one pass what listing `PID/fd`
//! and `stat()`ing each entry does with two syscalls per fd, for about a
//! fifth of the CPU. Loading it needs `CAP_BPF` and `CAP_PERFMON` (or
//! `CAP_SYS_ADMIN`); callers fall back to `PID/fd` without.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::OnceLock;

use nix::errno::Errno;

use super::Refusal;
use super::asm::Size::{B, DW, H, W};
use super::asm::{Asm, FP, Helper, Insn, R0, R1, R2, R3, R4, R6, R7, R8, R9, Reg, Size, Slot};
use super::ends::EndSlots;
use super::kernel::Kernel;
use super::load::{Program, assembled_once};
use super::netns_list::{self, Labels, Walk};
use crate::parse::btf::Btf;
use crate::parse::kernel::{Family, Protocol, TcpState};
use crate::procfs::bpf_sys::{self, BPF_MAP_TYPE_ARRAY, BPF_TRACE_ITER, BpfMap};
use crate::procfs::{SockRecord, retry};

/// What the messages call it.
const WHAT: &str = "the BPF owner scan";

/// The record: one per socket fd, native byte order, built at the top of
/// the program's stack; the program stores by these slots and `Record`
/// reads by them.
pub(crate) const RECORD_LEN: usize = 80;
const INODE: Slot = Slot::new("inode", 0, DW);
/// The holder's tgid.
const PID: Slot = Slot::new("pid", 8, W);
const FD: Slot = Slot::new("fd", 12, W);
/// The socket's namespace's inode number.
const NETNS: Slot = Slot::new("netns", 16, W);
const UID: Slot = Slot::new("uid", 20, W);
const FAMILY: Slot = Slot::new("family", 24, H);
const PROTOCOL: Slot = Slot::new("protocol", 26, H);
const TYPE: Slot = Slot::new("type", 28, H);
const STATE: Slot = Slot::new("state", 30, B);
/// `SOCKET`, or `TALLY` for the pass's last record.
const KIND: Slot = Slot::new("kind", 31, B);
/// The socket's ends; `PENDING` sits between the ports and the addresses.
const ENDS: EndSlots = EndSlots::at(32);
/// A TCP listener's pending connection requests.
const PENDING: Slot = Slot::new("pending", 36, W);
/// In the tally record: the socket fds the program passed over.
const PASSED_OVER: Slot = Slot::new("passed_over", 0, DW);
const SOCKET: i32 = 0;
const TALLY: i32 = 1;

/// The tally map: two `u64`s keyed by a `u32`, map 0 of the program: at 0
/// the socket fds a pass passed over, at 1 whether it asks every socket
/// where it lives (`ASK_ALL`). Its key sits below the record, and below it
/// a sock kept across a call.
const TALLY_MAP: i32 = 0;
const TALLY_KEY: i16 = -(RECORD_LEN as i16) - 8;
const PASSED: i32 = 0;
const ASK_ALL: i32 = 1;
const SK_KEPT: i16 = TALLY_KEY - 8;

/// The namespace list's map (`netns_list.rs`), map 1, and its step's two
/// stack slots, below the rest.
const NETNS_MAP: i32 = 1;
const WALK_SCRATCH: i16 = SK_KEPT - 8;

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
    /// `b`: `RECORD_LEN` bytes as the program wrote them.
    pub fn decode(b: &[u8]) -> Self {
        if KIND.read(b) == TALLY as u64 {
            return Record::Tally { passed_over: PASSED_OVER.read(b) };
        }
        let family = FAMILY.read(b) as u16;
        Record::Socket(SockRecord {
            inode: INODE.read(b),
            pid: PID.read(b) as u32 as i32,
            fd: FD.read(b) as u32 as i32,
            netns: NETNS.read(b),
            uid: UID.read(b) as u32,
            family,
            protocol: PROTOCOL.read(b) as u16,
            sock_type: TYPE.read(b) as u16,
            state: STATE.read(b) as u8,
            ends: ENDS.read(b, Family::of_af(family) == Some(Family::Inet6)),
            pending: PENDING.read(b) as u32,
        })
    }
}

/// Where a jump goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Label {
    /// The namespace list's step (`netns_list.rs`), and the fd after it.
    WalkStep,
    WalkNext,
    WalkIncomplete,
    Fd,
    /// The call after the last fd: the tally record.
    Stop,
    /// A socket whose sock is read.
    Sock,
    /// An AF_INET or AF_INET6 socket: is it TCP or UDP?
    Inet,
    /// Any other socket: is its namespace its holder's?
    Other,
    /// A socket the pass can use: its record.
    Record,
    /// One of no use to the pass: counted.
    PassOver,
    Write,
    Out,
}

/// `r0` = the tally map's value at `key`, or on to `Out` (it is never missing).
fn tally(a: &mut Asm<Label>, lookup: Helper, key: i32) {
    a.push(Insn::MovImm { dst: R1, imm: key });
    a.push_noted(Insn::Store { dst: FP, off: TALLY_KEY, src: R1, size: W }, format!("{key} -> key"));
    a.push(Insn::Mov { dst: R2, src: FP });
    a.push(Insn::AddImm { dst: R2, imm: TALLY_KEY.into() });
    a.load_map(R1, TALLY_MAP, "tally");
    a.call(lookup);
    a.jeq(R0, 0, Label::Out);
}

/// r1 = the context. Skips entries that are not sockets; copies the fields
/// of a socket the pass can use into a record on the stack and writes it: a
/// TCP or UDP socket (its table line, its owner), or any socket in a
/// namespace other than its holder task's (how a namespace no process is in
/// is found; a task that is exiting has no namespaces left, and its sockets
/// are written too). The others (a unix socket in its holder's namespace,
/// say) are only counted, in the tally map, and the call after the last fd
/// writes that count. A socket of a family other than AF_INET and AF_INET6
/// is asked where it lives only where the pass asks every socket (`ASK_ALL`,
/// when the kernel's namespaces are not all found otherwise): its family is
/// read from its operations (one static table per family), its sock not at
/// all, which spares a cache miss per unix socket. Only direct loads through
/// pointers the verifier hands out, which every kernel allows even where it
/// calls them untrusted (a NULL one reads as 0); a TCP listener's request
/// queue lies past `struct sock`, so it is read with `bpf_probe_read_kernel`.
fn assemble(btf: &Btf<'_>) -> Result<Program, Refusal> {
    let k = Kernel::new(btf, WHAT);
    let attach_to = "bpf_iter_task_file";
    let attach_btf_id = k.func(attach_to, "task_file iterator")?;
    let ctx = |name, size| k.field("bpf_iter__task_file", &[name], size);
    let sock = |path: &[&str], size| k.field("sock", path, size);
    let common = |name, size| sock(&["__sk_common", name], size);
    let net_inum = k.field("net", &["ns", "inum"], 4)?;
    let sock_from_file = k.helper("sock_from_file")?; // Linux 5.11
    let probe_read_kernel = k.helper("probe_read_kernel")?;
    let seq_write = k.helper("seq_write")?;
    let map_lookup_elem = k.helper("map_lookup_elem")?;
    let mut a = Asm::new(RECORD_LEN);

    let labels =
        Labels { done: Label::Fd, step: Label::WalkStep, next: Label::WalkNext, incomplete: Label::WalkIncomplete };
    netns_list::step(&mut a, &k, (NETNS_MAP, R9, WALK_SCRATCH), labels)?;
    let (meta, task, fd, file) = (R6, R7, R8, R9);
    a.load(meta, R1, &ctx("meta", 8)?);
    a.load(task, R1, &ctx("task", 8)?);
    a.load(fd, R1, &ctx("fd", 4)?);
    a.load(file, R1, &ctx("file", 8)?);
    a.jeq(file, 0, Label::Stop);
    a.jeq(task, 0, Label::Out);
    a.push(Insn::Mov { dst: R1, src: file });
    a.call(sock_from_file);
    let socket = R0;
    a.jeq(socket, 0, Label::Out);
    let (sk, netns, scratch) = (R2, R3, R4);
    a.load(sk, socket, &k.field("socket", &["sk"], 8)?);
    a.jeq(sk, 0, Label::Out);
    let family = scratch;
    a.load(family, socket, &k.field("socket", &["ops"], 8)?);
    a.load(family, family, &k.field("proto_ops", &["family"], 4)?);
    a.jeq(family, i32::from(Family::Inet.af()), Label::Sock);
    a.jeq(family, i32::from(Family::Inet6.af()), Label::Sock);
    a.push_noted(Insn::Store { dst: FP, off: SK_KEPT, src: sk, size: DW }, "sk");
    tally(&mut a, map_lookup_elem, ASK_ALL);
    a.push_noted(Insn::Load { dst: R0, src: R0, off: 0, size: DW }, "ask all");
    a.jeq(R0, 0, Label::PassOver);
    a.push_noted(Insn::Load { dst: sk, src: FP, off: SK_KEPT, size: DW }, "sk");
    a.place(Label::Sock);
    a.load(netns, sk, &common("skc_net", 8)?); // possible_net_t holds one pointer
    a.load(netns, netns, &net_inum);
    let family = scratch;
    a.load(family, sk, &common("skc_family", 2)?);
    a.jeq(family, i32::from(Family::Inet.af()), Label::Inet);
    a.jne(family, i32::from(Family::Inet6.af()), Label::Other);
    a.place(Label::Inet);
    let protocol = scratch;
    a.load(protocol, sk, &sock(&["sk_protocol"], 2)?);
    a.jeq(protocol, i32::from(Protocol::Tcp.ipproto()), Label::Record);
    a.jeq(protocol, i32::from(Protocol::Udp.ipproto()), Label::Record);
    a.place(Label::Other);
    let task_netns = scratch;
    a.load(task_netns, task, &k.field("task_struct", &["nsproxy"], 8)?);
    a.load(task_netns, task_netns, &k.field("nsproxy", &["net_ns"], 8)?);
    a.load(task_netns, task_netns, &net_inum);
    a.jne(netns, task_netns, Label::Record);
    a.place(Label::PassOver);
    tally(&mut a, map_lookup_elem, PASSED);
    a.push(Insn::MovImm { dst: R1, imm: 1 });
    a.push_noted(Insn::AtomicAdd { dst: R0, off: 0, src: R1, size: DW }, "tally += 1");
    a.ja(Label::Out);

    a.place(Label::Stop);
    // The tally record: zeros, its kind and its count.
    a.push(Insn::MovImm { dst: R3, imm: 0 });
    for at in (0..RECORD_LEN).step_by(8) {
        a.push_noted(Insn::Store { dst: FP, off: a.record_off(at), src: R3, size: DW }, "0 -> record");
    }
    tally(&mut a, map_lookup_elem, PASSED);
    a.push_noted(Insn::Load { dst: R3, src: R0, off: 0, size: DW }, "tally");
    a.store(PASSED_OVER, R3);
    a.push(Insn::MovImm { dst: R3, imm: TALLY });
    a.store(KIND, R3);
    a.ja(Label::Write);

    a.place(Label::Record);
    a.store(NETNS, netns);
    a.load(R3, file, &k.field("file", &["f_inode"], 8)?);
    a.load(R3, R3, &k.field("inode", &["i_ino"], 8)?);
    a.store(INODE, R3);
    a.load(R3, task, &k.field("task_struct", &["tgid"], 4)?);
    a.store(PID, R3);
    a.store(FD, fd);
    // The file, the task and the fd are done with: their registers, which
    // survive calls, hold the sock, its protocol and its state.
    let (sk, protocol, state) = (copy(&mut a, R9, sk), R8, R7);
    a.load(R3, sk, &sock(&["sk_uid", "val"], 4)?);
    a.store(UID, R3);
    a.load(R3, sk, &common("skc_family", 2)?);
    a.store(FAMILY, R3);
    a.load(protocol, sk, &sock(&["sk_protocol"], 2)?);
    a.store(PROTOCOL, protocol);
    a.load(R3, sk, &sock(&["sk_type"], 2)?);
    a.store(TYPE, R3);
    a.load(state, sk, &common("skc_state", 1)?);
    a.store(STATE, state);
    ENDS.store(&mut a, &k, sk, R3)?;
    a.push(Insn::MovImm { dst: R3, imm: 0 });
    a.store(PENDING, R3);
    a.push(Insn::MovImm { dst: R3, imm: SOCKET });
    a.store(KIND, R3);
    // Only a TCP listener has a request queue; its sock is a tcp_sock.
    a.jne(protocol, i32::from(Protocol::Tcp.ipproto()), Label::Write);
    a.jne(state, i32::from(TcpState::Listen.number()), Label::Write);
    let qlen = k.field("tcp_sock", &["inet_conn", "icsk_accept_queue", "qlen", "counter"], 4)?;
    a.record_addr(R1, PENDING.off);
    a.push(Insn::MovImm { dst: R2, imm: 4 });
    a.push(Insn::Mov { dst: R3, src: sk });
    a.push_noted(Insn::AddImm { dst: R3, imm: qlen.off.into() }, qlen.path);
    a.call(probe_read_kernel);

    a.place(Label::Write);
    a.load(R1, meta, &k.field("bpf_iter_meta", &["seq"], 8)?);
    a.record_addr(R2, 0);
    a.push(Insn::MovImm { dst: R3, imm: RECORD_LEN as i32 });
    a.call(seq_write);
    a.place(Label::Out);
    a.push(Insn::MovImm { dst: R0, imm: 0 });
    a.push(Insn::Exit);
    Program::iterator(WHAT, c"procspy_fds", a, attach_btf_id, attach_to)
}

/// `dst = src`; `dst` from here on.
fn copy(a: &mut Asm<Label>, dst: Reg, src: Reg) -> Reg {
    a.push(Insn::Mov { dst, src });
    dst
}

fn program() -> Result<&'static Program, Refusal> {
    static PROGRAM: OnceLock<Result<Program, Refusal>> = OnceLock::new();
    assembled_once(&PROGRAM, WHAT, assemble)
}

/// The tally map.
fn tally_map() -> Result<BpfMap, Errno> {
    BpfMap::create(BPF_MAP_TYPE_ARRAY, 4, Size::DW.bytes() as u32, 2, c"procspy_tally")
}

/// The loaded program, linked to its iterator, its tally map and its
/// namespace list's.
#[derive(Debug)]
pub struct SockIter {
    link: OwnedFd,
    tally: BpfMap,
    walk: Walk,
}

impl SockIter {
    /// Loads the program and links it to its iterator.
    pub fn load() -> Result<Self, Refusal> {
        let program = program()?;
        let map =
            |made: Result<BpfMap, Errno>| made.map_err(|errno| Refusal::Sys { call: "bpf(BPF_MAP_CREATE)", errno });
        let (tally, walk) = (map(tally_map())?, Walk::new(map(netns_list::map())?));
        let prog = program.load(&[tally.as_fd(), walk.map().as_fd()])?;
        // The link holds the program; its own fd can go.
        let link = bpf_sys::bpf_link_create(prog.as_fd(), BPF_TRACE_ITER)
            .map_err(|errno| Refusal::Sys { call: "bpf(BPF_LINK_CREATE)", errno })?;
        Ok(Self { link, tally, walk })
    }

    /// A fresh pass over every task's socket fds, its tally at zero;
    /// `ask_all`: every socket is asked where it lives, not only TCP and
    /// UDP ones (which a pass that has not found every namespace needs).
    pub fn start(&self, ask_all: bool) -> Result<SockRecords, Errno> {
        self.tally.update(&PASSED.to_ne_bytes(), &0u64.to_ne_bytes())?;
        self.tally.update(&ASK_ALL.to_ne_bytes(), &u64::from(ask_all).to_ne_bytes())?;
        self.walk.clear()?;
        Ok(SockRecords { fd: bpf_sys::bpf_iter_create(self.link.as_fd())?, tail_at: 0, tail_len: 0 })
    }

    /// Every network namespace's inode number into `out` (sorted), if the
    /// last pass's walk of the kernel's list came back to where it started
    /// (`netns_list.rs`); `buf` is scratch.
    pub fn netns_list(&self, buf: &mut Vec<u8>, out: &mut Vec<u64>) -> Result<bool, Errno> {
        self.walk.read(buf, out)
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
            match retry(|| nix::unistd::read(self.fd.as_fd(), &mut buf[len..])) {
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
    use crate::bpf::load::VMLINUX_BTF;
    use crate::bpf::test_kernel::{HELPERS, check_jumps, check_listing, small_kernel};
    use crate::parse::btf::Kind;

    #[test]
    fn decodes_both_families_and_the_tally() {
        let mut b = [0u8; RECORD_LEN];
        let put = |b: &mut [u8; RECORD_LEN], s: Slot, v: &[u8]| b[s.off..s.off + v.len()].copy_from_slice(v);
        put(&mut b, INODE, &77u64.to_ne_bytes());
        put(&mut b, PID, &1234u32.to_ne_bytes());
        put(&mut b, FD, &5u32.to_ne_bytes());
        put(&mut b, NETNS, &4026531833u32.to_ne_bytes());
        put(&mut b, UID, &1000u32.to_ne_bytes());
        put(&mut b, FAMILY, &2u16.to_ne_bytes());
        put(&mut b, PROTOCOL, &6u16.to_ne_bytes());
        put(&mut b, TYPE, &1u16.to_ne_bytes());
        put(&mut b, STATE, &[10]);
        put(&mut b, ENDS.local_port, &8080u16.to_ne_bytes());
        put(&mut b, ENDS.remote_port, &443u16.to_be_bytes());
        put(&mut b, PENDING, &3u32.to_ne_bytes());
        put(&mut b, ENDS.local_addr4, &[127, 0, 0, 1]);
        put(&mut b, ENDS.remote_addr4, &[127, 0, 0, 2]);
        put(&mut b, ENDS.local_addr6[0], &[0xfe; 16]);
        let Record::Socket(r) = Record::decode(&b) else { panic!("a socket") };
        assert_eq!((r.inode, r.pid, r.fd, r.netns, r.uid), (77, 1234, 5, 4026531833, 1000));
        assert_eq!((r.family, r.protocol, r.sock_type, r.state, r.pending), (2, 6, 1, 10, 3));
        assert_eq!((r.ends.local_port, r.ends.remote_port), (8080, 443));
        assert_eq!(r.ends.local_addr[..4], [127, 0, 0, 1]);
        assert_eq!(r.ends.local_addr[4..], [0; 12], "a v4 socket's v6 fields are not read");
        assert_eq!(r.ends.remote_addr[..4], [127, 0, 0, 2]);
        put(&mut b, FAMILY, &10u16.to_ne_bytes());
        let Record::Socket(r) = Record::decode(&b) else { panic!("a socket") };
        assert_eq!((r.ends.local_addr, r.ends.remote_addr), ([0xfe; 16], [0; 16]));
        put(&mut b, KIND, &[TALLY as u8]);
        assert_eq!(Record::decode(&b), Record::Tally { passed_over: 77 });
    }

    /// The program for a fixed kernel, as an annotated listing: a change to
    /// what it does shows up as a diff of `owner_scan.listing`.
    /// `PROCSPY_BLESS=1` rewrites it.
    #[test]
    fn the_program_is_the_committed_listing() {
        let p = assemble(&Btf::parse(&small_kernel(&HELPERS)).unwrap()).unwrap();
        check_listing(std::slice::from_ref(&p), "owner_scan.listing", include_str!("owner_scan.listing"));
        assert_eq!(p.attach_btf_id, 6);
    }

    /// On this kernel, where it runs the scan (it needs CAP_BPF and
    /// CAP_PERFMON; the tests run as root): a pass's walk of the kernel's
    /// list of namespaces comes back to where it started, and has this
    /// process's namespace and one `ip netns add` made (held by its mount
    /// alone).
    #[test]
    fn a_pass_lists_the_namespaces_of_this_host() {
        use std::os::unix::fs::MetadataExt;
        let iter = match SockIter::load() {
            Ok(iter) => iter,
            Err(Refusal::Unsupported(why)) if why.contains("has no") => return eprintln!("not on this kernel: {why}"),
            Err(e) => panic!("{e}"),
        };
        let name = format!("procspy-list-{}", std::process::id());
        let ip = |verb| std::process::Command::new("ip").args(["netns", verb, &name]).status().unwrap().success();
        assert!(ip("add"));
        let made = std::fs::metadata(format!("/run/netns/{name}")).map(|m| m.ino());
        let mut records = iter.start(false).unwrap();
        let mut buf = vec![0u8; 64 * RECORD_LEN];
        while records.read(&mut buf).unwrap().is_some() {}
        let (mut value, mut all) = (Vec::new(), Vec::new());
        let listed = iter.netns_list(&mut value, &mut all);
        assert!(ip("delete"));
        assert_eq!(listed, Ok(true), "{all:?}");
        let mine = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        for ns in [mine, made.unwrap()] {
            assert!(all.binary_search(&ns).is_ok(), "{ns} not in {all:?}");
        }
    }

    #[test]
    fn assembles_wherever_the_btf_has_what_it_reads() {
        let Ok(blob) = std::fs::read(VMLINUX_BTF) else {
            assert!(matches!(program(), Err(Refusal::Unsupported(m)) if m.contains("no BTF")));
            return;
        };
        let btf = Btf::parse(&blob).unwrap();
        let has = btf.find(Kind::Func, b"bpf_iter_task_file").is_some()
            && HELPERS[..4].iter().all(|h| btf.enumerator(b"bpf_func_id", h.0.as_bytes()).is_some());
        match assemble(&btf) {
            Ok(p) => {
                assert!(has);
                check_jumps(&p);
                assert!((100..220).contains(&p.code.insns().len()), "{p}");
            }
            Err(e) => assert!(!has, "{e}"),
        }
    }

    #[test]
    fn a_kernel_without_what_it_needs_is_refused_by_name() {
        let without = |name: &str| {
            let helpers: Vec<_> = HELPERS[..4].iter().copied().filter(|h| h.0 != name).collect();
            assemble(&Btf::parse(&small_kernel(&helpers)).unwrap()).unwrap_err().to_string()
        };
        // Linux 5.10 has the iterator but not bpf_sock_from_file.
        let e = without("BPF_FUNC_sock_from_file");
        assert!(e.contains("BPF_FUNC_sock_from_file") && e.contains("kernel") && e.contains(WHAT), "{e}");
        assert!(without("BPF_FUNC_probe_read_kernel").contains("BPF_FUNC_probe_read_kernel"));
        let empty = [0x9fu8, 0xeb, 1, 0, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        let e = assemble(&Btf::parse(&empty).unwrap()).unwrap_err();
        assert!(e.to_string().contains("bpf_iter_task_file"), "{e}");
    }
}
