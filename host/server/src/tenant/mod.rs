//! Runs one tenant on this instance, in data-path order: the log reader (the bus), the
//! dispatcher that turns control entries into prepared chain swaps ([`dispatch`]),
//! [`heartbeat`]s that move log time on while the tenant is idle, the policy
//! [`worker`] (a blocking-pool thread, so plugin calls never stall the async runtime)
//! that runs the chain and publishes frames to the hub, and the [`report`]er that puts
//! faults only this instance saw into the log for every instance to follow. A candidate
//! chain may run beside the live one ([`shadow`]). What a tenant is: [`config`].
//! With checkpoints kept, it starts from the newest usable one and reads the log after
//! it, and its worker takes one at the first entry of each interval.

pub mod config;
mod dispatch;
mod heartbeat;
mod report;
pub mod shadow;
mod shadow_board;
mod shadow_orders;
#[cfg(test)]
mod shadow_tests;
mod status;
#[cfg(test)]
mod tests;
mod worker;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{PolicyRef, SimulatorKind, TenantConfig};
pub use status::{ChainStatus, SwapStatus};
use streamgate_runtime::{Chain, ChainOptions, ChainSpec};

use crate::bus::{Bus, BusConfig};
use crate::checkpoint::{self, CheckpointConfig, CheckpointStore, CheckpointTap};
use crate::hub::Hub;
use crate::metrics::TenantMetrics;
use crate::policy::{Catalog, CatalogError};
use crate::readiness::Readiness;

/// Frames a client may have queued before it counts as lagging.
const CLIENT_BUFFER_FRAMES: usize = 256;
/// Log entries between the reader, the dispatcher and the policy worker.
const WORKER_QUEUE: usize = 64;

/// What the HTTP side needs of a running tenant.
pub struct TenantHandle {
    pub config: TenantConfig,
    pub hub: Arc<Hub>,
    pub metrics: Arc<TenantMetrics>,
    /// Whether the log reader and the source are connected now, and why not.
    pub ready: Arc<Readiness>,
    /// Checks subscribers' tokens, when the tenant requires them.
    pub auth: Option<crate::auth::Verifier>,
    /// The chain this instance runs and how far it has read, kept by the worker.
    pub chain: watch::Receiver<ChainStatus>,
    /// The shadow deploy on this instance, kept by the worker and the candidate.
    pub shadow: Arc<shadow::ShadowBoard>,
}

impl TenantHandle {
    /// The chain the tenant's config declares (version 0).
    pub fn configured_chain(&self, plugins_dir: bool) -> ChainSpec {
        self.config.configured_chain(plugins_dir)
    }
}

/// Builds the tenant's chain (from the newest usable checkpoint when `checkpoints` are
/// kept, else the configured one) and starts its tasks on `tasks`.
#[allow(clippy::too_many_arguments)]
pub async fn start(
    config: TenantConfig,
    auth: Option<crate::auth::Verifier>,
    bus: Bus,
    bus_config: &BusConfig,
    checkpoints: Option<Checkpoints>,
    catalog: Arc<Catalog>,
    tasks: &TaskTracker,
    cancel: CancellationToken,
) -> Result<Arc<TenantHandle>, CatalogError> {
    let options = chain_options(&catalog, &config);
    let metrics = Arc::new(TenantMetrics::new(&config.name));
    let resumed = match (&checkpoints, &bus) {
        (Some(c), Bus::RedisStream(log)) => {
            let configured = config.configured_chain(catalog.plugins_dir().is_some());
            let verifications = c.config.min_verifications;
            checkpoint::resume(&c.store, verifications, log, &catalog, options, &configured, &metrics).await
        }
        _ => None,
    };
    let (chain, from) = match resumed {
        Some(r) => (r.chain, Some(r.checkpoint)),
        None => {
            let spec = config.configured_chain(catalog.plugins_dir().is_some());
            (Chain::new(catalog.prepare(&spec, options.limits, false, false).await?, options), None)
        }
    };
    let mut hub = Hub::new(
        &config.event,
        config.latest_value,
        config.history_frames,
        CLIENT_BUFFER_FRAMES,
        metrics.clone(),
    );
    if !config.latest_tags.is_empty() {
        hub = hub.keeping_tags(config.latest_tag_hashes());
    }
    let hub = Arc::new(hub);
    let (after, start_time) = match from {
        Some(c) => {
            hub.restore(c.hub);
            (Some(c.position), Some(c.now))
        }
        None => (None, None),
    };
    // The source reports its own state once started (see `app::serve`).
    let ready = Arc::new(Readiness::default());
    let mut status = ChainStatus::new(&chain);
    status.position = after.unwrap_or_default();
    let (status_tx, status_rx) = watch::channel(status);
    let handle = Arc::new(TenantHandle {
        config: config.clone(),
        hub: hub.clone(),
        metrics: metrics.clone(),
        ready: ready.clone(),
        auth,
        chain: status_rx,
        shadow: Default::default(),
    });
    let clock = Instant::now();
    let last_entry_ms = Arc::new(AtomicU64::new(0));

    let (log_tx, log_rx) = mpsc::channel(WORKER_QUEUE);
    let (work_tx, work_rx) = mpsc::channel(WORKER_QUEUE);
    tasks.spawn({
        let (bus, name, cancel) = (bus.clone(), config.name.clone(), cancel.clone());
        async move { bus.read_after(&name, after, log_tx, ready, cancel).await }
    });
    let (history_tx, history_rx) = mpsc::unbounded_channel();
    let store = catalog.store().clone();
    tasks.spawn(report::record_history(store, config.name.clone(), history_rx, cancel.clone()));
    tasks.spawn(dispatch::dispatch(
        dispatch::Dispatcher::new(config.name.clone(), catalog, options.limits, after.is_none()),
        log_rx,
        work_tx,
        cancel.clone(),
    ));
    let (reports_tx, reports_rx) = mpsc::unbounded_channel();
    tasks.spawn(report::publish_reports(bus.clone(), metrics.clone(), reports_rx, cancel.clone()));
    tasks.spawn(heartbeat::heartbeat(
        config.name.clone(),
        bus,
        bus_config.heartbeat,
        clock,
        last_entry_ms.clone(),
        cancel.clone(),
    ));
    let tap = checkpoints.map(|c| {
        let (tx, rx) = mpsc::channel(1);
        tasks.spawn(checkpoint::write_checkpoints(
            c.store,
            c.config.max_bytes,
            metrics.clone(),
            rx,
            cancel.clone(),
        ));
        CheckpointTap { interval_ms: c.config.interval.as_millis().clamp(1, i64::MAX as u128) as i64, tx }
    });
    let worker = worker::Worker {
        chain,
        hub,
        metrics,
        status: status_tx,
        clock,
        last_entry_ms,
        reports: reports_tx,
        history: history_tx,
        instance: report::instance_name(),
        reported: Default::default(),
        shadow: None,
        shadow_board: handle.shadow.clone(),
        checkpoints: tap,
        start_time,
    };
    let worker_cancel = cancel.clone();
    tasks.spawn_blocking(move || worker.run(work_rx, &worker_cancel));
    tracing::info!(tenant = %config.name, chain = ?handle.chain.borrow().labels, from = ?after, "tenant started");
    Ok(handle)
}

/// Where a tenant's checkpoints are kept, and how.
#[derive(Clone)]
pub struct Checkpoints {
    pub store: Arc<CheckpointStore>,
    pub config: CheckpointConfig,
}

/// How the tenant's chain runs: the sandbox's limits, its own call budget and failure
/// policy.
pub fn chain_options(catalog: &Catalog, config: &TenantConfig) -> ChainOptions {
    ChainOptions::new(catalog.runtime(), config.failure_policy, config.call_timeout)
}
