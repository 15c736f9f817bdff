//! The Kafka source's publishing side: batches go to the tenant's log on a task of
//! their own, in the order they were cut, while the consumer reads and decodes the next
//! one (before, each publish's round trip to Redis stopped consumption). At most one
//! batch waits behind the one being published, so a slow or unreachable bus holds the
//! consumer back instead of piling batches up. A batch's offsets are stored only once
//! it is on the bus, as before: a crash redelivers, never loses.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::offsets::SourceConsumer;
use crate::event::Event;
use crate::source::LogPublisher;

/// How long a stopping source goes on trying to publish what it holds.
const GRACE: Duration = Duration::from_secs(2);

/// A batch cut by the consumer: its events and the highest offset per partition they
/// came from.
#[derive(Default)]
pub(super) struct Batch {
    pub events: Vec<Event>,
    pub offsets: BTreeMap<i32, i64>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.offsets.is_empty()
    }
}

/// The source is stopping (or the publishing task has ended): the batch was not queued.
#[derive(Debug)]
pub(super) struct Stopped;

/// The publishing task and the queue to it.
pub(super) struct Handoff {
    queue: mpsc::Sender<Batch>,
    task: JoinHandle<()>,
    /// Cancelled [`GRACE`] after the source is asked to stop.
    grace: CancellationToken,
}

impl Handoff {
    pub fn start(consumer: Arc<SourceConsumer>, topic: String, publisher: LogPublisher) -> Handoff {
        let (queue, batches) = mpsc::channel(1);
        let grace = CancellationToken::new();
        let task = tokio::spawn(publish_in_order(consumer, topic, publisher, batches, grace.clone()));
        Handoff { queue, task, grace }
    }

    /// Queues `batch` for publishing (leaving it empty), waiting while another is
    /// queued; if `cancel` fires first (or the task has ended) the caller still holds it.
    pub async fn hand_over(&self, batch: &mut Batch, cancel: &CancellationToken) -> Result<(), Stopped> {
        if batch.is_empty() {
            return Ok(());
        }
        let slot = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(Stopped),
            slot = self.queue.reserve() => slot.map_err(|_| Stopped)?,
        };
        slot.send(std::mem::take(batch));
        Ok(())
    }

    /// Publishes what was handed over and then `last`, for at most [`GRACE`]; returns
    /// once the task has ended (what it could not publish is re-read by the partitions'
    /// next owner: its offsets were never stored).
    pub async fn finish(self, last: Batch) {
        let grace = self.grace.clone();
        let deadline = tokio::spawn(async move {
            tokio::time::sleep(GRACE).await;
            grace.cancel();
        });
        if !last.is_empty() {
            let _ = self.queue.send(last).await;
        }
        drop(self.queue);
        let _ = self.task.await;
        deadline.abort();
    }
}

async fn publish_in_order(
    consumer: Arc<SourceConsumer>,
    topic: String,
    publisher: LogPublisher,
    mut batches: mpsc::Receiver<Batch>,
    grace: CancellationToken,
) {
    while let Some(batch) = batches.recv().await {
        if publisher.publish(&batch.events, &grace).await.is_err() {
            return;
        }
        store_offsets(&consumer, &topic, &batch.offsets);
    }
}

/// Stores the next offset to read of each partition a published batch covered.
fn store_offsets(consumer: &SourceConsumer, topic: &str, offsets: &BTreeMap<i32, i64>) {
    if offsets.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for (&partition, &offset) in offsets {
        let _ = tpl.add_partition_offset(topic, partition, Offset::Offset(offset + 1));
    }
    if let Err(e) = consumer.store_offsets(&tpl) {
        // A revoked partition: its new owner re-reads from the last commit (duplicates, not loss).
        tracing::debug!(error = %e, "storing offsets");
    }
}
