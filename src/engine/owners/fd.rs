//! The `PID/fd` owner scan: list each pid's fds and `stat()` each entry.

use std::ffi::CStr;
use std::ops::ControlFlow;
use std::os::fd::AsFd;

use nix::sys::stat::SFlag;

use super::Socket;
use crate::engine::ctx::{Ctx, Group};
use crate::engine::error::Error;
use crate::engine::namespaces::Noticed;
use crate::engine::pace::Ticker;
use crate::engine::stats::Stats;
use crate::parse::num::dec_name;
use crate::procfs::{self, DirList};

/// What the fd scan of one pid needs, kept from walk to walk.
#[derive(Debug)]
pub(in crate::engine) struct Scan {
    pub dents: Vec<u8>,
    pub spill: Vec<u8>,
    pub stat: Vec<u8>,
    pub name: Vec<u8>,
    pub ticker: Ticker,
    /// What the namespace search wants of the fds scanned, when it looks.
    pub noticed: Noticed,
}

impl Default for Scan {
    fn default() -> Self {
        Scan {
            dents: vec![0; procfs::DIRENT_BUF],
            spill: vec![0; procfs::DIRENT_BUF],
            stat: Vec::new(),
            name: Vec::new(),
            ticker: Ticker::default(),
            noticed: Noticed::default(),
        }
    }
}

/// Called after each fd-block tick with the pids of the namespace not yet
/// scanned and the spill buffer (the Scope walk re-reads the tables there).
pub(in crate::engine) type AfterTick<'a> = dyn FnMut(&Group, &mut [u8]) + 'a;

/// Scans the fds of every pid of `group`, calling `on_socket` for each
/// socket fd, with a tick (and `after_tick`) after every fd block.
pub(in crate::engine) fn scan_group(
    ctx: &Ctx,
    scan: &mut Scan,
    group: &Group,
    stats: &mut Stats,
    after_tick: &mut AfterTick<'_>,
    on_socket: &mut dyn FnMut(&Socket<'_>) -> ControlFlow<()>,
) -> Result<(), Error> {
    let Scan { dents, spill, stat, name, ticker, noticed } = scan;
    let block = ctx.fd_block();
    let mut in_block = 0u64;
    for (i, member) in group.iter().enumerate() {
        let (netns, Some(pid)) = (member.netns, member.as_pid()) else { continue };
        if ctx.stop.is_set() {
            return Err(Error::Stopped);
        }
        let Ok(dir) = ctx.root.open_dir(pid, b"fd") else {
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
                ctx.check_fork()?;
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
            let Some(fd) = dec_name(entry.name.to_bytes()) else { continue };
            // A process may hold 100,000 fds: a stop doesn't wait for the next pid.
            if ctx.stop.is_set() {
                return Err(Error::Stopped);
            }
            if block != 0 && in_block == block {
                if !ctx.tick(ticker, stats) {
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
            if !st.is(SFlag::S_IFSOCK) {
                noticed.saw(&st, pid, fd);
                continue;
            }
            let start_time = match start_time {
                Some(t) => t,
                None => match ctx.read_stat(pid, stat, name) {
                    Some((t, threads)) => {
                        noticed.saw_process(pid, threads);
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
            let sock = Socket { inode: st.ino, netns, start_time, pid, fd, name };
            if on_socket(&sock).is_break() {
                return Err(Error::Aborted);
            }
            delivered = true;
        }
    }
    Ok(())
}
