//! `snapshot/refuses-garbage`: a stage must refuse what it did not write. Empty bytes
//! (when its own snapshots are never empty), every kind of truncation, a trailing byte,
//! random bytes (also exactly as long as a real snapshot) and a snapshot labelled with
//! a state version from the future must all come back as `restore-error`, never as
//! ok-and-empty (a swap would silently reset the tenant's state) and never as a trap;
//! refusing them while growing memory by more than 8 MiB is a warning.

use std::collections::BTreeSet;

use streamgate_runtime::StageError;
use streamgate_runtime::stage::mib;

use crate::generate::{Log, Rng};
use crate::harness::{Ctx, Failure, Probe};
use crate::report::Verdict;

/// Generated runs whose mid-log snapshots are taken apart.
const STATES: usize = 8;
/// Random byte strings tried.
const GARBAGE: usize = 16;
/// Memory growth while refusing garbage that is worth a warning.
pub const GARBAGE_MEMORY_WARNING: usize = 8 << 20;

/// Snapshots of the config under test: a fresh stage's, then from the middle of some
/// generated logs.
fn real_snapshots(ctx: &Ctx) -> Result<Vec<Vec<u8>>, Failure> {
    let mut states = vec![Probe::create(ctx)?.snapshot()?];
    let runs = ctx.runs().iter().filter(|r| r.setup == 0).take(STATES);
    for run in runs {
        let mut probe = Probe::create(ctx)?;
        let half =
            Log { batches: run.log.batches[..run.log.batches.len().div_ceil(2)].to_vec(), ..run.log.clone() };
        for b in &half.batches {
            probe.push(b.now, &b.events)?;
        }
        let state = probe.snapshot()?;
        if !states.contains(&state) {
            states.push(state);
        }
    }
    Ok(states)
}

/// What to feed `restore`: (what it is, state version, bytes).
fn candidates(ctx: &Ctx, states: &[Vec<u8>]) -> Vec<(String, u32, Vec<u8>)> {
    let version = ctx.plugin.description().state_version;
    let valid: BTreeSet<&Vec<u8>> = states.iter().collect();
    let mut out = Vec::new();
    let mut add = |what: String, v: u32, bytes: Vec<u8>| {
        if v != version || !valid.contains(&bytes) {
            out.push((what, v, bytes));
        }
    };
    add("empty bytes".into(), version, Vec::new());
    for s in states.iter().filter(|s| !s.is_empty()) {
        let n = s.len();
        for cut in BTreeSet::from([n - 1, n / 2, 1.min(n - 1)]) {
            add(format!("a {n}-byte snapshot cut to {cut} bytes"), version, s[..cut].to_vec());
        }
        let mut longer = s.clone();
        longer.push(0);
        add(format!("a {n}-byte snapshot with a trailing zero byte"), version, longer);
        add(
            format!("a {n}-byte snapshot labelled state version {}", version.wrapping_add(1)),
            version.wrapping_add(1),
            s.clone(),
        );
    }
    add("a snapshot labelled state version u32::MAX".into(), u32::MAX, states[0].clone());
    let mut rng = Rng::new(ctx.seed ^ 0x5eed_9a7b_a6e0);
    for _ in 0..GARBAGE {
        let len = 1 + rng.below(64) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        add(format!("{len} random bytes"), version, bytes);
    }
    // Random bytes as long as each real snapshot: a format that every byte string of
    // its length decodes is caught every time, not by the luck of the draw.
    for len in states.iter().map(Vec::len).filter(|&n| n > 0).collect::<BTreeSet<_>>() {
        let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        add(format!("{len} random bytes (the length of a real snapshot)"), version, bytes);
    }
    add("16 bytes 0xff".into(), version, vec![0xff; 16]);
    out
}

pub fn refuses_garbage(ctx: &Ctx) -> Verdict {
    let states = match real_snapshots(ctx) {
        Ok(s) => s,
        Err(f) => return Verdict::fail(f.message, "while taking the snapshots to corrupt".into(), None),
    };
    let tries = candidates(ctx, &states);
    let mut baseline = 0;
    // (memory high-water after refusing, what was refused)
    let mut largest: (usize, &str) = (0, "");
    for (what, version, bytes) in &tries {
        let mut fresh = match Probe::create(ctx) {
            Ok(p) => p,
            Err(f) => return Verdict::fail(f.message, String::new(), None),
        };
        baseline = baseline.max(fresh.stage().memory_high_water());
        let shown: Vec<String> = bytes.iter().take(24).map(|b| format!("{b:02x}")).collect();
        let shown = format!("{}{}", shown.join(""), if bytes.len() > 24 { "…" } else { "" });
        match fresh.try_restore(*version, bytes) {
            Err(StageError::Restore(_)) => {
                largest = largest.max((fresh.stage().memory_high_water(), what.as_str()));
            }
            Ok(()) => {
                return Verdict::fail(
                    format!(
                        "restore accepted {what} (state version {version}, bytes {shown:?}) as a valid snapshot: it \
                         must return restore-error (corrupt or unsupported-version) for bytes it did not write, or a \
                         swap would silently reset the tenant's state"
                    ),
                    format!("seed {}; {} inputs tried", ctx.seed, tries.len()),
                    None,
                )
                .cases(tries.len());
            }
            Err(e) => {
                return Verdict::fail(
                    format!("restoring {what} (state version {version}, bytes {shown:?}) {e}; return restore-error instead"),
                    format!("seed {}", ctx.seed),
                    None,
                )
                .cases(tries.len());
            }
        }
    }
    let (high_water, what) = largest;
    if high_water > baseline + GARBAGE_MEMORY_WARNING {
        return Verdict::warn(format!(
            "refused all {} inputs, but refusing {what} grew its memory to {} (a fresh stage: {}): a count read from \
             the bytes was trusted for an allocation; bound it by what the bytes can hold, or garbage may hit the \
             memory cap and trap",
            tries.len(),
            mib(high_water),
            mib(baseline)
        ))
        .cases(tries.len());
    }
    Verdict::pass(format!(
        "refused all {} inputs: empty, truncated, extended, random, and snapshots of another state version",
        tries.len()
    ))
    .cases(tries.len())
}
