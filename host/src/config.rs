//! The TOML config (`streamgate run --config FILE`) and its env overrides.
//!
//! Unknown keys are errors, so a typo never silently falls back to a default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

/// Errors loading a config, each naming what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("config file {path} is invalid: {message}")]
    Parse { path: String, message: String },
    #[error("config is invalid: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP listen address (env `STREAMGATE_LISTEN`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    #[serde(default)]
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub redis: RedisConfig,
    #[serde(default)]
    pub bus: BusConfig,
    #[serde(default)]
    pub sandbox: SandboxConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    /// Single-node development: a directory of plugin components. A tenant's
    /// `plugin = "NAME.wasm"` is read from here, and replacing a file swaps the tenants
    /// that use it (the directory is watched).
    #[serde(default)]
    pub plugins_dir: Option<std::path::PathBuf>,
    #[serde(default, rename = "tenant")]
    pub tenants: Vec<TenantConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers (env `STREAMGATE_KAFKA_BROKERS`).
    pub brokers: String,
    /// Consumer group; each tenant's consumer joins `<group_id>.<tenant>`.
    pub group_id: String,
    pub session_timeout_ms: u32,
    /// Extra librdkafka properties, passed through as they are.
    pub options: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            group_id: "streamgate".into(),
            session_timeout_ms: 10_000,
            options: BTreeMap::new(),
        }
    }
}

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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    pub kind: BusKind,
    /// Redis Streams: entries older than this (by entry id) are trimmed.
    pub retention_ms: u64,
    /// An idle tenant's log gets a heartbeat this often, so log time moves on.
    pub heartbeat_ms: u64,
    /// A source publishes a batch when it holds this many events...
    pub batch_max_events: usize,
    /// ...or when its oldest event has waited this long.
    pub batch_linger_ms: u64,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            kind: BusKind::RedisStream,
            retention_ms: 120_000,
            heartbeat_ms: 200,
            batch_max_events: 1_000,
            batch_linger_ms: 50,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// Wall-clock budget of one plugin call.
    pub call_timeout_ms: u64,
    /// Linear memory cap per stage.
    pub max_memory_bytes: usize,
    /// Table elements cap per stage.
    pub max_table_elements: usize,
    /// A faulted stage is quarantined this long before its first restart...
    pub restart_backoff_ms: u64,
    /// ...doubling on each fault in a row, up to this.
    pub restart_backoff_max_ms: u64,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            call_timeout_ms: 1_000,
            max_memory_bytes: 64 << 20,
            max_table_elements: 10_000,
            restart_backoff_ms: 100,
            restart_backoff_max_ms: 30_000,
        }
    }
}

/// The operators' API under `/admin` (plugins, chains, rollback, inspection).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Bearer token required by `/admin/...` (env `STREAMGATE_ADMIN_TOKEN`). Without
    /// one the admin API answers 403 to everything.
    pub token: Option<String>,
    /// Largest plugin upload accepted.
    pub max_plugin_bytes: usize,
    /// How long a chain change waits for this instance to apply it before answering.
    pub apply_timeout_ms: u64,
    /// How often `plugins_dir` is scanned for replaced files.
    pub watch_interval_ms: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            token: None,
            max_plugin_bytes: 16 << 20,
            apply_timeout_ms: 10_000,
            watch_interval_ms: 500,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub name: String,
    pub topic: String,
    /// JSON pointer (RFC 6901) to the key in each payload, e.g. `/mediaId`.
    pub key: String,
    /// JSON pointer to the event time (ms since epoch, number), e.g. `/timestamp`.
    pub time: String,
    /// Optional JSON pointer to an idempotency id (e.g. `/eventId`), hashed for plugins.
    #[serde(default)]
    pub id: Option<String>,
    /// Optional JSON pointer to a tag (e.g. `/kind`), hashed for plugins.
    #[serde(default)]
    pub tag: Option<String>,
    /// SSE `event:` name.
    pub event: String,
    /// Keep the newest payload per key (snapshot endpoint, conflation for slow clients).
    #[serde(default)]
    pub latest_value: bool,
    /// Latest-value tenants: a new client's first frame holds the newest payload of
    /// every key (of its keys), so it need not wait for each key to change.
    #[serde(default)]
    pub snapshot_on_connect: bool,
    /// Frames kept per instance for `Last-Event-ID` resume.
    #[serde(default = "default_history")]
    pub history_frames: usize,
    /// Payloads larger than this are dropped and counted.
    #[serde(default = "default_max_payload")]
    pub max_payload_bytes: usize,
    /// The policy chain, applied in order.
    #[serde(default)]
    pub policies: Vec<PolicyRef>,
    /// What happens to a faulted stage's events.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// Budget of one plugin call for this tenant (default: `sandbox.call_timeout_ms`).
    #[serde(default)]
    pub call_timeout_ms: Option<u64>,
    /// Frame cadence: this tenant's sources publish a batch (one log entry, at most one
    /// frame) at least this often while events flow (default: `bus.batch_linger_ms`).
    #[serde(default)]
    pub frame_ms: Option<u64>,
    /// Subscribers must present a JWT (see [`crate::auth`]).
    #[serde(default)]
    pub auth: Option<crate::auth::AuthConfig>,
}

/// What a tenant's chain does with the events of a stage that faulted (trap, timeout,
/// memory limit, invalid answer) and while that stage is quarantined.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicy {
    /// Pass them on unfiltered: nothing is lost, some duplicates or disorder may show.
    #[default]
    FailOpen,
    /// Drop them, counted: nothing unchecked reaches a client.
    FailClosed,
    /// Go back to the chain that ran before the last swap (its stages start from the
    /// healthy stages' state) and run the held events through it. Without an earlier
    /// chain it acts as `fail-open`.
    LastGood,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRef {
    /// `builtin:NAME` (staleness, dedupe, ordering, coalesce), `sha256:HEX` (a plugin
    /// uploaded through the admin API), or a path to a component `.wasm` (relative
    /// paths are read from `plugins_dir` when it is set).
    pub plugin: String,
    /// The stage's config, handed to the plugin as JSON.
    #[serde(default)]
    pub config: Option<toml::Value>,
}

impl PolicyRef {
    /// The config as the JSON string the plugin receives (empty for none).
    pub fn config_json(&self) -> String {
        match &self.config {
            None => String::new(),
            Some(v) => serde_json::to_string(v).expect("TOML values are JSON-representable"),
        }
    }
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:8080".parse().unwrap()
}

fn default_history() -> usize {
    1_024
}

fn default_max_payload() -> usize {
    64 << 10
}

impl TenantConfig {
    /// How long this tenant's sources hold a batch before publishing it.
    pub fn linger(&self, bus: &BusConfig) -> std::time::Duration {
        std::time::Duration::from_millis(self.frame_ms.unwrap_or(bus.batch_linger_ms))
    }
}

impl Config {
    /// Reads, parses, applies env overrides and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        let mut config = Config::parse(&text)
            .map_err(|message| ConfigError::Parse { path: path.display().to_string(), message })?;
        config.apply_env(|k| std::env::var(k).ok())?;
        config.validate()?;
        Ok(config)
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Applies `STREAMGATE_LISTEN`, `STREAMGATE_KAFKA_BROKERS`, `STREAMGATE_REDIS_URL`,
    /// `STREAMGATE_ADMIN_TOKEN`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(listen) = var("STREAMGATE_LISTEN") {
            self.listen = listen.parse().map_err(|e| {
                ConfigError::Invalid(format!("STREAMGATE_LISTEN={listen:?} is not host:port: {e}"))
            })?;
        }
        if let Some(brokers) = var("STREAMGATE_KAFKA_BROKERS") {
            self.kafka.brokers = brokers;
        }
        if let Some(url) = var("STREAMGATE_REDIS_URL") {
            self.redis.url = url;
        }
        if let Some(token) = var("STREAMGATE_ADMIN_TOKEN") {
            self.admin.token = Some(token);
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.tenants.is_empty() {
            return bad("no [[tenant]] declared; add at least one".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for t in &self.tenants {
            if t.name.is_empty() || !t.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return bad(format!("tenant name {:?} must be non-empty [A-Za-z0-9_-]", t.name));
            }
            if !names.insert(&t.name) {
                return bad(format!("tenant {:?} is declared twice", t.name));
            }
            let optional = [("id", &t.id), ("tag", &t.tag)];
            let present = optional.iter().filter_map(|(f, p)| p.as_ref().map(|p| (*f, p)));
            for (field, ptr) in [("key", &t.key), ("time", &t.time)].into_iter().chain(present) {
                if !ptr.starts_with('/') {
                    return bad(format!(
                        "tenant {:?}: {field} = {ptr:?} must be a JSON pointer like \"/mediaId\"",
                        t.name
                    ));
                }
            }
            if t.event.is_empty() || t.event.contains(['\n', '\r']) {
                return bad(format!("tenant {:?}: event must be a one-line SSE event name", t.name));
            }
            if t.snapshot_on_connect && !t.latest_value {
                return bad(format!("tenant {:?}: snapshot_on_connect needs latest_value = true", t.name));
            }
            if let Some(auth) = &t.auth
                && let Err(e) = crate::auth::Verifier::new(&t.name, auth)
            {
                return bad(format!("tenant {:?}: {e}", t.name));
            }
            if t.frame_ms == Some(0) {
                return bad(format!("tenant {:?}: frame_ms must be > 0", t.name));
            }
            if t.history_frames == 0 {
                return bad(format!("tenant {:?}: history_frames must be > 0", t.name));
            }
        }
        if self.admin.token.as_deref().is_some_and(|t| t.trim().len() < 16) {
            return bad("admin.token must be at least 16 characters (or unset to disable /admin)".into());
        }
        if self.admin.watch_interval_ms == 0 {
            return bad("admin.watch_interval_ms must be > 0".into());
        }
        if self.bus.batch_max_events == 0 || self.bus.heartbeat_ms == 0 {
            return bad("bus.batch_max_events and bus.heartbeat_ms must be > 0".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAXI: &str = r#"
        [[tenant]]
        name = "taxi"
        topic = "taxi-locations"
        key = "/mediaId"
        time = "/timestamp"
        event = "liveMapLocation"
        [[tenant.policies]]
        plugin = "builtin:staleness"
        config = { max_age_ms = 30000 }
    "#;

    #[test]
    fn parses_a_tenant_with_defaults() {
        let c = Config::parse(TAXI).unwrap();
        c.validate().unwrap();
        assert_eq!(c.bus.kind, BusKind::RedisStream);
        assert_eq!(c.tenants[0].policies[0].config_json(), r#"{"max_age_ms":30000}"#);
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let err = Config::parse(&format!("{TAXI}\nlisten_addr = \"x\"")).unwrap_err();
        assert!(err.contains("listen_addr"), "{err}");
        let err = Config::parse("[bus]\nkind = \"kafka\"").unwrap_err();
        assert!(err.contains("kafka"), "{err}");
    }

    #[test]
    fn env_overrides_addresses() {
        let mut c = Config::parse(TAXI).unwrap();
        c.apply_env(|k| match k {
            "STREAMGATE_REDIS_URL" => Some("redis://10.0.0.1:7000".into()),
            "STREAMGATE_LISTEN" => Some("127.0.0.1:9999".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.redis.url, "redis://10.0.0.1:7000");
        assert_eq!(c.listen.port(), 9999);
        assert!(c.apply_env(|_| Some("nope".into())).is_err());
    }

    #[test]
    fn the_readme_config_reference_is_a_valid_config() {
        let readme = include_str!("../../README.md");
        let start = readme.find("```toml\n").expect("README has a toml block") + "```toml\n".len();
        let block = &readme[start..start + readme[start..].find("```").unwrap()];
        let config = Config::parse(block).unwrap_or_else(|e| panic!("README config does not parse: {e}"));
        config.validate().unwrap();
        let names: Vec<&str> = config.tenants.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["taxi", "queue"]);
        assert!(config.tenants[1].auth.is_some());
    }

    #[test]
    fn validation_names_the_problem() {
        let c = Config::parse(&TAXI.replace("\"/mediaId\"", "\"mediaId\"")).unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("JSON pointer"), "{err}");
        assert!(Config::parse("").unwrap().validate().is_err());
    }
}
