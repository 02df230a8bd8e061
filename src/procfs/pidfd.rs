//! Another process's socket, taken with `pidfd_getfd(2)` (Linux 5.6; needs
//! the right to ptrace that process), asked what its table line would
//! hold and which network namespace it lives in (`SIOCGSKNS`, Linux 4.9).
//! The pid must be one of the caller's own pid namespace: callers check
//! that the proc root shows the kernel's ids.
//!
//! What was taken is not trusted to be the socket the scan saw: the holder
//! may have put any file at that fd number since, one on a FUSE mount of
//! its own whose server never answers. So the copy is first asked a
//! question only a socket answers (`SO_TYPE`; anything else fails at once
//! with `ENOTSOCK`, no filesystem asked), and it is never closed on the
//! caller's thread: a copy's close may be the file's last, and a last close
//! waits for FUSE's `FLUSH` (uninterruptibly) or a lingering socket. The
//! `Closer` closes copies on a thread of its own, and takes no more while
//! `MAX_CLOSING` of its closes have not returned.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::stat::{SFlag, fstat};

use super::sys;
use super::{Ends, SockRecord};
use crate::parse::kernel::{Family, Protocol, TcpState};

/// `linux/in.h`, `linux/socket.h`, `netinet/tcp.h`, `include/net/tcp_states.h`.
const SOL_SOCKET: i32 = 1;
const SO_TYPE: i32 = 3;
const SO_PROTOCOL: i32 = 38;
const IPPROTO_TCP: i32 = Protocol::Tcp.ipproto() as i32;
const IPPROTO_UDP: i32 = Protocol::Udp.ipproto() as i32;
const TCP_INFO: i32 = 11;
const AF_INET: u16 = Family::Inet.af() as u16;
const AF_INET6: u16 = Family::Inet6.af() as u16;

/// Copies waiting for their close at most: the fds a pass holds for them.
pub const MAX_CLOSING: usize = 32;

/// How long a copy waits for a place among `MAX_CLOSING` before the closer
/// is taken for stalled (a close that does not return holds each place).
/// Long enough that a closer's thread merely waiting for a core on a
/// loaded host is not taken for stuck (50 ms was, under a load of 7 on 2
/// cores); a real stall costs the pass that meets it this once, after
/// which copies are refused at once until a close returns.
const STALL: Duration = Duration::from_millis(500);

/// Closes the copies of other processes' fds, on a thread of its own made
/// at the first copy (again in a process forked since), with every signal
/// blocked. Dropped with its walker, it lets that thread end once its
/// closes have returned; nothing waits for it.
#[derive(Debug, Default)]
pub struct Closer {
    running: Mutex<Option<Running>>,
}

#[derive(Debug)]
struct Running {
    to_close: SyncSender<OwnedFd>,
    /// Copies handed out and not yet closed.
    closing: Arc<AtomicUsize>,
    /// Set when a copy waited `STALL` in vain; cleared by the next close
    /// that returns. While set, no copy waits.
    stalled: Arc<AtomicBool>,
    pid: u32,
}

impl Closer {
    /// Whether copies are refused: closes given to the closer's thread
    /// have not returned for `STALL`.
    pub fn stalled(&self) -> bool {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.as_ref().is_some_and(|r| r.stalled.load(Ordering::Acquire))
    }

    /// The fd `take` makes, to be closed by the closer's thread; `EAGAIN`
    /// while it is stalled.
    fn take(&self, take: impl FnOnce() -> Result<OwnedFd, Errno>) -> Result<Taken<'_>, Errno> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let pid = std::process::id();
        if running.as_ref().is_none_or(|r| r.pid != pid) {
            *running = Some(Running::start(pid)?);
        }
        let Some(r) = running.as_ref() else { return Err(Errno::EAGAIN) };
        r.place()?;
        match take() {
            Ok(fd) => Ok(Taken { fd: Some(fd), closer: self }),
            Err(e) => {
                r.closing.fetch_sub(1, Ordering::AcqRel);
                Err(e)
            }
        }
    }

    /// Waits (up to `STALL`, not at all while stalled) until every copy
    /// handed to the closer's thread is closed: a copy still open when a
    /// pass ends would be seen by the next as a socket this process holds.
    pub fn settle(&self) {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let Some(r) = running.as_ref() else { return };
        let start = Instant::now();
        while r.closing.load(Ordering::Acquire) > 0 && !r.stalled.load(Ordering::Acquire) {
            if !pause(start) {
                r.stalled.store(true, Ordering::Release);
                return;
            }
        }
    }

    fn close(&self, fd: OwnedFd) {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        match running.as_ref().map(|r| r.to_close.try_send(fd)) {
            Some(Ok(())) => {}
            // Its thread is gone (a process forked since the copy was
            // taken): keeping the fd open is the bounded choice.
            Some(Err(e)) => std::mem::forget(e),
            None => {}
        }
    }
}

impl Running {
    /// Takes one of the `MAX_CLOSING` places, waiting up to `STALL` for
    /// the closer's thread to free one.
    fn place(&self) -> Result<(), Errno> {
        let start = Instant::now();
        loop {
            let n = self.closing.load(Ordering::Acquire);
            if n < MAX_CLOSING {
                if self.closing.compare_exchange(n, n + 1, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    return Ok(());
                }
                continue;
            }
            if self.stalled.load(Ordering::Acquire) || !pause(start) {
                self.stalled.store(true, Ordering::Release);
                return Err(Errno::EAGAIN);
            }
        }
    }

    fn start(pid: u32) -> Result<Self, Errno> {
        let (to_close, queue) = sync_channel::<OwnedFd>(MAX_CLOSING);
        let closing = Arc::new(AtomicUsize::new(0));
        let stalled = Arc::new(AtomicBool::new(false));
        let (count, stall) = (Arc::clone(&closing), Arc::clone(&stalled));
        sys::spawn_detached("procspy-close", move || {
            for fd in queue {
                drop(fd);
                count.fetch_sub(1, Ordering::AcqRel);
                stall.store(false, Ordering::Release);
            }
        })?;
        Ok(Running { to_close, closing, stalled, pid })
    }
}

/// Waits a little for the closer's thread, which closes at once unless it
/// is stuck: a yield at first, then short sleeps; false once `STALL` has
/// passed since `start`.
fn pause(start: Instant) -> bool {
    let waited = start.elapsed();
    if waited < Duration::from_millis(1) {
        std::thread::yield_now();
    } else {
        std::thread::sleep(Duration::from_micros(200));
    }
    waited < STALL
}

/// A copy of another process's fd, closed by the `Closer` when dropped.
#[derive(Debug)]
struct Taken<'c> {
    fd: Option<OwnedFd>,
    closer: &'c Closer,
}

impl Taken<'_> {
    fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_ref().map(AsFd::as_fd).expect("taken until dropped")
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if let Some(fd) = self.fd.take() {
            self.closer.close(fd);
        }
    }
}

/// A process, to take fds from.
#[derive(Debug)]
pub struct PidFd(OwnedFd);

impl PidFd {
    pub fn open(pid: i32) -> Result<Self, Errno> {
        sys::pidfd_open(pid).map(Self)
    }

    /// A copy of the process's fd `fd`, if it still is socket `inode`
    /// (`ESTALE` if the fd was closed or reused since it was seen), closed
    /// by `closer` (`EAGAIN`: it is stalled).
    pub fn socket<'c>(&self, fd: i32, inode: u64, closer: &'c Closer) -> Result<TheirSocket<'c>, Errno> {
        let sock = closer.take(|| sys::pidfd_getfd(self.0.as_fd(), fd))?;
        let mut ty = [0u8; 4];
        match sys::getsockopt_bytes(sock.fd(), SOL_SOCKET, SO_TYPE, &mut ty) {
            Err(Errno::ENOTSOCK) => return Err(Errno::ESTALE),
            r => r?,
        };
        // A socket's own inode, on sockfs: no filesystem of the holder's is asked.
        let st = fstat(sock.fd())?;
        if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFSOCK || st.st_ino != inode {
            return Err(Errno::ESTALE);
        }
        Ok(TheirSocket { sock, inode, uid: st.st_uid })
    }
}

/// Another process's socket, copied into ours.
#[derive(Debug)]
pub struct TheirSocket<'c> {
    sock: Taken<'c>,
    inode: u64,
    uid: u32,
}

impl TheirSocket<'_> {
    /// An fd of the network namespace the socket lives in (nsfs), one that
    /// can be entered.
    pub fn netns(&self) -> Result<OwnedFd, Errno> {
        sys::socket_netns(self.sock.fd())
    }

    /// What the BPF owner scan would have recorded for it (`pid`, `fd`,
    /// `netns` as given; no pending count): its family, protocol, type,
    /// state, addresses and owner uid. `ENOTCONN` for a TCP socket whose
    /// peer the kernel will not name (`SYN_SENT`) though its table line
    /// shows one: its line must come from the table.
    pub fn record(&self, pid: i32, fd: i32, netns: u64) -> Result<SockRecord, Errno> {
        let sock = self.sock.fd();
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
            ends: Ends::default(),
            pending: 0,
        };
        if family != AF_INET && family != AF_INET6 {
            return Ok(r);
        }
        (r.ends.local_addr, r.ends.local_port) = addr_port(&local);
        let peer = sys::socket_name(sock, true);
        r.state = match protocol {
            IPPROTO_TCP => tcp_state(sock)?,
            IPPROTO_UDP if peer.is_ok() => TcpState::Established.number(),
            _ => TcpState::Close.number(),
        };
        match peer {
            Ok(peer) => (r.ends.remote_addr, r.ends.remote_port) = addr_port(&peer),
            Err(Errno::ENOTCONN)
                if protocol != IPPROTO_TCP
                    || [TcpState::Listen, TcpState::Close].map(TcpState::number).contains(&r.state) => {}
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
        let closer = Closer::default();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let u = UdpSocket::bind("[::1]:0").unwrap();
        let ino = |fd: i32| std::fs::metadata(format!("/proc/self/fd/{fd}")).unwrap().ino();
        let netns = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        for (fd, state, proto) in [
            (l.as_raw_fd(), TcpState::Listen, 6),
            (c.as_raw_fd(), TcpState::Established, 6),
            (u.as_raw_fd(), TcpState::Close, 17),
        ] {
            let s = match pidfd.socket(fd, ino(fd), &closer) {
                Ok(s) => s,
                Err(Errno::EPERM | Errno::ENOSYS) => return,
                Err(e) => panic!("{e}"),
            };
            let ns = fstat(s.netns().unwrap()).unwrap().st_ino;
            assert_eq!(ns, netns);
            let r = s.record(me, fd, ns).unwrap();
            assert_eq!((TcpState::from_u8(r.state), r.protocol, r.inode), (Some(state), proto, ino(fd)));
        }
        let r = pidfd.socket(c.as_raw_fd(), ino(c.as_raw_fd()), &closer).unwrap().record(me, 0, 0).unwrap();
        assert_eq!(
            (r.family, &r.ends.local_addr[..4], r.ends.remote_port),
            (AF_INET, &[127, 0, 0, 1][..], l.local_addr().unwrap().port())
        );
        assert_eq!(pidfd.socket(c.as_raw_fd(), 1, &closer).unwrap_err(), Errno::ESTALE);
        // A file where the socket was: refused unasked, its copy closed elsewhere.
        let f = std::fs::File::open("/proc/self/stat").unwrap();
        let ino_f = std::fs::metadata("/proc/self/stat").unwrap().ino();
        assert_eq!(pidfd.socket(f.as_raw_fd(), ino_f, &closer).unwrap_err(), Errno::ESTALE);
        // Every copy's close returns: the closer takes more.
        let closing = || closer.running.lock().unwrap().as_ref().unwrap().closing.load(Ordering::Acquire);
        for _ in 0..200 {
            if closing() == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(closing(), 0);
        assert!(!closer.stalled());
    }
}
