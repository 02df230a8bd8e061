//! Facts about live processes, read from the real /proc by the tests
//! themselves, apart from the library they judge.

use std::os::unix::fs::MetadataExt;

/// Field 22 of a stat file: start time in clock ticks after boot. Counted
/// from the last ')', since the name between the parentheses may hold any.
pub fn parse_start_time(stat: &[u8]) -> Option<u64> {
    let close = stat.iter().rposition(|&c| c == b')')?;
    let tail = std::str::from_utf8(stat.get(close + 2..)?).ok()?;
    tail.split(' ').nth(19)?.parse().ok()
}

/// A live process's start time.
pub fn start_time(pid: i32) -> u64 {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).unwrap();
    parse_start_time(&stat).unwrap_or_else(|| panic!("no start time in /proc/{pid}/stat: {stat:?}"))
}

/// The inode of a live process's network namespace.
pub fn netns_of(pid: impl std::fmt::Display) -> u64 {
    std::fs::metadata(format!("/proc/{pid}/ns/net")).unwrap().ino()
}

/// The inode of the socket a live process holds as `fd`.
pub fn socket_inode(pid: i32, fd: i64) -> u64 {
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
    let link = link.to_str().unwrap();
    link.strip_prefix("socket:[").and_then(|l| l.strip_suffix(']')).unwrap().parse().unwrap()
}
