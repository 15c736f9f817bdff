//! Noticing records the broker skipped: after each (re)assignment, the first offset
//! fetched from a partition is compared with the offset the consumer resumes from (the
//! group's committed offset, else the partition's low watermark). A later first offset
//! means records in between were never delivered (a broker that answers a fetch inside
//! a record batch with the next batch does this); it is counted in
//! `streamgate_source_offset_gaps_total` and logged with the partition and range.
//!
//! Limit: transactional producers' commit markers and compacted topics leave offsets
//! without records, so there a resume at such an offset counts as a gap too.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

/// The consumer every tenant's Kafka source runs.
pub type SourceConsumer = StreamConsumer<SourceContext>;

/// How long a look-up of the resume offset may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Rebalance callbacks: which partitions were just assigned (their first message is
/// checked) and how many assignments this consumer has had.
#[derive(Default)]
pub struct SourceContext {
    fresh: Mutex<BTreeSet<i32>>,
    any_fresh: AtomicBool,
    pub assignments: AtomicU64,
}

impl ClientContext for SourceContext {}

impl ConsumerContext for SourceContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut fresh = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
        match rebalance {
            Rebalance::Assign(tpl) => {
                fresh.extend(tpl.elements().iter().map(|e| e.partition()));
                self.assignments.fetch_add(1, Relaxed);
                tracing::info!(partitions = ?tpl.elements().iter().map(|e| e.partition()).collect::<Vec<_>>(), "kafka partitions assigned");
            }
            Rebalance::Revoke(tpl) => {
                for e in tpl.elements() {
                    fresh.remove(&e.partition());
                }
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "kafka rebalance failed"),
        }
        self.any_fresh.store(!fresh.is_empty(), Relaxed);
    }
}

impl SourceContext {
    /// Whether `partition` was assigned since its last message (then it is not any more).
    pub fn first_since_assignment(&self, partition: i32) -> bool {
        if !self.any_fresh.load(Relaxed) {
            return false;
        }
        let mut fresh = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
        let first = fresh.remove(&partition);
        self.any_fresh.store(!fresh.is_empty(), Relaxed);
        first
    }
}

/// Where a consumer of the group resumes on `partition`: the committed offset, else
/// the low watermark (`auto.offset.reset = earliest`). Blocking: run off the runtime.
pub fn resume_offset(consumer: &SourceConsumer, topic: &str, partition: i32) -> Result<i64, String> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let committed = consumer.committed_offsets(tpl, LOOKUP_TIMEOUT).map_err(|e| e.to_string())?;
    let offset = committed.find_partition(topic, partition).map(|e| e.offset());
    if let Some(Offset::Offset(o)) = offset {
        return Ok(o);
    }
    let (low, _) = consumer.fetch_watermarks(topic, partition, LOOKUP_TIMEOUT).map_err(|e| e.to_string())?;
    Ok(low)
}

/// The records between the resume offset and the first one fetched, if any.
pub fn gap(resume: i64, first_fetched: i64) -> Option<std::ops::Range<i64>> {
    (first_fetched > resume).then_some(resume..first_fetched)
}

/// Checks the first message fetched from a partition after an assignment, off the
/// runtime (a look-up at the group coordinator); counts and logs a gap. Holds the
/// consumer weakly until the look-up starts: a source that stopped meanwhile closes its
/// consumer (and leaves the group) without waiting for this.
pub fn check_first_offset(
    consumer: Weak<SourceConsumer>,
    tenant: String,
    topic: String,
    partition: i32,
    first_fetched: i64,
    gaps: Arc<crate::metrics::TenantMetrics>,
) {
    tokio::task::spawn_blocking(move || {
        let Some(consumer) = consumer.upgrade() else { return };
        match resume_offset(&consumer, &topic, partition) {
            Ok(resume) => {
                if let Some(missing) = gap(resume, first_fetched) {
                    let why = "the first record fetched after an assignment is beyond the resume offset; \
                           those records were not delivered (a broker bug?)";
                    count_skipped(&gaps, &tenant, &topic, partition, missing, why);
                }
            }
            Err(e) => tracing::debug!(tenant, partition, error = %e, "could not look up the resume offset"),
        }
    });
}

/// Counts a run of offsets the broker skipped (`streamgate_source_offset_gaps_total`)
/// and logs it with its range and `why`.
pub fn count_skipped(
    metrics: &crate::metrics::TenantMetrics,
    tenant: &str,
    topic: &str,
    partition: i32,
    missing: std::ops::Range<i64>,
    why: &str,
) {
    metrics.offset_gaps.fetch_add(1, Relaxed);
    tracing::warn!(
        tenant,
        topic,
        partition,
        from = missing.start,
        to = missing.end - 1,
        missing = missing.end - missing.start,
        "kafka skipped offsets: {why}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_is_a_first_offset_beyond_the_resume_offset() {
        assert_eq!(gap(3, 3), None);
        assert_eq!(gap(3, 2), None, "redelivery is not a gap");
        assert_eq!(gap(3, 10), Some(3..10));
    }

    #[test]
    fn only_the_first_message_after_an_assignment_is_checked() {
        let ctx = SourceContext::default();
        assert!(!ctx.first_since_assignment(0));
        ctx.fresh.lock().unwrap().extend([0, 2]);
        ctx.any_fresh.store(true, Relaxed);
        assert!(ctx.first_since_assignment(2));
        assert!(!ctx.first_since_assignment(2));
        assert!(ctx.first_since_assignment(0));
        assert!(!ctx.any_fresh.load(Relaxed));
    }
}
