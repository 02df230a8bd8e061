//! The walk of Weave Scope's procspy, with its faults fixed: a stop that
//! stops, a namespace-path probe instead of a kernel-version guess, tcp6
//! only where it exists, the next pid when one pid's tables can't be read,
//! and every socket delivered even where no table could be read.

use std::ffi::CStr;
use std::ops::ControlFlow;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::stat::{FileStat, SFlag};

use super::changes::ChangeState;
use super::error::Error;
use super::join::JoinState;
use super::namespaces::Noticed;
use super::pace::{Stop, Ticker};
use crate::parse::stat::parse_stat;
use crate::procfs::{self, DirList, ProcRoot, TableBuf};

/// The proc root a walker uses when none is named.
pub(crate) const DEFAULT_PROC_ROOT: &[u8] = b"/proc";

/// A `stat` file longer than this is not a process's (a hostile tree).
const STAT_LIMIT: usize = 4 << 20;

/// What a walk saw. Filled on every return of a walk, failed or not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Network namespaces seen.
    pub namespaces: u64,
    /// Pids examined.
    pub processes: u64,
    /// Pids that vanished or could not be read, and fds that could not be
    /// `stat()`ed (closed meanwhile, or not ours to follow).
    pub skipped: u64,
    /// fd entries `stat()`ed; with the BPF owner scan, the socket fds it listed.
    pub fds: u64,
    /// Socket fds found.
    pub sockets: u64,
    /// Table bytes stored (walk), or the most held at once (connections).
    pub bytes_written: u64,
    /// Table bytes produced (walk), or the most one namespace needed (connections).
    pub bytes_needed: u64,
    /// Rate-limit ticks passed, waited for or not.
    pub ticks: u64,
    pub elapsed_ns: u64,
    /// Namespaces whose tables `connections` did not read: the BPF owner
    /// scan held every socket their `sockstat` counts.
    pub accounted: u64,
    /// Netlink messages not believed: not from the kernel, not for our
    /// port id or request, not to one destroy group, or unreadable.
    pub dropped: u64,
    /// Pids whose namespace file was not the namespace they were grouped
    /// by (reused meanwhile, or not a namespace at all); also in `skipped`.
    pub netns_mismatch: u64,
    /// `changes`: the bytes of the snapshot it kept for the next call (its
    /// connections, their addresses, their owners' processes and names);
    /// 0 where it kept none.
    pub snapshot_bytes: u64,
    /// `changes`: times destroy notifications were lost, the kernel's queue
    /// for a namespace having overflowed since the last call, or more being
    /// waiting than a walker keeps.
    pub closed_lost: u64,
    /// Network namespaces found that no listed process is in (a thread's,
    /// an nsfs mount's, one an fd holds or a socket lives in); also in
    /// `namespaces`.
    pub netns_found: u64,
    /// Of those, the ones whose tables could not be read: the way in was
    /// gone (a mount removed, an fd closed) or refused.
    pub netns_unreachable: u64,
}

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

/// Which file gives a pid's network namespace: probed once per walker.
const NS_UNKNOWN: u8 = 0;
const NS_NS_NET: u8 = 1; // Linux 3.8 and later
const NS_NET_DEV: u8 = 2; // before 3.8 any per-namespace proc file would do

/// What a walker probes once: whether v6 tables exist, whether the kernel
/// takes the one-walk TCP dump.
pub(super) const PROBE_UNKNOWN: u8 = 0;
pub(super) const PROBE_YES: u8 = 1;
pub(super) const PROBE_NO: u8 = 2;

/// A kernel socket table under `PID/net/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Table {
    pub file: &'static [u8],
    pub v6: bool,
    /// 1 = TCP, 2 = UDP.
    pub protocol: u8,
}

pub(crate) const TCP: Table = Table { file: b"net/tcp", v6: false, protocol: 1 };
pub(crate) const TCP6: Table = Table { file: b"net/tcp6", v6: true, protocol: 1 };
pub(crate) const UDP: Table = Table { file: b"net/udp", v6: false, protocol: 2 };
pub(crate) const UDP6: Table = Table { file: b"net/udp6", v6: true, protocol: 2 };

/// Called after each fd-block tick with the pids of the namespace not yet
/// scanned and the spill buffer (the walk re-reads the tables there).
pub(super) type AfterTick<'a> = dyn FnMut(&[(u64, i32)], &mut [u8]) + 'a;

/// Where `connections` reads the kernel's socket tables from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Source {
    /// Nothing for a namespace the BPF owner scan accounts for (every socket
    /// its `sockstat` counts is one the scan found held), netlink `sock_diag`
    /// where it can be used (entering a namespace needs `CAP_SYS_ADMIN`),
    /// the text tables elsewhere. The default.
    Auto = 0,
    /// The text tables under `PID/net/` only.
    Text = 1,
    /// Netlink only: a namespace it can't be used for is an error.
    Netlink = 2,
}

/// How `connections` finds each socket's owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OwnerScan {
    /// The kernel's BPF `task_file` iterator where it can be loaded
    /// (`CAP_BPF` and `CAP_PERFMON`, BTF, the host's own procfs as the
    /// root), `PID/fd` elsewhere. The default.
    Auto = 0,
    /// List `PID/fd` of every pid and `stat()` each entry.
    Proc = 1,
    /// The BPF iterator only: where it can't be used, `connections` fails.
    Bpf = 2,
}

/// Stops a walker's walks as `Walker::stop` does, and stays valid after the
/// walker is gone (then it stops nothing).
#[derive(Clone, Debug)]
pub struct StopToken(Arc<Stop>);

impl StopToken {
    /// Async-signal-safe.
    pub fn stop(&self) {
        self.0.request();
    }
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

/// Walks a proc root. Shared between threads: `stop` may run while a walk
/// does; a second walk at the same time gets `Error::Busy`.
#[derive(Debug)]
pub struct Walker {
    pub(super) root: ProcRoot,
    pub(super) root_path: String,
    pub(super) stop: Arc<Stop>,
    /// The process whose walk holds `state` (0: none). A child forked
    /// during a walk sees its parent's pid here.
    walking: AtomicU32,
    /// The stats of the last walk that ended.
    last: Mutex<Stats>,
    fd_block: AtomicU64,
    tick_ns: AtomicU64,
    ns_probe: AtomicU8,
    v6_probe: AtomicU8,
    source: AtomicU8,
    owner_scan: AtomicU8,
    /// Whether the kernel takes the one-walk TCP dump (a `PROBE_*`).
    pub(super) tcp_both_probe: AtomicU8,
    state: Mutex<State>,
}

/// Buffers kept from walk to walk, so a warm walk allocates nothing.
#[derive(Debug)]
pub(super) struct State {
    pub pids: Vec<i32>,
    /// (netns, pid), sorted: each namespace's pids are contiguous.
    pub groups: Vec<(u64, i32)>,
    pub scan: Scan,
    pub join: JoinState,
    pub changes: ChangeState,
}

/// What the fd scan of one pid needs.
#[derive(Debug)]
pub(super) struct Scan {
    pub dents: Vec<u8>,
    pub spill: Vec<u8>,
    pub stat: Vec<u8>,
    pub name: Vec<u8>,
    pub ticker: Ticker,
    /// What the namespace search wants of the fds scanned, when it looks.
    pub nsfs: Noticed,
}

impl Walker {
    /// Opens `proc_root` (any bytes but NUL); fails unless it is a readable directory.
    pub fn new(proc_root: Option<&[u8]>) -> Result<Self, Error> {
        let path = proc_root.unwrap_or(DEFAULT_PROC_ROOT);
        let root_path = String::from_utf8_lossy(path).into_owned();
        let root = ProcRoot::open(path).map_err(|e| Error::io(&root_path, e))?;
        let stop = Arc::new(Stop::new().map_err(|e| Error::io("eventfd", e))?);
        let state = State {
            pids: Vec::new(),
            groups: Vec::new(),
            scan: Scan {
                dents: vec![0; procfs::DIRENT_BUF],
                spill: vec![0; procfs::DIRENT_BUF],
                stat: Vec::new(),
                name: Vec::new(),
                ticker: Ticker::default(),
                nsfs: Noticed::default(),
            },
            join: JoinState::default(),
            changes: ChangeState::default(),
        };
        Ok(Self {
            root,
            root_path,
            stop,
            walking: AtomicU32::new(0),
            last: Mutex::new(Stats::default()),
            fd_block: AtomicU64::new(0),
            tick_ns: AtomicU64::new(0),
            ns_probe: AtomicU8::new(NS_UNKNOWN),
            v6_probe: AtomicU8::new(PROBE_UNKNOWN),
            source: AtomicU8::new(Source::Auto as u8),
            owner_scan: AtomicU8::new(OwnerScan::Auto as u8),
            tcp_both_probe: AtomicU8::new(PROBE_UNKNOWN),
            state: Mutex::new(state),
        })
    }

    /// Pacing: a tick before each namespace and after every `fd_block_size`
    /// fd stats (0 = none), each tick `tick` apart (0 = never wait). Takes
    /// effect at the next tick.
    pub fn set_rate_limit(&self, fd_block_size: u64, tick: Duration) {
        self.fd_block.store(fd_block_size, Ordering::Relaxed);
        self.tick_ns.store(tick.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// Where `connections` reads the tables; takes effect at the next call.
    pub fn set_source(&self, source: Source) {
        self.source.store(source as u8, Ordering::Relaxed);
    }

    pub fn source(&self) -> Source {
        match self.source.load(Ordering::Relaxed) {
            1 => Source::Text,
            2 => Source::Netlink,
            _ => Source::Auto,
        }
    }

    /// How `connections` finds owners; takes effect at the next call.
    pub fn set_owner_scan(&self, scan: OwnerScan) {
        self.owner_scan.store(scan as u8, Ordering::Relaxed);
    }

    pub fn owner_scan(&self) -> OwnerScan {
        match self.owner_scan.load(Ordering::Relaxed) {
            1 => OwnerScan::Proc,
            2 => OwnerScan::Bpf,
            _ => OwnerScan::Auto,
        }
    }

    /// Whether the host has IPv6 tables, as far as the walker has seen.
    pub(super) fn v6_absent(&self) -> bool {
        self.v6_probe.load(Ordering::Relaxed) == PROBE_NO
    }

    /// Ends the walk in progress within one block of work and makes every
    /// later walk fail with `Error::Stopped`. Async-signal-safe.
    pub fn stop(&self) {
        self.stop.request();
    }

    pub fn is_stopped(&self) -> bool {
        self.stop.is_set()
    }

    /// A handle that stops this walker and may outlive it: for a signal
    /// handler that may run while the walker is freed.
    pub fn stop_token(&self) -> StopToken {
        StopToken(self.stop.clone())
    }

    /// The stats of the last walk on this walker that ended.
    pub fn last_stats(&self) -> Stats {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fails with `Forked` in a child forked during this walk (from a
    /// callback), before it touches what it shares with its parent: the
    /// socket of a dump, the position in a directory listing.
    pub(super) fn check_fork(&self) -> Result<(), Error> {
        if self.walking.load(Ordering::Relaxed) == std::process::id() { Ok(()) } else { Err(Error::Forked) }
    }

    /// The inode of `pid`'s network namespace.
    pub fn netns_of(&self, pid: i32) -> Result<u64, Error> {
        self.netns(pid).map_err(|e| Error::io(format_args!("{}/{pid}/{}", self.root_path, self.ns_file()), e))
    }

    /// Whether pids have `ns/net` (not known before the first grouping).
    pub(super) fn has_ns_files(&self) -> bool {
        self.ns_probe.load(Ordering::Relaxed) != NS_NET_DEV
    }

    fn ns_file(&self) -> &'static str {
        match self.ns_probe.load(Ordering::Relaxed) {
            NS_NET_DEV => "net/dev",
            _ => "ns/net",
        }
    }

    pub(super) fn netns(&self, pid: i32) -> Result<u64, Errno> {
        match self.ns_probe.load(Ordering::Relaxed) {
            NS_NS_NET => ns_inode(&self.root.stat(pid, b"ns/net")?),
            NS_NET_DEV => Ok(self.root.stat(pid, b"net/dev")?.st_ino),
            _ => match self.root.stat(pid, b"ns/net") {
                Ok(st) => {
                    self.ns_probe.store(NS_NS_NET, Ordering::Relaxed);
                    ns_inode(&st)
                }
                Err(Errno::ENOENT) => {
                    let st = self.root.stat(pid, b"net/dev")?;
                    self.ns_probe.store(NS_NET_DEV, Ordering::Relaxed);
                    Ok(st.st_ino)
                }
                Err(e) => Err(e),
            },
        }
    }

    /// Reads `pid`'s tcp and tcp6 tables (tcp6 where it exists) into `out`.
    /// Returns the tables' full length; `BufferTooSmall` if they did not fit.
    pub fn read_tcp(&self, pid: i32, out: &mut TableBuf<'_>) -> Result<u64, Error> {
        let mut spill = [0u8; 4096];
        self.append_tables(pid, &[TCP, TCP6], out, &mut spill)
            .map_err(|e| Error::io(format_args!("{}/{pid}/net/tcp", self.root_path), e))?;
        if out.overflowed() {
            return Err(Error::BufferTooSmall { needed: out.needed(), capacity: out.capacity() as u64 });
        }
        Ok(out.needed())
    }

    /// Appends `pid`'s `tables` to `out`; on an error nothing of them stays.
    pub(super) fn append_tables(
        &self,
        pid: i32,
        tables: &[Table],
        out: &mut TableBuf<'_>,
        spill: &mut [u8],
    ) -> Result<(), Errno> {
        let mark = out.mark();
        let r = tables.iter().try_for_each(|t| {
            if t.v6 && self.v6_probe.load(Ordering::Relaxed) == PROBE_NO {
                return Ok(());
            }
            match self.root.open_file(pid, t.file) {
                Ok(fd) => {
                    if t.v6 {
                        self.v6_probe.store(PROBE_YES, Ordering::Relaxed);
                    }
                    out.append_file(fd.as_fd(), spill).map(drop)
                }
                // Missing v6 tables with the pid's net dir present: no IPv6 here.
                Err(Errno::ENOENT)
                    if t.v6
                        && self.v6_probe.load(Ordering::Relaxed) == PROBE_UNKNOWN
                        && self.root.stat(pid, b"net").is_ok() =>
                {
                    self.v6_probe.store(PROBE_NO, Ordering::Relaxed);
                    Ok(())
                }
                Err(e) => Err(e),
            }
        });
        if r.is_err() {
            out.reset_to(mark);
        }
        r
    }

    /// Appends the tables of the first pid of `group` whose tables can be read.
    pub(super) fn read_group_tables(
        &self,
        group: &[(u64, i32)],
        tables: &[Table],
        out: &mut TableBuf<'_>,
        spill: &mut [u8],
    ) -> bool {
        group.iter().any(|&(_, pid)| self.append_tables(pid, tables, out, spill).is_ok())
    }

    /// Runs `f` on the walk state, or fails with `Busy` or `Stopped`.
    pub(super) fn with_state<R>(
        &self,
        stats: &mut Stats,
        f: impl FnOnce(&mut State, &mut Stats) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let t0 = Instant::now();
        *stats = Stats::default();
        let pid = std::process::id();
        let mut state = match self.state.try_lock() {
            Ok(s) => s,
            // A panic caught at the boundary poisoned it; each walk starts its state afresh.
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            // Held by a walk of the process this one was forked from: never released here.
            Err(TryLockError::WouldBlock) if ![0, pid].contains(&self.walking.load(Ordering::Relaxed)) => {
                return Err(Error::Forked);
            }
            Err(TryLockError::WouldBlock) => return Err(Error::Busy),
        };
        self.walking.store(pid, Ordering::Relaxed);
        let r = if self.stop.is_set() { Err(Error::Stopped) } else { f(&mut state, stats) };
        self.walking.store(0, Ordering::Relaxed);
        stats.elapsed_ns = t0.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = *stats;
        match r {
            Err(Error::Io { .. }) => r,
            _ if self.stop.is_set() => Err(Error::Stopped),
            r => r,
        }
    }

    /// Lists the pids and groups them by namespace into `state.groups`.
    pub(super) fn group_by_netns(&self, state: &mut State, stats: &mut Stats) -> Result<(), Error> {
        state.pids.clear();
        state.groups.clear();
        self.root.list_pids(&mut state.scan.dents, &mut state.pids).map_err(|e| Error::io(&self.root_path, e))?;
        for &pid in &state.pids {
            if self.stop.is_set() {
                return Err(Error::Stopped);
            }
            stats.processes += 1;
            match self.netns(pid) {
                Ok(ns) => state.groups.push((ns, pid)),
                Err(_) => stats.skipped += 1,
            }
        }
        state.groups.sort_unstable();
        stats.namespaces = state.groups.chunk_by(|a, b| a.0 == b.0).count() as u64;
        Ok(())
    }

    /// Waits for the next tick; false if stopped.
    pub(super) fn tick(&self, ticker: &mut Ticker, stats: &mut Stats) -> bool {
        stats.ticks += 1;
        ticker.tick(Duration::from_nanos(self.tick_ns.load(Ordering::Relaxed)), &self.stop)
    }

    pub(super) fn fd_block(&self) -> u64 {
        self.fd_block.load(Ordering::Relaxed)
    }

    /// Scans the fds of every pid of `group`, calling `on_socket` for each
    /// socket fd, with a tick (and `after_tick`) after every fd block.
    pub(super) fn scan_group(
        &self,
        scan: &mut Scan,
        group: &[(u64, i32)],
        stats: &mut Stats,
        after_tick: &mut AfterTick<'_>,
        on_socket: &mut dyn FnMut(&Socket<'_>) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let Scan { dents, spill, stat, name, ticker, nsfs } = scan;
        let block = self.fd_block();
        let mut in_block = 0u64;
        for (i, &(netns, pid)) in group.iter().enumerate() {
            if self.stop.is_set() {
                return Err(Error::Stopped);
            }
            let Ok(dir) = self.root.open_dir(pid, b"fd") else {
                stats.skipped += 1;
                continue;
            };
            let mut list = DirList::new(dir.as_fd(), dents);
            let mut start_time = None;
            let mut delivered = false;
            loop {
                // A callback may have forked: the child must not read on
                // through the listing it shares with its parent.
                if delivered && !list.buffered() {
                    self.check_fork()?;
                    delivered = false;
                }
                let entry = match list.next_entry() {
                    Ok(Some(e)) => e,
                    Ok(None) => break,
                    Err(_) => {
                        stats.skipped += 1;
                        break;
                    }
                };
                let Some(fd) = procfs::parse_fd(entry.name.to_bytes()) else { continue };
                // A process may hold 100,000 fds: a stop doesn't wait for the next pid.
                if self.stop.is_set() {
                    return Err(Error::Stopped);
                }
                if block != 0 && in_block == block {
                    if !self.tick(ticker, stats) {
                        return Err(Error::Stopped);
                    }
                    after_tick(&group[i..], spill);
                    in_block = 0;
                }
                in_block += 1;
                stats.fds += 1;
                // A closed fd, or one we may not follow: counted, nothing to deliver.
                let Ok(st) = procfs::stat_entry(dir.as_fd(), entry.name) else {
                    stats.skipped += 1;
                    continue;
                };
                if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFSOCK {
                    nsfs.saw(&st, pid, fd);
                    continue;
                }
                let start_time = match start_time {
                    Some(t) => t,
                    None => match self.read_stat(pid, stat, name) {
                        Some((t, threads)) => {
                            nsfs.saw_process(pid, threads);
                            *start_time.insert(t)
                        }
                        None => {
                            stats.skipped += 1;
                            break;
                        }
                    },
                };
                stats.sockets += 1;
                let name = CStr::from_bytes_until_nul(name).unwrap_or_default();
                let sock = Socket { inode: st.st_ino, netns, start_time, pid, fd, name };
                if on_socket(&sock).is_break() {
                    return Err(Error::Aborted);
                }
                delivered = true;
            }
        }
        Ok(())
    }

    /// Reads `pid`'s name into `name` (NUL-terminated) and returns its
    /// start time and thread count.
    pub(super) fn read_stat(&self, pid: i32, buf: &mut Vec<u8>, name: &mut Vec<u8>) -> Option<(u64, u64)> {
        let fd = self.root.open_file(pid, b"stat").ok()?;
        let len = procfs::read_all(fd.as_fd(), buf, STAT_LIMIT).ok()?;
        let st = parse_stat(&buf[..len])?;
        let cut = memchr::memchr(0, st.name).unwrap_or(st.name.len());
        name.clear();
        name.extend_from_slice(&st.name[..cut]);
        name.push(0);
        Some((st.start_time, st.threads))
    }

    /// The walk: for each namespace a tick, its tcp and tcp6 tables into
    /// `out` (again after every fd-block tick), and one `on_socket` call per
    /// socket fd of its pids. Every socket is delivered even if the tables
    /// don't fit (`BufferTooSmall`), unless `out` has no capacity at all,
    /// which means count only.
    pub fn walk(
        &self,
        out: &mut TableBuf<'_>,
        stats: &mut Stats,
        on_socket: &mut dyn FnMut(&Socket<'_>) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        self.with_state(stats, |state, stats| {
            let r = self.walk_locked(state, out, stats, on_socket);
            stats.bytes_written = out.written() as u64;
            stats.bytes_needed = out.needed();
            r
        })
    }

    fn walk_locked(
        &self,
        state: &mut State,
        out: &mut TableBuf<'_>,
        stats: &mut Stats,
        on_socket: &mut dyn FnMut(&Socket<'_>) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        self.group_by_netns(state, stats)?;
        let groups = std::mem::take(&mut state.groups);
        let r = groups.chunk_by(|a, b| a.0 == b.0).try_for_each(|group| {
            if !self.tick(&mut state.scan.ticker, stats) {
                return Err(Error::Stopped);
            }
            self.read_group_tables(group, &[TCP, TCP6], out, &mut state.scan.spill);
            // Re-read after each tick to narrow the race between the tables and the fds.
            let mut reread = |rest: &[(u64, i32)], spill: &mut [u8]| {
                self.read_group_tables(rest, &[TCP, TCP6], out, spill);
            };
            self.scan_group(&mut state.scan, group, stats, &mut reread, on_socket)
        });
        state.groups = groups;
        r?;
        if out.overflowed() && out.capacity() > 0 {
            return Err(Error::BufferTooSmall { needed: out.needed(), capacity: out.capacity() as u64 });
        }
        Ok(())
    }
}
