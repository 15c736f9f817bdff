//! What each claimed capability promises, checked on the frames of a run:
//!
//! - ordering: within one answer (frame), releases are in event-time order;
//! - staleness: nothing released is older than `max_age_ms` (config, default 30000)
//!   before that push's `now`;
//! - dedupe: per key the released event time strictly increases (`by = "id"`: each
//!   idempotency id is released once), except that a key not released for more than
//!   `forget_after_ms` (config) may have been forgotten;
//! - coalesce: at most one release per key and tag in a frame, for the tags the
//!   config's `tags` lists (all tags when it lists none).
//!
//! The parameters come from the well-known config keys above; see docs/PLUGINS.md.

use std::collections::{BTreeMap, BTreeSet};

use streamgate_plugin_sdk::Capability;

use crate::cases::for_generated_logs;
use crate::expect::{Coalescing, DedupeBy};
use crate::harness::{Answer, Ctx, Failure, run_log};
use crate::report::Verdict;

/// The property check of one capability.
pub fn check(ctx: &Ctx, capability: Capability) -> Verdict {
    let c = &ctx.expect;
    let not_claimed = || Verdict::skip("not claimed by the plugin's description");
    match capability {
        Capability::Ordering if c.ordering => {
            generated(ctx, "claim/ordering", "every frame was in event-time order", ordering)
        }
        Capability::Staleness => match c.staleness {
            Some(max_age) => generated(
                ctx,
                "claim/staleness",
                &format!("nothing released was older than max_age_ms = {max_age} before its push's now"),
                move |frames| staleness(frames, max_age),
            ),
            None => not_claimed(),
        },
        Capability::Dedupe => match &c.dedupe {
            Some(DedupeBy::Time) => {
                generated(ctx, "claim/dedupe", "per key, released event times strictly increased", |frames| {
                    dedupe_by_time(frames, c.forget_after_ms)
                })
            }
            Some(DedupeBy::Id) => generated(
                ctx,
                "claim/dedupe",
                "every idempotency id was released at most once (by = \"id\")",
                |frames| dedupe_by_id(frames, c.forget_after_ms),
            ),
            None => not_claimed(),
        },
        Capability::Coalesce => match &c.coalesce {
            Coalescing::On(tags) => generated(
                ctx,
                "claim/coalesce",
                "at most one release per key and coalescible tag in every frame",
                |frames| coalesce(frames, tags.as_ref()),
            ),
            Coalescing::Off(why) => Verdict::skip(why.clone()),
            Coalescing::NotClaimed => not_claimed(),
        },
        Capability::Filter if c.filter => {
            Verdict::skip("claimed; a filter may drop any event, so only the generic checks apply")
        }
        _ => not_claimed(),
    }
}

fn generated(
    ctx: &Ctx,
    check: &str,
    passed: &str,
    property: impl Fn(&[Answer]) -> Result<(), String>,
) -> Verdict {
    for_generated_logs(ctx, check, passed, |ctx, log| {
        let trace = run_log(ctx, log)?;
        property(&trace.frames).map_err(Failure::new)
    })
}

fn ordering(frames: &[Answer]) -> Result<(), String> {
    for (i, f) in frames.iter().enumerate() {
        if let Some(w) = f.released.windows(2).find(|w| w[1].event_time < w[0].event_time) {
            return Err(format!(
                "push {} (now={}) released seq {} (event time {}) after seq {} (event time {}) in the same frame",
                i + 1,
                f.now,
                w[1].seq,
                w[1].event_time,
                w[0].seq,
                w[0].event_time
            ));
        }
    }
    Ok(())
}

fn staleness(frames: &[Answer], max_age_ms: i64) -> Result<(), String> {
    for (i, f) in frames.iter().enumerate() {
        let oldest_allowed = f.now.saturating_sub(max_age_ms);
        if let Some(e) = f.released.iter().find(|e| e.event_time < oldest_allowed) {
            return Err(format!(
                "push {} (now={}) released seq {} with event time {} ({} ms old), older than max_age_ms = {max_age_ms}",
                i + 1,
                f.now,
                e.seq,
                e.event_time,
                f.now.saturating_sub(e.event_time)
            ));
        }
    }
    Ok(())
}

/// Whether memory of something last seen at `seen` may be gone by `now`.
fn may_forget(forget_after_ms: Option<i64>, seen: i64, now: i64) -> bool {
    forget_after_ms.is_some_and(|h| seen < now.saturating_sub(h))
}

fn dedupe_by_time(frames: &[Answer], forget_after_ms: Option<i64>) -> Result<(), String> {
    let mut last: BTreeMap<u64, (i64, u64)> = BTreeMap::new();
    for (i, f) in frames.iter().enumerate() {
        for e in &f.released {
            if let Some(&(t, seq)) = last.get(&e.key)
                && e.event_time <= t
                && !may_forget(forget_after_ms, t, f.now)
            {
                return Err(format!(
                    "push {} (now={}) released seq {} with event time {}, but seq {seq} of the same key \
                     was already released with event time {t}: a key's time must strictly increase",
                    i + 1,
                    f.now,
                    e.seq,
                    e.event_time
                ));
            }
            last.insert(e.key, (e.event_time, e.seq));
        }
    }
    Ok(())
}

fn dedupe_by_id(frames: &[Answer], forget_after_ms: Option<i64>) -> Result<(), String> {
    let mut released: BTreeMap<u64, (i64, u64)> = BTreeMap::new();
    for (i, f) in frames.iter().enumerate() {
        for e in &f.released {
            if let Some(&(log_time, seq)) = released.get(&e.id)
                && !may_forget(forget_after_ms, log_time, f.now)
            {
                return Err(format!(
                    "push {} (now={}) released seq {} with idempotency id {:#x}, already released as seq {seq}",
                    i + 1,
                    f.now,
                    e.seq,
                    e.id
                ));
            }
            released.insert(e.id, (e.log_time, e.seq));
        }
    }
    Ok(())
}

fn coalesce(frames: &[Answer], tags: Option<&BTreeSet<u64>>) -> Result<(), String> {
    for (i, f) in frames.iter().enumerate() {
        let mut first: BTreeMap<(u64, u64), u64> = BTreeMap::new();
        for e in f.released.iter().filter(|e| tags.is_none_or(|t| t.contains(&e.tag))) {
            if let Some(other) = first.insert((e.key, e.tag), e.seq) {
                return Err(format!(
                    "push {} (now={}) released seqs {other} and {} of the same key and tag in one frame",
                    i + 1,
                    f.now,
                    e.seq
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use streamgate_plugin_sdk::{Event, hash};

    use super::*;

    fn frame(now: i64, released: &[(u64, u64, i64, u64)]) -> Answer {
        let released = released
            .iter()
            .map(|&(seq, key, event_time, tag)| Event { seq, key, event_time, log_time: now, id: seq, tag })
            .collect();
        Answer { now, released, dropped: vec![] }
    }

    #[test]
    fn dedupe_allows_a_repeat_only_after_the_forget_horizon() {
        let frames = [frame(1_000, &[(1, 7, 900, 0)]), frame(5_000, &[(2, 7, 800, 0)])];
        assert!(dedupe_by_time(&frames, None).unwrap_err().contains("seq 1 of the same key"));
        assert!(dedupe_by_time(&frames, Some(10_000)).is_err(), "900 is within 10 s of 5000");
        assert!(
            dedupe_by_time(&frames, Some(1_000)).is_ok(),
            "900 is older than 5000 - 1000: may be forgotten"
        );
    }

    #[test]
    fn coalesce_counts_only_the_configured_tags_and_per_frame() {
        let (rank, admitted) = (hash("rank"), hash("admitted"));
        let frames = [frame(0, &[(1, 7, 1, admitted), (2, 7, 2, admitted), (3, 7, 3, rank)])];
        assert!(coalesce(&frames, Some(&BTreeSet::from([rank]))).is_ok());
        assert!(coalesce(&frames, None).unwrap_err().contains("seqs 1 and 2"));
        let two_frames = [frame(0, &[(1, 7, 1, rank)]), frame(1, &[(2, 7, 2, rank)])];
        assert!(coalesce(&two_frames, None).is_ok());
    }
}
