//! A slice of `connections`: some processes' sockets, some namespaces'
//! lines, or the tables without their owners, for what it costs to get
//! just that.
//!
//! A pid query scans only those processes' fds (and those of their threads
//! that have an fd table of their own), and lists only their own
//! namespaces, their threads', and those their sockets live in. Where the
//! caller may take their fds (`pidfd_getfd`: ptrace rights, Linux 5.6, a
//! proc root that shows the kernel's ids), each socket is asked for what
//! its table line holds and where it lives (`SIOCGSKNS`), and no table is
//! read; a socket whose line it cannot tell (a TCP connect in progress:
//! the kernel names no peer yet) sends its namespace to its tables, and
//! without `pidfd_getfd` every such namespace's tables are read and
//! filtered by the sockets' inodes.

use super::ctx::{Ctx, Member};
use super::error::Error;
use super::owners::Held;
use super::stats::Stats;
use super::tables::{Listed, Namespace, Sink, TableSource, offer_held};

/// What a query asks for; `Query::default()` is every connection, as
/// `connections` delivers them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Query<'a> {
    /// Only the sockets these processes hold (`every_line`: every line of
    /// the namespaces they and their sockets are in). `None`: every
    /// process's; an empty set is an error, never "all".
    pub pids: Option<&'a [i32]>,
    /// Only the lines of these namespaces (inodes). `None`: every
    /// namespace; an empty set is an error. Each must be reachable, else
    /// `Error::NotFound` (with `pids`, one that is none of theirs lists
    /// nothing).
    pub netns: Option<&'a [u64]>,
    /// No owner lookup: no fd of any process is read and every line's
    /// owner is `None` (so no namespace is found through a process's fd or
    /// socket). With `pids`, their sockets are still found, to know them.
    pub no_owners: bool,
    /// With `pids`: every line of their namespaces, not only their sockets.
    pub every_line: bool,
    /// Only the namespaces some process is in, as before namespaces were
    /// looked for elsewhere: no thread, mount or fd is examined.
    pub process_namespaces_only: bool,
}

impl Query<'_> {
    /// The arguments alone, before anything is read.
    pub(super) fn check(&self) -> Result<(), Error> {
        match (self.pids, self.netns) {
            (Some([]), _) => Err(Error::Invalid("the set of pids is empty (pass none for every process)")),
            (_, Some([])) => Err(Error::Invalid("the set of namespaces is empty (pass none for every namespace)")),
            (Some(p), _) if p.iter().any(|&p| p <= 0) => Err(Error::Invalid("a pid must be positive")),
            (_, Some(n)) if n.contains(&0) => Err(Error::Invalid("a namespace inode must not be 0")),
            (None, _) if self.every_line => Err(Error::Invalid("every_line needs a set of pids")),
            _ => Ok(()),
        }
    }
}

/// A pass's query as the join applies it, kept from pass to pass for its
/// buffers.
#[derive(Debug, Default)]
pub(super) struct Scope {
    /// The namespaces asked for, sorted, if any were.
    pub netns: Option<Vec<u64>>,
    /// The asked processes' socket inodes, sorted, if only their lines go out.
    pub inodes: Option<Vec<u64>>,
    /// Lines the asked processes' sockets told themselves, sorted by
    /// (netns, protocol, inode), once each; `None` where they could not.
    pub direct: Option<Vec<Held>>,
    /// Namespaces whose lines `direct` lacks: their tables are read.
    pub tables: Vec<u64>,
    /// A pid query's pids, sorted, and the entries whose fds it scans.
    pub pids: Vec<i32>,
    pub scan: Vec<Member>,
    pub tids: Vec<i32>,
}

impl Scope {
    /// Whether namespace `netns`'s lines are wanted.
    pub fn wants(&self, netns: u64) -> bool {
        self.netns.as_ref().is_none_or(|n| n.binary_search(&netns).is_ok())
    }

    /// Whether the line of socket `inode` goes out.
    pub fn admits(&self, inode: u64) -> bool {
        self.inodes.as_ref().is_none_or(|i| inode != 0 && i.binary_search(&inode).is_ok())
    }

    /// The lines of `netns` if the sockets told them all: no table is read.
    pub fn direct(&self, netns: u64) -> Option<&[Held]> {
        let direct = self.direct.as_deref()?;
        if self.tables.binary_search(&netns).is_ok() {
            return None;
        }
        let lo = direct.partition_point(|h| h.netns < netns);
        Some(&direct[lo..lo + direct[lo..].partition_point(|h| h.netns == netns)])
    }
}

/// The source for a pid query whose sockets told their own lines: a
/// namespace all of whose asked-for lines they told is listed from those.
pub(super) struct Told<'a>(pub &'a Scope);

impl TableSource for Told<'_> {
    fn list(&mut self, _: &Ctx, ns: &Namespace<'_>, sink: &mut Sink<'_>, stats: &mut Stats) -> Result<Listed, Error> {
        match self.0.direct(ns.netns) {
            Some(mine) => offer_held(mine, sink, stats),
            None => Ok(Listed::Unavailable),
        }
    }
}
