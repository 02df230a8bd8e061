//! The numbers the kernel prints, read back: one decimal and one hex reader
//! for every parser, each refusing what the kernel would not have written.

/// A non-empty unsigned decimal; `None` on any other byte or on overflow.
pub fn dec(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |v, &c| {
        c.is_ascii_digit().then_some(())?;
        v.checked_mul(10)?.checked_add(u64::from(c - b'0'))
    })
}

/// A decimal as the kernel names fds and pids in `/proc`: in
/// `0..=i32::MAX`, no sign, no leading zero.
pub fn dec_name(s: &[u8]) -> Option<i32> {
    if s.len() > 1 && s[0] == b'0' {
        return None;
    }
    dec(s).and_then(|v| i32::try_from(v).ok())
}

/// Exactly `width` hex digits, `width` at most 8.
pub fn hex_exact(s: &[u8], width: usize) -> Option<u32> {
    if s.len() != width || width > 8 {
        return None;
    }
    s.iter().try_fold(0u32, |acc, &b| Some((acc << 4) | char::from(b).to_digit(16)?))
}

/// Non-empty, all decimal digits (a number whose value is not needed).
pub fn is_dec(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(u8::is_ascii_digit)
}

/// Non-empty, all hex digits.
pub fn is_hex(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(u8::is_ascii_hexdigit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        assert_eq!(dec(b"0"), Some(0));
        assert_eq!(dec(b"18446744073709551615"), Some(u64::MAX));
        for bad in [&b""[..], b"18446744073709551616", b"1 ", b"-1", b"+1", b"1\n", b"x"] {
            assert_eq!(dec(bad), None, "{bad:?}");
        }
        assert_eq!(dec_name(b"0"), Some(0));
        assert_eq!(dec_name(b"2147483647"), Some(i32::MAX));
        for bad in [&b""[..], b"00", b"01", b"2147483648", b"99999999999", b"12a", b"-1", b"self", b" 1"] {
            assert_eq!(dec_name(bad), None, "{bad:?}");
        }
        assert!(is_dec(b"007") && !is_dec(b"") && !is_dec(b"7a"));
    }

    #[test]
    fn hex() {
        assert_eq!(hex_exact(b"0A", 2), Some(10));
        assert_eq!(hex_exact(b"ffffFFFF", 8), Some(u32::MAX));
        assert_eq!(hex_exact(b"0A", 4), None, "width is exact");
        assert_eq!(hex_exact(b"000000000", 9), None);
        assert_eq!(hex_exact(b"0G", 2), None);
        assert!(is_hex(b"aF09") && !is_hex(b"") && !is_hex(b"g"));
    }
}
