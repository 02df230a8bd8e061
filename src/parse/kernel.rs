//! The kernel's numbers, each defined once and named: address families,
//! IP protocols, socket types, TCP states, sock_diag's destroy groups, BTF
//! kinds, and the protocol numbering of this library's records. Bytes from the kernel become these where they
//! are parsed; the C ABI converts them to its own constants by name
//! (`ffi/src/types.rs`), never because two values happen to match.

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

    /// The protocol of sockets of IP protocol `n`.
    pub fn of_ipproto(n: u8) -> Option<Self> {
        [Protocol::Tcp, Protocol::Udp].into_iter().find(|p| p.ipproto() == n)
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

/// A kernel vocabulary as an enum: each value with its number and the
/// kernel's name for it, listed once; `ALL` (in order), `number`,
/// `from_u8` and `c_name` come with it.
macro_rules! kernel_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident: $n:literal {
            $($(#[$vmeta:meta])* $variant:ident = $value:literal, $cname:literal;)*
        }
    ) => {
        $(#[$meta])*
        #[repr(u8)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $value,)*
        }

        impl $name {
            const ALL: [$name; $n] = [$($name::$variant),*];

            /// Its number, as the kernel writes it.
            pub const fn number(self) -> u8 {
                self as u8
            }

            /// The value the kernel numbers `n`; `None` for a number it
            /// does not define (or this library does not know).
            pub const fn from_u8(n: u8) -> Option<Self> {
                let mut i = 0;
                while i < Self::ALL.len() {
                    if Self::ALL[i] as u8 == n {
                        return Some(Self::ALL[i]);
                    }
                    i += 1;
                }
                None
            }

            /// The kernel's name for it, NUL-terminated.
            pub const fn c_name(self) -> &'static std::ffi::CStr {
                match self {
                    $($name::$variant => $cname,)*
                }
            }
        }
    };
}

kernel_enum! {
    /// A TCP state, as `include/net/tcp_states.h` numbers it (1 to 12), with
    /// the kernel's name for it. UDP sockets use two of them: `Established`
    /// (connected) and `Close` (unconnected). A record keeps the kernel's byte
    /// as it came, which may be none of these ([`TcpState::from_u8`] says).
    pub enum TcpState: 12 {
        /// For UDP, a connected socket.
        Established = 1, c"ESTABLISHED";
        SynSent = 2, c"SYN_SENT";
        SynRecv = 3, c"SYN_RECV";
        FinWait1 = 4, c"FIN_WAIT1";
        FinWait2 = 5, c"FIN_WAIT2";
        TimeWait = 6, c"TIME_WAIT";
        /// For UDP, an unconnected socket.
        Close = 7, c"CLOSE";
        CloseWait = 8, c"CLOSE_WAIT";
        LastAck = 9, c"LAST_ACK";
        Listen = 10, c"LISTEN";
        Closing = 11, c"CLOSING";
        /// A request socket: the last state a table lists.
        NewSynRecv = 12, c"NEW_SYN_RECV";
    }
}

impl TcpState {
    /// Every state, in the kernel's order.
    pub const fn all() -> [TcpState; 12] {
        TcpState::ALL
    }

    /// The kernel's name: `"ESTABLISHED"`, `"LISTEN"`, `"TIME_WAIT"`, ...
    pub const fn name(self) -> &'static str {
        match self.c_name().to_str() {
            Ok(s) => s,
            Err(_) => "",
        }
    }
}

kernel_enum! {
    /// sock_diag's destroy notification groups (`linux/sock_diag.h`,
    /// `SKNLGRP_*`): one per family and protocol.
    pub enum DestroyGroup: 4 {
        InetTcp = 1, c"SKNLGRP_INET_TCP_DESTROY";
        InetUdp = 2, c"SKNLGRP_INET_UDP_DESTROY";
        Inet6Tcp = 3, c"SKNLGRP_INET6_TCP_DESTROY";
        Inet6Udp = 4, c"SKNLGRP_INET6_UDP_DESTROY";
    }
}

impl DestroyGroup {
    /// Its bit in `nl_groups`: group g is bit g - 1.
    pub const fn bit(self) -> u32 {
        1 << (self as u32 - 1)
    }

    /// Every group's bit.
    pub const fn all_bits() -> u32 {
        let (mut bits, mut i) = (0, 0);
        while i < Self::ALL.len() {
            bits |= Self::ALL[i].bit();
            i += 1;
        }
        bits
    }

    /// The one group whose bit `groups` is; `None` for none or several.
    pub fn of_bits(groups: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.bit() == groups)
    }

    /// The family and protocol of the sockets it tells of.
    pub const fn family_protocol(self) -> (Family, Protocol) {
        match self {
            DestroyGroup::InetTcp => (Family::Inet, Protocol::Tcp),
            DestroyGroup::InetUdp => (Family::Inet, Protocol::Udp),
            DestroyGroup::Inet6Tcp => (Family::Inet6, Protocol::Tcp),
            DestroyGroup::Inet6Udp => (Family::Inet6, Protocol::Udp),
        }
    }
}

kernel_enum! {
    /// A BTF type's kind (`BTF_KIND_*`, `include/uapi/linux/btf.h`).
    pub enum BtfKind: 19 {
        Int = 1, c"INT";
        Ptr = 2, c"PTR";
        Array = 3, c"ARRAY";
        Struct = 4, c"STRUCT";
        Union = 5, c"UNION";
        Enum = 6, c"ENUM";
        Fwd = 7, c"FWD";
        Typedef = 8, c"TYPEDEF";
        Volatile = 9, c"VOLATILE";
        Const = 10, c"CONST";
        Restrict = 11, c"RESTRICT";
        Func = 12, c"FUNC";
        FuncProto = 13, c"FUNC_PROTO";
        Var = 14, c"VAR";
        Datasec = 15, c"DATASEC";
        Float = 16, c"FLOAT";
        DeclTag = 17, c"DECL_TAG";
        TypeTag = 18, c"TYPE_TAG";
        /// Since Linux 6.0.
        Enum64 = 19, c"ENUM64";
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
