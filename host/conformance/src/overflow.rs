//! What an `overflow` drop promises: the stage's buffer was full. A stage that claims
//! ordering may drop for `overflow` only at a push where it held more undecided events
//! (those held before, and those the push gave it) than its config's `max_buffered`
//! (the builtin ordering's 100,000 when absent); an ordering plugin that drops as
//! `overflow` at will loses events under a reason that looks legitimate.

use streamgate_plugin_sdk::DropReason;

use crate::generate::Log;
use crate::harness::Answer;

/// Each push that drops events as `overflow` had more than `max_buffered` undecided
/// events (held before it, and given by it).
pub fn only_when_full(log: &Log, frames: &[Answer], max_buffered: i64) -> Result<(), String> {
    for ((i, f), held) in frames.iter().enumerate().zip(undecided_per_push(log, frames)) {
        if let Some((seq, _)) = f.dropped.iter().find(|(_, r)| *r == DropReason::Overflow)
            && held <= max_buffered
        {
            return Err(format!(
                "push {} (now={}) dropped seq {seq} as `overflow` while it held {held} events, not more than \
                 max_buffered = {max_buffered}: overflow is for a buffer that is full",
                i + 1,
                f.now
            ));
        }
    }
    Ok(())
}

/// For each push, the events the stage had to decide at it: those held before it and
/// those it gave.
pub fn undecided_per_push(log: &Log, frames: &[Answer]) -> Vec<i64> {
    let mut held: i64 = 0;
    let mut per_push = Vec::with_capacity(frames.len());
    for (i, f) in frames.iter().enumerate() {
        held += log.batches.get(i).map_or(0, |b| b.events.len() as i64);
        per_push.push(held);
        held -= (f.released.len() + f.dropped.len()) as i64;
    }
    per_push
}

#[cfg(test)]
mod tests {
    use streamgate_plugin_sdk::Event;

    use super::*;
    use crate::generate::Batch;

    fn batch(now: i64, seqs: std::ops::Range<u64>) -> Batch {
        Batch {
            now,
            events: seqs
                .map(|seq| Event { seq, key: seq, event_time: now, log_time: now, id: 0, tag: 0 })
                .collect(),
        }
    }

    fn dropping(now: i64, seqs: &[u64]) -> Answer {
        let dropped = seqs.iter().map(|&s| (s, DropReason::Overflow)).collect();
        Answer { now, released: vec![], dropped, expired: vec![] }
    }

    #[test]
    fn overflow_needs_more_held_than_max_buffered() {
        let log = Log::new(vec![batch(0, 0..3), batch(1, 3..5)]);
        // Holding 3, then 5: over a bound of 4 only at the second push.
        let held_then_full = [dropping(0, &[]), dropping(1, &[0])];
        assert!(only_when_full(&log, &held_then_full, 4).is_ok());
        let too_early = [dropping(0, &[0]), dropping(1, &[])];
        let err = only_when_full(&log, &too_early, 4).unwrap_err();
        assert!(err.contains("held 3 events, not more than max_buffered = 4"), "{err}");
    }
}
