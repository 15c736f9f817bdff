//! Noticing a record the broker skipped in the middle of a partition, between two
//! assignments: each message's offset is compared with the one after the previous
//! message of its partition. A later offset means records in between were not
//! delivered; the source then fetches the partition again from the first missing offset,
//! once (a broker that made a record visible before it could serve it, as tansu 0.6.0
//! does under load, serves it on the second fetch), and counts the hole as an offset gap
//! if it is still there. Transactional commit markers and compaction leave such holes on
//! purpose: they count as gaps, and a partition is fetched again at most once per
//! [`REFETCH_AT_MOST_EVERY`] (a compacted partition's many holes cost one extra fetch a
//! second, not one each).
//!
//! The first message after an assignment is [`super::offsets`]'s to check (against the
//! group's resume offset), and starts the tracking of its partition again.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::consumer::Consumer;

use super::offsets::{SourceConsumer, count_skipped};
use crate::metrics::TenantMetrics;

/// A partition is fetched again at most this often; holes in between are only counted.
pub const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(1);

/// What a message's offset says about the records before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Continuity {
    /// The next offset, or an earlier one (a redelivery): process the message.
    InOrder,
    /// Records in `Range` were not delivered: drop this message and fetch the partition
    /// again from the range's start.
    Refetch(Range<i64>),
    /// Still not delivered after fetching again (or fetched again too recently): process
    /// the message, count the gap.
    Skipped(Range<i64>),
}

/// The next offset expected from each partition, and the holes already fetched again.
#[derive(Debug, Default)]
pub struct OffsetContinuity {
    next: BTreeMap<i32, i64>,
    /// The hole each partition was last fetched again for, and when.
    refetched: BTreeMap<i32, (i64, Instant)>,
}

impl OffsetContinuity {
    /// The first message of `partition` after an assignment, at `offset`.
    pub fn restart(&mut self, partition: i32, offset: i64) {
        self.next.insert(partition, offset + 1);
    }

    /// The common case, without reading the clock: `offset` is the next one of its
    /// partition, or an earlier one (a redelivery); then it is noted and `true`.
    pub fn in_order(&mut self, partition: i32, offset: i64) -> bool {
        match self.next.get_mut(&partition) {
            Some(next) if offset <= *next => {
                *next = offset + 1;
                true
            }
            _ => false,
        }
    }

    /// A message of `partition` at `offset`, received `now`.
    pub fn observe(&mut self, partition: i32, offset: i64, now: Instant) -> Continuity {
        let Some(&next) = self.next.get(&partition) else {
            self.restart(partition, offset);
            return Continuity::InOrder;
        };
        if offset <= next {
            self.next.insert(partition, offset + 1);
            return Continuity::InOrder;
        }
        let again = match self.refetched.get(&partition) {
            Some(&(hole, _)) if hole == next => false,
            Some(&(_, at)) => now.duration_since(at) >= REFETCH_AT_MOST_EVERY,
            None => true,
        };
        if !again {
            self.restart(partition, offset);
            return Continuity::Skipped(next..offset);
        }
        self.refetched.insert(partition, (next, now));
        Continuity::Refetch(next..offset)
    }
}

/// Checks a message of `partition` at `offset` (not the first since its assignment):
/// whether to process it. A hole is fetched again once (the message is dropped: it comes
/// again after the hole's records); a hole still there is counted and logged.
pub fn admit(
    consumer: &SourceConsumer,
    topic: &str,
    tracker: &mut OffsetContinuity,
    partition: i32,
    offset: i64,
    metrics: &TenantMetrics,
) -> bool {
    if tracker.in_order(partition, offset) {
        return true;
    }
    let tenant = metrics.tenant.as_str();
    match tracker.observe(partition, offset, Instant::now()) {
        Continuity::InOrder => true,
        Continuity::Refetch(missing) => {
            tracing::warn!(
                tenant,
                topic,
                partition,
                from = missing.start,
                to = missing.end - 1,
                "kafka did not deliver offsets in the middle of a partition; fetching them again"
            );
            // Zero timeout: the seek happens in the background; what was fetched after
            // the hole is discarded by the consumer and fetched again.
            match consumer.seek(topic, partition, Offset::Offset(missing.start), Duration::ZERO) {
                Ok(()) => false,
                Err(e) => {
                    tracing::warn!(tenant, partition, error = %e, "kafka seek failed; the hole stays");
                    metrics.offset_gaps.fetch_add(1, Relaxed);
                    true
                }
            }
        }
        Continuity::Skipped(missing) => {
            let why = "in the middle of a partition, also when fetched again: those records were not \
                       delivered (a transaction marker, compaction, or a broker bug)";
            count_skipped(metrics, tenant, topic, partition, missing, why);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_offsets_and_redeliveries_are_in_order() {
        let (mut c, now) = (OffsetContinuity::default(), Instant::now());
        c.restart(0, 10);
        assert_eq!(c.observe(0, 11, now), Continuity::InOrder);
        assert_eq!(c.observe(0, 12, now), Continuity::InOrder);
        assert_eq!(c.observe(0, 5, now), Continuity::InOrder, "a redelivery is not a hole");
        assert_eq!(c.observe(0, 6, now), Continuity::InOrder);
        assert_eq!(c.observe(1, 100, now), Continuity::InOrder, "an untracked partition starts tracking");
        assert_eq!(c.observe(1, 101, now), Continuity::InOrder);
    }

    #[test]
    fn the_clockless_check_agrees_with_observe() {
        let (mut fast, mut full, now) =
            (OffsetContinuity::default(), OffsetContinuity::default(), Instant::now());
        assert!(!fast.in_order(0, 10), "an untracked partition is observe's to start");
        fast.restart(0, 10);
        full.restart(0, 10);
        for offset in [11, 12, 5, 6, 7] {
            assert!(fast.in_order(0, offset));
            assert_eq!(full.observe(0, offset, now), Continuity::InOrder);
        }
        assert!(!fast.in_order(0, 20), "a hole is observe's to judge");
        assert_eq!(fast.next, full.next);
    }

    #[test]
    fn a_hole_is_fetched_again_once_then_counted() {
        let (mut c, start) = (OffsetContinuity::default(), Instant::now());
        let at = |s: u64| start + Duration::from_secs(s);
        c.restart(2, 10);
        assert_eq!(c.observe(2, 13, at(0)), Continuity::Refetch(11..13));
        // The second fetch delivers the missing records: nothing to count.
        for o in 11..=13 {
            assert_eq!(c.observe(2, o, at(0)), Continuity::InOrder);
        }
        // A hole still there after the second fetch (a commit marker) is counted.
        assert_eq!(c.observe(2, 15, at(2)), Continuity::Refetch(14..15));
        assert_eq!(c.observe(2, 15, at(2)), Continuity::Skipped(14..15));
        assert_eq!(c.observe(2, 16, at(2)), Continuity::InOrder);
        // Within a second of the last refetch, a new hole is only counted.
        assert_eq!(c.observe(2, 18, at(2)), Continuity::Skipped(17..18));
        // Later, a hole is fetched again.
        assert_eq!(c.observe(2, 20, at(4)), Continuity::Refetch(19..20));
    }

    #[test]
    fn an_assignment_starts_a_partition_over() {
        let (mut c, now) = (OffsetContinuity::default(), Instant::now());
        c.restart(0, 10);
        c.restart(0, 50);
        assert_eq!(c.observe(0, 51, now), Continuity::InOrder);
        assert_eq!(c.observe(0, 53, now), Continuity::Refetch(52..53));
    }
}
