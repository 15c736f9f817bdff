//! The worker's side: at the first entry of each interval of log time, the chain's and
//! the hub's state are taken on the worker's thread (the stages are snapshotted between
//! two entries) and handed to [`write_checkpoints`], which encodes, digests and offers
//! them to Redis off the event path. A checkpoint that finds the writer still busy
//! with the previous one is skipped and counted, never queued without bound.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use streamgate_runtime::Chain;

use super::store::{CheckpointStore, Offer};
use super::{Checkpoint, codec};
use crate::bus::LogPosition;
use crate::hub::Hub;
use crate::metrics::{CheckpointOutcome, TenantMetrics};

/// Where the worker sends its checkpoints, and when.
pub struct CheckpointTap {
    pub interval_ms: i64,
    pub tx: mpsc::Sender<Checkpoint>,
}

impl CheckpointTap {
    /// Whether the entry that moved log time from `before` to `now` is the first of an
    /// interval (never the first entry this instance reads: it may have missed earlier
    /// ones).
    pub fn due(&self, before: i64, now: i64) -> bool {
        before != i64::MIN && before.div_euclid(self.interval_ms) != now.div_euclid(self.interval_ms)
    }

    /// Takes the state after the entry at `position` and hands it on.
    pub fn take(
        &self,
        chain: &mut Chain,
        hub: &Hub,
        position: LogPosition,
        now: i64,
        metrics: &TenantMetrics,
    ) {
        let started = std::time::Instant::now();
        let chain = match chain.state() {
            Ok(state) => state,
            Err((stage, e)) => {
                metrics.count_checkpoint(CheckpointOutcome::Skipped);
                tracing::warn!(tenant = %metrics.tenant, %position, stage, error = %e,
                    "no checkpoint: a stage gave no snapshot");
                return;
            }
        };
        let checkpoint =
            Checkpoint { tenant: metrics.tenant.clone(), position, now, chain, hub: hub.state() };
        let pause = started.elapsed().as_micros().min(i64::MAX as u128) as i64;
        metrics.checkpoint_pause_us.store(pause, Relaxed);
        if self.tx.try_send(checkpoint).is_err() {
            metrics.count_checkpoint(CheckpointOutcome::Skipped);
            tracing::warn!(tenant = %metrics.tenant, %position, "no checkpoint: the previous one is still being written");
        }
    }
}

/// Encodes each checkpoint and offers it to Redis: written if first at its position,
/// else compared with the one written there (a difference is a non-determinism alarm:
/// counted and logged as an error). Runs until the worker stops or `cancel`.
pub async fn write_checkpoints(
    store: Arc<CheckpointStore>,
    max_bytes: usize,
    metrics: Arc<TenantMetrics>,
    mut rx: mpsc::Receiver<Checkpoint>,
    cancel: CancellationToken,
) {
    loop {
        let checkpoint = tokio::select! {
            _ = cancel.cancelled() => return,
            c = rx.recv() => match c { Some(c) => c, None => return },
        };
        let position = checkpoint.position;
        let Ok((blob, digest)) = tokio::task::spawn_blocking(move || {
            let blob = codec::encode(&checkpoint);
            let digest = codec::digest(&blob);
            (blob, digest)
        })
        .await
        else {
            return;
        };
        metrics.checkpoint_bytes.store(blob.len() as i64, Relaxed);
        if blob.len() > max_bytes {
            metrics.count_checkpoint(CheckpointOutcome::Skipped);
            tracing::warn!(tenant = %metrics.tenant, %position, bytes = blob.len(), max_bytes,
                "no checkpoint: larger than checkpoint.max_bytes");
            continue;
        }
        match store.offer(&metrics.tenant, position, &digest, &blob).await {
            Ok(Offer::Written) => {
                metrics.count_checkpoint(CheckpointOutcome::Written);
                tracing::debug!(tenant = %metrics.tenant, %position, bytes = blob.len(), "checkpoint written");
            }
            Ok(Offer::Verified) => metrics.count_checkpoint(CheckpointOutcome::Verified),
            Ok(Offer::Mismatch) => {
                metrics.count_checkpoint(CheckpointOutcome::Mismatch);
                tracing::error!(tenant = %metrics.tenant, %position, %digest,
                    "checkpoint mismatch: this instance's state differs from the one written at the same log position (non-determinism); starting instances will not trust it");
            }
            Err(e) => {
                metrics.count_checkpoint(CheckpointOutcome::Failed);
                tracing::warn!(tenant = %metrics.tenant, %position, error = %e, "checkpoint not written");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_is_due_at_the_first_entry_of_each_interval_never_at_the_first_read() {
        let tap = CheckpointTap { interval_ms: 1_000, tx: mpsc::channel(1).0 };
        assert!(!tap.due(i64::MIN, 5_000), "the first entry this instance reads");
        assert!(tap.due(999, 1_000));
        assert!(!tap.due(1_000, 1_999));
        assert!(tap.due(1_500, 4_200), "a quiet spell longer than an interval: one checkpoint");
        assert!(!tap.due(2_000, 2_000), "log time that did not move");
    }
}
