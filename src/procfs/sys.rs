//! The syscalls nix has no safe wrapper for, the library's own threads, and
//! the one view of a partly filled buffer. Everything unsafe in `procfs` is
//! here.

use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

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

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_ITER_CREATE: libc::c_long = 33;
const BPF_PROG_TYPE_TRACING: u32 = 26;
const BPF_TRACE_ITER: u32 = 28;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
/// `sizeof(union bpf_attr)` of the kernels this was written against; a
/// kernel checks that bytes past what it knows are zero.
const ATTR_LEN: usize = 144;

/// `bpf(cmd, attr)`.
fn bpf(cmd: libc::c_long, attr: &[u8; ATTR_LEN]) -> libc::c_long {
    // SAFETY: every pointer inside `attr` was taken by the callers below from
    // a live borrow that outlives this call, with its length beside it (the
    // log is borrowed mutably: the kernel writes at most `log_size` bytes;
    // a map's key and value are read, never written).
    unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_ptr(), ATTR_LEN) }
}

fn put(attr: &mut [u8; ATTR_LEN], at: usize, bytes: &[u8]) {
    attr[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Where `union bpf_attr` keeps each field a command reads (`linux/bpf.h`):
/// `prog_load`, then `link_create` and `iter_create`.
const ATTR_PROG_TYPE: usize = 0;
const ATTR_INSN_CNT: usize = 4;
const ATTR_INSNS: usize = 8;
const ATTR_LICENSE: usize = 16;
const ATTR_LOG_LEVEL: usize = 24;
const ATTR_LOG_SIZE: usize = 28;
const ATTR_LOG_BUF: usize = 32;
const ATTR_PROG_NAME: usize = 48;
const ATTR_EXPECTED_ATTACH_TYPE: usize = 68;
const ATTR_ATTACH_BTF_ID: usize = 108;
const ATTR_LINK_PROG_FD: usize = 0;
const ATTR_LINK_ATTACH_TYPE: usize = 8;
const ATTR_ITER_LINK_FD: usize = 0;
const ATTR_MAP_TYPE: usize = 0;
const ATTR_KEY_SIZE: usize = 4;
const ATTR_VALUE_SIZE: usize = 8;
const ATTR_MAX_ENTRIES: usize = 12;
const ATTR_MAP_NAME: usize = 28;
const ATTR_ELEM_MAP_FD: usize = 0;
const ATTR_ELEM_KEY: usize = 8;
const ATTR_ELEM_VALUE: usize = 16;

/// A BPF array map of `u64` values, keyed by a `u32` index.
#[derive(Debug)]
pub struct U64Array(OwnedFd);

impl U64Array {
    /// A new map of `entries` values, all 0; `name` is cut to 15 bytes.
    pub fn create(name: &CStr, entries: u32) -> Result<Self, Errno> {
        let mut a = [0u8; ATTR_LEN];
        put(&mut a, ATTR_MAP_TYPE, &BPF_MAP_TYPE_ARRAY.to_ne_bytes());
        put(&mut a, ATTR_KEY_SIZE, &(size_of::<u32>() as u32).to_ne_bytes());
        put(&mut a, ATTR_VALUE_SIZE, &(size_of::<u64>() as u32).to_ne_bytes());
        put(&mut a, ATTR_MAX_ENTRIES, &entries.to_ne_bytes());
        put(&mut a, ATTR_MAP_NAME, &name.to_bytes()[..name.to_bytes().len().min(15)]);
        owned_fd(bpf(BPF_MAP_CREATE, &a)).map(Self)
    }

    /// Sets entry `key` to `value`.
    pub fn set(&self, key: u32, value: u64) -> Result<(), Errno> {
        let mut a = [0u8; ATTR_LEN];
        put(&mut a, ATTR_ELEM_MAP_FD, &(self.0.as_raw_fd() as u32).to_ne_bytes());
        put(&mut a, ATTR_ELEM_KEY, &(&key as *const u32 as u64).to_ne_bytes());
        put(&mut a, ATTR_ELEM_VALUE, &(&value as *const u64 as u64).to_ne_bytes());
        if bpf(BPF_MAP_UPDATE_ELEM, &a) < 0 { Err(Errno::last()) } else { Ok(()) }
    }
}

impl AsFd for U64Array {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Loads a BPF iterator program (`insns`, 8 bytes each) for the kernel
/// function whose BTF id is `attach_btf_id`; with `log`, the verifier
/// writes why it refuses (a NUL-terminated text) there.
pub fn bpf_iter_prog_load(
    insns: &[[u8; 8]],
    license: &CStr,
    attach_btf_id: u32,
    log: Option<&mut [u8]>,
) -> Result<OwnedFd, Errno> {
    let mut a = [0u8; ATTR_LEN];
    put(&mut a, ATTR_PROG_TYPE, &BPF_PROG_TYPE_TRACING.to_ne_bytes());
    put(&mut a, ATTR_INSN_CNT, &u32::try_from(insns.len()).map_err(|_| Errno::E2BIG)?.to_ne_bytes());
    put(&mut a, ATTR_INSNS, &(insns.as_ptr() as u64).to_ne_bytes());
    put(&mut a, ATTR_LICENSE, &(license.as_ptr() as u64).to_ne_bytes());
    if let Some(log) = log {
        put(&mut a, ATTR_LOG_LEVEL, &1u32.to_ne_bytes());
        put(&mut a, ATTR_LOG_SIZE, &u32::try_from(log.len()).map_err(|_| Errno::E2BIG)?.to_ne_bytes());
        put(&mut a, ATTR_LOG_BUF, &(log.as_mut_ptr() as u64).to_ne_bytes());
    }
    put(&mut a, ATTR_PROG_NAME, b"procspy_fds");
    put(&mut a, ATTR_EXPECTED_ATTACH_TYPE, &BPF_TRACE_ITER.to_ne_bytes());
    put(&mut a, ATTR_ATTACH_BTF_ID, &attach_btf_id.to_ne_bytes());
    owned_fd(bpf(BPF_PROG_LOAD, &a))
}

/// A link that keeps an iterator program and makes iterators of it.
pub fn bpf_iter_link_create(prog: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    let mut a = [0u8; ATTR_LEN];
    put(&mut a, ATTR_LINK_PROG_FD, &(prog.as_raw_fd() as u32).to_ne_bytes());
    put(&mut a, ATTR_LINK_ATTACH_TYPE, &BPF_TRACE_ITER.to_ne_bytes());
    owned_fd(bpf(BPF_LINK_CREATE, &a))
}

/// A new iterator of `link`: read it to run the program over every object.
pub fn bpf_iter_create(link: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    let mut a = [0u8; ATTR_LEN];
    put(&mut a, ATTR_ITER_LINK_FD, &(link.as_raw_fd() as u32).to_ne_bytes());
    owned_fd(bpf(BPF_ITER_CREATE, &a))
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
