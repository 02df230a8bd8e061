//! The shape of the C ABI: every entry point guarded, every public struct
//! laid out as the header declares it (offsets checked here and in c-tests/test_layout.c).

use std::mem::{offset_of, size_of};

use procspy_ffi::*;

/// Entry points that may skip the guard, and why.
const UNGUARDED: &[(&str, &str)] = &[
    ("procspy_walker_stop", "async-signal-safe: no catch_unwind, no thread-local"),
    ("procspy_stop_token_stop", "async-signal-safe: no catch_unwind, no thread-local"),
];

#[test]
fn every_entry_point_runs_inside_the_guard() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let src = std::fs::read_to_string(&path).unwrap();
        for (at, _) in src.match_indices("extern \"C\" fn ") {
            let rest = &src[at + "extern \"C\" fn ".len()..];
            let name = &rest[..rest.find('(').unwrap()];
            // The body: from the first `{` after the signature to the next `\n}`.
            let body = &rest[rest.find("{\n").unwrap()..];
            let body = &body[..body.find("\n}").unwrap_or(body.len())];
            found.push(name.to_string());
            if UNGUARDED.iter().any(|(n, _)| *n == name) {
                continue;
            }
            assert!(name.starts_with("procspy_"), "{name} in {path:?} is not procspy_*");
            let guarded = body.contains(&format!("guard(\"{name}\"")) || body.contains("guard_value(");
            assert!(guarded, "{name} in {path:?} does not run inside guard()");
        }
    }
    // Every exported symbol was looked at: the list the ABI check uses.
    found.sort();
    let symbols = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../c-tests/abi/symbols.txt")).unwrap();
    assert_eq!(found, symbols.lines().collect::<Vec<_>>(), "entry points found");
}

/// The offsets of a struct's fields, in the order named.
macro_rules! offsets {
    ($t:ty: $($field:ident),+) => {
        [$(offset_of!($t, $field)),+]
    };
}

#[test]
fn public_structs_have_the_documented_layout() {
    assert_eq!(size_of::<procspy_socket>(), 48);
    assert_eq!(offsets!(procspy_socket: inode, netns, start_time, pid, fd, name, name_len), [0, 8, 16, 24, 28, 32, 40]);
    assert_eq!(size_of::<procspy_connection>(), 72);
    assert_eq!(
        offsets!(procspy_connection: inode, netns, protocol, family, state, local_addr, remote_addr,
            local_port, remote_port, uid, owner),
        [0, 8, 16, 17, 18, 19, 35, 52, 54, 56, 64]
    );
    assert_eq!(size_of::<procspy_change>(), 24);
    assert_eq!(offsets!(procspy_change: kind, old_state, connection, old_owner), [0, 4, 8, 16]);
    assert_eq!(size_of::<procspy_walk_stats>(), 72);
    assert_eq!(offset_of!(procspy_walk_stats, elapsed_ns), 64);
    assert_eq!(size_of::<procspy_walk_stats_ext>(), 112);
    assert_eq!(
        offsets!(procspy_walk_stats_ext: accounted, dropped, netns_mismatch, snapshot_bytes, closed_lost, netns_found,
            netns_unreachable, netns_unreachable_fds, closes_stalled, files_truncated, tables_unreadable, events,
            events_lost, events_dropped),
        [0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104]
    );
    assert_eq!(size_of::<procspy_event>(), 40);
    assert_eq!(offsets!(procspy_event: kind, old_state, connection, time_ns, cookie, lost), [0, 4, 8, 16, 24, 32]);
    assert_eq!(size_of::<procspy_status>(), 4);
}

#[test]
fn status_names_cover_every_value() {
    let name = |s: i32| unsafe { std::ffi::CStr::from_ptr(procspy_status_str(s)) }.to_str().unwrap().to_owned();
    for (i, s) in [
        "PROCSPY_OK",
        "PROCSPY_STOPPED",
        "PROCSPY_CALLBACK_ABORTED",
        "PROCSPY_BUFFER_TOO_SMALL",
        "PROCSPY_NULL_ARGUMENT",
        "PROCSPY_INVALID_ARGUMENT",
        "PROCSPY_IO",
        "PROCSPY_BUSY",
        "PROCSPY_PANIC",
        "PROCSPY_UNSUPPORTED",
    ]
    .iter()
    .enumerate()
    {
        assert!(name(i as i32).starts_with(s), "{i}");
    }
    for unknown in [-1, 10, 1000, i32::MIN, i32::MAX] {
        assert_eq!(name(unknown), "unknown procspy_status");
    }
    let version = unsafe { std::ffi::CStr::from_ptr(procspy_version()) };
    assert_eq!(version.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}
