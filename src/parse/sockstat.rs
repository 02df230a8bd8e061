//! `net/sockstat` and `net/sockstat6`: how many sockets a namespace's
//! tables hold, counted by the kernel as it hashes and unhashes them.

/// A namespace's hashed sockets by protocol and family, and its TIME_WAIT
/// sockets (which no process holds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockCounts {
    pub tcp4: u64,
    pub tcp6: u64,
    pub udp4: u64,
    pub udp6: u64,
    pub time_wait: u64,
}

/// The number after `key` on the line starting with `label`.
fn value(text: &[u8], label: &[u8], key: &[u8]) -> Option<u64> {
    let line = text.split(|&b| b == b'\n').find(|l| l.starts_with(label))?;
    let mut words = line[label.len()..].split(|&b| b == b' ').filter(|w| !w.is_empty());
    while let Some(w) = words.next() {
        if w == key {
            return super::num::dec(words.next()?);
        }
    }
    None
}

/// Counts from the two files; `None` if a count is missing or not a number
/// (an unknown layout is never read as zero).
pub fn parse_sockstat(v4: &[u8], v6: &[u8]) -> Option<SockCounts> {
    Some(SockCounts {
        tcp4: value(v4, b"TCP:", b"inuse")?,
        time_wait: value(v4, b"TCP:", b"tw")?,
        udp4: value(v4, b"UDP:", b"inuse")?,
        tcp6: value(v6, b"TCP6:", b"inuse")?,
        udp6: value(v6, b"UDP6:", b"inuse")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: &[u8] = b"sockets: used 529\nTCP: inuse 221 orphan 0 tw 3 alloc 22441 mem 243\n\
UDP: inuse 40 mem 0\nUDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 0 memory 0\n";
    const V6: &[u8] = b"TCP6: inuse 220\nUDP6: inuse 41\nUDPLITE6: inuse 0\nRAW6: inuse 0\nFRAG6: inuse 0 memory 0\n";

    #[test]
    fn reads_the_kernels_lines() {
        let c = parse_sockstat(V4, V6).unwrap();
        assert_eq!(c, SockCounts { tcp4: 221, tcp6: 220, udp4: 40, udp6: 41, time_wait: 3 });
    }

    #[test]
    fn the_real_files_parse() {
        let (Ok(v4), Ok(v6)) = (std::fs::read("/proc/net/sockstat"), std::fs::read("/proc/net/sockstat6")) else {
            return;
        };
        assert!(parse_sockstat(&v4, &v6).is_some());
    }

    #[test]
    fn anything_missing_or_odd_is_none() {
        assert_eq!(parse_sockstat(b"", V6), None);
        assert_eq!(parse_sockstat(V4, b""), None);
        assert_eq!(parse_sockstat(b"TCP: inuse 1 orphan 0\nUDP: inuse 1\n", V6), None, "no tw");
        assert_eq!(parse_sockstat(b"TCP: inuse x tw 0\nUDP: inuse 1\n", V6), None);
        assert_eq!(parse_sockstat(b"TCP: inuse -1 tw 0\nUDP: inuse 1\n", V6), None);
        assert_eq!(parse_sockstat(b"TCP: inuse 99999999999999999999 tw 0\nUDP: inuse 1\n", V6), None);
        assert_eq!(parse_sockstat(b"TCP: inuse tw 0\nUDP: inuse 1\n", V6), None);
        // UDPLITE is not UDP.
        assert_eq!(parse_sockstat(b"TCP: inuse 1 tw 0\nUDPLITE: inuse 1\n", V6), None);
        for cut in 0..V4.len() {
            let _ = parse_sockstat(&V4[..cut], V6);
        }
    }
}
