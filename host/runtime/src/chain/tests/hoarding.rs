//! A stage that keeps what it is given: the events it holds wait in the host's memory
//! (payloads never enter the guest), which its linear memory cap does not bound, so the
//! sandbox caps how many one stage may hold (`max_held_events`). Over it, the stage is
//! faulted like any other fault, and the failure policy takes what it held.

use super::*;
use crate::{Fault, StageError};

const ORDERING: &str = "ordering@0.1.0";
const CAP: usize = 100;

fn at(key: &str, t: i64) -> Event {
    Event { key: key.into(), event_time: t, payload: Bytes::from_static(b"{}"), ..Default::default() }
}

/// Ordering with an hour's window holds everything it is given, up to `max_buffered`.
fn hoarder(max_buffered: usize) -> StageSpec {
    policy("builtin:ordering", &format!("window_ms = 3600000\nmax_buffered = {max_buffered}"))
}

fn runtime() -> PolicyRuntime {
    PolicyRuntime::new(&SandboxConfig { max_held_events: CAP, ..SandboxConfig::default() })
}

fn batch(from: usize, n: usize) -> Vec<Event> {
    (from..from + n).map(|i| at(&format!("k{i}"), 1_000 + i as i64)).collect()
}

#[test]
fn a_stage_holding_more_than_the_cap_is_a_fault_that_says_so() {
    let runtime = runtime();
    let plugin = runtime.load_ref("builtin:ordering").unwrap();
    let mut stage =
        plugin.stage(r#"{"window_ms": 3600000, "max_buffered": 1000000}"#, runtime.limits(None)).unwrap();
    let row = |seq| wit::Event { seq, key: seq, event_time: 1_000, log_time: 1_000, id: 0, tag: 0 };
    let first: Vec<wit::Event> = (0..CAP as u64).map(row).collect();
    assert!(stage.push(1_000, &first).unwrap().released.is_empty(), "held, within the cap");
    match stage.push(1_000, &[row(CAP as u64)]) {
        Err(StageError::Fault(fault @ Fault::HoldsTooMany { held: 101, cap: CAP })) => {
            assert!(fault.to_string().contains("max_held_events = 100"), "{fault}");
        }
        other => panic!("one event over the cap must be a fault, got {other:?}"),
    }
}

#[test]
fn the_failure_policy_takes_what_the_hoarding_stage_held() {
    let runtime = runtime();
    for (failure, passed) in [(FailurePolicy::FailOpen, 150), (FailurePolicy::FailClosed, 0)] {
        let options = ChainOptions { failure_policy: failure, ..ChainOptions::defaults(&runtime) };
        let mut chain = build(&runtime, &[hoarder(1_000_000)], options).unwrap();
        let m = Counts::new("t");
        assert!(chain.push(10_000, batch(0, 60), &m).released.is_empty(), "{failure:?}: held");
        assert!(!chain.quarantined(0));
        let out = chain.push(10_001, batch(60, 90), &m);
        assert!(chain.quarantined(0), "{failure:?}: 150 held is over the cap of {CAP}");
        assert_eq!(m.plugin_count(ORDERING, "fault"), 1, "{failure:?}");
        assert_eq!(out.released.len(), passed, "{failure:?}: the failure policy took all 150");
        assert_eq!(chain.held(), 0, "{failure:?}: nothing left waiting in the host");
    }
}

#[test]
fn a_stage_that_bounds_itself_below_the_cap_never_faults() {
    let runtime = runtime();
    let mut chain = build(&runtime, &[hoarder(CAP / 2)], ChainOptions::defaults(&runtime)).unwrap();
    let m = Counts::new("t");
    for round in 0..10 {
        chain.push(10_000 + round as i64, batch(round * 40, 40), &m);
        assert!(chain.held() <= CAP / 2, "round {round}: {} held", chain.held());
    }
    assert_eq!(m.plugin_count(ORDERING, "fault"), 0);
    assert!(!chain.quarantined(0));
}
