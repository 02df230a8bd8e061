//! Live events from the kernel's own hooks: processes that live a few
//! milliseconds, seen with their own pid, in the root namespace and in
//! another; on loopback, where the kernel runs one side's softirq in the
//! other's context, never the wrong owner; a flooded ring's loss counted
//! and told, nothing invented; a stop ends a waiting call. Each asserts
//! what this kernel's attached hooks should show (`diagnose` lists them).

use std::ops::ControlFlow;
use std::process::Command;
use std::time::{Duration, Instant};

use common::child::{Reaped, python3, start_until_ready};
use common::proc::{netns_of, start_time};
use procspy::{Error, EventKind, Protocol, Protocols, Stats, TcpState, Walker};

/// An event, kept past its callback.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    kind: EventKind,
    protocol: Protocol,
    netns: u64,
    state: u8,
    old_state: u8,
    local_port: u16,
    remote_port: u16,
    cookie: u64,
    owner: Option<(i32, u64, String)>,
    lost: u64,
}

/// A walker whose tracer runs, or `None` (and why) where this kernel
/// lacks what it needs.
fn tracing() -> Option<Walker> {
    runs(Walker::new(None).unwrap())
}

/// `w` with its tracer started. A verifier's refusal fails the test: where
/// the kernel has all the state hook's program asks for, it must load.
fn runs(w: Walker) -> Option<Walker> {
    match w.events(Duration::ZERO, Protocols::BOTH, &mut Stats::default(), &mut |_| ControlFlow::Continue(())) {
        Ok(()) => Some(w),
        Err(Error::Unsupported(why)) if !why.contains("verifier") => {
            eprintln!("the tracer does not run on this kernel: {why}");
            None
        }
        Err(e) => panic!("the tracer failed to start: {e}"),
    }
}

/// Whether `hook` (as diagnose names it, "fentry/security_sock_graft") attached.
fn attached(w: &Walker, hook: &str) -> bool {
    let text = w.diagnose();
    let line = text.lines().find(|l| l.starts_with("BPF tracer") && l.contains(hook)).expect("a line for each hook");
    line.ends_with(": attached")
}

/// Events until `done` says so of what was collected, or `within`.
fn collect(w: &Walker, within: Duration, mut done: impl FnMut(&[Seen]) -> bool) -> Vec<Seen> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    while !done(&seen) && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
        w.events(left, Protocols::BOTH, &mut Stats::default(), &mut |e| {
            let c = &e.connection;
            let owner = c.owner.map(|o| (o.pid, o.start_time, o.name.to_string_lossy().into_owned()));
            seen.push(Seen {
                kind: e.kind,
                protocol: c.protocol,
                netns: c.netns,
                state: c.conn.state,
                old_state: e.old_state,
                local_port: c.conn.local_port,
                remote_port: c.conn.remote_port,
                cookie: e.cookie,
                owner,
                lost: e.lost,
            });
            ControlFlow::Continue(())
        })
        .unwrap();
    }
    seen
}

fn pid_of(e: &Seen) -> Option<i32> {
    e.owner.as_ref().map(|o| o.0)
}

/// A python3 TCP server that accepts one connection, closes it at once
/// and exits: its pid and port.
fn one_shot_server(wrap: &[&str]) -> (Reaped, i32, u16) {
    let code = "import socket\nl = socket.socket()\nl.bind(('127.0.0.1', 0))\nl.listen()\n\
                print(l.getsockname()[1]); print('ready', flush=True)\nc, _ = l.accept()\nc.close()\nl.close()\n";
    let mut cmd = Command::new(wrap.first().copied().unwrap_or(python3()));
    cmd.args(&wrap[wrap.len().min(1)..]);
    if !wrap.is_empty() {
        cmd.arg(python3());
    }
    let s = start_until_ready(cmd.args(["-c", code]), "one-shot server");
    let port = s.lines[0].parse().unwrap();
    let pid = s.child.0.id() as i32;
    (s.child, pid, port)
}

/// A python3 process that connects to `port` on loopback, closes at once
/// and exits; its pid.
fn one_shot_client(port: u16, wrap: &[&str]) -> i32 {
    let code = format!("import socket\nsocket.create_connection(('127.0.0.1', {port})).close()\n");
    let mut cmd = Command::new(wrap.first().copied().unwrap_or(python3()));
    cmd.args(&wrap[wrap.len().min(1)..]);
    if !wrap.is_empty() {
        cmd.arg(python3());
    }
    let mut child = cmd.args(["-c", &code]).spawn().unwrap();
    let pid = child.id() as i32;
    assert!(child.wait().unwrap().success());
    pid
}

/// Processes that live a few milliseconds: the client's connect names the
/// client, the server's listen and its close name the server; the server's
/// half of the connection, born in softirq while the client ran, never
/// names the client (bcc #2304), and the client's half never the server.
fn short_lived_pair(wrap: &[&str], netns: impl Fn(i32) -> u64) {
    let Some(w) = tracing() else { return };
    let (server, spid, port) = one_shot_server(wrap);
    let snetns = netns(spid);
    let cpid = one_shot_client(port, wrap);
    drop(server);
    let ours = |e: &Seen| e.netns == snetns && (e.local_port == port || e.remote_port == port);
    // Whichever side closes first, the client's close enters FIN_WAIT1 or LAST_ACK.
    let closes = |e: &Seen| [TcpState::FinWait1, TcpState::LastAck].map(TcpState::number).contains(&e.state);
    let client_closed = |s: &[Seen]| {
        let connect = s.iter().find(|e| ours(e) && e.kind == EventKind::Connect);
        connect.is_some_and(|c| s.iter().any(|e| e.cookie == c.cookie && closes(e)))
    };
    let accept_hook = attached(&w, "fentry/security_sock_graft");
    let all = collect(&w, Duration::from_secs(5), |s| {
        client_closed(s)
            && s.iter().any(|e| ours(e) && e.old_state == TcpState::SynRecv.number())
            && (!accept_hook || s.iter().any(|e| ours(e) && e.kind == EventKind::Accept))
    });
    // Events the tracer told lost meanwhile (the kernel passes its program
    // over for a state change in a softirq that interrupted it): where one
    // of this pair's is missing, the failure says so.
    let told_lost: u64 = all.iter().map(|e| e.lost).sum();
    let seen: Vec<Seen> = all.into_iter().filter(ours).collect();
    let find = |kind: EventKind, state: TcpState| seen.iter().find(|e| e.kind == kind && e.state == state.number());
    let listen = find(EventKind::Listen, TcpState::Listen).unwrap_or_else(|| panic!("no listen: {seen:#?}"));
    assert_eq!(pid_of(listen), Some(spid));
    assert_eq!(listen.owner.as_ref().unwrap().2, "python3");
    let connect = find(EventKind::Connect, TcpState::SynSent).unwrap_or_else(|| panic!("no connect: {seen:#?}"));
    assert_eq!((pid_of(connect), connect.remote_port), (Some(cpid), port));
    let client = connect.cookie;
    let closing = seen.iter().find(|e| e.cookie == client && closes(e));
    assert_eq!(closing.map(pid_of), Some(Some(cpid)), "the client's close ({told_lost} told lost): {seen:#?}");
    for e in &seen {
        let owner = pid_of(e);
        if e.cookie == client {
            assert!(owner.is_none_or(|p| p == cpid), "the client's socket named another process: {e:?}");
        } else {
            assert!(owner.is_none_or(|p| p == spid), "a server socket named another process: {e:?}");
        }
        assert_eq!((e.protocol, e.lost), (Protocol::Tcp, 0));
    }
    let server_half: Vec<&Seen> = seen.iter().filter(|e| e.local_port == port && e.cookie != listen.cookie).collect();
    let born = |e: &&&Seen| e.old_state == TcpState::SynRecv.number() && e.state == TcpState::Established.number();
    assert!(server_half.iter().find(born).is_some_and(|e| e.owner.is_none()), "{seen:#?}");
    // Accepted once the client may have closed already: ESTABLISHED or CLOSE_WAIT.
    let accepted = seen.iter().find(|e| e.kind == EventKind::Accept);
    assert_eq!(accepted.map(pid_of), accept_hook.then_some(Some(spid)), "{seen:#?}");
}

#[test]
fn short_lived_processes_are_seen_with_their_own_pids() {
    short_lived_pair(&[], netns_of);
}

#[test]
fn in_another_namespace_too() {
    let ns = common::netns::IpNetns::add("events");
    let up = Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]).status().unwrap();
    assert!(up.success());
    short_lived_pair(&["ip", "netns", "exec", &ns.name], netns_of);
}

/// An accept that waited through tracers attaching (this walker's, then
/// another's that came and went) is seen, named after the accepting
/// process: the kernel rebuilds a hooked function's trampoline each time,
/// and skips the `fexit` programs of a task that slept in the function
/// meanwhile, so a hook at `inet_csk_accept`'s return missed it (as a
/// parallel test's tracer made `in_another_namespace_too` miss its accept).
#[test]
fn an_accept_that_waited_while_tracers_came_and_went_is_seen() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let acceptor = std::thread::spawn(move || {
        tid_tx.send(std::fs::read_link("/proc/thread-self").unwrap()).unwrap();
        l.accept().unwrap()
    });
    // Asleep in accept: the thread does nothing else that blocks.
    let stat = std::path::Path::new("/proc").join(tid_rx.recv().unwrap()).join("stat");
    let asleep = || std::fs::read_to_string(&stat).unwrap().rsplit_once(") ").is_some_and(|(_, s)| s.starts_with('S'));
    let t0 = Instant::now();
    while !asleep() {
        assert!(t0.elapsed() < Duration::from_secs(10), "the acceptor never slept");
        std::thread::sleep(Duration::from_millis(1));
    }
    let w = tracing();
    drop(tracing());
    let c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (s, _) = acceptor.join().unwrap();
    let Some(w) = w else { return };
    let hook = attached(&w, "fentry/security_sock_graft");
    let accepted = |e: &Seen| e.kind == EventKind::Accept && e.local_port == port;
    let seen = collect(&w, Duration::from_millis(if hook { 5000 } else { 300 }), |s| s.iter().any(accepted));
    drop((c, s));
    let me = std::process::id() as i32;
    assert_eq!(seen.iter().find(|e| accepted(e)).map(pid_of), hook.then_some(Some(me)), "{seen:#?}");
}

/// An owner's (pid, start time) is what `/proc/PID/stat` says, as a
/// snapshot's owner is: a reused pid is told apart by its start time.
#[test]
fn an_owner_is_named_as_a_snapshot_names_it() {
    let Some(w) = tracing() else { return };
    let code = "import socket, sys\nl = socket.socket()\nl.bind(('127.0.0.1', 0))\nl.listen()\n\
                print(l.getsockname()[1]); print('ready', flush=True)\nsys.stdin.read()\n";
    let mut cmd = Command::new(python3());
    let holder = start_until_ready(cmd.args(["-c", code]).stdin(std::process::Stdio::piped()), "listener");
    let (pid, port) = (holder.child.0.id() as i32, holder.lines[0].parse::<u16>().unwrap());
    let seen =
        collect(&w, Duration::from_secs(5), |s| s.iter().any(|e| e.kind == EventKind::Listen && e.local_port == port));
    let listen = seen.iter().find(|e| e.kind == EventKind::Listen && e.local_port == port).expect("the listen");
    assert_eq!(listen.owner, Some((pid, start_time(pid), "python3".to_string())));
    // The snapshot lists the same socket with the same owner.
    let mut snapshot = None;
    w.connections(None, Protocols::TCP, procspy::StateMask::LISTEN, &mut Stats::default(), &mut |c| {
        if c.conn.local_port == port {
            snapshot = c.owner.map(|o| (o.pid, o.start_time));
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(snapshot, Some((pid, start_time(pid))));
}

/// A pid reused between two events is told apart by its start time: a
/// process listens and exits, the kernel is made to give its pid to the
/// next process (`ns_last_pid`, retried while other processes take it
/// first), which listens too; each listen names its own (pid, start).
#[test]
fn a_reused_pid_is_told_apart_by_its_start_time() {
    let Some(w) = tracing() else { return };
    let code = "import socket\nl = socket.socket()\nl.bind(('127.0.0.1', 0))\nl.listen()\nprint(l.getsockname()[1]); print('ready', flush=True)\ninput()\n";
    let listener = || {
        let mut cmd = Command::new(python3());
        let s = start_until_ready(cmd.args(["-c", code]).stdin(std::process::Stdio::piped()), "listener");
        let (pid, port) = (s.child.0.id() as i32, s.lines[0].parse::<u16>().unwrap());
        (s, pid, port, start_time(pid))
    };
    let listened = |port: u16| {
        let seen = collect(&w, Duration::from_secs(5), |s| {
            s.iter().any(|e| e.kind == EventKind::Listen && e.local_port == port)
        });
        seen.into_iter().find(|e| e.kind == EventKind::Listen && e.local_port == port).and_then(|e| e.owner)
    };
    let (first, pid, port, start) = listener();
    drop(first);
    let was = listened(port).expect("the first listen");
    assert_eq!((was.0, was.1), (pid, start));
    // Start times count clock ticks (10 ms): the two must fall in different ones.
    std::thread::sleep(Duration::from_millis(20));
    for _ in 0..50 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
        let (again, pid2, port2, start2) = listener();
        if pid2 != pid {
            drop(again);
            continue;
        }
        let now = listened(port2).expect("the second listen");
        assert_eq!((now.0, now.1), (pid, start2));
        assert_ne!(start2, start, "the same pid, another process");
        return;
    }
    eprintln!("pid {pid} was taken by other processes 50 times: not reused here");
}

/// A ring too small for a burst: the loss is counted in the kernel, told
/// once as a `Lost` event before anything else, in the stats too; what is
/// delivered is real (each a TCP event of this test's port); the next call
/// reports no loss, and the tracer goes on.
#[test]
fn a_flooded_ring_tells_its_loss_and_goes_on() {
    let w = Walker::new(None).unwrap();
    w.set_events_ring(1 << 16).unwrap();
    let Some(w) = runs(w) else { return };
    assert!(matches!(w.set_events_ring(1 << 20), Err(Error::Invalid(_))), "set once the tracer runs");
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    // 64 KiB hold about 500 events; each connection makes about ten.
    let here = netns_of(std::process::id());
    let mut ports = vec![port];
    for _ in 0..300 {
        let c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        ports.push(c.local_addr().unwrap().port());
        drop((c, l.accept().unwrap()));
    }
    let mut stats = Stats::default();
    let mut first = None;
    let mut delivered = 0u64;
    w.events(Duration::ZERO, Protocols::BOTH, &mut stats, &mut |e| {
        first.get_or_insert((e.kind, e.lost));
        if e.kind != EventKind::Lost {
            delivered += 1;
            assert_eq!(e.connection.protocol, Protocol::Tcp);
            let c = &e.connection.conn;
            // A closed socket's local port is unbound: 0. (Other namespaces'
            // sockets share the ports' numbers.)
            let ours = ports.contains(&c.remote_port) || ports.contains(&c.local_port);
            assert!(ours || e.connection.netns != here, "not of this test: {e:?}");
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    let (kind, lost) = first.expect("events");
    assert_eq!(kind, EventKind::Lost);
    assert!(lost > 0 && stats.events_lost == lost && stats.events == delivered, "{stats:?}");
    assert!(delivered > 100, "the ring's worth was delivered: {delivered}");
    // Drained: the next burst comes whole, with no loss told again.
    let c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let seen = collect(&w, Duration::from_secs(5), |s| s.iter().any(|e| e.kind == EventKind::Connect));
    drop(c);
    assert!(seen.iter().all(|e| e.kind != EventKind::Lost), "{seen:#?}");
}

#[test]
fn a_stop_ends_a_waiting_call_at_once() {
    let Some(w) = tracing() else { return };
    let w = std::sync::Arc::new(w);
    let token = w.stop_token();
    let t0 = Instant::now();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        token.stop();
    });
    // Only UDP: nothing a TCP-busy host does ends the wait early.
    let r = loop {
        match w
            .events(Duration::from_secs(30), Protocols::UDP, &mut Stats::default(), &mut |_| ControlFlow::Continue(()))
        {
            Ok(()) => continue,
            r => break r,
        }
    };
    stopper.join().unwrap();
    assert!(matches!(r, Err(Error::Stopped)), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}

#[test]
fn a_proc_root_that_is_not_the_hosts_is_refused() {
    let dir = std::env::temp_dir().join(format!("procspy-events-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let w = Walker::new(Some(dir.as_os_str().as_encoded_bytes())).unwrap();
    let r = w.events(Duration::ZERO, Protocols::BOTH, &mut Stats::default(), &mut |_| ControlFlow::Continue(()));
    assert!(matches!(r, Err(Error::Invalid(m)) if m.contains("host's own procfs")), "{r:?}");
    std::fs::remove_dir(&dir).unwrap();
}

/// A UDP datagram from a process that exits at once: its first send names
/// it, where the kernel attached the UDP hooks.
#[test]
fn a_udp_send_names_its_sender_where_the_hook_runs() {
    let Some(w) = tracing() else { return };
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sink.local_addr().unwrap().port();
    let code = format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.sendto(b'x', ('127.0.0.1', {port}))\n"
    );
    let mut child = Command::new(python3()).args(["-c", &code]).spawn().unwrap();
    let pid = child.id() as i32;
    assert!(child.wait().unwrap().success());
    let hook = attached(&w, "fexit/udp_sendmsg");
    let seen = collect(&w, Duration::from_millis(if hook { 5000 } else { 300 }), |s| {
        s.iter().any(|e| e.kind == EventKind::Send && e.remote_port == port)
    });
    let send = seen.iter().find(|e| e.kind == EventKind::Send && e.remote_port == port);
    assert_eq!(send.map(|e| (e.protocol, pid_of(e))), hook.then_some((Protocol::Udp, Some(pid))), "{seen:#?}");
}
