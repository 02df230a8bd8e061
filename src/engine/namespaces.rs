//! Network namespaces that no listed process is in, found wherever the
//! kernel keeps them reachable, and how each was reached (to enter it):
//!
//! - a thread's own (`TID/ns/net` of each thread of a process with more
//!   than one), read through that thread as a process is (`TID/net/…`);
//! - an nsfs bind mount (`ip netns`'s `/run/netns/NAME`) in the mount
//!   namespace of the lowest pid of each network namespace (its
//!   `mountinfo`, read once per mount namespace), opened beneath that
//!   process's root;
//! - an fd a process holds open on one (seen by the `PID/fd` owner scan);
//! - a socket a process holds that lives in one (the BPF owner scan reads
//!   each socket's namespace).
//!
//! Such a namespace joins the pass's groups as one member: a thread's
//! with the thread's id, the others naming their way in (`Way::Via`); its tables are read once like any other's,
//! and its lines get owners from the host-wide index. One that can't be
//! entered or read (the mount went away, no `CAP_SYS_ADMIN`, the text
//! source for a namespace no thread is in) is counted in
//! `Stats::netns_unreachable`, never an error.
//!
//! No way in is held open between finding and entering: each is opened
//! when its namespace's turn comes and checked again then, so a pass holds
//! a bounded number of fds however many namespaces a user makes, and one
//! that can't be entered for want of fds is counted as such. A socket is
//! asked where it lives once in its life: the answer is kept while some
//! process holds it.

use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::sys::stat::SFlag;

use super::ctx::{Ctx, Group, Groups, Member, Way};
use super::error::Error;
use super::stats::Stats;
use crate::parse::mountinfo::{Mount, is_below, mounts, ns_link};
use crate::procfs::{EntryMeta, HostProc, LINK_MAX, Netns, PidFd, Records, read_all};

/// A `mountinfo` longer than this is read only this far (a hostile tree,
/// or a host with a hundred thousand mounts).
const MOUNTINFO_LIMIT: usize = 16 << 20;

/// What one pass reads of all the `mountinfo`s together at most.
const MOUNTINFO_PASS_LIMIT: usize = 64 << 20;

/// How a namespace no process is in was reached.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// An nsfs bind mount at `paths[at..end]` in `pid`'s mount namespace;
    /// `below_fuse`: that `mountinfo` shows a FUSE mount on the way there.
    Mount { pid: i32, at: usize, end: usize, below_fuse: bool },
    /// The sockets `sockets[at..end]` live in it: the first still open is asked.
    Socket { at: usize, end: usize },
    /// Fd `fd` of `pid` is a file of it (an nsfs file, checked when found).
    Fd { pid: i32, fd: i32 },
}

/// What a pass found beyond its processes' namespaces, kept from pass to
/// pass for its buffers.
#[derive(Debug, Default)]
pub(super) struct Namespaces {
    /// Indexed by handle.
    vias: Vec<Via>,
    /// Mount points of `Via::Mount`, one after another.
    paths: Vec<u8>,
    /// The FUSE mount points of the `mountinfo` being read, one after
    /// another, and where each ends.
    fuse: Vec<u8>,
    fuse_ends: Vec<usize>,
    /// Mount namespaces whose `mountinfo` this pass read, sorted.
    mnt_seen: Vec<u64>,
    text: Vec<u8>,
    path: Vec<u8>,
    tids: Vec<i32>,
    /// Sockets the owner scan saw in a namespace other than their holder's,
    /// or that were asked theirs: (netns, pid, fd, inode).
    pub sockets: Vec<(u64, i32, i32, u64)>,
    /// (inode, netns) of each socket asked where it lives, sorted: kept
    /// while some process holds it (`find_by_sockets`).
    asked: Vec<(u64, u64)>,
    asked_next: Vec<(u64, u64)>,
}

/// What the owner scan notices for the namespace search: the nsfs files
/// among the fds `PID/fd` lists, and the thread count of each process whose
/// `stat` it reads (which spares those a `stat` of `PID/task`).
#[derive(Debug, Default)]
pub(super) struct Noticed {
    looking: bool,
    /// nsfs's device, or 0: unknown.
    dev: u64,
    /// (inode, pid, fd) of each nsfs fd.
    found: Vec<(u64, i32, i32)>,
    /// (pid, threads), sorted once the scan is over.
    threads: Vec<(i32, u64)>,
}

impl Namespaces {
    /// Forgets the ways in of the last pass.
    pub fn release(&mut self) {
        self.vias.clear();
    }
}

impl Noticed {
    /// Called by the owner scan for each process whose `stat` it read.
    pub fn saw_process(&mut self, pid: i32, threads: u64) {
        if self.looking {
            self.threads.push((pid, threads));
        }
    }

    /// Called by the owner scan for each fd that is not a socket.
    pub fn saw(&mut self, st: &EntryMeta, pid: i32, fd: i32) {
        if self.looking && self.dev != 0 && st.dev == self.dev && st.is(SFlag::S_IFREG) {
            self.found.push((st.ino, pid, fd));
        }
    }
}

/// What to look for.
#[derive(Clone, Copy, Debug)]
pub(super) struct Look {
    pub threads: bool,
    pub mounts: bool,
}

impl Noticed {
    /// Starts noticing, in the coming owner scan, what the search wants.
    pub(super) fn look(&mut self, ctx: &Ctx, groups: &Group) {
        self.found.clear();
        self.threads.clear();
        self.looking = true;
        let dev = groups.iter().filter_map(Member::as_pid).find_map(|pid| ctx.root.stat(pid, b"ns/net").ok());
        self.dev = dev.map_or(0, |st| st.st_dev);
    }
}

impl Namespaces {
    /// A member for a way in, kept here.
    fn add_via(&mut self, netns: u64, via: Via) -> Member {
        self.vias.push(via);
        Member { netns, way: Way::Via(self.vias.len() - 1) }
    }

    /// The namespace `group` was keyed by, to enter through the first of its
    /// pids whose `ns/net` is that namespace. A pid whose file is anything
    /// else (the pid was reused, or it is no namespace at all) is skipped
    /// and counted. `None`: no pid leads there any more. A member that
    /// names a way in instead of a pid is entered that way.
    pub fn netns_of_group(
        &self,
        ctx: &Ctx,
        host: &HostProc,
        group: &Group,
        stats: &mut Stats,
    ) -> Result<Option<Netns>, Errno> {
        if let Way::Via(i) = group[0].way {
            return self.enter_found(ctx, host, i, group[0].netns, stats);
        }
        if !ctx.has_ns_files() {
            // Before Linux 3.8: no namespace file to enter.
            return Err(Errno::ENOENT);
        }
        let mut last = Errno::ENOENT;
        for m in group {
            let (netns, Some(pid)) = (m.netns, m.as_pid()) else { continue };
            match ctx.root.open_netns(pid).and_then(|fd| host.netns(fd, netns)) {
                Ok(Some(ns)) => return Ok(Some(ns)),
                Ok(None) => {
                    stats.skipped += 1;
                    stats.netns_mismatch += 1;
                }
                Err(Errno::ENOENT | Errno::ESRCH) => {}
                Err(e) => last = e,
            }
        }
        match last {
            Errno::ENOENT => Ok(None),
            e => Err(e),
        }
    }

    /// Adds to `groups` (the processes' entries, sorted) one entry per
    /// namespace found beyond them, then sorts it again. `fds` and
    /// `found.sockets` hold what the owner scan saw.
    pub(super) fn discover(
        &mut self,
        ctx: &Ctx,
        groups: &mut Groups,
        dents: &mut [u8],
        noticed: &mut Noticed,
        look: Look,
        stats: &mut Stats,
    ) -> Result<(), Error> {
        let found = self;
        noticed.looking = false;
        noticed.threads.sort_unstable();
        found.release();
        found.paths.clear();
        found.mnt_seen.clear();
        let procs = groups.len();
        let known = |groups: &Group, ns: u64| {
            groups[..procs].binary_search_by_key(&ns, |g| g.netns).is_ok()
                || groups[procs..].iter().any(|g| g.netns == ns)
        };
        let mut link = [0u8; LINK_MAX];
        // Bytes of `mountinfo` read this pass.
        let mut read = 0;
        for i in 0..procs {
            let (netns, Some(pid)) = (groups[i].netns, groups[i].as_pid()) else { continue };
            if ctx.stop.is_set() {
                return Err(Error::Stopped);
            }
            let threads = || match noticed.threads.binary_search_by_key(&pid, |t| t.0) {
                Ok(at) => Ok(noticed.threads[at].1),
                Err(_) => ctx.root.thread_count(pid),
            };
            if look.threads && threads().is_ok_and(|n| n > 1) {
                found.tids.clear();
                if ctx.root.list_threads(pid, dents, &mut found.tids).is_ok() {
                    for &tid in &found.tids {
                        match ctx.netns(tid) {
                            Ok(ns) if ns != netns && !known(groups, ns) => groups.push(Member::pid(ns, tid)),
                            _ => {}
                        }
                    }
                }
            }
            // One process per network namespace is asked its mount namespace
            // (its lowest pid): a `readlink` per process would cost a pass
            // some 7% more, for mounts that nearly always propagate from one
            // mount namespace to the others.
            if !look.mounts || (i > 0 && groups[i - 1].netns == netns) {
                continue;
            }
            let Some(mnt) = ctx.root.read_link(pid, b"ns/mnt", &mut link).ok().and_then(|l| ns_link(l, b"mnt")) else {
                continue;
            };
            let Err(at) = found.mnt_seen.binary_search(&mnt) else { continue };
            found.mnt_seen.insert(at, mnt);
            let Ok(file) = ctx.root.open_file(pid, b"mountinfo") else { continue };
            let room = MOUNTINFO_PASS_LIMIT.saturating_sub(read);
            let len = match read_all(file.as_fd(), &mut found.text, MOUNTINFO_LIMIT.min(room), Records::Long) {
                Ok(len) => len,
                // What was read holds whole lines up to its last newline.
                Err(Errno::EFBIG) => {
                    stats.files_truncated += 1;
                    let read = MOUNTINFO_LIMIT.min(room).min(found.text.len());
                    memchr::memrchr(b'\n', &found.text[..read]).map_or(0, |nl| nl + 1)
                }
                Err(_) => continue,
            };
            read += len;
            let Namespaces { vias, paths, fuse, fuse_ends, text, path, .. } = found;
            fuse.clear();
            fuse_ends.clear();
            let from = vias.len();
            mounts(&text[..len], path, |m| match m {
                Mount::Fuse(point) => {
                    fuse.extend_from_slice(point);
                    fuse_ends.push(fuse.len());
                }
                Mount::Netns(ns, point) if !known(groups, ns) => {
                    let at = paths.len();
                    paths.extend_from_slice(point);
                    vias.push(Via::Mount { pid, at, end: paths.len(), below_fuse: false });
                    groups.push(Member { netns: ns, way: Way::Via(vias.len() - 1) });
                }
                Mount::Netns(..) => {}
            });
            // A FUSE mount may come after the mounts below it (mounted on a
            // directory above them later).
            for via in &mut vias[from..] {
                if let Via::Mount { at, end, below_fuse, .. } = via {
                    let point = &paths[*at..*end];
                    let mut start = 0;
                    *below_fuse = fuse_ends.iter().any(|&stop| {
                        let fuse_point = &fuse[std::mem::replace(&mut start, stop)..stop];
                        is_below(point, fuse_point)
                    });
                }
            }
        }
        // An fd's link names a namespace opened through a bind mount by its
        // path: the file itself tells its type. It is opened again to enter.
        let host = if noticed.found.is_empty() { None } else { HostProc::open().ok() };
        for &(ino, pid, fd) in noticed.found.iter().filter(|_| host.is_some()) {
            if known(groups, ino) {
                continue;
            }
            let checked = ctx
                .root
                .open_fd_path(pid, fd)
                .and_then(|f| host.as_ref().map_or(Ok(None), |h| h.net_namespace(f, ino)));
            match checked {
                Ok(Some(_)) => {}
                // It may be one: counted as found, and as not entered.
                Err(e) if out_of_fds(e) => {
                    stats.netns_found += 1;
                    stats.netns_unreachable += 1;
                    stats.netns_unreachable_fds += 1;
                    continue;
                }
                _ => continue,
            }
            groups.push(found.add_via(ino, Via::Fd { pid, fd }));
        }
        found.sockets.sort_unstable();
        let mut at = 0;
        let Namespaces { vias, sockets, .. } = found;
        for same in sockets.chunk_by(|a, b| a.0 == b.0) {
            let ns = same[0].0;
            if !known(groups, ns) {
                vias.push(Via::Socket { at, end: at + same.len() });
                groups.push(Member { netns: ns, way: Way::Via(vias.len() - 1) });
            }
            at += same.len();
        }
        let extra = (groups.len() - procs) as u64;
        stats.namespaces += extra;
        stats.netns_found += extra;
        groups.sort_unstable();
        Ok(())
    }

    /// Whether any process, or any namespace `discover` finds from them
    /// (the fds aside), is namespace `netns`: a full grouping, for the rare
    /// query that needs to know.
    pub(super) fn namespace_exists(ctx: &Ctx, netns: u64, dents: &mut [u8]) -> Result<bool, Error> {
        let mut pids = Vec::new();
        ctx.root.list_pids(dents, &mut pids).map_err(|e| Error::io(&ctx.root_path, e))?;
        let mut groups: Groups = pids.iter().filter_map(|&pid| Some(Member::pid(ctx.netns(pid).ok()?, pid))).collect();
        groups.sort_unstable();
        if groups.binary_search_by_key(&netns, |g| g.netns).is_ok() {
            return Ok(true);
        }
        let (mut found, mut noticed, mut scratch) = (Namespaces::default(), Noticed::default(), Stats::default());
        let look = Look { threads: true, mounts: true };
        found.discover(ctx, &mut groups, dents, &mut noticed, look, &mut scratch)?;
        Ok(groups.binary_search_by_key(&netns, |g| g.netns).is_ok())
    }

    /// Asks each of `sockets` (inode, pid, fd, sorted: each socket's
    /// holders in turn) that no delivered line listed (`delivered`: their
    /// inodes) where it lives (`pidfd_getfd`, then `SIOCGSKNS`; a unix
    /// socket too, the only way to know it is one), unless it was asked in
    /// an earlier pass, and appends the namespaces not yet in `groups`, each
    /// with every holder of its sockets as a way in; whether it found any.
    /// A socket is asked through its first holder that still holds it: a
    /// lower pid may have closed its copy since the scan (a parent that
    /// forked a child to serve the connection, a copy of the library's
    /// own). An answer is kept while the socket is held: a socket inode is
    /// not reused while it lives, and another socket would need some 2^32
    /// inodes made between two passes to get a freed one's number.
    pub(super) fn find_by_sockets(
        &mut self,
        ctx: &Ctx,
        groups: &mut Groups,
        sockets: impl Iterator<Item = (u64, i32, i32)>,
        delivered: &mut Vec<u64>,
        stats: &mut Stats,
    ) -> bool {
        delivered.sort_unstable();
        let before = groups.len();
        let Namespaces { sockets: via_sockets, asked, asked_next, .. } = self;
        asked_next.clear();
        let new_from = via_sockets.len();
        let mut pidfd: Option<(i32, Result<PidFd, Errno>)> = None;
        let mut memo = asked.iter().peekable();
        // The last socket answered for, and where it lives.
        let mut answered: Option<(u64, u64)> = None;
        for (inode, pid, fd) in sockets {
            if ctx.stop.is_set() {
                break;
            }
            if delivered.binary_search(&inode).is_ok() {
                continue;
            }
            let netns = match answered {
                Some((i, netns)) if i == inode => netns,
                _ => {
                    while memo.next_if(|m| m.0 < inode).is_some() {}
                    let netns = match memo.next_if(|m| m.0 == inode) {
                        Some(&(_, netns)) => netns,
                        None => {
                            if pidfd.as_ref().is_none_or(|p| p.0 != pid) {
                                pidfd = Some((pid, PidFd::open(pid)));
                            }
                            let Some((_, Ok(p))) = &pidfd else { continue };
                            match p.socket(fd, inode, &ctx.closer).and_then(|s| s.netns()) {
                                Ok(nsfd) => match nix::sys::stat::fstat(&nsfd) {
                                    Ok(st) => st.st_ino,
                                    Err(_) => continue,
                                },
                                Err(Errno::EAGAIN) => {
                                    stats.closes_stalled += 1;
                                    continue;
                                }
                                // This holder let go of it, or can't be asked: the next may.
                                Err(_) => continue,
                            }
                        }
                    };
                    asked_next.push((inode, netns));
                    answered = Some((inode, netns));
                    netns
                }
            };
            if groups[..before].binary_search_by_key(&netns, |g| g.netns).is_err() {
                via_sockets.push((netns, pid, fd, inode));
            }
        }
        std::mem::swap(asked, asked_next);
        delivered.clear();
        self.socket_ways(groups, new_from, stats)
    }

    /// Adds to `groups` (sorted) each namespace that sockets of `ways`
    /// (netns, pid, fd, inode) live in and `groups` lacks, with those
    /// sockets as its ways in, and sorts it again.
    pub(super) fn add_sockets(
        &mut self,
        groups: &mut Groups,
        ways: impl Iterator<Item = (u64, i32, i32, u64)>,
        stats: &mut Stats,
    ) {
        let from = self.sockets.len();
        self.sockets.extend(ways);
        self.socket_ways(groups, from, stats);
        groups.sort_unstable();
    }

    /// Appends to `groups` (sorted) each namespace of `self.sockets[from..]`
    /// that it lacks, with its sockets there as ways in; whether it
    /// appended any.
    fn socket_ways(&mut self, groups: &mut Groups, from: usize, stats: &mut Stats) -> bool {
        let before = groups.len();
        let Namespaces { vias, sockets, .. } = self;
        sockets[from..].sort_unstable();
        let mut at = from;
        for same in sockets[from..].chunk_by(|a, b| a.0 == b.0) {
            if groups[..before].binary_search_by_key(&same[0].0, |g| g.netns).is_err() {
                vias.push(Via::Socket { at, end: at + same.len() });
                groups.push(Member { netns: same[0].0, way: Way::Via(vias.len() - 1) });
            }
            at += same.len();
        }
        let found = (groups.len() - before) as u64;
        stats.namespaces += found;
        stats.netns_found += found;
        found > 0
    }

    /// Adds namespace `netns`, which socket `inode` at `fd` of `pid` lives
    /// in, to `groups` unless it is there; keeps `groups` sorted.
    pub(super) fn add_socket_namespace(
        &mut self,
        groups: &mut Groups,
        netns: u64,
        (pid, fd, inode): (i32, i32, u64),
        stats: &mut Stats,
    ) {
        let at = groups.partition_point(|g| g.netns < netns);
        if groups.get(at).is_some_and(|g| g.netns == netns) {
            return;
        }
        self.sockets.push((netns, pid, fd, inode));
        let via = Via::Socket { at: self.sockets.len() - 1, end: self.sockets.len() };
        groups.insert(at, self.add_via(netns, via));
        stats.namespaces += 1;
        stats.netns_found += 1;
    }

    /// The namespace of a member that names a way in, to
    /// enter, checked as a pid's is (nsfs, inode `netns`); `None`, counted
    /// as unreachable, where that way is gone (the mount was removed, the
    /// fd closed, or it now leads elsewhere).
    fn enter_found(
        &self,
        ctx: &Ctx,
        host: &HostProc,
        i: usize,
        netns: u64,
        stats: &mut Stats,
    ) -> Result<Option<Netns>, Errno> {
        let found = self;
        let opened = match found.vias.get(i) {
            Some(&Via::Mount { pid, at, end, below_fuse }) => {
                ctx.root.open_mount_point(pid, &found.paths[at..end], !below_fuse)
            }
            // Any of them may have been closed since (a netlink socket of a dump).
            Some(&Via::Socket { at, end }) => {
                let mut last = Err(Errno::ESTALE);
                for &(_, pid, fd, inode) in &found.sockets[at..end] {
                    match PidFd::open(pid).and_then(|p| p.socket(fd, inode, &ctx.closer)?.netns()) {
                        Ok(fd) => {
                            last = Ok(fd);
                            break;
                        }
                        // Why none could be asked, if not that all were closed.
                        Err(e) if out_of_fds(e) || e == Errno::EAGAIN => last = Err(e),
                        Err(_) => {}
                    }
                }
                last
            }
            Some(&Via::Fd { pid, fd }) => ctx.root.open_fd_path(pid, fd),
            None => Err(Errno::ENOENT),
        };
        let checked = match opened {
            Ok(fd) => host.netns(fd, netns),
            Err(e) => Err(e),
        };
        match checked {
            Ok(Some(ns)) => return Ok(Some(ns)),
            Err(e) if out_of_fds(e) => stats.netns_unreachable_fds += 1,
            Err(Errno::EAGAIN) => stats.closes_stalled += 1,
            // ETIMEDOUT: a mount point's path would have waited on a filesystem's server.
            Ok(None)
            | Err(Errno::ENOENT | Errno::ESRCH | Errno::ESTALE | Errno::EBADF | Errno::ENOTDIR | Errno::ETIMEDOUT) => {}
            Err(e) => return Err(e),
        }
        stats.netns_unreachable += 1;
        Ok(None)
    }
}

/// Whether `e` says the process or the system has no fd to spare.
fn out_of_fds(e: Errno) -> bool {
    matches!(e, Errno::EMFILE | Errno::ENFILE)
}
