//! The generic checks every plugin must pass, whatever it claims: its description,
//! the config under test, edge-case batches and valid answers. Configs that must be
//! refused are in [`crate::configs`], determinism and snapshot/restore in
//! [`crate::determinism`] and [`crate::restore`].

use std::collections::BTreeSet;

use streamgate_plugin_sdk::{Event, hash};

use crate::cases::every_run_completes;
use crate::generate::{BASE_TIME, Batch, FLUSH_AFTER_MS, Log};
use crate::harness::{Ctx, Probe, run_log};
use crate::report::Verdict;
use streamgate_runtime::wit;

/// Events in the `batch/large` check.
pub const LARGE_BATCH: usize = 100_000;

pub fn describe(d: &wit::Description) -> Verdict {
    let mut problems = Vec::new();
    if d.name.trim().is_empty() {
        problems.push("its name is empty".to_string());
    }
    if !semver_like(&d.version) {
        problems.push(format!("its version {:?} is not MAJOR.MINOR.PATCH (semver)", d.version));
    }
    if d.capabilities.is_empty() {
        problems.push("it claims no capability; list what it does so the kit can check it".into());
    }
    let distinct: BTreeSet<&str> =
        d.capabilities.iter().map(|&c| crate::expect::capability_name(c)).collect();
    if distinct.len() != d.capabilities.len() {
        problems.push("it lists a capability twice".into());
    }
    if problems.is_empty() {
        Verdict::pass(format!("{}@{}, state version {}", d.name, d.version, d.state_version))
    } else {
        Verdict::fail(format!("the description is unusable: {}", problems.join("; ")), String::new(), None)
    }
}

/// `1.2.3`, optionally followed by `-pre` and/or `+build`.
fn semver_like(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

pub fn given_config(ctx: &Ctx) -> Verdict {
    let verdict = match Probe::create(ctx) {
        Ok(_) => Verdict::pass(if ctx.config().trim().is_empty() {
            "the default config (empty string) creates a stage".to_string()
        } else {
            format!("the config {} creates a stage", ctx.config())
        }),
        Err(f) => Verdict::fail(f.message, "fix the config, or test with --config".into(), None),
    };
    let variants: Vec<&str> = ctx.setups[1..].iter().map(|s| s.config.as_str()).collect();
    let verdict = match verdict.outcome {
        crate::report::Outcome::Pass if !variants.is_empty() => {
            Verdict::pass(format!("{}; the claims also run under {}", verdict.reason, variants.join(" ")))
        }
        _ => verdict,
    };
    verdict.cases(ctx.setups.len())
}

pub fn empty_batch(ctx: &Ctx) -> Verdict {
    let log = Log::new(vec![Batch { now: BASE_TIME, events: vec![] }]);
    match run_log(ctx, ctx.under_test(), &log) {
        Ok(_) => Verdict::pass("an empty batch, then the flush: no decisions, no fault"),
        Err(f) => Verdict::fail(f.message, String::new(), Some(log)),
    }
}

pub fn large_batch(ctx: &Ctx) -> Verdict {
    let events: Vec<Event> = (0..LARGE_BATCH as u64)
        .map(|i| Event {
            seq: i + 1,
            key: hash(&format!("key-{}", i % 1_000)),
            event_time: BASE_TIME - (i % 3_000) as i64,
            log_time: BASE_TIME,
            id: hash(&format!("evt-{i}")),
            tag: [0, hash("rank"), hash("admitted")][(i % 3) as usize],
        })
        .collect();
    let what = format!("one batch of {LARGE_BATCH} events over 1000 keys, then the flush");
    let mut probe = match Probe::create(ctx) {
        Ok(p) => p,
        Err(f) => return Verdict::fail(f.message, what, None),
    };
    let outcome = probe.push(BASE_TIME, &events).and_then(|first| {
        let took = probe.last_call;
        let flush = probe.push(BASE_TIME + FLUSH_AFTER_MS, &[])?;
        Ok((first, flush, took))
    });
    match outcome {
        Ok((first, flush, took)) => Verdict::pass(format!(
            "{what}: the plugin's call took {:.0} ms; released {}, dropped {}, still held {}",
            took.as_secs_f64() * 1e3,
            first.released.len() + flush.released.len(),
            first.dropped.len() + flush.dropped.len(),
            probe.held().len()
        )),
        Err(f) => Verdict::fail(f.message, what, None),
    }
}

/// Keys, ids and tags at the ends of u64, and hashes of non-ASCII and 64 KiB strings.
pub fn extreme_keys(ctx: &Ctx) -> Verdict {
    let long = "ключ-🚕-".repeat(64 << 10 >> 4);
    let values = [0, 1, u64::MAX, hash("택시-서울-0042"), hash("🚕🚖"), hash(&long), hash("")];
    let batch = |round: i64, first_seq: u64| Batch {
        now: BASE_TIME + round * 1_000,
        events: values
            .iter()
            .enumerate()
            .map(|(i, &v)| Event {
                seq: first_seq + i as u64,
                key: v,
                event_time: BASE_TIME + round * 1_000 - i as i64,
                log_time: BASE_TIME + round * 1_000,
                id: values[(i + round as usize) % values.len()],
                tag: values[(i + 2) % values.len()],
            })
            .collect(),
    };
    let log = Log::new(vec![batch(0, 1), batch(1, 100)]);
    match run_log(ctx, ctx.under_test(), &log) {
        Ok(_) => {
            Verdict::pass("keys, ids and tags 0, 1, u64::MAX and hashes of non-ASCII and 64 KiB strings")
        }
        Err(f) => Verdict::fail(f.message, String::new(), Some(log)),
    }
}

/// Event and log times at the ends of i64, zero and negative.
pub fn extreme_times(ctx: &Ctx) -> Verdict {
    let times = [i64::MIN, i64::MIN + 1, -86_400_000, -1, 0, 1, BASE_TIME, i64::MAX - 1, i64::MAX];
    let mut seq = 0;
    let batches = [i64::MIN, -1, 0, BASE_TIME, i64::MAX]
        .into_iter()
        .map(|now| Batch {
            now,
            events: times
                .iter()
                .map(|&t| {
                    seq += 1;
                    Event { seq, key: seq % 3, event_time: t, log_time: now, id: seq, tag: 0 }
                })
                .collect(),
        })
        .collect();
    let log = Log::new(batches);
    let mut probe = match Probe::create(ctx) {
        Ok(p) => p,
        Err(f) => return Verdict::fail(f.message, String::new(), None),
    };
    // The last batch is at i64::MAX already: no flush beyond it.
    let outcome = log.batches.iter().try_for_each(|b| probe.push(b.now, &b.events).map(drop));
    match outcome {
        Ok(()) => Verdict::pass("event, log and push times i64::MIN, i64::MAX, 0 and negative: no fault"),
        Err(f) => Verdict::fail(f.message, String::new(), Some(log)),
    }
}

pub fn valid_decisions(ctx: &Ctx) -> Verdict {
    every_run_completes(
        ctx,
        "every run ended without a fault, every answer naming only held events, each once",
    )
}
