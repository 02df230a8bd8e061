//! A `mountinfo` is read whole ("Trust, round three", attack 3): a read of
//! it that returns less than asked is not its end, since seq_file stops a
//! read early whenever the next line does not fit, and overlay mounts on
//! container hosts have lines of several hundred bytes. A network namespace
//! reachable only through an nsfs mount that follows long lines is listed,
//! and a query for it finds it. And a `mountinfo` past its bound (16 MiB) is
//! read up to it, counted in `files_truncated`.
//!
//! Each namespace here is made by mountns.py in a private mount namespace
//! of its own (the host's mounts are untouched): no process, thread or fd
//! is in it, only a bind mount there leads to it.

use std::collections::HashMap;
use std::io::Read;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::child::{Reaped, python3, script, start_until_ready};
use procspy::{Error, OwnerScan, Protocols, Query, Source, StateMask, Stats, Walker};

/// One real-namespace test at a time: each pass lists every namespace of
/// the host, and reads every mount namespace's `mountinfo`.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// TCP state TIME_WAIT.
const TIME_WAIT: u8 = 6;

/// An empty directory the helper mounts a tmpfs on; removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("procspy-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A namespace the helper made: its inode and its TIME_WAIT's ports.
#[derive(Clone, Copy, Debug)]
struct Made {
    netns: u64,
    local_port: u16,
    remote_port: u16,
}

/// mountns.py: killed on drop (its mounts and namespaces go with it), then
/// its directory removed.
struct MountNs {
    _child: Reaped,
    pid: i32,
    dir: String,
    made: HashMap<String, Made>,
    _dir: TempDir,
}

impl MountNs {
    fn start(tag: &str, steps: &[&str]) -> MountNs {
        let dir = TempDir::new(tag);
        let path = dir.0.to_str().unwrap().to_string();
        let mut cmd = Command::new(python3());
        cmd.arg(script("mountns.py")).arg(&path).args(steps).stdin(Stdio::piped());
        let started = start_until_ready(&mut cmd, "mountns.py");
        let made = started
            .lines
            .iter()
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                assert_eq!(f[0], "ns", "mountns.py: {l}");
                let made = Made {
                    netns: f[2].parse().unwrap(),
                    local_port: f[3].parse().unwrap(),
                    remote_port: f[4].parse().unwrap(),
                };
                (f[1].to_string(), made)
            })
            .collect();
        let pid = started.child.0.id() as i32;
        MountNs { _child: started.child, pid, dir: path, made, _dir: dir }
    }

    fn made(&self, name: &str) -> Made {
        let made = self.made[name];
        assert_ne!(common::proc::netns_of(self.pid), made.netns, "the helper is in {name}");
        made
    }

    /// The sizes of the reads of its `mountinfo` (64 KiB asked each time)
    /// up to the one that holds the mount on `name`, that one included.
    fn reads_up_to(&self, name: &str) -> Vec<usize> {
        let mut file = std::fs::File::open(format!("/proc/{}/mountinfo", self.pid)).unwrap();
        let needle = format!(" {}/{name} ", self.dir);
        let mut reads = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            // One read(2) each, as the library reads; each returns whole lines.
            let n = file.read(&mut buf).unwrap();
            assert_ne!(n, 0, "no mount on {name}");
            reads.push(n);
            if buf[..n].windows(needle.len()).any(|w| w == needle.as_bytes()) {
                return reads;
            }
        }
    }
}

/// The TIME_WAIT lines of `made`'s namespace that a pass of `w` (with
/// `query`) delivered, its result and stats.
fn time_waits(w: &Walker, query: &Query<'_>, made: Made) -> (Result<(), Error>, usize, Stats) {
    let mut stats = Stats::default();
    let mut got = 0;
    let both = Protocols { tcp: true, udp: true };
    let r = w.query(None, query, both, StateMask::ALL, &mut stats, &mut |c| {
        got += usize::from(
            c.netns == made.netns
                && c.conn.state == TIME_WAIT
                && c.conn.local_port == made.local_port
                && c.conn.remote_port == made.remote_port
                && c.owner.is_none(),
        );
        ControlFlow::Continue(())
    });
    (r, got, stats)
}

/// The TIME_WAIT of `made` is listed by a default pass and by a query for
/// its namespace, with every owner scan and each source that can enter a
/// namespace no thread is in.
fn check_listed(made: Made, why: &str) -> Stats {
    let mut last = Stats::default();
    for scan in [OwnerScan::Auto, OwnerScan::Proc] {
        for source in [Source::Auto, Source::Netlink] {
            let w = Walker::new(None).unwrap();
            w.set_owner_scan(scan);
            w.set_source(source);
            let what = format!("{why}, owners {scan:?}, source {source:?}");
            let (r, got, stats) = time_waits(&w, &Query::default(), made);
            assert_eq!((r, got), (Ok(()), 1), "{what}: the TIME_WAIT, in a default pass: {stats:?}");
            assert!(stats.netns_found >= 1, "{what}: {stats:?}");
            let only = [made.netns];
            let (r, got, stats) = time_waits(&w, &Query { netns: Some(&only), ..Query::default() }, made);
            assert_eq!((r, got), (Ok(()), 1), "{what}: the TIME_WAIT, in a query for netns {}: {stats:?}", made.netns);
            last = stats;
        }
    }
    last
}

/// The case, made certain: twelve mounts whose lines are 700 bytes
/// (five fill a read to 3,500, and the sixth does not fit), then the nsfs
/// mount.
#[test]
fn a_namespace_mounted_after_long_mountinfo_lines_is_listed() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let m = MountNs::start("mountinfo-long", &["long:12:700", "ns:after"]);
    let made = m.made("after");
    // The attack's premise: a read before the one that holds the mount
    // returns less than a reader assuming short lines takes for the end.
    let reads = m.reads_up_to("after");
    assert!(reads[..reads.len() - 1].iter().any(|&n| n < 3840), "no short read before the nsfs mount: {reads:?}");
    check_listed(made, "an nsfs mount after long mountinfo lines");
}

/// A `mountinfo` past 16 MiB (5,000 stacked bind mounts of some 3,500
/// bytes each): read up to the bound, whole lines only, and counted; the
/// namespace mounted before the long lines is still listed.
#[test]
fn a_mountinfo_past_its_bound_is_read_to_it_and_counted() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let m = MountNs::start("mountinfo-big", &["ns:before", "stack:5000", "ns:beyond"]);
    let made = m.made("before");
    let size: usize = m.reads_up_to("beyond").iter().sum();
    assert!(size > 16 << 20, "the mountinfo is not past 16 MiB: {size} bytes");
    let stats = check_listed(made, "an nsfs mount before 16 MiB of mountinfo");
    assert!(stats.files_truncated >= 1, "the mountinfo past its bound was not counted: {stats:?}");
}
