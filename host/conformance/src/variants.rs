//! The valid configs the claims run under besides the one under test: the config under
//! test with one well-known key changed (a shorter `max_age_ms`, another `window_ms`,
//! `by = "id"`, a forget horizon, per-frame coalescing, a tag list), for the keys that
//! matter to what the plugin claims. Only for a plugin that refuses unknown fields (so
//! accepting a key means it reads it), and only the variants it accepts.

use serde_json::{Map, Value, json};

use streamgate_runtime::{Plugin, StageError, StageLimits, wit};

use crate::harness::Setup;

/// At most this many variants besides the config under test.
const MAX_VARIANTS: usize = 5;

fn overrides(claims: &[wit::Capability]) -> Vec<(&'static str, Value)> {
    let mut out = Vec::new();
    for c in claims {
        match c {
            wit::Capability::Staleness => {
                out.extend([("max_age_ms", json!(0)), ("max_age_ms", json!(1_000))])
            }
            wit::Capability::Ordering => out.extend([("window_ms", json!(0)), ("window_ms", json!(250))]),
            wit::Capability::Dedupe => out.extend([
                ("by", json!("id")),
                ("forget_after_ms", json!(1_000)),
                ("newest_per_frame", json!(true)),
            ]),
            wit::Capability::Coalesce => out.push(("tags", json!(["rank"]))),
            wit::Capability::Filter => {}
        }
    }
    out
}

/// A field no plugin has.
pub const UNKNOWN_FIELD: &str = "streamgate_conformance_unknown_field";

/// Whether the plugin refuses `config` with a field it cannot know added (so accepting
/// a well-known key means it reads it).
pub fn refuses_unknown_fields(plugin: &Plugin, config: &str, limits: StageLimits) -> bool {
    let mut map = match serde_json::from_str::<Value>(config) {
        _ if config.trim().is_empty() => Map::new(),
        Ok(Value::Object(map)) => map,
        _ => return false,
    };
    map.insert(UNKNOWN_FIELD.into(), Value::Bool(true));
    matches!(plugin.stage(&Value::Object(map).to_string(), limits), Err(StageError::Config(_)))
}

/// The config under test, then the variants the plugin accepts.
pub fn setups(plugin: &Plugin, config: &str, limits: StageLimits) -> Vec<Setup> {
    let description = plugin.description();
    let mut setups = vec![crate::claims::setup(plugin, config, limits)];
    let base = match serde_json::from_str::<Value>(config) {
        _ if config.trim().is_empty() => Map::new(),
        Ok(Value::Object(map)) => map,
        _ => return setups,
    };
    if !refuses_unknown_fields(plugin, config, limits) {
        return setups;
    }
    for (key, value) in overrides(&description.capabilities) {
        if setups.len() > MAX_VARIANTS {
            break;
        }
        if base.get(key) == Some(&value) {
            continue;
        }
        let mut map = base.clone();
        map.insert(key.to_string(), value);
        let variant = Value::Object(map).to_string();
        if plugin.stage(&variant, limits).is_ok() {
            setups.push(crate::claims::setup(plugin, &variant, limits));
        }
    }
    setups
}
