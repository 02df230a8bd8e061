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

/// `Protocol::Tcp` as records number it (`Connection::protocol`).
pub(crate) const TCP: u8 = Protocol::Tcp.number();

impl Protocol {
    /// Its number in records: 1 TCP, 2 UDP.
    pub const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 1,
            Protocol::Udp => 2,
        }
    }

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

/// TCP states, as `include/net/tcp_states.h` numbers them.
pub(crate) mod tcp_state {
    pub(crate) const ESTABLISHED: u8 = 1;
    pub(crate) const CLOSE: u8 = 7;
    pub(crate) const LISTEN: u8 = 10;
    /// The last state a table lists (a request socket).
    pub(crate) const NEW_SYN_RECV: u8 = 12;
}
