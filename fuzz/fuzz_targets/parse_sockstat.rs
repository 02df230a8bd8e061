//! Fuzzes the sockstat reader (input: sockstat, a NUL, sockstat6): no
//! panics, and counts it accepts survive a round trip through the kernel's
//! line format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use procspy::parse::sockstat::parse_sockstat;

fuzz_target!(|data: &[u8]| {
    let cut = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (v4, v6) = (&data[..cut], data.get(cut + 1..).unwrap_or_default());
    let Some(c) = parse_sockstat(v4, v6) else { return };
    let v4 = format!("TCP: inuse {} orphan 0 tw {} alloc 0 mem 0\nUDP: inuse {} mem 0\n", c.tcp4, c.time_wait, c.udp4);
    let v6 = format!("TCP6: inuse {}\nUDP6: inuse {}\n", c.tcp6, c.udp6);
    assert_eq!(parse_sockstat(v4.as_bytes(), v6.as_bytes()), Some(c));
});
