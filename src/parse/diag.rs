//! Netlink `sock_diag` messages: the dump requests, and the replies read as
//! the same records the text tables give.

use super::StateMask;
use super::kernel::{DestroyGroup, Family, Protocol};
use super::tcp::Conn;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
/// The old inet_diag request: one walk of the TCP hash for both families.
const TCPDIAG_GETSOCK: u16 = 18;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_HDRLEN: usize = 16;
/// `struct inet_diag_msg`.
const DIAG_MSG_LEN: usize = 72;

/// `struct inet_diag_req_v2` (after the header): family, protocol, then the states at 4.
const REQ_V2_LEN: usize = 56;
const REQ_V2_STATES: usize = 4;
/// `struct inet_diag_sockid`, at 4 in a message and at 8 in a v2 request:
/// ports, addresses, interface and cookie.
const SOCKID_LEN: usize = 48;
const MSG_SOCKID: usize = 4;
const REQ_V2_SOCKID: usize = 8;
/// `struct inet_diag_req`: family 0 (both), then the states at 52.
const REQ_LEN: usize = 60;
const REQ_STATES: usize = 52;

/// Every socket state, 1 (ESTABLISHED) to 12 (NEW_SYN_RECV): what the text
/// tables list. Not `!0`: bit 13 (BOUND_INACTIVE, Linux 6.8) also walks the
/// bind hash, which is host-wide, in every namespace's dump.
const ALL_STATES: u32 = StateMask::DEFINED.bits();

/// The bytes of one dump request, every state asked for: dedup and the state
/// mask apply afterwards, exactly as for the text.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    buf: [u8; NLMSG_HDRLEN + REQ_LEN],
    len: usize,
}

impl Request {
    /// The length of a `lookup`.
    pub const LOOKUP_LEN: usize = NLMSG_HDRLEN + REQ_V2_LEN;

    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn header(kind: u16, body: usize, seq: u32) -> Self {
        let len = NLMSG_HDRLEN + body;
        let mut buf = [0u8; NLMSG_HDRLEN + REQ_LEN];
        buf[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        buf[4..6].copy_from_slice(&kind.to_ne_bytes());
        buf[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        Request { buf, len }
    }

    /// `TCPDIAG_GETSOCK` with a `struct inet_diag_req`: TCP, v4 and v6 at once.
    pub fn tcp_both(seq: u32) -> Self {
        let mut r = Self::header(TCPDIAG_GETSOCK, REQ_LEN, seq);
        // family 0 (both), src_len, dst_len, ext; sockid (48 zero bytes); states; dbs.
        r.put_states(REQ_STATES);
        r
    }

    /// `SOCK_DIAG_BY_FAMILY` with a `struct inet_diag_req_v2`.
    pub fn by_family(family: Family, protocol: Protocol, seq: u32) -> Self {
        let mut r = Self::header(SOCK_DIAG_BY_FAMILY, REQ_V2_LEN, seq);
        r.buf[NLMSG_HDRLEN] = family.af();
        r.buf[NLMSG_HDRLEN + 1] = protocol.ipproto();
        r.put_states(REQ_V2_STATES);
        r
    }

    /// `SOCK_DIAG_BY_FAMILY` for one TCP socket, `id` as a reply gave it:
    /// the kernel looks its tuple up and answers with that socket only if
    /// its cookie is `id`'s (a socket since closed, or another on the same
    /// tuple, gets an error).
    pub fn lookup(id: &SockId, seq: u32) -> Self {
        let mut r = Self::header(SOCK_DIAG_BY_FAMILY, REQ_V2_LEN, seq);
        r.buf[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
        r.buf[NLMSG_HDRLEN] = id.family.af();
        r.buf[NLMSG_HDRLEN + 1] = Protocol::Tcp.ipproto();
        r.put_states(REQ_V2_STATES);
        r.buf[NLMSG_HDRLEN + REQ_V2_SOCKID..][..SOCKID_LEN].copy_from_slice(&id.bytes);
        r
    }

    /// Every state, at `at` in the request's body.
    fn put_states(&mut self, at: usize) {
        self.buf[NLMSG_HDRLEN + at..][..4].copy_from_slice(&ALL_STATES.to_ne_bytes());
    }
}

/// What names one socket to the kernel: its family and its
/// `inet_diag_sockid` as a reply gave it (tuple, interface, cookie).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockId {
    pub family: Family,
    bytes: [u8; SOCKID_LEN],
}

impl SockId {
    /// `idiag_cookie`, two u32s, the low half first.
    pub fn cookie(&self) -> u64 {
        let half = |at: usize| u64::from(u32::from_ne_bytes(self.bytes[at..at + 4].try_into().unwrap()));
        half(40) | (half(44) << 32)
    }

    #[cfg(test)]
    pub(crate) fn for_test(family: Family, cookie: u64) -> Self {
        let mut bytes = [0; SOCKID_LEN];
        bytes[40..44].copy_from_slice(&(cookie as u32).to_ne_bytes());
        bytes[44..48].copy_from_slice(&((cookie >> 32) as u32).to_ne_bytes());
        SockId { family, bytes }
    }
}

/// One message of a dump reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    Sock(Conn, SockId),
    /// The dump is complete.
    Done,
    /// The kernel refused the request (a positive errno).
    Error(i32),
    /// Not an answer to our request (another sequence number or port id),
    /// or one too short to read: not believed.
    Skip,
}

/// Reads the messages of one `recv()` in order; stops at the first that
/// does not fit the buffer. Only a message with the request's sequence
/// number and the requester's port id (`nlmsg_pid`, which the kernel sets
/// to the port it answers) is read; libmnl's `mnl_cb_run` checks the same.
pub fn replies(buf: &[u8], seq: u32, port_id: u32) -> impl Iterator<Item = Reply> + '_ {
    let mut rest = buf;
    std::iter::from_fn(move || {
        let len = u32::from_ne_bytes(rest.get(0..4)?.try_into().ok()?) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return None;
        }
        let (msg, tail) = rest.split_at(len);
        rest = tail.get(len.next_multiple_of(4) - len..).unwrap_or(&[]);
        let kind = u16::from_ne_bytes([msg[4], msg[5]]);
        let msg_seq = u32::from_ne_bytes([msg[8], msg[9], msg[10], msg[11]]);
        let msg_port = u32::from_ne_bytes([msg[12], msg[13], msg[14], msg[15]]);
        let body = &msg[NLMSG_HDRLEN..];
        Some(match kind {
            _ if msg_seq != seq || msg_port != port_id => Reply::Skip,
            NLMSG_DONE => Reply::Done,
            NLMSG_ERROR => match body.get(0..4) {
                Some(e) => Reply::Error(i32::from_ne_bytes([e[0], e[1], e[2], e[3]]).saturating_neg()),
                None => Reply::Error(0),
            },
            _ => diag_msg(body).map_or(Reply::Skip, |(c, id)| Reply::Sock(c, id)),
        })
    })
}

/// One destroy notification, checked as strictly as a dump reply: the
/// kernel sent it (port id `sender` 0) to exactly one destroy group
/// (`groups`: the `nl_groups` bits, [`DestroyGroup::bit`]), and it is
/// one `SOCK_DIAG_BY_FAMILY` message, sequence number and port id 0, of that
/// group's family. Its protocol, the socket as its last table line
/// would read, and its cookie; `None` for anything else.
pub fn destroyed(buf: &[u8], sender: u32, groups: u32) -> Option<(Protocol, Conn, u64)> {
    let (family, protocol) = DestroyGroup::of_bits(groups)?.family_protocol();
    let header = buf.get(..NLMSG_HDRLEN)?;
    let word = |at: usize| u32::from_ne_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
    let len = word(0) as usize;
    let one_message = len >= NLMSG_HDRLEN && len <= buf.len() && buf.len() - len < 4;
    let kind = u16::from_ne_bytes([header[4], header[5]]);
    if sender != 0 || !one_message || kind != SOCK_DIAG_BY_FAMILY || word(8) != 0 || word(12) != 0 {
        return None;
    }
    let body = &buf[NLMSG_HDRLEN..len];
    if body.first() != Some(&family.af()) {
        return None;
    }
    let (conn, id) = diag_msg(body)?;
    Some((protocol, conn, id.cookie()))
}

/// `struct inet_diag_msg` as a table line (ports and addresses arrive in
/// network order, the inode as 32 bits), and the socket's id.
fn diag_msg(b: &[u8]) -> Option<(Conn, SockId)> {
    let b = b.get(..DIAG_MSG_LEN)?;
    let family = Family::of_af(u16::from(b[0]))?;
    let addr = |at: usize| {
        let mut a = [0u8; 16];
        let n = family.addr_len();
        a[..n].copy_from_slice(&b[at..at + n]);
        a
    };
    let u32_at = |at: usize| u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let conn = Conn {
        inode: u64::from(u32_at(68)),
        family: family.version(),
        state: b[1],
        local_addr: addr(8),
        remote_addr: addr(24),
        local_port: u16::from_be_bytes([b[4], b[5]]),
        remote_port: u16::from_be_bytes([b[6], b[7]]),
        uid: u32_at(64),
    };
    Some((conn, SockId { family, bytes: b[MSG_SOCKID..][..SOCKID_LEN].try_into().ok()? }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::kernel::TcpState;

    const PORT: u32 = 4242;

    fn msg(kind: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        msg_to(PORT, kind, seq, body)
    }

    fn msg_to(port: u32, kind: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDRLEN + body.len();
        let mut v = Vec::new();
        v.extend((len as u32).to_ne_bytes());
        v.extend(kind.to_ne_bytes());
        v.extend(2u16.to_ne_bytes());
        v.extend(seq.to_ne_bytes());
        v.extend(port.to_ne_bytes());
        v.extend(body);
        v.resize(len.next_multiple_of(4), 0);
        v
    }

    #[allow(clippy::too_many_arguments)] // one per field of the message
    const V4: Conn = Conn::V4;

    /// 127.0.0.1 and 1.2.3.4 as records hold them.
    const LO: [u8; 16] = [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    const ADDR: [u8; 16] = [1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

    /// The `struct inet_diag_msg` the kernel sends for the socket `c`.
    fn diag(c: &Conn) -> Vec<u8> {
        let family = if c.family == Family::Inet.version() { Family::Inet } else { Family::Inet6 };
        let mut b = vec![family.af(), c.state, 0, 0];
        b.extend(c.local_port.to_be_bytes());
        b.extend(c.remote_port.to_be_bytes());
        b.extend(c.local_addr);
        b.extend(c.remote_addr);
        b.extend([0u8; 4]); // if
        b.extend(2u32.to_ne_bytes()); // the cookie, 1 << 32 | 2: its low half,
        b.extend(1u32.to_ne_bytes()); // then its high half
        b.extend([0u8; 12]); // expires, rqueue, wqueue
        b.extend(c.uid.to_ne_bytes());
        b.extend((c.inode as u32).to_ne_bytes());
        assert_eq!(b.len(), DIAG_MSG_LEN);
        b
    }

    #[test]
    fn requests_have_the_kernel_layout() {
        let r = Request::tcp_both(7);
        assert_eq!(r.bytes().len(), 76);
        assert_eq!(&r.bytes()[0..4], &76u32.to_ne_bytes());
        assert_eq!(&r.bytes()[4..6], &18u16.to_ne_bytes());
        assert_eq!(&r.bytes()[6..8], &0x301u16.to_ne_bytes());
        assert_eq!(&r.bytes()[8..12], &7u32.to_ne_bytes());
        assert_eq!(r.bytes()[16], 0, "AF_UNSPEC: both families");
        assert_eq!(&r.bytes()[68..72], &0x1FFEu32.to_ne_bytes(), "states 1 to 12");
        let r = Request::by_family(Family::Inet6, Protocol::Udp, 9);
        assert_eq!(r.bytes().len(), 72);
        assert_eq!(&r.bytes()[4..6], &20u16.to_ne_bytes());
        assert_eq!(&r.bytes()[16..18], &[10, 17]);
        assert_eq!(&r.bytes()[20..24], &0x1FFEu32.to_ne_bytes());
    }

    #[test]
    fn replies_read_as_table_lines() {
        let (listen, established) = (TcpState::Listen.number(), TcpState::Established.number());
        let listener = Conn { inode: 4242, state: listen, local_addr: LO, local_port: 8080, uid: 1000, ..V4 };
        let v6 = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1];
        let mapped = Conn {
            inode: 77,
            family: 6,
            state: established,
            local_addr: v6,
            remote_addr: v6,
            local_port: 40000,
            remote_port: 8080,
            ..V4
        };
        let other = Conn { inode: 1, state: established, local_addr: ADDR, local_port: 1, remote_port: 2, ..V4 };
        let mut buf = msg(20, 5, &diag(&listener));
        buf.extend(msg(20, 5, &diag(&mapped)));
        buf.extend(msg(20, 4, &diag(&other)));
        buf.extend(msg_to(PORT + 1, 20, 5, &diag(&other)));
        buf.extend(msg_to(PORT + 1, 3, 5, &[0; 4]));
        buf.extend(msg(3, 5, &[0; 4]));
        let got: Vec<Reply> = replies(&buf, 5, PORT).collect();
        let (Reply::Sock(a, a_id), Reply::Sock(b, b_id)) = (got[0], got[1]) else { panic!("{got:?}") };
        assert_eq!((a, b), (listener, mapped));
        assert_eq!(got[2..], [Reply::Skip, Reply::Skip, Reply::Skip, Reply::Done]);
        assert_eq!((a_id.family, b_id.family), (Family::Inet, Family::Inet6));
        assert_eq!(a_id.cookie(), 1 << 32 | 2);
        // A lookup names the socket as its reply did: family, TCP, and the
        // sockid (ports, addresses, interface, cookie) after the states.
        let r = Request::lookup(&b_id, 11);
        assert_eq!(r.bytes().len(), 72);
        assert_eq!(&r.bytes()[4..8], &[20, 0, 1, 0], "SOCK_DIAG_BY_FAMILY, a request, not a dump");
        assert_eq!(&r.bytes()[16..18], &[10, 6]);
        assert_eq!(&r.bytes()[20..24], &0x1FFEu32.to_ne_bytes());
        assert_eq!(&r.bytes()[24..72], &diag(&mapped)[4..52]);
    }

    #[test]
    fn destroy_notifications_are_believed_only_from_the_kernel_to_one_group() {
        use DestroyGroup::{Inet6Tcp, InetTcp, InetUdp};
        // The kernel's: port id 0 in the header, as in the sender's address.
        let mut lo2 = LO;
        lo2[3] = 2;
        let close = TcpState::Close.number();
        let closed = Conn {
            state: close,
            local_addr: LO,
            local_port: 40000,
            remote_addr: lo2,
            remote_port: 8080,
            uid: 1000,
            ..V4
        };
        let tcp4 = msg_to(0, 20, 0, &diag(&closed));
        let (protocol, c, cookie) = destroyed(&tcp4, 0, InetTcp.bit()).unwrap();
        assert_eq!((protocol, c, cookie), (Protocol::Tcp, closed, (1 << 32) | 2));
        assert_eq!(destroyed(&tcp4, 0, InetUdp.bit()).map(|d| d.0), Some(Protocol::Udp), "the group says the protocol");
        assert_eq!(destroyed(&tcp4, 4321, InetTcp.bit()), None, "a user-space sender");
        assert_eq!(destroyed(&tcp4, 0, 0), None, "a unicast");
        assert_eq!(destroyed(&tcp4, 0, InetTcp.bit() | InetUdp.bit()), None, "two groups");
        assert_eq!(destroyed(&tcp4, 0, Inet6Tcp.bit()), None, "an IPv6 group, an IPv4 socket");
        let mut seq = tcp4.clone();
        seq[8] = 1;
        assert_eq!(destroyed(&seq, 0, InetTcp.bit()), None, "a sequence number");
        let mut pid = tcp4.clone();
        pid[12] = 1;
        assert_eq!(destroyed(&pid, 0, InetTcp.bit()), None, "a port id");
        let mut two = tcp4.clone();
        two.extend_from_slice(&tcp4);
        assert_eq!(destroyed(&two, 0, InetTcp.bit()), None, "two messages");
        let other =
            msg_to(0, 3, 0, &diag(&Conn { state: close, local_addr: ADDR, local_port: 1, remote_port: 2, ..V4 }));
        assert_eq!(destroyed(&other, 0, InetTcp.bit()), None, "another type");
        for cut in 0..tcp4.len() {
            assert_eq!(destroyed(&tcp4[..cut], 0, InetTcp.bit()), None);
        }
    }

    #[test]
    fn errors_and_garbage() {
        let buf = msg(2, 1, &(-22i32).to_ne_bytes());
        assert_eq!(replies(&buf, 1, PORT).collect::<Vec<_>>(), vec![Reply::Error(22)]);
        for cut in 0..buf.len() {
            assert!(replies(&buf[..cut], 1, PORT).count() <= 1);
        }
        let short = msg(20, 1, &[2, 1, 0]);
        assert_eq!(replies(&short, 1, PORT).collect::<Vec<_>>(), vec![Reply::Skip]);
        let mut x = 0x2545F4914F6CDD1Du64;
        for _ in 0..2000 {
            let bytes: Vec<u8> = (0..97)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = replies(&bytes, 1, PORT).count();
        }
    }
}
