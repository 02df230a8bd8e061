//! Namespace names as the kernel writes them: the target of a namespace
//! link (`PID/ns/mnt`, a `PID/fd/N` that holds a namespace open: `net:[4026531840]`)
//! and the nsfs entries of `PID/mountinfo` (`proc(5)`), where a bind-mounted
//! namespace file (`ip netns add`'s `/run/netns/NAME`) shows its namespace
//! as the mount's root: `… net:[4026532281] /run/netns/blue rw … - nsfs nsfs rw`;
//! and the FUSE mounts a walk to such a mount point may pass.
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

/// A mount the namespace search looks at, from one `mountinfo` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mount<'p> {
    /// A network namespace file's mount (fstype `nsfs`, root
    /// `net:[INODE]`): the namespace's inode and the mount point.
    Netns(u64, &'p [u8]),
    /// A FUSE mount (fstype `fuse`, `fuseblk` or `fuse.SUBTYPE`): a lookup
    /// below its mount point may wait for its server.
    Fuse(&'p [u8]),
}

/// Calls `each` for every mount of `text`, a `mountinfo`, that `Mount`
/// names, with the mount point's octal escapes (`\040` for a space, `\134`
/// for a backslash, as the kernel writes them) undone into `path`.
/// Malformed lines and mount points longer than `PATH_MAX` are passed
/// over; returns how many were.
pub fn mounts(text: &[u8], path: &mut Vec<u8>, mut each: impl FnMut(Mount<'_>)) -> u64 {
    let mut malformed = 0;
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        match mount(line, path) {
            Some(Some(Kind::Netns(inode))) => each(Mount::Netns(inode, path)),
            Some(Some(Kind::Fuse)) => each(Mount::Fuse(path)),
            Some(None) => {}
            None => malformed += 1,
        }
    }
    malformed
}

/// Whether `path` is `mount_point` or below it, component by component.
pub fn is_below(path: &[u8], mount_point: &[u8]) -> bool {
    match path.strip_prefix(mount_point) {
        Some(rest) => rest.is_empty() || rest[0] == b'/' || mount_point.ends_with(b"/"),
        None => false,
    }
}

/// What a line's mount is, of those `Mount` names.
enum Kind {
    Netns(u64),
    Fuse,
}

/// One line: `Some(Some(kind))` with the mount point in `path` for a mount
/// `Mount` names, `Some(None)` for any other well-formed mount, `None` if
/// malformed.
fn mount(line: &[u8], path: &mut Vec<u8>) -> Option<Option<Kind>> {
    let mut fields = line.split(|&b| b == b' ');
    // mount id, parent id, major:minor, root, mount point, options, then
    // optional fields up to a lone "-", then fstype, source, super options.
    let (_id, _parent, _dev) = (fields.next()?, fields.next()?, fields.next()?);
    let root = fields.next()?;
    let mount_point = fields.next()?;
    let _options = fields.next()?;
    fields.by_ref().find(|f| *f == b"-")?;
    let fstype = fields.next()?;
    let kind = match fstype {
        b"nsfs" => match ns_link(root, b"net") {
            Some(inode) => Kind::Netns(inode),
            None => return Some(None),
        },
        b"fuse" | b"fuseblk" => Kind::Fuse,
        t if t.starts_with(b"fuse.") => Kind::Fuse,
        _ => return Some(None),
    };
    unescape(mount_point, path)?;
    Some(Some(kind))
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
        let bad = mounts(text, &mut Vec::new(), |m| {
            if let Mount::Netns(ino, p) = m {
                found.push((ino, p.to_vec()));
            }
        });
        assert_eq!(found, [(4026532281, b"/run/netns/blue".to_vec()), (4026532283, b"/run/a b\\c".to_vec())]);
        assert_eq!(bad, 4);
    }

    #[test]
    fn finds_fuse_mounts_and_what_is_below_them() {
        let text = b"30 1 0:50 / /home/u/sshfs rw - fuse.sshfs u@h: rw,user_id=1000\n\
            31 1 0:51 / /mnt/f rw - fuse procspy-fuse rw\n\
            32 1 0:52 / /mnt/b rw - fuseblk /dev/sdb1 rw\n\
            33 1 0:53 / /mnt/o rw - fusectl fusectl rw\n\
            34 1 0:54 / /mnt/fusex rw - fusex x rw\n";
        let mut fuse = Vec::new();
        mounts(text, &mut Vec::new(), |m| match m {
            Mount::Fuse(p) => fuse.push(p.to_vec()),
            Mount::Netns(..) => panic!("no nsfs mount"),
        });
        assert_eq!(fuse, [b"/home/u/sshfs".to_vec(), b"/mnt/f".to_vec(), b"/mnt/b".to_vec()]);
        assert!(is_below(b"/mnt/f/x/ns", b"/mnt/f") && is_below(b"/mnt/f", b"/mnt/f"));
        assert!(is_below(b"/run/netns/a", b"/"));
        assert!(!is_below(b"/mnt/fx/ns", b"/mnt/f") && !is_below(b"/mnt", b"/mnt/f"));
    }

    #[test]
    fn long_and_nul_paths_are_refused() {
        let mut path = Vec::new();
        let long = format!("1 1 0:4 net:[5] /{} rw - nsfs nsfs rw", "a".repeat(PATH_MAX));
        assert_eq!(mounts(long.as_bytes(), &mut path, |_| panic!("too long")), 1);
        assert_eq!(mounts(b"1 1 0:4 net:[5] /a\\000 rw - nsfs nsfs rw", &mut path, |_| panic!("NUL")), 1);
        let just = format!("1 1 0:4 net:[5] /{} rw - nsfs nsfs rw", "a".repeat(PATH_MAX - 1));
        let mut n = 0;
        mounts(just.as_bytes(), &mut path, |m| {
            if let Mount::Netns(_, p) = m {
                n += p.len();
            }
        });
        assert_eq!(n, PATH_MAX);
    }
}
