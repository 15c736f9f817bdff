//! Wires config into running parts: policy runtime, bus, tenants, sources, HTTP.
//! `streamgate run` and `streamgate demo` both end up in [`serve`].

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use streamgate_runtime::PolicyRuntime;

use crate::bus::{Bus, BusError, BusKind, MemoryBus, RedisLink, RedisPubSubBus, RedisStreamBus};
use crate::config::Config;
use crate::control::ChainControl;
use crate::http::admin::AdminState;
use crate::http::{self, AppState};
use crate::policy::{Catalog, CatalogError, Store, StoreError};
use crate::source::{Extractor, LogPublisher, kafka, simulate};
use crate::tenant;

/// Where events come from.
#[derive(Clone, Copy, Debug)]
pub enum Source {
    /// Each tenant's Kafka topic.
    Kafka,
    /// The built-in simulators, each tenant's own (its `simulator`): `taxis` cars
    /// reporting every `every`, or a waiting queue of `taxis / 3` moving every `2 × every`.
    Simulator { taxis: usize, every: Duration },
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    #[error("tenant {tenant:?} policy chain: {source}")]
    Chain { tenant: String, source: CatalogError },
    #[error("plugin store: {0}")]
    Store(#[from] StoreError),
    #[error("tenant {tenant:?} auth: {message}")]
    Auth { tenant: String, message: String },
    #[error("{0}")]
    Admin(String),
    #[error("checkpoint store: {0}")]
    Checkpoint(String),
    #[error(transparent)]
    Kafka(#[from] kafka::KafkaSourceError),
    #[error(
        "cannot listen on {addr}: {source} (is another process using the port? set `listen` or STREAMGATE_LISTEN)"
    )]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("http server: {0}")]
    Serve(std::io::Error),
}

fn bus(config: &Config) -> Result<Bus, BusError> {
    Ok(match config.bus.kind {
        BusKind::Memory => Bus::Memory(MemoryBus::default()),
        BusKind::RedisStream => {
            Bus::RedisStream(RedisStreamBus::with_link(RedisLink::open(&config.redis)?, config.bus.retention))
        }
        BusKind::RedisPubsub => {
            Bus::RedisPubSub(RedisPubSubBus::new(&config.redis.url, &config.redis.key_prefix)?)
        }
    })
}

/// Where tenants keep checkpoints, when they do (a Redis-stream bus only: the config
/// says so). They expire with the log's retention.
fn checkpoints(config: &Config) -> Result<Option<tenant::Checkpoints>, AppError> {
    if !config.checkpoint.enabled || config.bus.kind != BusKind::RedisStream {
        return Ok(None);
    }
    let link = RedisLink::open(&config.redis).map_err(|e| AppError::Checkpoint(e.to_string()))?;
    let retention = crate::checkpoint::Retention {
        ttl: config.bus.retention,
        keep: config.checkpoint.keep,
        min_verifications: config.checkpoint.min_verifications,
    };
    let store = crate::checkpoint::CheckpointStore::with_link(link, retention);
    Ok(Some(tenant::Checkpoints { store: Arc::new(store), config: config.checkpoint.clone() }))
}

/// Where uploaded plugins and chain history live: with the bus.
fn store(config: &Config) -> Result<Store, StoreError> {
    match config.bus.kind {
        BusKind::Memory => Ok(Store::memory()),
        BusKind::RedisStream | BusKind::RedisPubsub => Ok(Store::redis_link(RedisLink::open(&config.redis)?)),
    }
}

/// Runs until `cancel`: every tenant, its source, and the HTTP server; then waits for
/// sources to publish what they hold and for every task to stop.
pub async fn serve(config: Config, source: Source, cancel: CancellationToken) -> Result<(), AppError> {
    let runtime = PolicyRuntime::new(&config.sandbox);
    let catalog = Arc::new(Catalog::new(runtime, store(&config)?, config.plugins_dir.clone()));
    let bus = bus(&config)?;
    let checkpoints = checkpoints(&config)?;
    let tasks = TaskTracker::new();
    tasks.spawn(catalog.clone().precompile_announced(cancel.clone()));
    let mut tenants = BTreeMap::new();
    let mut doors = BTreeMap::new();
    let instance_id = config.kafka.group_instance_id(config.listen);
    if matches!(source, Source::Kafka) {
        tracing::info!(group_instance_id = ?instance_id, "kafka static membership");
    }
    for t in &config.tenants {
        let auth = t
            .auth
            .as_ref()
            .map(|a| crate::auth::Verifier::new(&t.name, a))
            .transpose()
            .map_err(|message| AppError::Auth { tenant: t.name.clone(), message })?;
        let handle = tenant::start(
            t.clone(),
            auth,
            bus.clone(),
            &config.bus,
            checkpoints.clone(),
            catalog.clone(),
            &tasks,
            cancel.clone(),
        )
        .await
        .map_err(|source| AppError::Chain { tenant: t.name.clone(), source })?;
        match source {
            Source::Kafka => {
                let consumer = Arc::new(kafka::consumer(&config.kafka, t, instance_id.as_deref())?);
                tasks.spawn(kafka::monitor::monitor(
                    Arc::downgrade(&consumer),
                    t.topic.clone(),
                    handle.metrics.clone(),
                    handle.ready.clone(),
                    config.kafka.stalled_after,
                    cancel.clone(),
                ));
                tasks.spawn(kafka::run(
                    consumer,
                    t.clone(),
                    bus.clone(),
                    config.bus.clone(),
                    handle.metrics.clone(),
                    cancel.clone(),
                ));
            }
            Source::Simulator { taxis, every } => {
                // The simulators need no connection: only the log decides readiness.
                handle.ready.source_up();
                let publisher = LogPublisher::new(&t.name, bus.clone(), handle.metrics.clone());
                let (sim, door) = simulate::build(t.simulator, taxis);
                if let Some(door) = door {
                    doors.insert(t.name.clone(), door);
                }
                let every = simulate::tick_every(t.simulator, every);
                let extractor = Extractor::for_tenant(t);
                tasks.spawn(simulate::run_on_bus(sim, every, extractor, publisher, cancel.clone()));
            }
        }
        tenants.insert(t.name.clone(), handle);
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| AppError::Bind { addr: config.listen, source })?;
    let addr = listener.local_addr().map_err(AppError::Serve)?;
    tracing::info!("streamgate listening on http://{addr}");
    let tenants = Arc::new(tenants);
    let control = Arc::new(ChainControl::new(catalog, bus, tenants.clone(), config.admin.apply_timeout));
    if let Some(dir) = &config.plugins_dir {
        let every = config.admin.watch_interval;
        tasks.spawn(crate::control::watch::watch_plugins_dir(
            dir.clone(),
            every,
            control.clone(),
            cancel.clone(),
        ));
    }
    let admin = AdminState {
        tokens: config.admin.tokens().map_err(AppError::Admin)?,
        max_plugin_bytes: config.admin.max_plugin_bytes,
        control,
    };
    let limits = Arc::new(http::limits::Limits::new(config.limits.clone()));
    let state = AppState {
        tenants,
        cancel: cancel.clone(),
        admin: Some(Arc::new(admin)),
        limits,
        doors: Arc::new(doors),
    };
    tasks.spawn(http::sse::end_streams_at(cancel.clone(), state.tenants.clone()));
    let router = http::router(state);
    let listener = http::listen::Listener::new(listener, router.clone(), tasks.clone(), cancel.clone());
    let serving = axum::serve(listener, http::listen::WithPeer(router))
        .with_graceful_shutdown(cancel.clone().cancelled_owned())
        .into_future();
    // Shutdown is bounded: whatever has not ended SHUTDOWN_WAIT after the signal (a
    // request that never completes, a client library waiting on a broker) is left.
    let deadline = async {
        cancel.cancelled().await;
        tokio::time::sleep(SHUTDOWN_WAIT).await;
    };
    tokio::pin!(deadline);
    tokio::select! {
        served = serving => served.map_err(AppError::Serve)?,
        _ = &mut deadline => tracing::warn!(wait = ?SHUTDOWN_WAIT, "connections still open at the shutdown deadline; closing"),
    }
    tasks.close();
    tokio::select! {
        _ = tasks.wait() => tracing::info!("streamgate stopped"),
        _ = &mut deadline => tracing::warn!(wait = ?SHUTDOWN_WAIT, running = tasks.len(),
            "tasks still running at the shutdown deadline; stopping without them"),
    }
    Ok(())
}

/// How long after the shutdown signal the instance waits for its connections and tasks.
/// The Kafka source takes at most its publish grace and its group leave (7 s).
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);
