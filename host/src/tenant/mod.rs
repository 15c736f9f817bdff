//! Runs one tenant on this instance: the log reader, the router that turns control
//! entries into prepared chain swaps ([`router`]), heartbeats that move log time on
//! while the tenant is idle, and the policy worker ([`worker`], a blocking-pool thread,
//! so plugin calls never stall the async runtime) that turns log entries into frames.

mod router;
mod status;
mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use status::{ChainStatus, SwapStatus};

use crate::bus::{Bus, EntryBody};
use crate::config::{BusConfig, TenantConfig};
use crate::hub::Hub;
use crate::metrics::TenantMetrics;
use crate::policy::chain::ChainOptions;
use crate::policy::{Catalog, CatalogError, Chain, ChainSpec};

/// Frames a client may have queued before it counts as lagging.
const CLIENT_BUFFER_FRAMES: usize = 256;
/// Log entries between the reader, the router and the policy worker.
const WORKER_QUEUE: usize = 64;

/// What the HTTP side needs of a running tenant.
pub struct TenantHandle {
    pub config: TenantConfig,
    pub hub: Arc<Hub>,
    pub metrics: Arc<TenantMetrics>,
    /// Cancelled once the log reader is connected and caught up.
    pub ready: CancellationToken,
    /// Checks subscribers' tokens, when the tenant requires them.
    pub auth: Option<crate::auth::Verifier>,
    /// The chain this instance runs and how far it has read, kept by the worker.
    pub chain: watch::Receiver<ChainStatus>,
}

impl TenantHandle {
    /// The chain the tenant's config declares (version 0).
    pub fn configured_chain(&self, plugins_dir: bool) -> ChainSpec {
        ChainSpec::from_config(&self.config.policies, plugins_dir)
    }
}

/// Builds the tenant's configured chain and starts its tasks on `tasks`.
pub async fn start(
    config: TenantConfig,
    auth: Option<crate::auth::Verifier>,
    bus: Bus,
    bus_config: &BusConfig,
    catalog: Arc<Catalog>,
    tasks: &TaskTracker,
    cancel: CancellationToken,
) -> Result<Arc<TenantHandle>, CatalogError> {
    let options = ChainOptions::for_tenant(catalog.runtime(), &config);
    let spec = ChainSpec::from_config(&config.policies, catalog.plugins_dir().is_some());
    let chain = Chain::new(catalog.prepare(&spec, options.limits, false, false).await?, options);
    let metrics = Arc::new(TenantMetrics::new(&config.name));
    let hub = Arc::new(Hub::new(
        &config.event,
        config.latest_value,
        config.history_frames,
        CLIENT_BUFFER_FRAMES,
        metrics.clone(),
    ));
    let ready = CancellationToken::new();
    let (status_tx, status_rx) = watch::channel(ChainStatus::new(&chain));
    let handle = Arc::new(TenantHandle {
        config: config.clone(),
        hub: hub.clone(),
        metrics: metrics.clone(),
        ready: ready.clone(),
        auth,
        chain: status_rx,
    });
    let clock = Instant::now();
    let last_entry_ms = Arc::new(AtomicU64::new(0));

    let (log_tx, log_rx) = mpsc::channel(WORKER_QUEUE);
    let (work_tx, work_rx) = mpsc::channel(WORKER_QUEUE);
    tasks.spawn({
        let (bus, name, cancel) = (bus.clone(), config.name.clone(), cancel.clone());
        async move { bus.read(&name, log_tx, ready, cancel).await }
    });
    tasks.spawn(router::route(
        router::Router::new(config.name.clone(), catalog, options.limits, metrics.clone()),
        log_rx,
        work_tx,
        cancel.clone(),
    ));
    tasks.spawn(heartbeat(
        config.name.clone(),
        bus,
        Duration::from_millis(bus_config.heartbeat_ms),
        clock,
        last_entry_ms.clone(),
        cancel.clone(),
    ));
    let worker = worker::Worker { chain, hub, metrics, status: status_tx, clock, last_entry_ms };
    let worker_cancel = cancel.clone();
    tasks.spawn_blocking(move || worker.run(work_rx, &worker_cancel));
    tracing::info!(tenant = %config.name, chain = ?handle.chain.borrow().labels, "tenant started");
    Ok(handle)
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
