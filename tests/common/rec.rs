//! Walks, their records copied out of the callback.

use std::mem::MaybeUninit;
use std::ops::ControlFlow;

use procspy::{Error, Protocol, Protocols, Query, Socket, StateMask, Stats, TableBuf, Walker};

/// One socket record of a walk (or the owner of a connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub pid: i32,
    pub fd: i32,
    pub inode: u64,
    pub netns: u64,
    pub start_time: u64,
    pub name: Vec<u8>,
}

impl Rec {
    pub fn of(s: &Socket<'_>) -> Rec {
        Rec {
            pid: s.pid,
            fd: s.fd,
            inode: s.inode,
            netns: s.netns,
            start_time: s.start_time,
            name: s.name.to_bytes().to_vec(),
        }
    }
}

/// One walk into `out`: `recs` (cleared first) gets every record.
pub fn walk_into(w: &Walker, out: &mut TableBuf<'_>, recs: &mut Vec<Rec>) -> (Result<(), Error>, Stats) {
    recs.clear();
    let mut stats = Stats::default();
    let r = w.walk(out, &mut stats, &mut |s| {
        recs.push(Rec::of(s));
        ControlFlow::Continue(())
    });
    (r, stats)
}

/// One walk with a buffer of `cap` bytes: its result, its records, the
/// table text it wrote, its stats.
pub fn walk_all(w: &Walker, cap: usize) -> (Result<(), Error>, Vec<Rec>, Vec<u8>, Stats) {
    let mut mem = vec![MaybeUninit::new(0u8); cap];
    let mut out = TableBuf::new(&mut mem);
    let mut recs = Vec::new();
    let (r, stats) = walk_into(w, &mut out, &mut recs);
    let text = out.filled().to_vec();
    (r, recs, text, stats)
}

/// One delivered line, comparable: (netns, protocol, inode, family, state,
/// local, lport, remote, rport, uid, owner (pid, fd)).
pub type Line = (u64, Protocol, u64, u8, u8, [u8; 16], u16, [u8; 16], u16, u32, Option<(i32, i32)>);

/// The lines of one query of every protocol and state, sorted.
pub fn query_lines(w: &Walker, q: &Query<'_>) -> (Result<(), Error>, Vec<Line>, Stats) {
    let mut stats = Stats::default();
    let mut got = Vec::new();
    let r = w.query(None, q, Protocols::BOTH, StateMask::ALL, &mut stats, &mut |c| {
        let k = &c.conn;
        got.push((
            c.netns,
            c.protocol,
            k.inode,
            k.family,
            k.state,
            k.local_addr,
            k.local_port,
            k.remote_addr,
            k.remote_port,
            k.uid,
            c.owner.map(|o| (o.pid, o.fd)),
        ));
        ControlFlow::Continue(())
    });
    got.sort();
    (r, got, stats)
}
