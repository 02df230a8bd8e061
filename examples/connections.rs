//! Lists this host's TCP and UDP connections with the process holding each,
//! in every network namespace, through the Rust API of the `procspy` crate.
//!
//!     cargo run --release --example connections            # everything
//!     cargo run --release --example connections -- listen  # listeners only

use std::ops::ControlFlow;
use std::process::ExitCode;

use procspy::{Protocols, Stats, Walker};

/// `1 << state`: the kernel's LISTEN (TCP) and CLOSE (an unconnected UDP socket).
const LISTENING: u32 = (1 << 10) | (1 << 7);

fn main() -> ExitCode {
    let states = match std::env::args().nth(1).as_deref() {
        None => u32::MAX,
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
    let result = walker.connections(None, Protocols { tcp: true, udp: true }, states, &mut stats, &mut |c| {
        let proto = match (c.protocol, c.conn.family) {
            (2, 6) => "udp6",
            (2, _) => "udp",
            (_, 6) => "tcp6",
            _ => "tcp",
        };
        let state = procspy::state_name(c.protocol, c.conn.state).unwrap_or("UNKNOWN");
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
