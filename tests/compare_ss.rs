//! `connections` in this namespace agrees with `ss -tanpe` taken at the
//! same moment.
//!
//! The host changes while we look, so ss runs just before and just after
//! the walk. A socket listed by both ss runs, in the same state, existed
//! for the whole walk: it must be ours, with the same ports, addresses and
//! an owner among ss's holders (the lowest pid). A socket of ours must be in
//! at least one ss run: anything else was invented. Sockets in only one ss
//! run opened or closed in between and are allowed either way.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::process::Command;

use procspy::engine::Protocols;
use procspy::{Protocol, StateMask, Stats, Walker};

#[derive(Clone, Debug, PartialEq)]
struct SsLine {
    state: u8,
    local: (Option<IpAddr>, u16),
    remote: (Option<IpAddr>, u16),
    pids: Vec<i32>,
}

fn state_number(name: &str) -> u8 {
    match name {
        "ESTAB" => 1,
        "SYN-SENT" => 2,
        "SYN-RECV" => 3,
        "FIN-WAIT-1" => 4,
        "FIN-WAIT-2" => 5,
        "TIME-WAIT" => 6,
        "UNCONN" | "CLOSE" => 7,
        "CLOSE-WAIT" => 8,
        "LAST-ACK" => 9,
        "LISTEN" => 10,
        "CLOSING" => 11,
        other => panic!("ss state {other}"),
    }
}

/// "127.0.0.1:80", "[::1]:80", "[::ffff:127.0.0.1]:80", "*:80", "0.0.0.0:*".
fn endpoint(s: &str) -> (Option<IpAddr>, u16) {
    let (addr, port) = s.rsplit_once(':').unwrap();
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    let addr = addr.split('%').next().unwrap();
    (addr.parse().ok(), port.parse().unwrap_or(0))
}

/// inode -> line, for every socket with an inode.
fn ss() -> HashMap<u64, SsLine> {
    let out = Command::new("ss").arg("-tanpe").output().expect("run ss");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let mut map = HashMap::new();
    for line in text.lines().skip(1) {
        let tok: Vec<&str> = line.split_whitespace().collect();
        let Some(ino) = tok.iter().find_map(|t| t.strip_prefix("ino:")) else { continue };
        let ino: u64 = ino.parse().unwrap();
        if ino == 0 {
            continue;
        }
        let pids = line
            .match_indices("pid=")
            .map(|(i, _)| line[i + 4..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap());
        let l = SsLine {
            state: state_number(tok[0]),
            local: endpoint(tok[3]),
            remote: endpoint(tok[4]),
            pids: pids.collect(),
        };
        map.insert(ino, l);
    }
    map
}

fn ip(family: u8, a: &[u8; 16]) -> IpAddr {
    if family == 4 { IpAddr::from([a[0], a[1], a[2], a[3]]) } else { IpAddr::from(*a) }
}

#[test]
fn tcp_connections_agree_with_ss() {
    let holder = common::Holder::start(false, Some("ss-compare"));
    let w = Walker::new(None).unwrap();
    let mut stats = Stats::default();
    let here = common::proc::netns_of("self");
    let before = ss();
    let mut ours: HashMap<u64, SsLine> = HashMap::new();
    let r = w.connections(None, Protocols::TCP, StateMask::ALL, &mut stats, &mut |c| {
        if c.netns == here && c.conn.inode != 0 {
            let line = SsLine {
                state: c.conn.state,
                local: (Some(ip(c.conn.family, &c.conn.local_addr)), c.conn.local_port),
                remote: (Some(ip(c.conn.family, &c.conn.remote_addr)), c.conn.remote_port),
                pids: c.owner.map(|o| o.pid).into_iter().collect(),
            };
            assert!(ours.insert(c.conn.inode, line).is_none(), "inode {} twice", c.conn.inode);
        }
        ControlFlow::Continue(())
    });
    let after = ss();
    assert_eq!(r, Ok(()));

    let mut stable = 0;
    for (ino, b) in &before {
        let Some(a) = after.get(ino).filter(|a| a.state == b.state) else { continue };
        stable += 1;
        let o = ours.get(ino).unwrap_or_else(|| panic!("ss lists inode {ino} {b:?} before and after; we don't"));
        assert_eq!(o.state, b.state, "inode {ino}");
        assert_eq!(o.local.1, b.local.1, "inode {ino}");
        assert_eq!(o.remote.1, b.remote.1, "inode {ino}");
        for (mine, theirs) in [(o.local.0, b.local.0), (o.remote.0, b.remote.0)] {
            if let Some(t) = theirs {
                assert_eq!(mine.map(|m| m.to_canonical()), Some(t.to_canonical()), "inode {ino}");
            }
        }
        let holders: Vec<i32> = b.pids.iter().filter(|p| a.pids.contains(p)).copied().collect();
        match holders.iter().min() {
            Some(min) => assert_eq!(o.pids, vec![*min], "inode {ino}: owner among {holders:?}"),
            None => assert!(b.pids.is_empty() || o.pids.len() <= 1, "inode {ino}"),
        }
    }
    for ino in ours.keys() {
        assert!(before.contains_key(ino) || after.contains_key(ino), "we list inode {ino}, ss never did");
    }
    let held_tcp = holder.socks.iter().filter(|s| s.proto == Protocol::Tcp && s.family == 4).count();
    assert!(stable >= held_tcp, "the holder's sockets are stable: {stable} < {held_tcp}");
    for s in holder.socks.iter().filter(|s| s.proto == Protocol::Tcp) {
        assert_eq!(ours[&s.inode].pids, vec![holder.pid]);
    }
}
