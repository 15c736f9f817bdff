//! A tenant's policy chain as data: which plugins, with which configs, at which
//! version. The server's config declares one, the admin API sets others, and control
//! entries in the log carry them to every instance.

use serde::{Deserialize, Serialize};

/// One stage of a chain: which plugin, with which config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// `builtin:NAME`, `sha256:HEX` (an uploaded plugin) or a component file path.
    pub plugin: String,
    /// The stage's config, handed to the plugin as JSON (`null`: the plugin's defaults).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub config: serde_json::Value,
    /// The watched file this stage's plugin came from (development); replacing that
    /// file swaps the stage to the new content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl StageSpec {
    /// A stage of `plugin` with a config given as JSON text (empty: defaults).
    pub fn new(plugin: &str, config_json: &str) -> Self {
        let config = match config_json.trim() {
            "" => serde_json::Value::Null,
            text => serde_json::from_str(text).expect("a stage config is JSON"),
        };
        StageSpec { plugin: plugin.to_string(), config, source: None }
    }

    /// The config string the plugin's `create` receives (empty for none).
    pub fn config_string(&self) -> String {
        if self.config.is_null() { String::new() } else { self.config.to_string() }
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
