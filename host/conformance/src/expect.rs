//! What the kit expects of a plugin under test: the capabilities claimed under a config
//! (a 0.2.0 stage's own `capabilities()`, or a 0.1.0 plugin's `describe` list: see
//! [`ClaimSource`]), with the parameters the well-known config keys give them
//! (`max_age_ms`, `by`, `forget_after_ms`, `newest_per_frame`, `tags`, `window_ms`; see
//! docs/PLUGINS.md), and which drop reasons those claims allow.

use std::collections::BTreeSet;

use streamgate_plugin_sdk::{DropReason, hash};
use streamgate_runtime::wit;

use crate::shapes::Bounds;

/// The default staleness bound when the config names none (the builtin's default).
pub const DEFAULT_MAX_AGE_MS: i64 = 30_000;
/// The default reorder window when the config names none (the builtin's default).
pub const DEFAULT_WINDOW_MS: i64 = 1_000;
/// The builtin ordering's buffer bound: where `overflow` drops may begin.
const DEFAULT_MAX_BUFFERED: i64 = 100_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DedupeBy {
    Time,
    Id,
}

/// Where the claims checked under a config come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimSource {
    /// A 0.1.0 plugin's `describe` list, the same under every config: the kit reads
    /// `newest_per_frame` to tell when the config switches coalescing off.
    Describe,
    /// A 0.2.0 stage's `capabilities()` under this very config: checked exactly as said.
    Stage,
}

impl ClaimSource {
    /// `describe` or `stage.capabilities`, for reports.
    pub fn name(self) -> &'static str {
        match self {
            ClaimSource::Describe => "describe",
            ClaimSource::Stage => "stage.capabilities",
        }
    }
}

/// Whether and how coalescing is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Coalescing {
    /// Checked for events with these tag hashes; `None`: every tag.
    On(Option<BTreeSet<u64>>),
    /// Claimed by a 0.1.0 description, but switched off by this config (why, for the report).
    Off(String),
    NotClaimed,
}

/// What the kit expects of a plugin: its claimed capabilities with their parameters,
/// read from its description and config.
#[derive(Clone, Debug)]
pub struct Expectations {
    pub ordering: bool,
    pub staleness: Option<i64>,
    pub dedupe: Option<DedupeBy>,
    pub forget_after_ms: Option<i64>,
    pub coalesce: Coalescing,
    pub filter: bool,
    /// Tag names the config mentions (`tags`), for the generator.
    pub tag_names: Vec<String>,
    /// `max_age_ms` from the config or the default: where stale events are generated.
    pub max_age_ms: i64,
    /// `window_ms` from the config or the builtin ordering's default: where events at a
    /// reorder window's edge are generated.
    pub window_ms: i64,
    /// `max_buffered` from the config or the builtin ordering's default: an `overflow`
    /// drop is justified only while the stage holds more undecided events than this.
    pub max_buffered: i64,
}

impl Expectations {
    /// Expectations of `capabilities` (claimed as `source` says) under `config`.
    pub fn new(capabilities: &[wit::Capability], config: &str, source: ClaimSource) -> Self {
        let config: serde_json::Value = serde_json::from_str(config).unwrap_or_default();
        let int = |key: &str| config.get(key).and_then(serde_json::Value::as_i64);
        let claims = |c: wit::Capability| capabilities.contains(&c);
        let tag_names: Vec<String> = config
            .get("tags")
            .and_then(serde_json::Value::as_array)
            .map(|tags| tags.iter().filter_map(|t| t.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let max_age_ms = int("max_age_ms").unwrap_or(DEFAULT_MAX_AGE_MS);
        let newest_per_frame = config.get("newest_per_frame").and_then(serde_json::Value::as_bool);
        let coalesce = if !claims(wit::Capability::Coalesce) {
            Coalescing::NotClaimed
        } else if source == ClaimSource::Describe
            && (newest_per_frame == Some(false)
                || (newest_per_frame.is_none() && claims(wit::Capability::Dedupe)))
        {
            Coalescing::Off(
                "coalescing is switched off by this config (`newest_per_frame` is false or, for a plugin \
                 that also claims dedupe, unset)"
                    .into(),
            )
        } else if tag_names.is_empty() {
            Coalescing::On(None)
        } else {
            Coalescing::On(Some(tag_names.iter().map(|t| hash(t)).collect()))
        };
        let by_id = config.get("by").and_then(serde_json::Value::as_str) == Some("id");
        Expectations {
            ordering: claims(wit::Capability::Ordering),
            staleness: claims(wit::Capability::Staleness).then_some(max_age_ms),
            dedupe: claims(wit::Capability::Dedupe).then_some(if by_id {
                DedupeBy::Id
            } else {
                DedupeBy::Time
            }),
            forget_after_ms: int("forget_after_ms"),
            coalesce,
            filter: claims(wit::Capability::Filter),
            tag_names,
            max_age_ms,
            window_ms: int("window_ms").unwrap_or(DEFAULT_WINDOW_MS),
            max_buffered: int("max_buffered").unwrap_or(DEFAULT_MAX_BUFFERED),
        }
    }

    /// The times this config implies, for the generator.
    pub fn bounds(&self) -> Bounds {
        Bounds {
            max_age_ms: self.max_age_ms,
            window_ms: self.window_ms,
            forget_after_ms: self.forget_after_ms,
        }
    }

    /// Whether the claims allow dropping an event for `reason`: `stale` by staleness,
    /// `duplicate` by dedupe, `out-of-date` by dedupe by time, `superseded` by
    /// coalesce, `filtered` by filter, `overflow` by ordering (a buffer that is full).
    pub fn allows(&self, reason: DropReason) -> bool {
        match reason {
            DropReason::Stale => self.staleness.is_some(),
            DropReason::Duplicate => self.dedupe.is_some(),
            DropReason::OutOfDate => self.dedupe == Some(DedupeBy::Time),
            DropReason::Superseded => self.coalesce != Coalescing::NotClaimed,
            DropReason::Filtered => self.filter,
            DropReason::Overflow => self.ordering,
        }
    }

    /// Whether output may legitimately depend on where frames (pushes) begin and end.
    pub fn frame_scoped(&self) -> bool {
        self.ordering || matches!(self.coalesce, Coalescing::On(_))
    }
}

/// The WIT name of a capability.
pub fn capability_name(c: wit::Capability) -> &'static str {
    match c {
        wit::Capability::Ordering => "ordering",
        wit::Capability::Staleness => "staleness",
        wit::Capability::Dedupe => "dedupe",
        wit::Capability::Filter => "filter",
        wit::Capability::Coalesce => "coalesce",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_read_the_well_known_config_keys() {
        use wit::Capability as C;
        let describe = ClaimSource::Describe;
        let c = Expectations::new(
            &[C::Staleness, C::Dedupe, C::Coalesce],
            r#"{"max_age_ms":5,"by":"id"}"#,
            describe,
        );
        assert_eq!((c.staleness, c.dedupe), (Some(5), Some(DedupeBy::Id)));
        assert!(matches!(c.coalesce, Coalescing::Off(_)), "dedupe's coalescing is opt-in");
        let c = Expectations::new(&[C::Coalesce], r#"{"tags":["rank"]}"#, describe);
        assert_eq!(c.coalesce, Coalescing::On(Some(BTreeSet::from([hash("rank")]))));
        assert!(c.frame_scoped());
        let c = Expectations::new(&[C::Dedupe, C::Coalesce], r#"{"newest_per_frame":true}"#, describe);
        assert_eq!((c.coalesce, c.staleness, c.max_age_ms), (Coalescing::On(None), None, DEFAULT_MAX_AGE_MS));
    }

    #[test]
    fn a_stage_s_own_claims_are_checked_exactly_whatever_the_config_says() {
        use wit::Capability as C;
        let stage = ClaimSource::Stage;
        // A 0.2.0 stage that says it coalesces is checked, even where a 0.1.0 one is not.
        for config in ["", r#"{"newest_per_frame":false}"#] {
            let c = Expectations::new(&[C::Dedupe, C::Coalesce], config, stage);
            assert_eq!(c.coalesce, Coalescing::On(None), "{config}");
            let c = Expectations::new(&[C::Dedupe, C::Coalesce], config, ClaimSource::Describe);
            assert!(matches!(c.coalesce, Coalescing::Off(_)), "{config}");
        }
        let c = Expectations::new(&[C::Dedupe], r#"{"newest_per_frame":true}"#, stage);
        assert_eq!(c.coalesce, Coalescing::NotClaimed, "not said, not checked");
        let c = Expectations::new(&[C::Coalesce], r#"{"tags":["rank"]}"#, stage);
        assert_eq!(c.coalesce, Coalescing::On(Some(BTreeSet::from([hash("rank")]))), "parameters still read");
    }
}
