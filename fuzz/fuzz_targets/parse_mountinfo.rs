//! Fuzzes the mountinfo and namespace-link parsers: no panics, every mount
//! point found is absolute, NUL-free and at most PATH_MAX bytes, and a
//! namespace link is read back only from its exact text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use procspy::parse::mountinfo::{ns_link, nsfs_mounts};

fuzz_target!(|data: &[u8]| {
    let mut path = Vec::new();
    let mut found = 0u64;
    let lines = data.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count() as u64;
    let malformed = nsfs_mounts(data, &mut path, |inode, point| {
        assert_ne!(inode, 0);
        assert!(point.first() == Some(&b'/') && !point.contains(&0) && point.len() <= 4096, "{point:?}");
        found += 1;
    });
    assert!(found + malformed <= lines);
    if let Some(inode) = ns_link(data, b"net") {
        assert_eq!(data, format!("net:[{inode}]").as_bytes());
    }
});
