//! The kernel's BTF type information (`/sys/kernel/btf/vmlinux`), read just
//! far enough to find a function's type id and where a struct keeps a field:
//! what a BPF program must know of this kernel's layout to read it.

/// `struct btf_header`'s magic, in the byte order of the host that wrote it.
const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;
/// `struct btf_type`: name_off, info, size_or_type.
const TYPE_LEN: usize = 12;

pub use super::kernel::BtfKind as Kind;

impl Kind {
    /// Bytes of the trailing records after a `struct btf_type` of this
    /// kind with `vlen` entries.
    fn extra_len(self, vlen: usize) -> usize {
        match self {
            Kind::Int | Kind::Var | Kind::DeclTag => 4,
            Kind::Array => 12,
            Kind::Struct | Kind::Union | Kind::Datasec | Kind::Enum64 => 12 * vlen,
            Kind::Enum | Kind::FuncProto => 8 * vlen,
            Kind::Ptr
            | Kind::Fwd
            | Kind::Typedef
            | Kind::Volatile
            | Kind::Const
            | Kind::Restrict
            | Kind::Func
            | Kind::Float
            | Kind::TypeTag => 0,
        }
    }

    /// A typedef or a qualifier: another type under another name.
    fn is_alias(self) -> bool {
        matches!(self, Kind::Typedef | Kind::Volatile | Kind::Const | Kind::Restrict | Kind::TypeTag)
    }
}

/// Why BTF could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BtfError {
    #[error("not BTF (bad magic or header)")]
    Header,
    #[error("BTF type {0} is cut short or of an unknown kind")]
    Type(u32),
}

/// One parsed type: its kind, name, `size_or_type`, and where its trailing
/// records (members, params, ...) start in the type section.
#[derive(Clone, Copy, Debug)]
struct Type {
    kind: Kind,
    kind_flag: bool,
    vlen: u16,
    name_off: u32,
    size_or_type: u32,
    extra: usize,
}

/// A field of a struct: where it starts and its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub byte_offset: u32,
    pub type_id: u32,
}

/// An index over one BTF blob; type ids start at 1 (0 is `void`).
#[derive(Debug)]
pub struct Btf<'a> {
    types: Vec<Type>,
    section: &'a [u8],
    strings: &'a [u8],
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl<'a> Btf<'a> {
    pub fn parse(blob: &'a [u8]) -> Result<Self, BtfError> {
        if u16_at(blob, 0) != Some(MAGIC) {
            return Err(BtfError::Header);
        }
        let hdr_len = u32_at(blob, 4).ok_or(BtfError::Header)? as usize;
        let field = |at| u32_at(blob, at).map(|v| v as usize).ok_or(BtfError::Header);
        let (type_off, type_len, str_off, str_len) = (field(8)?, field(12)?, field(16)?, field(20)?);
        if hdr_len < HEADER_LEN {
            return Err(BtfError::Header);
        }
        let body = blob.get(hdr_len..).ok_or(BtfError::Header)?;
        let section = body.get(type_off..type_off.checked_add(type_len).ok_or(BtfError::Header)?);
        let strings = body.get(str_off..str_off.checked_add(str_len).ok_or(BtfError::Header)?);
        let (Some(section), Some(strings)) = (section, strings) else { return Err(BtfError::Header) };
        let mut types = Vec::new();
        let mut at = 0;
        while at < section.len() {
            let id = types.len() as u32 + 1;
            let (Some(name_off), Some(info), Some(size_or_type)) =
                (u32_at(section, at), u32_at(section, at + 4), u32_at(section, at + 8))
            else {
                return Err(BtfError::Type(id));
            };
            let kind = Kind::from_u8(((info >> 24) & 0x1f) as u8).ok_or(BtfError::Type(id))?;
            let vlen = (info & 0xffff) as u16;
            let extra = at + TYPE_LEN;
            let len = kind.extra_len(vlen as usize);
            if extra + len > section.len() {
                return Err(BtfError::Type(id));
            }
            types.push(Type { kind, kind_flag: info >> 31 == 1, vlen, name_off, size_or_type, extra });
            at = extra + len;
        }
        Ok(Self { types, section, strings })
    }

    fn get(&self, id: u32) -> Option<&Type> {
        self.types.get((id as usize).checked_sub(1)?)
    }

    fn name(&self, off: u32) -> &[u8] {
        let s = self.strings.get(off as usize..).unwrap_or_default();
        &s[..memchr::memchr(0, s).unwrap_or(s.len())]
    }

    /// The id of the first type of `kind` named `name`.
    pub fn find(&self, kind: Kind, name: &[u8]) -> Option<u32> {
        let i = self.types.iter().position(|t| t.kind == kind && self.name(t.name_off) == name)?;
        Some(i as u32 + 1)
    }

    /// `id` with typedefs and qualifiers taken off.
    pub fn resolve(&self, mut id: u32) -> Option<(u32, Kind)> {
        for _ in 0..32 {
            let t = self.get(id)?;
            if !t.kind.is_alias() {
                return Some((id, t.kind));
            }
            id = t.size_or_type;
        }
        None
    }

    /// The size in bytes of an integer, pointer, struct, union or array
    /// type (through typedefs and qualifiers), arrays nested at most two deep.
    pub fn size(&self, id: u32) -> Option<u32> {
        self.size_within(id, 2)
    }

    fn size_within(&self, id: u32, depth: u32) -> Option<u32> {
        let (id, kind) = self.resolve(id)?;
        let t = self.get(id)?;
        match kind {
            Kind::Int | Kind::Struct | Kind::Union => Some(t.size_or_type),
            Kind::Ptr => Some(8),
            // struct btf_array: type, index_type, nelems.
            Kind::Array if depth > 0 => {
                let (elem, n) = (u32_at(self.section, t.extra)?, u32_at(self.section, t.extra + 8)?);
                self.size_within(elem, depth - 1)?.checked_mul(n)
            }
            _ => None,
        }
    }

    /// How many parameters function `id` takes (its `FUNC_PROTO`'s).
    pub fn params(&self, id: u32) -> Option<u32> {
        let f = self.get(id).filter(|t| t.kind == Kind::Func)?;
        let proto = self.get(f.size_or_type).filter(|t| t.kind == Kind::FuncProto)?;
        Some(u32::from(proto.vlen))
    }

    /// The field `name` of struct `id`, looking into anonymous struct and
    /// union members too. A hostile blob may nest a struct in itself: the
    /// search gives up after 8 levels or 65,536 members looked at (the
    /// kernel's own structs need a few hundred). Bitfields are not fields here.
    pub fn field(&self, id: u32, name: &[u8]) -> Option<Field> {
        self.field_within(id, name, 8, &mut (1 << 16))
    }

    fn field_within(&self, id: u32, name: &[u8], depth: u32, budget: &mut u32) -> Option<Field> {
        let (id, kind) = self.resolve(id)?;
        if !matches!(kind, Kind::Struct | Kind::Union) || depth == 0 {
            return None;
        }
        let t = self.get(id)?;
        (0..t.vlen as usize).find_map(|m| {
            *budget = budget.checked_sub(1)?;
            let at = t.extra + 12 * m;
            let (name_off, type_id, offset) =
                (u32_at(self.section, at)?, u32_at(self.section, at + 4)?, u32_at(self.section, at + 8)?);
            let (bits, bitfield) = if t.kind_flag { (offset & 0xff_ffff, offset >> 24 != 0) } else { (offset, false) };
            if bits % 8 != 0 || bitfield {
                return None;
            }
            let here = Field { byte_offset: bits / 8, type_id };
            if name_off == 0 {
                let inner = self.field_within(type_id, name, depth - 1, budget)?;
                Some(Field { byte_offset: here.byte_offset.checked_add(inner.byte_offset)?, type_id: inner.type_id })
            } else {
                (self.name(name_off) == name).then_some(here)
            }
        })
    }

    /// The value of `name` in the enum `enum_name` (`ENUM` or `ENUM64`):
    /// how a kernel numbers what it knows, such as its BPF helpers.
    pub fn enumerator(&self, enum_name: &[u8], name: &[u8]) -> Option<i64> {
        let t = self
            .types
            .iter()
            .find(|t| matches!(t.kind, Kind::Enum | Kind::Enum64) && self.name(t.name_off) == enum_name)?;
        let (len, signed) = (if t.kind == Kind::Enum { 8 } else { 12 }, t.kind_flag);
        (0..t.vlen as usize).find_map(|m| {
            let at = t.extra + len * m;
            if self.name(u32_at(self.section, at)?) != name {
                return None;
            }
            let lo = u32_at(self.section, at + 4)?;
            Some(match (t.kind, signed) {
                (Kind::Enum, true) => i64::from(lo as i32),
                (Kind::Enum, false) => i64::from(lo),
                _ => (i64::from(u32_at(self.section, at + 8)?) << 32) | i64::from(lo),
            })
        })
    }

    /// How many types the blob holds (ids 1 to this).
    pub fn type_count(&self) -> u32 {
        self.types.len() as u32
    }
}

impl Btf<'_> {
    /// The field at the end of `names`, each inside the one before (no
    /// pointer between them), with the offsets added up.
    pub fn path(&self, id: u32, names: &[&[u8]]) -> Option<Field> {
        names.iter().try_fold(Field { byte_offset: 0, type_id: id }, |at, name| {
            let f = self.field(at.type_id, name)?;
            Some(Field { byte_offset: at.byte_offset.checked_add(f.byte_offset)?, type_id: f.type_id })
        })
    }
}

/// BTF blobs built by hand: the types of the tracer's task map, and the
/// kernels of tests here and of the programs built from BTF.
pub(crate) mod build {
    use super::{HEADER_LEN, Kind, MAGIC};

    /// A type for `blob`: name, kind, vlen, size_or_type, trailing words;
    /// a member's name goes in as `Name(..)` and is interned.
    pub(crate) enum W {
        N(u32),
        Name(&'static str),
    }

    pub(crate) fn blob(types: &[(&str, Kind, u32, u32, &[W])]) -> Vec<u8> {
        let mut strings = vec![0u8];
        let mut intern = |s: &str| {
            if s.is_empty() {
                return 0;
            }
            strings.extend_from_slice(s.as_bytes());
            strings.push(0);
            (strings.len() - s.len() - 1) as u32
        };
        let mut section = Vec::new();
        for (name, kind, vlen, size_or_type, extra) in types {
            let words = [intern(name), ((*kind as u32) << 24) | vlen, *size_or_type];
            let extra: Vec<u32> = extra
                .iter()
                .map(|w| match w {
                    W::N(n) => *n,
                    W::Name(s) => intern(s),
                })
                .collect();
            for w in words.iter().chain(&extra) {
                section.extend_from_slice(&w.to_ne_bytes());
            }
        }
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC.to_ne_bytes());
        b.extend_from_slice(&[1, 0]);
        for w in [HEADER_LEN as u32, 0, section.len() as u32, section.len() as u32, strings.len() as u32] {
            b.extend_from_slice(&w.to_ne_bytes());
        }
        b.extend_from_slice(&section);
        b.extend_from_slice(&strings);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::build::{W, blob};
    use super::*;

    /// 1 u16, 2 u64, 3 typedef umode_t, 4 struct inner { i_mode }, 5 struct
    /// outer { a @0; union { i_ino } @8 }, 6 that union, 7 pointer to outer,
    /// 8 a function, 9 a struct with a bitfield member (kind_flag set),
    /// 10 struct wrap { pad @0; outer o @8 }.
    fn sample() -> Vec<u8> {
        use W::{N, Name};
        blob(&[
            ("unsigned short", Kind::Int, 0, 2, &[N(16)]),
            ("long unsigned int", Kind::Int, 0, 8, &[N(64)]),
            ("umode_t", Kind::Typedef, 0, 1, &[]),
            ("inner", Kind::Struct, 1, 2, &[Name("i_mode"), N(3), N(0)]),
            ("outer", Kind::Struct, 2, 16, &[Name("a"), N(2), N(0), Name(""), N(6), N(64)]),
            ("", Kind::Union, 1, 8, &[Name("i_ino"), N(2), N(0)]),
            ("", Kind::Ptr, 0, 5, &[]),
            ("bpf_iter_x", Kind::Func, 0, 0, &[]),
            ("bits", Kind::Struct, (1 << 31) | 1, 4, &[Name("flag"), N(1), N((3 << 24) | 8)]),
            ("wrap", Kind::Struct, 2, 24, &[Name("pad"), N(2), N(0), Name("o"), N(5), N(64)]),
        ])
    }

    #[test]
    fn finds_fields_through_anonymous_members_and_typedefs() {
        let b = sample();
        let btf = Btf::parse(&b).unwrap();
        let inner = btf.find(Kind::Struct, b"inner").unwrap();
        let outer = btf.find(Kind::Struct, b"outer").unwrap();
        assert_eq!((inner, outer), (4, 5));
        let mode = btf.field(inner, b"i_mode").unwrap();
        assert_eq!(mode.byte_offset, 0);
        assert_eq!(btf.size(mode.type_id), Some(2));
        assert_eq!(btf.field(outer, b"i_ino").unwrap(), Field { byte_offset: 8, type_id: 2 });
        assert_eq!(btf.field(outer, b"a").unwrap().byte_offset, 0);
        assert_eq!(btf.field(outer, b"nope"), None);
        assert_eq!(btf.field(2, b"a"), None, "an int has no fields");
        assert_eq!(btf.size(7), Some(8));
        assert_eq!(btf.size(outer), Some(16));
        assert_eq!(btf.size(8), None, "a function has no size");
        assert_eq!(btf.path(10, &[b"o", b"i_ino"]), Some(Field { byte_offset: 16, type_id: 2 }));
        assert_eq!(btf.path(10, &[b"o"]).map(|f| f.type_id), Some(5));
        assert_eq!(btf.path(10, &[b"o", b"nope"]), None);
        assert_eq!(btf.path(10, &[b"pad", b"x"]), None, "no field inside an int");
        assert_eq!(btf.find(Kind::Func, b"bpf_iter_x"), Some(8));
        assert_eq!(btf.find(Kind::Func, b"bpf_iter_y"), None);
        assert_eq!(btf.field(9, b"flag"), None, "a bitfield is not a field");
    }

    #[test]
    fn refuses_bad_blobs() {
        let b = sample();
        assert_eq!(Btf::parse(&[]).unwrap_err(), BtfError::Header);
        assert_eq!(Btf::parse(&b[..10]).unwrap_err(), BtfError::Header);
        // Every cut of the blob is refused or parses; none panics.
        for cut in 0..b.len() {
            let _ = Btf::parse(&b[..cut]);
        }
        // A type section that ends inside a struct's members.
        let mut short = b.clone();
        let type_len = u32_at(&b, 12).unwrap();
        short[12..16].copy_from_slice(&(type_len - 4).to_ne_bytes());
        assert!(matches!(Btf::parse(&short), Err(BtfError::Type(_))));
        // An unknown kind.
        let mut odd = b.clone();
        odd[HEADER_LEN + 7] = 31;
        assert_eq!(Btf::parse(&odd).unwrap_err(), BtfError::Type(1));
        // A struct holding itself as anonymous members ends, unfound, at once.
        let anon = [W::Name(""), W::N(1), W::N(0)];
        let selfish: Vec<W> = (0..3 * 1000)
            .map(|i| match &anon[i % 3] {
                W::N(n) => W::N(*n),
                W::Name(s) => W::Name(s),
            })
            .collect();
        let nested = blob(&[("s", Kind::Struct, 1000, 4, &selfish)]);
        let nested = Btf::parse(&nested).unwrap();
        let t0 = std::time::Instant::now();
        assert_eq!(nested.field(1, b"x"), None);
        assert!(t0.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(nested.type_count(), 1);
        // A typedef loop resolves to nothing rather than hanging.
        let looped = blob(&[("t", Kind::Typedef, 0, 1, &[])]);
        assert_eq!(Btf::parse(&looped).unwrap().size(1), None);
    }

    #[test]
    fn sizes_arrays_and_counts_parameters() {
        use W::{N, Name};
        let b = blob(&[
            ("char", Kind::Int, 0, 1, &[N(8)]),                               // 1
            ("", Kind::Array, 0, 0, &[N(1), N(1), N(16)]),                    // 2: char[16]
            ("", Kind::Array, 0, 0, &[N(2), N(1), N(4)]),                     // 3: char[4][16]
            ("", Kind::FuncProto, 2, 1, &[Name("a"), N(1), Name("b"), N(1)]), // 4
            ("f", Kind::Func, 0, 4, &[]),                                     // 5
            ("g", Kind::Func, 0, 1, &[]),                                     // 6: its type is no prototype
            ("", Kind::Array, 0, 0, &[N(2), N(1), N(u32::MAX)]),              // 7: char[..][16]
        ]);
        let btf = Btf::parse(&b).unwrap();
        assert_eq!(btf.size(2), Some(16));
        assert_eq!(btf.size(3), Some(64));
        assert_eq!(btf.size(7), None, "an overflowing size is none");
        assert_eq!(btf.params(5), Some(2));
        assert_eq!((btf.params(6), btf.params(4), btf.params(99)), (None, None, None));
    }

    #[test]
    fn the_running_kernel_has_what_the_owner_scan_reads() {
        let Ok(blob) = std::fs::read("/sys/kernel/btf/vmlinux") else { return };
        let btf = Btf::parse(&blob).unwrap();
        assert!(btf.find(Kind::Func, b"bpf_iter_task_file").is_some());
        let file = btf.find(Kind::Struct, b"file").unwrap();
        assert_eq!(btf.size(btf.field(file, b"f_inode").unwrap().type_id), Some(8));
        let inode = btf.find(Kind::Struct, b"inode").unwrap();
        assert_eq!(btf.size(btf.field(inode, b"i_ino").unwrap().type_id), Some(8));
        let task = btf.find(Kind::Struct, b"task_struct").unwrap();
        assert_eq!(btf.size(btf.field(task, b"tgid").unwrap().type_id), Some(4));
    }
}
