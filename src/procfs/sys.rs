//! The syscalls nix has no safe wrapper for, the library's own threads, and
//! the one view of a partly filled buffer. Everything unsafe in `procfs` is
//! here.

use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;

/// `getdents64(2)` into `buf`; returns the bytes filled (0 at the end).
pub fn getdents64(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::syscall(libc::SYS_getdents64, fd.as_raw_fd(), buf.as_mut_ptr(), buf.len()) };
    if n < 0 { Err(Errno::last()) } else { Ok(n as usize) }
}

/// Calls `f` again while a signal interrupts it (EINTR): the one place a
/// system call is retried for that.
pub fn retry<T>(mut f: impl FnMut() -> Result<T, Errno>) -> Result<T, Errno> {
    loop {
        match f() {
            Err(Errno::EINTR) => {}
            r => return r,
        }
    }
}

/// `read(2)` into memory that may be uninitialised (a caller's buffer).
pub fn read_uninit(fd: BorrowedFd<'_>, buf: &mut [MaybeUninit<u8>]) -> Result<usize, Errno> {
    // SAFETY: the kernel writes at most `buf.len()` bytes and never reads them.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 { Err(Errno::last()) } else { Ok(n as usize) }
}

/// The first `len` bytes of `buf`, which `read_uninit` has filled.
pub fn assume_init(buf: &[MaybeUninit<u8>], len: usize) -> &[u8] {
    let init = &buf[..len];
    // SAFETY: callers pass only lengths the kernel reported as written, and
    // MaybeUninit<u8> has the layout of u8.
    unsafe { &*(init as *const [MaybeUninit<u8>] as *const [u8]) }
}

/// Initialised bytes seen as possibly uninitialised, to read into.
pub fn as_uninit_mut(buf: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: same layout; the only writes through the result are `read(2)`s,
    // which store initialised bytes, so `buf` never holds uninit memory.
    unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) }
}

/// `bpf(2)` commands, program, attach and map types (`linux/bpf.h`).
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
const BPF_BTF_LOAD: libc::c_long = 18;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_ITER_CREATE: libc::c_long = 33;
pub(crate) const BPF_PROG_TYPE_TRACING: u32 = 26;
pub(crate) const BPF_TRACE_RAW_TP: u32 = 23;
pub(crate) const BPF_TRACE_FENTRY: u32 = 24;
pub(crate) const BPF_TRACE_FEXIT: u32 = 25;
pub(crate) const BPF_TRACE_ITER: u32 = 28;
pub(crate) const BPF_MAP_TYPE_ARRAY: u32 = 2;
pub(crate) const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
pub(crate) const BPF_MAP_TYPE_LRU_HASH: u32 = 9;
pub(crate) const BPF_MAP_TYPE_RINGBUF: u32 = 27;
const BPF_MAP_TYPE_TASK_STORAGE: u32 = 29;
/// Local storage is made on first use: the kernel takes no other kind.
const BPF_F_NO_PREALLOC: u32 = 1;

/// `union bpf_attr` as `BPF_MAP_CREATE` reads it.
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
    map_ifindex: u32,
    btf_fd: u32,
    btf_key_type_id: u32,
    btf_value_type_id: u32,
}

/// `union bpf_attr` as `BPF_BTF_LOAD` reads it.
#[repr(C)]
#[derive(Default)]
struct BtfLoadAttr {
    btf: u64,
    btf_log_buf: u64,
    btf_size: u32,
    btf_log_size: u32,
    btf_log_level: u32,
    _pad: u32,
}

/// `union bpf_attr` as `BPF_MAP_*_ELEM` reads it.
#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `union bpf_attr` as `BPF_PROG_LOAD` reads it, up to `attach_btf_id`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
}

/// `union bpf_attr` as `BPF_LINK_CREATE` reads it, up to `flags`.
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
}

/// `union bpf_attr` as `BPF_ITER_CREATE` reads it.
#[repr(C)]
#[derive(Default)]
struct IterCreateAttr {
    link_fd: u32,
    flags: u32,
}

/// `union bpf_attr` as `BPF_OBJ_GET_INFO_BY_FD` reads it.
#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `struct bpf_prog_info` up to `recursion_misses` (Linux 5.12): the fields
/// before it are not read. An older kernel fills less and leaves it 0.
#[repr(C)]
#[derive(Default)]
struct ProgInfo {
    before: [u64; 26],
    recursion_misses: u64,
}

/// `union bpf_attr` as `BPF_RAW_TRACEPOINT_OPEN` reads it.
#[repr(C)]
#[derive(Default)]
struct RawTracepointAttr {
    name: u64,
    prog_fd: u32,
    _pad: u32,
}

// Where `linux/bpf.h` puts each field: a field out of place here would be
// read by the kernel as another.
const _: () = {
    use std::mem::offset_of;
    assert!(offset_of!(MapCreateAttr, max_entries) == 12 && offset_of!(MapCreateAttr, map_name) == 28);
    assert!(offset_of!(MapCreateAttr, btf_fd) == 48 && offset_of!(MapCreateAttr, btf_value_type_id) == 56);
    assert!(offset_of!(BtfLoadAttr, btf_size) == 16 && offset_of!(BtfLoadAttr, btf_log_level) == 24);
    assert!(offset_of!(MapElemAttr, key) == 8 && offset_of!(MapElemAttr, value) == 16);
    assert!(offset_of!(MapElemAttr, flags) == 24);
    assert!(offset_of!(ProgLoadAttr, insns) == 8 && offset_of!(ProgLoadAttr, license) == 16);
    assert!(offset_of!(ProgLoadAttr, log_level) == 24 && offset_of!(ProgLoadAttr, log_buf) == 32);
    assert!(offset_of!(ProgLoadAttr, prog_name) == 48 && offset_of!(ProgLoadAttr, expected_attach_type) == 68);
    assert!(offset_of!(ProgLoadAttr, attach_btf_id) == 108 && size_of::<ProgLoadAttr>() == 112);
    assert!(offset_of!(LinkCreateAttr, attach_type) == 8 && size_of::<LinkCreateAttr>() == 16);
    assert!(size_of::<IterCreateAttr>() == 8);
    assert!(offset_of!(RawTracepointAttr, prog_fd) == 8);
    assert!(offset_of!(InfoAttr, info) == 8 && offset_of!(ProgInfo, recursion_misses) == 208);
};

/// One of the `bpf_attr` shapes above.
trait Attr {}
impl Attr for MapCreateAttr {}
impl Attr for BtfLoadAttr {}
impl Attr for MapElemAttr {}
impl Attr for ProgLoadAttr {}
impl Attr for LinkCreateAttr {}
impl Attr for IterCreateAttr {}
impl Attr for RawTracepointAttr {}
impl Attr for InfoAttr {}

/// `sizeof(union bpf_attr)` of the kernels this was written against: each
/// attr goes to the kernel followed by zeros up to this size, which a newer
/// kernel takes as its own fields' zeros, and which valgrind, reading the
/// fields it knows of each command whatever the size, finds initialised.
const ATTR_LEN: usize = 144;

/// An attr and the zeros after it.
#[repr(C)]
struct Padded<A> {
    attr: A,
    zeros: [u8; ATTR_LEN],
}

/// `bpf(cmd, attr, ATTR_LEN)`.
fn bpf<A: Attr>(cmd: libc::c_long, attr: A) -> libc::c_long {
    const { assert!(size_of::<A>() <= ATTR_LEN) };
    let padded = Padded { attr, zeros: [0; ATTR_LEN] };
    // SAFETY: `padded` is one of the `repr(C)` shapes of `union bpf_attr`
    // above (none with padding inside) and at least ATTR_LEN bytes of
    // zeros, of which the kernel reads ATTR_LEN bytes; every pointer inside
    // it was taken by the callers below from a live borrow that outlives
    // this call, with its length beside it (the log is borrowed mutably:
    // the kernel writes at most `log_size` bytes; a BTF blob, `btf_size`
    // bytes, is only read; a map's key and value, of the sizes the map was
    // made with, are only read, or for a lookup written, `lookup_len`
    // bytes; a program's info, `info_len` bytes).
    unsafe { libc::syscall(libc::SYS_bpf, cmd, &padded as *const Padded<A>, ATTR_LEN) }
}

/// `name` as the kernel takes an object's name: at most 15 bytes and a NUL.
fn object_name(name: &CStr) -> [u8; 16] {
    let mut out = [0u8; 16];
    let b = name.to_bytes();
    out[..b.len().min(15)].copy_from_slice(&b[..b.len().min(15)]);
    out
}

/// A BPF map, with the sizes of its keys and values.
#[derive(Debug)]
pub struct BpfMap {
    fd: OwnedFd,
    key_size: usize,
    value_size: usize,
    /// What a lookup writes: the value, or one (8-byte aligned) per
    /// possible CPU for a per-CPU map.
    lookup_len: usize,
}

impl BpfMap {
    /// A new map of `map_type` (`BPF_MAP_TYPE_*`); `name` is cut to 15 bytes.
    pub fn create(map_type: u32, key_size: u32, value_size: u32, entries: u32, name: &CStr) -> Result<Self, Errno> {
        let lookup_len = match map_type {
            BPF_MAP_TYPE_PERCPU_ARRAY => (value_size as usize).next_multiple_of(8) * possible_cpus()?,
            _ => value_size as usize,
        };
        let a = MapCreateAttr {
            map_type,
            key_size,
            value_size,
            max_entries: entries,
            map_name: object_name(name),
            ..MapCreateAttr::default()
        };
        let fd = owned_fd(bpf(BPF_MAP_CREATE, a))?;
        Ok(Self { fd, key_size: key_size as usize, value_size: value_size as usize, lookup_len })
    }

    /// A new task local storage map (`BPF_MAP_TYPE_TASK_STORAGE`): an entry
    /// of `value_size` bytes per task, made when a program first asks for
    /// it with `BPF_LOCAL_STORAGE_GET_F_CREATE`, gone with the task. The
    /// kernel takes one only with the BTF of its key (a 4-byte int) and
    /// value: `btf`, of types `key_type` and `value_type`.
    pub fn create_task_storage(
        value_size: u32,
        btf: BorrowedFd<'_>,
        (key_type, value_type): (u32, u32),
        name: &CStr,
    ) -> Result<Self, Errno> {
        let a = MapCreateAttr {
            map_type: BPF_MAP_TYPE_TASK_STORAGE,
            key_size: 4,
            value_size,
            map_flags: BPF_F_NO_PREALLOC,
            map_name: object_name(name),
            btf_fd: btf.as_raw_fd() as u32,
            btf_key_type_id: key_type,
            btf_value_type_id: value_type,
            ..MapCreateAttr::default()
        };
        let fd = owned_fd(bpf(BPF_MAP_CREATE, a))?;
        Ok(Self { fd, key_size: 4, value_size: value_size as usize, lookup_len: value_size as usize })
    }

    /// The entry of `key`, into `value`: the map's value, or for a per-CPU
    /// map each CPU's, 8-byte aligned; `EINVAL` if either is not of the
    /// length the map has.
    pub fn lookup(&self, key: &[u8], value: &mut [u8]) -> Result<(), Errno> {
        self.elem(BPF_MAP_LOOKUP_ELEM, key, (value.as_mut_ptr(), value.len()), self.lookup_len)
    }

    /// What `lookup` writes.
    pub fn lookup_len(&self) -> usize {
        self.lookup_len
    }

    /// Sets the entry of `key` to `value`; `EINVAL` if either is not of the
    /// map's size.
    pub fn update(&self, key: &[u8], value: &[u8]) -> Result<(), Errno> {
        self.elem(BPF_MAP_UPDATE_ELEM, key, (value.as_ptr(), value.len()), self.value_size)
    }

    /// The body of `lookup` and `update`: `cmd` on the entry of `key`, with
    /// the `value` bytes the caller lends (written by a lookup, read by an
    /// update); `EINVAL` unless the key is of the map's size and the value
    /// of `value_len`.
    fn elem(&self, cmd: libc::c_long, key: &[u8], value: (*const u8, usize), value_len: usize) -> Result<(), Errno> {
        if key.len() != self.key_size || value.1 != value_len {
            return Err(Errno::EINVAL);
        }
        let a = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: key.as_ptr() as u64,
            value: value.0 as u64,
            ..MapElemAttr::default()
        };
        if bpf(cmd, a) < 0 { Err(Errno::last()) } else { Ok(()) }
    }
}

impl AsFd for BpfMap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A program to load: its type, what it attaches to, its instructions (8
/// bytes each), its license and name.
pub struct ProgLoad<'a> {
    pub prog_type: u32,
    pub expected_attach_type: u32,
    pub attach_btf_id: u32,
    pub insns: &'a [[u8; 8]],
    pub license: &'a CStr,
    pub name: &'a CStr,
}

/// Loads `p`; with `log`, the verifier writes why it refuses (a
/// NUL-terminated text) there.
pub fn bpf_prog_load(p: &ProgLoad<'_>, log: Option<&mut [u8]>) -> Result<OwnedFd, Errno> {
    let mut a = ProgLoadAttr {
        prog_type: p.prog_type,
        insn_cnt: u32::try_from(p.insns.len()).map_err(|_| Errno::E2BIG)?,
        insns: p.insns.as_ptr() as u64,
        license: p.license.as_ptr() as u64,
        prog_name: object_name(p.name),
        expected_attach_type: p.expected_attach_type,
        attach_btf_id: p.attach_btf_id,
        ..ProgLoadAttr::default()
    };
    if let Some(log) = log {
        a.log_level = 1;
        a.log_size = u32::try_from(log.len()).map_err(|_| Errno::E2BIG)?;
        a.log_buf = log.as_mut_ptr() as u64;
    }
    owned_fd(bpf(BPF_PROG_LOAD, a))
}

/// Loads BTF `blob` (types a map's keys and values are described by).
pub fn bpf_btf_load(blob: &[u8]) -> Result<OwnedFd, Errno> {
    let btf_size = u32::try_from(blob.len()).map_err(|_| Errno::E2BIG)?;
    owned_fd(bpf(BPF_BTF_LOAD, BtfLoadAttr { btf: blob.as_ptr() as u64, btf_size, ..BtfLoadAttr::default() }))
}

/// A link of program `prog` by `attach_type` (for an iterator: one that
/// keeps the program and makes iterators of it).
pub fn bpf_link_create(prog: BorrowedFd<'_>, attach_type: u32) -> Result<OwnedFd, Errno> {
    let a = LinkCreateAttr { prog_fd: prog.as_raw_fd() as u32, attach_type, ..LinkCreateAttr::default() };
    owned_fd(bpf(BPF_LINK_CREATE, a))
}

/// Attaches tracing program `prog` (`tp_btf`, `fentry`, `fexit`) to the
/// kernel function or tracepoint it was loaded for; closing the link
/// detaches it.
pub fn bpf_attach_tracing(prog: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    let a = RawTracepointAttr { prog_fd: prog.as_raw_fd() as u32, ..RawTracepointAttr::default() };
    owned_fd(bpf(BPF_RAW_TRACEPOINT_OPEN, a))
}

/// How many times the kernel passed over program `prog` because it was
/// already running on that CPU (`bpf_prog_info.recursion_misses`): a
/// tracing program nested in itself, as when its tracepoint fires in an
/// interrupt that came while it ran. 0 on kernels before 5.12.
pub fn bpf_prog_recursion_misses(prog: BorrowedFd<'_>) -> Result<u64, Errno> {
    let mut info = ProgInfo::default();
    let a = InfoAttr {
        bpf_fd: prog.as_raw_fd() as u32,
        info_len: size_of::<ProgInfo>() as u32,
        info: &mut info as *mut ProgInfo as u64,
    };
    if bpf(BPF_OBJ_GET_INFO_BY_FD, a) < 0 { Err(Errno::last()) } else { Ok(info.recursion_misses) }
}

/// How many CPUs the kernel may ever bring up: what a per-CPU map holds a
/// value for (`/sys/devices/system/cpu/possible`, "0-N" or a list).
fn possible_cpus() -> Result<usize, Errno> {
    let text = std::fs::read("/sys/devices/system/cpu/possible")
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
    let last = text.trim_ascii().rsplit(|&b| b == b'-' || b == b',').next().unwrap_or_default();
    let n: usize = std::str::from_utf8(last).ok().and_then(|t| t.parse().ok()).ok_or(Errno::EINVAL)?;
    n.checked_add(1).filter(|&n| n <= 1 << 16).ok_or(Errno::EINVAL)
}

/// A BPF ring buffer, mapped: its consumer position (the library's to
/// write) and its producer position and data (the kernel's, read-only),
/// the data mapped twice in a row so a record that wraps reads as one.
#[derive(Debug)]
pub struct Ring {
    consumer: NonNull<u8>,
    producer: NonNull<u8>,
    /// Bytes of data: a power of two.
    size: usize,
    page: usize,
}

// SAFETY: the mappings are the process's, not the thread's; `Ring` is their
// one owner and reads or writes them only through `&mut self`.
unsafe impl Send for Ring {}

/// What the ring held next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingNext {
    /// Nothing committed yet.
    Empty,
    /// A record of `len` bytes, its first `out.len()` at most copied out.
    Record { len: usize },
    /// A record its writer discarded; passed over.
    Discarded,
    /// A header that can't be the kernel's (longer than the ring): the
    /// ring can no longer be read.
    Broken,
}

const RINGBUF_BUSY: u32 = 1 << 31;
const RINGBUF_DISCARD: u32 = 1 << 30;
const RINGBUF_HEADER: usize = 8;

impl Ring {
    /// Maps ring buffer map `fd` of `size` data bytes (a power of two and
    /// a multiple of the page size, as the map was created with).
    pub fn map(fd: BorrowedFd<'_>, size: usize) -> Result<Self, Errno> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).map_err(|_| Errno::EINVAL)?;
        if !size.is_power_of_two() || size % page != 0 {
            return Err(Errno::EINVAL);
        }
        let map = |len: usize, prot, off: usize| {
            // SAFETY: a new shared mapping of `len` bytes of the map's fd at
            // `off`, placed by the kernel; nothing else refers to it yet.
            let p =
                unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd.as_raw_fd(), off as i64) };
            if p == libc::MAP_FAILED {
                Err(Errno::last())
            } else {
                Ok(NonNull::new(p.cast::<u8>()).ok_or(Errno::EINVAL)?)
            }
        };
        let consumer = map(page, libc::PROT_READ | libc::PROT_WRITE, 0)?;
        let producer = match map(page + 2 * size, libc::PROT_READ, page) {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: mapped just above, with this length, and never shared.
                unsafe { libc::munmap(consumer.as_ptr().cast(), page) };
                return Err(e);
            }
        };
        Ok(Self { consumer, producer, size, page })
    }

    /// Takes the next record, copying at most `out.len()` bytes of it into
    /// `out`; a record is consumed as soon as it is copied.
    pub fn next(&mut self, out: &mut [u8]) -> RingNext {
        let cons_ptr = self.consumer.as_ptr().cast::<u64>();
        // SAFETY: the consumer page is mapped read-write for as long as
        // `self`, page-aligned, and only this process writes it.
        let cons = unsafe { AtomicU64::from_ptr(cons_ptr) }.load(Ordering::Relaxed);
        // SAFETY: the producer page is mapped (read-only) for as long as
        // `self` and page-aligned; the acquire fence orders the reads of the
        // records after it, as the kernel's release store of it orders
        // their writes before.
        let prod = unsafe { std::ptr::read_volatile(self.producer.as_ptr().cast::<u64>()) };
        std::sync::atomic::fence(Ordering::Acquire);
        if cons >= prod {
            return RingNext::Empty;
        }
        let at = (cons as usize) & (self.size - 1);
        // SAFETY: `at` is below `size` and 8-aligned (records are), and the
        // data, mapped twice, spans `2 * size` bytes after the producer page.
        let record = unsafe { self.producer.as_ptr().add(self.page + at) };
        // SAFETY: as above; the kernel sets the header's length with a
        // release store once the record is written.
        let header = unsafe { std::ptr::read_volatile(record.cast::<u32>()) };
        std::sync::atomic::fence(Ordering::Acquire);
        if header & RINGBUF_BUSY != 0 {
            return RingNext::Empty;
        }
        let len = (header & !(RINGBUF_BUSY | RINGBUF_DISCARD)) as usize;
        if len + RINGBUF_HEADER > self.size {
            return RingNext::Broken;
        }
        let next = if header & RINGBUF_DISCARD != 0 {
            RingNext::Discarded
        } else {
            let n = len.min(out.len());
            // SAFETY: the record's `len` bytes follow its header inside the
            // double mapping (`at + 8 + len <= 2 * size`); committed, the
            // kernel does not write them until the consumer position passes
            // them, and `out` is a distinct borrow of at least `n` bytes.
            unsafe { std::ptr::copy_nonoverlapping(record.add(RINGBUF_HEADER), out.as_mut_ptr(), n) };
            RingNext::Record { len }
        };
        let advanced = cons + (len + RINGBUF_HEADER).next_multiple_of(8) as u64;
        // SAFETY: as for the load above; the release store hands the
        // record's bytes back to the kernel after they were copied.
        unsafe { AtomicU64::from_ptr(cons_ptr) }.store(advanced, Ordering::Release);
        next
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: both were mapped by `map` with these lengths and are
        // unmapped once, here; no reference into them outlives `self`.
        unsafe {
            libc::munmap(self.consumer.as_ptr().cast(), self.page);
            libc::munmap(self.producer.as_ptr().cast(), self.page + 2 * self.size);
        }
    }
}

/// A new iterator of `link`: read it to run the program over every object.
pub fn bpf_iter_create(link: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    let a = IterCreateAttr { link_fd: link.as_raw_fd() as u32, ..IterCreateAttr::default() };
    owned_fd(bpf(BPF_ITER_CREATE, a))
}

/// A new IPv4 TCP socket, never connected: closing it runs `tcp_close`.
pub fn tcp_socket() -> Result<OwnedFd, Errno> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
    socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
}

/// Four bytes from the kernel's random pool (`getrandom(2)`).
pub fn random_u32() -> Result<u32, Errno> {
    let mut b = [0u8; 4];
    let mut getrandom = || {
        // SAFETY: the kernel writes at most `b.len()` bytes into `b`.
        let n = unsafe { libc::syscall(libc::SYS_getrandom, b.as_mut_ptr(), b.len(), 0) };
        if n < 0 { Err(Errno::last()) } else { Ok(n) }
    };
    // Requests of up to 256 bytes are never cut short, but be sure.
    while retry(&mut getrandom)? != 4 {}
    Ok(u32::from_ne_bytes(b))
}

/// A thread's stack: enough for a few syscalls.
const THREAD_STACK: usize = 64 << 10;

/// Runs `job` on a new thread of its own and returns its result once the
/// thread has ended. The thread starts with every signal blocked (the mask
/// is set on this thread around `pthread_create`, which the new one
/// inherits), so no signal handler ever runs on it. Nothing is allocated:
/// `job` and its result live on this stack until the join.
pub fn run_on_own_thread<F: FnOnce() -> R + Send, R: Send>(job: F) -> Result<R, Errno> {
    use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};

    struct Slot<F, R> {
        job: Option<F>,
        out: Option<R>,
    }
    extern "C" fn start<F: FnOnce() -> R, R>(slot: *mut libc::c_void) -> *mut libc::c_void {
        // SAFETY: `slot` is the `Slot` below, untouched by its owner until
        // this thread is joined.
        let slot = unsafe { &mut *slot.cast::<Slot<F, R>>() };
        // No panic may unwind out of a thread's start routine; the result
        // is then `None`.
        let run = std::panic::AssertUnwindSafe(|| slot.job.take().map(|job| job()));
        slot.out = std::panic::catch_unwind(run).ok().flatten();
        std::ptr::null_mut()
    }

    let mut slot = Slot { job: Some(job), out: None };
    let mut attr = MaybeUninit::<libc::pthread_attr_t>::uninit();
    // SAFETY: initialises `attr`, destroyed below.
    let rc = unsafe { libc::pthread_attr_init(attr.as_mut_ptr()) };
    if rc != 0 {
        return Err(Errno::from_raw(rc));
    }
    // SAFETY: `attr` is initialised. A size refused leaves the default.
    unsafe { libc::pthread_attr_setstacksize(attr.as_mut_ptr(), THREAD_STACK.max(libc::PTHREAD_STACK_MIN)) };
    let mut mask = SigSet::empty();
    let blocked = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), Some(&mut mask));
    let mut thread = MaybeUninit::<libc::pthread_t>::uninit();
    let rc = match blocked {
        // SAFETY: `start` gets a pointer to `slot`, which outlives the
        // thread: it is joined before this function returns.
        Ok(()) => unsafe {
            libc::pthread_create(thread.as_mut_ptr(), attr.as_ptr(), start::<F, R>, (&raw mut slot).cast())
        },
        Err(e) => e as i32,
    };
    if blocked.is_ok() {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&mask), None);
    }
    // SAFETY: initialised above, not used again.
    unsafe { libc::pthread_attr_destroy(attr.as_mut_ptr()) };
    if rc != 0 {
        return Err(Errno::from_raw(rc));
    }
    // SAFETY: a joinable thread made above, joined once.
    if unsafe { libc::pthread_join(thread.assume_init(), std::ptr::null_mut()) } != 0 {
        // Joining a thread of our own cannot fail; if it did, `slot` might
        // still be in use, and returning would free it under that thread.
        std::process::abort();
    }
    slot.out.ok_or(Errno::EIO)
}

/// Runs `job` on a new detached thread with every signal blocked (set on
/// this thread around the spawn, inherited by the new one, then restored
/// here), for work that may block for as long as another process wishes:
/// nothing waits for it.
pub fn spawn_detached(name: &str, job: impl FnOnce() + Send + 'static) -> Result<(), Errno> {
    use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
    let mut mask = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), Some(&mut mask))?;
    let spawned = std::thread::Builder::new().name(name.into()).stack_size(THREAD_STACK).spawn(job);
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&mask), None);
    spawned.map(drop).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EAGAIN)))
}

/// What `statx` tells of a file from what the kernel has cached: its type
/// bits, inode and device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// The type bits of `st_mode`.
    pub mode: u32,
    pub ino: u64,
    pub dev: u64,
}

impl Meta {
    pub fn is(&self, kind: nix::sys::stat::SFlag) -> bool {
        self.mode == kind.bits()
    }
}

/// `statx(2)` of `path` under `dir` (or of `dir` itself, where `path` is
/// empty), following a final link, with `AT_STATX_DONT_SYNC`: a network or
/// FUSE filesystem answers from its cache and is never asked, so a server
/// that does not answer cannot block the caller.
pub fn stat_cached(dir: BorrowedFd<'_>, path: &CStr) -> Result<Meta, Errno> {
    let mut stx = MaybeUninit::<libc::statx>::zeroed();
    let flags = libc::AT_STATX_DONT_SYNC | if path.is_empty() { libc::AT_EMPTY_PATH } else { 0 };
    let mask = libc::STATX_TYPE | libc::STATX_INO;
    // SAFETY: the kernel writes one `struct statx` into `stx`; `path` is NUL-terminated.
    let rc = unsafe { libc::statx(dir.as_raw_fd(), path.as_ptr(), flags, mask, stx.as_mut_ptr()) };
    if rc < 0 {
        return Err(Errno::last());
    }
    // SAFETY: zeroed, then filled by the kernel.
    let stx = unsafe { stx.assume_init() };
    let dev = libc::makedev(stx.stx_dev_major, stx.stx_dev_minor);
    Ok(Meta { mode: u32::from(stx.stx_mode) & libc::S_IFMT, ino: stx.stx_ino, dev })
}

/// `readlinkat(2)` of `path` under `dir` into `buf`; returns the length
/// (`ENAMETOOLONG` if the target may not have fit).
pub fn readlinkat(dir: BorrowedFd<'_>, path: &CStr, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`; `path` is NUL-terminated.
    let n = unsafe { libc::readlinkat(dir.as_raw_fd(), path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    match n {
        n if n < 0 => Err(Errno::last()),
        n if n as usize == buf.len() => Err(Errno::ENAMETOOLONG),
        n => Ok(n as usize),
    }
}

/// A new fd of `ret`, a system call's result that is an fd nothing else owns.
fn owned_fd(ret: libc::c_long) -> Result<OwnedFd, Errno> {
    if ret < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) })
}

/// `pidfd_open(2)`: a pidfd of process `pid` of the caller's pid namespace.
pub fn pidfd_open(pid: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: no pointer is passed.
    owned_fd(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })
}

/// `pidfd_getfd(2)`: a copy (close-on-exec) of fd `fd` of the process of
/// `pidfd` (needs the right to ptrace it).
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, fd: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: no pointer is passed.
    owned_fd(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) })
}

/// `ioctl(SIOCGSKNS)`: an fd of the network namespace socket `sock` lives in.
pub fn socket_netns(sock: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    // SAFETY: SIOCGSKNS takes no argument.
    owned_fd(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGSKNS as _) }.into())
}

/// `getsockopt(2)` of `level`/`name` into `buf`; returns the bytes written.
pub fn getsockopt_bytes(sock: BorrowedFd<'_>, level: i32, name: i32, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut len = libc::socklen_t::try_from(buf.len()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: the kernel writes at most `len` bytes into `buf` and stores the length in `len`.
    let rc = unsafe { libc::getsockopt(sock.as_raw_fd(), level, name, buf.as_mut_ptr().cast(), &mut len) };
    if rc < 0 { Err(Errno::last()) } else { Ok(len as usize) }
}

/// `kcmp(2)` with `KCMP_FILES`: whether processes (or threads) `a` and `b`
/// of the caller's pid namespace share one fd table.
pub fn same_fd_table(a: i32, b: i32) -> Result<bool, Errno> {
    const KCMP_FILES: libc::c_int = 2;
    // SAFETY: no pointer is passed.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, a, b, KCMP_FILES, 0, 0) };
    if r < 0 { Err(Errno::last()) } else { Ok(r == 0) }
}

/// `getsockname(2)` (or, with `peer`, `getpeername(2)`) of `sock` as the
/// bytes of its `struct sockaddr_storage`.
pub fn socket_name(sock: BorrowedFd<'_>, peer: bool) -> Result<[u8; 128], Errno> {
    let mut addr = [0u8; 128];
    let mut len = addr.len() as libc::socklen_t;
    let call = if peer { libc::getpeername } else { libc::getsockname };
    // SAFETY: the kernel writes at most `len` bytes into `addr` and stores the length in `len`.
    let rc = unsafe { call(sock.as_raw_fd(), addr.as_mut_ptr().cast(), &mut len) };
    if rc < 0 { Err(Errno::last()) } else { Ok(addr) }
}

/// Whether `ns`, an open nsfs file, is a network namespace (`ioctl`
/// `NS_GET_NSTYPE`, Linux 4.11).
pub fn is_net_namespace(ns: BorrowedFd<'_>) -> Result<bool, Errno> {
    // SAFETY: NS_GET_NSTYPE takes no argument.
    let r = unsafe { libc::ioctl(ns.as_raw_fd(), libc::NS_GET_NSTYPE as _) };
    if r < 0 { Err(Errno::last()) } else { Ok(r == libc::CLONE_NEWNET) }
}
