//! Lists this host's TCP and UDP connections with the process holding each,
//! in every network namespace, through the Rust API of the `procspy` crate.
//!
//!     cargo run --release --example connections            # everything
//!     cargo run --release --example connections -- listen  # listeners only

use std::ops::ControlFlow;
use std::process::ExitCode;

use procspy::{Protocol, Protocols, StateMask, Stats, TcpState, Walker};

/// TCP's listeners, and UDP's unconnected sockets (the kernel's CLOSE).
const LISTENING: StateMask = StateMask::LISTEN.union(StateMask::of(TcpState::Close));

fn main() -> ExitCode {
    let states = match std::env::args().nth(1).as_deref() {
        None => StateMask::ALL,
        Some("listen") => LISTENING,
        Some(other) => {
            eprintln!("connections: unknown argument {other:?} (listen, or nothing)");
            return ExitCode::from(2);
        }
    };
    let walker = match Walker::new(None) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("connections: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stats = Stats::default();
    let mut rows = 0u64;
    let result = walker.connections(None, Protocols::BOTH, states, &mut stats, &mut |c| {
        let proto = match (c.protocol, c.conn.family) {
            (Protocol::Udp, 6) => "udp6",
            (Protocol::Udp, _) => "udp",
            (Protocol::Tcp, 6) => "tcp6",
            (Protocol::Tcp, _) => "tcp",
        };
        let state = c.state_name().unwrap_or("UNKNOWN");
        let owner = match &c.owner {
            Some(o) => format!("{} {}", o.pid, o.name.to_string_lossy()),
            None => "-".to_string(),
        };
        println!("{:<10} {proto:<5} {state:<12} {:<23} {:<23} {owner}", c.netns, c.conn.local(), c.conn.remote());
        rows += 1;
        ControlFlow::Continue(())
    });
    if let Err(e) = result {
        eprintln!("connections: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!("{rows} connections in {} namespaces, {} processes", stats.namespaces, stats.processes);
    ExitCode::SUCCESS
}
