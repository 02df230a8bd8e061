//! The pure parser's entry point.

use std::ffi::c_void;

use super::guard::{Fail, guard};
use super::types::*;
use super::walker::deliver_connection;
use procspy::engine::parse_tcp;
use procspy::{Connection, StateMask};

/// Parses `/proc/net/{tcp,udp}{,6}` text, or a walk's buffer of several
/// such files: header lines are skipped wherever they appear, IPv4 vs IPv6
/// is told by address width, lines are de-duplicated by inode (the first
/// reading wins; inode-0 lines by their whole tuple and state), and each
/// line that passes `state_mask` (non-zero) goes to `on_connection` with
/// `protocol` TCP, `netns` 0 and `owner` NULL. Malformed lines are skipped
/// and counted into `*malformed_lines` (may be NULL). Never reads outside
/// `[buf, buf+len)`; `buf` may be NULL when `len` is 0.
#[unsafe(no_mangle)]
#[must_use]
pub extern "C" fn procspy_parse_tcp(
    buf: *const u8,
    len: usize,
    state_mask: u32,
    on_connection: procspy_connection_fn,
    userdata: *mut c_void,
    malformed_lines: *mut u64,
) -> procspy_status {
    guard("procspy_parse_tcp", || {
        // SAFETY: a non-NULL `malformed_lines` points at a writable u64.
        let mut malformed = unsafe { malformed_lines.as_mut() };
        if let Some(m) = malformed.as_deref_mut() {
            *m = 0;
        }
        if buf.is_null() && len != 0 {
            return Err(Fail::Null("buf"));
        }
        let cb = on_connection.ok_or(Fail::Null("on_connection"))?;
        if len > isize::MAX as usize {
            return Err(Fail::Invalid(format!("len {len} exceeds the address space")));
        }
        let text: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: the caller lends `len` readable bytes at `buf`.
            unsafe { std::slice::from_raw_parts(buf, len) }
        };
        let r = parse_tcp(text, StateMask::from_bits(state_mask), &mut |c: &Connection<'_>| {
            deliver_connection(cb, userdata, c)
        });
        if let Some(m) = malformed {
            *m = r.malformed;
        }
        Ok(r.result?)
    })
}
