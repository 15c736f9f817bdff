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
    /// How Redis is deployed: one server (`url`), a primary found through Sentinel
    /// (`sentinels`, `master_name`), or a Cluster (`nodes`).
    pub topology: RedisTopology,
    /// Redis URL of the one server (env `STREAMGATE_REDIS_URL`); `single` only.
    pub url: String,
    /// Prefix of every key and channel streamgate uses.
    pub key_prefix: String,
    /// `sentinel`: the sentinels' URLs (`redis://host:26379`).
    pub sentinels: Vec<String>,
    /// `sentinel`: the name the sentinels monitor the primary under.
    pub master_name: String,
    /// `sentinel`: a log entry counts as written once this many replicas have it
    /// (`WAIT` after the append, before Kafka offsets are stored); 0 turns this off.
    pub confirm_replicas: usize,
    /// `sentinel`: how long one `WAIT` may take before the append is retried.
    #[serde(rename = "confirm_timeout_ms", with = "streamgate_runtime::duration_ms")]
    pub confirm_timeout: Duration,
    /// `cluster`: URLs of some of the cluster's nodes (the rest are discovered).
    pub nodes: Vec<String>,
}

/// `[redis] topology`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedisTopology {
    /// One server at `url`: key names as they always were.
    #[default]
    Single,
    /// A primary and replicas watched by Redis Sentinel.
    Sentinel,
    /// A Redis Cluster: each tenant's keys hash-tagged (`<prefix>:{<tenant>}:...`), so
    /// they share one slot.
    Cluster,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            topology: RedisTopology::Single,
            url: "redis://127.0.0.1:6379".into(),
            key_prefix: "streamgate".into(),
            sentinels: Vec::new(),
            master_name: "mymaster".into(),
            confirm_replicas: 1,
            confirm_timeout: Duration::from_millis(1_000),
            nodes: Vec::new(),
        }
    }
}

impl RedisConfig {
    /// Checks that the topology has the addresses it needs.
    pub fn validate(&self, bus: BusKind) -> Result<(), String> {
        match self.topology {
            RedisTopology::Single => Ok(()),
            _ if bus == BusKind::RedisPubsub => {
                Err("bus.kind = \"redis-pubsub\" needs redis.topology = \"single\"".into())
            }
            RedisTopology::Sentinel if self.sentinels.is_empty() || self.master_name.is_empty() => {
                Err("redis.topology = \"sentinel\" needs redis.sentinels (their URLs) and redis.master_name"
                    .into())
            }
            RedisTopology::Sentinel if self.confirm_replicas > 0 && self.confirm_timeout.is_zero() => {
                Err("redis.confirm_timeout_ms must be > 0 when redis.confirm_replicas is".into())
            }
            RedisTopology::Cluster if self.nodes.is_empty() => {
                Err("redis.topology = \"cluster\" needs redis.nodes (some of the nodes' URLs)".into())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_topology_needs_its_addresses() {
        let single = RedisConfig::default();
        assert_eq!(single.validate(BusKind::RedisStream), Ok(()));
        assert_eq!(single.validate(BusKind::RedisPubsub), Ok(()));
        let sentinel = RedisConfig { topology: RedisTopology::Sentinel, ..RedisConfig::default() };
        let err = sentinel.validate(BusKind::RedisStream).unwrap_err();
        assert!(err.contains("redis.sentinels"), "{err}");
        let sentinel = RedisConfig { sentinels: vec!["redis://127.0.0.1:26379".into()], ..sentinel };
        assert_eq!(sentinel.validate(BusKind::RedisStream), Ok(()));
        let err = sentinel.validate(BusKind::RedisPubsub).unwrap_err();
        assert!(err.contains("redis-pubsub"), "{err}");
        let no_wait = RedisConfig { confirm_timeout: Duration::ZERO, ..sentinel.clone() };
        assert!(no_wait.validate(BusKind::RedisStream).unwrap_err().contains("confirm_timeout_ms"));
        let cluster = RedisConfig { topology: RedisTopology::Cluster, ..RedisConfig::default() };
        assert!(cluster.validate(BusKind::RedisStream).unwrap_err().contains("redis.nodes"));
    }

    #[test]
    fn the_topology_and_its_settings_parse_from_toml() {
        let c: RedisConfig = toml::from_str(
            "topology = \"sentinel\"\nsentinels = [\"redis://a:26379\"]\nmaster_name = \"m\"\n\
             confirm_replicas = 2\nconfirm_timeout_ms = 250\n",
        )
        .unwrap();
        assert_eq!(c.topology, RedisTopology::Sentinel);
        assert_eq!((c.confirm_replicas, c.confirm_timeout), (2, Duration::from_millis(250)));
        let err = toml::from_str::<RedisConfig>("topology = \"ring\"\n").unwrap_err().to_string();
        assert!(err.contains("single") && err.contains("cluster"), "{err}");
    }
}
