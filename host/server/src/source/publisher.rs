//! Publishes a batch of a tenant's events to its log as one entry; a failed publish is
//! retried with back-off until it succeeds (or shutdown), never dropping a batch. Where
//! a batch is cut (by size and linger, or by a simulator's tick) is the caller's.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, EntryBody};
use crate::event::Event;
use crate::metrics::TenantMetrics;

/// Publishes batches to one tenant's log.
pub struct LogPublisher {
    tenant: String,
    bus: Bus,
    metrics: Arc<TenantMetrics>,
}

/// Shutdown arrived before the batch could be published.
#[derive(Debug, thiserror::Error)]
#[error("shut down with an unpublished batch")]
pub struct Cancelled;

impl LogPublisher {
    pub fn new(tenant: &str, bus: Bus, metrics: Arc<TenantMetrics>) -> Self {
        LogPublisher { tenant: tenant.to_string(), bus, metrics }
    }

    /// Publishes `events` (if any) as one log entry, retrying with backoff; `Err` only
    /// on shutdown.
    pub async fn publish(&self, events: &[Event], cancel: &CancellationToken) -> Result<(), Cancelled> {
        if events.is_empty() {
            return Ok(());
        }
        let body = EntryBody::batch(events);
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
        self.metrics.published.fetch_add(events.len() as u64, Relaxed);
        Ok(())
    }
}
