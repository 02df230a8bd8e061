//! What every part of a pass reads and nothing else: the proc root and its
//! probes, the stop, the pacing, and which process is walking. The owner
//! scans and the table sources take a `Ctx`, never the `Walker`, so the
//! engine's modules depend one way, down to this (see `engine`).

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::stat::{FileStat, SFlag};

use super::error::Error;
use super::pace::{Stop, Ticker};
use super::stats::Stats;
use crate::parse::stat::parse_stat;
use crate::procfs::{self, Closer, ProcRoot};

/// A `stat` file longer than this is not a process's (a hostile tree).
const STAT_LIMIT: usize = 4 << 20;

/// How a pass reaches a network namespace: through a process (or thread)
/// in it, or a way in the namespace search found (`namespaces`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Way {
    Pid(i32),
    /// The entry of that index in the pass's `Namespaces`.
    Via(usize),
}

/// A member of a namespace's group: the namespace, and one way to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Member {
    pub netns: u64,
    pub way: Way,
}

impl Member {
    pub fn pid(netns: u64, pid: i32) -> Self {
        Member { netns, way: Way::Pid(pid) }
    }

    /// The pid it is, if it is one.
    pub fn as_pid(&self) -> Option<i32> {
        match self.way {
            Way::Pid(pid) => Some(pid),
            Way::Via(_) => None,
        }
    }
}

/// Members, sorted: each namespace's are contiguous.
pub(super) type Groups = Vec<Member>;

/// One namespace's members, a slice of `Groups`.
pub(super) type Group = [Member];

/// The groups of `members`, one per namespace.
pub(super) fn by_netns(members: &Group) -> impl Iterator<Item = &Group> {
    members.chunk_by(|a, b| a.netns == b.netns)
}

#[derive(Debug)]
pub(super) struct Ctx {
    pub root: ProcRoot,
    pub root_path: String,
    pub stop: Arc<Stop>,
    /// Closes the fds a pass takes from other processes, off the caller's thread.
    pub closer: Closer,
    /// The process whose walk holds the walker's state (0: none). A child
    /// forked during a walk sees its parent's pid here.
    pub walking: AtomicU32,
    fd_block: AtomicU64,
    tick_ns: AtomicU64,
}

/// The namespace a `PID/ns/net` stat names. A namespace file is a regular
/// file; anything else is none: Linux 5.10 answers a stat of another user's
/// link with a directory of proc's instead of EACCES, which would make every
/// process a namespace of its own.
fn ns_inode(st: &FileStat) -> Result<u64, Errno> {
    if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFREG {
        Ok(st.st_ino)
    } else {
        Err(Errno::EACCES)
    }
}

impl Ctx {
    pub fn new(root: ProcRoot, root_path: String, stop: Arc<Stop>) -> Self {
        Self {
            root,
            root_path,
            stop,
            closer: Closer::default(),
            walking: AtomicU32::new(0),
            fd_block: AtomicU64::new(0),
            tick_ns: AtomicU64::new(0),
        }
    }

    pub fn set_rate_limit(&self, fd_block_size: u64, tick: Duration) {
        self.fd_block.store(fd_block_size, Ordering::Relaxed);
        self.tick_ns.store(tick.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// Fds `stat()`ed between two ticks (0: no ticks between namespaces).
    pub fn fd_block(&self) -> u64 {
        self.fd_block.load(Ordering::Relaxed)
    }

    /// Waits for the next tick; false if stopped.
    pub fn tick(&self, ticker: &mut Ticker, stats: &mut Stats) -> bool {
        stats.ticks += 1;
        ticker.tick(Duration::from_nanos(self.tick_ns.load(Ordering::Relaxed)), &self.stop)
    }

    /// Fails with `Forked` in a child forked during this walk (from a
    /// callback), before it touches what it shares with its parent: the
    /// socket of a dump, the position in a directory listing.
    pub fn check_fork(&self) -> Result<(), Error> {
        if self.walking.load(Ordering::Relaxed) == std::process::id() { Ok(()) } else { Err(Error::Forked) }
    }

    /// Whether the host has no IPv6 tables, as far as has been seen.
    pub fn v6_absent(&self) -> bool {
        self.root.probes().v6.is_no()
    }

    /// Whether pids have `ns/net` (not known before the first grouping).
    pub fn has_ns_files(&self) -> bool {
        !self.root.probes().ns_file.is_no()
    }

    pub fn ns_file(&self) -> &'static str {
        if self.has_ns_files() { "ns/net" } else { "net/dev" }
    }

    /// The inode of `pid`'s network namespace: `ns/net`, or before Linux
    /// 3.8 a per-namespace proc file's.
    pub fn netns(&self, pid: i32) -> Result<u64, Errno> {
        let probe = &self.root.probes().ns_file;
        match probe.get() {
            procfs::Known::Yes => ns_inode(&self.root.stat(pid, b"ns/net")?),
            procfs::Known::No => Ok(self.root.stat(pid, b"net/dev")?.st_ino),
            procfs::Known::Unknown => match self.root.stat(pid, b"ns/net") {
                Ok(st) => {
                    probe.set(true);
                    ns_inode(&st)
                }
                Err(Errno::ENOENT) => {
                    let st = self.root.stat(pid, b"net/dev")?;
                    probe.set(false);
                    Ok(st.st_ino)
                }
                Err(e) => Err(e),
            },
        }
    }

    /// Lists the pids into `pids` and groups them by namespace into `groups`.
    pub fn group_by_netns(
        &self,
        dents: &mut [u8],
        pids: &mut Vec<i32>,
        groups: &mut Groups,
        stats: &mut Stats,
    ) -> Result<(), Error> {
        pids.clear();
        groups.clear();
        self.root.list_pids(dents, pids).map_err(|e| Error::io(&self.root_path, e))?;
        for &pid in pids.iter() {
            if self.stop.is_set() {
                return Err(Error::Stopped);
            }
            stats.processes += 1;
            match self.netns(pid) {
                Ok(ns) => groups.push(Member::pid(ns, pid)),
                Err(_) => stats.skipped += 1,
            }
        }
        groups.sort_unstable();
        stats.namespaces = by_netns(groups).count() as u64;
        Ok(())
    }

    /// Reads `pid`'s name into `name` (NUL-terminated) and returns its
    /// start time and thread count.
    pub fn read_stat(&self, pid: i32, buf: &mut Vec<u8>, name: &mut Vec<u8>) -> Option<(u64, u64)> {
        let fd = self.root.open_file(pid, b"stat").ok()?;
        let len = procfs::read_all(fd.as_fd(), buf, STAT_LIMIT, procfs::Records::Short).ok()?;
        let st = parse_stat(&buf[..len])?;
        let cut = memchr::memchr(0, st.name).unwrap_or(st.name.len());
        name.clear();
        name.extend_from_slice(&st.name[..cut]);
        name.push(0);
        Some((st.start_time, st.threads))
    }
}
