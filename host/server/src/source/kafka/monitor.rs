//! Watching the source from the outside, every couple of seconds: whether the broker
//! answers (the source's part of `/readyz`), and which partitions nobody consumes. A
//! partition is *stalled* when the group's committed offset stays behind its high
//! watermark without moving for `stalled_after_ms`: whoever owns it (if anyone) is not
//! consuming it. Reported in `/readyz` and `streamgate_source_partitions_stalled`.
//!
//! What one instance can observe: the group's committed offsets, the watermarks and its
//! own assignment. Which other member (if any) holds a partition is broker-side state
//! librdkafka does not expose to a member, so a stalled partition is "not assigned to
//! this instance" or "assigned to this instance", not "owned by member X".

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::offsets::SourceConsumer;
use crate::metrics::TenantMetrics;
use crate::readiness::{Readiness, StalledPartition};

/// How often the broker is asked.
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// How long one question may take before the broker counts as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// One partition as the probe saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionView {
    pub partition: i32,
    /// Where the group resumes: the committed offset, else the low watermark.
    pub committed: i64,
    pub high_watermark: i64,
    pub assigned_here: bool,
}

fn unreachable(what: &str, e: rdkafka::error::KafkaError) -> String {
    format!("kafka unreachable ({what}): {e}")
}

/// Asks the broker about `topic` (blocking: run off the runtime).
fn probe(consumer: &SourceConsumer, topic: &str) -> Result<Vec<PartitionView>, String> {
    let metadata =
        consumer.fetch_metadata(Some(topic), PROBE_TIMEOUT).map_err(|e| unreachable("metadata", e))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Ok(Vec::new());
    }
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        tpl.add_partition(topic, p);
    }
    let committed =
        consumer.committed_offsets(tpl, PROBE_TIMEOUT).map_err(|e| unreachable("committed offsets", e))?;
    let own = consumer.assignment().map_err(|e| unreachable("assignment", e))?;
    let mut views = Vec::with_capacity(partitions.len());
    for p in partitions {
        let (low, high) =
            consumer.fetch_watermarks(topic, p, PROBE_TIMEOUT).map_err(|e| unreachable("watermarks", e))?;
        let committed = match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => low,
        };
        let assigned_here = own.find_partition(topic, p).is_some();
        views.push(PartitionView { partition: p, committed, high_watermark: high, assigned_here });
    }
    Ok(views)
}

/// Since when each partition's committed offset has not moved while behind.
#[derive(Default)]
pub struct StallTracker {
    since: BTreeMap<i32, (i64, Instant)>,
}

impl StallTracker {
    /// Takes one probe's views at `now`; answers the partitions stalled for `after`.
    pub fn observe(
        &mut self,
        views: &[PartitionView],
        now: Instant,
        after: Duration,
    ) -> Vec<StalledPartition> {
        let mut stalled = Vec::new();
        self.since.retain(|p, _| views.iter().any(|v| v.partition == *p));
        for v in views {
            let entry = self.since.entry(v.partition).or_insert((v.committed, now));
            if v.committed != entry.0 || v.high_watermark <= v.committed {
                *entry = (v.committed, now);
                continue;
            }
            let unmoved = now.duration_since(entry.1);
            if unmoved >= after {
                stalled.push(StalledPartition {
                    partition: v.partition,
                    committed: v.committed,
                    high_watermark: v.high_watermark,
                    stalled_secs: unmoved.as_secs(),
                    assigned_here: v.assigned_here,
                });
            }
        }
        stalled
    }
}

/// Probes until `cancel`, keeping `ready`'s source part and the stall gauges current.
pub async fn monitor(
    consumer: Weak<SourceConsumer>,
    topic: String,
    metrics: Arc<TenantMetrics>,
    ready: Arc<Readiness>,
    stalled_after: Duration,
    cancel: CancellationToken,
) {
    let tenant = metrics.tenant.clone();
    let mut tracker = StallTracker::default();
    let mut every = tokio::time::interval(PROBE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = every.tick() => {}
        }
        // Only the source owns the consumer: it closes it when it stops.
        let Some(c) = consumer.upgrade() else { return };
        let t = topic.clone();
        let views = match tokio::task::spawn_blocking(move || probe(&c, &t)).await {
            Ok(Ok(views)) => views,
            Ok(Err(reason)) => {
                if ready.is_ready() {
                    tracing::warn!(tenant, reason, "kafka source not ready");
                }
                ready.source_down(reason);
                continue;
            }
            Err(e) => {
                tracing::error!(tenant, error = %e, "kafka probe panicked");
                continue;
            }
        };
        ready.source_up();
        let lag: i64 = views.iter().map(|v| (v.high_watermark - v.committed).max(0)).sum();
        metrics.source_lag.store(lag, Relaxed);
        let stalled = tracker.observe(&views, Instant::now(), stalled_after);
        let before: Vec<i32> = ready.stalled().iter().map(|p| p.partition).collect();
        for p in stalled.iter().filter(|p| !before.contains(&p.partition)) {
            tracing::warn!(
                tenant,
                topic,
                partition = p.partition,
                committed = p.committed,
                high_watermark = p.high_watermark,
                assigned_here = p.assigned_here,
                "kafka partition stalled: its committed offset has not moved for {} s while records wait",
                p.stalled_secs
            );
        }
        metrics.partitions_stalled.store(stalled.len() as i64, Relaxed);
        ready.set_stalled(stalled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(partition: i32, committed: i64, high_watermark: i64) -> PartitionView {
        PartitionView { partition, committed, high_watermark, assigned_here: false }
    }

    #[test]
    fn a_partition_stalls_when_its_commit_stays_behind_for_the_whole_period() {
        let mut t = StallTracker::default();
        let start = Instant::now();
        let after = Duration::from_secs(30);
        let at = |s: u64| start + Duration::from_secs(s);
        assert!(t.observe(&[view(0, 10, 50), view(1, 5, 5)], at(0), after).is_empty());
        // Partition 1 is caught up (no lag): never stalled; partition 0 waits.
        assert!(t.observe(&[view(0, 10, 80), view(1, 5, 5)], at(29), after).is_empty());
        let stalled = t.observe(&[view(0, 10, 90), view(1, 5, 5)], at(31), after);
        assert_eq!(stalled.len(), 1);
        assert_eq!((stalled[0].partition, stalled[0].high_watermark, stalled[0].stalled_secs), (0, 90, 31));
        // Progress resets it.
        assert!(t.observe(&[view(0, 11, 90), view(1, 5, 5)], at(32), after).is_empty());
        assert!(t.observe(&[view(0, 11, 90)], at(61), after).is_empty(), "29 s since the last move");
        assert_eq!(t.observe(&[view(0, 11, 90)], at(62), after).len(), 1);
    }
}
