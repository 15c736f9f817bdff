//! Every world side by side: 0.1.0, 0.2.0, 0.3.0 and 0.4.0 stages load into one chain
//! and run together; a 0.2.0 or later stage's `expired` keys reach
//! [`ChainOutput::expired`] (union, once each), and stages report their capabilities
//! under their config.

use super::*;
use crate::bindings::wit::Capability;
use crate::event::key_hash;
use crate::world::World;

fn ev(key: &str, t: i64) -> Event {
    Event { key: key.into(), event_time: t, payload: Bytes::from_static(b"{}"), ..Default::default() }
}

#[test]
fn builtins_and_fixtures_of_every_world_load() {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    let world = |r: &str| runtime.load_ref(r).unwrap().world();
    assert_eq!(world("builtin:dedupe"), World::V0_4);
    assert_eq!(world("builtin:staleness"), World::V0_4);
    assert_eq!(world("builtin:ordering"), World::V0_4);
    assert_eq!(world(&fixture("fixture_columns")), World::V0_3);
    assert_eq!(world("builtin:coalesce"), World::V0_1);
    assert_eq!(world(&fixture("fixture_dedupe_next")), World::V0_1);
    assert_eq!(world(&fixture("fixture_overclaim")), World::V0_2);
}

#[test]
fn stages_report_capabilities_under_their_config() {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    let limits = runtime.limits(None);
    let dedupe = runtime.load_ref("builtin:dedupe").unwrap();
    assert_eq!(dedupe.described_capabilities(), [Capability::Dedupe, Capability::Coalesce]);
    let mut plain = dedupe.stage("", limits).unwrap();
    assert_eq!(plain.world(), World::V0_4);
    assert_eq!(plain.capabilities().unwrap(), [Capability::Dedupe]);
    let mut newest = dedupe.stage(r#"{"newest_per_frame": true}"#, limits).unwrap();
    assert_eq!(newest.capabilities().unwrap(), [Capability::Dedupe, Capability::Coalesce]);
    // A 0.1.0 stage's claims are its plugin's `describe` list, whatever its config.
    let coalesce = runtime.load_ref("builtin:coalesce").unwrap();
    let mut stage = coalesce.stage(r#"{"tags": ["rank"]}"#, limits).unwrap();
    assert_eq!(stage.world(), World::V0_1);
    assert_eq!(stage.capabilities().unwrap(), coalesce.described_capabilities());
}

#[test]
fn one_chain_runs_every_world_and_unions_expired_keys() {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    // Two 0.2.0 stages that expire the keys of what they drop, around two 0.4.0 stages;
    // the first forgets keys after a second, the second never does. A 0.3.0 dedupe
    // last, which sees nothing twice.
    let stages = [
        policy(&fixture("fixture_overclaim"), "forget_after_ms = 1000"),
        policy("builtin:ordering", "window_ms = 0"),
        policy(&fixture("fixture_overclaim"), ""),
        policy("builtin:staleness", "max_age_ms = 30000"),
        policy(&fixture("fixture_columns"), ""),
    ];
    let mut chain = build(&runtime, &stages, ChainOptions::defaults(&runtime)).unwrap();
    let m = Counts::new("t");
    let released = |out: &ChainOutput| -> Vec<(String, i64)> {
        out.released.iter().map(|e| (e.key.clone(), e.event_time)).collect()
    };
    // Stage 1 drops a's repeat (expiring a, twice over).
    let out =
        chain.push(100_000, vec![ev("a", 99_000), ev("b", 99_100), ev("a", 99_000), ev("a", 98_000)], &m);
    assert_eq!(released(&out), vec![("a".into(), 99_000), ("b".into(), 99_100)]);
    assert_eq!(out.expired, vec![key_hash("a")], "each key once");
    // Stage 1 has forgotten both keys: it drops b's repeat (expires b) and passes a,
    // which stage 3 still remembers and drops (expires a).
    let out = chain.push(102_000, vec![ev("a", 99_000), ev("b", 99_200), ev("b", 99_200)], &m);
    assert_eq!(released(&out), vec![("b".into(), 99_200)]);
    let mut union = vec![key_hash("a"), key_hash("b")];
    union.sort_unstable();
    assert_eq!(out.expired, union, "the union over stages, ascending");
    // Nothing dropped: nothing expired, and nothing allocated for it.
    let out = chain.push(102_001, vec![ev("c", 99_500)], &m);
    assert_eq!(released(&out), vec![("c".into(), 99_500)]);
    assert!(out.expired.is_empty() && out.expired.capacity() == 0);
}

#[test]
fn a_chain_of_0_1_0_stages_expires_nothing() {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    let stages = [policy(&fixture("fixture_dedupe_next"), ""), policy("builtin:coalesce", "")];
    let mut chain = build(&runtime, &stages, ChainOptions::defaults(&runtime)).unwrap();
    let out = chain.push(100_000, vec![ev("a", 99_000), ev("a", 99_000)], &Counts::new("t"));
    assert_eq!(out.released.len(), 1, "the repeat was dropped");
    assert!(out.expired.is_empty());
}

#[test]
fn the_taxi_chain_expires_a_silent_key_at_one_push_only() {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    let stages = [
        policy("builtin:ordering", "window_ms = 1000"),
        policy("builtin:staleness", "max_age_ms = 30000"),
        policy("builtin:dedupe", "newest_per_frame = true"),
    ];
    let mut chain = build(&runtime, &stages, ChainOptions::defaults(&runtime)).unwrap();
    let m = Counts::new("t");
    chain.push(10_000, vec![ev("quiet", 10_000), ev("busy", 10_000)], &m);
    // Log time moves on; only `busy` keeps reporting. `quiet`'s newest time (10 000) is
    // released once ordering's window passes, and expires 30 001 ms of log time later.
    let mut expired_at = Vec::new();
    for now in (11_000..=45_000).step_by(500) {
        let out = chain.push(now, vec![ev("busy", now)], &m);
        if !out.expired.is_empty() {
            expired_at.push((now, out.expired));
        }
    }
    assert_eq!(expired_at, vec![(40_500, vec![key_hash("quiet")])], "once, at the first push past the bound");
}
