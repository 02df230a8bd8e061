//! What the header declares that is none of the C ABI's own, kept there
//! because the header is a contract: nothing is removed from it.

// The core's bound on the fds a pass holds for copies awaiting their
// close, which reached the header while cbindgen parsed the core with the
// C ABI. It stays with the value it had then; nothing reads it.
/// Copies waiting for their close at most: the fds a pass holds for them.
pub const MAX_CLOSING: usize = 32;
