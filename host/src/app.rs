//! Wires config into running parts: policy runtime, bus, tenants, sources, HTTP.
//! `streamgate run` and `streamgate demo` both end up in [`serve`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::{Bus, BusError, MemoryBus, RedisPubSubBus, RedisStreamBus};
use crate::config::{BusKind, Config, FailurePolicy, PolicyRef, TenantConfig};
use crate::control::ChainControl;
use crate::event::Extractor;
use crate::http::admin::AdminState;
use crate::http::{self, AppState};
use crate::policy::{Catalog, CatalogError, PolicyRuntime};
use crate::sim::{FaultRates, TaxiSim};
use crate::source::BatchPublisher;
#[cfg(feature = "kafka")]
use crate::source::kafka;
use crate::store::{Store, StoreError};
use crate::tenant;

/// Where events come from.
#[derive(Clone, Copy, Debug)]
pub enum Source {
    /// Each tenant's Kafka topic.
    #[cfg(feature = "kafka")]
    Kafka,
    /// The built-in simulators: `taxis` cars reporting every `every`, and for the
    /// tenant named `queue`, a waiting queue moving every `2 × every`.
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
    #[error(transparent)]
    #[cfg(feature = "kafka")]
    Kafka(#[from] kafka::KafkaSourceError),
    #[error(
        "cannot listen on {addr}: {source} (is another process using the port? set `listen` or STREAMGATE_LISTEN)"
    )]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("http server: {0}")]
    Serve(std::io::Error),
}

/// The embedded default: in-memory bus, the taxi map and the waiting queue.
pub fn demo_config(listen: SocketAddr) -> Config {
    let mut config = Config::parse("").expect("an empty config parses");
    config.listen = listen;
    config.bus.kind = BusKind::Memory;
    config.tenants.push(taxi_tenant());
    config.tenants.push(queue_tenant());
    config
}

/// The waiting-queue tenant: per-user keys, dedupe by eventId, ranks coalesced.
pub fn queue_tenant() -> TenantConfig {
    TenantConfig {
        name: "queue".into(),
        topic: "queue-events".into(),
        key: "/userId".into(),
        time: "/timestamp".into(),
        id: Some("/eventId".into()),
        tag: Some("/kind".into()),
        event: "queueUpdate".into(),
        latest_value: false,
        snapshot_on_connect: false,
        policies: vec![
            policy("dedupe", "by = \"id\"\nforget_after_ms = 600000"),
            policy("coalesce", "tags = [\"rank\"]"),
        ],
        ..taxi_tenant()
    }
}

/// A built-in policy with a static TOML config.
fn policy(name: &str, config: &str) -> PolicyRef {
    PolicyRef {
        plugin: format!("builtin:{name}"),
        config: Some(toml::from_str(config).expect("static policy config")),
    }
}

/// The live taxi map tenant with its default chain.
pub fn taxi_tenant() -> TenantConfig {
    TenantConfig {
        name: "taxi".into(),
        topic: "taxi-locations".into(),
        key: "/mediaId".into(),
        time: "/timestamp".into(),
        id: None,
        tag: None,
        event: "liveMapLocation".into(),
        latest_value: true,
        snapshot_on_connect: true,
        history_frames: 1_024,
        max_payload_bytes: 64 << 10,
        policies: vec![
            policy("ordering", "window_ms = 1000"),
            policy("staleness", "max_age_ms = 30000"),
            policy("dedupe", "newest_per_frame = true\nforget_after_ms = 600000"),
        ],
        failure_policy: FailurePolicy::FailOpen,
        call_timeout_ms: None,
        frame_ms: None,
        auth: None,
    }
}

fn bus(config: &Config) -> Result<Bus, BusError> {
    Ok(match config.bus.kind {
        BusKind::Memory => Bus::Memory(MemoryBus::default()),
        BusKind::RedisStream => Bus::RedisStream(RedisStreamBus::new(
            &config.redis.url,
            &config.redis.key_prefix,
            config.bus.retention_ms,
        )?),
        BusKind::RedisPubsub => {
            Bus::RedisPubSub(RedisPubSubBus::new(&config.redis.url, &config.redis.key_prefix)?)
        }
    })
}

/// Where uploaded plugins and chain history live: with the bus.
fn store(config: &Config) -> Result<Store, StoreError> {
    match config.bus.kind {
        BusKind::Memory => Ok(Store::memory()),
        BusKind::RedisStream | BusKind::RedisPubsub => {
            Store::redis(&config.redis.url, &config.redis.key_prefix)
        }
    }
}

/// Runs until `cancel`: every tenant, its source, and the HTTP server; then waits for
/// sources to publish what they hold and for every task to stop.
pub async fn serve(config: Config, source: Source, cancel: CancellationToken) -> Result<(), AppError> {
    let runtime = PolicyRuntime::new(&config.sandbox);
    let catalog = Arc::new(Catalog::new(runtime, store(&config)?, config.plugins_dir.clone()));
    let bus = bus(&config)?;
    let tasks = TaskTracker::new();
    tasks.spawn(catalog.clone().precompile_announced(cancel.clone()));
    let mut tenants = BTreeMap::new();
    for t in &config.tenants {
        let auth = t
            .auth
            .as_ref()
            .map(|a| crate::auth::Verifier::new(&t.name, a))
            .transpose()
            .map_err(|message| AppError::Auth { tenant: t.name.clone(), message })?;
        let handle =
            tenant::start(t.clone(), auth, bus.clone(), &config.bus, catalog.clone(), &tasks, cancel.clone())
                .await
                .map_err(|source| AppError::Chain { tenant: t.name.clone(), source })?;
        match source {
            #[cfg(feature = "kafka")]
            Source::Kafka => {
                let consumer = kafka::consumer(&config.kafka, t)?;
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
                let extractor = Extractor::for_tenant(t);
                let publisher = BatchPublisher::new(
                    &t.name,
                    bus.clone(),
                    handle.metrics.clone(),
                    config.bus.batch_max_events,
                    t.linger(&config.bus),
                );
                if t.name == "queue" {
                    let sim = crate::queue_sim::QueueSim::new(taxis / 3, 7);
                    tasks.spawn(crate::sim::run_on_bus(sim, every * 2, extractor, publisher, cancel.clone()));
                } else {
                    let sim = TaxiSim::new(taxis, 42, FaultRates::default());
                    tasks.spawn(crate::sim::run_on_bus(sim, every, extractor, publisher, cancel.clone()));
                }
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
    let control = Arc::new(ChainControl::new(
        catalog,
        bus,
        tenants.clone(),
        Duration::from_millis(config.admin.apply_timeout_ms),
    ));
    if let Some(dir) = &config.plugins_dir {
        let every = Duration::from_millis(config.admin.watch_interval_ms);
        tasks.spawn(crate::watch::watch_plugins_dir(dir.clone(), every, control.clone(), cancel.clone()));
    }
    let admin = AdminState {
        token: config.admin.token.clone(),
        max_plugin_bytes: config.admin.max_plugin_bytes,
        control,
    };
    let state = AppState { tenants, cancel: cancel.clone(), admin: Some(Arc::new(admin)) };
    axum::serve(listener, http::router(state))
        .with_graceful_shutdown(cancel.clone().cancelled_owned())
        .await
        .map_err(AppError::Serve)?;
    tasks.close();
    tasks.wait().await;
    tracing::info!("streamgate stopped");
    Ok(())
}
