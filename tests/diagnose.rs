//! What a walker learns of the running kernel, as `Walker::diagnose` (and
//! the CLI's `--diagnose`) tells it, judged against the kernel apart from
//! the library.

use std::ops::ControlFlow;

use common::fake::FakeRoot;
use procspy::{OwnerScan, Protocols, Source, StateMask, Stats, Walker};

/// The answer `diagnose` gives for `what`.
fn answer(w: &Walker, what: &str) -> String {
    let text = w.diagnose();
    let line = text.lines().find(|l| l.starts_with(what)).unwrap_or_else(|| panic!("no {what:?} in {text}"));
    line.split_once(": ").map(|(_, a)| a.to_string()).unwrap_or_default()
}

/// A walker of `root` with these settings, after one pass; the pass's result.
fn after_pass(root: Option<&[u8]>, source: Source, scan: OwnerScan) -> (Walker, Result<(), procspy::Error>) {
    let w = Walker::new(root).unwrap();
    w.set_source(source);
    w.set_owner_scan(scan);
    let r =
        w.connections(None, Protocols::BOTH, StateMask::ALL, &mut Stats::default(), &mut |_| ControlFlow::Continue(()));
    (w, r)
}

#[test]
fn a_new_walker_has_probed_nothing() {
    let w = Walker::new(None).unwrap();
    for what in ["namespace files", "IPv6 tables", "one TCP dump", "openat2", "BPF owner scan"] {
        let a = answer(&w, what);
        assert!(a.starts_with("not "), "{what}: {a}");
    }
}

#[test]
fn the_text_pass_learns_what_this_kernel_has() {
    let (w, r) = after_pass(None, Source::Text, OwnerScan::Proc);
    assert_eq!(r, Ok(()));
    assert_eq!(answer(&w, "namespace files"), "yes");
    let v6 = std::path::Path::new("/proc/self/net/tcp6").exists();
    assert_eq!(answer(&w, "IPv6 tables"), if v6 { "yes" } else { "no" });
    // Open beneath the root: what this kernel's openat2 says of a harmless call.
    let openat2 = unsafe { libc::syscall(libc::SYS_openat2, -1, c"".as_ptr(), std::ptr::null::<u8>(), 0usize) };
    let exists = openat2 == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS);
    assert_eq!(answer(&w, "openat2"), if exists { "yes" } else { "no" });
    assert_eq!(answer(&w, "one TCP dump"), "not probed yet", "no netlink in a text pass");
    assert_eq!(answer(&w, "BPF owner scan"), "not loaded yet", "PID/fd owners only");
}

#[test]
fn the_bpf_scan_is_told_as_the_kernel_should_have_it() {
    let (w, r) = after_pass(None, Source::Auto, OwnerScan::Bpf);
    let a = answer(&w, "BPF owner scan");
    if common::assert_bpf_owner_scan_as_the_kernel_should(&r) {
        assert_eq!(a, "yes");
    } else {
        assert!(a.starts_with("no: ") && a.contains("kernel"), "{a}");
    }
}

#[test]
fn a_netlink_pass_learns_whether_one_tcp_dump_takes_both_families() {
    let (w, r) = after_pass(None, Source::Netlink, OwnerScan::Proc);
    assert_eq!(r, Ok(()));
    // Every kernel since 2.6.14 answers TCPDIAG_GETSOCK; one that did not would say no.
    assert!(["yes", "no"].contains(&answer(&w, "one TCP dump").as_str()));
}

/// A root like a kernel before 3.8: no `ns/net`, namespaces told apart by
/// `net/dev`. The probe says so, and nothing else is claimed.
#[test]
fn a_root_without_namespace_files_is_told_so() {
    let f = FakeRoot::new("old-kernel");
    f.file("42/stat", &common::fake::stat_line(42, b"old", 1));
    f.file("42/net/dev", b"Inter-|   Receive\n");
    f.file("42/net/tcp", b"  sl  local_address rem_address   st\n");
    f.file("42/net/udp", b"  sl  local_address rem_address   st\n");
    f.dir("42/fd");
    let (w, r) = after_pass(Some(f.path.as_os_str().as_encoded_bytes()), Source::Text, OwnerScan::Proc);
    assert_eq!(r, Ok(()));
    assert_eq!(answer(&w, "namespace files"), "no");
    assert_eq!(answer(&w, "IPv6 tables"), "no", "no tcp6 beside net/");
}
