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
