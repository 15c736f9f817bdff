//! What `dedupe` promises, precisely:
//!
//! - by time (default): per key the released event time strictly increases over the
//!   whole run, so a key never goes back and no time is released twice; and a drop as
//!   `duplicate` (`out-of-date`) is justified only by another event of the same key with
//!   the same (a newer) time, given to the stage no later than the push that dropped it
//!   and not itself dropped (but as `superseded`: coalescing kept a newer one of its key);
//! - by id (`"by": "id"`): each idempotency id is released at most once, and a
//!   `duplicate` has another event of the same id before it that was not itself dropped,
//!   so two copies of one id never drop each other and the id is never lost;
//!
//! except that a key (id) whose last release is older than `forget_after_ms` (config)
//! before `now` may have been forgotten: by time, older either in log time (the push
//! that released it, as the builtin forgets) or in event time (as plugins written
//! before dedupe state version 2 forget).

use std::collections::BTreeMap;

use streamgate_plugin_sdk::{DropReason, Event};

use crate::generate::Log;
use crate::harness::Answer;

/// Whether memory of something last seen at `seen` may be gone by `now`.
fn may_forget(forget_after_ms: Option<i64>, seen: i64, now: i64) -> bool {
    forget_after_ms.is_some_and(|h| seen < now.saturating_sub(h))
}

/// Every event of the log with the push that brought it, and the reasons of drops.
struct Fates {
    arrivals: BTreeMap<u64, (Event, usize)>,
    drops: BTreeMap<u64, DropReason>,
}

impl Fates {
    fn new(log: &Log, frames: &[Answer]) -> Self {
        let drops = frames.iter().flat_map(|f| f.dropped.iter().copied()).collect();
        Fates { arrivals: log.index(), drops }
    }

    /// Another event, given by push `by` (inclusive), that the stage may remember: not
    /// dropped, or dropped only because coalescing kept a newer event of its key. (An
    /// event dropped as a duplicate justifies nothing: two copies of one event dropping
    /// each other lose it.)
    fn remembered(&self, by: usize, dropped: u64) -> impl Iterator<Item = &Event> {
        self.arrivals.values().filter_map(move |(e, push)| {
            let kept = matches!(self.drops.get(&e.seq), None | Some(DropReason::Superseded));
            (*push <= by && e.seq != dropped && kept).then_some(e)
        })
    }
}

pub fn by_time(log: &Log, frames: &[Answer], forget_after_ms: Option<i64>) -> Result<(), String> {
    let fates = Fates::new(log, frames);
    // Per key: the last released event time, its seq, and the log time of that push.
    let mut last: BTreeMap<u64, (i64, u64, i64)> = BTreeMap::new();
    for (i, f) in frames.iter().enumerate() {
        for e in &f.released {
            if let Some(&(t, seq, at)) = last.get(&e.key)
                && e.event_time <= t
                && !may_forget(forget_after_ms, t, f.now)
                && !may_forget(forget_after_ms, at, f.now)
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
            last.insert(e.key, (e.event_time, e.seq, f.now));
        }
        for &(seq, reason) in &f.dropped {
            let Some(&(d, _)) = fates.arrivals.get(&seq) else { continue };
            let justified = match reason {
                DropReason::Duplicate => {
                    fates.remembered(i, seq).any(|p| p.key == d.key && p.event_time == d.event_time)
                }
                DropReason::OutOfDate => {
                    fates.remembered(i, seq).any(|p| p.key == d.key && p.event_time > d.event_time)
                }
                _ => true,
            };
            if !justified {
                let what = if reason == DropReason::Duplicate { "the same" } else { "a newer" };
                return Err(format!(
                    "push {} (now={}) dropped seq {seq} (key {:#x}, event time {}) as `{}`, but no other event of \
                     that key with {what} time that it kept (released, held or superseded) had been given to the \
                     stage: dedupe drops only what an event it remembers makes a duplicate or out of date",
                    i + 1,
                    f.now,
                    d.key,
                    d.event_time,
                    reason.as_str()
                ));
            }
        }
    }
    Ok(())
}

pub fn by_id(log: &Log, frames: &[Answer], forget_after_ms: Option<i64>) -> Result<(), String> {
    let fates = Fates::new(log, frames);
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
        for &(seq, reason) in f.dropped.iter().filter(|(_, r)| *r == DropReason::Duplicate) {
            let Some(&(d, _)) = fates.arrivals.get(&seq) else { continue };
            if !fates.remembered(i, seq).any(|p| p.id == d.id) {
                return Err(format!(
                    "push {} (now={}) dropped seq {seq} (id {:#x}) as `{}`, but no other event with that id that it \
                     kept (released or held) had been given to the stage: the id would be lost",
                    i + 1,
                    f.now,
                    d.id,
                    reason.as_str()
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::Batch;

    fn ev(seq: u64, key: u64, event_time: i64) -> Event {
        Event { seq, key, event_time, log_time: 0, id: seq, tag: 0 }
    }

    fn frame(now: i64, released: &[Event], dropped: &[(u64, DropReason)]) -> Answer {
        Answer { now, released: released.to_vec(), dropped: dropped.to_vec(), expired: vec![] }
    }

    #[test]
    fn a_repeat_is_allowed_only_after_the_forget_horizon() {
        let (a, b) = (ev(1, 7, 900), ev(2, 7, 800));
        let log =
            Log::new(vec![Batch { now: 1_000, events: vec![a] }, Batch { now: 5_000, events: vec![b] }]);
        let frames = [frame(1_000, &[a], &[]), frame(5_000, &[b], &[])];
        assert!(by_time(&log, &frames, None).unwrap_err().contains("seq 1 of the same key"));
        assert!(by_time(&log, &frames, Some(10_000)).is_err(), "900 is within 10 s of 5000");
        assert!(
            by_time(&log, &frames, Some(1_000)).is_ok(),
            "900 is older than 5000 - 1000: may be forgotten"
        );
        // A future stamp is forgotten from the log time of its release.
        let (a, b) = (ev(1, 7, i64::MAX), ev(2, 7, 4_900));
        let log =
            Log::new(vec![Batch { now: 1_000, events: vec![a] }, Batch { now: 5_000, events: vec![b] }]);
        let frames = [frame(1_000, &[a], &[]), frame(5_000, &[b], &[])];
        assert!(by_time(&log, &frames, Some(1_000)).is_ok(), "released at 1000, older than 5000 - 1000");
        assert!(by_time(&log, &frames, Some(10_000)).is_err(), "released within 10 s of 5000");
    }

    #[test]
    fn a_drop_needs_a_same_or_newer_event_of_the_same_key() {
        // Keys equal in their low 32 bits are different keys.
        let (a, b) = (ev(1, 7, 100), ev(2, 7 | (1 << 40), 90));
        let log = Log::new(vec![Batch { now: 0, events: vec![a, b] }]);
        let honest = [frame(0, &[a, b], &[])];
        assert!(by_time(&log, &honest, None).is_ok());
        let short_keys = [frame(0, &[a], &[(2, DropReason::OutOfDate)])];
        assert!(by_time(&log, &short_keys, None).unwrap_err().contains("as `out_of_date`"));
        let c = ev(3, 7, 90);
        let log = Log::new(vec![Batch { now: 0, events: vec![a, c] }]);
        assert!(by_time(&log, &[frame(0, &[a], &[(3, DropReason::OutOfDate)])], None).is_ok());
        assert!(by_time(&log, &[frame(0, &[a], &[(3, DropReason::Duplicate)])], None).is_err());
    }

    #[test]
    fn two_copies_of_one_event_never_justify_dropping_each_other() {
        // A redelivery in the same batch: one copy must get through.
        let (a, b) = (ev(1, 7, 100), Event { id: 1, ..ev(2, 7, 100) });
        let log = Log::new(vec![Batch { now: 0, events: vec![a, b] }]);
        let both = [frame(0, &[], &[(1, DropReason::Duplicate), (2, DropReason::Duplicate)])];
        assert!(by_id(&log, &both, None).unwrap_err().contains("dropped seq 1"));
        assert!(by_time(&log, &both, None).unwrap_err().contains("dropped seq 1"));
        let one = [frame(0, &[a], &[(2, DropReason::Duplicate)])];
        assert!(by_id(&log, &one, None).is_ok() && by_time(&log, &one, None).is_ok());
    }
}
