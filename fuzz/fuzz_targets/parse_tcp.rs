//! Fuzzes the /proc/net/{tcp,udp}{,6} table parser and checks its invariants.
#![no_main]

use std::ops::ControlFlow;

use libfuzzer_sys::fuzz_target;
use procspy::parse::tcp::{Conn, Dedup, Parsed, parse_table};

/// Parses `text` into `dedup`, returning the counts and every delivered Conn.
fn run(text: &[u8], protocol: u8, mask: u32, dedup: &mut Dedup) -> (Parsed, Vec<Conn>) {
    let mut seen = Vec::new();
    let r = parse_table(text, protocol, mask, dedup, |c| {
        seen.push(*c);
        ControlFlow::Continue(())
    });
    // The callback never breaks, so the parse must run to the end.
    (r.expect("Err without a Break"), seen)
}

fuzz_target!(|data: &[u8]| {
    // Byte 0: protocol; bytes 1..5: state mask; the rest: table text.
    let Some((&protocol, rest)) = data.split_first() else { return };
    let Some((mask, text)) = rest.split_first_chunk::<4>() else { return };
    let mask = u32::from_le_bytes(*mask);
    // Upper bound on lines: every '\n' ends one, plus a possible unterminated tail.
    let lines = text.iter().filter(|&&b| b == b'\n').count() as u64 + 1;

    let mut dedup = Dedup::new();
    let (p, conns) = run(text, protocol, mask, &mut dedup);
    assert!(p.delivered + p.duplicates + p.malformed <= lines, "{p:?} > {lines} lines");
    assert_eq!(conns.len() as u64, p.delivered, "callback calls != delivered");
    assert!(conns.len() as u64 <= lines);
    for c in &conns {
        match c.family {
            4 => assert!(
                c.local_addr[4..] == [0; 12] && c.remote_addr[4..] == [0; 12],
                "v4 address with nonzero tail: {c:?}"
            ),
            6 => {}
            f => panic!("family {f}: {c:?}"),
        }
    }

    // Deterministic: a fresh Dedup gives the same counts and the same Conns.
    assert_eq!(run(text, protocol, mask, &mut Dedup::new()), (p, conns.clone()));

    // Everything was recorded in `dedup` the first time, so a repeat delivers nothing.
    let (again, none) = run(text, protocol, mask, &mut dedup);
    assert_eq!(again.delivered, 0, "repeat delivered {none:?}");
    assert_eq!(again.malformed, p.malformed);
});
