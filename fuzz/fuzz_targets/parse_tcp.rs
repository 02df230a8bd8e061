//! Fuzzes the /proc/net/{tcp,udp}{,6} table parser and checks its invariants.
#![no_main]

use std::ops::ControlFlow;

use libfuzzer_sys::fuzz_target;
use procspy::parse::tcp::{Conn, Dedup, Parsed, parse_table};

/// Parses `text`, returning the counts and every line, and which of them
/// were new to `dedup` as `protocol`'s.
fn run(text: &[u8], protocol: u8, dedup: &mut Dedup) -> (Parsed, Vec<Conn>, usize) {
    let (mut seen, mut fresh) = (Vec::new(), 0);
    let r = parse_table(text, |c| {
        seen.push(*c);
        fresh += usize::from(dedup.insert(protocol, c));
        ControlFlow::Continue(())
    });
    // The callback never breaks, so the parse must run to the end.
    (r.expect("Err without a Break"), seen, fresh)
}

fuzz_target!(|data: &[u8]| {
    // Byte 0: protocol; the rest: table text.
    let Some((&protocol, text)) = data.split_first() else { return };
    // Upper bound on lines: every '\n' ends one, plus a possible unterminated tail.
    let lines = text.iter().filter(|&&b| b == b'\n').count() as u64 + 1;

    let mut dedup = Dedup::new();
    let (p, conns, fresh) = run(text, protocol, &mut dedup);
    assert!(p.lines + p.malformed <= lines, "{p:?} > {lines} lines");
    assert_eq!(conns.len() as u64, p.lines, "callback calls != lines");
    assert!(fresh <= conns.len());
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

    // Deterministic: a fresh Dedup gives the same counts, lines and news.
    assert_eq!(run(text, protocol, &mut Dedup::new()), (p, conns.clone(), fresh));

    // Everything was recorded in `dedup` the first time, so a repeat is all seen.
    let (again, _, fresh_again) = run(text, protocol, &mut dedup);
    assert_eq!((again, fresh_again), (p, 0));
});
