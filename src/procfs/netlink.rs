//! Netlink `sock_diag` sockets, each opened inside the namespace it lists.
//!
//! A netlink socket answers for the namespace it was created in. The
//! caller's thread never changes namespace: sockets of other namespaces are
//! made on a short-lived thread of the library's own, with every signal
//! blocked, which enters each namespace in turn, opens its socket and ends
//! in the last. It never comes back, so it can't fail to.
//!
//! What decides where that thread goes is checked first: the namespace file
//! comes from the proc root but must be nsfs with the inode its pid was
//! grouped by, and the caller's own namespace comes from the caller's real
//! procfs (`/proc/thread-self/ns/net`), never from the root.
//!
//! Every socket is connected to the kernel (port id 0), so the kernel turns
//! away unicasts from any other socket, and what it reads is checked again:
//! the sender's port id here, the rest where the messages are parsed.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open, openat};
use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, connect, getsockname, recvfrom, send,
    setsockopt, socket, sockopt,
};
use nix::sys::stat::Mode;
use nix::sys::statfs::{NSFS_MAGIC, PROC_SUPER_MAGIC, fstatfs};

use super::sys;
use crate::parse::kernel::DestroyGroup;

/// The caller's own procfs, `/proc`: where the calling thread's namespace
/// is read and namespace files are reopened. Never the walker's root.
#[derive(Debug)]
pub struct HostProc {
    dir: OwnedFd,
    home: u64,
    /// nsfs's device: every namespace file is on it.
    nsfs_dev: u64,
}

/// A network namespace to enter, checked.
#[derive(Debug)]
pub struct Netns {
    fd: OwnedFd,
}

impl HostProc {
    /// Fails unless `/proc` is a procfs and the calling thread's namespace
    /// file in it is nsfs.
    pub fn open() -> Result<Self, Errno> {
        let dir = open("/proc", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
        if fstatfs(&dir)?.filesystem_type() != PROC_SUPER_MAGIC {
            return Err(Errno::ENODEV);
        }
        let ns = openat(dir.as_fd(), c"thread-self/ns/net", OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())?;
        let own = sys::stat_cached(ns.as_fd(), c"")?;
        if fstatfs(&ns)?.filesystem_type() != NSFS_MAGIC {
            return Err(Errno::ENODEV);
        }
        Ok(Self { dir, home: own.ino, nsfs_dev: own.dev })
    }

    /// The inode of the calling thread's network namespace.
    pub fn home(&self) -> u64 {
        self.home
    }

    /// `ns`, an `O_PATH` fd of a namespace file (`ProcRoot::open_netns`),
    /// as a namespace to enter if it is nsfs with the inode `netns`; `None`
    /// if it is anything else.
    pub fn netns(&self, ns: OwnedFd, netns: u64) -> Result<Option<Netns>, Errno> {
        if self.nsfs_inode(ns.as_fd())? != Some(netns) {
            return Ok(None);
        }
        // setns takes no O_PATH fd: open the same file through its fd link.
        let mut path = [0u8; 32];
        write!(&mut path[..], "thread-self/fd/{}\0", ns.as_raw_fd()).map_err(|_| Errno::ENAMETOOLONG)?;
        let path = std::ffi::CStr::from_bytes_until_nul(&path).map_err(|_| Errno::ENAMETOOLONG)?;
        let fd = openat(self.dir.as_fd(), path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())?;
        Ok(Some(Netns { fd }))
    }

    /// The inode of a file on nsfs; `None` for a file elsewhere. Its
    /// device, from what the kernel has cached, is checked first: a file
    /// on another's FUSE mount (a path or fd swapped meanwhile) is asked
    /// nothing, where `fstatfs` would wait for its server.
    fn nsfs_inode(&self, fd: BorrowedFd<'_>) -> Result<Option<u64>, Errno> {
        let meta = sys::stat_cached(fd, c"")?;
        if meta.dev != self.nsfs_dev || fstatfs(fd)?.filesystem_type() != NSFS_MAGIC {
            return Ok(None);
        }
        Ok(Some(meta.ino))
    }

    /// As `netns`, for a file that may be a namespace of any type (an fd a
    /// process holds): `None` unless it is a network namespace.
    pub fn net_namespace(&self, ns: OwnedFd, netns: u64) -> Result<Option<Netns>, Errno> {
        match self.netns(ns, netns)? {
            Some(ns) if sys::is_net_namespace(ns.fd.as_fd())? => Ok(Some(ns)),
            _ => Ok(None),
        }
    }

    /// A socket of the calling thread's own namespace.
    pub fn socket<S: NetlinkSocket>(&self) -> Result<S, Errno> {
        S::open()
    }

    /// A socket in each namespace `jobs` lists, each stored where its
    /// namespace came from (or why it could not be made), all made on one
    /// thread of the library's own that enters them in turn: starting and
    /// ending a thread costs far more than a socket. Fails only if the
    /// thread can't be started.
    pub fn sockets<'a, S: NetlinkSocket + 'a>(
        &self,
        jobs: impl Iterator<Item = (&'a Netns, &'a mut Option<Result<S, Errno>>)> + Send,
    ) -> Result<(), Errno> {
        sys::run_on_own_thread(|| {
            for (ns, out) in jobs {
                *out = Some(setns(&ns.fd, CloneFlags::CLONE_NEWNET).and_then(|()| S::open()));
            }
        })
    }
}

/// A netlink socket the library makes inside a namespace: a dump socket
/// or a destroy subscription.
pub trait NetlinkSocket: Sized + Send {
    /// A socket of the calling thread's namespace.
    fn open() -> Result<Self, Errno>;
}

/// A socket that sends dump requests and reads their replies, connected to
/// the kernel and non-blocking.
#[derive(Debug)]
pub struct DiagSocket {
    fd: OwnedFd,
    port_id: u32,
    seq: u32,
}

impl NetlinkSocket for DiagSocket {
    fn open() -> Result<Self, Errno> {
        let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
        let fd = socket(AddressFamily::Netlink, SockType::Raw, flags, SockProtocol::NetlinkSockDiag)?;
        connect(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
        let port_id = getsockname::<NetlinkAddr>(fd.as_raw_fd())?.pid();
        Ok(Self { fd, port_id, seq: sys::random_u32()? })
    }
}

impl DiagSocket {
    /// The port id the kernel gave this socket (replies carry it).
    pub fn port_id(&self) -> u32 {
        self.port_id
    }

    /// The sequence number of the next request: random at first, so that
    /// nobody can guess it, then one more each time.
    pub fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    pub fn send(&self, request: &[u8]) -> Result<(), Errno> {
        sys::retry(|| send(self.fd.as_raw_fd(), request, MsgFlags::empty())).map(drop)
    }

    /// The next datagram, without waiting (`EAGAIN` if none is queued): its
    /// length and its sender's port id (0: the kernel).
    pub fn try_recv(&self, buf: &mut [u8]) -> Result<(usize, u32), Errno> {
        let (n, from) = sys::retry(|| recvfrom::<NetlinkAddr>(self.fd.as_raw_fd(), buf))?;
        Ok((n, from.map_or(u32::MAX, |a| a.pid())))
    }
}

impl AsFd for DiagSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Every sock_diag destroy group, as `nl_groups` bits.
const DESTROY_GROUPS: u32 = DestroyGroup::all_bits();

/// The receive buffer asked for: about 400 notifications (a TCP one takes
/// some 1.3 KiB of skb) wait between two calls before the kernel drops more.
const DESTROY_RCVBUF: usize = 512 << 10;

/// A `NETLINK_SOCK_DIAG` socket subscribed to its namespace's destroy
/// notifications, connected to the kernel so that no other socket can
/// unicast to it, and non-blocking.
#[derive(Debug)]
pub struct DestroySocket {
    fd: OwnedFd,
}

impl NetlinkSocket for DestroySocket {
    fn open() -> Result<Self, Errno> {
        let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
        let fd = socket(AddressFamily::Netlink, SockType::Raw, flags, SockProtocol::NetlinkSockDiag)?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, DESTROY_GROUPS))?;
        connect(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
        // Past net.core.rmem_max only with CAP_NET_ADMIN in the initial namespace.
        if setsockopt(&fd, sockopt::RcvBufForce, &DESTROY_RCVBUF).is_err() {
            setsockopt(&fd, sockopt::RcvBuf, &DESTROY_RCVBUF)?;
        }
        Ok(Self { fd })
    }
}

impl DestroySocket {
    /// The next datagram, without waiting: its length, its sender's port id
    /// (0: the kernel) and the groups it was sent to. `EAGAIN` if none is
    /// queued; `ENOBUFS` once after the kernel dropped some for want of room.
    pub fn try_recv(&self, buf: &mut [u8]) -> Result<(usize, u32, u32), Errno> {
        let (n, from) = sys::retry(|| recvfrom::<NetlinkAddr>(self.fd.as_raw_fd(), buf))?;
        Ok(from.map_or((n, u32::MAX, 0), |a| (n, a.pid(), a.groups())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_is_the_calling_threads_namespace() {
        let home = HostProc::open().unwrap();
        let st = nix::sys::stat::stat("/proc/thread-self/ns/net").unwrap();
        assert_eq!(home.home(), st.st_ino);
        let sock: DiagSocket = home.socket().unwrap();
        assert_ne!(sock.port_id(), 0, "bound by connect");
    }

    #[test]
    fn only_the_namespace_named_is_entered() {
        let host = HostProc::open().unwrap();
        let ns = || open("/proc/self/ns/net", OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).unwrap();
        assert!(host.netns(ns(), host.home() + 1).unwrap().is_none(), "another inode");
        let file = open("/proc/self/stat", OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).unwrap();
        let ino = nix::sys::stat::fstat(file.as_fd()).unwrap().st_ino;
        assert!(host.netns(file, ino).unwrap().is_none(), "not nsfs");
        let checked =
            [host.netns(ns(), host.home()).unwrap().unwrap(), host.netns(ns(), host.home()).unwrap().unwrap()];
        // Made on a thread of its own, which enters the namespaces (ours).
        let mut made: [Option<Result<DiagSocket, Errno>>; 2] = [None, None];
        host.sockets(checked.iter().zip(&mut made)).unwrap();
        assert!(made.iter().all(|m| matches!(m, Some(Ok(_)))), "{made:?}");
        let st = nix::sys::stat::stat("/proc/thread-self/ns/net").unwrap();
        assert_eq!(st.st_ino, host.home());
    }
}
