//! The TOML config (`streamgate run --config FILE`) and its env overrides. Each part
//! owns its section: `[kafka]` (source), `[bus]` and `[redis]` (bus), `[checkpoint]`
//! (checkpoint), `[sandbox]`
//! (policy runtime), `[admin]` (control), `[[tenant]]` (tenant). This file only puts
//! them together.
//!
//! Unknown keys are errors, so a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use streamgate_runtime::SandboxConfig;

use crate::bus::{BusConfig, RedisConfig};
use crate::control::AdminConfig;
use crate::source::kafka::KafkaConfig;
use crate::tenant::TenantConfig;

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
    pub checkpoint: crate::checkpoint::CheckpointConfig,
    #[serde(default)]
    pub sandbox: SandboxConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub limits: crate::http::limits::LimitsConfig,
    /// Single-node development: a directory of plugin components. A tenant's
    /// `plugin = "NAME.wasm"` is read from here, and replacing a file swaps the tenants
    /// that use it (the directory is watched).
    #[serde(default)]
    pub plugins_dir: Option<PathBuf>,
    #[serde(default, rename = "tenant")]
    pub tenants: Vec<TenantConfig>,
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:8080".parse().unwrap()
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

    /// Applies `STREAMGATE_LISTEN`, `STREAMGATE_KAFKA_BROKERS`,
    /// `STREAMGATE_KAFKA_INSTANCE_ID`, `STREAMGATE_REDIS_URL`, `STREAMGATE_ADMIN_TOKEN`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(listen) = var("STREAMGATE_LISTEN") {
            self.listen = listen.parse().map_err(|e| {
                ConfigError::Invalid(format!("STREAMGATE_LISTEN={listen:?} is not host:port: {e}"))
            })?;
        }
        if let Some(brokers) = var("STREAMGATE_KAFKA_BROKERS") {
            self.kafka.brokers = brokers;
        }
        if let Some(id) = var("STREAMGATE_KAFKA_INSTANCE_ID") {
            self.kafka.instance_id = Some(id);
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
        if self.tenants.is_empty() {
            return Err(ConfigError::Invalid("no [[tenant]] declared; add at least one".into()));
        }
        let mut names = std::collections::BTreeSet::new();
        for t in &self.tenants {
            t.validate().map_err(ConfigError::Invalid)?;
            if !names.insert(&t.name) {
                return Err(ConfigError::Invalid(format!("tenant {:?} is declared twice", t.name)));
            }
        }
        self.admin.validate().map_err(ConfigError::Invalid)?;
        self.bus.validate().map_err(ConfigError::Invalid)?;
        self.redis.validate(self.bus.kind).map_err(ConfigError::Invalid)?;
        self.checkpoint.validate().map_err(ConfigError::Invalid)?;
        self.limits.validate().map_err(ConfigError::Invalid)?;
        if self.checkpoint.enabled && self.bus.kind != crate::bus::BusKind::RedisStream {
            return Err(ConfigError::Invalid(
                "checkpoint.enabled needs bus.kind = \"redis-stream\" (only a stream keeps the tail to replay)".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::BusKind;

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
        let readme = include_str!("../../../README.md");
        let reference = readme.find("## Config reference").expect("README has a config reference");
        let start = reference
            + readme[reference..].find("```toml\n").expect("the reference is a toml block")
            + "```toml\n".len();
        let block = &readme[start..start + readme[start..].find("```").unwrap()];
        let config = Config::parse(block).unwrap_or_else(|e| panic!("README config does not parse: {e}"));
        config.validate().unwrap();
        let names: Vec<&str> = config.tenants.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["taxi", "queue"]);
        assert!(config.tenants[1].auth.is_some());
    }

    #[test]
    fn checkpoints_are_off_by_default_and_need_the_stream_bus() {
        let c = Config::parse(TAXI).unwrap();
        assert!(!c.checkpoint.enabled);
        let on = Config::parse(&format!("[checkpoint]\nenabled = true\ninterval_ms = 5000\n{TAXI}")).unwrap();
        on.validate().unwrap();
        assert_eq!(on.checkpoint.interval.as_millis(), 5000);
        let pubsub = format!("[bus]\nkind = \"redis-pubsub\"\n[checkpoint]\nenabled = true\n{TAXI}");
        let err = Config::parse(&pubsub).unwrap().validate().unwrap_err().to_string();
        assert!(err.contains("redis-stream"), "{err}");
        let zero = format!("[checkpoint]\nenabled = true\nkeep = 0\n{TAXI}");
        assert!(Config::parse(&zero).unwrap().validate().is_err());
    }

    #[test]
    fn a_size_or_tracking_bound_of_zero_is_refused_and_a_stream_limit_of_zero_is_off() {
        for bound in ["max_url_bytes", "max_header_bytes", "tracked_addresses"] {
            let c = Config::parse(&format!("[limits]\n{bound} = 0\n{TAXI}")).unwrap();
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(&format!("limits.{bound} must be at least 1")), "{err}");
        }
        let off = "[limits]\nstreams_per_tenant = 0\nstreams_per_address = 0\nrequests_per_second_per_address = 0\n";
        Config::parse(&format!("{off}{TAXI}")).unwrap().validate().unwrap();
    }

    #[test]
    fn validation_names_the_problem() {
        let c = Config::parse(&TAXI.replace("\"/mediaId\"", "\"mediaId\"")).unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("JSON pointer"), "{err}");
        assert!(Config::parse("").unwrap().validate().is_err());
    }
}
