//! Fuzzes the mountinfo and namespace-link parsers: no panics, every mount
//! point found is absolute, NUL-free and at most PATH_MAX bytes and lies
//! below itself, and a namespace link is read back only from its exact text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use procspy::parse::mountinfo::{Mount, is_below, mounts, ns_link};

fuzz_target!(|data: &[u8]| {
    let mut path = Vec::new();
    let mut found = 0u64;
    let lines = data.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count() as u64;
    let malformed = mounts(data, &mut path, |m| {
        let point = match m {
            Mount::Netns(inode, point) => {
                assert_ne!(inode, 0);
                point
            }
            Mount::Fuse(point) => point,
        };
        assert!(point.first() == Some(&b'/') && !point.contains(&0) && point.len() <= 4096, "{point:?}");
        assert!(is_below(point, point) && is_below(point, b"/"));
        found += 1;
    });
    assert!(found + malformed <= lines);
    if let Some(inode) = ns_link(data, b"net") {
        assert_eq!(data, format!("net:[{inode}]").as_bytes());
    }
});
