//! Real processes with real loopback sockets, in namespaces of their own,
//! and fake proc roots that lead to them.

pub mod child;
pub mod fake;
pub mod netns;
pub mod proc;
pub mod rec;

use std::io::{BufRead, BufReader};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};

use child::{Reaped, python3, start_until_ready};
use proc::netns_of;

pub const HOLDER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/holder.py");

/// One socket fd a holder reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub fd: i32,
    pub inode: u64,
    pub proto: procspy::Protocol,
    pub family: u8,
    pub state: u8,
    pub local_port: u16,
    pub remote_port: u16,
}

/// A python3 process holding TCP and UDP sockets, v4 and v6; killed on drop.
pub struct Holder {
    _child: Reaped,
    pub pid: i32,
    pub netns: u64,
    pub socks: Vec<Held>,
}

impl Holder {
    /// In a new network namespace (`unshare -n`) or, with `new_netns`
    /// false, in this one; `name` becomes its comm.
    pub fn start(new_netns: bool, name: Option<&str>) -> Holder {
        Self::start_with(if new_netns { &["unshare", "-n"] } else { &[] }, name)
    }

    /// Run through `prefix` (e.g. `unshare -n`, `setpriv ...`).
    pub fn start_with(prefix: &[&str], name: Option<&str>) -> Holder {
        Self::spawn(prefix, name, &[], HOLDER_SCRIPT)
    }

    /// Run through `prefix`, from a copy of the script at `script` (one an
    /// unprivileged user can reach).
    pub fn start_script(prefix: &[&str], name: Option<&str>, script: &str) -> Holder {
        Self::spawn(prefix, name, &[], script)
    }

    /// In a new network namespace, with `extra` unreported listeners per
    /// family to make its tables long.
    pub fn start_big(extra: usize) -> Holder {
        Self::spawn(&["unshare", "-n"], None, &[("PROCSPY_HOLDER_EXTRA", &extra.to_string())], HOLDER_SCRIPT)
    }

    /// In a new network namespace, also holding `n` unix sockets (which no
    /// table lists).
    pub fn start_with_unix(n: usize) -> Holder {
        Self::spawn(&["unshare", "-n"], None, &[("PROCSPY_HOLDER_UNIX", &n.to_string())], HOLDER_SCRIPT)
    }

    /// In a new network namespace whose tables also list sockets no process
    /// holds: one TIME_WAIT, one connection never accepted.
    pub fn start_with_unheld() -> Holder {
        Self::spawn(&["unshare", "-n"], None, &[("PROCSPY_HOLDER_UNHELD", "1")], HOLDER_SCRIPT)
    }

    fn spawn(prefix: &[&str], name: Option<&str>, env: &[(&str, &str)], script: &str) -> Holder {
        let mut argv: Vec<&str> = prefix.to_vec();
        argv.extend([python3(), script]);
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..]).args(name).envs(env.iter().copied()).stdin(Stdio::piped());
        let started = start_until_ready(&mut cmd, "holder.py");
        let pid = started.child.0.id() as i32;
        let socks: Vec<Held> = started
            .lines
            .iter()
            .map(|line| {
                let f: Vec<&str> = line.split(' ').collect();
                Held {
                    fd: f[0].parse().unwrap(),
                    inode: f[1].parse().unwrap(),
                    proto: if f[2] == "tcp" { procspy::Protocol::Tcp } else { procspy::Protocol::Udp },
                    family: f[3].parse().unwrap(),
                    state: f[4].parse().unwrap(),
                    local_port: f[5].parse().unwrap(),
                    remote_port: f[6].parse().unwrap(),
                }
            })
            .collect();
        assert_eq!(socks.len(), 10, "holder {pid} did not get ready");
        Holder { _child: started.child, pid, netns: netns_of(pid), socks }
    }

    /// This holder's start time, field 22 of its stat.
    pub fn start_time(&self) -> u64 {
        proc::start_time(self.pid)
    }
}

/// Whether this kernel should run the BPF owner scan, judged apart from
/// the library: its BTF names the `task_file` iterator and every helper the
/// program calls. The tests run as root, which has CAP_BPF and CAP_PERFMON.
pub fn kernel_has_bpf_owner_scan() -> bool {
    let Ok(btf) = std::fs::read("/sys/kernel/btf/vmlinux") else { return false };
    let has = |name: &str| {
        let needle = [b"\0", name.as_bytes(), b"\0"].concat();
        btf.windows(needle.len()).any(|w| w == needle)
    };
    ["bpf_iter_task_file", "BPF_FUNC_sock_from_file", "BPF_FUNC_probe_read_kernel", "BPF_FUNC_seq_write"]
        .into_iter()
        .all(has)
}

/// The BPF owner scan where the kernel should run it: OK, or the test fails
/// with the refusal (for a verifier's, the end of its log). Where the kernel
/// lacks it: `PROCSPY_UNSUPPORTED`'s error, whose message says so.
pub fn assert_bpf_owner_scan_as_the_kernel_should(r: &Result<(), procspy::Error>) -> bool {
    if kernel_has_bpf_owner_scan() {
        assert_eq!(r, &Ok(()), "this kernel has what the BPF owner scan needs, yet it failed");
        true
    } else {
        assert!(matches!(r, Err(procspy::Error::Unsupported(m)) if m.contains("kernel")), "{r:?}");
        false
    }
}

pub const ACTOR_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/actor.py");

/// A python3 process that changes its sockets on command (actor.py);
/// killed on drop, with the children it forked.
pub struct Actor {
    _child: Reaped,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
    pub pid: i32,
    pub netns: u64,
}

impl Actor {
    /// In a new network namespace (`unshare -n`), or in this one.
    pub fn start(new_netns: bool) -> Actor {
        let mut argv: Vec<&str> = if new_netns { vec!["unshare", "-n"] } else { vec![] };
        argv.extend([python3(), ACTOR_SCRIPT]);
        let mut started = start_until_ready(Command::new(argv[0]).args(&argv[1..]).stdin(Stdio::piped()), "actor.py");
        let pid = started.child.0.id() as i32;
        assert!(started.lines.is_empty(), "actor {pid} did not start: {:?}", started.lines);
        let stdin = started.child.0.stdin.take().unwrap();
        Actor { _child: started.child, stdin, out: started.out, pid, netns: netns_of(pid) }
    }

    /// Sends one command; its answer's numbers.
    pub fn ask(&mut self, cmd: &str) -> Vec<i64> {
        use std::io::Write;
        writeln!(self.stdin, "{cmd}").unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line == "ok" {
            return Vec::new();
        }
        line.split(' ').map(|w| w.parse().unwrap_or_else(|_| panic!("actor: {cmd:?} answered {line:?}"))).collect()
    }
}

/// `f`'s result, failing the test if it took `limit` or longer (`what` hung).
pub fn within<R>(limit: std::time::Duration, what: &str, f: impl FnOnce() -> R) -> R {
    let t0 = std::time::Instant::now();
    let r = f();
    assert!(t0.elapsed() < limit, "{what} hung: {:?}", t0.elapsed());
    r
}

/// How long the churn tests churn: PROCSPY_CHURN_SECS, default 3.
pub fn churn_secs() -> f64 {
    std::env::var("PROCSPY_CHURN_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0)
}

/// Whether a user namespace can be made at all, by the user `prefix` runs
/// as: never from a chroot (the kernel matrix runs its guests' suite in
/// one), nor where the kernel keeps them off for that user. Where it can't,
/// no caller or attacker gets into one either, and the test says so.
pub fn user_namespaces_allowed(prefix: &[&str]) -> bool {
    let argv: Vec<&str> = prefix.iter().copied().chain(["unshare", "-U", "-r", "true"]).collect();
    let ok = Command::new(argv[0]).args(&argv[1..]).status().is_ok_and(|s| s.success());
    if !ok {
        eprintln!("no user namespace can be made here ({}): nothing to test", argv.join(" "));
    }
    ok
}
