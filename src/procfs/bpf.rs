//! Every task's socket fds listed by the kernel itself: a BPF `task_file`
//! iterator whose program writes one record per socket fd, with what the
//! kernel holds of the socket (namespace, addresses, ports, state, uid). It
//! does in one pass what listing `PID/fd` and `stat()`ing each entry does
//! with two syscalls per fd, for about a fifth of the CPU.
//!
//! The program is assembled here, with the field offsets of this kernel's
//! structs read from its BTF, so no compiler or BPF library is needed. Loading it needs `CAP_BPF` and
//! `CAP_PERFMON` (or `CAP_SYS_ADMIN`); callers fall back to `PID/fd` without.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::OnceLock;

use nix::errno::Errno;

use super::sys;
use crate::parse::btf::{Btf, KIND_FUNC, KIND_STRUCT};

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
const STATE: i16 = 30; // u8, then a zero byte
const LPORT: i16 = 32; // u16, host order
const RPORT: i16 = 34; // u16, network order
const QLEN: i16 = 36; // u32, a listener's pending connection requests
const LADDR4: i16 = 40;
const RADDR4: i16 = 44;
const LADDR6: i16 = 48;
const RADDR6: i16 = 64;

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

impl SockRecord {
    pub fn decode(b: &[u8]) -> Self {
        let at = |off: i16, n: usize| &b[off as usize..off as usize + n];
        let u16_ = |off| u16::from_ne_bytes(at(off, 2).try_into().unwrap_or_default());
        let u32_ = |off| u32::from_ne_bytes(at(off, 4).try_into().unwrap_or_default());
        let family = u16_(FAMILY);
        let (mut local_addr, mut remote_addr) = ([0u8; 16], [0u8; 16]);
        if family == AF_INET6 {
            local_addr.copy_from_slice(at(LADDR6, 16));
            remote_addr.copy_from_slice(at(RADDR6, 16));
        } else {
            local_addr[..4].copy_from_slice(at(LADDR4, 4));
            remote_addr[..4].copy_from_slice(at(RADDR4, 4));
        }
        SockRecord {
            inode: u64::from_ne_bytes(at(INODE, 8).try_into().unwrap_or_default()),
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
        }
    }
}

const AF_INET6: u16 = 10;
const IPPROTO_TCP: i32 = 6;
const TCP_LISTEN: i32 = 10;

/// Instruction classes and fields (`linux/bpf_common.h`, `linux/bpf.h`).
const LDX: u8 = 0x01;
const STX: u8 = 0x03;
const JMP: u8 = 0x05;
const ALU64: u8 = 0x07;
const MEM: u8 = 0x60;
const K: u8 = 0x00;
const X: u8 = 0x08;
const ADD: u8 = 0x00;
const MOV: u8 = 0xb0;
const JEQ: u8 = 0x10;
const JNE: u8 = 0x50;
const CALL: u8 = 0x80;
const EXIT: u8 = 0x90;
/// Helpers: `bpf_seq_write`, `bpf_skc_to_tcp_sock`, `bpf_sock_from_file`.
const SEQ_WRITE: i32 = 127;
const SKC_TO_TCP_SOCK: i32 = 137;
const SOCK_FROM_FILE: i32 = 162;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let regs = if cfg!(target_endian = "little") { (src << 4) | dst } else { (dst << 4) | src };
    let [o0, o1] = off.to_ne_bytes();
    let [i0, i1, i2, i3] = imm.to_ne_bytes();
    [code, regs, o0, o1, i0, i1, i2, i3]
}

fn width(size: u32) -> Result<u8, Errno> {
    Ok(match size {
        1 => 0x10,
        2 => 0x08,
        4 => 0x00,
        8 => 0x18,
        _ => return Err(Errno::ENOTSUP),
    })
}

/// A field as the program reads it: offset and width.
#[derive(Clone, Copy)]
struct At(i16, u32);

/// The offset of `names` inside struct `st`, whose last field must be `size` bytes.
fn field(btf: &Btf<'_>, st: &[u8], names: &[&[u8]], size: u32) -> Result<At, Errno> {
    let id = btf.find(KIND_STRUCT, st).ok_or(Errno::ENOTSUP)?;
    let f = btf.path(id, names).ok_or(Errno::ENOTSUP)?;
    if btf.size(f.type_id) != Some(size) {
        return Err(Errno::ENOTSUP);
    }
    Ok(At(i16::try_from(f.byte_offset).map_err(|_| Errno::ENOTSUP)?, size))
}

/// Instructions, and jumps to patch once their labels are placed.
#[derive(Default)]
struct Asm {
    insns: Vec<[u8; 8]>,
    jumps: Vec<(usize, Label)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Label {
    Write,
    Out,
}

impl Asm {
    fn push(&mut self, i: [u8; 8]) {
        self.insns.push(i);
    }
    fn load(&mut self, dst: u8, src: u8, f: At) -> Result<(), Errno> {
        self.push(insn(LDX | MEM | width(f.1)?, dst, src, f.0, 0));
        Ok(())
    }
    /// Stores `src` at record offset `off` (the record is the top of the stack).
    fn store(&mut self, off: i16, src: u8, size: u32) -> Result<(), Errno> {
        self.push(insn(STX | MEM | width(size)?, 10, src, off - RECORD_LEN as i16, 0));
        Ok(())
    }
    fn jump_if(&mut self, op: u8, reg: u8, imm: i32, to: Label) {
        self.jumps.push((self.insns.len(), to));
        self.push(insn(JMP | op | K, reg, 0, 0, imm));
    }
    fn place(&mut self, label: Label) {
        let here = self.insns.len();
        for &(at, _) in self.jumps.iter().filter(|j| j.1 == label) {
            let off = (here - at - 1) as i16;
            self.insns[at][2..4].copy_from_slice(&off.to_ne_bytes());
        }
    }
}

/// The program and the BTF id of the iterator it attaches to.
#[derive(Debug)]
struct Program {
    insns: Vec<[u8; 8]>,
    attach_btf_id: u32,
}

impl Program {
    /// r1 = the context. Skips entries that are not sockets; copies the
    /// socket's fields into a record on the stack (a TCP listener's request
    /// queue through `bpf_skc_to_tcp_sock`) and writes it.
    fn assemble(btf: &Btf<'_>) -> Result<Self, Errno> {
        let attach_btf_id = btf.find(KIND_FUNC, b"bpf_iter_task_file").ok_or(Errno::ENOTSUP)?;
        let ctx = |name: &[u8], size| field(btf, b"bpf_iter__task_file", &[name], size);
        let sk = |names: &[&[u8]], size| field(btf, b"sock", names, size);
        let common = |name: &[u8], size| sk(&[b"__sk_common", name], size);
        let in6 = |name: &[u8]| common(name, 16);
        let mut a = Asm::default();
        a.load(6, 1, ctx(b"meta", 8)?)?;
        a.load(7, 1, ctx(b"task", 8)?)?;
        a.load(8, 1, ctx(b"fd", 4)?)?;
        a.load(9, 1, ctx(b"file", 8)?)?;
        a.jump_if(JEQ, 9, 0, Label::Out);
        a.jump_if(JEQ, 7, 0, Label::Out);
        a.push(insn(ALU64 | MOV | X, 1, 9, 0, 0));
        a.push(insn(JMP | CALL, 0, 0, 0, SOCK_FROM_FILE));
        a.jump_if(JEQ, 0, 0, Label::Out);
        a.load(2, 0, field(btf, b"socket", &[b"sk"], 8)?)?;
        a.jump_if(JEQ, 2, 0, Label::Out);
        a.load(3, 9, field(btf, b"file", &[b"f_inode"], 8)?)?;
        a.load(3, 3, field(btf, b"inode", &[b"i_ino"], 8)?)?;
        a.store(INODE, 3, 8)?;
        a.load(3, 7, field(btf, b"task_struct", &[b"tgid"], 4)?)?;
        a.store(PID, 3, 4)?;
        a.store(FD, 8, 4)?;
        a.push(insn(ALU64 | MOV | X, 7, 2, 0, 0)); // r7 = sk from here on
        a.load(3, 7, common(b"skc_net", 8)?)?; // possible_net_t holds one pointer
        a.load(3, 3, field(btf, b"net", &[b"ns", b"inum"], 4)?)?;
        a.store(NETNS, 3, 4)?;
        a.load(3, 7, sk(&[b"sk_uid", b"val"], 4)?)?;
        a.store(UID, 3, 4)?;
        a.load(3, 7, common(b"skc_family", 2)?)?;
        a.store(FAMILY, 3, 2)?;
        a.load(8, 7, sk(&[b"sk_protocol"], 2)?)?;
        a.store(PROTOCOL, 8, 2)?;
        a.load(3, 7, sk(&[b"sk_type"], 2)?)?;
        a.store(TYPE, 3, 2)?;
        a.load(9, 7, common(b"skc_state", 1)?)?;
        a.store(STATE, 9, 1)?;
        a.load(3, 7, common(b"skc_num", 2)?)?;
        a.store(LPORT, 3, 2)?;
        a.load(3, 7, common(b"skc_dport", 2)?)?;
        a.store(RPORT, 3, 2)?;
        a.load(3, 7, common(b"skc_rcv_saddr", 4)?)?;
        a.store(LADDR4, 3, 4)?;
        a.load(3, 7, common(b"skc_daddr", 4)?)?;
        a.store(RADDR4, 3, 4)?;
        for (name, to) in [(&b"skc_v6_rcv_saddr"[..], LADDR6), (b"skc_v6_daddr", RADDR6)] {
            let At(off, _) = in6(name)?;
            for half in [0, 8] {
                a.load(3, 7, At(off + half, 8))?;
                a.store(to + half, 3, 8)?;
            }
        }
        a.push(insn(ALU64 | MOV | K, 3, 0, 0, 0));
        a.store(QLEN, 3, 4)?;
        a.store(STATE + 1, 3, 1)?;
        a.jump_if(JNE, 8, IPPROTO_TCP, Label::Write);
        a.jump_if(JNE, 9, TCP_LISTEN, Label::Write);
        a.push(insn(ALU64 | MOV | X, 1, 7, 0, 0));
        a.push(insn(JMP | CALL, 0, 0, 0, SKC_TO_TCP_SOCK));
        a.jump_if(JEQ, 0, 0, Label::Write);
        let qlen = field(btf, b"tcp_sock", &[b"inet_conn", b"icsk_accept_queue", b"qlen", b"counter"], 4)?;
        a.load(3, 0, qlen)?;
        a.store(QLEN, 3, 4)?;
        a.place(Label::Write);
        a.load(1, 6, field(btf, b"bpf_iter_meta", &[b"seq"], 8)?)?;
        a.push(insn(ALU64 | MOV | X, 2, 10, 0, 0));
        a.push(insn(ALU64 | ADD | K, 2, 0, 0, -(RECORD_LEN as i32)));
        a.push(insn(ALU64 | MOV | K, 3, 0, 0, RECORD_LEN as i32));
        a.push(insn(JMP | CALL, 0, 0, 0, SEQ_WRITE));
        a.place(Label::Out);
        a.push(insn(ALU64 | MOV | K, 0, 0, 0, 0));
        a.push(insn(JMP | EXIT, 0, 0, 0, 0));
        Ok(Program { insns: a.insns, attach_btf_id })
    }

    /// Assembled once per process: the kernel's layout does not change under it.
    fn get() -> Result<&'static Program, Errno> {
        static PROGRAM: OnceLock<Result<Program, Errno>> = OnceLock::new();
        PROGRAM
            .get_or_init(|| {
                let blob = std::fs::read(VMLINUX_BTF).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
                let btf = Btf::parse(&blob).map_err(|_| Errno::ENOTSUP)?;
                Program::assemble(&btf)
            })
            .as_ref()
            .map_err(|e| *e)
    }
}

/// A loaded iterator program, ready to list every task's fds.
#[derive(Debug)]
pub struct SockIter {
    link: OwnedFd,
}

impl SockIter {
    pub fn load() -> Result<Self, Errno> {
        let program = Program::get()?;
        let prog = sys::bpf_iter_prog_load(&program.insns, c"GPL", program.attach_btf_id)?;
        // The link holds the program; its own fd can go.
        Ok(Self { link: sys::bpf_iter_link_create(prog.as_fd())? })
    }

    /// A fresh pass over every task's socket fds.
    pub fn start(&self) -> Result<SockRecords, Errno> {
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
            match nix::unistd::read(self.fd.as_fd(), &mut buf[len..]) {
                Ok(0) if len == 0 => return Ok(None),
                Ok(0) => return Err(Errno::EIO),
                Ok(n) => len += n,
                // EAGAIN: a long run of tasks without output; the next read goes on.
                Err(Errno::EINTR | Errno::EAGAIN) => continue,
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
        let r = SockRecord::decode(&b);
        assert_eq!((r.inode, r.pid, r.fd, r.netns, r.uid), (77, 1234, 5, 4026531833, 1000));
        assert_eq!((r.family, r.protocol, r.sock_type, r.state, r.pending), (2, 6, 1, 10, 3));
        assert_eq!((r.local_port, r.remote_port), (8080, 443));
        assert_eq!(r.local_addr[..4], [127, 0, 0, 1]);
        assert_eq!(r.local_addr[4..], [0; 12], "a v4 socket's v6 fields are not read");
        assert_eq!(r.remote_addr[..4], [127, 0, 0, 2]);
        put(&mut b, FAMILY, &10u16.to_ne_bytes());
        let r = SockRecord::decode(&b);
        assert_eq!((r.local_addr, r.remote_addr), ([0xfe; 16], [0; 16]));
    }

    #[test]
    fn assembles_for_the_running_kernel() {
        let Ok(blob) = std::fs::read(VMLINUX_BTF) else { return };
        let p = Program::assemble(&Btf::parse(&blob).unwrap()).unwrap();
        assert!(p.attach_btf_id > 0);
        let n = p.insns.len();
        assert!((40..100).contains(&n), "{n} instructions");
        assert_eq!(p.insns[n - 1][0], JMP | EXIT);
        // Every jump lands inside the program, forward.
        for (i, ins) in p.insns.iter().enumerate() {
            let op = ins[0];
            if op & 0x07 == JMP && op & 0xf0 != CALL && op & 0xf0 != EXIT {
                let off = i16::from_ne_bytes([ins[2], ins[3]]);
                assert!(off > 0 && i + 1 + (off as usize) < n, "jump at {i}: {off}");
            }
        }
    }

    #[test]
    fn a_kernel_without_the_iterator_is_refused() {
        let empty = [0x9fu8, 0xeb, 1, 0, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        let btf = Btf::parse(&empty).unwrap();
        assert_eq!(Program::assemble(&btf).unwrap_err(), Errno::ENOTSUP);
    }
}
