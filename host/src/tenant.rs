//! Runs one tenant on this instance: the log reader, heartbeats that move log time on
//! while the tenant is idle, and the policy worker (a blocking-pool thread, so plugin
//! calls never stall the async runtime) that turns log entries into SSE frames.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::{Bus, EntryBody, LogEntry};
use crate::config::{BusConfig, TenantConfig};
use crate::event::decode_batch;
use crate::hub::Hub;
use crate::metrics::TenantMetrics;
use crate::policy::chain::{ChainError, ChainOptions};
use crate::policy::{Chain, PolicyRuntime};

/// Frames a client may have queued before it counts as lagging.
const CLIENT_BUFFER_FRAMES: usize = 256;
/// Log entries between the reader and the policy worker.
const WORKER_QUEUE: usize = 64;

/// What the HTTP side needs of a running tenant.
pub struct TenantHandle {
    pub config: TenantConfig,
    pub hub: Arc<Hub>,
    pub metrics: Arc<TenantMetrics>,
    /// Cancelled once the log reader is connected and caught up.
    pub ready: CancellationToken,
    pub chain_labels: Vec<String>,
    /// Checks subscribers' tokens, when the tenant requires them.
    pub auth: Option<crate::auth::Verifier>,
}

/// Builds the tenant's chain and starts its tasks on `tasks`.
pub fn start(
    config: TenantConfig,
    auth: Option<crate::auth::Verifier>,
    bus: Bus,
    bus_config: &BusConfig,
    runtime: &PolicyRuntime,
    tasks: &TaskTracker,
    cancel: CancellationToken,
) -> Result<Arc<TenantHandle>, ChainError> {
    let chain = Chain::build(runtime, &config.policies, ChainOptions::for_tenant(runtime, &config))?;
    let metrics = Arc::new(TenantMetrics::new(&config.name));
    let hub = Arc::new(Hub::new(
        &config.event,
        config.latest_value,
        config.history_frames,
        CLIENT_BUFFER_FRAMES,
        metrics.clone(),
    ));
    let ready = CancellationToken::new();
    let handle = Arc::new(TenantHandle {
        chain_labels: chain.labels(),
        config: config.clone(),
        hub: hub.clone(),
        metrics: metrics.clone(),
        ready: ready.clone(),
        auth,
    });
    let clock = Instant::now();
    let last_entry_ms = Arc::new(AtomicU64::new(0));

    let (tx, rx) = mpsc::channel(WORKER_QUEUE);
    tasks.spawn({
        let (bus, name, cancel) = (bus.clone(), config.name.clone(), cancel.clone());
        async move { bus.read(&name, tx, ready, cancel).await }
    });
    tasks.spawn(heartbeat(
        config.name.clone(),
        bus,
        Duration::from_millis(bus_config.heartbeat_ms),
        clock,
        last_entry_ms.clone(),
        cancel.clone(),
    ));
    let worker_cancel = cancel.clone();
    tasks.spawn_blocking(move || {
        policy_worker(rx, chain, &hub, &metrics, clock, &last_entry_ms, &worker_cancel)
    });
    tracing::info!(tenant = %config.name, chain = ?handle.chain_labels, "tenant started");
    Ok(handle)
}

/// Applies the chain to every log entry in order; stops when the reader stops or at
/// shutdown (without draining a backlog a slow plugin built up).
fn policy_worker(
    mut rx: mpsc::Receiver<LogEntry>,
    mut chain: Chain,
    hub: &Hub,
    metrics: &TenantMetrics,
    clock: Instant,
    last_entry_ms: &AtomicU64,
    cancel: &CancellationToken,
) {
    // Log time never goes back, even if a bus's stamps do.
    let mut now = i64::MIN;
    while let Some(entry) = rx.blocking_recv() {
        if cancel.is_cancelled() {
            break;
        }
        last_entry_ms.store(clock.elapsed().as_millis() as u64, Relaxed);
        metrics.log_entries.fetch_add(1, Relaxed);
        now = now.max(entry.log_time);
        let events = match &entry.body {
            EntryBody::Heartbeat => Vec::new(),
            EntryBody::Batch(body) => match decode_batch(body) {
                Ok(events) => events,
                Err(e) => {
                    metrics.malformed_entries.fetch_add(1, Relaxed);
                    tracing::warn!(tenant = %metrics.tenant, position = %entry.position, error = %e, "skipping a log entry");
                    Vec::new()
                }
            },
        };
        metrics.log_events.fetch_add(events.len() as u64, Relaxed);
        let out = chain.push(now, events, metrics);
        if !out.released.is_empty() {
            metrics.released.fetch_add(out.released.len() as u64, Relaxed);
            metrics.frames.fetch_add(1, Relaxed);
            hub.publish(entry.position, out.released);
        }
    }
    tracing::debug!(tenant = %metrics.tenant, held = chain.held(), "policy worker stopped");
}

/// Publishes a heartbeat whenever the log has been quiet for one interval.
async fn heartbeat(
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
        let quiet_for = clock.elapsed().as_millis() as u64 - last_entry_ms.load(Relaxed);
        if quiet_for < every.as_millis() as u64 {
            continue;
        }
        if let Err(e) = bus.publish(&tenant, &EntryBody::Heartbeat).await {
            tracing::debug!(tenant, error = %e, "heartbeat publish failed");
        }
    }
}
