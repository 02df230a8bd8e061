//! The `Walker`, the Rust API, and its lock: one walk at a time on a walker
//! (another gets `Busy`; one in a child forked during a walk, `Forked`),
//! its settings, its stop, and the stats of the last walk. Each method's
//! contract is its C function's comment in the header (`include/procspy.h`,
//! from the C ABI's crate); a method's doc says what Rust adds. A pass (connections, query, changes) is
//! `pass.rs`; the walk of Weave Scope's procspy, fixed, is the short
//! `walk_locked` at the end of this file.

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, TryLockError};
use std::time::{Duration, Instant};

use super::changes::{self, Change, ChangeState};
use super::connections::{Connection, Plan};
use super::ctx::{Ctx, Group, by_netns};
use super::error::Error;
use super::events::{Event, Events};
use super::owners::{OwnerScan, Socket, scan_group};
use super::pace::Stop;
use super::pass::{self, Pass};
use super::query::Query;
use super::stats::Stats;
use super::tables::{Protocols, Source, TCP, TCP6, append_tables, read_group_tables};
use crate::bpf::Owners;
use crate::parse::StateMask;
use crate::procfs::{ProcRoot, TableBuf};

/// The proc root a walker uses when none is named.
pub(crate) const DEFAULT_PROC_ROOT: &[u8] = b"/proc";

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

/// Walks a proc root. Shared between threads: `stop` may run while a walk
/// does; a second walk at the same time gets `Error::Busy`. Each method's
/// contract is the comment of the C function it names, in `include/procspy.h`.
#[derive(Debug)]
pub struct Walker {
    ctx: Ctx,
    /// The stats of the last walk that ended.
    last: Mutex<Stats>,
    /// Where `connections` reads the tables, and how it finds owners.
    config: Mutex<(Source, OwnerScan)>,
    state: Mutex<State>,
    /// The live tracer: its own lock, so events and passes run side by side.
    events: Mutex<Events>,
    /// What the tracer tells beside its lock, once it runs (`Started`).
    started: Started,
}

/// What a running tracer tells without its lock, which a waiting events call
/// holds.
#[derive(Debug, Default)]
struct Started {
    /// Who acted on a socket that closed between two changes calls.
    owners: OnceLock<Owners>,
    /// Each hook's state, a line each for `diagnose`.
    hooks: OnceLock<Vec<String>>,
}

impl Started {
    /// Starts the tracer of `events` if it is not, and keeps what it tells.
    fn start(&self, events: &mut Events, host: bool) -> Result<&Owners, Error> {
        let owners = events.start(host)?;
        self.hooks.get_or_init(|| events.describe());
        Ok(self.owners.get_or_init(|| owners))
    }
}

/// Buffers kept from walk to walk, so a warm walk allocates nothing.
#[derive(Debug, Default)]
struct State {
    pass: Pass,
    changes: ChangeState,
}

impl Walker {
    /// Opens `proc_root` (`None`: the host's `/proc`); see
    /// `procspy_walker_new`.
    ///
    /// ```
    /// let walker = procspy::Walker::new(None)?; // None: the host's /proc
    /// assert!(procspy::Walker::new(Some(b"/nonexistent")).is_err());
    /// # drop(walker);
    /// # Ok::<(), procspy::Error>(())
    /// ```
    pub fn new(proc_root: Option<&[u8]>) -> Result<Self, Error> {
        let path = proc_root.unwrap_or(DEFAULT_PROC_ROOT);
        let root_path = String::from_utf8_lossy(path).into_owned();
        let root = ProcRoot::open(path).map_err(|e| Error::io(&root_path, e))?;
        let stop = Arc::new(Stop::new().map_err(|e| Error::io("eventfd", e))?);
        Ok(Self {
            ctx: Ctx::new(root, root_path, stop),
            last: Mutex::new(Stats::default()),
            config: Mutex::new((Source::Auto, OwnerScan::Auto)),
            state: Mutex::new(State::default()),
            events: Mutex::default(),
            started: Started::default(),
        })
    }

    /// Pacing, with `tick` as a `Duration`; see
    /// `procspy_walker_set_rate_limit`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let walker = procspy::Walker::new(None)?;
    /// // At most one namespace, or 1000 fd stats, every 10 ms.
    /// walker.set_rate_limit(1000, Duration::from_millis(10));
    /// # Ok::<(), procspy::Error>(())
    /// ```
    pub fn set_rate_limit(&self, fd_block_size: u64, tick: Duration) {
        self.ctx.set_rate_limit(fd_block_size, tick);
    }

    /// Where `connections` reads the tables; see
    /// `procspy_walker_set_source`.
    ///
    /// ```
    /// use procspy::{Source, Walker};
    /// let walker = Walker::new(None)?;
    /// walker.set_source(Source::Text); // the text tables of PID/net/
    /// assert_eq!(walker.source(), Source::Text);
    /// # Ok::<(), procspy::Error>(())
    /// ```
    pub fn set_source(&self, source: Source) {
        self.config().0 = source;
    }

    /// What `set_source` chose last ([`Source::Auto`] before).
    pub fn source(&self) -> Source {
        self.config().0
    }

    /// How `connections` finds owners; see
    /// `procspy_walker_set_owner_scan`.
    ///
    /// ```
    /// use procspy::{OwnerScan, Walker};
    /// let walker = Walker::new(None)?;
    /// walker.set_owner_scan(OwnerScan::Proc); // PID/fd of every process, no BPF
    /// assert_eq!(walker.owner_scan(), OwnerScan::Proc);
    /// # Ok::<(), procspy::Error>(())
    /// ```
    pub fn set_owner_scan(&self, scan: OwnerScan) {
        self.config().1 = scan;
    }

    /// What `set_owner_scan` chose last ([`OwnerScan::Auto`] before).
    pub fn owner_scan(&self) -> OwnerScan {
        self.config().1
    }

    fn config(&self) -> std::sync::MutexGuard<'_, (Source, OwnerScan)> {
        self.config.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends the walk in progress, and every later one, with
    /// [`Error::Stopped`]; see `procspy_walker_stop`.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use procspy::{Error, Protocols, StateMask, Stats, Walker};
    /// let walker = Walker::new(None)?;
    /// walker.stop(); // from any thread; here, before the walk
    /// let r = walker.connections(None, Protocols::TCP, StateMask::ALL, &mut Stats::default(), &mut |_| ControlFlow::Continue(()));
    /// assert!(matches!(r, Err(Error::Stopped)) && walker.is_stopped());
    /// # Ok::<(), procspy::Error>(())
    /// ```
    pub fn stop(&self) {
        self.ctx.stop.request();
    }

    /// Whether `stop` was called, on this walker or through a token.
    pub fn is_stopped(&self) -> bool {
        self.ctx.stop.is_set()
    }

    /// A handle that stops this walker and may outlive it; see
    /// `procspy_walker_stop_token`.
    ///
    /// ```
    /// let walker = procspy::Walker::new(None)?;
    /// let token = walker.stop_token();
    /// token.stop();
    /// assert!(walker.is_stopped());
    /// drop(walker);
    /// token.stop(); // its walker is gone: nothing
    /// # Ok::<(), procspy::Error>(())
    /// ```
    pub fn stop_token(&self) -> StopToken {
        StopToken(self.ctx.stop.clone())
    }

    /// The stats of the last walk on this walker that ended, all of them
    /// (C has them in two structs; see
    /// `procspy_walker_stats_ext`).
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use procspy::{Protocols, StateMask, Stats, Walker};
    /// let walker = Walker::new(None)?;
    /// let mut stats = Stats::default();
    /// walker.connections(None, Protocols::BOTH, StateMask::ALL, &mut stats, &mut |_| ControlFlow::Continue(()))?;
    /// assert_eq!(walker.last_stats().namespaces, stats.namespaces);
    /// # Ok::<(), procspy::Error>(())
    /// ```
    pub fn last_stats(&self) -> Stats {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The inode of `pid`'s network namespace; see
    /// `procspy_walker_netns_of`.
    ///
    /// ```
    /// use std::os::unix::fs::MetadataExt;
    /// let walker = procspy::Walker::new(None)?;
    /// let mine = walker.netns_of(std::process::id() as i32)?;
    /// assert_eq!(mine, std::fs::metadata("/proc/self/ns/net").unwrap().ino());
    /// # Ok::<(), procspy::Error>(())
    /// ```
    pub fn netns_of(&self, pid: i32) -> Result<u64, Error> {
        let ctx = &self.ctx;
        ctx.netns(pid).map_err(|e| Error::io(format_args!("{}/{pid}/{}", ctx.root_path, ctx.ns_file()), e))
    }

    /// Reads `pid`'s tcp and tcp6 tables into `out` and returns their full
    /// length; see `procspy_walker_read_tcp`.
    ///
    /// ```
    /// use std::mem::MaybeUninit;
    /// let walker = procspy::Walker::new(None)?;
    /// let mut buf = vec![MaybeUninit::uninit(); 1 << 20];
    /// let mut out = procspy::TableBuf::new(&mut buf);
    /// let len = walker.read_tcp(std::process::id() as i32, &mut out)?;
    /// assert!(len > 0 && out.written() as u64 == len); // at least the header line
    /// # Ok::<(), procspy::Error>(())
    /// ```
    pub fn read_tcp(&self, pid: i32, out: &mut TableBuf<'_>) -> Result<u64, Error> {
        let mut spill = [0u8; 4096];
        append_tables(&self.ctx, pid, &[TCP, TCP6], out, &mut spill)
            .map_err(|e| Error::io(format_args!("{}/{pid}/net/tcp", self.ctx.root_path), e))?;
        if out.overflowed() {
            return Err(Error::BufferTooSmall { needed: out.needed(), capacity: out.capacity() as u64 });
        }
        Ok(out.needed())
    }

    /// Every line of the chosen tables in every namespace that passes
    /// `state_mask`, once, with its owner; see
    /// `procspy_walker_connections`.
    /// `out` is the caller's scratch (`None`: the walker's own, as `cap` 0 in
    /// C); `ControlFlow::Break` from the closure is [`Error::Aborted`].
    ///
    /// Who holds a port (here a listener of this process):
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use procspy::{Protocols, StateMask, Stats, Walker};
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let port = listener.local_addr().unwrap().port();
    /// let walker = Walker::new(None)?;
    /// let mut holders = Vec::new();
    /// walker.connections(None, Protocols::TCP, StateMask::LISTEN, &mut Stats::default(), &mut |c| {
    ///     if c.conn.local_port == port {
    ///         holders.extend(c.owner.as_ref().map(|o| o.pid));
    ///     }
    ///     ControlFlow::Continue(())
    /// })?;
    /// assert_eq!(holders, [std::process::id() as i32]);
    /// # Ok::<(), procspy::Error>(())
    /// ```
    pub fn connections(
        &self,
        out: Option<&mut TableBuf<'_>>,
        protocols: Protocols,
        state_mask: StateMask,
        stats: &mut Stats,
        on_connection: &mut dyn FnMut(&Connection<'_>) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        self.query(out, &Query::default(), protocols, state_mask, stats, on_connection)
    }

    /// `connections`, restricted to what `query` asks for; see
    /// `procspy_walker_query`, whose
    /// flags are [`Query`]'s fields.
    ///
    /// One process's sockets, reading only its fds and its namespaces:
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use procspy::{Protocols, Query, StateMask, Stats, Walker};
    /// let _listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let me = [std::process::id() as i32];
    /// let walker = Walker::new(None)?;
    /// let mut mine = 0;
    /// let query = Query { pids: Some(&me), ..Query::default() };
    /// walker.query(None, &query, Protocols::BOTH, StateMask::ALL, &mut Stats::default(), &mut |c| {
    ///     assert_eq!(c.owner.as_ref().map(|o| o.pid), Some(me[0]));
    ///     mine += 1;
    ///     ControlFlow::Continue(())
    /// })?;
    /// assert!(mine >= 1);
    /// # Ok::<(), procspy::Error>(())
    /// ```
    pub fn query(
        &self,
        out: Option<&mut TableBuf<'_>>,
        query: &Query<'_>,
        protocols: Protocols,
        state_mask: StateMask,
        stats: &mut Stats,
        on_connection: &mut dyn FnMut(&Connection<'_>) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let plan = self.plan(protocols, state_mask)?;
        query.check()?;
        self.with_state(stats, |state, stats| {
            pass::join(&self.ctx, &plan, query, &mut state.pass, out, stats, &mut |c, _| on_connection(c))
        })
    }

    /// What changed since the previous changes call on this walker that
    /// returned `Ok`, with `connections`' arguments; the contract is
    /// `procspy_walker_changes`.
    /// `ControlFlow::Break` from the closure is [`Error::Aborted`], which,
    /// like every `Err`, keeps nothing for the next call.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use procspy::{ChangeKind, Protocols, StateMask, Stats, Walker};
    /// let walker = Walker::new(None)?;
    /// let mut stats = Stats::default();
    /// walker.changes(None, Protocols::TCP, StateMask::ALL, &mut stats, &mut |_| ControlFlow::Continue(()))?; // everything appears
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let port = listener.local_addr().unwrap().port();
    /// let mut appeared = false;
    /// walker.changes(None, Protocols::TCP, StateMask::ALL, &mut stats, &mut |ch| {
    ///     appeared |= ch.kind == ChangeKind::Appeared && ch.connection.conn.local_port == port;
    ///     ControlFlow::Continue(())
    /// })?;
    /// assert!(appeared);
    /// # Ok::<(), procspy::Error>(())
    /// ```
    pub fn changes(
        &self,
        out: Option<&mut TableBuf<'_>>,
        protocols: Protocols,
        state_mask: StateMask,
        stats: &mut Stats,
        on_change: &mut dyn FnMut(&Change<'_>) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let plan = self.plan(protocols, state_mask)?;
        self.with_state(stats, |state, stats| {
            // The tracer where an events call started it: changes starts
            // nothing host-wide of its own accord.
            state.changes.owners = self.started.owners.get().cloned();
            changes::changes(&self.ctx, &plan, &mut state.pass, &mut state.changes, out, stats, on_change)
        })
    }

    /// What this walker has learnt of the running kernel, a line each; see
    /// `procspy_walker_diagnose`.
    ///
    /// ```
    /// let walker = procspy::Walker::new(None)?;
    /// let text = walker.diagnose();
    /// assert!(text.lines().any(|l| l.starts_with("BPF owner scan")));
    /// # Ok::<(), procspy::Error>(())
    /// ```
    pub fn diagnose(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for (what, known) in self.ctx.root.probes().each() {
            let _ = writeln!(out, "{what}: {known}");
        }
        let bpf = match self.state.try_lock() {
            Ok(state) => state.pass.owners.bpf_loaded(),
            Err(TryLockError::Poisoned(p)) => p.into_inner().pass.owners.bpf_loaded(),
            Err(TryLockError::WouldBlock) => "not known while a walk runs".into(),
        };
        let _ = writeln!(out, "BPF owner scan (task_file iterator): {bpf}");
        let hooks = match (self.started.hooks.get(), self.events.try_lock()) {
            (Some(hooks), _) => hooks.clone(),
            (None, Ok(events)) => events.describe(),
            (None, Err(_)) => vec!["BPF tracer: being started".into()],
        };
        hooks.iter().for_each(|l| out.push_str(&format!("{l}\n")));
        let closes = if self.ctx.closer.stalled() { "stalled: no fd is taken until they return" } else { "returning" };
        let _ = writeln!(out, "closes of other processes' fds (on the library's own thread): {closes}");
        let s = self.last_stats();
        let _ = writeln!(
            out,
            "last pass: {} namespaces found beyond processes, {} unreachable ({} for want of fds), \
             {} sockets not asked (closes stalled), {} files truncated, {} tables unreadable",
            s.netns_found,
            s.netns_unreachable,
            s.netns_unreachable_fds,
            s.closes_stalled,
            s.files_truncated,
            s.tables_unreadable
        );
        out
    }

    /// Live events: what waits, or the first of what comes within
    /// `timeout`; see
    /// `procspy_walker_events`.
    /// `ControlFlow::Break` from the closure is [`Error::Aborted`]. Runs
    /// beside a pass on the same walker; a second events call at the same
    /// time gets `Busy`.
    ///
    /// ```no_run
    /// use std::ops::ControlFlow;
    /// use std::time::Duration;
    /// use procspy::{EventKind, Protocols, Stats, Walker};
    /// let walker = Walker::new(None)?;
    /// walker.events(Duration::ZERO, Protocols::BOTH, &mut Stats::default(), &mut |_| ControlFlow::Continue(()))?;
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let mut listened = false;
    /// walker.events(Duration::from_secs(1), Protocols::TCP, &mut Stats::default(), &mut |e| {
    ///     listened |= e.kind == EventKind::Listen && e.connection.owner.map(|o| o.pid) == Some(std::process::id() as i32);
    ///     ControlFlow::Continue(())
    /// })?;
    /// assert!(listened);
    /// # drop(listener);
    /// # Ok::<(), procspy::Error>(())
    /// ```
    pub fn events(
        &self,
        timeout: Duration,
        protocols: Protocols,
        stats: &mut Stats,
        on_event: &mut dyn FnMut(&Event<'_>) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let t0 = Instant::now();
        *stats = Stats::default();
        if !protocols.tcp && !protocols.udp {
            return Err(Error::Invalid("protocols must name TCP, UDP or both"));
        }
        let mut events = match self.events.try_lock() {
            Ok(e) => e,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return Err(Error::Busy),
        };
        let r = if self.ctx.stop.is_set() {
            Err(Error::Stopped)
        } else {
            let host = self.ctx.root.shows_kernel_ids();
            self.started
                .start(&mut events, host)
                .and_then(|_| events.deliver(&self.ctx, timeout, protocols, stats, on_event))
        };
        stats.elapsed_ns = t0.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = *stats;
        r
    }

    /// An fd that is readable when an event waits, to poll in the caller's
    /// own loop; starts the tracer. It stays the walker's: valid until the
    /// walker is dropped, never to be closed by the caller. See
    /// `procspy_walker_events_fd`.
    pub fn events_fd(&self) -> Result<std::os::fd::RawFd, Error> {
        let mut events = match self.events.try_lock() {
            Ok(e) => e,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return Err(Error::Busy),
        };
        let host = self.ctx.root.shows_kernel_ids();
        self.started.start(&mut events, host)?;
        events.fd(host)
    }

    /// The size of the tracer's ring buffer, before it starts (default 4
    /// MiB); see `procspy_walker_set_events_ring`.
    pub fn set_events_ring(&self, bytes: usize) -> Result<(), Error> {
        match self.events.try_lock() {
            Ok(mut e) => e.set_ring_size(bytes),
            Err(TryLockError::Poisoned(p)) => p.into_inner().set_ring_size(bytes),
            Err(TryLockError::WouldBlock) => Err(Error::Busy),
        }
    }

    fn plan(&self, protocols: Protocols, state_mask: StateMask) -> Result<Plan, Error> {
        let (source, owner_scan) = *self.config();
        Plan::new(protocols, state_mask, source, owner_scan)
    }

    /// Runs `f` on the walk state, or fails with `Busy` or `Stopped`.
    fn with_state<R>(
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
            Err(TryLockError::WouldBlock) if ![0, pid].contains(&self.ctx.walking.load(Ordering::Relaxed)) => {
                return Err(Error::Forked);
            }
            Err(TryLockError::WouldBlock) => return Err(Error::Busy),
        };
        self.ctx.walking.store(pid, Ordering::Relaxed);
        let r = if self.ctx.stop.is_set() { Err(Error::Stopped) } else { f(&mut state, stats) };
        self.ctx.walking.store(0, Ordering::Relaxed);
        stats.elapsed_ns = t0.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = *stats;
        match r {
            Err(Error::Io { .. }) => r,
            _ if self.ctx.stop.is_set() => Err(Error::Stopped),
            r => r,
        }
    }

    /// The walk: one `on_socket` call per socket fd, namespace by
    /// namespace, and their tcp and tcp6 tables into `out` (no capacity:
    /// count only); see `procspy_walker_walk`.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use procspy::{Stats, TableBuf, Walker};
    /// let _listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let walker = Walker::new(None)?;
    /// let mut ours = 0;
    /// let mut count_only = TableBuf::new(&mut []);
    /// walker.walk(&mut count_only, &mut Stats::default(), &mut |s| {
    ///     ours += usize::from(s.pid == std::process::id() as i32);
    ///     ControlFlow::Continue(())
    /// })?;
    /// assert!(ours >= 1);
    /// # Ok::<(), procspy::Error>(())
    /// ```
    pub fn walk(
        &self,
        out: &mut TableBuf<'_>,
        stats: &mut Stats,
        on_socket: &mut dyn FnMut(&Socket<'_>) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        self.with_state(stats, |state, stats| {
            let r = self.walk_locked(&mut state.pass, out, stats, on_socket);
            stats.bytes_written = out.written() as u64;
            stats.bytes_needed = out.needed();
            r
        })
    }

    fn walk_locked(
        &self,
        pass: &mut Pass,
        out: &mut TableBuf<'_>,
        stats: &mut Stats,
        on_socket: &mut dyn FnMut(&Socket<'_>) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let ctx = &self.ctx;
        let Pass { pids, groups, scan, .. } = pass;
        ctx.group_by_netns(&mut scan.dents, pids, groups, stats)?;
        by_netns(groups).try_for_each(|group| {
            if !ctx.tick(&mut scan.ticker, stats) {
                return Err(Error::Stopped);
            }
            read_group_tables(ctx, group, &[TCP, TCP6], out, &mut scan.spill);
            // Re-read after each tick to narrow the race between the tables and the fds.
            let mut reread = |rest: &Group, spill: &mut [u8]| {
                read_group_tables(ctx, rest, &[TCP, TCP6], out, spill);
            };
            scan_group(ctx, scan, group, stats, &mut reread, on_socket)
        })?;
        if out.overflowed() && out.capacity() > 0 {
            return Err(Error::BufferTooSmall { needed: out.needed(), capacity: out.capacity() as u64 });
        }
        Ok(())
    }
}
