//! A shadow on its own: a candidate that cannot keep up is stopped when the queue is
//! full (the live side only ever hands over, never waits), and a candidate that traps
//! stops itself, reported, while the live chain goes on. Only the first is a stop the
//! worker publishes (the others could not have seen it).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use streamgate_runtime::builtin::component_path;
use streamgate_runtime::{
    Chain, ChainOptions, ChainSpec, Counts, PolicyRuntime, PreparedChain, SandboxConfig, StageSpec,
};

use super::shadow::{Shadow, ShadowBoard, ShadowState};
use crate::bus::LogPosition;
use crate::event::Event;
use crate::metrics::{SHADOW_STOPS, TenantMetrics};

fn at(major: u64) -> LogPosition {
    LogPosition { major, minor: 0 }
}

/// A live dedupe and a shadow of it followed by the misbehaving fixture with `fault`.
fn shadowed(fault: &str, capacity: usize) -> (Chain, Shadow, Arc<ShadowBoard>, Arc<TenantMetrics>) {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    let options = ChainOptions::defaults(&runtime);
    let dedupe = StageSpec::new("builtin:dedupe", "{}");
    let mut live =
        Chain::build(&runtime, &ChainSpec { version: 0, policies: vec![dedupe.clone()] }, options).unwrap();
    let misbehave = StageSpec::new(&component_path("fixture_misbehave"), fault);
    let spec = ChainSpec { version: 0, policies: vec![dedupe, misbehave] };
    let (candidate, fork) = live.fork(PreparedChain::load(&runtime, &spec, options.limits).unwrap()).unwrap();
    live.record_drops(true);
    let (board, metrics) = (Arc::new(ShadowBoard::default()), Arc::new(TenantMetrics::new("t")));
    let shadow = Shadow::start(candidate, fork, at(1), board.clone(), metrics.clone(), capacity).unwrap();
    (live, shadow, board, metrics)
}

fn events(i: u64) -> Vec<Event> {
    (0..5).map(|k| Event { key: format!("k{k}"), event_time: i as i64, ..Default::default() }).collect()
}

fn stops(metrics: &TenantMetrics, why: &str) -> u64 {
    metrics.shadow.stops[SHADOW_STOPS.iter().position(|s| *s == why).unwrap()].load(Relaxed)
}

#[test]
fn a_candidate_a_whole_queue_behind_is_stopped_and_reported() {
    // Millions of Wasm instructions per call: far slower than handing over an entry.
    let (mut live, mut shadow, board, metrics) = shadowed(r#"{"fault":"slow","spin":2000000}"#, 2);
    let counts = Counts::new("t");
    for i in 2..60 {
        let out = live.push(i as i64, events(i), &counts);
        shadow.feed(at(i), i as i64, events(i), &out);
        assert_eq!(out.released.len(), 5, "the live chain decides on, whatever the candidate does");
    }
    assert!(!shadow.running(), "stopped once the queue was full");
    let status = board.status();
    assert_eq!(status.state, ShadowState::FellBehind, "{status:?}");
    assert!(status.reason.as_deref().unwrap().contains("whole queue (2 entries)"), "{status:?}");
    assert_eq!(stops(&metrics, "fell_behind"), 1);
    assert_eq!(metrics.shadow.running.load(Relaxed), 0);
    let local = shadow.local_stop().expect("falling behind is this instance's own observation");
    assert!(local.contains("whole queue"), "the stop to publish says why: {local}");
    assert_eq!(shadow.started_at, at(1), "a published stop names the shadow it means");
    assert!(shadow.finish().is_err(), "a stopped candidate is never promoted");
}

#[test]
fn a_trapping_candidate_stops_itself_and_says_where() {
    let (mut live, mut shadow, board, metrics) = shadowed(r#"{"fault":"trap","from_batch":3}"#, 64);
    let counts = Counts::new("t");
    for i in 2..10 {
        let out = live.push(i as i64, events(i), &counts);
        shadow.feed(at(i), i as i64, events(i), &out);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while board.status().state == ShadowState::Running {
        assert!(Instant::now() < deadline, "the trap was not reported within 30 s: {:?}", board.status());
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = board.status();
    assert_eq!(status.state, ShadowState::Faulted, "{status:?}");
    let reason = status.reason.unwrap();
    assert!(reason.contains("misbehave") && reason.contains("at 4-0"), "the third batch, entry 4: {reason}");
    assert_eq!(stops(&metrics, "candidate_fault"), 1);
    assert_eq!(status.diff.unwrap().counts.entries, 2, "the entries before the trap were compared");
    assert_eq!(counts.outcomes().len(), 0, "the live chain never faulted");
    assert_eq!(shadow.local_stop(), None, "a trap happens at the same entry everywhere: nothing to publish");
}
