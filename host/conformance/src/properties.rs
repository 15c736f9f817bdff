//! What each claimed capability promises, checked precisely on every generated run:
//!
//! - ordering: within one answer (frame), releases are in event-time order; across
//!   answers, each event waited its reorder window and no longer ([`crate::window`]); and, in
//!   [`crate::determinism`], what is released by each `now` does not depend on how the
//!   log was cut into pushes;
//! - staleness: nothing released is older than `max_age_ms` (config, default 30000)
//!   before that push's `now`, nothing dropped as `stale` is not, and a key is expired
//!   only once it went silent for longer ([`crate::expiry`]);
//! - dedupe: see [`crate::dedupe`];
//! - coalesce: at most one release per key and tag in a frame, for the tags the
//!   config's `tags` lists (all tags when it lists none), and every `superseded` drop
//!   has a newer release of its key in the same frame;
//! - filter: a filter is a predicate of the event: an event filtered in a run is
//!   filtered when pushed alone into a fresh stage at the same `now`, and one released is
//!   not.
//!
//! The parameters come from the well-known config keys (docs/PLUGINS.md). Also here:
//! the generic checks on the same runs, that nothing is held forever and that every
//! drop carries a reason the claims allow.

use std::collections::{BTreeMap, BTreeSet};

use streamgate_plugin_sdk::{Capability, DropReason, Event};

use crate::cases::for_generated_logs;
use crate::dedupe;
use crate::expect::{ClaimSource, Coalescing, DedupeBy};
use crate::generate::Log;
use crate::harness::{Answer, Ctx, Failure, Probe, Setup, Trace};
use crate::report::Verdict;

/// The property check of one capability, over every config the claims run under in
/// which the capability is active (skipped when it is active in none).
pub fn check(ctx: &Ctx, capability: Capability) -> Verdict {
    let active = |s: &Setup| match capability {
        Capability::Ordering => s.expect.ordering,
        Capability::Staleness => s.expect.staleness.is_some(),
        Capability::Dedupe => s.expect.dedupe.is_some(),
        Capability::Coalesce => matches!(s.expect.coalesce, Coalescing::On(_)),
        Capability::Filter => s.expect.filter,
    };
    if !ctx.setups.iter().any(active) {
        return match &ctx.expect().coalesce {
            Coalescing::Off(why) if capability == Capability::Coalesce => Verdict::skip(why.clone()),
            _ if ctx.under_test().claims_from == ClaimSource::Stage => {
                Verdict::skip("not claimed by the stage under any config run (stage.capabilities)")
            }
            _ => Verdict::skip("not claimed by the plugin's description"),
        };
    }
    let judged = |passed: &str, property: &dyn Fn(&Setup, &Log, &Trace) -> Result<(), String>| {
        for_generated_logs(ctx, passed, |_, setup, log, trace| {
            if !active(setup) {
                return Ok(());
            }
            property(setup, log, trace).map_err(Failure::new)
        })
    };
    match capability {
        Capability::Ordering => judged(
            "every frame was in event-time order, and every event waited its reorder window (window_ms past its \
             event time or its arrival) unless the buffer was full, and no longer",
            &|s, log, t| {
                ordering(&t.frames)?;
                crate::window::held_for_window(log, &t.frames, s.expect.window_ms, s.expect.max_buffered)?;
                crate::window::decided_when_due(log, &t.frames, s.expect.window_ms)
            },
        ),
        Capability::Staleness => judged(
            "nothing released was older than max_age_ms before its push's now, only such events were dropped as \
             stale, and a key was expired only once its newest release was older, once per silence",
            &|s, log, t| staleness(log, &t.frames, s.expect.max_age_ms),
        ),
        Capability::Dedupe => judged(
            "per key, released event times strictly increased (by id: each id released once), and every \
             duplicate or out-of-date drop had a same-or-newer event of its key (id) before it that it kept",
            &|s, log, t| match s.expect.dedupe {
                Some(DedupeBy::Id) => dedupe::by_id(log, &t.frames, s.expect.forget_after_ms),
                _ => dedupe::by_time(log, &t.frames, s.expect.forget_after_ms),
            },
        ),
        Capability::Coalesce => judged(
            "at most one release per key and coalescible tag in every frame, and each superseded event had a \
             newer release of its key in its frame",
            &|s, log, t| match &s.expect.coalesce {
                Coalescing::On(tags) => coalesce(log, &t.frames, tags.as_ref()),
                _ => Ok(()),
            },
        ),
        Capability::Filter => for_generated_logs(
            ctx,
            "every filtered event was filtered alone in a fresh stage at the same now, and every released one was \
             not",
            filter,
        ),
    }
}

/// `decisions/all-decided`: after the flush, nothing is still held.
pub fn all_decided(ctx: &Ctx) -> Verdict {
    for_generated_logs(
        ctx,
        "every event was released or dropped by the flush, which came after every window the config allows",
        |_, _, log, trace| match trace.still_held.first() {
            None => Ok(()),
            Some(e) => {
                let arrived = log.index().get(&e.seq).map_or(0, |(_, push)| log.batches[*push].now);
                Err(Failure::new(format!(
                    "seq {} (key {:#x}, event time {}, pushed at now={arrived}) was still held after the flush at \
                     now={} ({} events held in all): a stage must release or drop every event once log time is past \
                     every window its config allows",
                    e.seq,
                    e.key,
                    e.event_time,
                    log.flush_time(),
                    trace.still_held.len()
                )))
            }
        },
    )
}

/// `decisions/drop-reasons`: every drop's reason is one the plugin's claims allow, and
/// an `overflow` drop comes only while the stage holds more than `max_buffered` events.
pub fn drop_reasons(ctx: &Ctx) -> Verdict {
    for_generated_logs(ctx, "every drop carried a reason its claims allow", |_, setup, log, trace| {
        crate::overflow::only_when_full(log, &trace.frames, setup.expect.max_buffered)
            .map_err(Failure::new)?;
        for (i, f) in trace.frames.iter().enumerate() {
            if let Some((seq, reason)) = f.dropped.iter().find(|(_, r)| !setup.expect.allows(*r)) {
                return Err(Failure::new(format!(
                    "push {} (now={}) dropped seq {seq} as `{}`, a reason none of its claims allows (stale: \
                     staleness; duplicate: dedupe; out_of_date: dedupe by time; superseded: coalesce; filtered: \
                     filter; overflow: ordering)",
                    i + 1,
                    f.now,
                    reason.as_str()
                )));
            }
        }
        Ok(())
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

/// Events of a run by sequence number.
fn events_of(log: &Log) -> BTreeMap<u64, Event> {
    log.index().into_iter().map(|(seq, (e, _))| (seq, e)).collect()
}

fn staleness(log: &Log, frames: &[Answer], max_age_ms: i64) -> Result<(), String> {
    crate::expiry::silent_keys_only(frames, max_age_ms)?;
    let events = events_of(log);
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
        let fresh_dropped = f
            .dropped
            .iter()
            .filter(|(_, r)| *r == DropReason::Stale)
            .find_map(|(seq, _)| events.get(seq).filter(|e| e.event_time >= oldest_allowed));
        if let Some(e) = fresh_dropped {
            return Err(format!(
                "push {} (now={}) dropped seq {} as stale, but its event time {} is {} ms old, not older than \
                 max_age_ms = {max_age_ms}: only events with event_time < now - max_age_ms are stale",
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

fn coalesce(log: &Log, frames: &[Answer], tags: Option<&BTreeSet<u64>>) -> Result<(), String> {
    let events = events_of(log);
    let coalescible = |e: &Event| tags.is_none_or(|t| t.contains(&e.tag));
    for (i, f) in frames.iter().enumerate() {
        let mut first: BTreeMap<(u64, u64), u64> = BTreeMap::new();
        for e in f.released.iter().filter(|e| coalescible(e)) {
            if let Some(other) = first.insert((e.key, e.tag), e.seq) {
                return Err(format!(
                    "push {} (now={}) released seqs {other} and {} of the same key and tag in one frame",
                    i + 1,
                    f.now,
                    e.seq
                ));
            }
        }
        for (seq, _) in f.dropped.iter().filter(|(_, r)| *r == DropReason::Superseded) {
            let Some(d) = events.get(seq) else { continue };
            let newer = f
                .released
                .iter()
                .find(|r| r.key == d.key && coalescible(r) && (r.event_time, r.seq) > (d.event_time, d.seq));
            if !coalescible(d) || newer.is_none() {
                let kept: Vec<String> = f
                    .released
                    .iter()
                    .filter(|r| r.key == d.key)
                    .map(|r| format!("seq {} (event time {})", r.seq, r.event_time))
                    .collect();
                return Err(format!(
                    "push {} (now={}) dropped seq {} (event time {}) as superseded, but {}: coalescing keeps the \
                     newest per key and tag in a frame (by event time, then log order); it kept [{}]",
                    i + 1,
                    f.now,
                    d.seq,
                    d.event_time,
                    if coalescible(d) {
                        "no newer event of its key was released in that frame"
                    } else {
                        "its tag is not one the config coalesces"
                    },
                    kept.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// A few events of the run, each pushed alone into a fresh stage at the `now` of the
/// push that decided it: `filtered` must come back exactly when it did in the run.
fn filter(ctx: &Ctx, setup: &Setup, log: &Log, trace: &Trace) -> Result<(), Failure> {
    let events = events_of(log);
    let mut decided: Vec<(Event, i64, bool)> = Vec::new();
    for f in &trace.frames {
        decided.extend(f.released.iter().map(|e| (*e, f.now, false)));
        decided.extend(
            f.dropped
                .iter()
                .filter_map(|(seq, r)| events.get(seq).map(|e| (*e, f.now, *r == DropReason::Filtered))),
        );
    }
    let step = (decided.len() / 6).max(1);
    for (e, now, filtered) in decided.into_iter().step_by(step) {
        let mut alone = Probe::with_config(ctx, &setup.config)?;
        let answer = alone.push(now, &[e])?;
        let filtered_alone = answer.dropped.iter().any(|(_, r)| *r == DropReason::Filtered);
        if filtered != filtered_alone {
            return Err(Failure::new(format!(
                "seq {} (key {:#x}, event time {}, tag {:#x}) was {} in the run but {} when pushed alone into a \
                 fresh stage at now={now}: a filter must decide each event by its own metadata",
                e.seq,
                e.key,
                e.event_time,
                e.tag,
                if filtered { "filtered" } else { "not filtered" },
                if filtered_alone { "filtered" } else { "not filtered" }
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use streamgate_plugin_sdk::hash;

    use super::*;
    use crate::generate::Batch;

    fn ev(seq: u64, key: u64, event_time: i64, tag: u64) -> Event {
        Event { seq, key, event_time, log_time: 0, id: seq, tag }
    }

    #[test]
    fn staleness_fails_a_stale_drop_of_an_event_exactly_at_the_bound() {
        let (fresh, stale) = (ev(1, 7, 9_000, 0), ev(2, 7, 8_999, 0));
        let log = Log::new(vec![Batch { now: 10_000, events: vec![fresh, stale] }]);
        let honest = [Answer {
            now: 10_000,
            released: vec![fresh],
            dropped: vec![(2, DropReason::Stale)],
            expired: vec![],
        }];
        assert!(staleness(&log, &honest, 1_000).is_ok());
        let off_by_one = [Answer {
            now: 10_000,
            released: vec![],
            dropped: vec![(1, DropReason::Stale), (2, DropReason::Stale)],
            expired: vec![],
        }];
        assert!(staleness(&log, &off_by_one, 1_000).unwrap_err().contains("dropped seq 1 as stale"));
    }

    #[test]
    fn coalesce_counts_only_the_configured_tags_and_keeps_the_newest() {
        let (rank, admitted) = (hash("rank"), hash("admitted"));
        let events = vec![ev(1, 7, 1, admitted), ev(2, 7, 2, admitted), ev(3, 7, 3, rank)];
        let log = Log::new(vec![Batch { now: 0, events: events.clone() }]);
        let all = [Answer { now: 0, released: events.clone(), dropped: vec![], expired: vec![] }];
        assert!(coalesce(&log, &all, Some(&BTreeSet::from([rank]))).is_ok());
        assert!(coalesce(&log, &all, None).unwrap_err().contains("seqs 1 and 2"));
        let first_kept = [Answer {
            now: 0,
            released: vec![events[0]],
            dropped: vec![(2, DropReason::Superseded)],
            expired: vec![],
        }];
        assert!(coalesce(&log, &first_kept, None).unwrap_err().contains("no newer event of its key"));
        let newest_kept = [Answer {
            now: 0,
            released: vec![events[1]],
            dropped: vec![(1, DropReason::Superseded)],
            expired: vec![],
        }];
        assert!(coalesce(&log, &newest_kept, None).is_ok());
    }
}
