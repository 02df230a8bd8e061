//! The text tables under `PID/net/`, read from the first pid of a
//! namespace whose tables can be read, into the caller's buffer or the
//! walker's own.

use std::os::fd::AsFd;

use nix::errno::Errno;

use super::{Listed, Namespace, Sink, TableSource};
use crate::engine::ctx::{Ctx, Group, Member};
use crate::engine::error::Error;
use crate::engine::stats::Stats;
use crate::parse::kernel::Protocol;
use crate::parse::tcp::parse_table;
use crate::procfs::{Known, TableBuf};

/// Table bytes a walker's own scratch may grow to for one namespace.
const OWN_TABLES_LIMIT: usize = 1 << 30;

/// A kernel socket table under `PID/net/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Table {
    pub file: &'static [u8],
    pub v6: bool,
}

pub(crate) const TCP: Table = Table { file: b"net/tcp", v6: false };
pub(crate) const TCP6: Table = Table { file: b"net/tcp6", v6: true };
pub(crate) const UDP: Table = Table { file: b"net/udp", v6: false };
pub(crate) const UDP6: Table = Table { file: b"net/udp6", v6: true };

/// Appends `pid`'s `tables` to `out`; on an error nothing of them stays.
/// The v6 tables are probed here: missing with the pid's `net` present,
/// the host has no IPv6.
pub(in crate::engine) fn append_tables(
    ctx: &Ctx,
    pid: i32,
    tables: &[Table],
    out: &mut TableBuf<'_>,
    spill: &mut [u8],
) -> Result<(), Errno> {
    let v6 = &ctx.root.probes().v6;
    let mark = out.mark();
    let r = tables.iter().try_for_each(|t| {
        if t.v6 && v6.is_no() {
            return Ok(());
        }
        match ctx.root.open_file(pid, t.file) {
            Ok(fd) => {
                if t.v6 {
                    v6.set(true);
                }
                out.append_file(fd.as_fd(), spill).map(drop)
            }
            Err(Errno::ENOENT) if t.v6 && v6.get() == Known::Unknown && ctx.root.stat(pid, b"net").is_ok() => {
                v6.set(false);
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
pub(in crate::engine) fn read_group_tables(
    ctx: &Ctx,
    group: &Group,
    tables: &[Table],
    out: &mut TableBuf<'_>,
    spill: &mut [u8],
) -> bool {
    group.iter().filter_map(Member::as_pid).any(|pid| append_tables(ctx, pid, tables, out, spill).is_ok())
}

/// The text source: always available, but a namespace whose tables don't
/// fit the caller's buffer is skipped whole and remembered.
pub(in crate::engine) struct Text<'a, 'b> {
    /// The caller's buffer; `None`: `own`, grown as needed.
    pub out: Option<&'a mut TableBuf<'b>>,
    pub own: &'a mut Vec<u8>,
    pub spill: &'a mut [u8],
    pub tcp: &'static [Table],
    pub udp: &'static [Table],
    /// The capacity of a buffer some namespace's tables outgrew.
    pub too_small: Option<usize>,
}

impl TableSource for Text<'_, '_> {
    fn list(&mut self, ctx: &Ctx, ns: &Namespace<'_>, sink: &mut Sink<'_>, stats: &mut Stats) -> Result<Listed, Error> {
        let Text { out, own, spill, tcp, udp, too_small } = self;
        let read = match out.as_deref_mut() {
            Some(buf) => {
                buf.clear();
                read_split(ctx, ns.members, (tcp, udp), buf, spill).map(|(split, unreadable)| Tables {
                    text: buf.filled(),
                    split,
                    unreadable,
                    needed: buf.needed(),
                    overflowed: buf.overflowed(),
                })
            }
            None => read_own(ctx, ns.members, (tcp, udp), own, spill),
        };
        let Some(read) = read else {
            // A namespace no thread is in has no text tables to read; one
            // whose every pid is gone has nothing left to list.
            stats.netns_unreachable += u64::from(ns.members[0].as_pid().is_none());
            return Ok(Listed::Done);
        };
        stats.tables_unreadable += u64::from(read.unreadable);
        stats.bytes_needed = stats.bytes_needed.max(read.needed);
        if read.overflowed {
            *too_small = Some(out.as_ref().map_or(0, |b| b.capacity()));
            return Ok(Listed::Done);
        }
        stats.bytes_written = stats.bytes_written.max(read.text.len() as u64);
        let (text, split) = (read.text, read.split);
        for (part, protocol) in [(&text[..split], Protocol::Tcp), (&text[split..], Protocol::Udp)] {
            // A stop also ends here; `with_state` reports it as such.
            parse_table(part, |conn| sink.offer(protocol, conn)).map_err(|_| Error::Aborted)?;
        }
        Ok(Listed::Done)
    }
}

/// One namespace's tables as read: TCP text before `split`, UDP after;
/// `unreadable` of the two could not be read.
struct Tables<'a> {
    text: &'a [u8],
    split: usize,
    unreadable: u8,
    needed: u64,
    overflowed: bool,
}

/// Reads the TCP tables then the UDP ones of `group` into `buf`; returns
/// the offset where UDP starts and how many of the two could not be read
/// (what could be is kept), or `None` if neither could.
fn read_split(
    ctx: &Ctx,
    group: &Group,
    (tcp, udp): (&[Table], &[Table]),
    buf: &mut TableBuf<'_>,
    spill: &mut [u8],
) -> Option<(usize, u8)> {
    let tcp_ok = tcp.is_empty() || read_group_tables(ctx, group, tcp, buf, spill);
    let split = buf.written();
    let udp_ok = udp.is_empty() || read_group_tables(ctx, group, udp, buf, spill);
    (tcp_ok || udp_ok).then_some((split, u8::from(!tcp_ok) + u8::from(!udp_ok)))
}

/// `read_split` into the walker's own scratch, grown until the tables fit.
fn read_own<'b>(
    ctx: &Ctx,
    group: &Group,
    tables: (&[Table], &[Table]),
    own: &'b mut Vec<u8>,
    spill: &mut [u8],
) -> Option<Tables<'b>> {
    loop {
        let mut buf = TableBuf::from_init(own);
        let (split, unreadable) = read_split(ctx, group, tables, &mut buf, spill)?;
        let (written, needed, overflowed) = (buf.written(), buf.needed(), buf.overflowed());
        if !overflowed || needed > OWN_TABLES_LIMIT as u64 {
            return Some(Tables { text: &own[..written], split, unreadable, needed, overflowed });
        }
        // Tables grow under churn: leave room for some.
        let needed = needed as usize;
        own.resize(needed + needed / 4 + 4096, 0);
    }
}
