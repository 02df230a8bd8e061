//! What procfs writes beyond the tables: directory records as `getdents64`
//! returns them, `uid_map`, the `NSpid` line of `status`, and the names of
//! pid and fd entries.

use std::ffi::CStr;

use super::num::dec_name;

/// One `struct linux_dirent64`: ino u64, off i64, reclen u16, type u8, name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dirent<'a> {
    pub name: &'a CStr,
    pub d_type: u8,
}

/// The record at the start of `buf` and its length; `None` where it is cut
/// short or its name has no NUL within it (a kernel fault, never a
/// listing's end).
pub fn dirent(buf: &[u8]) -> Option<(Dirent<'_>, usize)> {
    let reclen = usize::from(u16::from_ne_bytes(buf.get(16..18)?.try_into().ok()?));
    if reclen < 20 || reclen > buf.len() {
        return None;
    }
    let name = CStr::from_bytes_until_nul(&buf[19..reclen]).ok()?;
    Some((Dirent { name, d_type: buf[18] }, reclen))
}

/// A pid, as a directory of a proc root names it: a decimal in `1..=i32::MAX`.
pub fn pid_name(name: &[u8]) -> Option<i32> {
    dec_name(name).filter(|&pid| pid > 0)
}

/// Whether a `uid_map` maps every uid to itself, as the initial user
/// namespace's does (`0 0 4294967295`).
pub fn uid_map_is_identity(text: &[u8]) -> bool {
    words(text).eq([&b"0"[..], b"0", b"4294967295"])
}

/// How many pid namespaces deep a `status` file's process is: the numbers
/// of its `NSpid` line (1 in the initial pid namespace).
pub fn nspid_depth(status: &[u8]) -> Option<usize> {
    let at = memchr::memmem::find(status, b"\nNSpid:")? + 7;
    let line = status[at..].split(|&b| b == b'\n').next().unwrap_or_default();
    Some(words(line).count())
}

fn words(b: &[u8]) -> impl Iterator<Item = &[u8]> {
    b.split(u8::is_ascii_whitespace).filter(|w| !w.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &[u8], d_type: u8, reclen: u16) -> Vec<u8> {
        let mut b = vec![0u8; 19];
        b[16..18].copy_from_slice(&reclen.to_ne_bytes());
        b[18] = d_type;
        b.extend_from_slice(name);
        b.resize(usize::from(reclen).max(b.len()), 0);
        b
    }

    #[test]
    fn dirents() {
        let b = record(b"42", 4, 24);
        let (d, len) = dirent(&b).unwrap();
        assert_eq!((d.name, d.d_type, len), (c"42", 4, 24));
        assert_eq!(dirent(&b[..23]), None, "cut short");
        assert_eq!(dirent(&record(b"42", 4, 19)), None, "shorter than a header and a NUL");
        let mut no_nul = record(b"4242", 4, 24);
        no_nul[19..24].fill(b'x');
        assert_eq!(dirent(&no_nul), None);
        assert_eq!(dirent(&[]), None);
    }

    #[test]
    fn pid_names() {
        assert_eq!(pid_name(b"1"), Some(1));
        assert_eq!(pid_name(b"0"), None);
        assert_eq!(pid_name(b"01"), None);
        assert_eq!(pid_name(b"2147483648"), None);
    }

    #[test]
    fn uid_maps() {
        assert!(uid_map_is_identity(b"         0          0 4294967295\n"));
        assert!(!uid_map_is_identity(b"         0       1000          1\n"));
        assert!(!uid_map_is_identity(b"0 0 4294967295\n1 1 1\n"));
        assert!(!uid_map_is_identity(b""));
    }

    #[test]
    fn nspid_depths() {
        assert_eq!(nspid_depth(b"Name:\tx\nNSpid:\t42\nNSpgid:\t42\n"), Some(1));
        assert_eq!(nspid_depth(b"Name:\tx\nNSpid:\t42\t7\t1\n"), Some(3));
        assert_eq!(nspid_depth(b"Name:\tx\nPid:\t42\n"), None);
    }
}
