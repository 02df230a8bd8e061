//! Which protocols' tables a walk reads.

/// Which tables `connections` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protocols {
    pub tcp: bool,
    pub udp: bool,
}

impl Protocols {
    /// TCP's tables (`tcp`, `tcp6`).
    pub const TCP: Protocols = Protocols { tcp: true, udp: false };
    /// UDP's tables (`udp`, `udp6`).
    pub const UDP: Protocols = Protocols { tcp: false, udp: true };
    /// Both protocols' tables.
    pub const BOTH: Protocols = Protocols { tcp: true, udp: true };
}
