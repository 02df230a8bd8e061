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
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::sync_channel;
use std::time::Duration;

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
    /// there: beneath it the path is resolved as if that were `/` (`openat2` with
    /// `RESOLVE_IN_ROOT`), through no symlink and no magic link. Without
    /// `openat2`, a path with a `..` component is refused.
    ///
    /// The path may cross a FUSE mount root may walk (`allow_other`), below
    /// which another user bind-mounted a namespace in a mount namespace of
    /// its own: a lookup there waits for its server, which may never
    /// answer. So the path is first walked from the kernel's caches alone
    /// (`RESOLVE_CACHED`, Linux 5.12 and some stable kernels before), asking
    /// no filesystem. A name that needs its filesystem asked again (one
    /// that revalidates: FUSE, 9p, NFS, an overlay over them) fails that
    /// walk; then, where `may_wait` (no FUSE mount is known to be on the
    /// way), and where the kernel can't walk from its caches at all, the
    /// walk is made on a thread of the library's own and waited for
    /// `SLOW_WALK` at most, and none is made while one has not returned.
    /// `ETIMEDOUT` where the walk was not made or not waited for.
    pub fn open_mount_point(&self, pid: i32, mount_point: &[u8], may_wait: bool) -> Result<OwnedFd, Errno> {
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
        let resolve =
            ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS | ResolveFlag::RESOLVE_NO_SYMLINKS;
        let cached = &self.probes.resolve_cached;
        if !cached.is_no() && !self.probes.openat2.is_no() {
            let how =
                OpenHow::new().flags(flags).resolve(resolve | ResolveFlag::from_bits_retain(libc::RESOLVE_CACHED));
            // A second try, for a walk the kernel cut short because a name
            // on the way changed meanwhile.
            for _ in 0..2 {
                match openat2(root.as_fd(), rel, how) {
                    Err(Errno::EAGAIN) => cached.set(true),
                    // Kernels without RESOLVE_CACHED; a seccomp filter may
                    // refuse openat2.
                    Err(Errno::EINVAL | Errno::ENOSYS | Errno::EPERM) => {
                        cached.set(false);
                        break;
                    }
                    r => {
                        cached.set(true);
                        return r;
                    }
                }
            }
        }
        if !may_wait {
            return Err(Errno::ETIMEDOUT);
        }
        let try_openat2 = !self.probes.openat2.is_no();
        let rel = rel.to_owned();
        self.slow_walks.run(move || {
            if try_openat2 {
                match openat2(root.as_fd(), rel.as_c_str(), OpenHow::new().flags(flags).resolve(resolve)) {
                    Err(Errno::ENOSYS | Errno::EPERM) => {}
                    r => return r,
                }
            }
            if rel.to_bytes().split(|&b| b == b'/').any(|c| c == b"..") {
                return Err(Errno::EXDEV);
            }
            openat(root.as_fd(), rel.as_c_str(), flags, Mode::empty())
        })
    }
}

/// How long a caller waits for a walk made on a thread of the library's
/// own: one whose filesystems answer takes milliseconds at most; the rest
/// is room for a thread that waits for a core on a loaded host.
const SLOW_WALK: Duration = Duration::from_millis(500);

/// Path walks that may wait for a filesystem's server for as long as it
/// wishes (a FUSE mount no `mountinfo` read showed on the way), each made
/// on a thread of its own with every signal blocked; a caller waits
/// `SLOW_WALK` for it at most. While one has not returned, none is made:
/// that thread stays where the server holds it, until it answers or dies.
#[derive(Debug, Default)]
pub struct SlowWalks {
    /// The pid of the process one of whose walks has not returned, or 0: a
    /// child forked meanwhile has no such walk.
    walking: Arc<AtomicU32>,
}

impl SlowWalks {
    /// What `walk` returns, or `ETIMEDOUT` if it takes longer than
    /// `SLOW_WALK` or an earlier walk has not returned yet.
    pub fn run(&self, walk: impl FnOnce() -> Result<OwnedFd, Errno> + Send + 'static) -> Result<OwnedFd, Errno> {
        let me = std::process::id();
        if self.walking.swap(me, Ordering::AcqRel) == me {
            return Err(Errno::ETIMEDOUT);
        }
        let (done, result) = sync_channel(1);
        let walking = Arc::clone(&self.walking);
        let spawned = sys::spawn_detached("procspy-walk", move || {
            let r = walk();
            walking.store(0, Ordering::Release);
            // Nobody waits any more: what was opened is closed here.
            let _ = done.send(r);
        });
        if let Err(e) = spawned {
            self.walking.store(0, Ordering::Release);
            return Err(e);
        }
        result.recv_timeout(SLOW_WALK).unwrap_or(Err(Errno::ETIMEDOUT))
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

    #[test]
    fn a_slow_walk_is_waited_for_a_while_and_none_is_made_while_it_lasts() {
        let walks = SlowWalks::default();
        let root = || nix::fcntl::open(c"/", OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty());
        assert!(walks.run(root).is_ok());
        let (release, held) = std::sync::mpsc::channel::<()>();
        let t0 = std::time::Instant::now();
        let stuck = walks.run(move || {
            let _ = held.recv();
            root()
        });
        assert_eq!(stuck.unwrap_err(), Errno::ETIMEDOUT);
        assert!(t0.elapsed() < 4 * SLOW_WALK, "{:?}", t0.elapsed());
        let t1 = std::time::Instant::now();
        assert_eq!(walks.run(|| unreachable!("a walk made while another lasts")).unwrap_err(), Errno::ETIMEDOUT);
        assert!(t1.elapsed() < SLOW_WALK / 2, "{:?}", t1.elapsed());
        // Once it returns, walks are made again.
        drop(release);
        let t2 = std::time::Instant::now();
        while walks.walking.load(Ordering::Acquire) != 0 && t2.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(walks.run(root).is_ok());
    }
}
