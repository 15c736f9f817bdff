//! Resources over time: one long-lived stage fed a steady log (a bounded set of keys
//! and ids, log time moving on at a steady pace, so that the warm-up passes every
//! window the config allows), measured per window of calls.
//!
//! - `resources/memory`: once the stage has warmed up, the linear memory high-water may
//!   grow only with the events it holds (a generous allowance per held event): what it
//!   keeps beyond them must be bounded.
//! - `resources/time`: the work per event, counted in fuel (about one unit per Wasm
//!   instruction: deterministic, so no machine noise), must not grow with the number
//!   of calls; the last window is compared with an early one, with a generous ratio.

use streamgate_plugin_sdk::Event;

use crate::generate::{BASE_TIME, Rng};
use crate::harness::{Ctx, Failure, Probe};
use crate::report::Verdict;

/// Calls into the one stage, in windows of this many.
pub const STEADY_CALLS: usize = 1_600;
const WINDOW: usize = 200;
const EVENTS_PER_CALL: usize = 16;
/// Log time per call, at least; longer when the config's windows are, so that the
/// warm-up covers the longest.
const STEP_MS: i64 = 100;
/// Memory a stage may add per extra event it holds.
pub const BYTES_PER_HELD_EVENT: usize = 256;
/// The window compared with the last one: after warming up.
const EARLY_WINDOW: usize = 1;
/// Growth of the memory high-water after the early window that fails the check.
pub const MEMORY_GROWTH_LIMIT: usize = 1 << 20;
/// Late fuel per event over early fuel per event that fails the check.
pub const FUEL_RATIO_LIMIT: f64 = 1.5;

/// Per window: fuel per event, memory high-water at its end, events held at its end.
struct Curve {
    fuel_per_event: Vec<f64>,
    memory: Vec<usize>,
    held: Vec<usize>,
}

fn steady_run(ctx: &Ctx) -> Result<Curve, Failure> {
    let mut rng = Rng::new(ctx.seed ^ 0x0057_ead1);
    let keys: Vec<u64> = (0..64).map(|_| rng.next_u64()).collect();
    let ids: Vec<u64> = (0..509).map(|_| rng.next_u64()).collect();
    let tags = [0, streamgate_plugin_sdk::hash("rank")];
    // The longest window passes within the first half of the first window of calls.
    let step = STEP_MS.max(ctx.expect().bounds().longest() / (WINDOW as i64 / 2) + 1);
    let mut probe = Probe::create(ctx)?;
    let mut curve = Curve { fuel_per_event: Vec::new(), memory: Vec::new(), held: Vec::new() };
    let (mut seq, mut fuel) = (1u64, 0u64);
    for call in 0..STEADY_CALLS {
        let now = BASE_TIME.saturating_add((call as i64).saturating_mul(step));
        let events: Vec<Event> = (0..EVENTS_PER_CALL)
            .map(|_| {
                seq += 1;
                Event {
                    seq,
                    key: *rng.pick(&keys),
                    event_time: now - rng.below(500) as i64,
                    log_time: now,
                    id: ids[seq as usize % ids.len()],
                    tag: *rng.pick(&tags),
                }
            })
            .collect();
        probe.push(now, &events)?;
        fuel += probe.stage().last_push_fuel();
        if (call + 1) % WINDOW == 0 {
            curve.fuel_per_event.push(fuel as f64 / (WINDOW * EVENTS_PER_CALL) as f64);
            curve.memory.push(probe.stage().memory_high_water());
            curve.held.push(probe.held().len());
            fuel = 0;
        }
    }
    Ok(curve)
}

fn setting() -> String {
    format!(
        "one stage, {STEADY_CALLS} calls of {EVENTS_PER_CALL} events over 64 keys and 509 ids, log time +{STEP_MS} ms \
         (or more, for long windows) per call, in windows of {WINDOW} calls"
    )
}

pub fn memory(ctx: &Ctx) -> Verdict {
    let curve = match steady_run(ctx) {
        Ok(c) => c,
        Err(f) => return Verdict::fail(f.message, setting(), None).cases(1),
    };
    let kib: Vec<String> = curve.memory.iter().map(|m| format!("{}", m >> 10)).collect();
    let (early, late) = (curve.memory[EARLY_WINDOW], *curve.memory.last().expect("windows"));
    let growth = late.saturating_sub(early);
    let calls = (curve.memory.len() - 1 - EARLY_WINDOW) * WINDOW;
    let (held_early, held) = (curve.held[EARLY_WINDOW], curve.held.last().copied().unwrap_or(0));
    let allowed = MEMORY_GROWTH_LIMIT + held.saturating_sub(held_early) * BYTES_PER_HELD_EVENT;
    if growth > allowed {
        return Verdict::fail(
            format!(
                "memory kept growing beyond what it holds: the high-water grew by {} KiB over the last {calls} calls \
                 (about {} bytes per call) while the events it held went from {held_early} to {held} (allowed: {} \
                 KiB); high-water per window in KiB: [{}]",
                growth >> 10,
                growth / calls,
                allowed >> 10,
                kib.join(", ")
            ),
            setting(),
            None,
        )
        .cases(1);
    }
    Verdict::pass(format!(
        "the memory high-water settled (KiB per window: [{}]; {held} events held at the end)",
        kib.join(", ")
    ))
    .cases(1)
}

pub fn time(ctx: &Ctx) -> Verdict {
    let curve = match steady_run(ctx) {
        Ok(c) => c,
        Err(f) => return Verdict::fail(f.message, setting(), None).cases(1),
    };
    let shown: Vec<String> = curve.fuel_per_event.iter().map(|f| format!("{f:.0}")).collect();
    let early = curve.fuel_per_event[EARLY_WINDOW].max(1.0);
    let late = *curve.fuel_per_event.last().expect("windows");
    let ratio = late / early;
    if ratio > FUEL_RATIO_LIMIT {
        return Verdict::fail(
            format!(
                "the work per event grew with the number of calls: {late:.0} fuel per event in the last window, \
                 {ratio:.1}× the {early:.0} of window {} (limit {FUEL_RATIO_LIMIT}×); fuel per event per window: [{}]",
                EARLY_WINDOW + 1,
                shown.join(", ")
            ),
            setting(),
            None,
        )
        .cases(1);
    }
    Verdict::pass(format!("the fuel per event stayed flat (per window: [{}]; {ratio:.2}×)", shown.join(", ")))
        .cases(1)
}
