//! Connections: the owner index joined with each namespace's tables.

/// Buffers of the join kept from walk to walk.
#[derive(Debug, Default)]
pub(super) struct JoinState {}

/// One table line with its owner.
pub struct Connection {}
