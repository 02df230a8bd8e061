//! A kernel's BTF cut down to what the programs read, at fixed offsets:
//! the kernel their committed listings are assembled for.

use super::asm::Insn;
use super::load::Program;
use crate::parse::btf::Kind;
use crate::parse::btf::build::{W as Word, blob};

/// Every jump of `p` lands on an instruction of it, forward, and it
/// ends in `exit`.
pub(super) fn check_jumps(p: &Program) {
    let insns = p.code.insns();
    assert_eq!(insns.last(), Some(&Insn::Exit));
    let starts: Vec<usize> = insns.iter().scan(0, |slot, i| Some(std::mem::replace(slot, *slot + i.slots()))).collect();
    for (&at, ins) in starts.iter().zip(insns) {
        if let Insn::Ja { off } | Insn::Jmp { off, .. } = *ins {
            assert!(off >= 0 && starts.contains(&(at + 1 + off as usize)), "jump at {at}: {off}");
        }
    }
}

/// `programs` as the committed listing `src/bpf/NAME` (`committed`, its
/// `include_str!`), which `PROCSPY_BLESS=1` rewrites instead; each one's
/// jumps land, and its encoding decodes back to it, instruction by
/// instruction (map `i` encoded as `i`).
pub(super) fn check_listing(programs: &[Program], name: &str, committed: &str) {
    let listing: Vec<String> = programs.iter().map(Program::to_string).collect();
    let listing = listing.join("\n");
    if std::env::var_os("PROCSPY_BLESS").is_some() {
        std::fs::write(format!("{}/src/bpf/{name}", env!("CARGO_MANIFEST_DIR")), &listing).unwrap();
    }
    assert_eq!(listing, committed, "{name}: a program changed: PROCSPY_BLESS=1 to accept");
    for p in programs {
        check_jumps(p);
        let code = p.code.encode(&[0, 1, 2, 3, 4]);
        let mut at = 0;
        for &i in p.code.insns() {
            let (back, n) = Insn::decode(&code[at..]).unwrap();
            assert_eq!(back, i);
            at += n;
        }
        assert_eq!(at, code.len());
    }
}

/// A kernel's BTF cut down to what the program reads, at fixed offsets,
/// with `helpers` as its `enum bpf_func_id`.
pub(super) fn small_kernel(helpers: &[(&'static str, u32)]) -> Vec<u8> {
    use Word::{N, Name};
    let bits = |bytes: u32| N(bytes * 8);
    let ids: Vec<Word> = helpers.iter().flat_map(|&(name, id)| [Name(name), N(id)]).collect();
    blob(&[
        ("unsigned int", Kind::Int, 0, 4, &[N(32)]),           // 1
        ("long long unsigned int", Kind::Int, 0, 8, &[N(64)]), // 2
        ("short unsigned int", Kind::Int, 0, 2, &[N(16)]),     // 3
        ("unsigned char", Kind::Int, 0, 1, &[N(8)]),           // 4
        ("", Kind::Ptr, 0, 0, &[]),                            // 5
        ("bpf_iter_task_file", Kind::Func, 0, 0, &[]),         // 6
        (
            "bpf_iter__task_file",
            Kind::Struct,
            4,
            32,
            &[
                Name("meta"),
                N(5),
                bits(0),
                Name("task"),
                N(5),
                bits(8),
                Name("fd"),
                N(1),
                bits(16),
                Name("file"),
                N(5),
                bits(24),
            ],
        ), // 7
        ("bpf_iter_meta", Kind::Struct, 1, 24, &[Name("seq"), N(5), bits(0)]), // 8
        ("socket", Kind::Struct, 2, 128, &[Name("sk"), N(5), bits(24), Name("ops"), N(5), bits(32)]), // 9
        ("file", Kind::Struct, 1, 256, &[Name("f_inode"), N(5), bits(32)]), // 10
        ("inode", Kind::Struct, 1, 600, &[Name("i_ino"), N(2), bits(64)]), // 11
        (
            "task_struct",
            Kind::Struct,
            7,
            4096,
            &[
                Name("stack"),
                N(5),
                bits(24),
                Name("tgid"),
                N(1),
                bits(2000),
                Name("nsproxy"),
                N(5),
                bits(2040),
                Name("group_leader"),
                N(5),
                bits(2048),
                Name("start_boottime"),
                N(2),
                bits(2056),
                Name("mm"),
                N(5),
                bits(2064),
                Name("comm"),
                N(30),
                bits(2072),
            ],
        ), // 12
        ("possible_net_t", Kind::Struct, 1, 8, &[Name("net"), N(5), bits(0)]), // 13
        ("in6_addr", Kind::Struct, 0, 16, &[]),                // 14
        (
            "sock_common",
            Kind::Struct,
            9,
            136,
            &[
                Name("skc_daddr"),
                N(1),
                bits(0),
                Name("skc_rcv_saddr"),
                N(1),
                bits(4),
                Name("skc_dport"),
                N(3),
                bits(12),
                Name("skc_num"),
                N(3),
                bits(14),
                Name("skc_family"),
                N(3),
                bits(16),
                Name("skc_state"),
                N(4),
                bits(18),
                Name("skc_net"),
                N(13),
                bits(48),
                Name("skc_v6_daddr"),
                N(14),
                bits(56),
                Name("skc_v6_rcv_saddr"),
                N(14),
                bits(72),
            ],
        ), // 15
        ("kuid_t", Kind::Typedef, 0, 17, &[]),                 // 16
        ("", Kind::Struct, 1, 4, &[Name("val"), N(1), bits(0)]), // 17
        (
            "sock",
            Kind::Struct,
            5,
            760,
            &[
                Name("__sk_common"),
                N(15),
                bits(0),
                Name("sk_protocol"),
                N(3),
                bits(516),
                Name("sk_type"),
                N(3),
                bits(518),
                Name("sk_uid"),
                N(16),
                bits(600),
                Name("sk_socket"),
                N(5),
                bits(608),
            ],
        ), // 18
        ("ns_common", Kind::Struct, 2, 24, &[Name("ops"), N(5), bits(8), Name("inum"), N(1), bits(16)]), // 19
        ("net", Kind::Struct, 2, 4000, &[Name("list"), N(45), bits(24), Name("ns"), N(19), bits(120)]), // 20
        ("atomic_t", Kind::Typedef, 0, 22, &[]),               // 21
        ("", Kind::Struct, 1, 4, &[Name("counter"), N(23), bits(0)]), // 22
        ("int", Kind::Int, 0, 4, &[N((1 << 24) | 32)]),        // 23
        ("request_sock_queue", Kind::Struct, 1, 64, &[Name("qlen"), N(21), bits(8)]), // 24
        ("inet_connection_sock", Kind::Struct, 1, 1400, &[Name("icsk_accept_queue"), N(24), bits(1000)]), // 25
        ("tcp_sock", Kind::Struct, 1, 2200, &[Name("inet_conn"), N(25), bits(0)]), // 26
        ("bpf_func_id", Kind::Enum, helpers.len() as u32, 4, &ids), // 27
        ("nsproxy", Kind::Struct, 1, 72, &[Name("net_ns"), N(5), bits(64)]), // 28
        ("char", Kind::Int, 0, 1, &[N(8)]),                    // 29
        ("", Kind::Array, 0, 0, &[N(29), N(1), N(16)]),        // 30: char[16]
        ("socket_alloc", Kind::Struct, 2, 768, &[Name("socket"), N(9), bits(0), Name("vfs_inode"), N(11), bits(128)]), // 31
        ("msghdr", Kind::Struct, 1, 96, &[Name("msg_name"), N(5), bits(0)]), // 32
        ("btf_trace_inet_sock_set_state", Kind::Typedef, 0, 5, &[]),         // 33
        ("", Kind::FuncProto, 2, 5, &[Name("sk"), N(5), Name("arg"), N(5)]), // 34
        ("", Kind::FuncProto, 3, 1, &[Name("sk"), N(5), Name("uaddr"), N(5), Name("addr_len"), N(1)]), // 35
        ("", Kind::FuncProto, 1, 0, &[Name("sk"), N(5)]),                    // 36
        ("security_sock_graft", Kind::Func, 0, 34, &[]),                     // 37
        ("tcp_close", Kind::Func, 0, 34, &[]),                               // 38
        ("udp_sendmsg", Kind::Func, 0, 35, &[]),                             // 39
        ("udpv6_sendmsg", Kind::Func, 0, 35, &[]),                           // 40
        ("__ip4_datagram_connect", Kind::Func, 0, 35, &[]),                  // 41
        ("__ip6_datagram_connect", Kind::Func, 0, 35, &[]),                  // 42
        ("udp_destroy_sock", Kind::Func, 0, 36, &[]),                        // 43
        ("udpv6_destroy_sock", Kind::Func, 0, 36, &[]),                      // 44
        ("list_head", Kind::Struct, 2, 16, &[Name("next"), N(5), bits(0), Name("prev"), N(5), bits(8)]), // 45
        ("proto_ops", Kind::Struct, 1, 200, &[Name("family"), N(23), bits(0)]), // 46
        ("irq_stack", Kind::Struct, 0, 16384, &[]),                          // 47
    ])
}

/// The owner scan's helpers (the namespace list's among them), then the
/// tracer's.
pub(super) const HELPERS: [(&str, u32); 13] = [
    ("BPF_FUNC_map_lookup_elem", 1),
    ("BPF_FUNC_probe_read_kernel", 113),
    ("BPF_FUNC_seq_write", 127),
    ("BPF_FUNC_sock_from_file", 162),
    ("BPF_FUNC_map_update_elem", 2),
    ("BPF_FUNC_get_current_pid_tgid", 14),
    ("BPF_FUNC_get_socket_cookie", 46),
    ("BPF_FUNC_ringbuf_output", 130),
    ("BPF_FUNC_ktime_get_boot_ns", 125),
    ("BPF_FUNC_get_current_task_btf", 158),
    ("BPF_FUNC_ringbuf_query", 134),
    ("BPF_FUNC_get_current_task", 35),
    ("BPF_FUNC_task_storage_get", 156),
];
