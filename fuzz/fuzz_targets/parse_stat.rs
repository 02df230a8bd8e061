//! Fuzzes the /proc/PID/stat parser: no panics, and the name is exactly the
//! input's bytes between its first '(' and its last ')'.
#![no_main]

use libfuzzer_sys::fuzz_target;
use procspy::parse::stat::parse_stat;

fuzz_target!(|data: &[u8]| {
    let Some(st) = parse_stat(data) else { return };
    let open = data.iter().position(|&b| b == b'(').expect("parsed without '('");
    let close = data.iter().rposition(|&b| b == b')').expect("parsed without ')'");
    // Same bytes AND same place: a subslice of the input, not a copy.
    let start = (st.name.as_ptr() as usize).wrapping_sub(data.as_ptr() as usize);
    assert_eq!((start, start + st.name.len()), (open + 1, close), "name {:?}", st.name);
});
