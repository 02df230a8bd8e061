//! The two syscalls nix has no safe wrapper for, and the one view of a
//! partly filled buffer. Everything unsafe in `procfs` is here.

use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

/// `getdents64(2)` into `buf`; returns the bytes filled (0 at the end).
pub fn getdents64(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::syscall(libc::SYS_getdents64, fd.as_raw_fd(), buf.as_mut_ptr(), buf.len()) };
    if n < 0 { Err(Errno::last()) } else { Ok(n as usize) }
}

/// `read(2)` into memory that may be uninitialised (a caller's buffer).
pub fn read_uninit(fd: BorrowedFd<'_>, buf: &mut [MaybeUninit<u8>]) -> Result<usize, Errno> {
    loop {
        // SAFETY: the kernel writes at most `buf.len()` bytes and never reads them.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            n if n >= 0 => return Ok(n as usize),
            _ if Errno::last() == Errno::EINTR => continue,
            _ => return Err(Errno::last()),
        }
    }
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
