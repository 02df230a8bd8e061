//! A namespace whose only sockets no process holds are ones its last dump
//! listed (TIME_WAIT sockets, requests in SYN_RECV, connections waiting to
//! be accepted) is listed again from the held sockets and those, each asked
//! for by its id, without walking the host's TCP hash: record for record
//! what a dump lists, quiet and under churn (needs root, as CI has).

use std::collections::BTreeSet;

use common::Actor;
use common::rec::{Line, query_lines};
use procspy::{Query, Source, Stats, TcpState, Walker};

/// The lines of namespace `netns` listed from `source`.
fn listed(w: &Walker, netns: u64, source: Source) -> (Vec<Line>, Stats) {
    w.set_source(source);
    let (r, got, stats) = query_lines(w, &Query { netns: Some(&[netns]), ..Query::default() });
    assert_eq!(r, Ok(()), "{source:?}");
    (got, stats)
}

fn count(lines: &[Line], state: TcpState, family: u8) -> usize {
    lines.iter().filter(|l| l.2 == 0 && l.4 == state.number() && l.3 == family).count()
}

/// Whether this pass listed the namespace without reading its tables.
fn recalled(stats: &Stats) -> bool {
    stats.accounted == 1
}

#[test]
fn unheld_sockets_once_dumped_are_asked_for_again_record_for_record() {
    let mut a = Actor::start(true);
    a.ask("pair");
    a.ask("tw 4");
    a.ask("tw 6");
    let lfd = a.ask("queue 4")[0];
    a.ask("queue 6");
    a.ask("pending");
    let w = Walker::new(None).unwrap();
    let bpf = common::kernel_has_bpf_owner_scan();
    let (first, stats) = listed(&w, a.netns, Source::Auto);
    assert!(!recalled(&stats), "nothing remembered yet: {stats:?}");
    let (dump, _) = listed(&w, a.netns, Source::Netlink);
    assert_eq!(first, dump);
    let unheld = |l: &[Line]| {
        use TcpState::{Established, SynRecv, TimeWait};
        [(TimeWait, 4), (TimeWait, 6), (Established, 4), (Established, 6), (SynRecv, 4)].map(|(s, f)| count(l, s, f))
    };
    assert_eq!(unheld(&dump), [1, 1, 1, 1, 1], "{dump:?}");
    // Each step changes what no process holds, or nothing; the listing is
    // then checked against a dump, and told whether it needed one.
    let steps: [(&str, bool); 6] = [
        ("", true),
        ("tw 4", false),
        ("", true),
        (&format!("accept {lfd}"), true),
        ("queue 4", false),
        ("pending", false),
    ];
    for (i, (step, asked_again)) in steps.iter().enumerate() {
        if !step.is_empty() {
            a.ask(step);
        }
        let (auto, stats) = listed(&w, a.netns, Source::Auto);
        let (dump, _) = listed(&w, a.netns, Source::Netlink);
        assert_eq!(auto, dump, "step {i} ({step:?}): record for record");
        assert_eq!(recalled(&stats), bpf && *asked_again, "step {i} ({step:?}): {stats:?}");
    }
}

/// TIME_WAIT sockets of one test live 60 s: under a storm, each pass lists
/// every one both the dump before it and the dump after it listed, and none
/// that neither did. (A TIME_WAIT also ends early where a new connection
/// on loopback takes its ports, `tcp_tw_reuse`: a 6.12 guest's did.)
#[test]
fn under_churn_nothing_is_invented_or_lost() {
    let mut a = Actor::start(true);
    a.ask("pair");
    a.ask("tw 4");
    let w = Walker::new(None).unwrap();
    let time_waits = |l: &[Line]| -> BTreeSet<(u16, u16)> {
        l.iter().filter(|l| l.4 == TcpState::TimeWait.number()).map(|l| (l.6, l.8)).collect()
    };
    listed(&w, a.netns, Source::Auto);
    a.ask("storm 2000");
    let (mut before, _) = listed(&w, a.netns, Source::Netlink);
    let mut passes = 0;
    let mut recalls = 0;
    let t0 = std::time::Instant::now();
    while t0.elapsed() < std::time::Duration::from_secs(4) {
        let (auto, stats) = listed(&w, a.netns, Source::Auto);
        let (after, _) = listed(&w, a.netns, Source::Netlink);
        let (b, x, n) = (time_waits(&before), time_waits(&auto), time_waits(&after));
        let lost: Vec<_> = b.intersection(&n).filter(|t| !x.contains(t)).collect();
        let invented: Vec<_> = x.iter().filter(|t| !b.contains(t) && !n.contains(t)).collect();
        assert!(lost.is_empty() && invented.is_empty(), "lost: {lost:?}, invented: {invented:?}");
        passes += 1;
        recalls += usize::from(recalled(&stats));
        before = after;
    }
    // Quiet again: record for record, and asked for, not dumped.
    let (auto, _) = listed(&w, a.netns, Source::Auto);
    let (again, stats) = listed(&w, a.netns, Source::Auto);
    let (dump, _) = listed(&w, a.netns, Source::Netlink);
    assert_eq!((&auto, &again), (&dump, &dump));
    assert!(time_waits(&dump).len() > 10, "the storm made TIME_WAITs: {}", time_waits(&dump).len());
    assert_eq!(recalled(&stats), common::kernel_has_bpf_owner_scan(), "{stats:?}");
    eprintln!("{passes} passes under the storm, {recalls} listed without a dump");
}
