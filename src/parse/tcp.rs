//! Parser for the Linux `/proc/net/{tcp,tcp6,udp,udp6}` socket tables.
//!
//! The caller does the reading; this module only turns the text into [`Conn`]
//! records, and [`Dedup`] tells a socket read twice (or by two sources) from
//! a new one; which readings share one, and the state mask, are the
//! engine's to decide. The input is
//! treated as untrusted (a racing read can truncate it, a caller can hand us
//! anything), so all access is checked, nothing panics, and no line allocates.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::ControlFlow;

use memchr::memchr;

use super::kernel::{Family, TcpState};
use super::num::{dec, hex_exact, is_dec, is_hex};

/// One line of a kernel socket table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conn {
    /// Socket inode; 0 for sockets without one (TIME_WAIT, request sockets).
    pub inode: u64,
    /// 4 or 6, by address width (8 vs 32 hex digits); v4-mapped in tcp6 stays 6.
    pub family: u8,
    /// Kernel state number (hex "st" column), e.g. 0x0A LISTEN, 0x01
    /// ESTABLISHED, 0x07 CLOSE; kept as the kernel wrote it, which may be
    /// no state it defines ([`Conn::tcp_state`]).
    pub state: u8,
    /// Network byte order; IPv4 in the first 4 bytes, rest zero.
    pub local_addr: [u8; 16],
    /// Network byte order; IPv4 in the first 4 bytes, rest zero.
    pub remote_addr: [u8; 16],
    /// Host order.
    pub local_port: u16,
    /// Host order.
    pub remote_port: u16,
    pub uid: u32,
}

impl Conn {
    /// Every field zero, family 0 (no address): the line a lost event
    /// carries, and the one tests start from.
    pub(crate) const ZERO: Conn = Conn {
        inode: 0,
        family: 0,
        state: 0,
        local_addr: [0; 16],
        remote_addr: [0; 16],
        local_port: 0,
        remote_port: 0,
        uid: 0,
    };

    /// The state `state` numbers; `None` for a number the kernel does not
    /// define (0, 13 and above).
    pub fn tcp_state(&self) -> Option<TcpState> {
        TcpState::from_u8(self.state)
    }

    /// The local address and port (IPv4 for family 4; v4-mapped stays IPv6).
    pub fn local(&self) -> SocketAddr {
        SocketAddr::new(ip(self.family, &self.local_addr), self.local_port)
    }

    /// The remote address and port (`0.0.0.0:0` or `[::]:0` for a listener).
    pub fn remote(&self) -> SocketAddr {
        SocketAddr::new(ip(self.family, &self.remote_addr), self.remote_port)
    }
}

#[cfg(test)]
impl Conn {
    /// A line of family 4 with every other field zero: tests name what differs.
    pub(crate) const V4: Conn = Conn { family: 4, ..Conn::ZERO };
}

fn ip(family: u8, addr: &[u8; 16]) -> IpAddr {
    if family == Family::Inet.version() {
        IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*addr))
    }
}

/// Key for sockets without an inode. It is the full tuple plus state, so two
/// distinct inode-less sockets are never merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct TupleKey {
    protocol: u8,
    family: u8,
    state: u8,
    local_addr: [u8; 16],
    local_port: u16,
    remote_addr: [u8; 16],
    remote_port: u16,
}

/// De-duplication state: lines with an inode are de-duplicated by inode (first reading wins);
/// inode-0 lines by (protocol, family, local addr+port, remote addr+port, state), so distinct ones are never merged.
#[derive(Debug, Default)]
pub struct Dedup {
    inodes: HashSet<u64>,
    tuples: HashSet<TupleKey>,
}

impl Dedup {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets everything seen; keeps capacity so steady-state scans don't reallocate.
    pub fn clear(&mut self) {
        self.inodes.clear();
        self.tuples.clear();
    }

    /// Records `c` of `protocol` (`Protocol::number`); false if it was
    /// already seen.
    pub fn insert(&mut self, protocol: u8, c: &Conn) -> bool {
        if c.inode != 0 {
            return self.inodes.insert(c.inode);
        }
        self.tuples.insert(TupleKey {
            protocol,
            family: c.family,
            state: c.state,
            local_addr: c.local_addr,
            local_port: c.local_port,
            remote_addr: c.remote_addr,
            remote_port: c.remote_port,
        })
    }
}

/// What one parse call saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Lines handed to `f` (including one that answered `Break`).
    pub lines: u64,
    /// Non-blank, non-header lines that did not parse.
    pub malformed: u64,
}

/// Parses table text (one file, or several concatenated, headers anywhere),
/// calling `f` for each line that parses. Stops early and returns
/// Err(parsed) with the counts so far if `f` returns Break.
pub fn parse_table(text: &[u8], mut f: impl FnMut(&Conn) -> ControlFlow<()>) -> Result<Parsed, Parsed> {
    let mut parsed = Parsed::default();
    let mut rest = text;
    while !rest.is_empty() {
        // The last line may lack its '\n'; then it is the whole remainder.
        let (line, tail) = match memchr(b'\n', rest) {
            Some(i) => rest.split_at_checked(i).unwrap_or((rest, &[])),
            None => (rest, &[][..]),
        };
        rest = tail.get(1..).unwrap_or(&[]);
        let conn = match parse_line(line) {
            Line::Skip => continue,
            Line::Malformed => {
                parsed.malformed += 1;
                continue;
            }
            Line::Conn(c) => c,
        };
        parsed.lines += 1;
        if f(&conn).is_break() {
            return Err(parsed);
        }
    }
    Ok(parsed)
}

enum Line {
    /// Blank line or header.
    Skip,
    Malformed,
    Conn(Conn),
}

fn parse_line(line: &[u8]) -> Line {
    // '\r' counts as whitespace so CRLF input parses.
    let mut fields = line.split(|b| b.is_ascii_whitespace()).filter(|f| !f.is_empty());
    let Some(first) = fields.next() else {
        return Line::Skip;
    };
    // Header ("  sl  local_address ..."), possibly mid-buffer in concatenated tables.
    if first == b"sl" {
        return Line::Skip;
    }
    match parse_fields(first, fields) {
        Some(c) => Line::Conn(c),
        None => Line::Malformed,
    }
}

/// Parses fields 0..=9 and requires 10 and 11; the rest varies by protocol and state and is ignored.
fn parse_fields<'a>(sl: &[u8], mut fields: impl Iterator<Item = &'a [u8]>) -> Option<Conn> {
    // 0: "N:"
    if !is_dec(sl.strip_suffix(b":")?) {
        return None;
    }
    // 1, 2: "ADDR:PORT"
    let (local_hex, local_port) = split_endpoint(fields.next()?)?;
    let (remote_hex, remote_port) = split_endpoint(fields.next()?)?;
    if local_hex.len() != remote_hex.len() {
        return None;
    }
    let family = match local_hex.len() {
        8 => Family::Inet,
        32 => Family::Inet6,
        _ => return None,
    }
    .version();
    let local_addr = parse_addr(local_hex)?;
    let remote_addr = parse_addr(remote_hex)?;
    // 3: state, "%02X"; exact width also rules out values > 0xFF.
    let state = u8::try_from(hex_exact(fields.next()?, 2)?).ok()?;
    // 4: tx:rx, 5: tr:when, 6: retrnsmt. Unused, but checked so garbage isn't
    // accepted; widths are minimums in the kernel's format, so not enforced.
    if !is_hex_pair(fields.next()?) || !is_hex_pair(fields.next()?) || !is_hex(fields.next()?) {
        return None;
    }
    // 7: uid, "%5u"
    let uid = u32::try_from(dec(fields.next()?)?).ok()?;
    // 8: timeout, "%8d" (signed in the format string, so allow '-')
    let timeout = fields.next()?;
    if !is_dec(timeout.strip_prefix(b"-").unwrap_or(timeout)) {
        return None;
    }
    // 9: inode, "%lu"
    let inode = dec(fields.next()?)?;
    // 10: ref count, 11: pointer. Every kernel format has them; requiring them
    // means a line cut short inside the inode digits is malformed, not a wrong inode.
    fields.next()?;
    fields.next()?;
    Some(Conn { inode, family, state, local_addr, remote_addr, local_port, remote_port, uid })
}

/// Splits "ADDR:PORT" into the address hex and the decoded port (exactly "%04X").
fn split_endpoint(field: &[u8]) -> Option<(&[u8], u16)> {
    let colon = memchr(b':', field)?;
    let (addr, port) = field.split_at_checked(colon)?;
    let port = u16::try_from(hex_exact(port.get(1..)?, 4)?).ok()?;
    Some((addr, port))
}

/// Decodes 8 or 32 hex digits. The kernel prints each 32-bit word of the
/// network-order address as a host integer ("%08X"), so reading each word back
/// as a host integer and taking its native bytes restores network order.
fn parse_addr(hex: &[u8]) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    for (dst, word) in out.chunks_exact_mut(4).zip(hex.chunks_exact(8)) {
        dst.copy_from_slice(&hex_exact(word, 8)?.to_ne_bytes());
    }
    Some(out)
}

fn is_hex_pair(s: &[u8]) -> bool {
    match memchr(b':', s).and_then(|i| s.split_at_checked(i)) {
        Some((a, b)) => is_hex(a) && b.get(1..).is_some_and(is_hex),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::fmt::Write as _;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const TCP: u8 = 1;
    const UDP: u8 = 2;

    /// What a parse through a `Dedup` saw.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Counts {
        delivered: u64,
        duplicates: u64,
        malformed: u64,
    }

    /// `parse_table` through `dedup`: `f` sees the lines new to it.
    fn parse_dedup(
        text: &[u8],
        protocol: u8,
        dedup: &mut Dedup,
        mut f: impl FnMut(&Conn) -> ControlFlow<()>,
    ) -> Result<Counts, Counts> {
        let (mut delivered, mut duplicates) = (0, 0);
        let r = parse_table(text, |c| {
            if !dedup.insert(protocol, c) {
                duplicates += 1;
                return ControlFlow::Continue(());
            }
            delivered += 1;
            f(c)
        });
        let counts = |p: Parsed| Counts { delivered, duplicates, malformed: p.malformed };
        r.map(counts).map_err(counts)
    }

    const TCP_HEADER: &str =
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
    const TCP6_HEADER: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
    const UDP_HEADER: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n";

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut out = [0; 16];
        out[..4].copy_from_slice(&Ipv4Addr::from(a).octets());
        out
    }

    fn v6(s: &str) -> [u8; 16] {
        s.parse::<Ipv6Addr>().unwrap().octets()
    }

    const V4: Conn = Conn::V4;
    const V6: Conn = Conn { family: 6, ..V4 };

    fn parse_all(text: &[u8], protocol: u8) -> (Vec<Conn>, Counts) {
        let mut out = Vec::new();
        let mut dedup = Dedup::new();
        let parsed = parse_dedup(text, protocol, &mut dedup, |c| {
            out.push(*c);
            ControlFlow::Continue(())
        })
        .unwrap();
        (out, parsed)
    }

    fn ok(delivered: u64, duplicates: u64, malformed: u64) -> Counts {
        Counts { delivered, duplicates, malformed }
    }

    /// Real kernel lines, captured on little-endian x86_64 (the address hex is host-endian).
    #[cfg(target_endian = "little")]
    #[test]
    fn decodes_real_lines() {
        use TcpState::{
            Close, CloseWait, Closing, Established, FinWait1, FinWait2, LastAck, Listen, SynRecv, SynSent, TimeWait,
        };
        let lo = v4([127, 0, 0, 1]);
        #[rustfmt::skip]
        let cases: &[(&str, u8, &str, Conn)] = &[
            ("v4 listen", TCP,
             "   0: 0100007F:0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 26277 1 0000000000000000 100 0 0 10 0",
             Conn { state: Listen.number(), local_addr: lo, local_port: 631, inode: 26277, ..V4 }),
            ("v4 established", TCP,
             "   1: 0F02000A:A5D2 8EFB1A22:01BB 01 00000000:00000000 02:00000A0B 00000000  1000        0 48211 2 0000000000000000 24 4 28 10 -1",
             Conn { state: Established.number(), local_addr: v4([10, 0, 2, 15]), local_port: 42450, remote_addr: v4([34, 26, 251, 142]), remote_port: 443, uid: 1000, inode: 48211, ..V4 }),
            ("v4 syn-sent", TCP,
             "   2: 0F02000A:D0F4 5DB8D822:0050 02 00000001:00000000 01:00000064 00000002  1000        0 51234 1 0000000000000000 200 0 0 10 -1",
             Conn { state: SynSent.number(), local_addr: v4([10, 0, 2, 15]), local_port: 53492, remote_addr: v4([34, 216, 184, 93]), remote_port: 80, uid: 1000, inode: 51234, ..V4 }),
            ("v4 syn-recv (request sock)", TCP,
             "   3: 0100007F:1F90 0100007F:C350 03 00000000:00000000 01:00000043 00000000  1000        0 0 1 0000000000000000",
             Conn { state: SynRecv.number(), local_addr: lo, local_port: 8080, remote_addr: lo, remote_port: 50000, uid: 1000, ..V4 }),
            ("v4 fin-wait1", TCP,
             "   4: 0100007F:1F90 0100007F:C351 04 00000001:00000000 01:00000014 00000000  1000        0 60001 1 0000000000000000 20 4 30 10 -1",
             Conn { state: FinWait1.number(), local_addr: lo, local_port: 8080, remote_addr: lo, remote_port: 50001, uid: 1000, inode: 60001, ..V4 }),
            ("v4 fin-wait2", TCP,
             "   5: 0100007F:1F90 0100007F:C352 05 00000000:00000000 03:00000BB8 00000000     0        0 0 3 0000000000000000",
             Conn { state: FinWait2.number(), local_addr: lo, local_port: 8080, remote_addr: lo, remote_port: 50002, ..V4 }),
            ("v4 time-wait", TCP,
             "   6: 0100007F:9C40 0100007F:1F90 06 00000000:00000000 03:000016A8 00000000     0        0 0 3 0000000000000000",
             Conn { state: TimeWait.number(), local_addr: lo, local_port: 40000, remote_addr: lo, remote_port: 8080, ..V4 }),
            ("v4 close", TCP,
             "   7: 00000000:0000 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 60004 1 0000000000000000 100 0 0 10 0",
             Conn { state: Close.number(), uid: 1000, inode: 60004, ..V4 }),
            ("v4 close-wait", TCP,
             "   8: 0100007F:C353 0100007F:1F90 08 00000000:00000001 00:00000000 00000000  1000        0 60005 1 0000000000000000 20 4 30 10 -1",
             Conn { state: CloseWait.number(), local_addr: lo, local_port: 50003, remote_addr: lo, remote_port: 8080, uid: 1000, inode: 60005, ..V4 }),
            ("v4 last-ack", TCP,
             "   9: 0100007F:C354 0100007F:1F90 09 00000001:00000000 01:00000014 00000000  1000        0 60006 1 0000000000000000 20 4 30 10 -1",
             Conn { state: LastAck.number(), local_addr: lo, local_port: 50004, remote_addr: lo, remote_port: 8080, uid: 1000, inode: 60006, ..V4 }),
            ("v4 closing", TCP,
             "  10: 0100007F:C355 0100007F:1F90 0B 00000001:00000000 01:00000014 00000000  1000        0 60007 1 0000000000000000 20 4 30 10 -1",
             Conn { state: Closing.number(), local_addr: lo, local_port: 50005, remote_addr: lo, remote_port: 8080, uid: 1000, inode: 60007, ..V4 }),
            ("v6 listen ::1", TCP,
             "   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0",
             Conn { state: Listen.number(), local_addr: v6("::1"), local_port: 8080, inode: 31337, ..V6 }),
            ("v6 v4-mapped established", TCP,
             "   1: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 77777 1 0000000000000000 20 4 30 10 -1",
             Conn { state: Established.number(), local_addr: v6("::ffff:127.0.0.1"), local_port: 8080, remote_addr: v6("::ffff:127.0.0.1"), remote_port: 54321, uid: 1000, inode: 77777, ..V6 }),
            ("v6 global", TCP,
             "   2: B80D0120000000000000000001000000:01BB B80D012000000000000000000200FFFF:E2A4 01 00000000:00000000 02:0000031F 00000000    33        0 88888 1 0000000000000000 21 4 30 10 -1",
             Conn { state: Established.number(), local_addr: v6("2001:db8::1"), local_port: 443, remote_addr: v6("2001:db8::ffff:2"), remote_port: 58020, uid: 33, inode: 88888, ..V6 }),
            ("udp unconnected", UDP,
             "  123: 00000000:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000   108        0 18353 2 0000000000000000 0",
             Conn { state: Close.number(), local_port: 5353, uid: 108, inode: 18353, ..V4 }),
            ("udp connected", UDP,
             "  456: 0F02000A:9E0E 0302000A:0035 01 00000000:00000000 00:00000000 00000000  1000        0 99001 2 0000000000000000 0",
             Conn { state: Established.number(), local_addr: v4([10, 0, 2, 15]), local_port: 40462, remote_addr: v4([10, 0, 2, 3]), remote_port: 53, uid: 1000, inode: 99001, ..V4 }),
            ("udp6", UDP,
             "  789: 00000000000000000000000000000000:14E9 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000   108        0 18354 2 0000000000000000 0",
             Conn { state: Close.number(), local_port: 5353, uid: 108, inode: 18354, ..V6 }),
        ];
        let mut tcp_states = HashSet::new();
        for (name, proto, line, want) in cases {
            for text in [line.to_string(), format!("{line}\n")] {
                let (got, parsed) = parse_all(text.as_bytes(), *proto);
                assert_eq!(parsed, ok(1, 0, 0), "{name}");
                assert_eq!(got, [*want], "{name}");
            }
            if *proto == TCP {
                tcp_states.insert(want.state);
            }
        }
        let all_but_new_syn_recv = TcpState::all()[..11].iter().map(|s| s.number()).collect();
        assert_eq!(tcp_states, all_but_new_syn_recv, "every TCP state a table lists covered");
    }

    const V4_TABLE: &str = "   0: 0100007F:0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 26277 1 0000000000000000 100 0 0 10 0\n";
    const V4_EST: &str = "   1: 0F02000A:A5D2 8EFB1A22:01BB 01 00000000:00000000 02:00000A0B 00000000  1000        0 48211 2 0000000000000000 24 4 28 10 -1\n";
    const V6_LINE: &str = "   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0\n";
    const TW_A: &str = "   6: 0100007F:9C40 0100007F:1F90 06 00000000:00000000 03:000016A8 00000000     0        0 0 3 0000000000000000\n";
    const TW_B: &str = "   7: 0100007F:9C41 0100007F:1F90 06 00000000:00000000 03:000016A8 00000000     0        0 0 3 0000000000000000\n";
    const UDP_LINE: &str = "  123: 00000000:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000   108        0 18353 2 0000000000000000 0\n";

    fn inodes(conns: &[Conn]) -> Vec<u64> {
        conns.iter().map(|c| c.inode).collect()
    }

    #[test]
    fn headers_anywhere_are_skipped() {
        let text = [TCP_HEADER, V4_TABLE, V4_EST, TCP6_HEADER, V6_LINE, TCP_HEADER, UDP_HEADER].concat();
        let (got, parsed) = parse_all(text.as_bytes(), TCP);
        assert_eq!(parsed, ok(3, 0, 0));
        assert_eq!(inodes(&got), [26277, 48211, 31337]);
        // Header only, with and without newline.
        assert_eq!(parse_all(TCP_HEADER.as_bytes(), TCP).1, ok(0, 0, 0));
        assert_eq!(parse_all(TCP_HEADER.trim_end().as_bytes(), TCP).1, ok(0, 0, 0));
    }

    #[test]
    fn blank_lines_crlf_and_missing_final_newline() {
        let text = format!("\n   \n\t\r\n{TCP_HEADER}\n{}\r\n\r\n{}", V4_TABLE.trim_end(), V4_EST.trim_end());
        let (got, parsed) = parse_all(text.as_bytes(), TCP);
        assert_eq!(parsed, ok(2, 0, 0));
        assert_eq!(inodes(&got), [26277, 48211]);
        assert_eq!(parse_all(b"", TCP).1, ok(0, 0, 0));
        assert_eq!(parse_all(b"\n\n\r\n  ", TCP).1, ok(0, 0, 0));
    }

    #[test]
    fn duplicates_by_inode_first_wins() {
        let changed = V4_EST.replace(" 01 ", " 08 ");
        let text = [V4_EST, V4_TABLE, &changed, V4_EST].concat();
        let (got, parsed) = parse_all(text.as_bytes(), TCP);
        assert_eq!(parsed, ok(2, 2, 0));
        assert_eq!(inodes(&got), [48211, 26277]);
        assert_eq!(got[0].state, 0x01, "first reading wins");

        // Dedup persists across calls (e.g. tcp then tcp6), until cleared.
        let mut dedup = Dedup::new();
        let mut n = 0;
        let mut count = |_: &Conn| {
            n += 1;
            ControlFlow::Continue(())
        };
        assert_eq!(parse_dedup(V4_EST.as_bytes(), TCP, &mut dedup, &mut count), Ok(ok(1, 0, 0)));
        assert_eq!(parse_dedup(V4_EST.as_bytes(), TCP, &mut dedup, &mut count), Ok(ok(0, 1, 0)));
        dedup.clear();
        assert_eq!(parse_dedup(V4_EST.as_bytes(), TCP, &mut dedup, &mut count), Ok(ok(1, 0, 0)));
        assert_eq!(n, 2);
    }

    #[test]
    fn inode_zero_dedup_by_tuple() {
        // Distinct tuples are both kept; an identical one is merged.
        let text = [TW_A, TW_B, TW_A].concat();
        let (got, parsed) = parse_all(text.as_bytes(), TCP);
        assert_eq!(parsed, ok(2, 1, 0));
        assert_eq!((got[0].local_port, got[1].local_port), (40000, 40001));

        // Same tuple, different state: kept.
        let fin2 = TW_A.replace(" 06 ", " 05 ");
        assert_eq!(parse_all([TW_A, &fin2].concat().as_bytes(), TCP).1, ok(2, 0, 0));

        // Same tuple, different protocol (shared Dedup): kept.
        let mut dedup = Dedup::new();
        let mut go = |_: &Conn| ControlFlow::Continue(());
        assert_eq!(parse_dedup(TW_A.as_bytes(), TCP, &mut dedup, &mut go), Ok(ok(1, 0, 0)));
        assert_eq!(parse_dedup(TW_A.as_bytes(), UDP, &mut dedup, &mut go), Ok(ok(1, 0, 0)));
        assert_eq!(parse_dedup(TW_A.as_bytes(), UDP, &mut dedup, &mut go), Ok(ok(0, 1, 0)));

        // Same words, different family: the v6 "::" tuple differs from v4 0.0.0.0.
        let v4_zero = "0: 00000000:0000 00000000:0000 07 0:0 0:0 0 0 0 0 2 0\n";
        let v6_zero =
            "1: 00000000000000000000000000000000:0000 00000000000000000000000000000000:0000 07 0:0 0:0 0 0 0 0 2 0\n";
        assert_eq!(parse_all([v4_zero, v6_zero].concat().as_bytes(), UDP).1, ok(2, 0, 0));
    }

    #[test]
    fn break_stops_early_with_counts() {
        let text = ["garbage\n", V4_TABLE, V4_TABLE, V4_EST, V6_LINE].concat();
        let mut seen = Vec::new();
        let mut dedup = Dedup::new();
        let r = parse_dedup(text.as_bytes(), TCP, &mut dedup, |c| {
            seen.push(c.inode);
            if c.inode == 48211 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        });
        assert_eq!(r, Err(ok(2, 1, 1)));
        assert_eq!(seen, [26277, 48211]);
    }

    #[test]
    fn malformed_lines_are_counted_and_skipped() {
        let good = V4_TABLE.trim_end();
        #[rustfmt::skip]
        let bad: Vec<String> = vec![
            "garbage".into(),
            "sl:".into(),
            good.replacen("0:", "0", 1),                      // sl without colon
            good.replacen("0:", "x:", 1),                     // sl not decimal
            good.replacen("0100007F", "0100007G", 1),         // bad hex
            good.replacen("0100007F", "100007F", 1),          // 7-digit address
            good.replacen("0100007F", "0100007F0", 1),        // 9-digit address
            good.replacen(":0277", ":277", 1),                // 3-digit port
            good.replacen(":0277", ":00277", 1),              // 5-digit port
            good.replacen(":0277", "", 1),                    // no port
            good.replacen(":0277", ":", 1),                   // empty port
            good.replacen("00000000:0000", "00000000000000000000000000000000:0000", 1), // mixed widths
            good.replacen(" 0A ", " A ", 1),                  // 1-digit state
            good.replacen(" 0A ", " 100 ", 1),                // state > 0xFF
            good.replacen(" 0A ", " 0Z ", 1),                 // bad state hex
            good.replacen("00000000:00000000", "00000000", 1), // tx without rx
            good.replacen(" 00:00000000 ", " 00: ", 1),       // tr: empty when
            good.replacen("     0        0 26277", "     -1        0 26277", 1), // negative uid
            good.replacen("     0        0 26277", " 4294967296        0 26277", 1), // uid overflow
            good.replacen(" 26277 ", " 18446744073709551616 ", 1), // inode overflow
            good.replacen(" 26277 ", " 2627x ", 1),           // bad inode
            good.replacen("        0 26277", "        x 26277", 1), // bad timeout
            "   0: 0100007F:0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0".into(), // no inode
            "   0: 0100007F:0277 00000000:0000 0A".into(),   // truncated
            "   0: 0100007F:0277".into(),
            "   0:".into(),
            good.replacen(" 26277 ", " 26277\0 ", 1),         // NUL glued to the inode
            "   0: 0100007F:0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000 \u{a0}0        0 26277 1".into(), // non-ASCII space
        ];
        for b in &bad {
            assert_eq!(parse_all(b.as_bytes(), TCP).1, ok(0, 0, 1), "should be malformed: {b:?}");
        }
        // Malformed lines don't disturb their neighbours.
        let text = [V4_TABLE, "junk\n", V4_EST].concat();
        assert_eq!(parse_all(text.as_bytes(), TCP).1, ok(2, 0, 1));
        // Sanity for the variants above that are still valid: lowercase hex,
        // exactly 12 fields, large inode/uid, negative timeout.
        let valid = [
            good.replacen("0100007F", "0100007f", 1),
            "0: 0100007F:0277 00000000:0000 0A 0:0 0:0 0 4294967295 -1 18446744073709551615 1 0".into(),
        ];
        for v in &valid {
            assert_eq!(parse_all(v.as_bytes(), TCP).1, ok(1, 0, 0), "should parse: {v:?}");
        }
    }

    fn full_table() -> String {
        [TCP_HEADER, V4_TABLE, V4_EST, TW_A, TW_B, TCP6_HEADER, V6_LINE, "\n", UDP_HEADER, UDP_LINE].concat()
    }

    #[test]
    fn every_truncation_is_sane() {
        let text = full_table();
        let bytes = text.as_bytes();
        let (full, full_parsed) = parse_all(bytes, TCP);
        assert_eq!(full_parsed, ok(6, 0, 0));
        for cut in 0..=bytes.len() {
            let prefix = &bytes[..cut];
            let (got, parsed) = parse_all(prefix, TCP);
            // Lines fully inside the prefix must come out exactly as in the full parse.
            let complete_end = prefix.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let (want, _) = parse_all(&prefix[..complete_end], TCP);
            assert!(want.len() <= full.len() && want[..] == full[..want.len()], "cut {cut}");
            assert_eq!(got[..want.len()], want[..], "cut {cut}");
            // A partial last line is never a record the full table lacks (a wrong inode).
            assert!(got.len() <= full.len() && got[..] == full[..got.len()], "cut {cut}");
            // The partial tail adds at most one line: delivered, malformed or a duplicate.
            let extra = parsed.delivered + parsed.duplicates + parsed.malformed - want.len() as u64;
            assert!(extra <= 1, "cut {cut}: {parsed:?}");
            if complete_end == cut {
                assert_eq!(parsed, ok(want.len() as u64, 0, 0), "cut at line end {cut}");
            }
        }
    }

    /// xorshift64, so the test is deterministic without a rand dependency.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        // Bias towards the format's alphabet so deeper paths get exercised.
        let alphabet = b"0123456789ABCDEFabcdef: \n\r\t-sl";
        let real = full_table().into_bytes();
        let mut dedup = Dedup::new();
        let mut buf = Vec::new();
        for i in 0..20_000 {
            buf.clear();
            let len = (rng.next() % 300) as usize;
            match i % 3 {
                0 => buf.extend((0..len).map(|_| rng.next() as u8)),
                1 => buf.extend((0..len).map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize])),
                _ => {
                    // Real table with a few random byte flips.
                    buf.extend_from_slice(&real);
                    for _ in 0..(rng.next() % 8) {
                        let at = (rng.next() % buf.len() as u64) as usize;
                        buf[at] = rng.next() as u8;
                    }
                }
            }
            dedup.clear();
            let r = parse_dedup(&buf, TCP, &mut dedup, |_| ControlFlow::Continue(()));
            assert!(r.is_ok());
        }
    }

    /// Test-only formatter in the kernel's tcp4/tcp6_seq_show layout.
    fn format_line(out: &mut String, sl: usize, c: &Conn) {
        let words = if c.family == 4 { 1 } else { 4 };
        let hex = |out: &mut String, a: &[u8; 16]| {
            for w in a.chunks_exact(4).take(words) {
                write!(out, "{:08X}", u32::from_ne_bytes(w.try_into().unwrap())).unwrap();
            }
        };
        write!(out, "{sl:4}: ").unwrap();
        hex(out, &c.local_addr);
        write!(out, ":{:04X} ", c.local_port).unwrap();
        hex(out, &c.remote_addr);
        writeln!(
            out,
            ":{:04X} {:02X} 00000000:00000000 00:00000000 00000000 {:5} {:8} {} 1 0000000000000000 100 0 0 10 0",
            c.remote_port, c.state, c.uid, 0, c.inode
        )
        .unwrap();
    }

    fn arb_conn() -> impl Strategy<Value = Conn> {
        (
            prop_oneof![Just(4u8), Just(6u8)],
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            0u8..32,
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            any::<u64>(),
        )
            .prop_map(
                |(family, mut local_addr, mut remote_addr, state, local_port, remote_port, uid, inode)| {
                    if family == 4 {
                        local_addr[4..].fill(0);
                        remote_addr[4..].fill(0);
                    }
                    Conn { inode, family, state, local_addr, remote_addr, local_port, remote_port, uid }
                },
            )
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic(bytes in any::<Vec<u8>>(), proto in any::<u8>()) {
            let mut dedup = Dedup::new();
            let r = parse_dedup(&bytes, proto, &mut dedup, |_| ControlFlow::Continue(()));
            prop_assert!(r.is_ok());
        }

        #[test]
        fn round_trip(conns in prop::collection::vec(arb_conn(), 0..40), header_at in any::<prop::sample::Index>()) {
            // Unique, non-zero inodes so nothing is de-duplicated.
            let mut seen = HashSet::new();
            let conns: Vec<Conn> = conns.into_iter().filter(|c| c.inode != 0 && seen.insert(c.inode)).collect();
            let header_at = header_at.index(conns.len() + 1);
            let mut text = String::new();
            for (i, c) in conns.iter().enumerate() {
                if i == header_at {
                    text.push_str(TCP_HEADER);
                }
                format_line(&mut text, i, c);
            }
            let (got, parsed) = parse_all(text.as_bytes(), TCP);
            prop_assert_eq!(parsed, ok(conns.len() as u64, 0, 0));
            prop_assert_eq!(got, conns);
        }
    }
}
