//! The generic checks of determinism every plugin must pass: the same log replayed
//! gives the same answers, extra heartbeats and other batch boundaries change nothing
//! (for plugins whose output is not frame-scoped), and snapshot → restore at any point
//! continues exactly as the original stage.

use std::collections::BTreeSet;

use streamgate_plugin_sdk::DropReason;

use crate::cases::for_generated_logs;
use crate::generate::{Batch, Log};
use crate::harness::{Answer, Ctx, Failure, Probe, run_log};
use crate::report::Verdict;

/// One push's answer as comparable data: released seqs in order, drops in order.
type Decided = (Vec<u64>, Vec<(u64, DropReason)>);

/// Drops as `[5 out_of_date, 7 stale]`.
fn drops<'a>(dropped: impl IntoIterator<Item = &'a (u64, DropReason)>) -> String {
    let items: Vec<String> = dropped.into_iter().map(|(seq, r)| format!("{seq} {}", r.as_str())).collect();
    format!("[{}]", items.join(", "))
}

fn answers(frames: &[Answer]) -> Vec<Decided> {
    frames.iter().map(|f| (f.released_seqs(), f.dropped.clone())).collect()
}

pub fn replay(ctx: &Ctx) -> Verdict {
    for_generated_logs(
        ctx,
        "determinism/replay",
        "every log replayed into a fresh stage gave the same answers",
        |ctx, log| {
            let first = answers(&run_log(ctx, log)?.frames);
            let second = answers(&run_log(ctx, log)?.frames);
            match first.iter().zip(&second).position(|(a, b)| a != b) {
                None => Ok(()),
                Some(i) => Err(Failure::new(format!(
                    "the same log replayed into a fresh stage answered push {} differently: \
                     released {:?} / dropped {} the first time, released {:?} / dropped {} the second",
                    i + 1,
                    first[i].0,
                    drops(&first[i].1),
                    second[i].0,
                    drops(&second[i].1)
                ))),
            }
        },
    )
}

/// Everything a run released, in order, and the set of drops.
fn outcome(frames: &[Answer]) -> (Vec<u64>, BTreeSet<(u64, DropReason)>) {
    let released = frames.iter().flat_map(|f| f.released.iter().map(|e| e.seq)).collect();
    let dropped = frames.iter().flat_map(|f| f.dropped.iter().copied()).collect();
    (released, dropped)
}

fn compare_outcomes(plain: &[Answer], variant: &[Answer], variant_name: &str) -> Result<(), Failure> {
    let (released_a, dropped_a) = outcome(plain);
    let (released_b, dropped_b) = outcome(variant);
    if released_a != released_b {
        let at = released_a
            .iter()
            .zip(&released_b)
            .position(|(a, b)| a != b)
            .unwrap_or(released_a.len().min(released_b.len()));
        return Err(Failure::new(format!(
            "{variant_name}, the released sequence differs from release #{}: {:?} instead of {:?}",
            at + 1,
            &released_b[at..(at + 8).min(released_b.len())],
            &released_a[at..(at + 8).min(released_a.len())]
        )));
    }
    if dropped_a != dropped_b {
        let only_plain = dropped_a.difference(&dropped_b).take(8);
        let only_variant = dropped_b.difference(&dropped_a).take(8);
        return Err(Failure::new(format!(
            "{variant_name}, the drops differ: {} only then, {} only without",
            drops(only_variant),
            drops(only_plain)
        )));
    }
    Ok(())
}

/// An empty push at a `now` the stage has already seen must not change anything.
pub fn heartbeats(ctx: &Ctx) -> Verdict {
    for_generated_logs(
        ctx,
        "determinism/heartbeats",
        "repeating each push's now with an empty push changed nothing",
        |ctx, log| {
            let plain = run_log(ctx, log)?;
            let mut with_heartbeats = Log::default();
            for b in &log.batches {
                with_heartbeats.batches.push(b.clone());
                with_heartbeats.batches.push(Batch { now: b.now, events: vec![] });
            }
            let variant = run_log(ctx, &with_heartbeats)?;
            compare_outcomes(
                &plain.frames,
                &variant.frames,
                "with an empty push repeating the same now after every batch",
            )
        },
    )
}

/// Splitting each batch in two pushes at the same `now` must not change the outcome,
/// unless a frame-scoped capability (ordering, coalesce) is claimed and active.
pub fn boundaries(ctx: &Ctx) -> Verdict {
    if ctx.expect.frame_scoped() {
        return Verdict::skip(
            "it claims ordering or (active) coalescing, whose output legitimately depends on frame \
             boundaries; determinism/replay and determinism/heartbeats cover it",
        );
    }
    for_generated_logs(
        ctx,
        "determinism/boundaries",
        "splitting each batch into two pushes at the same now changed nothing",
        |ctx, log| {
            let plain = run_log(ctx, log)?;
            let mut split = Log::default();
            for b in &log.batches {
                let (head, tail) = b.events.split_at(b.events.len() / 2);
                split.batches.push(Batch { now: b.now, events: head.to_vec() });
                split.batches.push(Batch { now: b.now, events: tail.to_vec() });
            }
            let variant = run_log(ctx, &split)?;
            compare_outcomes(&plain.frames, &variant.frames, "with every batch split into two pushes")
        },
    )
}

/// Snapshot after every push, restore into a fresh stage, continue: the same answers.
pub fn snapshot_restore(ctx: &Ctx) -> Verdict {
    for_generated_logs(
        ctx,
        "snapshot/restore",
        "at every cut point, a restored stage answered like the one it replaced",
        |ctx, log| {
            let plain = answers(&run_log(ctx, log)?.frames);
            for cut in 1..=log.batches.len() {
                let mut before = Probe::create(ctx)?;
                for b in &log.batches[..cut] {
                    before.push(b.now, &b.events)?;
                }
                let state = before.snapshot()?;
                let mut after = before.restore_into_fresh(&state)?;
                drop(before);
                let rest = answers(&after.run(&log.batches[cut..], log.flush_time())?);
                if let Some(i) = plain[cut..].iter().zip(&rest).position(|(a, b)| a != b) {
                    let (want, got) = (&plain[cut + i], &rest[i]);
                    return Err(Failure::new(format!(
                        "snapshot after push {cut} ({} bytes) restored into a fresh stage: push {} answered \
                         released {:?} / dropped {}, but without the swap released {:?} / dropped {}",
                        state.len(),
                        cut + i + 1,
                        got.0,
                        drops(&got.1),
                        want.0,
                        drops(&want.1)
                    )));
                }
            }
            Ok(())
        },
    )
}
