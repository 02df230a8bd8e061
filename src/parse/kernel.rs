//! The kernel's numbers, each defined once and named: address families,
//! IP protocols, socket types, TCP states, and the protocol numbering of
//! this library's records. Bytes from the kernel become these where they
//! are parsed; the C ABI converts them to its own constants by name
//! (`ffi::types`), never because two values happen to match.

/// A socket table's protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// `tcp`, `tcp6`.
    Tcp,
    /// `udp`, `udp6`.
    Udp,
}

impl Protocol {
    /// Its number in records: 1 TCP, 2 UDP (`PROCSPY_PROTO_*`).
    pub const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 1,
            Protocol::Udp => 2,
        }
    }

    /// The protocol numbered `n` (1 TCP, 2 UDP).
    pub const fn of_number(n: u8) -> Option<Self> {
        match n {
            1 => Some(Protocol::Tcp),
            2 => Some(Protocol::Udp),
            _ => None,
        }
    }

    /// The IP protocol (`IPPROTO_*`) of its sockets.
    pub const fn ipproto(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }
}

/// An IP address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Inet,
    Inet6,
}

impl Family {
    /// `AF_INET`, `AF_INET6`.
    pub const fn af(self) -> u8 {
        match self {
            Family::Inet => 2,
            Family::Inet6 => 10,
        }
    }

    pub fn of_af(af: u16) -> Option<Self> {
        [Family::Inet, Family::Inet6].into_iter().find(|f| u16::from(f.af()) == af)
    }

    /// 4 or 6, as records carry it (`Conn::family`).
    pub const fn version(self) -> u8 {
        match self {
            Family::Inet => 4,
            Family::Inet6 => 6,
        }
    }

    /// Bytes of one address.
    pub const fn addr_len(self) -> usize {
        match self {
            Family::Inet => 4,
            Family::Inet6 => 16,
        }
    }
}

/// Socket types (`SOCK_*`).
pub(crate) const SOCK_STREAM: u16 = 1;
pub(crate) const SOCK_DGRAM: u16 = 2;

/// A TCP state, as `include/net/tcp_states.h` numbers it (1 to 12), with
/// the kernel's name for it. UDP sockets use two of them: `Established`
/// (connected) and `Close` (unconnected). A record keeps the kernel's byte
/// as it came, which may be none of these ([`TcpState::from_u8`] says).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TcpState {
    /// `TCP_ESTABLISHED`; for UDP, a connected socket.
    Established = 1,
    /// `TCP_SYN_SENT`.
    SynSent = 2,
    /// `TCP_SYN_RECV`.
    SynRecv = 3,
    /// `TCP_FIN_WAIT1`.
    FinWait1 = 4,
    /// `TCP_FIN_WAIT2`.
    FinWait2 = 5,
    /// `TCP_TIME_WAIT`.
    TimeWait = 6,
    /// `TCP_CLOSE`; for UDP, an unconnected socket.
    Close = 7,
    /// `TCP_CLOSE_WAIT`.
    CloseWait = 8,
    /// `TCP_LAST_ACK`.
    LastAck = 9,
    /// `TCP_LISTEN`.
    Listen = 10,
    /// `TCP_CLOSING`.
    Closing = 11,
    /// `TCP_NEW_SYN_RECV`: a request socket, the last state a table lists.
    NewSynRecv = 12,
}

impl TcpState {
    const ALL: [TcpState; 12] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
        TcpState::NewSynRecv,
    ];

    /// Every state, in the kernel's order.
    pub const fn all() -> [TcpState; 12] {
        TcpState::ALL
    }

    /// Its number, as the kernel writes it.
    pub const fn number(self) -> u8 {
        self as u8
    }

    /// The state the kernel numbers `n`; `None` for 0 and 13 up.
    pub const fn from_u8(n: u8) -> Option<Self> {
        match n {
            1..=12 => Some(TcpState::ALL[n as usize - 1]),
            _ => None,
        }
    }

    /// The kernel's name: `"ESTABLISHED"`, `"LISTEN"`, `"TIME_WAIT"`, ...
    pub const fn name(self) -> &'static str {
        match self.c_name().to_str() {
            Ok(s) => s,
            Err(_) => "",
        }
    }

    /// [`name`](Self::name), NUL-terminated.
    pub(crate) const fn c_name(self) -> &'static std::ffi::CStr {
        match self {
            TcpState::Established => c"ESTABLISHED",
            TcpState::SynSent => c"SYN_SENT",
            TcpState::SynRecv => c"SYN_RECV",
            TcpState::FinWait1 => c"FIN_WAIT1",
            TcpState::FinWait2 => c"FIN_WAIT2",
            TcpState::TimeWait => c"TIME_WAIT",
            TcpState::Close => c"CLOSE",
            TcpState::CloseWait => c"CLOSE_WAIT",
            TcpState::LastAck => c"LAST_ACK",
            TcpState::Listen => c"LISTEN",
            TcpState::Closing => c"CLOSING",
            TcpState::NewSynRecv => c"NEW_SYN_RECV",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_number_and_name_as_the_kernel_does() {
        for (i, s) in TcpState::all().into_iter().enumerate() {
            assert_eq!(usize::from(s.number()), i + 1);
            assert_eq!(TcpState::from_u8(s.number()), Some(s));
        }
        assert_eq!(TcpState::Listen.number(), 10);
        assert_eq!(TcpState::Listen.name(), "LISTEN");
        assert_eq!(TcpState::NewSynRecv.name(), "NEW_SYN_RECV");
        for n in [0, 13, 255] {
            assert_eq!(TcpState::from_u8(n), None);
        }
    }
}
