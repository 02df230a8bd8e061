//! Syscalls relative to a proc-root directory fd. This layer knows where
//! things live under a proc root, not what they mean: no parsing here.
//!
//! Paths are built on the stack (`PidPath`) and directories are read with
//! `getdents64` into a caller-owned buffer, so a warm walk allocates nothing.

mod netlink;
mod netns;
mod pidfd;
mod probe;
mod sys;
mod table;

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{FileStat, Mode, fstatat};

use crate::parse::proc;
pub use crate::parse::proc::Dirent;

pub use netlink::{DestroySocket, DiagSocket, HostProc, Netns};
pub(crate) use netns::LINK_MAX;
pub use pidfd::{Closer, PidFd};
pub use probe::{Known, Probes};
pub(crate) use sys::retry;
pub use sys::{Meta as EntryMeta, random_u32, same_fd_table};

/// The `bpf(2)` calls, for `crate::bpf`.
pub(crate) mod bpf_sys {
    pub(crate) use super::sys::{
        BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_LRU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_RINGBUF,
        BPF_PROG_TYPE_TRACING, BPF_TRACE_FENTRY, BPF_TRACE_FEXIT, BPF_TRACE_ITER, BPF_TRACE_RAW_TP, BpfMap, ProgLoad,
        Ring, RingNext, bpf_attach_tracing, bpf_btf_load, bpf_iter_create, bpf_link_create, bpf_prog_load,
        bpf_prog_recursion_misses, tcp_socket,
    };
}

/// A socket fd of a process and what the kernel holds of the socket, as
/// the BPF owner scan records it or a socket taken with `pidfd_getfd` tells.
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
    pub ends: Ends,
    /// Requests (SYN_RECV) waiting on a TCP listener; 0 for other sockets.
    pub pending: u32,
}

/// A socket's two ends, as the kernel holds them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ends {
    /// Host order.
    pub local_port: u16,
    pub remote_port: u16,
    /// Network order; for an IPv4 socket only the first 4 bytes are set.
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
}
pub use table::TableBuf;
use table::at_eof;

/// `getdents64` chunk size that lists most fd directories in one call.
pub(crate) const DIRENT_BUF: usize = 64 * 1024;

const DT_LNK: u8 = 10;

/// An open proc root (normally `/proc`).
#[derive(Debug)]
pub struct ProcRoot {
    dir: OwnedFd,
    probes: Probes,
    slow_walks: netns::SlowWalks,
}

impl ProcRoot {
    /// Opens `path` as a directory. A FIFO, a file or a missing path fails here,
    /// without blocking (`O_DIRECTORY` is checked before any open side effect).
    pub fn open(path: &[u8]) -> Result<Self, Errno> {
        let dir = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        )?;
        // Opening a directory needs search rights only; listing it needs read.
        let mut probe = [0u8; 512];
        sys::getdents64(dir.as_fd(), &mut probe)?;
        Ok(Self { dir, probes: Probes::default(), slow_walks: netns::SlowWalks::default() })
    }

    /// What has been learnt of the kernel behind this root.
    pub fn probes(&self) -> &Probes {
        &self.probes
    }

    /// Appends every numeric entry (a pid in `1..=i32::MAX`) of the root to
    /// `out`. Symlinks (`self`, `thread-self`) and other names are passed over.
    pub fn list_pids(&self, dents: &mut [u8], out: &mut Vec<i32>) -> Result<(), Errno> {
        let dir =
            openat(self.dir.as_fd(), c".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
        let mut list = DirList::new(dir.as_fd(), dents);
        while let Some(entry) = list.next_entry()? {
            if entry.d_type == DT_LNK {
                continue;
            }
            if let Some(pid) = proc::pid_name(entry.name.to_bytes()) {
                out.push(pid);
            }
        }
        Ok(())
    }

    /// Whether this root's pids and uids are the kernel's own: a real
    /// procfs whose `self` is the caller, and the caller in the initial pid
    /// namespace (its `NSpid` lists one number) and user namespace (its
    /// `uid_map` maps every uid to itself). Only then do the ids the kernel
    /// reports by other means (a BPF iterator, `pidfd_getfd`) mean what
    /// this root's do. Asked once per root: a warm pass allocates nothing.
    pub fn shows_kernel_ids(&self) -> bool {
        let probe = &self.probes.kernel_ids;
        match probe.get() {
            Known::Yes => true,
            Known::No => false,
            Known::Unknown => {
                let yes = self.ask_kernel_ids();
                probe.set(yes);
                yes
            }
        }
    }

    fn ask_kernel_ids(&self) -> bool {
        use nix::sys::statfs::{PROC_SUPER_MAGIC, fstatfs};
        if fstatfs(&self.dir).map(|s| s.filesystem_type()) != Ok(PROC_SUPER_MAGIC) {
            return false;
        }
        let me = std::process::id().to_string();
        if nix::fcntl::readlinkat(self.dir.as_fd(), c"self").ok().as_deref() != Some(std::ffi::OsStr::new(&me)) {
            return false;
        }
        let read = |path: &[u8]| -> Option<Vec<u8>> {
            let fd = self.open_path(path).ok()?;
            let mut buf = Vec::new();
            let n = read_all(fd.as_fd(), &mut buf, 1 << 16, Records::Short).ok()?;
            buf.truncate(n);
            Some(buf)
        };
        read(b"self/uid_map").is_some_and(|m| proc::uid_map_is_identity(&m))
            && read(b"self/status").and_then(|s| proc::nspid_depth(&s)) == Some(1)
    }

    /// `stat()` of `PID/suffix`, following a final symlink (`ns/net` is one).
    pub fn stat(&self, pid: i32, suffix: &[u8]) -> Result<FileStat, Errno> {
        fstatat(self.dir.as_fd(), PidPath::new(pid, suffix)?.as_cstr(), AtFlags::empty())
    }

    /// Opens the directory `PID/suffix` for listing; a symlink there is refused.
    pub fn open_dir(&self, pid: i32, suffix: &[u8]) -> Result<OwnedFd, Errno> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        self.open_beneath(PidPath::new(pid, suffix)?.as_cstr(), flags)
    }

    /// `openat` that cannot leave the root: no `..` or absolute symlink out
    /// of it, no magic link (`openat2` with `RESOLVE_BENEATH`; before Linux
    /// 5.6, or where a seccomp filter refuses it, plain `openat`).
    fn open_beneath(&self, path: &CStr, flags: OFlag) -> Result<OwnedFd, Errno> {
        let known = self.probes.openat2.get();
        if known != Known::No {
            let how =
                OpenHow::new().flags(flags).resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
            match openat2(self.dir.as_fd(), path, how) {
                Err(Errno::ENOSYS) => self.probes.openat2.set(false),
                Err(Errno::EPERM) => {}
                r => {
                    if known == Known::Unknown {
                        self.probes.openat2.set(true);
                    }
                    return r;
                }
            }
        }
        openat(self.dir.as_fd(), path, flags, Mode::empty())
    }

    /// Opens `path` under the root, following symlinks.
    fn open_path(&self, path: &[u8]) -> Result<OwnedFd, Errno> {
        openat(self.dir.as_fd(), path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
    }

    /// `PID/ns/net` as an `O_PATH` fd, to check before use
    /// (`HostProc::netns`). `PID/ns` must be a directory beneath the root,
    /// reached through no symlink; its `net` entry, in a procfs a magic link
    /// to the namespace, is followed. `O_PATH` opens nothing: a FIFO or a
    /// device there can't block or act.
    pub fn open_netns(&self, pid: i32) -> Result<OwnedFd, Errno> {
        let dir = self.open_dir(pid, b"ns")?;
        openat(dir.as_fd(), c"net", OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
    }

    /// Opens the file `PID/suffix` for reading. `O_NONBLOCK` keeps a FIFO in
    /// a hostile tree from hanging the open; proc files ignore it.
    pub fn open_file(&self, pid: i32, suffix: &[u8]) -> Result<OwnedFd, Errno> {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        self.open_beneath(PidPath::new(pid, suffix)?.as_cstr(), flags)
    }
}

/// What an entry of an open directory is, following a final symlink (a
/// `PID/fd/N` link leads to the open file itself), from what the kernel
/// has cached: another process's file on a FUSE or network filesystem is
/// not asked (its server might never answer).
pub fn stat_entry(dir: BorrowedFd<'_>, name: &CStr) -> Result<EntryMeta, Errno> {
    sys::stat_cached(dir, name)
}

/// How long a file's records may be, which says when a read ends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Records {
    /// Each under 256 bytes (`stat`, `status`, `sockstat`): a short read
    /// ends the file, with no final read that can only return 0 (see
    /// `table::at_eof`).
    Short,
    /// Of any length (`mountinfo`: a mount point is a path, an overlay's
    /// options list its layers): a seq_file stops a read short whenever
    /// its next line does not fit, so only a read that returns 0 ends it.
    Long,
}

/// Reads a whole file into `buf`, which grows (and stays grown) as needed,
/// up to `limit` bytes (`EFBIG` past it). Returns the length read.
pub fn read_all(fd: BorrowedFd<'_>, buf: &mut Vec<u8>, limit: usize, records: Records) -> Result<usize, Errno> {
    let mut len = 0;
    loop {
        if len == buf.len() {
            if len >= limit {
                return Err(Errno::EFBIG);
            }
            buf.resize((len * 2).max(4096).min(limit), 0);
        }
        let asked = buf.len() - len;
        let n = sys::retry(|| nix::unistd::read(fd, &mut buf[len..]))?;
        if n == 0 || (records == Records::Short && at_eof(n, asked)) {
            return Ok(len + n);
        }
        len += n;
    }
}

/// Lists a directory with `getdents64` into a borrowed buffer.
pub struct DirList<'a, 'b> {
    dir: BorrowedFd<'a>,
    buf: &'b mut [u8],
    len: usize,
    off: usize,
}

impl<'a, 'b> DirList<'a, 'b> {
    pub fn new(dir: BorrowedFd<'a>, buf: &'b mut [u8]) -> Self {
        Self { dir, buf, len: 0, off: 0 }
    }

    /// Whether the next entry is already in the buffer (no `getdents64`).
    pub fn buffered(&self) -> bool {
        self.off < self.len
    }

    /// The next entry other than `.` and `..`, or `None` at the end.
    pub fn next_entry(&mut self) -> Result<Option<Dirent<'_>>, Errno> {
        let start = loop {
            if self.off >= self.len {
                self.len = sys::getdents64(self.dir, self.buf)?;
                self.off = 0;
                if self.len == 0 {
                    return Ok(None);
                }
            }
            let (d, reclen) = proc::dirent(&self.buf[self.off..self.len]).ok_or(Errno::EIO)?;
            let dots = matches!(d.name.to_bytes(), b"." | b"..");
            let start = self.off;
            self.off += reclen;
            if !dots {
                break start;
            }
        };
        Ok(proc::dirent(&self.buf[start..self.len]).map(|(d, _)| d))
    }
}

/// `"PID/suffix\0"` on the stack.
struct PidPath {
    buf: [u8; 64],
    len: usize,
}

impl PidPath {
    fn new(pid: i32, suffix: &[u8]) -> Result<Self, Errno> {
        let mut p = Self { buf: [0; 64], len: 0 };
        let mut digits = [0u8; 10];
        let mut n = pid.unsigned_abs();
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let need = digits.len() - i + 1 + suffix.len() + 1;
        if pid <= 0 || need > p.buf.len() || suffix.contains(&0) {
            return Err(Errno::EINVAL);
        }
        for &b in digits[i..].iter().chain(b"/").chain(suffix) {
            p.buf[p.len] = b;
            p.len += 1;
        }
        Ok(p)
    }

    fn as_cstr(&self) -> &CStr {
        // The buffer is zeroed past `len` and holds no NUL before it.
        CStr::from_bytes_until_nul(&self.buf[..=self.len]).unwrap_or(c"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_paths() {
        assert_eq!(PidPath::new(42, b"ns/net").unwrap().as_cstr(), c"42/ns/net");
        assert_eq!(PidPath::new(i32::MAX, b"fd").unwrap().as_cstr(), c"2147483647/fd");
        assert!(PidPath::new(0, b"fd").is_err());
        assert!(PidPath::new(-5, b"fd").is_err());
        assert!(PidPath::new(1, &[b'a'; 62]).is_err());
        assert!(PidPath::new(1, &[b'a'; 61]).is_ok());
    }

    #[test]
    fn read_all_grows_and_limits() {
        let root = ProcRoot::open(b"/proc").unwrap();
        let pid = std::process::id() as i32;
        let fd = root.open_file(pid, b"stat").unwrap();
        let mut buf = Vec::new();
        let n = read_all(fd.as_fd(), &mut buf, 1 << 20, Records::Short).unwrap();
        assert!(n > 20 && buf.len() >= n);
        let fd = root.open_file(pid, b"maps").unwrap();
        assert_eq!(read_all(fd.as_fd(), &mut Vec::new(), 8, Records::Long), Err(Errno::EFBIG));
    }
}
