//! `make bench`: cost per event of the taxi policy chain, through Wasm and native, at
//! batch sizes 1, 100, 1,000 and 10,000.
//!
//! Prints a table: ns per event for the same chain (ordering → staleness → dedupe) run
//! as Wasm components behind the WIT boundary (the host's real path, payloads held in
//! the host) and as the same Rust cores called natively. Inputs are built before the
//! clock starts. Ratios matter more than the absolute numbers on a shared machine.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use streamgate_plugin_sdk::{Decisions, Event, Policy};
use streamgate_runtime::{
    Chain, ChainOptions, ChainSpec, Counts, Event as HostEvent, PolicyRuntime, SandboxConfig, StageSpec,
    key_hash,
};

/// Events per measurement, whatever the batch size.
const EVENTS: usize = 100_000;
/// Events in a profiling run (`POLICY_CHAIN_PROFILE`): enough that compiling the
/// components is a small part of the profile.
const PROFILE_EVENTS: usize = 1_000_000;
const BATCH_SIZES: [usize; 4] = [1, 100, 1_000, 10_000];
const KEYS: usize = 200;
const BASE_MS: i64 = 1_763_900_000_000;

/// The taxi stream at 10,000 events/s: 200 keys in turn (each once per 20 ms), event
/// times a little out of order. Event `j` is the same whatever the batch size.
fn event(j: usize) -> HostEvent {
    let key = format!("taxi-{:04}", j % KEYS);
    let t = BASE_MS + (j / KEYS) as i64 * 20 - (j % 7) as i64 * 15;
    let payload = Bytes::from(format!(r#"{{"mediaId":"{key}","lat":37.5,"lng":127.0,"timestamp":{t}}}"#));
    HostEvent { key, event_time: t, payload, ..HostEvent::default() }
}

/// The stream cut into batches of `size`, each with its log time (its last event's
/// arrival).
fn batches(size: usize, events: usize) -> Vec<(i64, Vec<HostEvent>)> {
    (0..events)
        .step_by(size)
        .map(|first| {
            let last = (first + size).min(events);
            (BASE_MS + last as i64 / 10, (first..last).map(event).collect())
        })
        .collect()
}

/// When a measurement started: the wall clock, and this thread's time on a CPU.
#[derive(Clone, Copy)]
struct Start {
    wall: Instant,
    on_cpu: Option<u64>,
}

/// This thread's time on a CPU so far, ns (Linux's schedstat): unlike the wall clock,
/// it leaves out the time other processes had the CPU, on a shared machine.
fn on_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

fn start() -> Start {
    Start { wall: Instant::now(), on_cpu: on_cpu_ns() }
}

/// ns per event since `start`: on-CPU time where the system reports it, else wall time.
fn per_event(start: Start, batches: &[(i64, Vec<HostEvent>)]) -> f64 {
    let events: usize = batches.iter().map(|(_, b)| b.len()).sum();
    let ns = match (start.on_cpu, on_cpu_ns()) {
        (Some(from), Some(to)) => to.saturating_sub(from) as f64,
        _ => start.wall.elapsed().as_nanos() as f64,
    };
    ns / events as f64
}

fn wasm_chain(batches: &[(i64, Vec<HostEvent>)]) -> (f64, u64) {
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
    let start = start();
    for (now, b) in inputs {
        released += chain.push(now, b, &metrics).released.len() as u64;
    }
    (per_event(start, batches), released)
}

/// One pass-through stage (the misbehave fixture, behaving): the boundary's own cost.
fn wasm_boundary(batches: &[(i64, Vec<HostEvent>)]) -> f64 {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    let pass = streamgate_runtime::builtin::component_path("fixture_misbehave");
    let spec = ChainSpec { version: 0, policies: vec![StageSpec::new(&pass, "")] };
    let mut chain = Chain::build(&runtime, &spec, ChainOptions::defaults(&runtime)).unwrap();
    let metrics = Counts::new("bench");
    let inputs = batches.to_vec();
    let start = start();
    for (now, b) in inputs {
        chain.push(now, b, &metrics);
    }
    per_event(start, batches)
}

/// The host's chain bookkeeping with no stage at all.
fn host_only(batches: &[(i64, Vec<HostEvent>)]) -> f64 {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    let mut chain = Chain::build(&runtime, &ChainSpec::default(), ChainOptions::defaults(&runtime)).unwrap();
    let metrics = Counts::new("bench");
    let inputs = batches.to_vec();
    let start = start();
    for (now, b) in inputs {
        chain.push(now, b, &metrics);
    }
    per_event(start, batches)
}

fn native_chain(batches: &[(i64, Vec<HostEvent>)]) -> (f64, u64) {
    let mut ordering = streamgate_ordering::Ordering::create(r#"{"window_ms":1000}"#).unwrap();
    let mut staleness = streamgate_staleness::Staleness::create(r#"{"max_age_ms":30000}"#).unwrap();
    let mut dedupe =
        streamgate_dedupe::Dedupe::create(r#"{"newest_per_frame":true,"forget_after_ms":600000}"#).unwrap();
    // The host's bookkeeping, natively and as the host keeps it: payloads in a queue
    // indexed by `seq - first`, emptied from the front as events leave.
    let mut held: VecDeque<Option<(Event, HostEvent)>> = VecDeque::new();
    let mut first = 0u64;
    let mut take = |held: &mut VecDeque<Option<(Event, HostEvent)>>, seq: u64| {
        let taken = held[(seq - first) as usize].take();
        while let Some(None) = held.front() {
            held.pop_front();
            first += 1;
        }
        taken.expect("held")
    };
    let mut seq = 0u64;
    let mut released = 0u64;
    let inputs = batches.to_vec();
    let start = start();
    for (now, b) in inputs {
        let mut input = Vec::with_capacity(b.len());
        for e in b {
            let ev = Event {
                seq,
                key: key_hash(&e.key),
                event_time: e.event_time,
                log_time: now,
                ..Event::default()
            };
            held.push_back(Some((ev, e)));
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
            for &(s, _) in &out.dropped {
                take(&mut held, s);
            }
            let first = seq - held.len() as u64;
            input =
                out.released.iter().map(|&s| held[(s - first) as usize].as_ref().expect("held").0).collect();
        }
        for e in &input {
            take(&mut held, e.seq);
        }
        released += input.len() as u64;
    }
    (per_event(start, batches), released)
}

fn main() {
    // `POLICY_CHAIN_PROFILE=wasm|native|host POLICY_CHAIN_BATCH=1000` runs one path on a
    // longer stream (`POLICY_CHAIN_EVENTS`, default 1,000,000) and prints nothing else:
    // for `perf record`, or `perf stat -e instructions:u` at two lengths (the difference
    // is the path's instructions per event, whatever the machine's load).
    if let Ok(path) = std::env::var("POLICY_CHAIN_PROFILE") {
        let size = std::env::var("POLICY_CHAIN_BATCH").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000);
        let events = std::env::var("POLICY_CHAIN_EVENTS").ok().and_then(|s| s.parse().ok());
        let batches = batches(size, events.unwrap_or(PROFILE_EVENTS));
        let ns = match path.as_str() {
            "native" => native_chain(&batches).0,
            "host" => host_only(&batches),
            _ => wasm_chain(&batches).0,
        };
        println!("{path}, batch {size}: {ns:.0} ns/event");
        return;
    }
    println!("taxi chain (ordering → staleness → dedupe), {EVENTS} events over {KEYS} keys, by batch size");
    println!(
        "| batch | Wasm ns/event | native ns/event | Wasm vs native | host, no stage | host + pass-through stage |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    // `POLICY_CHAIN_BATCH=1000` runs one size only (for a profiler).
    let only: Option<usize> = std::env::var("POLICY_CHAIN_BATCH").ok().and_then(|s| s.parse().ok());
    for size in BATCH_SIZES.into_iter().filter(|s| only.is_none_or(|o| o == *s)) {
        let batches = batches(size, EVENTS);
        // Warm up both paths once (compilation, allocator).
        wasm_chain(&batches[..batches.len().min(10)]);
        native_chain(&batches[..batches.len().min(10)]);
        let (wasm_ns, wasm_released) = wasm_chain(&batches);
        let (native_ns, native_released) = native_chain(&batches);
        assert_eq!(wasm_released, native_released, "Wasm and native chains must release the same events");
        let (host, boundary) = (host_only(&batches), wasm_boundary(&batches));
        println!(
            "| {size} | {wasm_ns:.0} | {native_ns:.0} | {:.2}x | {host:.0} | {boundary:.0} |",
            wasm_ns / native_ns
        );
    }
    println!();
    println!(
        "ns/event: the bench thread's time on a CPU (schedstat), so other load on the machine counts less."
    );
    println!("host, no stage: the chain's bookkeeping alone (seq numbers, held payloads, the batch copy);");
    println!("pass-through stage: one 0.1.0 stage releasing every event (the boundary's own cost).");
}
