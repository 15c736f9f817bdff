//! Faults: quarantine, fail-open, fail-closed, restarts, named load errors.

use super::*;
use crate::StageError;

fn ev(key: &str, t: i64) -> Event {
    Event {
        key: key.into(),
        event_time: t,
        payload: Bytes::from(format!("{{\"k\":\"{key}\",\"t\":{t}}}")),
        ..Default::default()
    }
}

fn times(out: &ChainOutput) -> Vec<(String, i64)> {
    out.released.iter().map(|e| (e.key.clone(), e.event_time)).collect()
}

#[test]
fn taxi_chain_orders_drops_stale_and_keeps_newest_per_key() {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    let taxi = [
        policy("builtin:ordering", "window_ms = 1000"),
        policy("builtin:staleness", "max_age_ms = 30000"),
        policy("builtin:dedupe", "newest_per_frame = true\nforget_after_ms = 600000"),
    ];
    let mut chain = build(&runtime, &taxi, ChainOptions::defaults(&runtime)).unwrap();
    assert_eq!(chain.labels(), vec!["ordering@0.1.0", "staleness@0.1.0", "dedupe@0.1.0"]);
    let m = Counts::new("t");
    let now = 100_000;
    let batch = vec![ev("a", 99_500), ev("b", 99_200), ev("a", 99_400), ev("a", 60_000), ev("b", 99_200)];
    assert!(chain.push(now, batch, &m).released.is_empty(), "held for the reorder window");
    assert_eq!(m.plugin_count("staleness@0.1.0", "stale"), 1, "60 000 was due at once, and stale");
    assert_eq!(chain.held(), 4);
    let out = chain.push(now + 1_000, vec![], &m);
    assert_eq!(times(&out), vec![("b".into(), 99_200), ("a".into(), 99_500)]);
    assert_eq!(m.plugin_count("staleness@0.1.0", "stale"), 1);
    assert_eq!(m.plugin_count("dedupe@0.1.0", "duplicate"), 1);
    assert_eq!(m.plugin_count("dedupe@0.1.0", "superseded"), 1);
    assert_eq!(chain.held(), 0, "every event was decided");
    let out = chain.push(now + 2_000, vec![ev("a", 99_450), ev("a", 101_000)], &m);
    assert_eq!(times(&out), vec![("a".into(), 101_000)], "a never goes back in time");
}

#[test]
fn bad_plugins_and_configs_are_named_errors() {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    let options = ChainOptions::defaults(&runtime);
    let err = |refs: &[StageSpec]| build(&runtime, refs, options).err().expect("must fail").to_string();
    let e = err(&[policy("builtin:nope", "")]);
    assert!(e.contains("unknown builtin") && e.contains("dedupe"), "{e}");
    let e = err(&[policy("builtin:staleness", "max_age_ms = -5")]);
    assert!(e.contains("policy 0") && e.contains("max_age_ms"), "{e}");
    let e = err(&[policy("/nonexistent/plugin.wasm", "")]);
    assert!(e.contains("cannot read plugin file"), "{e}");

    let dir = std::env::temp_dir().join(format!("streamgate-chain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let core = dir.join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let e = err(&[policy(core.to_str().unwrap(), "")]);
    assert!(e.contains("core Wasm module"), "{e}");
    let junk = dir.join("junk.wasm");
    std::fs::write(&junk, b"hello").unwrap();
    assert!(err(&[policy(junk.to_str().unwrap(), "")]).contains("magic"));
}

/// A chain of one fixture stage that starts misbehaving on its second batch.
fn fixture_chain(fault: &str, failure: FailurePolicy, backoff: Duration) -> Chain {
    let runtime = PolicyRuntime::new(&SandboxConfig {
        call_timeout: Duration::from_millis(200),
        max_memory_bytes: 16 << 20,
        ..SandboxConfig::default()
    });
    let refs = [policy(
        &fixture("fixture_misbehave"),
        &format!("fault = \"{fault}\"\nfrom_batch = 2\nspin = 1000000"),
    )];
    let options = ChainOptions {
        failure_policy: failure,
        restart_backoff: backoff,
        restart_backoff_max: backoff,
        ..ChainOptions::defaults(&runtime)
    };
    build(&runtime, &refs, options).unwrap()
}

fn three(t: i64) -> Vec<Event> {
    vec![ev("a", t), ev("b", t), ev("c", t)]
}

const FAULTS: [&str; 6] = ["loop", "memory-bomb", "trap", "panic", "unknown-seq", "duplicate-seq"];
const FIXTURE: &str = "misbehave@0.1.0";

#[test]
fn every_fault_is_quarantined_and_fail_open_passes_events_on() {
    for fault in FAULTS {
        let mut chain = fixture_chain(fault, FailurePolicy::FailOpen, Duration::from_secs(3600));
        let m = Counts::new("t");
        assert_eq!(chain.push(1, three(1), &m).released.len(), 3, "{fault}: healthy first batch");
        assert_eq!(chain.push(2, three(2), &m).released.len(), 3, "{fault}: fail-open passes the batch");
        assert!(chain.quarantined(0), "{fault}: the stage is quarantined");
        assert_eq!(m.plugin_count(FIXTURE, "fault"), 1, "{fault}: one fault counted");
        assert_eq!(chain.push(3, three(3), &m).released.len(), 3, "{fault}: still passing while quarantined");
        assert_eq!(m.plugin_count(FIXTURE, "fault"), 1, "{fault}: quarantine is not a new fault");
        assert_eq!(chain.held(), 0, "{fault}: nothing stuck in the chain");
    }
}

#[test]
fn every_fault_under_fail_closed_drops_and_counts() {
    for fault in FAULTS {
        let mut chain = fixture_chain(fault, FailurePolicy::FailClosed, Duration::from_secs(3600));
        let m = Counts::new("t");
        assert_eq!(chain.push(1, three(1), &m).released.len(), 3, "{fault}: healthy first batch");
        assert!(chain.push(2, three(2), &m).released.is_empty(), "{fault}: fail-closed drops the batch");
        assert!(chain.push(3, three(3), &m).released.is_empty(), "{fault}: and drops while quarantined");
        assert_eq!(m.plugin_count(FIXTURE, "fault"), 1, "{fault}: one fault counted");
        assert_eq!(m.plugin_count(FIXTURE, "dropped_on_fault"), 6, "{fault}: both batches dropped, counted");
        assert_eq!(chain.held(), 0, "{fault}: nothing stuck in the chain");
    }
}

#[test]
fn a_quarantined_stage_restarts_after_its_backoff() {
    let mut chain = fixture_chain("trap", FailurePolicy::FailClosed, Duration::ZERO);
    let m = Counts::new("t");
    chain.push(1, three(1), &m);
    assert!(chain.push(2, three(2), &m).released.is_empty());
    assert!(chain.quarantined(0));
    // The fresh stage starts counting batches again: its first batch is healthy.
    assert_eq!(chain.push(3, three(3), &m).released.len(), 3);
    assert!(!chain.quarantined(0));
}

#[test]
fn quarantine_lasts_its_backoff_in_log_time_not_wall_time() {
    let mut chain = fixture_chain("trap", FailurePolicy::FailClosed, Duration::from_secs(1));
    let m = Counts::new("t");
    chain.push(1_000, three(1), &m);
    assert!(chain.push(2_000, three(2), &m).released.is_empty(), "faults at log time 2 000");
    assert!(chain.push(2_999, three(3), &m).released.is_empty(), "still quarantined 999 ms later");
    assert!(chain.quarantined(0));
    // Well under a second of wall time has passed: log time alone decides.
    assert_eq!(chain.push(3_000, three(4), &m).released.len(), 3, "restarted 1 000 ms of log time later");
    assert!(!chain.quarantined(0));
}

#[test]
fn a_slow_plugin_within_budget_is_no_fault() {
    let mut chain = fixture_chain("slow", FailurePolicy::FailClosed, Duration::from_secs(3600));
    let m = Counts::new("t");
    for t in 1..=3 {
        assert_eq!(chain.push(t, three(t), &m).released.len(), 3);
    }
    assert_eq!(m.plugin_count(FIXTURE, "fault"), 0);
}

#[test]
fn a_call_budget_is_work_not_time() {
    // A minute of wall clock, two million units of fuel: the fuel decides, every run.
    let runtime = PolicyRuntime::new(&SandboxConfig {
        fuel_per_call: 2_000_000,
        call_timeout: Duration::from_secs(60),
        ..SandboxConfig::default()
    });
    let plugin = runtime.load_ref(&fixture("fixture_misbehave")).unwrap();
    let push = |config: &str| plugin.stage(config, runtime.limits(None)).unwrap().push(1, &[]);
    for _ in 0..2 {
        match push(r#"{"fault":"loop"}"#) {
            Err(StageError::Fault(crate::Fault::OutOfFuel { budget })) => assert_eq!(budget, 2_000_000),
            other => panic!("a spinning stage must run out of fuel: {other:?}"),
        }
        assert!(
            matches!(
                push(r#"{"fault":"slow","spin":10000000}"#),
                Err(StageError::Fault(crate::Fault::OutOfFuel { .. }))
            ),
            "ten million iterations are over budget"
        );
        assert!(push(r#"{"fault":"slow","spin":1000}"#).is_ok(), "a thousand are within it");
    }
    let message = crate::Fault::OutOfFuel { budget: 7 }.to_string();
    assert!(message.contains("fuel budget (7 units"), "{message}");
}

#[test]
fn a_wall_clock_overrun_is_reported_and_faults_where_the_log_says() {
    // A 1 ms timeout and fuel for a long call: the call outlives the timeout, finishes.
    let runtime = PolicyRuntime::new(&SandboxConfig {
        fuel_per_call: 20_000_000_000,
        call_timeout: Duration::from_millis(1),
        ..SandboxConfig::default()
    });
    let slow = policy(&fixture("fixture_misbehave"), "fault = \"slow\"\nspin = 100000000");
    let options = ChainOptions {
        failure_policy: FailurePolicy::FailClosed,
        restart_backoff: Duration::from_secs(1),
        restart_backoff_max: Duration::from_secs(1),
        ..ChainOptions::defaults(&runtime)
    };
    let mut chain = build(&runtime, &[policy("builtin:dedupe", ""), slow], options).unwrap();
    let m = Counts::new("t");
    let out = chain.push(1, three(1), &m);
    assert_eq!(out.released.len(), 3, "the slow call's answer counts: the wall clock decides nothing");
    // On a loaded machine the quick dedupe call may outlive 1 ms too: look at stage 1.
    let slow_stage: Vec<&Overrun> = out.overran.iter().filter(|o| o.stage == 1).collect();
    assert_eq!(slow_stage, vec![&Overrun { version: 0, stage: 1, plugin: FIXTURE.into() }]);
    assert!(!chain.quarantined(1));
    assert_eq!(m.plugin_count(FIXTURE, "fault"), 0);

    assert!(chain.fault_stage(3, 1, "late".into(), 2, &m).is_none(), "a report about another version");
    let out = chain.fault_stage(0, 1, "overran on instance a".into(), 2, &m).expect("applied");
    assert!(out.released.is_empty());
    assert!(chain.quarantined(1), "faulted at the report's position");
    assert_eq!(m.plugin_count(FIXTURE, "fault"), 1);
    assert!(chain.fault_stage(0, 1, "again".into(), 2, &m).is_none(), "already quarantined");
    assert!(chain.push(3, three(3), &m).released.is_empty(), "fail-closed while quarantined");
    assert_eq!(chain.push(1_002, three(4), &m).released.len(), 3, "restarted after its back-off in log time");
}
