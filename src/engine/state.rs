//! The names of socket states, as the procspy command shows them: TCP's
//! by the kernel's names (include/net/tcp_states.h), UDP's two as ss shows
//! them. One table, for the Rust API and the C ABI alike.

use std::ffi::CStr;

use crate::parse::kernel::{Protocol, TcpState};

/// The name of `state` in a table of `protocol`, as a static
/// NUL-terminated string; `None` for a state the kernel does not define
/// (0, 13 and above).
pub(crate) fn state_name_cstr(protocol: Protocol, state: u8) -> Option<&'static CStr> {
    match (protocol, TcpState::from_u8(state)?) {
        (Protocol::Udp, TcpState::Close) => Some(c"UNCONN"),
        (Protocol::Udp, TcpState::Established) => Some(c"ESTAB"),
        (_, s) => Some(s.c_name()),
    }
}

/// The name of socket state `state` in a table of `protocol` (1 = TCP,
/// 2 = UDP, as in [`Connection::protocol`](crate::engine::Connection)), as
/// the procspy command shows it: TCP's by the kernel's names
/// (`"ESTABLISHED"`, `"LISTEN"`, `"TIME_WAIT"`, …); UDP has no states of
/// its own, and its two are shown as ss shows them, `"UNCONN"` (7, the
/// kernel's CLOSE: unconnected) and `"ESTAB"` (1: connected). `None` for a
/// state number the kernel does not define (0, 13 and above) and for any
/// other protocol.
///
/// ```
/// assert_eq!(procspy::state_name(1, 10), Some("LISTEN"));
/// assert_eq!(procspy::state_name(2, 7), Some("UNCONN"));
/// assert_eq!(procspy::state_name(1, 13), None);
/// ```
pub fn state_name(protocol: u8, state: u8) -> Option<&'static str> {
    state_name_cstr(Protocol::of_number(protocol)?, state).and_then(|s| s.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_has_the_kernel_names() {
        let names: Vec<_> = (1..=12).map(|s| state_name(1, s).unwrap()).collect();
        assert_eq!(
            names,
            [
                "ESTABLISHED",
                "SYN_SENT",
                "SYN_RECV",
                "FIN_WAIT1",
                "FIN_WAIT2",
                "TIME_WAIT",
                "CLOSE",
                "CLOSE_WAIT",
                "LAST_ACK",
                "LISTEN",
                "CLOSING",
                "NEW_SYN_RECV"
            ]
        );
    }

    #[test]
    fn udp_has_ss_names_for_its_two_states() {
        assert_eq!(state_name(2, 7), Some("UNCONN"));
        assert_eq!(state_name(2, 1), Some("ESTAB"));
        assert_eq!(state_name(2, 10), Some("LISTEN"));
    }

    #[test]
    fn unknown_states_and_protocols_have_none() {
        for (p, s) in [(1, 0), (1, 13), (1, 255), (2, 0), (2, 200), (0, 1), (3, 1), (255, 10)] {
            assert_eq!(state_name(p, s), None, "{p} {s}");
        }
    }
}
