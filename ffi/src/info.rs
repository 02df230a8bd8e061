//! Version, status and state names, and the last error.

use std::ffi::{c_char, c_int};

use super::guard::{copy_last_error, guard_value};
use super::mem::copy_out;
use super::types::{procspy_status, protocol_of_c};
use procspy::state_name_cstr;

/// The major version of the header a program is compiled against: a
/// binding may check it at compile time (`#if PROCSPY_VERSION_MAJOR != 0`)
/// and `procspy_version()` at run time, for the library it was loaded
/// with. Programs built against one major version run with any library of
/// that major version whose minor version is at least theirs.
pub const PROCSPY_VERSION_MAJOR: u32 = 0;
/// The minor version of the header: what it declares is in every library
/// of the same major version and at least this minor version.
pub const PROCSPY_VERSION_MINOR: u32 = 1;
/// The patch version of the header.
pub const PROCSPY_VERSION_PATCH: u32 = 0;

/// A decimal number at compile time, for checking the version constants.
const fn decimal(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut i = 0;
    let mut v = 0;
    while i < b.len() {
        v = v * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    v
}

// The header's version is the crate's: a version bump that forgets the
// constants above fails to build.
const _: () = assert!(
    PROCSPY_VERSION_MAJOR == decimal(env!("CARGO_PKG_VERSION_MAJOR"))
        && PROCSPY_VERSION_MINOR == decimal(env!("CARGO_PKG_VERSION_MINOR"))
        && PROCSPY_VERSION_PATCH == decimal(env!("CARGO_PKG_VERSION_PATCH")),
    "PROCSPY_VERSION_* differ from Cargo.toml's version"
);

/// "MAJOR.MINOR.PATCH" of the library; static.
#[unsafe(no_mangle)]
pub extern "C" fn procspy_version() -> *const c_char {
    const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    guard_value(c"".as_ptr(), || VERSION.as_ptr().cast())
}

/// A status as it is spelled in C, which is an int whatever the enum says.
/// cbindgen:ignore
pub type procspy_status_int = c_int;

/// The name and meaning of a status; static, never NULL, also for values
/// this version does not know.
#[unsafe(no_mangle)]
pub extern "C" fn procspy_status_str(status: procspy_status_int) -> *const c_char {
    guard_value(c"PROCSPY_PANIC: an internal fault was caught at the boundary".as_ptr(), || {
        use procspy_status::*;
        let s = match status {
            s if s == PROCSPY_OK as c_int => c"PROCSPY_OK: success",
            s if s == PROCSPY_STOPPED as c_int => c"PROCSPY_STOPPED: procspy_walker_stop() was called",
            s if s == PROCSPY_CALLBACK_ABORTED as c_int => c"PROCSPY_CALLBACK_ABORTED: a callback returned non-zero",
            s if s == PROCSPY_BUFFER_TOO_SMALL as c_int => c"PROCSPY_BUFFER_TOO_SMALL: the buffer was too small",
            s if s == PROCSPY_NULL_ARGUMENT as c_int => c"PROCSPY_NULL_ARGUMENT: a required pointer was NULL",
            s if s == PROCSPY_INVALID_ARGUMENT as c_int => c"PROCSPY_INVALID_ARGUMENT: an argument was out of range",
            s if s == PROCSPY_IO as c_int => c"PROCSPY_IO: a system call failed (procspy_last_error() says which)",
            s if s == PROCSPY_BUSY as c_int => c"PROCSPY_BUSY: a walk on this walker is already running",
            s if s == PROCSPY_PANIC as c_int => c"PROCSPY_PANIC: an internal fault was caught at the boundary",
            s if s == PROCSPY_UNSUPPORTED as c_int => {
                c"PROCSPY_UNSUPPORTED: the running kernel lacks or refused what was asked"
            }
            _ => c"unknown procspy_status",
        };
        s.as_ptr()
    })
}

/// The name of socket state `state` in a table of `protocol`, as the
/// procspy command prints it: for `PROCSPY_PROTO_TCP` the kernel's names
/// ("ESTABLISHED", "SYN_SENT", ... "LISTEN", "CLOSING", "NEW_SYN_RECV";
/// include/net/tcp_states.h); for `PROCSPY_PROTO_UDP`, which has no states
/// of its own, "UNCONN" for `PROCSPY_STATE_CLOSE` (unconnected) and "ESTAB"
/// for `PROCSPY_STATE_ESTABLISHED` (connected), as ss prints them, and the
/// kernel's names for other numbers. "UNKNOWN" for a state number the kernel
/// does not define (0, 13 and above) and for any other `protocol`. Static,
/// NUL-terminated, never NULL: `procspy_state_name(c->protocol, c->state)`.
#[unsafe(no_mangle)]
pub extern "C" fn procspy_state_name(protocol: u32, state: u32) -> *const c_char {
    guard_value(c"UNKNOWN".as_ptr(), || {
        let name = protocol_of_c(protocol).zip(u8::try_from(state).ok()).and_then(|(p, s)| state_name_cstr(p, s));
        name.unwrap_or(c"UNKNOWN").as_ptr()
    })
}

/// Copies this thread's last failure message ("which call: which path:
/// which errno") into `buf`, at most `cap - 1` bytes and a NUL, and returns
/// its full length, like snprintf. `buf` may be NULL when `cap` is 0. A
/// successful call leaves the message as it was; "" before any failure.
#[unsafe(no_mangle)]
pub extern "C" fn procspy_last_error(buf: *mut c_char, cap: usize) -> usize {
    guard_value(0, || {
        copy_last_error(&mut |msg| {
            // SAFETY: the caller lends `cap` writable bytes at `buf` (NULL only with `cap` 0).
            unsafe { copy_out(msg, buf, cap) };
        })
    })
}
