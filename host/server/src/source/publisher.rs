//! Collects a tenant's events and publishes them to its log as one entry, by size and
//! linger; a failed publish is retried with back-off until it succeeds (or shutdown),
//! never dropping a batch.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, EntryBody};
use crate::event::Event;
use crate::metrics::TenantMetrics;

/// Collects events and publishes them to a tenant's log as one entry.
pub struct BatchPublisher {
    tenant: String,
    bus: Bus,
    metrics: Arc<TenantMetrics>,
    pub max_events: usize,
    pub linger: Duration,
    batch: Vec<Event>,
}

/// Shutdown arrived before the batch could be published.
#[derive(Debug, thiserror::Error)]
#[error("shut down with an unpublished batch")]
pub struct Cancelled;

impl BatchPublisher {
    pub fn new(
        tenant: &str,
        bus: Bus,
        metrics: Arc<TenantMetrics>,
        max_events: usize,
        linger: Duration,
    ) -> Self {
        BatchPublisher { tenant: tenant.to_string(), bus, metrics, max_events, linger, batch: Vec::new() }
    }

    pub fn push(&mut self, event: Event) {
        self.batch.push(event);
    }

    /// Takes a whole batch cut elsewhere (after those pushed, if any).
    pub fn take_batch(&mut self, mut events: Vec<Event>) {
        if self.batch.is_empty() {
            self.batch = events;
        } else {
            self.batch.append(&mut events);
        }
    }

    pub fn is_full(&self) -> bool {
        self.batch.len() >= self.max_events
    }

    /// Publishes the batch (if any), retrying with backoff; `Err` only on shutdown.
    pub async fn flush(&mut self, cancel: &CancellationToken) -> Result<(), Cancelled> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let body = EntryBody::batch(&self.batch);
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.bus.publish(&self.tenant, &body).await {
                Ok(_) => break,
                Err(e) => {
                    self.metrics.publish_errors.fetch_add(1, Relaxed);
                    tracing::warn!(tenant = %self.tenant, error = %e, retry_in = ?backoff, "bus publish failed; retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => return Err(Cancelled),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
        self.metrics.published.fetch_add(self.batch.len() as u64, Relaxed);
        self.batch.clear();
        Ok(())
    }
}
