//! The tracer: programs on the kernel's socket hooks that write an event
//! for each connect, accept, listen, close, TCP state change and first UDP
//! send, with the process that did it, into a BPF ring buffer the library
//! maps. Like the owner scan, each is assembled from the running kernel's
//! BTF; each hook loads and attaches on its own, and one the kernel refuses
//! is reported by name while the others run (the state hook, which sees
//! every TCP connection, is the one the tracer can't run without).
//!
//! The owner is taken only where the hook runs in the acting process (a
//! connect, a listen, an accept, a close, a UDP connect or send): the
//! current task's thread group, its leader's name and start. A state change
//! that runs in softirq (a handshake completing, a reset, a timer) carries
//! the owner learned earlier for that socket, from the owners map (keyed by
//! socket cookie, LRU, bounded), or none; never the task it interrupted.
//! A record the ring has no room for is counted in a per-CPU map.
//!
//! The kernel runs no tracing program inside itself: a state change in a
//! softirq that interrupted the state hook's program passes that program
//! over (`recursion_misses`). A second program on the same tracepoint, the
//! nested hook, writes exactly those, and counts them, so what was lost is
//! what the kernel passed over less what the second caught. It runs after
//! the state hook's program for every state change, and learns from a
//! mark the first leaves whether that one ran for it:
//! - while the state hook's program runs, its mark says so: a state change
//!   that comes then is one it was passed over for;
//! - an interrupt's state changes do not nest in one another, and the kernel
//!   passes the program over only for a state change that interrupted it
//!   (in the few instructions the kernel runs around it too, where the first
//!   mark is not set yet, or no more): so where the state hook's program
//!   ran for a state change in an interrupt, it marks which one, and the
//!   nested hook, in the same interrupt next, takes the mark back or, not
//!   finding its own there, writes the event. A program tells an interrupt
//!   by the stack it runs on: not its task's;
//! - a task's state changes do not nest either, but a task may be preempted
//!   around the state hook's program (Linux 7.0 runs a tracepoint's
//!   programs preemptibly), passing it over for another task's, or move to
//!   another CPU between the two programs: so for a task's state change the
//!   mark is the task's own (task local storage), where the kernel has it.
//!
//! The other hooks run in tasks only; where each task keeps a mark, each
//! has a second program (its catcher) that writes what the kernel passed
//! the first over for, by the same per-task mark.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, OnceLock};

use nix::errno::Errno;

use super::Refusal;
use super::asm::Size::{B, DW, H, W};
use super::asm::{Asm, FP, Field, Helper, Insn, R0, R1, R2, R3, R4, R6, R7, R8, R9, Reg, Slot};
use super::ends::EndSlots;
use super::kernel::Kernel;
use super::load::{Program, with_vmlinux};
use crate::parse::btf::{Btf, Kind};
use crate::parse::kernel::{Family, Protocol, TcpState};
use crate::procfs::Ends;
use crate::procfs::bpf_sys::{
    self, BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_LRU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_RINGBUF,
    BPF_PROG_TYPE_TRACING, BPF_TRACE_FENTRY, BPF_TRACE_FEXIT, BPF_TRACE_RAW_TP, BpfMap, Ring, RingNext,
};

/// What the messages call it.
const WHAT: &str = "the BPF tracer";

/// The event record, native byte order, built at the top of the stack.
pub(crate) const EVENT_LEN: usize = 120;
/// `CLOCK_BOOTTIME`, ns.
const TIME: Slot = Slot::new("time", 0, DW);
const COOKIE: Slot = Slot::new("cookie", 8, DW);
/// The owner, as the owners map keeps it: `OWNER_LEN` bytes from here.
const OWNER: usize = 16;
const OWNER_LEN: usize = 32;
/// The group leader's `start_boottime`, ns.
const START: Slot = Slot::new("owner.start", 16, DW);
/// The thread group id; 0: no owner.
const PID: Slot = Slot::new("owner.pid", 24, W);
const COMM: [Slot; 2] = [Slot::new("owner.comm[0..8]", 32, DW), Slot::new("owner.comm[8..16]", 40, DW)];
const INODE: Slot = Slot::new("inode", 48, DW);
const NETNS: Slot = Slot::new("netns", 56, W);
const UID: Slot = Slot::new("uid", 60, W);
const KIND: Slot = Slot::new("kind", 64, B);
const STATE: Slot = Slot::new("state", 65, B);
const OLD_STATE: Slot = Slot::new("old_state", 66, B);
const PROTOCOL: Slot = Slot::new("protocol", 67, B);
const FAMILY: Slot = Slot::new("family", 68, H);
const ENDS: EndSlots = EndSlots::at(72);

/// Below the record: a `sockaddr_in6`'s 28 bytes read from a send's
/// `msghdr`, and the key (0) of the one-entry maps.
const SOCKADDR: i16 = -(EVENT_LEN as i16) - 32;
const SOCKADDR_LEN: i32 = 28;
const KEY: i16 = SOCKADDR - 8;
/// The state hook's pointer to its CPU's mark, for its way out.
const MARK_AT: i16 = KEY - 8;

/// The programs' maps, by index.
const RING: i32 = 0;
const OWNERS: i32 = 1;
/// Per CPU, by key: records the ring had no room for, events the nested
/// hook caught, the state hook's mark, and events the catchers caught. Each value is a count (or, in
/// the mark, whether the state hook's program runs), and, in the mark, the
/// state change in an interrupt the state hook's program ran for last: its
/// sock (0: none) and states; and the sock of a task's state change it ran
/// for but could not mark in the task's storage (none yet, and the kernel
/// made none).
const COUNTS: i32 = 2;
const COUNT_LEN: usize = 32;
const RAN_SK: i16 = 8;
const RAN_STATES: i16 = 16;
const UNMARKED: i16 = 24;
const LOST: i32 = 0;
const CAUGHT: i32 = 1;
const MARK: i32 = 2;
const CATCHES: i32 = 3;
/// The library's own tgid (entry 0).
const SELF: i32 = 3;
/// Per task, where the kernel lets a program keep something for a task
/// (task local storage): the state change in a task the state hook's
/// program ran for last, as the counts map's mark keeps one in an interrupt.
const TASKS: i32 = 4;
const TASK_MARK_LEN: u32 = 16;
const BPF_LOCAL_STORAGE_GET_F_CREATE: i32 = 1;

/// Bytes waiting in the ring at which a record wakes its reader
/// (`BPF_RB_FORCE_WAKEUP`); the others do not (`BPF_RB_NO_WAKEUP`) and a
/// waiting reader looks every 5 ms instead. A wake-up per record, the
/// kernel's default for a reader that keeps up, cost a loopback connection
/// half as much again in CPU (benches/RESULTS.md).
const WAKE_AT: i32 = 16 << 10;
/// What one record takes of the ring: its header and itself.
const RECORD_SPAN: i32 = 8 + EVENT_LEN as i32;
const BPF_RB_NO_WAKEUP: i32 = 1;
const BPF_RB_FORCE_WAKEUP: i32 = 2;
const BPF_RB_AVAIL_DATA: i32 = 0;
/// Sockets whose owner the owners map keeps at most: the least recently
/// used go first.
const OWNERS_MAX: u32 = 65_536;

/// What an event tells, as its record's `kind` holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// TCP: CLOSE -> SYN_SENT, in the connecting process. UDP: a connect.
    Connect = 1,
    /// A TCP connection accepted, in the accepting process.
    Accept = 2,
    /// The process closed it (its last fd): TCP, or a UDP socket seen before.
    Close = 3,
    /// A UDP socket's first send.
    Send = 4,
    /// Any other TCP state change; its owner is the one learned earlier.
    State = 5,
    /// TCP: CLOSE -> LISTEN, in the listening process.
    Listen = 6,
}

impl EventKind {
    const ALL: [EventKind; 6] =
        [EventKind::Connect, EventKind::Accept, EventKind::Close, EventKind::Send, EventKind::State, EventKind::Listen];

    fn of(n: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as u8 == n)
    }
}

/// Where a program attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// `tp_btf/inet_sock_set_state`: every TCP state change.
    State,
    /// The same tracepoint: a state change that came while the state
    /// hook's program ran on that CPU, which the kernel passed over.
    Nested,
    /// `fentry/security_sock_graft`: an accept grafting its new sock onto
    /// the new socket, past any wait for a connection. Not `fexit` of
    /// `inet_csk_accept`: the kernel skips the `fexit` programs of a task
    /// that slept in the function while its trampoline was rebuilt (any
    /// tracer attaching or detaching there), so an accept that waited
    /// through that went unseen.
    Accept,
    /// `fentry/tcp_close`.
    TcpClose,
    /// `fexit/udp_sendmsg`, `fexit/udpv6_sendmsg`.
    UdpSend,
    Udp6Send,
    /// `fexit/__ip4_datagram_connect`, `fexit/__ip6_datagram_connect`.
    UdpConnect,
    Udp6Connect,
    /// `fentry/udp_destroy_sock`, `fentry/udpv6_destroy_sock`.
    UdpRelease,
    Udp6Release,
}

impl Hook {
    /// The state hook first: the nested one's events are those it missed.
    pub const ALL: [Hook; 10] = [
        Hook::State,
        Hook::Nested,
        Hook::Accept,
        Hook::TcpClose,
        Hook::UdpSend,
        Hook::Udp6Send,
        Hook::UdpConnect,
        Hook::Udp6Connect,
        Hook::UdpRelease,
        Hook::Udp6Release,
    ];

    /// The kernel function (or tracepoint) it attaches to.
    pub fn attach_to(self) -> &'static str {
        match self {
            Hook::State | Hook::Nested => "inet_sock_set_state",
            Hook::Accept => "security_sock_graft",
            Hook::TcpClose => "tcp_close",
            Hook::UdpSend => "udp_sendmsg",
            Hook::Udp6Send => "udpv6_sendmsg",
            Hook::UdpConnect => "__ip4_datagram_connect",
            Hook::Udp6Connect => "__ip6_datagram_connect",
            Hook::UdpRelease => "udp_destroy_sock",
            Hook::Udp6Release => "udpv6_destroy_sock",
        }
    }

    /// Its program's name in the kernel.
    fn name(self) -> &'static CStr {
        match self {
            Hook::State => c"procspy_state",
            Hook::Nested => c"procspy_nested",
            Hook::Accept => c"procspy_accept",
            Hook::TcpClose => c"procspy_close",
            Hook::UdpSend => c"procspy_udp_send",
            Hook::Udp6Send => c"procspy_udp6_snd",
            Hook::UdpConnect => c"procspy_udp_conn",
            Hook::Udp6Connect => c"procspy_udp6_con",
            Hook::UdpRelease => c"procspy_udp_rel",
            Hook::Udp6Release => c"procspy_udp6_rel",
        }
    }

    /// `tp_btf`, `fentry` or `fexit`.
    fn attach_type(self) -> u32 {
        match self {
            Hook::State | Hook::Nested => BPF_TRACE_RAW_TP,
            Hook::Accept | Hook::TcpClose | Hook::UdpRelease | Hook::Udp6Release => BPF_TRACE_FENTRY,
            _ => BPF_TRACE_FEXIT,
        }
    }

    /// How the kind of hook and where it attaches read, for messages.
    pub fn describe(self) -> String {
        let how = match self.attach_type() {
            BPF_TRACE_RAW_TP => "tp_btf",
            BPF_TRACE_FENTRY => "fentry",
            _ => "fexit",
        };
        let nested = if self == Hook::Nested { " (nested)" } else { "" };
        format!("{how}/{}{nested}", self.attach_to())
    }

    /// What its programs' mark names besides the socket: above any state
    /// hook's 16 x old state + new state.
    fn tag(self) -> i32 {
        0x100 + Hook::ALL.iter().position(|h| *h == self).unwrap_or_default() as i32
    }

    fn protocol(self) -> Protocol {
        match self {
            Hook::State | Hook::Nested | Hook::Accept | Hook::TcpClose => Protocol::Tcp,
            _ => Protocol::Udp,
        }
    }
}

/// What a hook's program is to the other on its hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// It marks no task (a kernel without task local storage).
    Alone,
    /// It marks the task with what it ran for (the nested hook's takes the
    /// state hook's mark back).
    Marking,
    /// The second program on a hook other than the state hook's: it goes
    /// on only where the first was passed over.
    Catcher,
}

/// Where a jump goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Label {
    /// A socket with no `struct socket` (not yet accepted, or orphaned): no inode.
    NoInode,
    /// Not a connection's birth on a clone of its listener.
    Born,
    Connect,
    Listen,
    /// A close: the owner is the process the hook runs in, unless it is
    /// the library's own.
    Closing,
    /// The owner is the process the hook runs in.
    Acting,
    /// The owner is the one the owners map keeps, if any.
    Learned,
    /// The owners map learns the acting owner.
    Update,
    /// A connect or a listen: a socket nothing acted on before.
    Unknown,
    /// The record is complete: to the ring.
    Emit,
    /// This record crosses the mark: it wakes the reader.
    Wake,
    /// Whether to wake the reader is decided.
    Output,
    /// Written, or counted lost.
    Sent,
    /// A send's destination is the socket's own (connected), or unreadable.
    SockAddr,
    Inet4,
    /// The state change came in an interrupt.
    Interrupt,
    /// The nested hook writes the state change: the state hook missed it.
    Caught,
    /// The state hook has marked which state change it ran for.
    Marked,
    /// The task has no mark: its CPU's tells.
    Unmarked,
    /// The nested hook compares the mark with its own state change.
    Compare,
    Out,
    /// Out, leaving the mark as it is.
    Exit,
}

/// The helpers every hook's program may call.
struct Helpers {
    ktime_get_boot_ns: Helper,
    get_socket_cookie: Helper,
    get_current_pid_tgid: Helper,
    get_current_task_btf: Helper,
    map_lookup_elem: Helper,
    map_update_elem: Helper,
    ringbuf_output: Helper,
    ringbuf_query: Helper,
    probe_read_kernel: Helper,
}

impl Helpers {
    fn of(k: &Kernel<'_>) -> Result<Self, Refusal> {
        Ok(Self {
            ktime_get_boot_ns: k.helper("ktime_get_boot_ns")?,
            get_socket_cookie: k.helper("get_socket_cookie")?,
            get_current_pid_tgid: k.helper("get_current_pid_tgid")?,
            get_current_task_btf: k.helper("get_current_task_btf")?,
            map_lookup_elem: k.helper("map_lookup_elem")?,
            map_update_elem: k.helper("map_update_elem")?,
            ringbuf_output: k.helper("ringbuf_output")?,
            ringbuf_query: k.helper("ringbuf_query")?,
            probe_read_kernel: k.helper("probe_read_kernel")?,
        })
    }
}

/// A program being assembled: the kernel it is for, its helpers, its code.
struct Prog<'k, 'b> {
    k: &'k Kernel<'b>,
    h: Helpers,
    a: Asm<Label>,
}

/// The socket, in a register that survives calls.
const SK: Reg = R6;
/// Set before the acting process is read: whether the owners map may keep
/// it already (1: a close, where the process that connected closes, say)
/// or can't (0: a connect or a listen, on a socket nothing acted on yet).
/// It holds the hooks' second argument until then.
const KNOWN: Reg = R7;

impl Prog<'_, '_> {
    /// `r0 = 0`, and the record zeroed with it.
    fn zero_record(&mut self) {
        self.a.push(Insn::MovImm { dst: R0, imm: 0 });
        for at in (0..EVENT_LEN).step_by(8) {
            let off = self.a.record_off(at);
            self.a.push_noted(Insn::Store { dst: FP, off, src: R0, size: DW }, "0 -> record");
        }
    }

    fn store_imm(&mut self, slot: Slot, imm: i32) {
        self.a.push(Insn::MovImm { dst: R1, imm });
        self.a.store(slot, R1);
    }

    /// `dst` = the address of the record's socket cookie: the owners map's key.
    fn cookie_key(&mut self, dst: Reg) {
        self.a.record_addr(dst, COOKIE.off);
    }

    /// What the kernel holds of the socket: the time, its cookie, inode,
    /// namespace, uid, family, protocol, state, ports and addresses. Out if
    /// it is not of the hook's protocol.
    fn socket(&mut self, protocol: Protocol) -> Result<(), Refusal> {
        let k = self.k;
        let sock = |path: &[&str], size| k.field("sock", path, size);
        let common = |name, size| sock(&["__sk_common", name], size);
        self.a.jeq(SK, 0, Label::Out);
        self.a.load(R1, SK, &sock(&["sk_protocol"], 2)?);
        self.a.jne(R1, i32::from(protocol.ipproto()), Label::Out);
        self.a.store(PROTOCOL, R1);
        self.a.call(self.h.ktime_get_boot_ns);
        self.a.store(TIME, R0);
        self.a.push(Insn::Mov { dst: R1, src: SK });
        self.a.call(self.h.get_socket_cookie);
        self.a.store(COOKIE, R0);
        self.a.load(R1, SK, &common("skc_net", 8)?);
        self.a.load(R1, R1, &k.field("net", &["ns", "inum"], 4)?);
        self.a.store(NETNS, R1);
        self.a.load(R1, SK, &sock(&["sk_uid", "val"], 4)?);
        self.a.store(UID, R1);
        for (name, to) in [("skc_family", FAMILY), ("skc_state", STATE)] {
            self.a.load(R1, SK, &common(name, to.size.bytes() as u32)?);
            self.a.store(to, R1);
        }
        ENDS.store(&mut self.a, k, SK, R1)?;
        // The inode of its `struct socket`, which lives in a `socket_alloc`
        // beside it: past the end of the type the verifier knows, so read.
        self.a.load(R3, SK, &sock(&["sk_socket"], 8)?);
        self.a.jeq(R3, 0, Label::NoInode);
        let socket = k.offset("socket_alloc", &["socket"], k.size("socket")?)?;
        let inode = k.offset("socket_alloc", &["vfs_inode"], k.size("inode")?)?;
        let ino = k.offset("inode", &["i_ino"], 8)?;
        self.a.push_noted(
            Insn::AddImm { dst: R3, imm: i32::from(inode - socket + ino) },
            "&socket_alloc.vfs_inode.i_ino",
        );
        self.a.record_addr(R1, INODE.off);
        self.a.push(Insn::MovImm { dst: R2, imm: 8 });
        self.a.call(self.h.probe_read_kernel);
        self.a.place(Label::NoInode);
        Ok(())
    }

    /// The owner: the current task's thread group, its leader's start and
    /// name, kept in the owners map for the socket; on to `Emit`. A kernel
    /// thread (no `mm`: an MPTCP worker closing a subflow, say) is no
    /// owner: on to `Learned`. For a close (`closing`, from `Closing`), nor
    /// is the library's own process: a copy of another process's fd that
    /// it took (`pidfd_getfd`) may hold the last reference when the holder
    /// closes, and then the close runs when the library lets go of it.
    fn acting_owner(&mut self, closing: bool) -> Result<(), Refusal> {
        let k = self.k;
        let task = |path: &[&str], size| k.field("task_struct", path, size);
        let tgid = R9;
        let current_tgid = |a: &mut Asm<Label>, h: &Helpers| {
            a.call(h.get_current_pid_tgid);
            a.push_noted(Insn::RshImm { dst: R0, imm: 32 }, "tgid");
            a.push(Insn::Mov { dst: tgid, src: R0 });
        };
        if closing {
            self.a.place(Label::Closing);
            self.a.push_noted(Insn::MovImm { dst: KNOWN, imm: 1 }, "the owner may be known");
            current_tgid(&mut self.a, &self.h);
            self.lookup_entry(SELF, 0, "self");
            self.a.jeq(R0, 0, Label::Acting);
            self.a.push_noted(Insn::Load { dst: R1, src: R0, off: 0, size: W }, "self[0]: the library's tgid");
            self.a.jeq(R1, tgid, Label::Learned);
        }
        self.a.place(Label::Acting);
        current_tgid(&mut self.a, &self.h);
        self.a.call(self.h.get_current_task_btf);
        self.a.load(R1, R0, &task(&["mm"], 8)?);
        self.a.jeq(R1, 0, Label::Learned);
        let leader = R1;
        self.a.load(leader, R0, &task(&["group_leader"], 8)?);
        self.a.load(R2, leader, &task(&["start_boottime"], 8)?);
        self.a.store(START, R2);
        let comm = k.offset("task_struct", &["comm"], 16)?;
        for (half, slot) in COMM.into_iter().enumerate() {
            let path = format!("task_struct.comm[{}..{}]", half * 8, half * 8 + 8);
            self.a.load(R2, leader, &Field { path, off: comm + 8 * half as i16, size: DW });
            self.a.store(slot, R2);
        }
        self.a.store(PID, tgid);
        if closing {
            // Kept already: no update, the costliest call of a record (an
            // LRU map's update takes a free node, evicting when full).
            self.a.jeq(KNOWN, 0, Label::Update);
            self.lookup_owner();
            self.a.jeq(R0, 0, Label::Update);
            for at in (0..OWNER_LEN).step_by(8) {
                self.a.push_noted(Insn::Load { dst: R1, src: R0, off: at as i16, size: DW }, "owners[cookie]");
                let off = self.a.record_off(OWNER + at);
                self.a.push_noted(Insn::Load { dst: R2, src: FP, off, size: DW }, "record.owner");
                self.a.jne(R1, R2, Label::Update);
            }
            self.a.ja(Label::Emit);
            self.a.place(Label::Update);
        }
        self.a.load_map(R1, OWNERS, "owners");
        self.cookie_key(R2);
        self.a.record_addr(R3, OWNER);
        self.a.push(Insn::MovImm { dst: R4, imm: 0 });
        self.a.call(self.h.map_update_elem);
        self.a.ja(Label::Emit);
        Ok(())
    }

    /// `r0` = entry `key` of array map `map` (this CPU's, of a per-CPU
    /// one), or 0.
    fn lookup_entry(&mut self, map: i32, key: i32, name: &str) {
        self.a.push(Insn::MovImm { dst: R1, imm: key });
        self.a.push_noted(Insn::Store { dst: FP, off: KEY, src: R1, size: W }, format!("{key} -> key"));
        self.a.load_map(R1, map, name);
        self.a.push(Insn::Mov { dst: R2, src: FP });
        self.a.push(Insn::AddImm { dst: R2, imm: KEY.into() });
        self.a.call(self.h.map_lookup_elem);
    }

    /// The acting process as the owner, or the one learned earlier; emitted.
    fn acting_or_learned(&mut self, closing: bool) -> Result<(), Refusal> {
        self.acting_owner(closing)?;
        self.a.place(Label::Learned);
        self.learned_owner();
        self.emit();
        Ok(())
    }

    /// `r0` = the owner the map keeps for the socket, or 0.
    fn lookup_owner(&mut self) {
        self.a.load_map(R1, OWNERS, "owners");
        self.cookie_key(R2);
        self.a.call(self.h.map_lookup_elem);
    }

    /// The owner learned earlier into the record, if there is one; falls
    /// into `Emit`, which must follow.
    fn learned_owner(&mut self) {
        self.lookup_owner();
        self.a.jeq(R0, 0, Label::Emit);
        for at in (0..OWNER_LEN).step_by(8) {
            self.a.push_noted(Insn::Load { dst: R1, src: R0, off: at as i16, size: DW }, "owners[cookie]");
            let off = self.a.record_off(OWNER + at);
            self.a.push_noted(Insn::Store { dst: FP, off, src: R1, size: DW }, "-> record.owner");
        }
    }

    /// `Emit`: the record to the ring, waking its reader only once
    /// `WAKE_AT` bytes wait; where it has no room, counted lost.
    fn emit(&mut self) {
        let flags = R9;
        self.a.place(Label::Emit);
        self.a.load_map(R1, RING, "ring");
        self.a.push(Insn::MovImm { dst: R2, imm: BPF_RB_AVAIL_DATA });
        self.a.call(self.h.ringbuf_query);
        // Only the record that crosses the mark wakes the reader: past it,
        // the reader was woken; one that misses it (records from several
        // CPUs at once) is found at its next look.
        self.a.push_noted(Insn::MovImm { dst: flags, imm: BPF_RB_NO_WAKEUP }, "BPF_RB_NO_WAKEUP");
        self.a.jgt(R0, WAKE_AT, Label::Output);
        self.a.jgt(R0, WAKE_AT - RECORD_SPAN, Label::Wake);
        self.a.ja(Label::Output);
        self.a.place(Label::Wake);
        self.a.push_noted(Insn::MovImm { dst: flags, imm: BPF_RB_FORCE_WAKEUP }, "BPF_RB_FORCE_WAKEUP");
        self.a.place(Label::Output);
        self.a.load_map(R1, RING, "ring");
        self.a.record_addr(R2, 0);
        self.a.push(Insn::MovImm { dst: R3, imm: EVENT_LEN as i32 });
        self.a.push(Insn::Mov { dst: R4, src: flags });
        self.a.call(self.h.ringbuf_output);
        self.a.jeq(R0, 0, Label::Sent);
        self.count(LOST, "lost", Label::Sent);
        self.a.place(Label::Sent);
    }

    /// `r0` = this CPU's count `key` of the counts map, or on to `none`.
    fn lookup_count(&mut self, key: i32, name: &str, none: Label) {
        self.lookup_entry(COUNTS, key, &format!("counts ({name})"));
        self.a.jeq(R0, 0, none);
    }

    /// This CPU's count `key` += 1.
    fn count(&mut self, key: i32, name: &str, none: Label) {
        self.lookup_count(key, name, none);
        self.a.push(Insn::MovImm { dst: R1, imm: 1 });
        self.a.push_noted(Insn::AtomicAdd { dst: R0, off: 0, src: R1, size: DW }, format!("{name} += 1"));
    }

    /// The state hook marks its CPU before anything else (`ctx` kept in
    /// `R8`): its program runs, and which state change it ran for, in an
    /// interrupt on its CPU's mark, or (`Marking`) in a task on the task's.
    /// The nested hook goes on only where the state hook was passed over
    /// (module docs), and counts what it goes on with.
    fn mark(&mut self, hook: Hook, role: Role) -> Result<(), Refusal> {
        let (task, sk, states) = (R6, R7, R9);
        self.a.push(Insn::Mov { dst: R8, src: R1 });
        let stacks = stacks(self.k);
        let by_task = match (role, &stacks) {
            (Role::Alone, _) => None,
            (_, Some(_)) => Some(self.k.helper("task_storage_get")?),
            (_, None) => {
                return Err(self.k.lacks("struct irq_stack, to tell a task's state change from an interrupt's"));
            }
        };
        if stacks.is_some() {
            self.a.call(self.h.get_current_task_btf);
            self.a.push(Insn::Mov { dst: task, src: R0 });
        }
        self.lookup_count(MARK, "mark", Label::Exit);
        self.a.push_noted(Insn::Store { dst: FP, off: MARK_AT, src: R0, size: DW }, "&mark");
        let runs = |a: &mut Asm<Label>| {
            a.push_noted(Insn::Load { dst: R4, src: R0, off: 0, size: DW }, "runs");
            a.jne(R4, 0, Label::Caught);
        };
        let Some((stack, size)) = stacks else {
            if hook == Hook::State {
                self.set_runs();
            } else {
                runs(&mut self.a);
                self.a.ja(Label::Exit);
                self.caught(CAUGHT);
            }
            return Ok(());
        };
        // The state change: its sock, and 16 x old state + new state.
        arg_of(&mut self.a, sk, R8, 0, DW, "sk");
        arg_of(&mut self.a, states, R8, 1, W, "oldstate");
        self.a.push(Insn::LshImm { dst: states, imm: 4 });
        arg_of(&mut self.a, R2, R8, 2, W, "newstate");
        self.a.push_noted(Insn::Add { dst: states, src: R2 }, "the states");
        if hook == Hook::Nested {
            self.a.push_noted(Insn::Load { dst: R2, src: R0, off: RAN_SK, size: DW }, "ran for: sk");
            self.a.push_noted(Insn::Load { dst: R3, src: R0, off: RAN_STATES, size: DW }, "ran for: states");
            self.clear(RAN_SK, "ran for");
        }
        // `ctx` lies on the stack the kernel runs on (a program's frame may
        // be a stack of its own): in an interrupt, not its task's.
        self.a.load(R1, task, &stack);
        self.a.jgt(R1, R8, Label::Interrupt);
        self.a.push(Insn::AddImm { dst: R1, imm: size - 1 });
        self.a.jgt(R8, R1, Label::Interrupt);
        if hook == Hook::State {
            self.clear(RAN_SK, "ran for");
            if let Some(helper) = by_task {
                self.mark_task(helper);
            }
            self.a.ja(Label::Marked);
            self.a.place(Label::Interrupt);
            self.store_mark(RAN_SK, "ran for");
            self.a.place(Label::Marked);
            self.a.push_noted(Insn::Load { dst: R0, src: FP, off: MARK_AT, size: DW }, "&mark");
            self.set_runs();
        } else {
            // A task may move to another CPU between the two programs (from
            // Linux 7.0, tracepoints run preemptibly): its own mark tells;
            // its CPU's "runs" may be another task's.
            match by_task {
                Some(helper) => self.take_task_mark(helper),
                None => {
                    runs(&mut self.a);
                    self.a.ja(Label::Exit);
                }
            }
            self.a.place(Label::Interrupt);
            runs(&mut self.a);
            self.compare_mark(CAUGHT);
        }
        Ok(())
    }

    /// The mark of a program on a hook other than the state hook's, where
    /// each task keeps one (not `Alone`): the first program marks the task
    /// with what it ran for (the socket, and the hook); the second (the
    /// `Catcher`, which the kernel runs after it) goes on only where the
    /// first was passed over (another task preempted in it on that CPU,
    /// on a kernel that preempts in the kernel), counting what it goes on
    /// with. These hooks run in tasks only.
    fn hook_mark(&mut self, hook: Hook, role: Role) -> Result<(), Refusal> {
        if role == Role::Alone {
            return Ok(());
        }
        let helper = self.k.helper("task_storage_get")?;
        self.a.push(Insn::Mov { dst: R8, src: R1 });
        self.a.call(self.h.get_current_task_btf);
        self.a.push(Insn::Mov { dst: R6, src: R0 });
        arg_of(&mut self.a, R7, R8, 0, DW, "sk");
        self.a.push_noted(Insn::MovImm { dst: R9, imm: hook.tag() }, "the hook");
        if role == Role::Catcher {
            self.take_task_mark(helper);
            self.compare_mark(CATCHES);
        } else {
            self.mark_task(helper);
            self.a.place(Label::Marked);
            self.a.push(Insn::Mov { dst: R1, src: R8 });
        }
        Ok(())
    }

    /// `r0` = the mark of the current task (`R6`), made if `create`, or 0.
    fn task_mark(&mut self, helper: Helper, create: bool) {
        self.a.load_map(R1, TASKS, "task marks");
        self.a.push(Insn::Mov { dst: R2, src: R6 });
        self.a.push(Insn::MovImm { dst: R3, imm: 0 });
        let flags = if create { BPF_LOCAL_STORAGE_GET_F_CREATE } else { 0 };
        self.a.push(Insn::MovImm { dst: R4, imm: flags });
        self.a.call(helper);
    }

    /// `*(r0 + off)` = 0.
    fn clear(&mut self, off: i16, what: &str) {
        self.a.push(Insn::MovImm { dst: R4, imm: 0 });
        self.a.push_noted(Insn::Store { dst: R0, off, src: R4, size: DW }, format!("0 -> {what}"));
    }

    /// What the program runs for, its sock (`R7`) and states (`R9`), to
    /// the mark at `r0 + at`.
    fn store_mark(&mut self, at: i16, what: &str) {
        self.a.push_noted(Insn::Store { dst: R0, off: at, src: R7, size: DW }, format!("sk -> {what}"));
        self.a.push_noted(Insn::Store { dst: R0, off: at + 8, src: R9, size: DW }, format!("states -> {what}"));
    }

    /// What the program runs for to the task's mark, made if the task has
    /// none yet; where the kernel makes none, its sock to its CPU's
    /// `UNMARKED`. On to `Marked`, which follows.
    fn mark_task(&mut self, helper: Helper) {
        self.task_mark(helper, true);
        self.a.jeq(R0, 0, Label::Unmarked);
        self.store_mark(0, "the task's mark");
        self.a.ja(Label::Marked);
        self.a.place(Label::Unmarked);
        self.lookup_count(MARK, "mark", Label::Marked);
        self.a.push_noted(Insn::Store { dst: R0, off: UNMARKED, src: R7, size: DW }, "sk -> unmarked");
    }

    /// The task's mark taken back (`r2`, `r3`), on to `Compare`. A task
    /// without one (its first since the tracer started) had the first
    /// program passed over, unless the kernel made it none, which its
    /// CPU's `UNMARKED` says: on to `Caught`, or out.
    fn take_task_mark(&mut self, helper: Helper) {
        self.task_mark(helper, false);
        self.a.jeq(R0, 0, Label::Unmarked);
        self.a.push_noted(Insn::Load { dst: R2, src: R0, off: 0, size: DW }, "the task's mark: sk");
        self.a.push_noted(Insn::Load { dst: R3, src: R0, off: 8, size: DW }, "the task's mark: states");
        self.clear(0, "the task's mark");
        self.a.ja(Label::Compare);
        self.a.place(Label::Unmarked);
        self.lookup_count(MARK, "mark", Label::Exit);
        self.a.push_noted(Insn::Load { dst: R2, src: R0, off: UNMARKED, size: DW }, "unmarked");
        self.clear(UNMARKED, "unmarked");
        self.a.jne(R7, R2, Label::Caught);
        self.a.ja(Label::Exit);
    }

    /// `Compare`: out where the mark (`r2`, `r3`) names what this program
    /// runs for (`R7`, `R9`); else on to `Caught`, which follows.
    fn compare_mark(&mut self, key: i32) {
        self.a.place(Label::Compare);
        self.a.jne(R7, R2, Label::Caught);
        self.a.jeq(R9, R3, Label::Exit);
        self.caught(key);
    }

    /// The state hook's mark (at `r0`): its program runs.
    fn set_runs(&mut self) {
        self.a.push(Insn::MovImm { dst: R2, imm: 1 });
        self.a.push_noted(Insn::Store { dst: R0, off: 0, src: R2, size: DW }, "1 -> runs");
        self.a.push(Insn::Mov { dst: R1, src: R8 });
    }

    /// `Caught`: the second program counts what it goes on with (the
    /// nested hook's apart from the catchers').
    fn caught(&mut self, key: i32) {
        self.a.place(Label::Caught);
        let name = if key == CAUGHT { "caught" } else { "catches" };
        self.count(key, name, Label::Exit);
        self.a.push(Insn::Mov { dst: R1, src: R8 });
    }

    /// The end every way out reaches.
    fn finish(mut self, hook: Hook, role: Role, attach_btf_id: u32) -> Result<Program, Refusal> {
        self.a.place(Label::Out);
        if hook == Hook::State {
            self.a.push_noted(Insn::Load { dst: R1, src: FP, off: MARK_AT, size: DW }, "&mark");
            self.a.push(Insn::MovImm { dst: R2, imm: 0 });
            self.a.push_noted(Insn::Store { dst: R1, off: 0, src: R2, size: DW }, "0 -> runs");
        }
        if matches!(hook, Hook::State | Hook::Nested) || role == Role::Catcher {
            self.a.place(Label::Exit);
        }
        self.a.push(Insn::MovImm { dst: R0, imm: 0 });
        self.a.push(Insn::Exit);
        let code = self.a.finish().map_err(|e| Refusal::Unsupported(format!("{WHAT}'s program is malformed: {e}")))?;
        Ok(Program {
            what: WHAT,
            name: if role == Role::Catcher { c"procspy_catch" } else { hook.name() },
            code,
            prog_type: BPF_PROG_TYPE_TRACING,
            attach_type: hook.attach_type(),
            attach_btf_id,
            attach_to: hook.attach_to(),
        })
    }
}

/// `ctx[i]` (`ctx` in `R1` unless given), the hook's `i`th argument (or,
/// for an `fexit`, the return value after the last), `size` bytes of it.
fn arg_of(a: &mut Asm<Label>, dst: Reg, ctx: Reg, i: u32, size: super::asm::Size, what: &str) {
    a.push_noted(Insn::Load { dst, src: ctx, off: (8 * i) as i16, size }, what.to_string());
}

fn arg(a: &mut Asm<Label>, dst: Reg, i: u32, size: super::asm::Size, what: &str) {
    arg_of(a, dst, R1, i, size, what);
}

/// The program of `hook` for the kernel `btf` describes, in its `role`.
fn assemble(btf: &Btf<'_>, hook: Hook, role: Role) -> Result<Program, Refusal> {
    let k = Kernel::new(btf, WHAT);
    let what = hook.describe();
    let attach_btf_id = match hook {
        Hook::State | Hook::Nested => k.named(Kind::Typedef, "btf_trace_inet_sock_set_state", &what)?,
        _ => k.func(hook.attach_to(), &what)?,
    };
    let params = || btf.params(attach_btf_id).ok_or_else(|| k.lacks(format_args!("prototype of {what}")));
    let mut p = Prog { k: &k, h: Helpers::of(&k)?, a: Asm::new(EVENT_LEN) };
    let (second, third) = (R7, R8);
    match hook {
        Hook::State | Hook::Nested => {
            p.mark(hook, role)?;
            arg(&mut p.a, SK, 0, DW, "sk");
            arg(&mut p.a, second, 1, W, "oldstate");
            arg(&mut p.a, third, 2, W, "newstate");
            // A connection's birth on a clone of its listener: some kernels
            // (6.1) trace it before the clone has its own cookie, port and
            // peer, so it would read as the listener's. Its SYN_RECV ->
            // ESTABLISHED, next, has them. Out before reading anything.
            p.a.jne(second, i32::from(TcpState::Listen.number()), Label::Born);
            p.a.jeq(third, i32::from(TcpState::SynRecv.number()), Label::Out);
            p.a.place(Label::Born);
        }
        Hook::UdpSend | Hook::Udp6Send => {
            p.hook_mark(hook, role)?;
            arg(&mut p.a, SK, 0, DW, "sk");
            arg(&mut p.a, second, 1, DW, "msg");
        }
        Hook::UdpConnect | Hook::Udp6Connect => {
            p.hook_mark(hook, role)?;
            arg(&mut p.a, SK, 0, DW, "sk");
            arg(&mut p.a, second, params()?, W, "return");
        }
        Hook::Accept | Hook::TcpClose | Hook::UdpRelease | Hook::Udp6Release => {
            p.hook_mark(hook, role)?;
            arg(&mut p.a, SK, 0, DW, "sk");
        }
    }
    p.zero_record();
    p.socket(hook.protocol())?;
    let tcp = |s: TcpState| i32::from(s.number());
    match hook {
        Hook::State | Hook::Nested => {
            p.a.store(STATE, third);
            p.a.store(OLD_STATE, second);
            p.store_imm(KIND, EventKind::State as i32);
            p.a.jeq(third, tcp(TcpState::SynSent), Label::Connect);
            p.a.jeq(third, tcp(TcpState::Listen), Label::Listen);
            // Entered only by a close or shutdown of the process's own.
            p.a.jeq(third, tcp(TcpState::FinWait1), Label::Closing);
            p.a.jeq(third, tcp(TcpState::LastAck), Label::Closing);
            p.a.jne(second, tcp(TcpState::Listen), Label::Learned);
            p.a.jeq(third, tcp(TcpState::Close), Label::Closing);
            p.a.ja(Label::Learned);
            p.a.place(Label::Connect);
            p.store_imm(KIND, EventKind::Connect as i32);
            p.a.ja(Label::Unknown);
            p.a.place(Label::Listen);
            p.store_imm(KIND, EventKind::Listen as i32);
            p.a.place(Label::Unknown);
            p.store_imm(OLD_STATE, 0);
            p.a.push_noted(Insn::MovImm { dst: KNOWN, imm: 0 }, "the owner can't be known");
            p.a.ja(Label::Acting);
            p.acting_owner(true)?;
            p.a.place(Label::Learned);
            p.learned_owner();
            p.emit();
        }
        Hook::Accept => {
            p.store_imm(KIND, EventKind::Accept as i32);
            p.acting_or_learned(false)?;
        }
        Hook::TcpClose => {
            // A socket that never connected, or already closed, tells nothing.
            p.a.load(second, SK, &k.field("sock", &["__sk_common", "skc_state"], 1)?);
            p.a.jeq(second, tcp(TcpState::Close), Label::Out);
            p.store_imm(KIND, EventKind::Close as i32);
            p.acting_or_learned(true)?;
        }
        Hook::UdpConnect | Hook::Udp6Connect => {
            p.a.jne(second, 0, Label::Out);
            p.store_imm(KIND, EventKind::Connect as i32);
            p.acting_or_learned(false)?;
        }
        Hook::UdpSend | Hook::Udp6Send => {
            // Only a socket's first: one the owners map knows was seen.
            p.lookup_owner();
            p.a.jne(R0, 0, Label::Out);
            sendmsg_destination(&mut p, second)?;
            p.store_imm(KIND, EventKind::Send as i32);
            p.acting_or_learned(false)?;
        }
        Hook::UdpRelease | Hook::Udp6Release => {
            // Only a socket a connect or send made known.
            p.lookup_owner();
            p.a.jeq(R0, 0, Label::Out);
            p.store_imm(KIND, EventKind::Close as i32);
            p.acting_or_learned(true)?;
        }
    }
    p.finish(hook, role, attach_btf_id)
}

/// A send's destination where it names one (`msg->msg_name`, a kernel copy
/// of the caller's `sockaddr`) in place of the socket's own peer.
fn sendmsg_destination(p: &mut Prog<'_, '_>, msg: Reg) -> Result<(), Refusal> {
    p.a.load(R3, msg, &p.k.field("msghdr", &["msg_name"], 8)?);
    p.a.jeq(R3, 0, Label::SockAddr);
    p.a.push(Insn::Mov { dst: R1, src: FP });
    p.a.push(Insn::AddImm { dst: R1, imm: SOCKADDR.into() });
    p.a.push(Insn::MovImm { dst: R2, imm: SOCKADDR_LEN });
    p.a.call(p.h.probe_read_kernel);
    p.a.jne(R0, 0, Label::SockAddr);
    let from = |a: &mut Asm<Label>, off: i16, size, note: &str| {
        a.push_noted(Insn::Load { dst: R1, src: FP, off: SOCKADDR + off, size }, note);
    };
    from(&mut p.a, 0, H, "sockaddr.sa_family");
    p.a.jeq(R1, i32::from(Family::Inet.af()), Label::Inet4);
    p.a.jne(R1, i32::from(Family::Inet6.af()), Label::SockAddr);
    from(&mut p.a, 2, H, "sockaddr_in6.sin6_port");
    p.a.store(ENDS.remote_port, R1);
    for (half, slot) in ENDS.remote_addr6.into_iter().enumerate() {
        from(&mut p.a, 8 + 8 * half as i16, DW, "sockaddr_in6.sin6_addr");
        p.a.store(slot, R1);
    }
    p.a.ja(Label::SockAddr);
    p.a.place(Label::Inet4);
    from(&mut p.a, 2, H, "sockaddr_in.sin_port");
    p.a.store(ENDS.remote_port, R1);
    from(&mut p.a, 4, W, "sockaddr_in.sin_addr");
    p.a.store(ENDS.remote_addr4, R1);
    p.a.place(Label::SockAddr);
    Ok(())
}

/// Where a task's kernel stack starts (`task_struct.stack`) and how long
/// it is: on x86-64, as long as an interrupt's (`struct irq_stack`). A
/// kernel without that struct (other architectures) gives no way to tell
/// an interrupt by its stack, and the nested hook catches only the state
/// changes that come while the state hook's program runs.
fn stacks(k: &Kernel<'_>) -> Option<(Field, i32)> {
    let size = i32::try_from(k.size("irq_stack").ok()?).ok()?;
    Some((k.field("task_struct", &["stack"], 8).ok()?, size))
}

/// A hook and its program, or why it has none.
type Assembled = (Hook, Result<Program, Refusal>);

/// Each hook's program, marking no task; and where each task keeps a
/// mark, each hook's pair (but the nested hook's): the program that marks
/// the task, and the one the kernel runs after it that takes the mark back
/// (for the state hook, the nested hook's), or why there is none.
struct Programs {
    each: Vec<Assembled>,
    by_task: Vec<(Hook, Result<[Program; 2], Refusal>)>,
}

/// Each hook's programs, assembled once per process (the kernel's layout
/// does not change under it); a failed read of its BTF is tried again.
fn programs() -> Result<&'static Programs, Refusal> {
    static PROGRAMS: OnceLock<Programs> = OnceLock::new();
    if let Some(built) = PROGRAMS.get() {
        return Ok(built);
    }
    let built = with_vmlinux(WHAT, |btf| {
        let each = Hook::ALL.iter().map(|&h| (h, assemble(btf, h, Role::Alone))).collect();
        let pair = |h| {
            let second = if h == Hook::State {
                assemble(btf, Hook::Nested, Role::Marking)
            } else {
                assemble(btf, h, Role::Catcher)
            };
            Ok([assemble(btf, h, Role::Marking)?, second?])
        };
        let by_task = Hook::ALL.iter().filter(|h| **h != Hook::Nested).map(|&h| (h, pair(h))).collect();
        Ok(Programs { each, by_task })
    })?;
    Ok(PROGRAMS.get_or_init(|| built))
}

/// The map of the tasks' marks. The kernel makes task local storage only
/// with the BTF of its key (a 4-byte int) and value, so that is loaded
/// first.
fn task_marks() -> Result<BpfMap, Refusal> {
    use crate::parse::btf::build::{W::N, W::Name, blob};
    const BTF_INT_SIGNED: u32 = 1 << 24;
    let sys = |call| move |errno| Refusal::Sys { call, errno };
    let types = blob(&[
        ("int", Kind::Int, 0, 4, &[N(BTF_INT_SIGNED | 32)]),   // 1
        ("long long unsigned int", Kind::Int, 0, 8, &[N(64)]), // 2
        ("procspy_task_mark", Kind::Struct, 2, TASK_MARK_LEN, &[Name("sk"), N(2), N(0), Name("states"), N(2), N(64)]),
    ]);
    let btf = bpf_sys::bpf_btf_load(&types).map_err(sys("bpf(BPF_BTF_LOAD)"))?;
    BpfMap::create_task_storage(TASK_MARK_LEN, btf.as_fd(), (1, 3), c"procspy_tasks")
        .map_err(sys("bpf(BPF_MAP_CREATE)"))
}

/// One event, as a program wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// `CLOCK_BOOTTIME`, ns.
    pub time_ns: u64,
    pub cookie: u64,
    /// 0 where the socket had no `struct socket` (not accepted yet, orphaned).
    pub inode: u64,
    pub netns: u64,
    pub uid: u32,
    pub family: u16,
    pub protocol: Protocol,
    pub state: u8,
    /// `State` only.
    pub old_state: u8,
    pub ends: Ends,
    pub owner: Option<EventOwner>,
}

/// The process an event names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventOwner {
    /// Thread group id, in the initial pid namespace.
    pub pid: i32,
    /// Its group leader's start, `CLOCK_BOOTTIME` ns.
    pub start_ns: u64,
    /// Its group leader's name, NUL-padded.
    pub comm: [u8; 16],
}

impl EventOwner {
    /// `b`: the record's owner block, as the owners map keeps it too.
    fn decode(b: &[u8]) -> Option<Self> {
        let at = |slot: Slot| Slot { off: slot.off - OWNER, ..slot };
        let pid = at(PID).read(b) as u32;
        let mut comm = [0u8; 16];
        let name = at(COMM[0]).off;
        comm.copy_from_slice(&b[name..name + 16]);
        (pid != 0).then_some(EventOwner { pid: pid as i32, start_ns: at(START).read(b), comm })
    }
}

/// The owners map, shared: the process seen acting on a socket last, by the
/// socket's cookie, for as long as the map keeps it (closed sockets too,
/// until the least recently used give way).
#[derive(Clone, Debug)]
pub struct Owners(Arc<BpfMap>);

impl Owners {
    pub fn get(&self, cookie: u64) -> Option<EventOwner> {
        let mut owner = [0u8; OWNER_LEN];
        self.0.lookup(&cookie.to_ne_bytes(), &mut owner).ok()?;
        EventOwner::decode(&owner)
    }
}

impl Event {
    /// `b`: `EVENT_LEN` bytes as a program wrote them; `None` for a record
    /// that makes no sense (an unknown kind, family, protocol or state).
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != EVENT_LEN {
            return None;
        }
        let kind = EventKind::of(KIND.read(b) as u8)?;
        let family = FAMILY.read(b) as u16;
        let protocol = Protocol::of_ipproto(PROTOCOL.read(b) as u8)?;
        let (state, old_state) = (STATE.read(b) as u8, OLD_STATE.read(b) as u8);
        let valid = |s: u8| s == 0 || TcpState::from_u8(s).is_some();
        if !valid(state) || !valid(old_state) {
            return None;
        }
        let ends = ENDS.read(b, Family::of_af(family)? == Family::Inet6);
        let owner = EventOwner::decode(&b[OWNER..OWNER + OWNER_LEN]);
        Some(Event {
            kind,
            time_ns: TIME.read(b),
            cookie: COOKIE.read(b),
            inode: INODE.read(b),
            netns: NETNS.read(b),
            uid: UID.read(b) as u32,
            family,
            protocol,
            state,
            old_state,
            ends,
            owner,
        })
    }
}

/// What the ring held next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Event(Event),
    Empty,
    /// A record that makes no sense: dropped.
    Dropped,
}

/// A hook's program, loaded and attached: the link holds it there; the
/// program's fd tells how often the kernel passed it over.
#[derive(Debug)]
struct Attached {
    prog: OwnedFd,
    _link: OwnedFd,
}

/// A hook's two programs, loaded, until each is attached.
type Pair = [Option<OwnedFd>; 2];

/// The tracer, attached: its programs' links, its maps, its ring mapped.
/// Dropping it detaches every program.
#[derive(Debug)]
pub struct Tracer {
    ring: Ring,
    ring_map: BpfMap,
    counts: BpfMap,
    owners: Owners,
    /// Each hook: attached (its program and link) or why not.
    hooks: Vec<(Hook, Result<Attached, Refusal>)>,
    /// Why the state and nested hooks mark each CPU only, if they do.
    task_marks: Option<Refusal>,
    /// The second program of each other hook whose pair marks each task:
    /// attached, or why not.
    catchers: Vec<(Hook, Result<Attached, Refusal>)>,
    /// What the catchers counted as caught in the check of their order,
    /// where they ran first.
    false_catches: u64,
    /// The kernel's loss count when last read, and of it the state hook's
    /// pass-overs the nested hook did not catch.
    lost_seen: u64,
    uncaught_seen: u64,
    record: [u8; EVENT_LEN],
}

impl Tracer {
    /// Loads and attaches every hook's program, with a ring of `ring_size`
    /// bytes (a power of two, a multiple of the page size). Fails if the
    /// state hook can't attach; each other hook that can't is told by `hooks`.
    pub fn start(ring_size: usize) -> Result<Self, Refusal> {
        let sys = |call| move |errno| Refusal::Sys { call, errno };
        let size = u32::try_from(ring_size).map_err(|_| sys("bpf(BPF_MAP_CREATE)")(Errno::EINVAL))?;
        let programs = programs()?;
        // Refused by name before any map is made: on a kernel that charges
        // maps to RLIMIT_MEMLOCK (5.10), the ring would fail first, as EPERM.
        if let Some((_, Err(e))) = programs.each.iter().find(|(h, _)| *h == Hook::State) {
            return Err(e.clone());
        }
        let ring_map =
            BpfMap::create(BPF_MAP_TYPE_RINGBUF, 0, 0, size, c"procspy_events").map_err(sys("bpf(BPF_MAP_CREATE)"))?;
        let owners = BpfMap::create(BPF_MAP_TYPE_LRU_HASH, 8, OWNER_LEN as u32, OWNERS_MAX, c"procspy_owners")
            .map_err(sys("bpf(BPF_MAP_CREATE)"))?;
        let counts =
            BpfMap::create(BPF_MAP_TYPE_PERCPU_ARRAY, 4, COUNT_LEN as u32, CATCHES as u32 + 1, c"procspy_counts")
                .map_err(sys("bpf(BPF_MAP_CREATE)"))?;
        let me = BpfMap::create(BPF_MAP_TYPE_ARRAY, 4, 4, 1, c"procspy_self").map_err(sys("bpf(BPF_MAP_CREATE)"))?;
        me.update(&0u32.to_ne_bytes(), &std::process::id().to_ne_bytes()).map_err(sys("bpf(BPF_MAP_UPDATE_ELEM)"))?;
        let ring = Ring::map(ring_map.as_fd(), ring_size).map_err(sys("mmap of the ring buffer"))?;
        let maps = [ring_map.as_fd(), owners.as_fd(), counts.as_fd(), me.as_fd()];
        // Each hook's pair that marks each task, where the kernel takes both;
        // its program that marks none where not.
        let tasks = task_marks();
        let mut pairs: Vec<(Hook, Result<Pair, Refusal>)> = programs
            .by_task
            .iter()
            .map(|(hook, pair)| {
                let loaded = tasks.as_ref().map_err(Clone::clone).and_then(|tasks| {
                    let [first, second] = pair.as_ref().map_err(Clone::clone)?;
                    let maps = [maps[0], maps[1], maps[2], maps[3], tasks.as_fd()];
                    Ok([Some(first.load(&maps)?), Some(second.load(&maps)?)])
                });
                (*hook, loaded)
            })
            .collect();
        let task_marks = pairs.iter().find(|(h, _)| *h == Hook::State).and_then(|(_, p)| p.as_ref().err().cloned());
        let mut take = |hook, i: usize| {
            let pair = pairs.iter_mut().find(|(h, _)| *h == hook).and_then(|(_, p)| p.as_mut().ok());
            pair.and_then(|p| p[i].take())
        };
        let attach = |prog: OwnedFd| {
            let link =
                bpf_sys::bpf_attach_tracing(prog.as_fd()).map_err(|errno| Refusal::Sys { call: "attach", errno })?;
            Ok(Attached { prog, _link: link })
        };
        let (mut hooks, mut catchers) = (Vec::with_capacity(programs.each.len()), Vec::new());
        for (hook, program) in &programs.each {
            let (loaded, catcher) = match hook {
                Hook::Nested => (take(Hook::State, 1), None),
                Hook::State => (take(Hook::State, 0), None),
                h => (take(*h, 0), take(*h, 1)),
            };
            // A trampoline runs the program attached last first: the catcher
            // goes first, to run after the program it catches for.
            let catcher = catcher.map(attach);
            let link = program.as_ref().map_err(Clone::clone).and_then(|p| match loaded {
                Some(prog) => attach(prog),
                None => attach(p.load(&maps)?),
            });
            if *hook == Hook::State
                && let Err(e) = link
            {
                return Err(e);
            }
            // A catcher alone would write every event as caught.
            if let (Some(c), Ok(_)) = (catcher, &link) {
                catchers.push((*hook, c));
            }
            hooks.push((*hook, link));
        }
        let owners = Owners(Arc::new(owners));
        let mut t = Self {
            ring,
            ring_map,
            counts,
            owners,
            hooks,
            catchers,
            task_marks,
            false_catches: 0,
            lost_seen: 0,
            uncaught_seen: 0,
            record: [0; EVENT_LEN],
        };
        t.check_catchers_order();
        Ok(t)
    }

    /// Who acted on each socket last.
    pub fn owners(&self) -> Owners {
        self.owners.clone()
    }

    /// Readable when an event is waiting.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.ring_map.as_fd()
    }

    /// Each hook, and why it is not attached where it is not.
    pub fn hooks(&self) -> impl Iterator<Item = (Hook, Option<&Refusal>)> {
        self.hooks.iter().map(|(h, r)| (*h, r.as_ref().err()))
    }

    /// The second program on each hook other than the state hook's, where
    /// there is one: attached, or why not.
    pub fn catchers(&self) -> impl Iterator<Item = (Hook, Option<&Refusal>)> {
        self.catchers.iter().map(|(h, r)| (*h, r.as_ref().err()))
    }

    /// Whether the kernel runs a hook's two programs in the order they
    /// were attached for: the catcher after. A TCP socket closed here runs
    /// `tcp_close`'s pair; a catcher that ran first would count a catch
    /// with nothing passed over. Where they ran so, or where it can't be
    /// told (`tcp_close` has no pair, the socket or a count can't be had),
    /// every catcher is detached.
    fn check_catchers_order(&mut self) {
        if self.catchers.iter().all(|(_, c)| c.is_err()) {
            return;
        }
        let why = match self.catchers_run_second() {
            Ok(true) => return,
            Ok(false) => Refusal::Unsupported("the kernel ran a hook's programs in another order than attached".into()),
            Err(e) => e,
        };
        for (_, c) in &mut self.catchers {
            if c.is_ok() {
                *c = Err(why.clone());
            }
        }
    }

    /// The check of `check_catchers_order`.
    fn catchers_run_second(&mut self) -> Result<bool, Refusal> {
        if !self.catchers.iter().any(|(h, c)| *h == Hook::TcpClose && c.is_ok()) {
            return Err(Refusal::Unsupported(
                "tcp_close has no catcher to tell the order of a hook's programs by".into(),
            ));
        }
        let sys = |call| move |errno| Refusal::Sys { call, errno };
        let looked = |t: &Self| -> Result<(u64, u64), Refusal> {
            let close = t.hooks.iter().find(|(h, _)| *h == Hook::TcpClose).and_then(|(_, a)| a.as_ref().ok());
            let missed = close.map_or(Ok(0), |a| bpf_sys::bpf_prog_recursion_misses(a.prog.as_fd()));
            Ok((
                t.count(CATCHES).map_err(sys("bpf(BPF_MAP_LOOKUP_ELEM)"))?,
                missed.map_err(sys("bpf(BPF_OBJ_GET_INFO_BY_FD)"))?,
            ))
        };
        let (caught, missed) = looked(self)?;
        drop(bpf_sys::tcp_socket().map_err(sys("socket"))?);
        let (caught_after, missed_after) = looked(self)?;
        if caught_after > caught && missed_after == missed {
            self.false_catches = caught_after - caught;
            return Ok(false);
        }
        Ok(true)
    }

    /// Why the state and nested hooks' programs keep no mark per task
    /// (and a task's state change that the state hook is passed over for,
    /// outside an interrupt, may go uncaught on a kernel that preempts
    /// them), if they keep none.
    pub fn task_marks(&self) -> Option<&Refusal> {
        self.task_marks.as_ref()
    }

    /// The next event, if one is waiting.
    pub fn next(&mut self) -> Next {
        loop {
            return match self.ring.next(&mut self.record) {
                RingNext::Empty => Next::Empty,
                RingNext::Discarded => continue,
                RingNext::Record { len } if len == EVENT_LEN => {
                    Event::decode(&self.record).map_or(Next::Dropped, Next::Event)
                }
                RingNext::Record { .. } => Next::Dropped,
                // Only the kernel writes the ring: a header longer than it
                // would be a kernel bug; nothing after it can be trusted.
                RingNext::Broken => Next::Empty,
            };
        }
    }

    /// Events lost since the last call: the ring had no room for them, or
    /// the kernel passed a program over because it was already running on
    /// that CPU (its tracepoint fired in an interrupt that came while it
    /// ran), less those the nested hook caught.
    pub fn lost(&mut self) -> Result<u64, Errno> {
        let (mut passed_over, mut catchable, mut nested) = (0, 0, false);
        let caught_on = |hook| self.catchers.iter().any(|(h, c)| *h == hook && c.is_ok());
        for (hook, attached) in &self.hooks {
            let Ok(a) = attached else { continue };
            match hook {
                // An event the state hook missed is counted there, whether
                // the nested hook caught it or not; so with a catcher.
                Hook::Nested => nested = true,
                Hook::State => catchable += bpf_sys::bpf_prog_recursion_misses(a.prog.as_fd())?,
                h if caught_on(*h) => catchable += bpf_sys::bpf_prog_recursion_misses(a.prog.as_fd())?,
                _ => passed_over += bpf_sys::bpf_prog_recursion_misses(a.prog.as_fd())?,
            }
        }
        let catching = nested || self.catchers.iter().any(|(_, c)| c.is_ok());
        // Caught read after passed over: the kernel counts a pass-over
        // before the nested hook, next on that CPU, counts its catch. One
        // counted a moment ago may be in flight still, its catch not yet
        // counted: looked at again, a little later (up to 1 ms), before it
        // is told.
        let caught = |t: &Self| Ok::<_, Errno>(t.count(CAUGHT)? + t.count(CATCHES)?.saturating_sub(t.false_catches));
        let uncaught = |t: &Self| Ok::<_, Errno>(catchable.saturating_sub(caught(t)?));
        let mut uncaught_now = uncaught(self)?;
        for _ in 0..10 {
            if !catching || uncaught_now <= self.uncaught_seen {
                break;
            }
            std::thread::sleep(std::time::Duration::from_micros(100));
            uncaught_now = uncaught(self)?;
        }
        let uncaught = uncaught_now;
        self.uncaught_seen = self.uncaught_seen.max(uncaught);
        let total = (self.count(LOST)? + passed_over + uncaught).max(self.lost_seen);
        let new = total - self.lost_seen;
        self.lost_seen = total;
        Ok(new)
    }

    /// Count `key` of the counts map, summed over CPUs.
    fn count(&self, key: i32) -> Result<u64, Errno> {
        let mut per_cpu = vec![0u8; self.counts.lookup_len()];
        self.counts.lookup(&key.to_ne_bytes(), &mut per_cpu)?;
        let count = |c: &[u8]| u64::from_ne_bytes(c[..8].try_into().unwrap_or_default());
        Ok(per_cpu.chunks_exact(COUNT_LEN).map(count).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::test_kernel::{HELPERS, check_listing, small_kernel};

    /// Taken by each test that attaches a tracer: none attaches or
    /// detaches (patching `tcp_close`'s entry) while another storms it.
    /// Under QEMU's emulation, a 6.12 guest hit the patch's int3 after the
    /// patch was done, and panicked.
    static ATTACHING: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// The tracer, started under `ATTACHING`; none (said) where it does
    /// not run here.
    fn started(ring: usize) -> Option<(std::sync::MutexGuard<'static, ()>, Tracer)> {
        let one = ATTACHING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match Tracer::start(ring) {
            Ok(t) => Some((one, t)),
            Err(e) => {
                eprintln!("the tracer does not run here: {e}");
                None
            }
        }
    }

    /// Whether this kernel may preempt a task that runs in the kernel: not
    /// where its configuration (`/proc/config.gz`, `/boot/config-RELEASE`)
    /// says it preempts none or only voluntarily, and its command line
    /// chooses no other model; unknown, it may.
    fn may_preempt_in_the_kernel() -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let config = std::process::Command::new("zcat")
            .arg("/proc/config.gz")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .or_else(|| std::fs::read_to_string(format!("/boot/config-{}", release.trim())).ok())
            .unwrap_or_default();
        let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
        let never = config.lines().any(|l| l == "CONFIG_PREEMPT_NONE=y" || l == "CONFIG_PREEMPT_VOLUNTARY=y");
        !never || cmdline.split_whitespace().any(|a| a.starts_with("preempt="))
    }

    /// Every hook's program for a fixed kernel, as annotated listings: a
    /// change to what one does shows up as a diff of `tracer.listing`.
    /// `PROCSPY_BLESS=1` rewrites it.
    #[test]
    fn the_programs_are_the_committed_listing() {
        let kernel = small_kernel(&HELPERS);
        let btf = Btf::parse(&kernel).unwrap();
        let each = Hook::ALL.iter().map(|&hook| (hook, Role::Alone));
        let by_task = Hook::ALL.iter().flat_map(|&hook| match hook {
            Hook::State | Hook::Nested => vec![(hook, Role::Marking)],
            _ => vec![(hook, Role::Marking), (hook, Role::Catcher)],
        });
        let programs: Vec<Program> = each
            .chain(by_task)
            .map(|(hook, role)| assemble(&btf, hook, role).unwrap_or_else(|e| panic!("{}: {e}", hook.describe())))
            .collect();
        check_listing(&programs, "tracer.listing", include_str!("tracer.listing"));
    }

    /// A kernel without a helper every program calls refuses every hook,
    /// naming the helper; one without an attach point refuses that hook
    /// alone.
    #[test]
    fn a_kernel_without_what_a_hook_needs_is_refused_by_name() {
        let without = |name: &str| small_kernel(&HELPERS.into_iter().filter(|h| h.0 != name).collect::<Vec<_>>());
        let kernel = without("BPF_FUNC_get_current_task_btf"); // Linux 5.10
        let btf = Btf::parse(&kernel).unwrap();
        for hook in Hook::ALL {
            let e = assemble(&btf, hook, Role::Alone).unwrap_err().to_string();
            assert!(e.contains("BPF_FUNC_get_current_task_btf") && e.contains(WHAT), "{e}");
        }
        // Marks per task: a kernel without task local storage's helper
        // (Linux 5.10), or without a way to tell an interrupt (not x86-64).
        let kernel = without("BPF_FUNC_task_storage_get");
        let btf = Btf::parse(&kernel).unwrap();
        let by_task = [Hook::State, Hook::Nested, Hook::TcpClose].map(|h| (h, Role::Marking));
        for (hook, role) in by_task.into_iter().chain([(Hook::TcpClose, Role::Catcher)]) {
            let e = assemble(&btf, hook, role).unwrap_err().to_string();
            assert!(e.contains("BPF_FUNC_task_storage_get"), "{e}");
            assert!(assemble(&btf, hook, Role::Alone).is_ok());
        }
        let mut other = small_kernel(&HELPERS);
        let at = other.windows(9).position(|w| w == b"irq_stack").unwrap();
        other[at] = b'x';
        let btf = Btf::parse(&other).unwrap();
        let e = assemble(&btf, Hook::Nested, Role::Marking).unwrap_err().to_string();
        assert!(e.contains("struct irq_stack"), "{e}");
        assert!(assemble(&btf, Hook::Nested, Role::Alone).is_ok());
        let kernel = small_kernel(&HELPERS);
        let mut renamed = kernel.clone();
        let at = renamed.windows(19).position(|w| w == b"security_sock_graft").unwrap();
        renamed[at] = b'x';
        let btf = Btf::parse(&renamed).unwrap();
        let e = assemble(&btf, Hook::Accept, Role::Alone).unwrap_err().to_string();
        assert!(e.contains("fentry/security_sock_graft (security_sock_graft)"), "{e}");
        assert!(
            assemble(&btf, Hook::State, Role::Alone).is_ok() && assemble(&btf, Hook::TcpClose, Role::Alone).is_ok()
        );
    }

    #[test]
    fn decodes_what_the_programs_write_and_drops_what_makes_no_sense() {
        let mut b = [0u8; EVENT_LEN];
        let put = |b: &mut [u8; EVENT_LEN], s: Slot, v: &[u8]| b[s.off..s.off + v.len()].copy_from_slice(v);
        put(&mut b, TIME, &5u64.to_ne_bytes());
        put(&mut b, COOKIE, &77u64.to_ne_bytes());
        put(&mut b, START, &1_500_000_000u64.to_ne_bytes());
        put(&mut b, PID, &4321u32.to_ne_bytes());
        put(&mut b, COMM[0], b"curl\0\0\0\0");
        put(&mut b, INODE, &9u64.to_ne_bytes());
        put(&mut b, NETNS, &4026531833u32.to_ne_bytes());
        put(&mut b, UID, &1000u32.to_ne_bytes());
        put(&mut b, KIND, &[EventKind::State as u8]);
        put(&mut b, STATE, &[TcpState::FinWait1.number()]);
        put(&mut b, OLD_STATE, &[TcpState::Established.number()]);
        put(&mut b, PROTOCOL, &[Protocol::Tcp.ipproto()]);
        put(&mut b, FAMILY, &u16::from(Family::Inet.af()).to_ne_bytes());
        put(&mut b, ENDS.local_port, &8080u16.to_ne_bytes());
        put(&mut b, ENDS.remote_port, &443u16.to_be_bytes());
        put(&mut b, ENDS.local_addr4, &[127, 0, 0, 1]);
        put(&mut b, ENDS.remote_addr4, &[127, 0, 0, 2]);
        let e = Event::decode(&b).unwrap();
        assert_eq!(
            (e.kind, e.time_ns, e.cookie, e.inode, e.netns, e.uid),
            (EventKind::State, 5, 77, 9, 4026531833, 1000)
        );
        assert_eq!(
            (e.state, e.old_state, e.protocol, e.ends.local_port, e.ends.remote_port),
            (4, 1, Protocol::Tcp, 8080, 443)
        );
        assert_eq!((&e.ends.local_addr[..4], &e.ends.remote_addr[..4]), (&[127, 0, 0, 1][..], &[127, 0, 0, 2][..]));
        let owner = e.owner.unwrap();
        assert_eq!((owner.pid, owner.start_ns, &owner.comm[..5]), (4321, 1_500_000_000, &b"curl\0"[..]));
        assert_eq!(Event::decode(&b[..EVENT_LEN - 8]), None, "a short record");
        let bad = |slot: Slot, v: &[u8]| {
            let mut c = b;
            put(&mut c, slot, v);
            Event::decode(&c)
        };
        assert_eq!(bad(PID, &0u32.to_ne_bytes()).unwrap().owner, None, "pid 0: no owner");
        assert_eq!(bad(KIND, &[0]), None);
        assert_eq!(bad(KIND, &[7]), None);
        assert_eq!(bad(PROTOCOL, &[132]), None, "SCTP");
        assert_eq!(bad(FAMILY, &1u16.to_ne_bytes()), None, "AF_UNIX");
        assert_eq!(bad(STATE, &[13]), None);
        assert_eq!(bad(OLD_STATE, &[200]), None);
    }

    /// On a kernel that runs the tracer, this process's loopback connect,
    /// accept and close each name it, from the hooks this kernel attached;
    /// the handshake's halves that run in softirq name the socket's own
    /// owner or none, never the peer that was running (bcc #2304).
    #[test]
    fn names_the_acting_process_and_never_the_interrupted_one() {
        let _one = ATTACHING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // The ring sees every test's and the host's TCP: room for bursts.
        let mut t = match Tracer::start(1 << 22) {
            Ok(t) => t,
            Err(e) => {
                // A kernel with all a program asks for must load it.
                assert!(!e.to_string().contains("verifier"), "{e}");
                return eprintln!("the tracer does not run here: {e}");
            }
        };
        for (hook, refused) in t.hooks() {
            let why = refused.map(ToString::to_string).unwrap_or_default();
            assert!(!why.contains("verifier"), "{}: {why}", hook.describe());
        }
        let attached = |hook| t.hooks().any(|(h, refused)| h == hook && refused.is_none());
        let (accept_hook, close_hook) = (attached(Hook::Accept), attached(Hook::TcpClose));
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let client_port = c.local_addr().unwrap().port();
        let (s, _) = l.accept().unwrap();
        drop(c);
        std::thread::sleep(std::time::Duration::from_millis(20));
        drop(s);
        // Read until the server's close has come (a record another CPU is
        // still writing reads as empty for a moment).
        let mut seen: Vec<Event> = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let last_ack = |e: &Event| e.state == TcpState::LastAck.number() && e.ends.local_port == port;
        while !seen.iter().any(last_ack) && std::time::Instant::now() < deadline {
            match t.next() {
                // A connect is traced before its port is bound: 0.
                Next::Event(e)
                    if [e.ends.local_port, e.ends.remote_port] == [0, port]
                        || [e.ends.local_port, e.ends.remote_port] == [client_port, port]
                        || e.ends.local_port == port =>
                {
                    seen.push(e)
                }
                Next::Event(_) => {}
                Next::Dropped => panic!("a record that makes no sense"),
                Next::Empty => std::thread::sleep(std::time::Duration::from_millis(1)),
            }
        }
        let me = Some(std::process::id() as i32);
        let pid = |e: &Event| e.owner.map(|o| o.pid);
        let find = |kind, state, old| {
            seen.iter().find(|e| e.kind == kind && e.state == state && (old == 0 || e.old_state == old))
        };
        let n = TcpState::number;
        let listen = find(EventKind::Listen, n(TcpState::Listen), 0).expect("listen");
        assert_eq!(listen.old_state, 0, "only a state event has an old state");
        assert_eq!(pid(listen), me);
        let connect = find(EventKind::Connect, n(TcpState::SynSent), 0).expect("connect");
        assert_eq!(connect.old_state, 0);
        assert_eq!((pid(connect), connect.ends.remote_port), (me, port));
        // The server's half is born in softirq: no owner until one acts on
        // it. Its birth on a clone of the listener is not reported.
        let born = find(EventKind::State, n(TcpState::Established), n(TcpState::SynRecv)).expect("the server's half");
        assert_eq!((born.owner, born.ends.remote_port), (None, client_port), "{born:?}");
        assert!(!seen.iter().any(|e| e.state == n(TcpState::SynRecv)), "{seen:#?}");
        // A close by the library's own process names the owner learned
        // before, not the closer: the client's connect; the server's half,
        // its accept where that hook runs, else none.
        let closing = find(EventKind::State, n(TcpState::FinWait1), n(TcpState::Established)).expect("client close");
        assert_eq!(pid(closing), me);
        let last_ack = find(EventKind::State, n(TcpState::LastAck), n(TcpState::CloseWait)).expect("server close");
        assert_eq!((pid(last_ack), last_ack.ends.local_port), (accept_hook.then_some(me).flatten(), port));
        assert_eq!(find(EventKind::Accept, n(TcpState::Established), 0).map(pid), accept_hook.then_some(me));
        assert_eq!(
            seen.iter().filter(|e| e.kind == EventKind::Close && pid(e) == me).count(),
            if close_hook { 1 + usize::from(accept_hook) } else { 0 }
        );
        assert!(seen.iter().all(|e| e.netns > 0 && e.cookie > 0 && e.time_ns > 0 && e.protocol == Protocol::Tcp));
        assert_eq!(t.lost().unwrap(), 0);
    }

    /// A kernel that ran a hook's catcher before the program it catches
    /// for would have it write every event twice: the check at start sees
    /// that and detaches every catcher. Made so here by attaching
    /// `tcp_close`'s catcher again, last, so that it runs first.
    #[test]
    fn catchers_the_kernel_runs_first_are_detached() {
        let Some((_one, mut t)) = started(1 << 20) else { return };
        let Some(at) = t.catchers.iter().position(|(h, c)| *h == Hook::TcpClose && c.is_ok()) else {
            return eprintln!("tcp_close has no catcher here");
        };
        let moved = Err(Refusal::Unsupported("moved".into()));
        let Ok(Attached { prog, _link }) = std::mem::replace(&mut t.catchers[at].1, moved) else { unreachable!() };
        drop(_link);
        let link = bpf_sys::bpf_attach_tracing(prog.as_fd()).unwrap();
        t.catchers[at].1 = Ok(Attached { prog, _link: link });
        t.check_catchers_order();
        for (hook, refused) in t.catchers() {
            let why = refused.map(ToString::to_string).unwrap_or_default();
            assert!(why.contains("in another order"), "{}'s catcher: {why}", hook.describe());
        }
        assert!(t.false_catches >= 1, "the check's own close, caught");
    }

    /// Under a loopback storm, a state change in a softirq that came while
    /// the state hook's program ran (which the kernel passes that program
    /// over for) is written by the nested hook, once: no state change of
    /// any socket is written twice, and where the kernel passed the state
    /// hook over, the nested hook caught some of it.
    #[test]
    fn a_state_change_that_interrupts_the_program_is_caught_once() {
        let Some((_one, mut t)) = started(1 << 24) else { return };
        let nested = t.hooks().any(|(h, refused)| h == Hook::Nested && refused.is_none());
        // Pairs of a client thread that connects and a server thread that
        // accepts and resets, then lets its client go on: one connection
        // at a time each, so no backlog overflows on a slow host, and none
        // left in TIME_WAIT.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut ports = Vec::new();
        let mut storm = Vec::new();
        for _ in 0..3 {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = l.local_addr().unwrap().port();
            ports.push(port);
            let storming = stop.clone();
            let (accepted, wait) = std::sync::mpsc::sync_channel(0);
            storm.push(std::thread::spawn(move || {
                while !storming.load(std::sync::atomic::Ordering::Relaxed) {
                    // A port freed by a reset may meet the reset again.
                    let Ok(c) = std::net::TcpStream::connect(("127.0.0.1", port)) else { continue };
                    wait.recv().unwrap();
                    drop(c);
                }
                // The server's last accept, whose news nobody waits for.
                drop(wait);
                drop(std::net::TcpStream::connect(("127.0.0.1", port)));
            }));
            storm.push(std::thread::spawn(move || {
                let reset = nix::libc::linger { l_onoff: 1, l_linger: 0 };
                loop {
                    let (s, _) = l.accept().unwrap();
                    nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::Linger, &reset).unwrap();
                    drop(s);
                    if accepted.send(()).is_err() {
                        break;
                    }
                }
            }));
        }
        let (mut ours, mut caught, mut told) = (Vec::new(), 0, 0);
        let start = std::time::Instant::now();
        let mut quiet_since = None;
        loop {
            // Until 50 are caught (some in the instructions the kernel
            // runs around the program, where the mark of its running is not
            // set), or 6 s: how often an interrupt nests is up to the host.
            let ran = start.elapsed().as_secs();
            let storming = caught < 50 && ran < 6;
            if !storming && !stop.swap(true, std::sync::atomic::Ordering::Relaxed) {
                quiet_since = Some(std::time::Instant::now());
            }
            match t.next() {
                Next::Event(e) => {
                    if ports.contains(&e.ends.local_port) || ports.contains(&e.ends.remote_port) {
                        ours.push((e.cookie, e.kind as u8, e.old_state, e.state));
                    }
                }
                Next::Dropped => panic!("a record that makes no sense"),
                Next::Empty if quiet_since.is_some_and(|q| q.elapsed().as_millis() > 500) => break,
                // Waiting as a caller does: the record that fills the ring
                // to `WAKE_AT` wakes it with an interrupt, on whose way out
                // the kernel runs the softirqs that came meanwhile, while
                // the program runs.
                Next::Empty => {
                    told += t.lost().unwrap();
                    caught = t.count(CAUGHT).unwrap() + t.count(CATCHES).unwrap();
                    let mut fds = [nix::poll::PollFd::new(t.fd(), nix::poll::PollFlags::POLLIN)];
                    nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u8)).unwrap();
                }
            }
        }
        storm.into_iter().for_each(|s| s.join().unwrap());
        let lost = told + t.lost().unwrap();
        let mut changes = ours.clone();
        let all = changes.len();
        changes.sort_unstable();
        let twice: Vec<_> = changes.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]).take(10).collect();
        changes.dedup();
        assert_eq!(changes.len(), all, "written twice (cookie, kind, old state, state): {twice:?}");
        // What the kernel passed over of the programs a second one catches
        // for: the state hook's, and those of the hooks with a catcher.
        let caught_for = |h: Hook| h == Hook::State || t.catchers().any(|(c, refused)| c == h && refused.is_none());
        let passed_over: u64 = t
            .hooks
            .iter()
            .filter(|(h, a)| caught_for(*h) && a.is_ok())
            .map(|(_, a)| bpf_sys::bpf_prog_recursion_misses(a.as_ref().unwrap().prog.as_fd()).unwrap())
            .sum();
        let caught = t.count(CAUGHT).unwrap() + t.count(CATCHES).unwrap();
        let catchers = t.catchers().filter(|(_, refused)| refused.is_none()).count();
        eprintln!(
            "{all} events of the storm's, {caught} caught ({catchers} catchers), {passed_over} passed over, {lost} lost"
        );
        assert!(ours.len() > 500, "a storm: {}", ours.len());
        // Told as it went, as a caller is: not less than was lost at last
        // (more where a catch, in flight on another CPU, came late).
        let uncaught = t.count(LOST).unwrap() + passed_over.saturating_sub(caught);
        assert!(lost >= uncaught, "{lost} told, {uncaught} lost");
        // Where a program tells an interrupt by its stack, every state
        // change the kernel passed over is caught, in the few instructions
        // it runs around the program too; elsewhere, those that came while
        // the program ran. A task preempted around the program's run
        // (Linux 7.0 runs a tracepoint's programs preemptibly) passes it
        // over for another task's state change on that CPU, outside any
        // interrupt: caught where each task keeps a mark, which a kernel
        // that offers task local storage takes.
        let by_stack = with_vmlinux(WHAT, |btf| Ok(stacks(&Kernel::new(btf, WHAT)).is_some())).unwrap();
        let by_task = t.task_marks().is_none();
        let offered = |h| programs().unwrap().by_task.iter().any(|(p, pair)| *p == h && pair.is_ok());
        if let (true, Some(why)) = (offered(Hook::State), t.task_marks()) {
            panic!("the kernel offers task local storage but refused the marks per task: {why}");
        }
        // A hook that attached has its catcher where its pair assembled, and
        // the kernel runs the catcher second.
        for (hook, refused) in t.catchers() {
            assert!(refused.is_none(), "{}'s catcher: {}", hook.describe(), refused.unwrap());
        }
        for (hook, _) in t.hooks().filter(|(h, r)| !matches!(h, Hook::State | Hook::Nested) && r.is_none()) {
            let caught = t.catchers().any(|(h, _)| h == hook);
            assert!(caught || !offered(hook), "{}: no catcher, its pair refused", hook.describe());
        }
        if nested && by_stack && (by_task || !may_preempt_in_the_kernel()) {
            assert_eq!(caught, passed_over, "passed over, caught");
        } else if nested && passed_over > 0 {
            assert!(caught > 0, "{passed_over} passed over, none caught");
        }
    }
}
