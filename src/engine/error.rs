//! What can go wrong, in words a log line can carry.

use nix::errno::Errno;

/// An engine failure. A walk that ran also filled its `Stats`.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// `Walker::stop` was called.
    #[error("stopped by procspy_walker_stop")]
    Stopped,
    /// The callback asked to end the walk.
    #[error("a callback returned non-zero")]
    Aborted,
    /// The tables did not fit the caller's buffer.
    #[error("buffer too small: {needed} bytes needed, capacity {capacity}")]
    BufferTooSmall { needed: u64, capacity: u64 },
    /// An argument is out of its range.
    #[error("{0}")]
    Invalid(&'static str),
    /// A query named a process or namespace that is not there.
    #[error("{0}")]
    NotFound(String),
    /// A system call on `path` failed with `errno` (an `E*` number of
    /// `errno.h`; [`Error::os_error`] makes it a `std::io::Error`).
    #[error("{path}: {}", Errno::from_raw(*.errno).desc())]
    Io { path: String, errno: i32 },
    /// Another walk holds this walker.
    #[error("a walk on this walker is already running")]
    Busy,
    /// This process was forked during a walk on this walker, which goes on
    /// in the parent only.
    #[error("a walk on this walker is running in the process this one was forked from, and goes on there only")]
    Forked,
    /// The running kernel lacks what was asked for, or refused it; the
    /// message says what (for a verifier's refusal, the end of its log).
    /// Shared: a walker keeps it, and copying it allocates nothing.
    #[error("{0}")]
    Unsupported(std::sync::Arc<str>),
}

impl Error {
    pub(crate) fn io(path: impl std::fmt::Display, errno: Errno) -> Self {
        Error::Io { path: path.to_string(), errno: errno as i32 }
    }

    /// The system's error of an `Io` failure (its `raw_os_error` is the
    /// errno); `None` for every other failure.
    ///
    /// ```
    /// let e = procspy::Walker::new(Some(b"/nonexistent")).unwrap_err();
    /// assert_eq!(e.os_error().map(|e| e.kind()), Some(std::io::ErrorKind::NotFound));
    /// assert_eq!(e.to_string(), "/nonexistent: No such file or directory");
    /// ```
    pub fn os_error(&self) -> Option<std::io::Error> {
        match self {
            Error::Io { errno, .. } => Some(std::io::Error::from_raw_os_error(*errno)),
            _ => None,
        }
    }
}

/// Why a pass over a kernel interface (a netlink dump, the BPF owner scan)
/// did not finish.
pub(super) enum DiagStop {
    /// The interface can't be used there: fall back to the next way.
    Unavailable(Errno),
    /// The callback (or a stop, which `with_state` tells apart) ended the walk.
    Ended(Error),
}
