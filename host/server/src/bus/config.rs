//! `[bus]` and `[redis]`: which log the tenants share, and how it is fed and kept.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BusKind {
    /// Redis Streams: durable, replayable; the default.
    RedisStream,
    /// Redis pub/sub: at-most-once, nothing kept.
    RedisPubsub,
    /// In-process only: the embedded demo and unit tests.
    Memory,
}

/// `[bus]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    pub kind: BusKind,
    /// Redis Streams: entries older than this (by entry id) are trimmed.
    #[serde(rename = "retention_ms", with = "streamgate_runtime::duration_ms")]
    pub retention: Duration,
    /// An idle tenant's log gets a heartbeat this often, so log time moves on.
    #[serde(rename = "heartbeat_ms", with = "streamgate_runtime::duration_ms")]
    pub heartbeat: Duration,
    /// A source publishes a batch when it holds this many events...
    pub batch_max_events: usize,
    /// ...or one linger after its previous batch (at once after a quiet spell): a
    /// tenant's frame cadence unless it sets `frame_ms`. 50 ms bounds the frames per
    /// second (and writes per client) at 20 per source, and adds at most 50 ms.
    #[serde(rename = "batch_linger_ms", with = "streamgate_runtime::duration_ms")]
    pub batch_linger: Duration,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            kind: BusKind::RedisStream,
            retention: Duration::from_secs(120),
            heartbeat: Duration::from_millis(200),
            batch_max_events: 1_000,
            batch_linger: Duration::from_millis(50),
        }
    }
}

impl BusConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.batch_max_events == 0 || self.heartbeat.is_zero() {
            return Err("bus.batch_max_events and bus.heartbeat_ms must be > 0".into());
        }
        Ok(())
    }
}

/// `[redis]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// Redis URL (env `STREAMGATE_REDIS_URL`).
    pub url: String,
    /// Prefix of every key and channel streamgate uses.
    pub key_prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig { url: "redis://127.0.0.1:6379".into(), key_prefix: "streamgate".into() }
    }
}
