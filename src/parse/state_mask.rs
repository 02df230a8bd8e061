//! Sets of TCP states, as a walk filters table lines by them.

use super::kernel::TcpState;

/// A set of states, bit `1 << n` for state number n, as the kernel's
/// `inet_diag` masks them and `PROCSPY_STATES_*` do: which table lines a
/// walk delivers. Numbers from 32 up are in no set.
///
/// ```
/// use procspy::{StateMask, TcpState};
/// let open = StateMask::LISTEN | TcpState::Established;
/// assert!(open.contains(TcpState::Listen.number()));
/// assert!(!open.contains(TcpState::TimeWait.number()));
/// assert!(StateMask::ALL.contains(200) == false && StateMask::ALL.contains(13));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StateMask {
    bits: u32,
}

impl StateMask {
    /// Every state number there can be (`PROCSPY_STATES_ALL`), those the
    /// kernel does not define included.
    pub const ALL: StateMask = StateMask { bits: u32::MAX };
    /// The twelve states the kernel defines: bits 1 (ESTABLISHED) to 12
    /// (NEW_SYN_RECV).
    pub const DEFINED: StateMask = StateMask { bits: (1 << 13) - (1 << 1) };
    /// LISTEN only (`PROCSPY_STATES_LISTEN`).
    pub const LISTEN: StateMask = StateMask::of(TcpState::Listen);
    /// ESTABLISHED only; for UDP, connected sockets.
    pub const ESTABLISHED: StateMask = StateMask::of(TcpState::Established);
    /// ESTABLISHED, FIN_WAIT1, FIN_WAIT2 and CLOSE_WAIT: a connection that
    /// carries data (`PROCSPY_STATES_CONNECTED`).
    pub const CONNECTED: StateMask = StateMask::of(TcpState::Established)
        .union(StateMask::of(TcpState::FinWait1))
        .union(StateMask::of(TcpState::FinWait2))
        .union(StateMask::of(TcpState::CloseWait));

    /// The set of `state` alone.
    pub const fn of(state: TcpState) -> Self {
        StateMask { bits: 1 << state.number() }
    }

    /// The set whose bits are `bits` (bit `1 << n` for state n).
    pub const fn from_bits(bits: u32) -> Self {
        StateMask { bits }
    }

    /// Its bits.
    pub const fn bits(self) -> u32 {
        self.bits
    }

    /// Both sets' states.
    pub const fn union(self, other: StateMask) -> Self {
        StateMask { bits: self.bits | other.bits }
    }

    /// Whether it holds no state: a walk asked for it delivers nothing
    /// and is refused.
    pub const fn is_empty(self) -> bool {
        self.bits == 0
    }

    /// Whether state number `state` is in it (never for 32 and up).
    pub const fn contains(self, state: u8) -> bool {
        match 1u32.checked_shl(state as u32) {
            Some(bit) => self.bits & bit != 0,
            None => false,
        }
    }
}

impl From<TcpState> for StateMask {
    fn from(state: TcpState) -> Self {
        StateMask::of(state)
    }
}

impl<T: Into<StateMask>> std::ops::BitOr<T> for StateMask {
    type Output = StateMask;
    fn bitor(self, other: T) -> StateMask {
        self.union(other.into())
    }
}

impl std::ops::BitOr for TcpState {
    type Output = StateMask;
    fn bitor(self, other: TcpState) -> StateMask {
        StateMask::of(self).union(StateMask::of(other))
    }
}
