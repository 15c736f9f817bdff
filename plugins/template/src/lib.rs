//! Template policy plugin: per key, releases an event only if it is newer than the last
//! one released for that key (at least `min_step_ms` newer); everything else is dropped
//! as `duplicate` (same time) or `out-of-date` (older). It claims `dedupe`, so the
//! conformance kit checks that a key's released time strictly increases.
//!
//! The policy is plain Rust (unit-tested natively below); `export_policy_v4!` is the
//! thin shell that makes it a `streamgate:policy@0.4.0` component when built for Wasm
//! (the cheapest crossing; docs/PLUGINS.md says how to export another version).

use std::collections::BTreeMap;

use serde::Deserialize;
use streamgate_plugin_sdk::{
    Capability, ConfigError, Decisions, Description, DropReason, Event, Policy, RestoreError, SnapshotReader,
    SnapshotWriter, parse_config,
};

// The path is relative to this crate's Cargo.toml: streamgate's `wit/v0.4.0/` directory.
streamgate_plugin_sdk::export_policy_v4!(crate::LatestPerKey, "../../wit/v0.4.0");

const STATE_VERSION: u32 = 1;

/// Config (JSON): `{"min_step_ms": 0}`. Unknown fields are errors, so a typo in a
/// tenant's config is reported instead of silently meaning the default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub min_step_ms: i64,
}

pub struct LatestPerKey {
    min_step_ms: i64,
    /// Last released event time per key. A BTreeMap: iteration order is deterministic.
    last: BTreeMap<u64, i64>,
}

impl Policy for LatestPerKey {
    fn describe() -> Description {
        Description {
            name: "latest-per-key".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec![Capability::Dedupe],
            state_version: STATE_VERSION,
        }
    }

    fn create(config: &str) -> Result<Self, ConfigError> {
        let config: Config = parse_config(config)?;
        if config.min_step_ms < 0 {
            return Err(ConfigError::Invalid(format!(
                "min_step_ms must be >= 0, got {}",
                config.min_step_ms
            )));
        }
        Ok(LatestPerKey { min_step_ms: config.min_step_ms, last: BTreeMap::new() })
    }

    fn push(&mut self, _now: i64, events: &[Event], out: &mut Decisions) {
        for e in events {
            match self.last.get(&e.key) {
                Some(&t) if e.event_time == t => out.drop(e.seq, DropReason::Duplicate),
                Some(&t) if e.event_time < t.saturating_add(self.min_step_ms.max(1)) => {
                    out.drop(e.seq, DropReason::OutOfDate)
                }
                _ => {
                    self.last.insert(e.key, e.event_time);
                    out.release(e.seq);
                }
            }
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut w = SnapshotWriter::default();
        w.key_times(&self.last);
        w.finish()
    }

    fn restore(&mut self, state_version: u32, state: &[u8]) -> Result<(), RestoreError> {
        if state_version != STATE_VERSION {
            return Err(RestoreError::UnsupportedVersion(state_version));
        }
        let mut r = SnapshotReader::new(state);
        let last = r.key_times()?;
        r.finish()?;
        self.last = last;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, key: u64, event_time: i64) -> Event {
        Event { seq, key, event_time, ..Event::default() }
    }

    #[test]
    fn releases_only_newer_events_per_key_and_survives_a_snapshot() {
        let mut p = LatestPerKey::create("").unwrap();
        let out = p.decide(0, &[ev(1, 7, 100), ev(2, 7, 100), ev(3, 7, 90), ev(4, 8, 5)]);
        assert_eq!(out.released, vec![1, 4]);
        assert_eq!(out.dropped, vec![(2, DropReason::Duplicate), (3, DropReason::OutOfDate)]);

        let mut restored = LatestPerKey::create("").unwrap();
        restored.restore(STATE_VERSION, &p.snapshot()).unwrap();
        let out = restored.decide(0, &[ev(5, 7, 99), ev(6, 7, 101)]);
        assert_eq!(out.released, vec![6]);
        assert!(matches!(LatestPerKey::create(r#"{"min_step":1}"#), Err(ConfigError::Invalid(_))));
    }
}
