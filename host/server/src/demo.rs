//! The embedded default behind `streamgate demo`: the live taxi map and the waiting
//! queue on the in-memory bus, fed by the built-in simulators (no Kafka, no Redis).

use std::net::SocketAddr;

use streamgate_runtime::FailurePolicy;

use crate::bus::BusKind;
use crate::config::Config;
use crate::tenant::{PolicyRef, SimulatorKind, TenantConfig};

/// The embedded default: in-memory bus, the taxi map and the waiting queue.
pub fn demo_config(listen: SocketAddr) -> Config {
    let mut config = Config::parse("").expect("an empty config parses");
    config.listen = listen;
    config.bus.kind = BusKind::Memory;
    config.tenants.push(taxi_tenant());
    config.tenants.push(queue_tenant());
    config
}

/// The waiting-queue tenant: per-user keys, dedupe by eventId, ranks coalesced; each
/// user's newest rank, admission and leaving kept, so a (re)connecting page starts with them.
pub fn queue_tenant() -> TenantConfig {
    TenantConfig {
        name: "queue".into(),
        topic: "queue-events".into(),
        key: "/userId".into(),
        time: "/timestamp".into(),
        id: Some("/eventId".into()),
        tag: Some("/kind".into()),
        event: "queueUpdate".into(),
        latest_value: true,
        latest_tags: vec!["rank".into(), "admitted".into(), "left".into()],
        snapshot_on_connect: true,
        policies: vec![
            policy("dedupe", "by = \"id\"\nforget_after_ms = 600000"),
            policy("coalesce", "tags = [\"rank\"]"),
        ],
        simulator: SimulatorKind::Queue,
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

/// The live taxi map tenant with its default chain: reorder within 1 s, drop what is
/// over 30 s old and expire taxis silent for over 30 s of log time (the map removes them
/// on `liveMapLocation-expired`), per taxi never back in time.
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
        latest_tags: Vec::new(),
        snapshot_on_connect: true,
        history_frames: 1_024,
        max_payload_bytes: 64 << 10,
        max_future_skew: crate::tenant::config::default_max_future_skew(),
        policies: vec![
            policy("ordering", "window_ms = 1000"),
            policy("staleness", "max_age_ms = 30000"),
            policy("dedupe", "newest_per_frame = true\nforget_after_ms = 600000"),
        ],
        failure_policy: FailurePolicy::FailOpen,
        call_timeout: None,
        frame: None,
        auth: None,
        simulator: SimulatorKind::Taxi,
    }
}
