//! Hostile proc roots: each case ends in a clear status or a counted skip,
//! never a crash, a hang, or a record that was not there.

#![allow(clippy::type_complexity)] // tuples of record fields read best inline here

use std::ffi::OsStr;
use std::ops::ControlFlow;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use common::Holder;
use common::fake::{FakeRoot, stat_line};
use common::rec::{Rec, walk_all};
use procspy::engine::Protocols;
use procspy::{Error, Protocol, StateMask, Stats, Walker};

fn root_of(f: &FakeRoot) -> Walker {
    Walker::new(Some(f.path.as_os_str().as_bytes())).unwrap()
}

/// A walk with a 32 MiB buffer, bounded in time.
fn walk(w: &Walker) -> (Result<(), Error>, Vec<Rec>, Vec<u8>, Stats) {
    common::within(Duration::from_secs(10), "walk", || walk_all(w, 32 << 20))
}

#[test]
fn proc_roots_that_are_not_directories() {
    let f = FakeRoot::new("roots");
    f.file("plain", b"x");
    let fifo = f.path.join("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for (path, errno) in [
        (f.path.join("plain"), "Not a directory"),
        (fifo, "Not a directory"),
        (f.path.join("missing"), "No such file or directory"),
        (f.path.join(OsStr::from_bytes(b"bad\xff\xfename")), "No such file or directory"),
    ] {
        let e = common::within(Duration::from_secs(2), &format!("{path:?}"), || {
            Walker::new(Some(path.as_os_str().as_bytes())).unwrap_err()
        });
        let msg = e.to_string();
        assert!(matches!(e, Error::Io { .. }), "{path:?}: {e:?}");
        assert!(msg.ends_with(errno) && msg.contains(&*path.to_string_lossy()), "{msg}");
    }
    // Non-UTF-8 bytes in a path that exists are fine.
    let odd = f.path.join(OsStr::from_bytes(b"odd-\xff"));
    std::fs::create_dir(&odd).unwrap();
    assert!(Walker::new(Some(odd.as_os_str().as_bytes())).is_ok());
}

#[test]
fn hostile_entries_are_skipped_and_counted() {
    let h = Holder::start(false, None);
    let f = FakeRoot::new("entries");
    let sock = h.socks[0].fd;
    // A good pid, to show the walk goes on around the bad ones.
    f.pid(100, h.pid, &[(3, sock)], b"good");
    // fd is a file, fd is a symlink loop, fd is a symlink out of the root.
    f.pid(101, h.pid, &[], b"fd-file");
    std::fs::remove_dir(f.path.join("101/fd")).unwrap();
    f.file("101/fd", b"not a directory");
    f.pid(102, h.pid, &[], b"fd-loop");
    std::fs::remove_dir(f.path.join("102/fd")).unwrap();
    f.link("102/fd", "fd");
    f.pid(103, h.pid, &[], b"fd-escape");
    std::fs::remove_dir(f.path.join("103/fd")).unwrap();
    f.link("103/fd", format!("/proc/{}/fd", h.pid));
    // A pid entry that is a symlink (out of the root): never followed.
    f.link("104", format!("/proc/{}", h.pid));
    // Names that are not pids.
    f.dir("0");
    f.dir("007");
    f.dir("2147483648");
    f.dir("99999999999999999999");
    f.dir("12abc");
    f.dir("self");
    // A stat with no ')': its sockets can't be named, so it is skipped.
    f.pid(105, h.pid, &[(4, sock)], b"x");
    f.file("105/stat", b"105 (no close paren S 1 2 3");
    // An fd link to nothing.
    f.pid(106, h.pid, &[(5, sock)], b"dangling");
    f.link("106/fd/9", "/nonexistent/socket");
    let w = root_of(&f);
    let (r, recs, _, stats) = walk(&w);
    assert_eq!(r, Ok(()));
    let inode = h.socks[0].inode;
    let recs: Vec<_> = recs.into_iter().map(|r| (r.pid, r.fd, r.inode, r.name)).collect();
    assert_eq!(recs, vec![(100, 3, inode, b"good".to_vec()), (106, 5, inode, b"dangling".to_vec())],);
    assert_eq!(stats.processes, 6, "pids 100-103, 105, 106 and nothing else: {stats:?}");
    // 101, 102, 103 (fd not a plain directory), 105 (stat), 106's fd 9.
    assert_eq!(stats.skipped, 5, "{stats:?}");
}

#[test]
fn huge_names_and_tables() {
    let h = Holder::start(false, None);
    let f = FakeRoot::new("huge");
    let name = vec![b'n'; 1 << 20];
    f.pid(200, h.pid, &[(3, h.socks[0].fd)], b"");
    f.file("200/stat", &stat_line(200, &name, 7));
    let garbage: Vec<u8> = (0..(6u32 << 20)).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    f.file("200/net/tcp", &garbage);
    f.file("200/net/tcp6", b"");
    f.file("200/net/udp", &garbage[..1 << 20]);
    let w = root_of(&f);
    let (r, recs, text, stats) = walk(&w);
    assert_eq!(r, Ok(()));
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].name, name, "a 1 MiB name comes back whole");
    assert_eq!(text, garbage, "tables are copied as they are");
    assert_eq!(stats.bytes_needed, garbage.len() as u64);
    let mut n = 0;
    // The text tables are what is under test: netlink would list the real namespace.
    w.set_source(procspy::engine::Source::Text);
    let r = w.connections(None, Protocols::BOTH, StateMask::ALL, &mut stats.clone(), &mut |_| {
        n += 1;
        ControlFlow::Continue(())
    });
    assert_eq!(r, Ok(()));
    assert_eq!(n, 0, "garbage holds no connection");
}

#[test]
fn net_dev_fallback_and_missing_tcp6() {
    let h = Holder::start(true, None);
    let f = FakeRoot::new("netdev");
    // Before 3.8: no ns/, and net/dev is the namespace's witness.
    f.pid(300, h.pid, &[(3, h.socks[0].fd)], b"old");
    std::fs::remove_dir_all(f.path.join("300/ns")).unwrap();
    f.file("300/net/dev", b"Inter-|   Receive\n");
    f.file("300/net/tcp", b"tcp table\n");
    let w = root_of(&f);
    let (r, recs, text, stats) = walk(&w);
    assert_eq!(r, Ok(()));
    let dev = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(f.path.join("300/net/dev")).unwrap());
    assert_eq!(w.netns_of(300), Ok(dev));
    assert_eq!(recs.len(), 1);
    assert_eq!(text, b"tcp table\n", "no tcp6 here, and that is no error");
    assert_eq!(stats.skipped, 0);
}

#[test]
fn files_are_never_read_through_a_symlink_out_of_the_root() {
    let h = Holder::start(false, None);
    let f = FakeRoot::new("escape");
    let outside = FakeRoot::new("outside");
    outside.file("net/tcp", b"outside table\n");
    outside.file("stat", &stat_line(1, b"outside", 1));
    // The tables and the stat of pid 400 lead out of the root.
    f.pid(400, h.pid, &[(3, h.socks[0].fd)], b"x");
    std::fs::remove_dir_all(f.path.join("400/net")).unwrap();
    f.link("400/net", outside.path.join("net"));
    std::fs::remove_file(f.path.join("400/stat")).unwrap();
    f.link("400/stat", outside.path.join("stat"));
    // Pid 401's tables are a symlink inside the root: followed.
    f.pid(401, h.pid, &[], b"y");
    f.file("shared/tcp", b"inside table\n");
    std::fs::remove_dir_all(f.path.join("401/net")).unwrap();
    f.link("401/net", "../shared");
    let (r, recs, text, stats) = walk(&root_of(&f));
    assert_eq!(r, Ok(()));
    assert!(recs.is_empty(), "pid 400's name can't be read: {recs:?}");
    assert_eq!(text, b"inside table\n", "the tables of the next pid, from inside the root");
    assert_eq!(stats.skipped, 1, "{stats:?}");
}

#[test]
fn a_table_that_cannot_be_read_costs_only_its_own_lines() {
    let f = FakeRoot::new("udp-unreadable");
    f.pid(500, std::process::id() as i32, &[], b"z");
    let line = b"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0 100 0 0 10 0\n";
    f.file("500/net/tcp", &[&b"  sl  local_address rem_address   st\n"[..], line].concat());
    // UDP's table is a directory: reading it fails, TCP's is still read.
    f.dir("500/net/udp");
    let w = root_of(&f);
    w.set_source(procspy::engine::Source::Text);
    let mut stats = Stats::default();
    let mut got = Vec::new();
    let r = w.connections(None, Protocols::BOTH, StateMask::ALL, &mut stats, &mut |c| {
        got.push((c.conn.inode, c.conn.local_port, c.protocol));
        ControlFlow::Continue(())
    });
    assert_eq!(r, Ok(()));
    assert_eq!(got, [(31337, 8080, Protocol::Tcp)], "{stats:?}");
    assert_eq!(stats.tables_unreadable, 1, "{stats:?}");
}
