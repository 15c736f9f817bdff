//! `make bench`: cost per event of each builtin stage alone, through Wasm and native,
//! at batch sizes 1, 100, 1,000 and 10,000.
//!
//! The Wasm column is the stage's `push` as the host calls it (events lowered into the
//! component, decisions lifted back, fuel metered); the native column is the same Rust
//! core called directly. "fuel/event" is the Wasm instructions the stage executed per
//! event: the same on every machine and under any load, so it shows a change in the
//! plugin's own work even when the wall-clock columns are noisy.

use std::time::Instant;

use streamgate_plugin_sdk::{Decisions, Event, Policy};
use streamgate_runtime::{Plugin, PolicyRuntime, SandboxConfig, wit};

/// Events per measurement, whatever the batch size.
const EVENTS: usize = 200_000;
const KEYS: u64 = 200;
/// Log time advances this much per 1,000 events (a 10,000 events/s stream).
const MS_PER_1000: i64 = 100;

struct StageCase {
    name: &'static str,
    config: &'static str,
}

const CASES: [StageCase; 3] = [
    StageCase { name: "ordering", config: r#"{"window_ms":1000}"# },
    StageCase { name: "staleness", config: r#"{"max_age_ms":30000}"# },
    StageCase { name: "dedupe", config: r#"{"newest_per_frame":true,"forget_after_ms":600000}"# },
];

/// The taxi stream: 200 keys in turn, event times a little out of order.
fn events() -> Vec<Event> {
    (0..EVENTS as u64)
        .map(|seq| {
            let log_time = 1_763_900_000_000 + seq as i64 * MS_PER_1000 / 1_000;
            Event {
                seq,
                key: streamgate_plugin_sdk::hash(&format!("taxi-{:04}", seq % KEYS)),
                event_time: log_time - (seq % 7) as i64 * 15,
                log_time,
                ..Event::default()
            }
        })
        .collect()
}

/// ns/event and fuel/event of the Wasm stage; the number of events it released.
fn wasm(
    runtime: &PolicyRuntime,
    plugin: &Plugin,
    case: &StageCase,
    events: &[Event],
    batch: usize,
) -> (f64, f64, usize) {
    let mut stage = plugin.stage(case.config, runtime.limits(None)).expect("stage creates");
    let batches: Vec<Vec<wit::Event>> =
        events.chunks(batch).map(|b| b.iter().map(wit::Event::from).collect()).collect();
    let (mut fuel, mut released) = (0u64, 0usize);
    let start = Instant::now();
    for b in &batches {
        let now = b.last().expect("batches are not empty").log_time;
        released += stage.push(now, b).expect("builtin stage answers").released.len();
        fuel += stage.last_push_fuel();
    }
    let ns = start.elapsed().as_nanos() as f64 / events.len() as f64;
    (ns, fuel as f64 / events.len() as f64, released)
}

fn native_push<P: Policy>(config: &str, events: &[Event], batch: usize) -> (f64, usize) {
    let mut policy = P::create(config).expect("config is valid");
    let mut released = 0;
    let mut out = Decisions::default();
    let start = Instant::now();
    for b in events.chunks(batch) {
        out.released.clear();
        out.dropped.clear();
        out.expired.clear();
        policy.push(b.last().expect("not empty").log_time, b, &mut out);
        released += out.released.len();
    }
    (start.elapsed().as_nanos() as f64 / events.len() as f64, released)
}

fn native(case: &StageCase, events: &[Event], batch: usize) -> (f64, usize) {
    match case.name {
        "ordering" => native_push::<streamgate_ordering::Ordering>(case.config, events, batch),
        "staleness" => native_push::<streamgate_staleness::Staleness>(case.config, events, batch),
        _ => native_push::<streamgate_dedupe::Dedupe>(case.config, events, batch),
    }
}

fn main() {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    let events = events();
    println!("each builtin stage alone, {EVENTS} events over {KEYS} keys, by batch size");
    println!("| stage | batch | Wasm ns/event | native ns/event | Wasm vs native | fuel/event |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for case in &CASES {
        let plugin = runtime.load_ref(&format!("builtin:{}", case.name)).expect("builtin loads");
        for batch in [1, 100, 1_000, 10_000] {
            // Warm up once (allocator, caches), then measure.
            wasm(&runtime, &plugin, case, &events[..10_000], batch);
            let (wasm_ns, fuel, wasm_released) = wasm(&runtime, &plugin, case, &events, batch);
            let (native_ns, native_released) = native(case, &events, batch);
            assert_eq!(
                wasm_released, native_released,
                "{} at batch {batch}: Wasm and native differ",
                case.name
            );
            println!(
                "| {} | {batch} | {wasm_ns:.0} | {native_ns:.0} | {:.2}x | {fuel:.0} |",
                case.name,
                wasm_ns / native_ns
            );
        }
    }
}
