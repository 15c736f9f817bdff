//! `[[tenant]]`: what one tenant is, end to end: its topic and where its payloads keep
//! key, time, id and tag (source), its policy chain and failure policy, its SSE event
//! name, history and latest values (hub), and who may subscribe (auth).

use std::time::Duration;

use serde::Deserialize;
use streamgate_runtime::{ChainSpec, FailurePolicy, StageSpec};

use crate::auth::AuthConfig;
use crate::bus::BusConfig;

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
    /// Latest-value tenants: keep the newest payload per key and each of these tags (the
    /// values at `tag`, e.g. `["rank", "admitted"]`) instead of one per key, so a user's
    /// current state is all of them; events with other tags are delivered, not kept.
    #[serde(default)]
    pub latest_tags: Vec<String>,
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
    /// Events whose time is further than this ahead of the ingesting instance's clock
    /// are dropped and counted (`future_time`): one far-future stamp would otherwise
    /// hold back a key in time-based policies.
    #[serde(
        default = "default_max_future_skew",
        rename = "max_future_skew_ms",
        with = "streamgate_runtime::duration_ms"
    )]
    pub max_future_skew: Duration,
    /// The policy chain, applied in order.
    #[serde(default)]
    pub policies: Vec<PolicyRef>,
    /// What happens to a faulted stage's events.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// Budget of one plugin call for this tenant (default: `sandbox.call_timeout_ms`).
    #[serde(default, rename = "call_timeout_ms", with = "streamgate_runtime::duration_ms::option")]
    pub call_timeout: Option<Duration>,
    /// Frame cadence: this tenant's sources publish a batch (one log entry, at most one
    /// frame) this often while events flow, and the first event after a quiet spell at
    /// once (default: `bus.batch_linger_ms`).
    #[serde(default, rename = "frame_ms", with = "streamgate_runtime::duration_ms::option")]
    pub frame: Option<Duration>,
    /// Subscribers must present a JWT (see [`crate::auth`]).
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// The simulator feeding this tenant when streamgate runs on simulated sources
    /// (`streamgate demo`); ignored when it reads Kafka.
    #[serde(default)]
    pub simulator: SimulatorKind,
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

impl PolicyRef {
    /// This policy as a chain stage; `dir_files` says whether relative paths name files
    /// of the watched `plugins_dir`.
    pub fn stage_spec(&self, dir_files: bool) -> StageSpec {
        let mut stage = StageSpec::new(&self.plugin, &self.config_json());
        let is_file = !self.plugin.starts_with("builtin:") && !self.plugin.starts_with("sha256:");
        if dir_files && is_file && std::path::Path::new(&self.plugin).is_relative() {
            stage.source = Some(self.plugin.clone());
        }
        stage
    }
}

/// Which simulator feeds a tenant when streamgate runs on simulated sources (`demo`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SimulatorKind {
    /// Taxis driving around Seoul (`taxi` payloads).
    #[default]
    Taxi,
    /// A concert's waiting queue (`queue` payloads).
    Queue,
}

fn default_history() -> usize {
    1_024
}

fn default_max_payload() -> usize {
    64 << 10
}

pub fn default_max_future_skew() -> Duration {
    Duration::from_secs(60)
}

impl TenantConfig {
    /// Hashes of the `latest_tags`, as the source hashes tags.
    pub fn latest_tag_hashes(&self) -> std::collections::BTreeSet<u64> {
        self.latest_tags.iter().map(|t| crate::event::key_hash(t)).collect()
    }

    /// How long this tenant's sources hold a batch before publishing it.
    pub fn linger(&self, bus: &BusConfig) -> Duration {
        self.frame.unwrap_or(bus.batch_linger)
    }

    /// The chain the config declares (version 0).
    pub fn configured_chain(&self, dir_files: bool) -> ChainSpec {
        ChainSpec { version: 0, policies: self.policies.iter().map(|p| p.stage_spec(dir_files)).collect() }
    }

    /// Checks what a typo could get wrong, naming the tenant and the field.
    pub fn validate(&self) -> Result<(), String> {
        let name = &self.name;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(format!("tenant name {name:?} must be non-empty [A-Za-z0-9_-]"));
        }
        let optional = [("id", &self.id), ("tag", &self.tag)];
        let present = optional.iter().filter_map(|(f, p)| p.as_ref().map(|p| (*f, p)));
        for (field, ptr) in [("key", &self.key), ("time", &self.time)].into_iter().chain(present) {
            if !ptr.starts_with('/') {
                return Err(format!(
                    "tenant {name:?}: {field} = {ptr:?} must be a JSON pointer like \"/mediaId\""
                ));
            }
        }
        if self.event.is_empty() || self.event.contains(['\n', '\r']) {
            return Err(format!("tenant {name:?}: event must be a one-line SSE event name"));
        }
        if self.snapshot_on_connect && !self.latest_value {
            return Err(format!("tenant {name:?}: snapshot_on_connect needs latest_value = true"));
        }
        if !self.latest_tags.is_empty() && (!self.latest_value || self.tag.is_none()) {
            return Err(format!("tenant {name:?}: latest_tags needs latest_value = true and a tag pointer"));
        }
        if let Some(auth) = &self.auth
            && let Err(e) = crate::auth::Verifier::new(name, auth)
        {
            return Err(format!("tenant {name:?}: {e}"));
        }
        if self.frame.is_some_and(|f| f.is_zero()) {
            return Err(format!("tenant {name:?}: frame_ms must be > 0"));
        }
        if self.history_frames == 0 {
            return Err(format!("tenant {name:?}: history_frames must be > 0"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_stages_keep_their_config_and_know_watched_files() {
        let r =
            PolicyRef { plugin: "dedupe.wasm".into(), config: Some(toml::from_str("by = \"id\"").unwrap()) };
        let s = r.stage_spec(true);
        assert_eq!(s.config_string(), r#"{"by":"id"}"#);
        assert_eq!(s.source.as_deref(), Some("dedupe.wasm"));
        assert_eq!(r.stage_spec(false).source, None);
        let b = PolicyRef { plugin: "builtin:dedupe".into(), config: None };
        assert_eq!(b.stage_spec(true).config_string(), "");
        assert_eq!(b.stage_spec(true).source, None);
    }

    #[test]
    fn latest_tags_need_latest_values_and_a_tag_pointer_and_hash_like_the_source() {
        let mut queue = crate::demo::queue_tenant();
        queue.validate().unwrap();
        assert!(queue.latest_tag_hashes().contains(&crate::event::key_hash("admitted")));
        queue.tag = None;
        assert!(queue.validate().unwrap_err().contains("latest_tags"));
        let mut queue = crate::demo::queue_tenant();
        queue.latest_value = false;
        queue.snapshot_on_connect = false;
        assert!(queue.validate().unwrap_err().contains("latest_tags"));
    }
}
