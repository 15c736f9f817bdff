//! Heartbeats: an idle tenant's log gets an entry whenever it has been quiet for one
//! interval, so log time (the policies' only "now") moves on without traffic.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, EntryBody};

/// Publishes a heartbeat whenever the log has been quiet for one interval.
pub(super) async fn heartbeat(
    tenant: String,
    bus: Bus,
    every: Duration,
    clock: Instant,
    last_entry_ms: Arc<AtomicU64>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let quiet_for = (clock.elapsed().as_millis() as u64).saturating_sub(last_entry_ms.load(Relaxed));
        if quiet_for < every.as_millis() as u64 {
            continue;
        }
        if let Err(e) = bus.publish(&tenant, &EntryBody::Heartbeat).await {
            tracing::debug!(tenant, error = %e, "heartbeat publish failed");
        }
    }
}
