//! Fuzzes the sock_diag reply readers (input: 4 bytes of sequence number, 4
//! of port id, 4 of destroy groups, then what one `recv()` returned): no
//! panics; the dump reader ends, each message it reads taking at least a
//! header of the buffer; a socket's id it believes makes a whole lookup
//! request, as recall sends it back to the kernel.
#![no_main]

use libfuzzer_sys::fuzz_target;
use procspy::parse::diag::{Reply, Request, destroyed, replies};

fuzz_target!(|data: &[u8]| {
    let Some((head, buf)) = data.split_at_checked(12) else { return };
    let word = |at: usize| u32::from_ne_bytes(head[at..at + 4].try_into().unwrap());
    let (seq, port, groups) = (word(0), word(4), word(8));
    let mut n = 0;
    for reply in replies(buf, seq, port) {
        n += 1;
        assert!(n * 16 <= buf.len(), "more messages than headers fit");
        if let Reply::Sock(_, id) = reply {
            let request = Request::lookup(&id, seq);
            assert_eq!(request.bytes().len(), Request::LOOKUP_LEN);
            assert_eq!(request.bytes()[16], id.family.af());
        }
    }
    let _ = destroyed(buf, 0, groups);
});
