//! The generic checks of determinism every plugin must pass: the same log replayed
//! gives the same answers and the same snapshot bytes, extra heartbeats and other batch
//! boundaries change nothing (compared as a sequence where the order is the plugin's
//! own, as sets per `now` where a frame-scoped claim makes the order depend on the
//! cut), and snapshot → restore at any point continues exactly as the original stage.

use std::collections::{BTreeMap, BTreeSet};

use streamgate_plugin_sdk::DropReason;

use crate::cases::for_generated_logs;
use crate::expect::Coalescing;
use crate::generate::{Batch, Log};
use crate::harness::{Answer, Ctx, Failure, Probe, Setup, run_log};
use crate::report::Verdict;

/// One push's answer as comparable data: released seqs in order, drops in order, the
/// expired keys. (Only a replay of the same pushes compares expiries: with other batch
/// boundaries a key may rightly expire at an extra heartbeat and come back later.)
type Decided = (Vec<u64>, Vec<(u64, DropReason)>, Vec<u64>);

/// Drops as `[5 out_of_date, 7 stale]`.
pub fn drops<'a>(dropped: impl IntoIterator<Item = &'a (u64, DropReason)>) -> String {
    let items: Vec<String> = dropped.into_iter().map(|(seq, r)| format!("{seq} {}", r.as_str())).collect();
    format!("[{}]", items.join(", "))
}

/// Expired key hashes as `[#00000000000000ab, ...]`.
pub fn keys(expired: &[u64]) -> String {
    let items: Vec<String> = expired.iter().map(|k| format!("#{k:016x}")).collect();
    format!("[{}]", items.join(", "))
}

pub fn answers(frames: &[Answer]) -> Vec<Decided> {
    frames.iter().map(|f| (f.released_seqs(), f.dropped.clone(), f.expired.clone())).collect()
}

pub fn replay(ctx: &Ctx) -> Verdict {
    for_generated_logs(
        ctx,
        "every log replayed into a fresh stage gave the same answers, and the same snapshot bytes before the flush",
        |ctx, setup, log, trace| {
            let again = run_log(ctx, setup, log)?;
            let (first, second) = (answers(&trace.frames), answers(&again.frames));
            if let Some(i) = first.iter().zip(&second).position(|(a, b)| a != b) {
                return Err(Failure::new(format!(
                    "the same log replayed into a fresh stage answered push {} differently: \
                     released {:?} / dropped {} / expired {} the first time, released {:?} / dropped {} / \
                     expired {} the second",
                    i + 1,
                    first[i].0,
                    drops(&first[i].1),
                    keys(&first[i].2),
                    second[i].0,
                    drops(&second[i].1),
                    keys(&second[i].2)
                )));
            }
            let (a, b) = (&trace.snapshot, &again.snapshot);
            if a != b {
                return Err(Failure::new(format!(
                    "two stages given the same log wrote different snapshots ({} and {} bytes, first difference at \
                     byte {}): snapshot bytes must be a function of the log (iterate BTreeMaps, not HashMaps)",
                    a.len(),
                    b.len(),
                    a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()))
                )));
            }
            Ok(())
        },
    )
}

/// Everything a run released, in order, and the set of drops.
fn outcome(frames: &[Answer]) -> (Vec<u64>, BTreeSet<(u64, DropReason)>) {
    let released = frames.iter().flat_map(|f| f.released.iter().map(|e| e.seq)).collect();
    let dropped = frames.iter().flat_map(|f| f.dropped.iter().copied()).collect();
    (released, dropped)
}

/// What was decided by each `now`, as sets: released, and dropped with reasons.
type PerNow = BTreeMap<i64, (BTreeSet<u64>, BTreeSet<(u64, DropReason)>)>;

fn per_now(frames: &[Answer]) -> PerNow {
    let mut out = PerNow::new();
    for f in frames {
        if f.released.is_empty() && f.dropped.is_empty() {
            continue;
        }
        let entry = out.entry(f.now).or_default();
        entry.0.extend(f.released.iter().map(|e| e.seq));
        entry.1.extend(f.dropped.iter().copied());
    }
    out
}

fn compare_per_now(plain: &[Answer], variant: &[Answer], variant_name: &str) -> Result<(), Failure> {
    let (a, b) = (per_now(plain), per_now(variant));
    let Some((now, (ra, da))) = a.iter().find(|(now, sets)| b.get(now) != Some(*sets)) else {
        return Ok(());
    };
    let (rb, db) = b.get(now).cloned().unwrap_or_default();
    Err(Failure::new(format!(
        "{variant_name}, what was decided at now={now} differs: released {:?} instead of {:?}, dropped {} instead \
         of {}; the same log must decide the same events by the same log time, however it is cut into pushes",
        rb,
        ra,
        drops(&db),
        drops(da)
    )))
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
        "repeating each push's now with an empty push changed nothing",
        |ctx, setup, log, plain| {
            let mut with_heartbeats = Log { batches: Vec::new(), ..log.clone() };
            for b in &log.batches {
                with_heartbeats.batches.push(b.clone());
                with_heartbeats.batches.push(Batch { now: b.now, events: vec![] });
            }
            let variant = run_log(ctx, setup, &with_heartbeats)?;
            compare_outcomes(
                &plain.frames,
                &variant.frames,
                "with an empty push repeating the same now after every batch",
            )
        },
    )
}

/// How a batch is cut into pushes at the same `now`: in two at a point that depends
/// on the batch, or one push per event.
fn recut(log: &Log, case: usize) -> (Log, &'static str) {
    let mut cut = Log { batches: Vec::new(), ..log.clone() };
    for (i, b) in log.batches.iter().enumerate() {
        if case % 3 == 2 && !b.events.is_empty() {
            cut.batches.extend(b.events.iter().map(|e| Batch { now: b.now, events: vec![*e] }));
            continue;
        }
        let at = if b.events.is_empty() { 0 } else { (i * 7 + case) % (b.events.len() + 1) };
        let (head, tail) = b.events.split_at(at);
        cut.batches.push(Batch { now: b.now, events: head.to_vec() });
        cut.batches.push(Batch { now: b.now, events: tail.to_vec() });
    }
    let name = if case % 3 == 2 { "with every event pushed alone" } else { "with every batch cut in two" };
    (cut, name)
}

/// Cutting each batch into more pushes at the same `now` must not change the outcome:
/// the released sequence and the drops, or for ordering (whose frames are sorted, so
/// the order legitimately follows the cut) what is decided by each `now`, as sets.
/// Active coalescing is frame-scoped by definition: skipped.
pub fn boundaries(ctx: &Ctx) -> Verdict {
    let frame_scoped = |s: &Setup| matches!(s.expect.coalesce, Coalescing::On(_));
    if ctx.setups.iter().all(frame_scoped) {
        return Verdict::skip(
            "it claims (active) coalescing, whose output legitimately depends on frame boundaries; \
             determinism/replay and determinism/heartbeats cover it",
        );
    }
    let case = std::cell::Cell::new(0);
    for_generated_logs(
        ctx,
        "cutting each batch into more pushes at the same now changed nothing (sets per now where the claims order frames)",
        |ctx, setup, log, plain| {
            if frame_scoped(setup) {
                return Ok(());
            }
            case.set(case.get() + 1);
            let (cut, name) = recut(log, case.get());
            let variant = run_log(ctx, setup, &cut)?;
            if setup.expect.ordering {
                compare_per_now(&plain.frames, &variant.frames, name)
            } else {
                compare_outcomes(&plain.frames, &variant.frames, name)
            }
        },
    )
}

/// Snapshot after three pushes of every log (the first, the last, and one between that
/// moves from case to case), restore into a fresh stage, continue: the same answers;
/// and snapshotting twice in a row gives the same bytes.
pub fn snapshot_restore(ctx: &Ctx) -> Verdict {
    let case = std::cell::Cell::new(0);
    for_generated_logs(
        ctx,
        "at three cut points of every log, a restored stage answered like the one it replaced; snapshots were \
         repeatable",
        |ctx, setup, log, trace| {
            let plain = answers(&trace.frames);
            let mut before = Probe::with_config(ctx, &setup.config)?;
            let n = log.batches.len();
            case.set(case.get() + 1);
            let cuts = BTreeSet::from([1, 1 + case.get() % n.max(1), n]);
            for cut in 1..=n {
                let b = &log.batches[cut - 1];
                before.push(b.now, &b.events)?;
                if !cuts.contains(&cut) {
                    continue;
                }
                let state = before.snapshot()?;
                if before.snapshot()? != state {
                    return Err(Failure::new(format!(
                        "after push {cut}, two snapshots in a row gave different bytes: a snapshot must not change \
                         the state or depend on anything but it"
                    )));
                }
                let mut after = before.restore_into_fresh(&state)?;
                let rest = answers(&after.run(&log.batches[cut..], log.flush_time())?);
                if let Some(i) = plain[cut..].iter().zip(&rest).position(|(a, b)| a != b) {
                    let (want, got) = (&plain[cut + i], &rest[i]);
                    return Err(Failure::new(format!(
                        "snapshot after push {cut} ({} bytes) restored into a fresh stage: push {} answered \
                         released {:?} / dropped {} / expired {}, but without the swap released {:?} / dropped {} \
                         / expired {}",
                        state.len(),
                        cut + i + 1,
                        got.0,
                        drops(&got.1),
                        keys(&got.2),
                        want.0,
                        drops(&want.1),
                        keys(&want.2)
                    )));
                }
            }
            Ok(())
        },
    )
}
