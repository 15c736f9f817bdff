//! Swaps: state moves, nothing lost or repeated, `last-good`.

use super::*;

fn taxi_chain(dedupe: &str) -> Vec<StageSpec> {
    vec![
        policy("builtin:ordering", "window_ms = 1000"),
        policy("builtin:staleness", "max_age_ms = 30000"),
        policy(dedupe, "newest_per_frame = true"),
    ]
}

fn prepared(runtime: &PolicyRuntime, refs: &[StageSpec], version: u64) -> PreparedChain {
    let mut p = PreparedChain::load(runtime, &chain_of(refs.to_vec()), runtime.limits(None)).unwrap();
    p.spec.version = version;
    p
}

fn ev(key: u64, t: i64) -> Event {
    Event {
        key: format!("k{key}"),
        event_time: t,
        payload: bytes::Bytes::from(format!("{key}:{t}")),
        ..Default::default()
    }
}

/// A deterministic batch: late, duplicate and backwards reports among 20 keys.
fn batch(round: i64) -> Vec<Event> {
    (0..40u64)
        .map(|i| {
            let jitter = ((round as u64 * 7919 + i * 104_729) % 2_500) as i64;
            ev(i % 20, round * 500 - jitter)
        })
        .collect()
}

fn released(out: ChainOutput) -> Vec<(String, i64)> {
    out.released.into_iter().map(|e| (e.key, e.event_time)).collect()
}

#[test]
fn swapping_back_and_forth_changes_nothing_in_the_output() {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    let options = ChainOptions::defaults(&runtime);
    let (v1, v2) = (taxi_chain("builtin:dedupe"), taxi_chain(&fixture("fixture_dedupe_next")));
    let mut steady = build(&runtime, &v1, options).unwrap();
    let mut swapped = build(&runtime, &v1, options).unwrap();
    let m = Counts::new("t");
    let mut reports = Vec::new();
    for round in 1..=60 {
        let now = round * 500;
        let expected = released(steady.push(now, batch(round), &m));
        if round % 3 == 0 {
            let next = if round % 6 == 0 { &v1 } else { &v2 };
            reports.push(swapped.swap(prepared(&runtime, next, round as u64)));
        }
        assert_eq!(released(swapped.push(now, batch(round), &m)), expected, "round {round}");
    }
    assert_eq!(reports.len(), 20);
    for r in &reports {
        assert_eq!(r.reinjected, 0, "every stage's state moved: {r:?}");
        assert!(matches!(&r.stages[..2], [StateTransfer::Kept { .. }, StateTransfer::Kept { .. }]), "{r:?}");
        assert!(matches!(r.stages[2], StateTransfer::Restored { .. }), "{r:?}");
    }
    assert!(matches!(&reports[0].stages[2], StateTransfer::Restored { from, .. } if from == "dedupe@0.1.0"));
    assert_eq!(swapped.labels()[2], "dedupe@0.1.0", "20 swaps: back on the first version");
    assert_eq!(swapped.spec().version, 60);
}

#[test]
fn events_held_by_a_removed_stage_enter_the_new_chain() {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    let mut chain = build(&runtime, &taxi_chain("builtin:dedupe"), ChainOptions::defaults(&runtime)).unwrap();
    let m = Counts::new("t");
    assert!(chain.push(10_000, vec![ev(1, 9_900), ev(2, 9_950)], &m).released.is_empty(), "held for order");
    let without_ordering = [policy("builtin:dedupe", "newest_per_frame = true")];
    let report = chain.swap(prepared(&runtime, &without_ordering, 1));
    assert_eq!(report.reinjected, 2);
    assert!(
        matches!(&report.stages[0], StateTransfer::Kept { stage } if stage == "dedupe@0.1.0"),
        "the same dedupe carries on: {report:?}"
    );
    let out = released(chain.push(10_001, vec![ev(1, 9_990)], &m));
    assert_eq!(out, vec![("k2".into(), 9_950), ("k1".into(), 9_990)], "nothing lost, newest per key");
    assert_eq!(chain.held(), 0);
}

#[test]
fn a_plugin_that_refuses_the_state_starts_empty_and_says_why() {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    let misbehave = fixture("fixture_misbehave");
    let mut chain = build(&runtime, &[policy(&misbehave, "")], ChainOptions::defaults(&runtime)).unwrap();
    let report = chain.swap(prepared(&runtime, &[policy(&misbehave, "fault = \"refuse-state\"")], 1));
    let StateTransfer::Empty { why } = &report.stages[0] else { panic!("{report:?}") };
    assert!(why.contains("misbehave@0.1.0") && why.contains("unsupported state version 1"), "{why}");
    let m = Counts::new("t");
    assert_eq!(chain.push(1, vec![ev(1, 1)], &m).released.len(), 1, "the empty stage serves");
}

#[test]
fn last_good_goes_back_to_the_previous_chain_and_loses_nothing() {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    let options =
        ChainOptions { failure_policy: FailurePolicy::LastGood, ..ChainOptions::defaults(&runtime) };
    let v0 = [policy("builtin:dedupe", "")];
    let mut chain = build(&runtime, &v0, options).unwrap();
    let m = Counts::new("t");
    assert_eq!(released(chain.push(1, vec![ev(1, 100)], &m)), vec![("k1".into(), 100)]);
    let trap_on_second = policy(&fixture("fixture_misbehave"), "fault = \"trap\"\nfrom_batch = 2");
    chain.swap(prepared(&runtime, &[policy("builtin:dedupe", ""), trap_on_second], 1));
    assert_eq!(released(chain.push(2, vec![ev(2, 200)], &m)), vec![("k2".into(), 200)]);
    // The second stage traps: back to version 0, whose dedupe has the state of v1's.
    let out = released(chain.push(3, vec![ev(1, 100), ev(3, 300)], &m));
    assert_eq!(out, vec![("k3".into(), 300)], "k1@100 is still known as a duplicate");
    assert_eq!(chain.spec().version, 0);
    assert_eq!(m.last_good_reverts.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(m.plugin_count("misbehave@0.1.0", "fault"), 1);
    assert!(chain.previous_spec().is_none(), "never back to the chain that faulted");
    assert_eq!(chain.held(), 0);
}

#[test]
fn every_fault_under_last_good_goes_back_and_loses_nothing() {
    let runtime = PolicyRuntime::new(&SandboxConfig {
        call_timeout: Duration::from_millis(200),
        max_memory_bytes: 16 << 20,
        ..SandboxConfig::default()
    });
    let options =
        ChainOptions { failure_policy: FailurePolicy::LastGood, ..ChainOptions::defaults(&runtime) };
    let faults = ["loop", "memory-bomb", "trap", "panic", "unknown-seq", "duplicate-seq"];
    for fault in faults {
        let mut chain = build(&runtime, &[policy("builtin:dedupe", "")], options).unwrap();
        let m = Counts::new("t");
        chain.push(1, vec![ev(1, 100)], &m);
        let faulty = policy(&fixture("fixture_misbehave"), &format!("fault = \"{fault}\"\nfrom_batch = 2"));
        chain.swap(prepared(&runtime, &[policy("builtin:dedupe", ""), faulty], 1));
        assert_eq!(released(chain.push(2, vec![ev(2, 200)], &m)), vec![("k2".into(), 200)], "{fault}");
        let out = released(chain.push(3, vec![ev(1, 100), ev(3, 300), ev(4, 400)], &m));
        assert_eq!(out, vec![("k3".into(), 300), ("k4".into(), 400)], "{fault}: through version 0");
        assert_eq!(chain.spec().version, 0, "{fault}");
        assert_eq!(m.plugin_count("misbehave@0.1.0", "fault"), 1, "{fault}");
        assert_eq!(chain.held(), 0, "{fault}");
    }
}

#[test]
fn last_good_without_an_earlier_chain_passes_events_on() {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    let options =
        ChainOptions { failure_policy: FailurePolicy::LastGood, ..ChainOptions::defaults(&runtime) };
    let trap = policy(&fixture("fixture_misbehave"), "fault = \"trap\"");
    let mut chain = build(&runtime, &[trap], options).unwrap();
    let m = Counts::new("t");
    assert_eq!(chain.push(1, vec![ev(1, 1), ev(2, 2)], &m).released.len(), 2);
    assert_eq!(m.last_good_reverts.load(std::sync::atomic::Ordering::Relaxed), 0);
}
