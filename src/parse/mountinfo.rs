//! Namespace names as the kernel writes them: the target of a namespace
//! link (`PID/ns/mnt`, a `PID/fd/N` that holds a namespace open: `net:[4026531840]`)
//! and the nsfs entries of `PID/mountinfo` (`proc(5)`), where a bind-mounted
//! namespace file (`ip netns add`'s `/run/netns/NAME`) shows its namespace
//! as the mount's root: `… net:[4026532281] /run/netns/blue rw … - nsfs nsfs rw`.
//! Both are hostile text in a caller-supplied tree: every field is checked,
//! nothing is read outside the input.

use super::num::dec;

/// The inode of a namespace link's target `KIND:[INODE]` (`kind` is
/// `b"net"`, `b"mnt"`…); `None` for anything else (`socket:[…]`, a path).
pub fn ns_link(text: &[u8], kind: &[u8]) -> Option<u64> {
    let digits = text.strip_prefix(kind)?.strip_prefix(b":[")?.strip_suffix(b"]")?;
    // The kernel writes no leading zero (and no inode 0).
    if digits.first() == Some(&b'0') {
        return None;
    }
    dec(digits)
}

/// Longest mount point kept (the kernel's `PATH_MAX`).
const PATH_MAX: usize = libc::PATH_MAX as usize;

/// Calls `each(inode, mount_point)` for every mount of a network namespace
/// file (fstype `nsfs`, root `net:[INODE]`) in `text`, a `mountinfo`, with
/// the mount point's octal escapes (`\040` for a space, `\134` for a
/// backslash, as the kernel writes them) undone into `path`. Malformed
/// lines and mount points longer than `PATH_MAX` are passed over; returns
/// how many were.
pub fn nsfs_mounts(text: &[u8], path: &mut Vec<u8>, mut each: impl FnMut(u64, &[u8])) -> u64 {
    let mut malformed = 0;
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        match net_mount(line, path) {
            Some(Some(inode)) => each(inode, path),
            Some(None) => {}
            None => malformed += 1,
        }
    }
    malformed
}

/// One line: `Some(Some(inode))` with the mount point in `path` for a
/// network namespace's nsfs mount, `Some(None)` for any other well-formed
/// mount, `None` if malformed.
fn net_mount(line: &[u8], path: &mut Vec<u8>) -> Option<Option<u64>> {
    let mut fields = line.split(|&b| b == b' ');
    // mount id, parent id, major:minor, root, mount point, options, then
    // optional fields up to a lone "-", then fstype, source, super options.
    let (_id, _parent, _dev) = (fields.next()?, fields.next()?, fields.next()?);
    let root = fields.next()?;
    let mount_point = fields.next()?;
    let _options = fields.next()?;
    fields.by_ref().find(|f| *f == b"-")?;
    let fstype = fields.next()?;
    if fstype != b"nsfs" {
        return Some(None);
    }
    let inode = ns_link(root, b"net");
    if inode.is_some() {
        unescape(mount_point, path)?;
    }
    Some(inode)
}

/// Undoes the kernel's `\ooo` escapes of ` `, `\t`, `\n` and `\\` into
/// `out`; `None` for a bad escape, a NUL, or a result longer than
/// `PATH_MAX` or not absolute.
fn unescape(field: &[u8], out: &mut Vec<u8>) -> Option<()> {
    out.clear();
    let mut i = 0;
    while i < field.len() {
        let b = match field[i] {
            b'\\' => {
                let oct = field.get(i + 1..i + 4)?;
                let v = oct
                    .iter()
                    .try_fold(0u16, |v, &c| (b'0'..=b'7').contains(&c).then(|| v * 8 + u16::from(c - b'0')))?;
                i += 4;
                u8::try_from(v).ok()?
            }
            b => {
                i += 1;
                b
            }
        };
        if b == 0 || out.len() == PATH_MAX {
            return None;
        }
        out.push(b);
    }
    (out.first() == Some(&b'/')).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links() {
        assert_eq!(ns_link(b"net:[4026531840]", b"net"), Some(4026531840));
        assert_eq!(ns_link(b"mnt:[4026531841]", b"mnt"), Some(4026531841));
        assert_eq!(ns_link(b"mnt:[4026531841]", b"net"), None);
        assert_eq!(ns_link(b"socket:[123]", b"net"), None);
        assert_eq!(ns_link(b"net:[]", b"net"), None);
        assert_eq!(ns_link(b"net:[0]", b"net"), None);
        assert_eq!(ns_link(b"net:[012]", b"net"), None);
        assert_eq!(ns_link(b"net:[12", b"net"), None);
        assert_eq!(ns_link(b"net:[1]x", b"net"), None);
        assert_eq!(ns_link(b"net:[99999999999999999999999]", b"net"), None);
    }

    #[test]
    fn finds_network_namespace_mounts() {
        let text = b"22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
            540 25 0:4 net:[4026532281] /run/netns/blue rw shared:5 - nsfs nsfs rw\n\
            541 25 0:4 mnt:[4026532282] /run/mnt rw - nsfs nsfs rw\n\
            542 25 0:4 net:[4026532283] /run/a\\040b\\134c rw master:1 shared:2 - nsfs nsfs rw\n\
            garbage\n\
            543 25 0:4 net:[4026532284] relative rw - nsfs nsfs rw\n\
            544 25 0:4 net:[4026532285] /x\\08 rw - nsfs nsfs rw\n\
            545 25 0:4 net:[4026532286] /y rw no-separator nsfs nsfs rw";
        let mut found = Vec::new();
        let bad = nsfs_mounts(text, &mut Vec::new(), |ino, p| found.push((ino, p.to_vec())));
        assert_eq!(found, [(4026532281, b"/run/netns/blue".to_vec()), (4026532283, b"/run/a b\\c".to_vec())]);
        assert_eq!(bad, 4);
    }

    #[test]
    fn long_and_nul_paths_are_refused() {
        let mut path = Vec::new();
        let long = format!("1 1 0:4 net:[5] /{} rw - nsfs nsfs rw", "a".repeat(PATH_MAX));
        assert_eq!(nsfs_mounts(long.as_bytes(), &mut path, |_, _| panic!("too long")), 1);
        assert_eq!(nsfs_mounts(b"1 1 0:4 net:[5] /a\\000 rw - nsfs nsfs rw", &mut path, |_, _| panic!("NUL")), 1);
        let just = format!("1 1 0:4 net:[5] /{} rw - nsfs nsfs rw", "a".repeat(PATH_MAX - 1));
        let mut n = 0;
        nsfs_mounts(just.as_bytes(), &mut path, |_, p| n += p.len());
        assert_eq!(n, PATH_MAX);
    }
}
