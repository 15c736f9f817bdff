//! `make bench`: cost per event of the taxi policy chain, through Wasm and native, at
//! batch sizes 1, 100, 1,000 and 10,000.
//!
//! Prints a table: ns per event for the same chain (ordering → staleness → dedupe) run
//! as Wasm components behind the WIT boundary (the host's real path, payloads held in
//! the host) and as the same Rust cores called natively. Only the pushes are on the
//! clock (this thread's CPU time): inputs are built chunk by chunk just before they are
//! pushed, and released events dropped after, as the source and the hub do around the
//! chain. Ratios matter more than the absolute numbers on a shared machine.

use std::collections::VecDeque;

use bytes::Bytes;
use streamgate_plugin_sdk::{Decisions, Event, Policy};
use streamgate_runtime::{
    Chain, ChainOptions, ChainSpec, Counts, Event as HostEvent, PolicyRuntime, SandboxConfig, StageSpec,
    key_hash,
};

/// Events per measurement, whatever the batch size.
const EVENTS: usize = 100_000;
/// Runs per measurement; the table shows the fastest.
const RUNS: usize = 3;
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

/// Events whose batches are built together, just before they are pushed: about a
/// megabyte of payloads, so each is fresh in the cache when the chain takes it, as an
/// entry decoded from the log just before is.
const CHUNK_EVENTS: usize = 10_000;

/// The taxi stream of `events` events cut into batches of `size`.
#[derive(Clone, Copy)]
struct Stream {
    size: usize,
    events: usize,
}

impl Stream {
    /// Batch `first..first + size` with its log time (its last event's arrival).
    fn batch(&self, first: usize) -> (i64, Vec<HostEvent>) {
        let last = (first + self.size).min(self.events);
        (BASE_MS + last as i64 / 10, (first..last).map(event).collect())
    }

    /// The batches in chunks of about [`CHUNK_EVENTS`] (at least one batch each).
    fn chunks(self) -> impl Iterator<Item = Vec<(i64, Vec<HostEvent>)>> {
        let per_chunk = self.size * (CHUNK_EVENTS / self.size).max(1);
        (0..self.events).step_by(per_chunk).map(move |from| {
            let to = (from + per_chunk).min(self.events);
            (from..to).step_by(self.size).map(|first| self.batch(first)).collect()
        })
    }

    /// The first `batches` batches only (a warm-up).
    fn first(self, batches: usize) -> Stream {
        Stream { events: self.events.min(batches * self.size), ..self }
    }
}

/// This thread's time on a CPU so far, ns (`CLOCK_THREAD_CPUTIME_ID`): unlike the wall
/// clock, it leaves out the time other processes had the CPU, on a shared machine; and
/// unlike `/proc/thread-self/schedstat`, which a thread that never sleeps sees advance
/// only at the scheduler's tick (4 ms here), it is exact.
fn on_cpu_ns() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid timespec for the call to write.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } == 0;
    assert!(ok, "this bench needs CLOCK_THREAD_CPUTIME_ID");
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Pushes `stream` through `push` and returns ns per event on this thread's CPU and the
/// events released. Only the pushes are on the clock: each chunk's batches are built
/// just before it (the source's decode) and what it released is dropped after it (the
/// consumer's work; `push` moves released events into the vector it is given).
fn timed(stream: Stream, mut push: impl FnMut(i64, Vec<HostEvent>, &mut Vec<HostEvent>)) -> (f64, u64) {
    let (mut ns, mut released) = (0u64, 0u64);
    let mut out = Vec::new();
    for chunk in stream.chunks() {
        let from = on_cpu_ns();
        for (now, batch) in chunk {
            push(now, batch, &mut out);
        }
        ns += on_cpu_ns() - from;
        released += out.len() as u64;
        out.clear();
    }
    (ns as f64 / stream.events as f64, released)
}

/// The lowest ns/event of `RUNS` runs of `run` (with what the last returned): the run
/// least disturbed by the rest of the machine.
fn best_of<T>(mut run: impl FnMut() -> (f64, T)) -> (f64, T) {
    let mut best = run();
    for _ in 1..RUNS {
        let next = run();
        if next.0 < best.0 {
            best.0 = next.0;
        }
        best.1 = next.1;
    }
    best
}

/// `spec` built as the host builds a tenant's chain.
fn chain_of(spec: &ChainSpec) -> Chain {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    Chain::build(&runtime, spec, ChainOptions::defaults(&runtime)).expect("the chain builds")
}

/// `stream` through `chain`: the host's real path.
fn through_chain(mut chain: Chain, stream: Stream) -> (f64, u64) {
    let metrics = Counts::new("bench");
    timed(stream, |now, batch, out| out.extend(chain.push(now, batch, &metrics).released))
}

fn wasm_chain(stream: Stream) -> (f64, u64) {
    let taxi = ChainSpec {
        version: 0,
        policies: vec![
            StageSpec::new("builtin:ordering", r#"{"window_ms":1000}"#),
            StageSpec::new("builtin:staleness", r#"{"max_age_ms":30000}"#),
            StageSpec::new("builtin:dedupe", r#"{"newest_per_frame":true,"forget_after_ms":600000}"#),
        ],
    };
    through_chain(chain_of(&taxi), stream)
}

/// One 0.4.0 stage releasing every event at once: what a stage costs beyond its
/// policy's own work.
fn wasm_boundary(stream: Stream) -> f64 {
    let pass = streamgate_runtime::builtin::component_path("fixture_passthrough");
    let spec = ChainSpec { version: 0, policies: vec![StageSpec::new(&pass, "")] };
    through_chain(chain_of(&spec), stream).0
}

/// The host's chain bookkeeping with no stage at all.
fn host_only(stream: Stream) -> f64 {
    through_chain(chain_of(&ChainSpec::default()), stream).0
}

/// The same cores called natively, with the host's bookkeeping as the host keeps it:
/// payloads in a queue indexed by `seq - first`, emptied from the front as events leave.
struct NativeChain {
    ordering: streamgate_ordering::Ordering,
    staleness: streamgate_staleness::Staleness,
    dedupe: streamgate_dedupe::Dedupe,
    held: VecDeque<Option<(Event, HostEvent)>>,
    first: u64,
    seq: u64,
}

impl NativeChain {
    fn new() -> Self {
        NativeChain {
            ordering: streamgate_ordering::Ordering::create(r#"{"window_ms":1000}"#).unwrap(),
            staleness: streamgate_staleness::Staleness::create(r#"{"max_age_ms":30000}"#).unwrap(),
            dedupe: streamgate_dedupe::Dedupe::create(
                r#"{"newest_per_frame":true,"forget_after_ms":600000}"#,
            )
            .unwrap(),
            held: VecDeque::new(),
            first: 0,
            seq: 0,
        }
    }

    fn take(&mut self, seq: u64) -> (Event, HostEvent) {
        let taken = self.held[(seq - self.first) as usize].take();
        while let Some(None) = self.held.front() {
            self.held.pop_front();
            self.first += 1;
        }
        taken.expect("held")
    }

    /// One batch through the three stages (not inlined: a profiler can single it out).
    #[inline(never)]
    fn push(&mut self, now: i64, batch: Vec<HostEvent>, out: &mut Vec<HostEvent>) {
        let mut input = Vec::with_capacity(batch.len());
        for e in batch {
            let ev = Event {
                seq: self.seq,
                key: key_hash(&e.key),
                event_time: e.event_time,
                log_time: now,
                ..Event::default()
            };
            self.held.push_back(Some((ev, e)));
            input.push(ev);
            self.seq += 1;
        }
        for stage in 0..3 {
            let mut decided = Decisions::default();
            match stage {
                0 => self.ordering.push(now, &input, &mut decided),
                1 => self.staleness.push(now, &input, &mut decided),
                _ => self.dedupe.push(now, &input, &mut decided),
            }
            for &(s, _) in &decided.dropped {
                self.take(s);
            }
            let first = self.first;
            input = decided
                .released
                .iter()
                .map(|&s| self.held[(s - first) as usize].as_ref().expect("held").0)
                .collect();
        }
        out.extend(input.iter().map(|e| self.take(e.seq).1));
    }
}

fn native_chain(stream: Stream) -> (f64, u64) {
    let mut chain = NativeChain::new();
    timed(stream, |now, batch, out| chain.push(now, batch, out))
}

fn main() {
    // `POLICY_CHAIN_PROFILE=wasm|native|host|pass POLICY_CHAIN_BATCH=1000` runs one path on a
    // longer stream (`POLICY_CHAIN_EVENTS`, default 1,000,000) and prints nothing else:
    // for `perf record` (the pushes are most of the samples; building the inputs is the
    // rest).
    if let Ok(path) = std::env::var("POLICY_CHAIN_PROFILE") {
        let size = std::env::var("POLICY_CHAIN_BATCH").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000);
        let events = std::env::var("POLICY_CHAIN_EVENTS").ok().and_then(|s| s.parse().ok());
        let stream = Stream { size, events: events.unwrap_or(PROFILE_EVENTS) };
        let ns = match path.as_str() {
            "native" => native_chain(stream).0,
            "host" => host_only(stream),
            "pass" => wasm_boundary(stream),
            _ => wasm_chain(stream).0,
        };
        println!("{path}, batch {size}: {ns:.0} ns/event");
        return;
    }
    println!("taxi chain (ordering → staleness → dedupe), {EVENTS} events over {KEYS} keys, by batch size");
    println!(
        "| batch | Wasm ns/event | native ns/event | Wasm vs native | host, no stage | host + pass-through stage |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    // `POLICY_CHAIN_BATCH=1000` runs one size only.
    let only: Option<usize> = std::env::var("POLICY_CHAIN_BATCH").ok().and_then(|s| s.parse().ok());
    for size in BATCH_SIZES.into_iter().filter(|s| only.is_none_or(|o| o == *s)) {
        let stream = Stream { size, events: EVENTS };
        // Warm up both paths once (compilation, allocator).
        wasm_chain(stream.first(10));
        native_chain(stream.first(10));
        let (wasm_ns, wasm_released) = best_of(|| wasm_chain(stream));
        let (native_ns, native_released) = best_of(|| native_chain(stream));
        assert_eq!(wasm_released, native_released, "Wasm and native chains must release the same events");
        let host = best_of(|| (host_only(stream), ())).0;
        let boundary = best_of(|| (wasm_boundary(stream), ())).0;
        println!(
            "| {size} | {wasm_ns:.0} | {native_ns:.0} | {:.2}x | {host:.0} | {boundary:.0} |",
            wasm_ns / native_ns
        );
    }
    println!();
    println!(
        "ns/event: the pushes' time on the bench thread's CPU, the fastest of {RUNS} runs; inputs built just \
         before each chunk of {CHUNK_EVENTS} events and released events dropped after it, off the clock."
    );
    println!("host, no stage: the chain's bookkeeping alone (seq numbers, held payloads, the batch copy);");
    println!(
        "pass-through stage: one 0.4.0 stage releasing every event (the host's work per stage, the crossing and \
         the SDK's shell)."
    );
}
