//! The names of socket states, as the procspy command shows them: TCP's
//! by the kernel's names (include/net/tcp_states.h), UDP's two as ss shows
//! them. One table, for the Rust API and the C ABI alike.

use std::ffi::CStr;

use crate::parse::kernel::{Protocol, TcpState};

/// [`state_name`] as a static NUL-terminated string, for a caller that
/// hands it on to C; `None` for a state the kernel does not define (0, 13
/// and above).
///
/// ```
/// use procspy::{Protocol, TcpState, state_name_cstr};
/// assert_eq!(state_name_cstr(Protocol::Udp, TcpState::Close.number()), Some(c"UNCONN"));
/// ```
pub fn state_name_cstr(protocol: Protocol, state: u8) -> Option<&'static CStr> {
    match (protocol, TcpState::from_u8(state)?) {
        (Protocol::Udp, TcpState::Close) => Some(c"UNCONN"),
        (Protocol::Udp, TcpState::Established) => Some(c"ESTAB"),
        (_, s) => Some(s.c_name()),
    }
}

/// The name of socket state `state` in a table of `protocol`, as the
/// procspy command shows it: TCP's by the kernel's names
/// ([`TcpState::name`]: `"ESTABLISHED"`, `"LISTEN"`, `"TIME_WAIT"`, …);
/// UDP has no states of its own, and its two are shown as ss shows them,
/// `"UNCONN"` (CLOSE: unconnected) and `"ESTAB"` (ESTABLISHED: connected).
/// `None` for a state number the kernel does not define (0, 13 and above).
///
/// ```
/// use procspy::{Protocol, TcpState, state_name};
/// assert_eq!(state_name(Protocol::Tcp, TcpState::Listen.number()), Some("LISTEN"));
/// assert_eq!(state_name(Protocol::Udp, TcpState::Close.number()), Some("UNCONN"));
/// assert_eq!(state_name(Protocol::Tcp, 13), None);
/// ```
pub fn state_name(protocol: Protocol, state: u8) -> Option<&'static str> {
    state_name_cstr(protocol, state).and_then(|s| s.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Protocol::{Tcp, Udp};

    #[test]
    fn tcp_has_the_kernel_names() {
        for s in TcpState::all() {
            assert_eq!(state_name(Tcp, s.number()), Some(s.name()));
        }
        assert_eq!(state_name(Tcp, TcpState::Listen.number()), Some("LISTEN"));
        assert_eq!(state_name(Tcp, TcpState::NewSynRecv.number()), Some("NEW_SYN_RECV"));
    }

    #[test]
    fn udp_has_ss_names_for_its_two_states() {
        assert_eq!(state_name(Udp, TcpState::Close.number()), Some("UNCONN"));
        assert_eq!(state_name(Udp, TcpState::Established.number()), Some("ESTAB"));
        assert_eq!(state_name(Udp, TcpState::Listen.number()), Some("LISTEN"));
    }

    #[test]
    fn unknown_states_have_none() {
        for (p, s) in [(Tcp, 0), (Tcp, 13), (Tcp, 255), (Udp, 0), (Udp, 200)] {
            assert_eq!(state_name(p, s), None, "{p:?} {s}");
        }
    }
}
