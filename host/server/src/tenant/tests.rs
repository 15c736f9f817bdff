//! The worker's decisions about what only this instance saw: a chain it could not
//! prepare for a local reason goes to the log as a revert (a deterministic refusal does
//! not), and a revert is applied only by a chain of the version it names. And keys the
//! chain expires leave the hub at the entry whose push expired them. A shadow that
//! falls behind here is stopped through the log.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use streamgate_runtime::builtin::component_path;
use streamgate_runtime::{
    Chain, ChainOptions, ChainSpec, PolicyRuntime, PreparedChain, SandboxConfig, StageSpec,
};

use super::dispatch::{PrepareFailure, SwapOrder, Work};
use super::shadow::QUEUE;
use super::status::ChainStatus;
use super::worker::Worker;
use crate::bus::{Content, Control, LogEntry, LogPosition};
use crate::event::Event;
use crate::hub::{Hub, Live};
use crate::metrics::TenantMetrics;

fn spec(version: u64, plugins: &[&str]) -> ChainSpec {
    ChainSpec { version, policies: plugins.iter().map(|p| StageSpec::new(p, "")).collect() }
}

/// Runs a worker over `work` from a chain of `builtin:dedupe`; what it reported, and
/// the chain it ended with.
fn run(runtime: &PolicyRuntime, work: Vec<Work>) -> (Vec<Control>, ChainStatus) {
    let chain =
        Chain::build(runtime, &spec(0, &["builtin:dedupe"]), ChainOptions::defaults(runtime)).unwrap();
    let hub = Arc::new(Hub::new("e", false, 16, 16, Arc::new(TenantMetrics::new("t"))));
    run_chain(chain, hub, work)
}

/// Runs a worker of `chain` publishing to `hub` over `work`; what it reported, and the
/// chain it ended with.
fn run_chain(chain: Chain, hub: Arc<Hub>, work: Vec<Work>) -> (Vec<Control>, ChainStatus) {
    let metrics = Arc::new(TenantMetrics::new("t"));
    let (status, status_rx) = watch::channel(ChainStatus::new(&chain));
    let (reports, mut reported) = mpsc::unbounded_channel();
    let worker = Worker {
        chain,
        hub,
        metrics,
        status,
        clock: Instant::now(),
        last_entry_ms: Arc::new(AtomicU64::new(0)),
        reports,
        // The chain history is the store's (tests/fault_determinism.rs).
        history: mpsc::unbounded_channel().0,
        instance: "a:1".into(),
        reported: Default::default(),
        shadow: None,
        shadow_board: Default::default(),
        checkpoints: None,
        start_time: None,
    };
    let (tx, rx) = mpsc::channel(work.len().max(1));
    for w in work {
        assert!(tx.try_send(w).is_ok(), "room for every item");
    }
    drop(tx);
    worker.run(rx, &CancellationToken::new());
    let mut controls = Vec::new();
    while let Ok(c) = reported.try_recv() {
        controls.push(c);
    }
    let status = status_rx.borrow().clone();
    (controls, status)
}

fn order(
    position: u64,
    version: u64,
    only_from: Option<u64>,
    prepared: Result<PreparedChain, PrepareFailure>,
) -> Work {
    let (tx, rx) = oneshot::channel();
    assert!(tx.send(prepared).is_ok(), "receiver alive");
    Work::Swap(SwapOrder {
        position: LogPosition { major: position, minor: 0 },
        log_time: position as i64,
        version,
        only_from,
        promote: false,
        forget_previous: false,
        reason: "test".into(),
        prepared: rx,
    })
}

fn failure(local: bool) -> Result<PreparedChain, PrepareFailure> {
    Err(PrepareFailure { message: "store out of reach".into(), local })
}

#[test]
fn a_chain_this_instance_alone_could_not_prepare_is_reverted_through_the_log() {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    let (reports, status) =
        run(&runtime, vec![order(1, 4, None, failure(true)), order(2, 5, None, failure(false))]);
    assert_eq!(status.version, 0, "the running chain stays");
    match reports.as_slice() {
        [Control::Revert { from_version: 4, chain, reason }] => {
            assert_eq!(chain, &spec(0, &["builtin:dedupe"]), "back to the chain this instance kept");
            assert!(reason.contains("instance a:1 could not prepare version 4"), "{reason}");
        }
        other => panic!("one revert for the local failure, none for the refusal: {other:?}"),
    }
}

#[test]
fn a_revert_applies_only_to_the_chain_version_it_names() {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    let limits = runtime.limits(None);
    let prepared = |v| PreparedChain::load(&runtime, &spec(v, &["builtin:staleness"]), limits).unwrap();
    let (_, status) = run(&runtime, vec![order(1, 3, Some(7), Ok(prepared(3)))]);
    assert_eq!(status.version, 0, "a revert of version 7 leaves version 0 alone");
    let (reports, status) = run(&runtime, vec![order(1, 3, Some(0), Ok(prepared(3)))]);
    assert_eq!((status.version, status.labels.as_slice()), (3, &["staleness@0.1.0".to_string()][..]));
    assert!(reports.is_empty(), "applying a revert reports nothing");
}

#[test]
fn keys_the_chain_expires_leave_the_hub_at_the_entry_that_expired_them() {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    let staleness = ChainSpec {
        version: 0,
        policies: vec![StageSpec::new("builtin:staleness", r#"{"max_age_ms":1000}"#)],
    };
    let chain = Chain::build(&runtime, &staleness, ChainOptions::defaults(&runtime)).unwrap();
    let hub = Arc::new(Hub::new("e", true, 16, 16, Arc::new(TenantMetrics::new("t"))));
    let Live::All(mut live) = hub.subscribe(None, None, false).live else { panic!("an all-keys client") };
    let entry = |ms: u64, content| {
        Work::Entry(LogEntry { position: LogPosition { major: ms, minor: 0 }, log_time: ms as i64, content })
    };
    let taxi = |key: &str, t: i64| Event {
        key: key.into(),
        event_time: t,
        payload: bytes::Bytes::from(format!(r#"{{"k":"{key}"}}"#)),
        ..Event::default()
    };
    run_chain(
        chain,
        hub.clone(),
        vec![
            entry(1_000, Content::Events(vec![taxi("quiet", 1_000), taxi("busy", 1_000)])),
            entry(1_500, Content::Events(vec![taxi("busy", 1_500)])),
            entry(2_000, Content::Heartbeat),
            entry(2_001, Content::Heartbeat),
            entry(2_400, Content::Heartbeat),
            entry(2_501, Content::Heartbeat),
        ],
    );
    let mut frames = Vec::new();
    while let Ok(f) = live.try_recv() {
        frames.push(String::from_utf8(f.wire.to_vec()).unwrap());
    }
    assert_eq!(
        frames[2..],
        [
            "event: e-expired\nid: 2001-0\ndata: [\"quiet\"]\n\n",
            "event: e-expired\nid: 2501-0\ndata: [\"busy\"]\n\n",
        ],
        "each key at the first entry more than 1000 ms after its newest time, and only there"
    );
    assert_eq!(frames.len(), 4);
    assert_eq!(&hub.snapshot_json(None)[..], b"[]");
}

#[test]
fn a_shadow_that_falls_behind_here_is_stopped_everywhere_through_the_log() {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    let limits = runtime.limits(None);
    // Millions of Wasm instructions per call: the live dedupe hands entries over far faster.
    let slow = StageSpec::new(&component_path("fixture_misbehave"), r#"{"fault":"slow","spin":2000000}"#);
    let candidate = ChainSpec { version: 1, policies: vec![StageSpec::new("builtin:dedupe", ""), slow] };
    let Work::Swap(start) = order(1, 1, None, Ok(PreparedChain::load(&runtime, &candidate, limits).unwrap()))
    else {
        unreachable!("order builds a swap")
    };
    let at = |major| LogPosition { major, minor: 0 };
    let entry = |i: u64| {
        let event = Event { key: format!("k{}", i % 7), event_time: i as i64, ..Event::default() };
        Work::Entry(LogEntry { position: at(i), log_time: i as i64, content: Content::Events(vec![event]) })
    };
    let mut work = vec![
        Work::StartShadow(start),
        // A stop published for another shadow (started elsewhere in the log) leaves this one running.
        Work::StopShadow { position: at(2), reason: "another".into(), started_at: Some(at(99)) },
    ];
    work.extend((3..3 + QUEUE as u64 + 64).map(entry));
    let (reports, _) = run(&runtime, work);
    match reports.as_slice() {
        [Control::StopShadow { reason, started_at }] => {
            assert_eq!(started_at.as_deref(), Some("1-0"), "names the shadow it stops");
            assert!(reason.contains("whole queue") && reason.contains("seen by a:1"), "{reason}");
        }
        other => panic!("one published stop for the candidate that fell behind here: {other:?}"),
    }
}
