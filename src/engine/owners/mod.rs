//! Owners: which process holds each socket, host-wide. One pass over every
//! pid's fds builds an index from socket inode to its holders, the lowest
//! pid (its owner) first,
//! by the BPF `task_file` iterator where it loads (`bpf.rs`) or by listing
//! `PID/fd` (`fd.rs`). Reading the fds before any table closes the race
//! that the Scope walk only narrows: a socket in a table was open when its
//! holder's fds were listed, unless it opened after that (owner `None`).

mod bpf;
mod fd;

use std::ffi::CStr;
use std::ops::ControlFlow;

use bpf::Others;
pub(super) use bpf::{Held, line};
pub(super) use fd::{Scan, scan_group};

use super::ctx::{Ctx, Group, Groups, by_netns};
use super::error::{DiagStop, Error};
use super::namespaces::Namespaces;
use super::stats::Stats;
use crate::bpf::SockIter;
use crate::procfs::Known;

/// One socket fd of one process.
#[derive(Clone, Copy, Debug)]
pub struct Socket<'a> {
    pub inode: u64,
    pub netns: u64,
    /// Clock ticks after boot; (pid, start_time) names a process across pid reuse.
    pub start_time: u64,
    pub pid: i32,
    pub fd: i32,
    /// The name (comm), cut at a NUL if a hostile `stat` holds one.
    pub name: &'a CStr,
}

/// How `connections` finds each socket's owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerScan {
    /// The kernel's BPF `task_file` iterator where it can be loaded
    /// (`CAP_BPF` and `CAP_PERFMON`, BTF, the host's own procfs as the
    /// root), `PID/fd` elsewhere. The default.
    Auto,
    /// List `PID/fd` of every pid and `stat()` each entry.
    Proc,
    /// The BPF iterator only: where it can't be used, `connections` fails.
    Bpf,
}

/// The owner index of the last pass and what builds it, kept from pass to
/// pass so a warm one allocates nothing.
#[derive(Debug, Default)]
pub(super) struct Owners {
    /// Every holder of every socket, sorted by inode, then pid, then fd: the
    /// first of an inode's is its owner, and the others are where else it
    /// can be taken from (a lower pid's copy may be closed mid-pass).
    owners: Vec<Owner>,
    procs: Procs,
    /// The BPF owner scan, loaded at the first pass that may use it, or
    /// why it can't be used here, where that lasts (see `bpf::sock_iter`).
    sock_iter: Option<Result<SockIter, Error>>,
    /// Whether this pass's scan asked only TCP and UDP sockets where they
    /// live; the others are asked only for the namespaces the kernel lists
    /// that nothing else leads to (`explain`).
    inet_only: bool,
    others: Others,
    /// (pid, netns) of the listed pids, sorted by pid.
    by_pid: Vec<(i32, u64)>,
    /// The TCP and UDP sockets the BPF scan found held, as their tables
    /// would list them, sorted by (netns, protocol, inode), once each;
    /// `None` where this pass's owners came from `PID/fd`.
    held: Option<Vec<Held>>,
}

#[derive(Clone, Copy, Debug)]
struct Owner {
    inode: u64,
    pid: i32,
    fd: i32,
    proc: u32,
}

/// The processes that hold sockets, each with its name: what an owner
/// points at, in the index and in a changes snapshot alike.
#[derive(Debug, Default)]
pub(super) struct Procs {
    procs: Vec<Proc>,
    /// Every process's name, each followed by a NUL.
    names: Vec<u8>,
}

#[derive(Clone, Copy, Debug)]
struct Proc {
    netns: u64,
    start_time: u64,
    pid: i32,
    name_at: u32,
}

impl Procs {
    /// The owner record of socket `inode` at `fd` of process `at`.
    pub(super) fn socket(&self, at: u32, inode: u64, fd: i32) -> Socket<'_> {
        let p = self.procs[at as usize];
        let name = CStr::from_bytes_until_nul(&self.names[p.name_at as usize..]).unwrap_or_default();
        Socket { inode, netns: p.netns, start_time: p.start_time, pid: p.pid, fd, name }
    }

    /// (pid, start_time) of process `at`: who it is across pid reuse.
    pub(super) fn id(&self, at: u32) -> (i32, u64) {
        let p = self.procs[at as usize];
        (p.pid, p.start_time)
    }

    /// The bytes its processes and their names take.
    pub(super) fn bytes(&self) -> usize {
        self.procs.len() * std::mem::size_of::<Proc>() + self.names.len()
    }
}

/// Where a delivered connection's owner is in the pass's `Procs`, if it has one.
pub(super) type OwnerAt = Option<u32>;

impl Owners {
    /// Builds the index from every pid's fds: the BPF iterator where `mode`
    /// allows it and it works, `PID/fd` otherwise. The BPF scan also notes
    /// in `elsewhere` each socket that lives in a namespace its holder is
    /// not in: (netns, pid, fd, inode).
    pub(super) fn index(
        &mut self,
        ctx: &Ctx,
        mode: OwnerScan,
        groups: &Group,
        scan: &mut Scan,
        elsewhere: &mut Vec<(u64, i32, i32, u64)>,
        stats: &mut Stats,
    ) -> Result<(), Error> {
        self.clear();
        if mode != OwnerScan::Proc {
            let before = *stats;
            self.held.get_or_insert_default().clear();
            let in_pass = |e| Error::io("BPF owner scan (task_file iterator)", e);
            let inet_only = !self.others.short;
            let refused = match bpf::sock_iter(ctx, &mut self.sock_iter).map(|iter| iter.start(!inet_only)) {
                Ok(Ok(records)) => match bpf::index(ctx, records, groups, scan, self, elsewhere, stats) {
                    Ok(()) => {
                        self.finish();
                        self.inet_only = inet_only;
                        return Ok(());
                    }
                    Err(DiagStop::Ended(e)) => return Err(e),
                    Err(DiagStop::Unavailable(e)) => in_pass(e),
                },
                Ok(Err(e)) => in_pass(e),
                Err(e) => e,
            };
            if mode == OwnerScan::Bpf {
                return Err(refused);
            }
            elsewhere.clear();
            *stats = Stats { ticks: stats.ticks, ..before };
        }
        self.index_fds(ctx, groups, scan, stats)
    }

    /// After the namespace search: where this pass's scan asked only TCP
    /// and UDP sockets where they live, the namespaces the kernel lists that
    /// nothing led to are looked for among the other sockets
    /// (`bpf::explain`), and join `groups` (sorted).
    pub(super) fn explain(
        &mut self,
        ctx: &Ctx,
        groups: &mut Groups,
        found: &mut Namespaces,
        stats: &mut Stats,
    ) -> Result<(), Error> {
        let (Some(Ok(iter)), Some(_)) = (&self.sock_iter, &self.held) else { return Ok(()) };
        let inet_only = std::mem::take(&mut self.inet_only);
        bpf::explain(ctx, iter, inet_only, &mut self.others, groups, found, stats)
    }

    /// The index from `PID/fd` of every entry of `groups`, with a tick
    /// before each namespace.
    pub(super) fn index_fds(
        &mut self,
        ctx: &Ctx,
        groups: &Group,
        scan: &mut Scan,
        stats: &mut Stats,
    ) -> Result<(), Error> {
        self.clear();
        self.held = None;
        by_netns(groups).try_for_each(|group| {
            if !ctx.tick(&mut scan.ticker, stats) {
                return Err(Error::Stopped);
            }
            scan_group(ctx, scan, group, stats, &mut |_, _| {}, &mut |s| {
                self.add(s);
                ControlFlow::Continue(())
            })
        })?;
        self.finish();
        Ok(())
    }

    /// Whether the BPF owner scan loaded here, or why not, for diagnostics.
    pub(super) fn bpf_loaded(&self) -> String {
        match &self.sock_iter {
            None => "not loaded yet".into(),
            Some(Ok(_)) => Known::Yes.to_string(),
            Some(Err(e)) => format!("{}: {e}", Known::No),
        }
    }

    /// (inode, pid, fd) of every socket fd indexed, sorted: each socket's
    /// holders in turn, its owner first.
    pub(super) fn sockets(&self) -> impl Iterator<Item = (u64, i32, i32)> + '_ {
        self.owners.iter().map(|o| (o.inode, o.pid, o.fd))
    }

    /// What the BPF scan found held, if it built this pass's index.
    pub(super) fn held(&self) -> Option<&[Held]> {
        self.held.as_deref()
    }

    /// The owner of `inode`, and where its process is in `procs`.
    pub(super) fn owner(&self, inode: u64) -> Option<(Socket<'_>, u32)> {
        if inode == 0 {
            return None;
        }
        let o = *self.owners.get(self.owners.partition_point(|o| o.inode < inode))?;
        if o.inode != inode {
            return None;
        }
        Some((self.procs.socket(o.proc, inode, o.fd), o.proc))
    }

    /// Swaps the last pass's processes (what its owners point at) with `other`.
    pub(super) fn swap_procs(&mut self, other: &mut Procs) {
        std::mem::swap(&mut self.procs, other);
    }

    pub(super) fn clear(&mut self) {
        self.inet_only = false;
        self.owners.clear();
        self.procs.procs.clear();
        self.procs.names.clear();
    }

    /// Puts each inode's holders together, the lowest pid, then its
    /// lowest fd, first.
    fn finish(&mut self) {
        self.owners.sort_unstable_by_key(|o| (o.inode, o.pid, o.fd));
    }

    fn add(&mut self, s: &Socket<'_>) {
        let Procs { procs, names } = &mut self.procs;
        if procs.last().is_none_or(|p| p.pid != s.pid || p.netns != s.netns) {
            procs.push(Proc { netns: s.netns, start_time: s.start_time, pid: s.pid, name_at: names.len() as u32 });
            names.extend_from_slice(s.name.to_bytes_with_nul());
        }
        let proc = (procs.len() - 1) as u32;
        self.owners.push(Owner { inode: s.inode, pid: s.pid, fd: s.fd, proc });
    }
}
