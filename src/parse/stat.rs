//! `/proc/PID/stat`: the process name, its thread count and its start time.

/// What a walk needs of `/proc/PID/stat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat<'a> {
    /// The bytes between the first `(` and the last `)`: the name may hold
    /// spaces, parentheses, newlines, even `) R 1`.
    pub name: &'a [u8],
    /// Field 20, `num_threads`.
    pub threads: u64,
    /// Field 22, clock ticks after boot.
    pub start_time: u64,
}

/// Parses a `stat` line, or `None` if it is not one.
pub fn parse_stat(buf: &[u8]) -> Option<ProcStat<'_>> {
    let open = memchr::memchr(b'(', buf)?;
    let close = memchr::memrchr(b')', buf)?;
    if close < open {
        return None;
    }
    let name = &buf[open + 1..close];
    // Fields after the name start at 3 (state), so field 20 is the 18th, 22 the 20th.
    let mut fields = buf[close + 1..].split(|&c| c == b' ').filter(|f| !f.is_empty());
    let threads = super::num::dec(fields.nth(17)?)?;
    let field = fields.nth(1)?;
    Some(ProcStat { name, threads, start_time: super::num::dec(field.strip_suffix(b"\n").unwrap_or(field))? })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAIL: &str = " S 1 2 3 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn plain_and_hostile_names() {
        for name in [&b"bash"[..], b"a b", b"(x)", b") R 1 2", b"new\nline", b"))((", b"", b"\xff\xfe"] {
            let mut line = b"1234 (".to_vec();
            line.extend_from_slice(name);
            line.push(b')');
            line.extend_from_slice(TAIL.as_bytes());
            assert_eq!(parse_stat(&line), Some(ProcStat { name, threads: 1, start_time: 123456 }), "{name:?}");
        }
    }

    #[test]
    fn not_a_stat_line() {
        for bad in [
            &b""[..],
            b"1 (x",
            b"1 x) S",
            b"1 )x( S 1",
            b"1 (x) S 1 2 3",
            b"1 (x) S 1 2 3 0 -1 4 1 0 0 0 1 2 0 0 20 0 1 0 99x 1",
        ] {
            assert_eq!(parse_stat(bad), None, "{bad:?}");
        }
        let huge = format!("1 ({}){}", "x".repeat(1 << 20), TAIL);
        assert_eq!(parse_stat(huge.as_bytes()).map(|s| s.name.len()), Some(1 << 20));
        let overflow = format!("1 (x){}", TAIL.replace("123456", "99999999999999999999999"));
        assert_eq!(parse_stat(overflow.as_bytes()), None);
    }

    #[test]
    fn this_process() {
        let raw = std::fs::read("/proc/self/stat").unwrap();
        let st = parse_stat(&raw).unwrap();
        let comm = std::fs::read("/proc/self/comm").unwrap();
        assert_eq!(st.name, comm.strip_suffix(b"\n").unwrap());
        assert!(st.start_time > 0);
    }
}
