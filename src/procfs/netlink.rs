//! Netlink `sock_diag` sockets, opened inside another network namespace.
//!
//! A netlink socket answers for the namespace it was created in. To create
//! one elsewhere the calling thread enters the namespace (`setns`), opens
//! the socket and goes back at once: callbacks never run in a foreign
//! namespace, and the caller's other threads are not affected.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, recv, send, socket};
use nix::sys::stat::fstat;

/// The namespace the calling thread started in, to come back to.
#[derive(Debug)]
pub struct HomeNetns {
    fd: OwnedFd,
    inode: u64,
}

impl HomeNetns {
    /// From `thread-self/ns/net` of a proc root: the calling thread's own.
    pub fn open(root: &super::ProcRoot) -> Result<Self, Errno> {
        let fd = root.open_path(b"thread-self/ns/net")?;
        let inode = fstat(&fd)?.st_ino;
        Ok(Self { fd, inode })
    }

    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// A `NETLINK_SOCK_DIAG` socket of the namespace `ns` (`None`: home).
    pub fn diag_socket(&self, ns: Option<BorrowedFd<'_>>) -> Result<DiagSocket, Errno> {
        let open =
            || socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkSockDiag);
        let Some(ns) = ns else { return Ok(DiagSocket { fd: open()? }) };
        setns(ns, CloneFlags::CLONE_NEWNET)?;
        let sock = open();
        // Going home can only fail if this thread lost the rights it just
        // used; never leave the caller's thread elsewhere.
        if let Err(e) = setns(self.fd.as_fd(), CloneFlags::CLONE_NEWNET) {
            panic!("setns back to the caller's network namespace failed: {e}");
        }
        Ok(DiagSocket { fd: sock? })
    }
}

/// A socket that sends dump requests and reads their replies.
#[derive(Debug)]
pub struct DiagSocket {
    fd: OwnedFd,
}

impl DiagSocket {
    pub fn send(&self, request: &[u8]) -> Result<(), Errno> {
        loop {
            match send(self.fd.as_raw_fd(), request, MsgFlags::empty()) {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }

    pub fn recv(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        loop {
            match recv(self.fd.as_raw_fd(), buf, MsgFlags::empty()) {
                Err(Errno::EINTR) => {}
                r => return r,
            }
        }
    }
}

/// sock_diag's destroy groups as `nl_groups` bits (`linux/sock_diag.h`:
/// `SKNLGRP_INET_TCP_DESTROY` 1, `INET_UDP` 2, `INET6_TCP` 3, `INET6_UDP` 4;
/// group g is bit g - 1).
const DESTROY_GROUPS: u32 = 0b1111;

/// The receive buffer asked for: about 400 notifications (a TCP one takes
/// some 1.3 KiB of skb) wait between two calls before the kernel drops more.
const DESTROY_RCVBUF: usize = 512 << 10;

/// A `NETLINK_SOCK_DIAG` socket of the calling thread's namespace,
/// subscribed to its destroy notifications, connected to the kernel so that
/// no other socket can unicast to it, and non-blocking.
#[derive(Debug)]
pub struct DestroySocket {
    fd: OwnedFd,
}

impl DestroySocket {
    pub fn open() -> Result<Self, Errno> {
        use nix::sys::socket::{NetlinkAddr, bind, connect, setsockopt, sockopt};
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

    /// The next datagram, without waiting: its length, its sender's port id
    /// (0: the kernel) and the groups it was sent to. `EAGAIN` if none is
    /// queued; `ENOBUFS` once after the kernel dropped some for want of room.
    pub fn try_recv(&self, buf: &mut [u8]) -> Result<(usize, u32, u32), Errno> {
        use nix::sys::socket::{NetlinkAddr, recvfrom};
        loop {
            match recvfrom::<NetlinkAddr>(self.fd.as_raw_fd(), buf) {
                Ok((n, Some(from))) => return Ok((n, from.pid(), from.groups())),
                Ok((n, None)) => return Ok((n, u32::MAX, 0)),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// The inode of the calling thread's network namespace, from the host's
/// own procfs (never a walker's root).
pub fn home_netns() -> Result<u64, Errno> {
    Ok(nix::sys::stat::stat("/proc/thread-self/ns/net")?.st_ino)
}
