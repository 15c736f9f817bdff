//! `make bench`: cost per event of the taxi policy chain, through Wasm and native.
//!
//! Prints a table: ns per event for the same chain (ordering → staleness → dedupe) run
//! as Wasm components behind the WIT boundary (the host's real path, payloads held in
//! the host) and as the same Rust cores called natively. Inputs are built before the
//! clock starts. Ratios matter more than the absolute numbers on a shared machine.

use std::time::Instant;

use bytes::Bytes;
use streamgate_plugin_sdk::{Decisions, Event, Policy};
use streamgate_runtime::{
    Chain, ChainOptions, ChainSpec, Counts, Event as HostEvent, PolicyRuntime, SandboxConfig, StageSpec,
    key_hash,
};

const BATCH: usize = 1_000;
const BATCHES: usize = 300;
const KEYS: usize = 200;
const STEP_MS: i64 = 100;

fn batch(n: usize) -> Vec<HostEvent> {
    let base = 1_763_900_000_000 + n as i64 * STEP_MS;
    (0..BATCH)
        .map(|i| {
            let key = format!("taxi-{:04}", i % KEYS);
            let t = base + (i / KEYS) as i64 * 10 - (i % 7) as i64 * 15;
            let payload =
                Bytes::from(format!(r#"{{"mediaId":"{key}","lat":37.5,"lng":127.0,"timestamp":{t}}}"#));
            HostEvent { key, event_time: t, payload, ..HostEvent::default() }
        })
        .collect()
}

fn now_of(n: usize) -> i64 {
    1_763_900_000_000 + n as i64 * STEP_MS
}

fn wasm_chain(batches: &[Vec<HostEvent>]) -> (f64, u64) {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    let taxi = ChainSpec {
        version: 0,
        policies: vec![
            StageSpec::new("builtin:ordering", r#"{"window_ms":1000}"#),
            StageSpec::new("builtin:staleness", r#"{"max_age_ms":30000}"#),
            StageSpec::new("builtin:dedupe", r#"{"newest_per_frame":true,"forget_after_ms":600000}"#),
        ],
    };
    let mut chain =
        Chain::build(&runtime, &taxi, ChainOptions::defaults(&runtime)).expect("taxi chain builds");
    let metrics = Counts::new("bench");
    let mut released = 0u64;
    let inputs = batches.to_vec();
    let start = Instant::now();
    for (n, b) in inputs.into_iter().enumerate() {
        released += chain.push(now_of(n), b, &metrics).released.len() as u64;
    }
    (start.elapsed().as_nanos() as f64 / (batches.len() * BATCH) as f64, released)
}

/// One pass-through stage (the misbehave fixture, behaving): the boundary's own cost.
fn wasm_boundary(batches: &[Vec<HostEvent>]) -> f64 {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    let pass = streamgate_runtime::builtin::component_path("fixture_misbehave");
    let spec = ChainSpec { version: 0, policies: vec![StageSpec::new(&pass, "")] };
    let mut chain = Chain::build(&runtime, &spec, ChainOptions::defaults(&runtime)).unwrap();
    let metrics = Counts::new("bench");
    let inputs = batches.to_vec();
    let start = Instant::now();
    for (n, b) in inputs.into_iter().enumerate() {
        chain.push(now_of(n), b, &metrics);
    }
    start.elapsed().as_nanos() as f64 / (batches.len() * BATCH) as f64
}

/// The host's chain bookkeeping with no stage at all.
fn host_only(batches: &[Vec<HostEvent>]) -> f64 {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    let mut chain = Chain::build(&runtime, &ChainSpec::default(), ChainOptions::defaults(&runtime)).unwrap();
    let metrics = Counts::new("bench");
    let inputs = batches.to_vec();
    let start = Instant::now();
    for (n, b) in inputs.into_iter().enumerate() {
        chain.push(now_of(n), b, &metrics);
    }
    start.elapsed().as_nanos() as f64 / (batches.len() * BATCH) as f64
}

fn native_chain(batches: &[Vec<HostEvent>]) -> (f64, u64) {
    let mut ordering = streamgate_ordering::Ordering::create(r#"{"window_ms":1000}"#).unwrap();
    let mut staleness = streamgate_staleness::Staleness::create(r#"{"max_age_ms":30000}"#).unwrap();
    let mut dedupe =
        streamgate_dedupe::Dedupe::create(r#"{"newest_per_frame":true,"forget_after_ms":600000}"#).unwrap();
    // The host's bookkeeping, natively: payloads by seq in the same kind of map.
    let mut held = streamgate_plugin_sdk::key_map();
    let mut seq = 0u64;
    let mut released = 0u64;
    let inputs = batches.to_vec();
    let start = Instant::now();
    for (n, b) in inputs.into_iter().enumerate() {
        let now = now_of(n);
        let mut input = Vec::with_capacity(b.len());
        for e in b {
            let ev = Event {
                seq,
                key: key_hash(&e.key),
                event_time: e.event_time,
                log_time: now,
                ..Event::default()
            };
            held.insert(seq, (ev, e));
            input.push(ev);
            seq += 1;
        }
        for stage in 0..3 {
            let mut out = Decisions::default();
            match stage {
                0 => ordering.push(now, &input, &mut out),
                1 => staleness.push(now, &input, &mut out),
                _ => dedupe.push(now, &input, &mut out),
            }
            for (s, _) in &out.dropped {
                held.remove(s);
            }
            input = out.released.iter().map(|s| held[s].0).collect();
        }
        for e in &input {
            held.remove(&e.seq);
        }
        released += input.len() as u64;
    }
    (start.elapsed().as_nanos() as f64 / (batches.len() * BATCH) as f64, released)
}

fn main() {
    let batches: Vec<Vec<HostEvent>> = (0..BATCHES).map(batch).collect();
    // Warm up both paths once (compilation, allocator).
    wasm_chain(&batches[..10]);
    native_chain(&batches[..10]);
    let (wasm_ns, wasm_released) = wasm_chain(&batches);
    let (native_ns, native_released) = native_chain(&batches);
    assert_eq!(wasm_released, native_released, "Wasm and native chains must release the same events");
    println!("taxi chain (ordering → staleness → dedupe), {BATCHES} batches of {BATCH} events, {KEYS} keys");
    println!("| path | ns/event | events/s | vs native |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, ns) in [("Wasm components (host path)", wasm_ns), ("native cores", native_ns)] {
        println!("| {name} | {ns:.0} | {:.0} | {:.2}x |", 1e9 / ns, ns / native_ns);
    }
    println!("released {wasm_released} of {} events", BATCHES * BATCH);
    let (host, boundary) = (host_only(&batches), wasm_boundary(&batches));
    println!();
    println!("one pass-through Wasm stage vs none (host bookkeeping: seq, payload map, batch copy)");
    println!("| path | ns/event |");
    println!("| --- | ---: |");
    println!("| host, no stage | {host:.0} |");
    println!("| host + one pass-through Wasm stage | {boundary:.0} |");
    println!("| the Wasm boundary itself (difference) | {:.0} |", boundary - host);
}
