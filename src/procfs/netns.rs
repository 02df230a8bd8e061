//! Where a network namespace may be reached other than through a process's
//! `PID/ns/net`, beneath the proc root: a thread's (`TID/…`: a thread's
//! directory is reachable by its id though the root lists only processes),
//! a process's mount namespace and its `mountinfo` (nsfs bind mounts, such
//! as `ip netns`'s `/run/netns/NAME`), and a process's fds (one may hold a
//! namespace open). Everything opened here that leads to a namespace is an
//! `O_PATH` fd, to be checked (nsfs, the inode expected) by
//! `HostProc::netns` before it is entered; nothing is parsed here.

use std::ffi::CStr;
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::Mode;

use super::{DirList, PidPath, ProcRoot, sys};
use crate::parse::num::dec_name;
use crate::parse::proc::pid_name;

/// Longest namespace link or fd link target read (`net:[4026531840]` is 16).
pub(crate) const LINK_MAX: usize = 64;

impl ProcRoot {
    /// How many threads `pid` has, from its `task` directory's link count
    /// (two more than its entries), without listing it.
    pub fn thread_count(&self, pid: i32) -> Result<u64, Errno> {
        Ok(self.stat(pid, b"task")?.st_nlink.saturating_sub(2))
    }

    /// Appends the thread ids of `pid` other than `pid` itself to `out`.
    pub fn list_threads(&self, pid: i32, dents: &mut [u8], out: &mut Vec<i32>) -> Result<(), Errno> {
        let dir = self.open_dir(pid, b"task")?;
        let mut list = DirList::new(dir.as_fd(), dents);
        while let Some(entry) = list.next_entry()? {
            if let Some(tid) = pid_name(entry.name.to_bytes()).filter(|&t| t != pid) {
                out.push(tid);
            }
        }
        Ok(())
    }

    /// The target of the link `PID/suffix` (`ns/mnt`: `mnt:[INODE]`) in `buf`.
    pub fn read_link<'b>(&self, pid: i32, suffix: &[u8], buf: &'b mut [u8; LINK_MAX]) -> Result<&'b [u8], Errno> {
        let n = sys::readlinkat(self.dir.as_fd(), PidPath::new(pid, suffix)?.as_cstr(), buf)?;
        Ok(&buf[..n])
    }

    /// Fd `fd` of `pid` as an `O_PATH` fd: in a procfs the fd link is a
    /// magic link to the open file itself (here, a namespace file), which is
    /// followed; `PID/fd` must be a directory beneath the root.
    pub fn open_fd_path(&self, pid: i32, fd: i32) -> Result<OwnedFd, Errno> {
        let dir = self.open_dir(pid, b"fd")?;
        let mut name = [0u8; 12];
        let name = fd_name(fd, &mut name)?;
        openat(dir.as_fd(), name, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
    }

    /// `mount_point` (absolute, as `PID/mountinfo` names it) in `pid`'s
    /// mount namespace and root, as an `O_PATH` fd of the file mounted
    /// there. `PID/root`, a magic link to the process's root, is followed;
    /// beneath it the path is resolved as if that were `/` (`openat2` with
    /// `RESOLVE_IN_ROOT`), through no symlink and no magic link. Without
    /// `openat2`, a path with a `..` component is refused.
    pub fn open_mount_point(&self, pid: i32, mount_point: &[u8]) -> Result<OwnedFd, Errno> {
        let piddir = self.open_dir(pid, b"")?;
        let root =
            openat(piddir.as_fd(), c"root", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
        let rel = mount_point.strip_prefix(b"/").ok_or(Errno::EINVAL)?;
        let rel: &[u8] = if rel.is_empty() { b"." } else { rel };
        let mut path = [0u8; libc::PATH_MAX as usize + 1];
        if rel.len() >= path.len() || rel.contains(&0) {
            return Err(Errno::ENAMETOOLONG);
        }
        path[..rel.len()].copy_from_slice(rel);
        let rel = CStr::from_bytes_until_nul(&path).map_err(|_| Errno::EINVAL)?;
        let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        if !self.probes.openat2.is_no() {
            let resolve =
                ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS | ResolveFlag::RESOLVE_NO_SYMLINKS;
            match openat2(root.as_fd(), rel, OpenHow::new().flags(flags).resolve(resolve)) {
                Err(Errno::ENOSYS | Errno::EPERM) => {}
                r => return r,
            }
        }
        if rel.to_bytes().split(|&b| b == b'/').any(|c| c == b"..") {
            return Err(Errno::EXDEV);
        }
        openat(root.as_fd(), rel, flags, Mode::empty())
    }
}

/// `fd` in decimal, NUL-terminated, in `buf`.
pub fn fd_name(fd: i32, buf: &mut [u8; 12]) -> Result<&CStr, Errno> {
    use std::io::Write;
    let mut at = &mut buf[..];
    write!(at, "{fd}\0").map_err(|_| Errno::EINVAL)?;
    let name = CStr::from_bytes_until_nul(buf).map_err(|_| Errno::EINVAL)?;
    dec_name(name.to_bytes()).map(|_| name).ok_or(Errno::EINVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_threads_and_links() {
        let root = ProcRoot::open(b"/proc").unwrap();
        let pid = std::process::id() as i32;
        let t = std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(300)));
        assert!(root.thread_count(pid).unwrap() >= 2);
        let mut tids = Vec::new();
        root.list_threads(pid, &mut vec![0; 4096], &mut tids).unwrap();
        assert!(!tids.is_empty() && !tids.contains(&pid));
        t.join().unwrap();
        let mut buf = [0; LINK_MAX];
        let link = root.read_link(pid, b"ns/mnt", &mut buf).unwrap();
        assert!(link.starts_with(b"mnt:["), "{link:?}");
        assert_eq!(fd_name(123, &mut [0; 12]).unwrap(), c"123");
        assert!(fd_name(-1, &mut [0; 12]).is_err());
    }
}
