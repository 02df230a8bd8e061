//! A transient failure while loading the BPF owner scan (no fd free for a
//! step of the load) is reported, and not kept: once fds are free again the
//! scan loads, in the same walkers and in new ones. (Its own
//! test binary: the fd limit is process-wide, and so is the program the
//! library assembles once.)

use std::ops::ControlFlow;

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use procspy::engine::{OwnerScan, Protocols};
use procspy::{Error, StateMask, Stats, Walker};

fn connections(w: &Walker) -> Result<(), Error> {
    let mut stats = Stats::default();
    w.connections(None, Protocols::BOTH, StateMask::ALL, &mut stats, &mut |_| ControlFlow::Continue(()))
}

#[test]
fn emfile_at_the_first_bpf_load_is_not_kept() {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let mut failed = Vec::new();
    let walkers: Vec<Walker> = (0..8)
        .map(|extra| {
            let w = Walker::new(None).unwrap();
            w.set_owner_scan(OwnerScan::Bpf);
            let free = std::os::fd::AsRawFd::as_raw_fd(&std::fs::File::open("/dev/null").unwrap()) as u64;
            setrlimit(Resource::RLIMIT_NOFILE, free + 1 + extra, hard).unwrap();
            let r = connections(&w);
            setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
            match r {
                Err(Error::Io { errno: libc::EMFILE, path }) => failed.push(path),
                other => assert!(other.is_ok() || matches!(other, Err(Error::Unsupported(_))), "{other:?}"),
            }
            w
        })
        .collect();
    // Where the kernel runs the scan, a bpf() call that makes an fd ran out.
    if common::kernel_has_bpf_owner_scan() {
        assert!(failed.iter().any(|p| p.contains("BPF owner scan: bpf(")), "{failed:?}");
    }
    let fresh = Walker::new(None).unwrap();
    fresh.set_owner_scan(OwnerScan::Bpf);
    for w in walkers.iter().chain([&fresh]) {
        common::assert_bpf_owner_scan_as_the_kernel_should(&connections(w));
    }
}
