//! The shape of every entry point: catch panics, map errors to a status,
//! leave a message for this thread.

use std::cell::RefCell;
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::types::procspy_status;
use procspy::Error;

/// Why an entry point failed.
pub(crate) enum Fail {
    /// A pointer argument, by name, was NULL.
    Null(&'static str),
    /// An argument was out of range.
    Invalid(String),
    Engine(Error),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Engine(e)
    }
}

impl Fail {
    fn status(&self) -> procspy_status {
        match self {
            Fail::Null(_) => procspy_status::PROCSPY_NULL_ARGUMENT,
            Fail::Invalid(_) => procspy_status::PROCSPY_INVALID_ARGUMENT,
            Fail::Engine(e) => match e {
                Error::Stopped => procspy_status::PROCSPY_STOPPED,
                Error::Aborted => procspy_status::PROCSPY_CALLBACK_ABORTED,
                Error::BufferTooSmall { .. } => procspy_status::PROCSPY_BUFFER_TOO_SMALL,
                Error::Invalid(_) | Error::NotFound(_) => procspy_status::PROCSPY_INVALID_ARGUMENT,
                Error::Io { .. } => procspy_status::PROCSPY_IO,
                Error::Busy | Error::Forked => procspy_status::PROCSPY_BUSY,
                Error::Unsupported(_) => procspy_status::PROCSPY_UNSUPPORTED,
            },
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn set_last_error(func: &str, msg: std::fmt::Arguments<'_>) {
    // A thread being torn down has no slot left; the status still tells.
    let _ = LAST_ERROR.try_with(|e| {
        let mut e = e.borrow_mut();
        e.clear();
        let _ = write!(e, "{func}: {msg}");
        e.retain(|&b| b != 0);
    });
}

/// Copies this thread's last message the snprintf way; returns its length.
pub(crate) fn copy_last_error(out: &mut dyn FnMut(&[u8])) -> usize {
    LAST_ERROR
        .try_with(|e| {
            let e = e.borrow();
            out(&e);
            e.len()
        })
        .unwrap_or(0)
}

/// Runs an entry point's body: `Err` and panics become a status and a
/// message for `procspy_last_error`.
pub(crate) fn guard(func: &'static str, body: impl FnOnce() -> Result<(), Fail>) -> procspy_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => procspy_status::PROCSPY_OK,
        Ok(Err(fail)) => {
            match &fail {
                Fail::Null(arg) => set_last_error(func, format_args!("{arg} is NULL")),
                Fail::Invalid(msg) => set_last_error(func, format_args!("{msg}")),
                Fail::Engine(e) => set_last_error(func, format_args!("{e}")),
            }
            fail.status()
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("unknown");
            set_last_error(func, format_args!("internal fault caught: {what}"));
            procspy_status::PROCSPY_PANIC
        }
    }
}

/// Runs the body of an entry point that returns a value, not a status: a
/// panic yields `fallback`.
pub(crate) fn guard_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}
