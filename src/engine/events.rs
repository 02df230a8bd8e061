//! Live events: the tracer (`bpf::Tracer`), started by a walker's first
//! events call and attached until the walker is dropped, and what each call
//! delivers. What a call promises is `procspy_walker_events`' comment in
//! `ffi`; this is how.

use std::ffi::CStr;
use std::ops::ControlFlow;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use super::connections::Connection;
use super::ctx::Ctx;
use super::error::Error;
use super::owners::{Socket, line};
use super::pace::Wait;
use super::stats::Stats;
use super::tables::Protocols;
use crate::bpf::{self, EventOwner, Hook, Next, Owners, Refusal, Tracer};
use crate::parse::kernel::Protocol;
use crate::parse::tcp::Conn;

/// What an event tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// TCP: CLOSE -> SYN_SENT, in the connecting process; UDP: a connect.
    Connect,
    /// A TCP connection accepted, in the accepting process.
    Accept,
    /// The process closed it (its last fd).
    Close,
    /// A UDP socket's first send.
    Send,
    /// Any other TCP state change.
    State,
    /// TCP: CLOSE -> LISTEN, in the listening process.
    Listen,
    /// Events were lost before this one (`Event::lost` of them): the ring
    /// was full. Its connection is all zeros.
    Lost,
}

/// One event, lent to the callback.
#[derive(Clone, Copy, Debug)]
pub struct Event<'a> {
    pub kind: EventKind,
    /// The socket as the kernel held it then, with the process that acted
    /// (or the one learned for the socket before) as its owner, `fd` -1.
    pub connection: Connection<'a>,
    /// `State`: the state it left.
    pub old_state: u8,
    /// When, `CLOCK_BOOTTIME` ns.
    pub time_ns: u64,
    /// The kernel's socket cookie: the same socket has the same cookie in
    /// every event (and in sock_diag).
    pub cookie: u64,
    /// `Lost`: how many.
    pub lost: u64,
}

/// How often a waiting call looks at the ring: a record wakes it only once
/// 16 KiB of them wait (the tracer's programs decide).
const POLL: Duration = Duration::from_millis(5);

/// The ring a tracer is started with, unless set.
pub(super) const DEFAULT_RING: usize = 4 << 20;
const MAX_RING: usize = 1 << 30;

/// Nanoseconds per clock tick of `/proc/PID/stat`'s start time (`USER_HZ`,
/// 100 wherever Linux runs but alpha).
const NS_PER_TICK: u64 = 10_000_000;

/// A walker's tracer, once started, and the ring it starts with.
#[derive(Debug)]
pub(super) struct Events {
    ring_size: usize,
    /// Started, or refused for as long as the kernel runs.
    tracer: Option<Result<Tracer, Error>>,
}

impl Default for Events {
    fn default() -> Self {
        Self { ring_size: DEFAULT_RING, tracer: None }
    }
}

impl Events {
    /// The ring the tracer will start with.
    pub fn set_ring_size(&mut self, bytes: usize) -> Result<(), Error> {
        if self.tracer.is_some() {
            return Err(Error::Invalid("the tracer has started: its ring is set before the first events call"));
        }
        if !bytes.is_power_of_two() || !(1 << 16..=MAX_RING).contains(&bytes) {
            return Err(Error::Invalid("the ring's size must be a power of two from 64 KiB to 1 GiB"));
        }
        self.ring_size = bytes;
        Ok(())
    }

    /// The tracer, started at the first call. What lasts is kept: a proc
    /// root that is not the host's, a kernel that lacks or refuses it; a
    /// failed system call (EPERM, EMFILE) is tried again next time.
    /// `host`: whether the walker's proc root is the host's own.
    fn tracer(&mut self, host: bool) -> Result<&mut Tracer, Error> {
        let started = match self.tracer.take() {
            Some(started) => started,
            None if !host => Err(Error::Invalid(
                "the BPF tracer needs the host's own procfs as the proc root, seen from the initial pid and user namespaces",
            )),
            None => match Tracer::start(self.ring_size) {
                Ok(t) => Ok(t),
                Err(Refusal::Unsupported(why)) => Err(Error::Unsupported(why.into())),
                Err(Refusal::Sys { call, errno }) => return Err(Error::io(format_args!("BPF tracer: {call}"), errno)),
            },
        };
        let started = self.tracer.insert(started);
        started.as_mut().map_err(|e| e.clone())
    }

    /// Starts the tracer if it is not; its owners map where it runs.
    pub fn start(&mut self, host: bool) -> Result<Owners, Error> {
        Ok(self.tracer(host)?.owners())
    }

    /// The fd that is readable when an event waits; starts the tracer.
    pub fn fd(&mut self, host: bool) -> Result<RawFd, Error> {
        Ok(self.tracer(host)?.fd().as_raw_fd())
    }

    /// What waits, or the first of what comes within `timeout`, delivered:
    /// a `Lost` event first where the kernel counted any since the last
    /// call, then at most a ring's worth of events, so a call ends under a
    /// flood too.
    pub fn deliver(
        &mut self,
        ctx: &Ctx,
        timeout: Duration,
        protocols: Protocols,
        stats: &mut Stats,
        on_event: &mut dyn FnMut(&Event<'_>) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let most = self.ring_size / bpf::EVENT_LEN;
        let t = self.tracer(ctx.root.shows_kernel_ids())?;
        loop {
            let lost = t.lost().map_err(|e| Error::io("BPF tracer: its loss count", e))?;
            // Whether anything was delivered: events of other protocols are not.
            let mut any = lost > 0;
            if any {
                stats.events_lost += lost;
                let connection = Connection { conn: Conn::ZERO, protocol: Protocol::Tcp, netns: 0, owner: None };
                let e = Event { kind: EventKind::Lost, connection, old_state: 0, time_ns: 0, cookie: 0, lost };
                on_event(&e).is_continue().then_some(()).ok_or(Error::Aborted)?;
            }
            for _ in 0..most {
                match t.next() {
                    Next::Empty => break,
                    Next::Dropped => stats.events_dropped += 1,
                    Next::Event(e) => {
                        let wanted = match e.protocol {
                            Protocol::Tcp => protocols.tcp,
                            Protocol::Udp => protocols.udp,
                        };
                        if wanted {
                            any = true;
                            stats.events += 1;
                            with_event(&e, |ev| on_event(ev)).is_continue().then_some(()).ok_or(Error::Aborted)?;
                        }
                    }
                }
            }
            if any {
                return Ok(());
            }
            match ctx.stop.wait(Some(t.fd()), deadline.min(Instant::now() + POLL)) {
                Wait::Stopped => return Err(Error::Stopped),
                Wait::TimedOut if Instant::now() >= deadline => return Ok(()),
                Wait::Ready | Wait::TimedOut => {}
            }
        }
    }

    /// Each hook's state, a line each, for `diagnose`.
    pub fn describe(&self) -> Vec<String> {
        match &self.tracer {
            None => vec!["BPF tracer: not started (the first events call starts it)".into()],
            Some(Err(e)) => vec![format!("BPF tracer: refused: {e}")],
            Some(Ok(t)) => {
                let mut lines: Vec<String> = t
                    .hooks()
                    .map(|(h, refused)| match refused {
                        None => format!("BPF tracer {}: attached", h.describe()),
                        Some(why) if h == Hook::State => format!("BPF tracer {}: {why}", h.describe()),
                        Some(why) => format!("BPF tracer {}: not attached: {why}", h.describe()),
                    })
                    .collect();
                lines.extend(t.catchers().map(|(h, refused)| match refused {
                    None => format!("BPF tracer {} (caught): attached", h.describe()),
                    Some(why) => format!("BPF tracer {} (caught): not attached: {why}", h.describe()),
                }));
                lines.push(match t.task_marks() {
                    None => "BPF tracer marks per task: kept".into(),
                    Some(why) => format!("BPF tracer marks per task: none, per CPU only: {why}"),
                });
                lines
            }
        }
    }
}

/// The tracer's owner `o` of a socket as a snapshot names an owner: its
/// start in clock ticks, its name in `name`, no fd (-1).
pub(super) fn owner_socket<'a>(o: &EventOwner, inode: u64, netns: u64, name: &'a mut [u8; 17]) -> Socket<'a> {
    name[..16].copy_from_slice(&o.comm);
    let name = CStr::from_bytes_until_nul(&name[..]).unwrap_or_default();
    Socket { inode, netns, start_time: o.start_ns / NS_PER_TICK, pid: o.pid, fd: -1, name }
}

/// Lends `f` the engine's event for the tracer's `e`.
fn with_event<R>(e: &bpf::Event, f: impl FnOnce(&Event<'_>) -> R) -> R {
    let conn = line(e.inode, e.family, e.state, &e.ends, e.uid);
    let mut name = [0u8; 17];
    let owner = e.owner.map(|o| owner_socket(&o, e.inode, e.netns, &mut name));
    let kind = match e.kind {
        bpf::EventKind::Connect => EventKind::Connect,
        bpf::EventKind::Accept => EventKind::Accept,
        bpf::EventKind::Close => EventKind::Close,
        bpf::EventKind::Send => EventKind::Send,
        bpf::EventKind::State => EventKind::State,
        bpf::EventKind::Listen => EventKind::Listen,
    };
    let connection = Connection { conn, protocol: e.protocol, netns: e.netns, owner };
    f(&Event { kind, connection, old_state: e.old_state, time_ns: e.time_ns, cookie: e.cookie, lost: 0 })
}
