//! Fuzzes the BTF reader: any blob parses or is refused, and no lookup on a
//! parsed one panics or runs away (struct cycles, typedef loops, odd kinds).
#![no_main]

use libfuzzer_sys::fuzz_target;
use procspy::parse::btf::{Btf, Kind};

fuzz_target!(|data: &[u8]| {
    let Ok(btf) = Btf::parse(data) else { return };
    let names: [&[u8]; 5] = [b"", b"a", b"o", b"i_ino", b"f_inode"];
    for id in 0..=btf.type_count().saturating_add(1).min(4096) {
        let _ = btf.resolve(id);
        let _ = btf.size(id);
        for name in names {
            let _ = btf.field(id, name);
            let _ = btf.path(id, &[name, name, name]);
        }
    }
    for kind in (0..32).filter_map(Kind::from_u8) {
        for name in names {
            let _ = btf.find(kind, name);
        }
    }
});
