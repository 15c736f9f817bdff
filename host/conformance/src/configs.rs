//! The config checks: malformed text and invalid values (wrong types, negative
//! numbers, strings for numbers, values out of range, non-objects) must come back as
//! `config-error`, never trap and never be accepted; an unknown field should be refused.

use serde_json::{Map, Value, json};

use streamgate_runtime::StageError;

use crate::harness::Ctx;
use crate::report::Verdict;
use crate::variants::{self, UNKNOWN_FIELD};

/// Config texts no JSON parser accepts.
pub const MALFORMED: &[&str] = &["[1,", "{", "{\"max_age_ms\":}", "{\"a\" 1}", "{} trailing", "nul", "\u{0}"];

/// Well-formed JSON that is no config: (key, value) merged into the config under test,
/// or a whole document when the key is empty.
fn invalid_values() -> Vec<(&'static str, Value)> {
    let mut out: Vec<(&str, Value)> =
        vec![("", json!(null)), ("", json!(1)), ("", json!("x")), ("", json!(true))];
    for key in ["max_age_ms", "window_ms", "forget_after_ms", "max_buffered"] {
        out.extend([
            (key, json!("1000")),
            (key, json!(-1)),
            (key, json!(true)),
            (key, json!({"ms": 1})),
            (key, json!(1e30)),
        ]);
    }
    out.extend([
        ("tags", json!("rank")),
        ("tags", json!([1])),
        ("by", json!(5)),
        ("by", json!("name")),
        ("newest_per_frame", json!("yes")),
    ]);
    out
}

/// The config under test as a JSON object (empty text: no fields).
fn base_object(ctx: &Ctx) -> Option<Map<String, Value>> {
    match serde_json::from_str::<Value>(ctx.config()) {
        _ if ctx.config().trim().is_empty() => Some(Map::new()),
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

pub fn malformed(ctx: &Ctx) -> Verdict {
    for text in MALFORMED {
        match ctx.plugin.stage(text, ctx.limits) {
            Err(StageError::Config(_)) => {}
            Err(e) => {
                return Verdict::fail(
                    format!("config {text:?} made it fault instead of returning a config-error: {e}"),
                    "a bad tenant config must come back as config-error::malformed, never trap".into(),
                    None,
                )
                .cases(MALFORMED.len());
            }
            Ok(_) => {
                return Verdict::fail(
                    format!("it accepted the malformed config {text:?}"),
                    "return config-error::malformed for config text that does not parse".into(),
                    None,
                )
                .cases(MALFORMED.len());
            }
        }
    }
    Verdict::pass(format!("all {} malformed texts were refused as config-errors", MALFORMED.len()))
        .cases(MALFORMED.len())
}

pub fn invalid(ctx: &Ctx) -> Verdict {
    let Some(base) = base_object(ctx) else {
        return Verdict::skip("the config under test is not a JSON object");
    };
    let strict = variants::refuses_unknown_fields(&ctx.plugin, ctx.config(), ctx.limits);
    let tries = invalid_values();
    let mut accepted = Vec::new();
    for (key, value) in &tries {
        let config = if key.is_empty() {
            value.to_string()
        } else {
            let mut map = base.clone();
            map.insert(key.to_string(), value.clone());
            Value::Object(map).to_string()
        };
        match ctx.plugin.stage(&config, ctx.limits) {
            Err(StageError::Config(_)) => {}
            Err(e) => {
                return Verdict::fail(
                    format!("config {config} made it fault instead of returning a config-error: {e}"),
                    "parse the config with types (the SDK's parse_config) and return config-error::invalid for a \
                     value you do not accept; never unwrap it"
                        .into(),
                    None,
                )
                .cases(tries.len());
            }
            Ok(_) => accepted.push(config),
        }
    }
    match accepted.first() {
        None => Verdict::pass(format!(
            "all {} wrongly typed, negative, out-of-range and non-object configs were refused",
            tries.len()
        ))
        .cases(tries.len()),
        Some(first) if strict => Verdict::fail(
            format!(
                "it accepted {} invalid configs, e.g. {first}: it refuses unknown fields, so it read that value and \
                 should have returned config-error::invalid",
                accepted.len()
            ),
            format!("accepted: {}", accepted.join(" ")),
            None,
        )
        .cases(tries.len()),
        Some(first) => Verdict::warn(format!(
            "it accepted {} configs with wrongly typed or negative values of well-known keys, e.g. {first}; as it \
             also accepts unknown fields, the kit cannot tell whether it read them",
            accepted.len()
        ))
        .cases(tries.len()),
    }
}

pub fn unknown_field(ctx: &Ctx) -> Verdict {
    let Some(mut config) = base_object(ctx) else {
        return Verdict::skip("the config under test is not a JSON object");
    };
    config.insert(UNKNOWN_FIELD.into(), Value::Bool(true));
    let config = Value::Object(config).to_string();
    let verdict = match ctx.plugin.stage(&config, ctx.limits) {
        Err(StageError::Config(m)) => Verdict::pass(format!("an unknown field was refused: {m}")),
        Err(e) => Verdict::fail(
            format!("config {config} made it fault instead of returning a config-error: {e}"),
            String::new(),
            None,
        ),
        Ok(_) => Verdict::warn(format!(
            "it accepted {config}: a misspelt key in a tenant's config would silently mean the default; \
             with the SDK, put #[serde(deny_unknown_fields)] on the config struct"
        )),
    };
    verdict.cases(1)
}
