//! A tenant's policy chain as data: what the config declares, what the admin API sets,
//! and the control message that carries a change through the tenant's log so every
//! instance switches at the same position.

use serde::{Deserialize, Serialize};

use crate::config::PolicyRef;

/// One stage of a chain: which plugin, with which config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// `builtin:NAME`, `sha256:HEX` (an uploaded plugin) or a component file path.
    pub plugin: String,
    /// The stage's config, handed to the plugin as JSON (`null`: the plugin's defaults).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub config: serde_json::Value,
    /// The `plugins_dir` file this stage's plugin came from; replacing that file swaps
    /// the stage to the new content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl StageSpec {
    /// The config string the plugin's `create` receives (empty for none).
    pub fn config_string(&self) -> String {
        if self.config.is_null() { String::new() } else { self.config.to_string() }
    }

    /// A stage declared in the config file; `dir_files` says whether relative paths
    /// name files of the watched `plugins_dir`.
    pub fn from_config(r: &PolicyRef, dir_files: bool) -> Self {
        let config = match r.config_json() {
            s if s.is_empty() => serde_json::Value::Null,
            s => serde_json::from_str(&s).expect("a TOML value converts to JSON"),
        };
        let is_file = !r.plugin.starts_with("builtin:") && !r.plugin.starts_with("sha256:");
        let source =
            (dir_files && is_file && std::path::Path::new(&r.plugin).is_relative()).then(|| r.plugin.clone());
        StageSpec { plugin: r.plugin.clone(), config, source }
    }
}

/// A whole chain. Version 0 is the tenant's configured chain; the admin API numbers
/// every chain it sets from 1 up.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSpec {
    pub version: u64,
    pub policies: Vec<StageSpec>,
}

impl ChainSpec {
    pub fn from_config(policies: &[PolicyRef], dir_files: bool) -> Self {
        ChainSpec {
            version: 0,
            policies: policies.iter().map(|r| StageSpec::from_config(r, dir_files)).collect(),
        }
    }
}

/// A change to a tenant's chain, carried as a log entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Control {
    /// From this log position on, run `chain` (state moves over from the old stages).
    SetChain { chain: ChainSpec, reason: String },
}

impl Control {
    pub fn encode(&self) -> bytes::Bytes {
        serde_json::to_vec(self).expect("control messages serialise").into()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// A chain the admin API put into a tenant's log, kept (in Redis) so instances that
/// start later know which chain was active before the oldest entry they read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChainRecord {
    pub chain: ChainSpec,
    pub reason: String,
    /// Log position of the control entry.
    pub position: String,
    /// Wall-clock ms when it was published.
    pub published_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_round_trip_and_reject_unknown_fields() {
        let c = Control::SetChain {
            chain: ChainSpec {
                version: 3,
                policies: vec![StageSpec {
                    plugin: "sha256:ab".into(),
                    config: serde_json::json!({"by": "id"}),
                    source: None,
                }],
            },
            reason: "set".into(),
        };
        let bytes = c.encode();
        assert_eq!(Control::decode(&bytes).unwrap(), c);
        assert!(std::str::from_utf8(&bytes).unwrap().contains(r#""op":"set-chain""#));
        assert!(Control::decode(br#"{"op":"explode"}"#).is_err());
    }

    #[test]
    fn config_stages_keep_their_config_and_know_watched_files() {
        let r =
            PolicyRef { plugin: "dedupe.wasm".into(), config: Some(toml::from_str("by = \"id\"").unwrap()) };
        let s = StageSpec::from_config(&r, true);
        assert_eq!(s.config_string(), r#"{"by":"id"}"#);
        assert_eq!(s.source.as_deref(), Some("dedupe.wasm"));
        assert_eq!(StageSpec::from_config(&r, false).source, None);
        let b = PolicyRef { plugin: "builtin:dedupe".into(), config: None };
        assert_eq!(StageSpec::from_config(&b, true).config_string(), "");
        assert_eq!(StageSpec::from_config(&b, true).source, None);
    }
}
