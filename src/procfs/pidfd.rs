//! Another process's socket, taken with `pidfd_getfd(2)` (Linux 5.6; needs
//! the right to ptrace that process), asked what its table line would
//! hold and which network namespace it lives in (`SIOCGSKNS`, Linux 4.9).
//! Only questions are asked of it (`fstat`, `getsockname`, `getpeername`,
//! `getsockopt`, the ioctl); the copy is closed when dropped. The pid must
//! be one of the caller's own pid namespace: callers check that the proc
//! root shows the kernel's ids.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::stat::{SFlag, fstat};

use super::SockRecord;
use super::sys;
use crate::parse::kernel::tcp_state::{CLOSE as TCP_CLOSE, ESTABLISHED as TCP_ESTABLISHED, LISTEN as TCP_LISTEN};
use crate::parse::kernel::{Family, Protocol};

/// `linux/in.h`, `linux/socket.h`, `netinet/tcp.h`, `include/net/tcp_states.h`.
const SOL_SOCKET: i32 = 1;
const SO_TYPE: i32 = 3;
const SO_PROTOCOL: i32 = 38;
const IPPROTO_TCP: i32 = Protocol::Tcp.ipproto() as i32;
const IPPROTO_UDP: i32 = Protocol::Udp.ipproto() as i32;
const TCP_INFO: i32 = 11;
const AF_INET: u16 = Family::Inet.af() as u16;
const AF_INET6: u16 = Family::Inet6.af() as u16;

/// A process, to take fds from.
#[derive(Debug)]
pub struct PidFd(OwnedFd);

impl PidFd {
    pub fn open(pid: i32) -> Result<Self, Errno> {
        sys::pidfd_open(pid).map(Self)
    }

    /// A copy of the process's fd `fd`, if it still is socket `inode`
    /// (`ESTALE` if the fd was closed or reused since it was seen).
    pub fn socket(&self, fd: i32, inode: u64) -> Result<TheirSocket, Errno> {
        let sock = sys::pidfd_getfd(self.0.as_fd(), fd)?;
        let st = fstat(&sock)?;
        if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFSOCK || st.st_ino != inode {
            return Err(Errno::ESTALE);
        }
        Ok(TheirSocket { fd: sock, inode, uid: st.st_uid })
    }
}

/// Another process's socket, copied into ours.
#[derive(Debug)]
pub struct TheirSocket {
    fd: OwnedFd,
    inode: u64,
    uid: u32,
}

impl TheirSocket {
    /// An fd of the network namespace the socket lives in (nsfs), one that
    /// can be entered.
    pub fn netns(&self) -> Result<OwnedFd, Errno> {
        sys::socket_netns(self.fd.as_fd())
    }

    /// What the BPF owner scan would have recorded for it (`pid`, `fd`,
    /// `netns` as given; no pending count): its family, protocol, type,
    /// state, addresses and owner uid. `ENOTCONN` for a TCP socket whose
    /// peer the kernel will not name (`SYN_SENT`) though its table line
    /// shows one: its line must come from the table.
    pub fn record(&self, pid: i32, fd: i32, netns: u64) -> Result<SockRecord, Errno> {
        let sock = self.fd.as_fd();
        let int = |level, name| -> Result<i32, Errno> {
            let mut b = [0u8; 4];
            sys::getsockopt_bytes(sock, level, name, &mut b)?;
            Ok(i32::from_ne_bytes(b))
        };
        let (sock_type, protocol) = (int(SOL_SOCKET, SO_TYPE)?, int(SOL_SOCKET, SO_PROTOCOL)?);
        let local = sys::socket_name(sock, false)?;
        let family = u16::from_ne_bytes([local[0], local[1]]);
        let mut r = SockRecord {
            inode: self.inode,
            pid,
            fd,
            netns,
            uid: self.uid,
            family,
            protocol: u16::try_from(protocol).unwrap_or(0),
            sock_type: u16::try_from(sock_type).unwrap_or(0),
            state: 0,
            local_port: 0,
            remote_port: 0,
            pending: 0,
            local_addr: [0; 16],
            remote_addr: [0; 16],
        };
        if family != AF_INET && family != AF_INET6 {
            return Ok(r);
        }
        (r.local_addr, r.local_port) = addr_port(&local);
        let peer = sys::socket_name(sock, true);
        r.state = match protocol {
            IPPROTO_TCP => tcp_state(sock)?,
            IPPROTO_UDP if peer.is_ok() => TCP_ESTABLISHED,
            _ => TCP_CLOSE,
        };
        match peer {
            Ok(peer) => (r.remote_addr, r.remote_port) = addr_port(&peer),
            Err(Errno::ENOTCONN) if protocol != IPPROTO_TCP || [TCP_LISTEN, TCP_CLOSE].contains(&r.state) => {}
            Err(e) => return Err(e),
        }
        Ok(r)
    }
}

/// `tcpi_state`, the first byte of `struct tcp_info`.
fn tcp_state(sock: BorrowedFd<'_>) -> Result<u8, Errno> {
    let mut info = [0u8; 8];
    let n = sys::getsockopt_bytes(sock, IPPROTO_TCP, TCP_INFO, &mut info)?;
    if n == 0 { Err(Errno::EINVAL) } else { Ok(info[0]) }
}

/// The address of a `sockaddr_in` or `sockaddr_in6` in network order
/// (IPv4 in the first 4 bytes), and its port (`netinet/in.h`: family, then
/// the port in network order, then `sin_addr`, or `sin6_flowinfo` and
/// `sin6_addr`).
fn addr_port(a: &[u8; 128]) -> ([u8; 16], u16) {
    let mut out = [0u8; 16];
    let port = u16::from_be_bytes([a[2], a[3]]);
    match u16::from_ne_bytes([a[0], a[1]]) {
        AF_INET => out[..4].copy_from_slice(&a[4..8]),
        AF_INET6 => out.copy_from_slice(&a[8..24]),
        _ => return (out, 0),
    }
    (out, port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream, UdpSocket};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn describes_our_own_sockets() {
        let me = std::process::id() as i32;
        let Ok(pidfd) = PidFd::open(me) else { return };
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let u = UdpSocket::bind("[::1]:0").unwrap();
        let ino = |fd: i32| std::fs::metadata(format!("/proc/self/fd/{fd}")).unwrap().ino();
        let netns = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        for (fd, state, proto) in
            [(l.as_raw_fd(), TCP_LISTEN, 6), (c.as_raw_fd(), TCP_ESTABLISHED, 6), (u.as_raw_fd(), TCP_CLOSE, 17)]
        {
            let s = match pidfd.socket(fd, ino(fd)) {
                Ok(s) => s,
                Err(Errno::EPERM | Errno::ENOSYS) => return,
                Err(e) => panic!("{e}"),
            };
            let ns = fstat(s.netns().unwrap()).unwrap().st_ino;
            assert_eq!(ns, netns);
            let r = s.record(me, fd, ns).unwrap();
            assert_eq!((r.state, r.protocol, r.inode), (state, proto, ino(fd)));
        }
        let r = pidfd.socket(c.as_raw_fd(), ino(c.as_raw_fd())).unwrap().record(me, 0, 0).unwrap();
        assert_eq!(
            (r.family, &r.local_addr[..4], r.remote_port),
            (AF_INET, &[127, 0, 0, 1][..], l.local_addr().unwrap().port())
        );
        assert_eq!(pidfd.socket(c.as_raw_fd(), 1).unwrap_err(), Errno::ESTALE);
    }
}
