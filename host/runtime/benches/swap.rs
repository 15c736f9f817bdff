//! `make bench`, swaps: the pause a chain swap costs the policy worker (snapshot, restore
//! and switch, measured inside `Chain::swap`), for the taxi chain carrying realistic
//! state: 2,000 taxis at 20,000 events/s, so ordering holds a second of events and
//! dedupe knows every taxi. The new chain is prepared beforehand, as the router does
//! off the event path. Time from an admin request to active on every instance comes
//! from the `swaps` integration test, which `make bench` runs in release too.

use std::time::Duration;

use bytes::Bytes;
use streamgate_runtime::{
    Chain, ChainOptions, ChainSpec, Counts, Event as HostEvent, PolicyRuntime, PreparedChain, SandboxConfig,
    StageSpec,
};

const TAXIS: usize = 2_000;
const BATCH: usize = 1_000;
/// 1,000 events every 50 ms: 20,000 events/s.
const STEP_MS: i64 = 50;
const SWAPS: usize = 100;

fn chain_refs(dedupe: &str) -> ChainSpec {
    ChainSpec {
        version: 0,
        policies: vec![
            StageSpec::new("builtin:ordering", r#"{"window_ms":1000}"#),
            StageSpec::new("builtin:staleness", r#"{"max_age_ms":30000}"#),
            StageSpec::new(dedupe, r#"{"newest_per_frame":true,"forget_after_ms":600000}"#),
        ],
    }
}

fn batch(n: usize) -> Vec<HostEvent> {
    let base = 1_763_900_000_000 + n as i64 * STEP_MS;
    (0..BATCH)
        .map(|i| {
            let key = format!("taxi-{:04}", (n * BATCH + i) % TAXIS);
            let t = base - (i % 9) as i64 * 20;
            let payload = Bytes::from(format!(r#"{{"mediaId":"{key}","timestamp":{t}}}"#));
            HostEvent { key, event_time: t, payload, ..HostEvent::default() }
        })
        .collect()
}

fn main() {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    let options = ChainOptions::defaults(&runtime);
    let next = streamgate_runtime::builtin::component_path("fixture_dedupe_next");
    let versions = [chain_refs("builtin:dedupe"), chain_refs(&next)];
    let mut chain = Chain::build(&runtime, &versions[0], options).expect("taxi chain builds");
    let metrics = Counts::new("bench");
    let mut n = 0;
    // Two seconds of traffic before the first swap.
    for _ in 0..40 {
        chain.push(1_763_900_000_000 + n as i64 * STEP_MS, batch(n), &metrics);
        n += 1;
    }
    let mut pauses = Vec::with_capacity(SWAPS);
    let mut held = Vec::with_capacity(SWAPS);
    for i in 0..SWAPS {
        let mut prepared =
            PreparedChain::load(&runtime, &versions[(i + 1) % 2], options.limits).expect("prepares");
        prepared.spec.version = i as u64 + 1;
        held.push(chain.held());
        let report = chain.swap(prepared);
        assert_eq!(report.reinjected, 0, "all state moves");
        pauses.push(report.pause);
        chain.push(1_763_900_000_000 + n as i64 * STEP_MS, batch(n), &metrics);
        n += 1;
    }
    pauses.sort_unstable();
    let avg_held = held.iter().sum::<usize>() / held.len();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "chain swap pause (taxi chain, {TAXIS} taxis at 20,000 events/s, {avg_held} events held on average)"
    );
    println!("| swaps | p50 ms | p90 ms | max ms |");
    println!("| ---: | ---: | ---: | ---: |");
    println!(
        "| {SWAPS} | {:.2} | {:.2} | {:.2} |",
        ms(pauses[SWAPS / 2]),
        ms(pauses[SWAPS * 9 / 10]),
        ms(pauses[SWAPS - 1])
    );
}
