//! Staleness policy: drops events older than `max_age_ms` relative to log time.
//!
//! Stateless: an event's fate depends only on its event time and the batch's `now`.

use serde::Deserialize;
use streamgate_plugin_sdk::{
    Capability, ConfigError, Decisions, Description, DropReason, Event, Policy, RestoreError, parse_config,
};

streamgate_plugin_sdk::export_policy!(crate::Staleness, "../../wit");

/// Config (JSON): `{"max_age_ms": 30000}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StalenessConfig {
    /// Events whose age (`now - event_time`) exceeds this are dropped as stale.
    pub max_age_ms: i64,
}

impl Default for StalenessConfig {
    fn default() -> Self {
        StalenessConfig { max_age_ms: 30_000 }
    }
}

pub struct Staleness {
    max_age_ms: i64,
}

impl Policy for Staleness {
    fn describe() -> Description {
        Description {
            name: "staleness".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec![Capability::Staleness],
            state_version: 1,
        }
    }

    fn create(config: &str) -> Result<Self, ConfigError> {
        let cfg: StalenessConfig = parse_config(config)?;
        if cfg.max_age_ms < 0 {
            return Err(ConfigError::Invalid(format!("max_age_ms must be >= 0, got {}", cfg.max_age_ms)));
        }
        Ok(Staleness { max_age_ms: cfg.max_age_ms })
    }

    fn push(&mut self, now: i64, events: &[Event], out: &mut Decisions) {
        let oldest_allowed = now.saturating_sub(self.max_age_ms);
        for e in events {
            if e.event_time < oldest_allowed {
                out.drop(e.seq, DropReason::Stale);
            } else {
                out.release(e.seq);
            }
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        Vec::new()
    }

    fn restore(&mut self, state_version: u32, state: &[u8]) -> Result<(), RestoreError> {
        if state_version != 1 {
            return Err(RestoreError::UnsupportedVersion(state_version));
        }
        if !state.is_empty() {
            return Err(RestoreError::Corrupt("staleness keeps no state".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, event_time: i64) -> Event {
        Event { seq, key: seq, event_time, ..Event::default() }
    }

    #[test]
    fn drops_only_events_older_than_max_age() {
        let mut p = Staleness::create(r#"{"max_age_ms": 1000}"#).unwrap();
        let out = p.decide(10_000, &[ev(1, 8_999), ev(2, 9_000), ev(3, 12_000)]);
        assert_eq!(out.released, vec![2, 3]);
        assert_eq!(out.dropped, vec![(1, DropReason::Stale)]);
    }

    #[test]
    fn defaults_to_thirty_seconds() {
        let mut p = Staleness::create("").unwrap();
        let out = p.decide(100_000, &[ev(1, 69_999), ev(2, 70_000)]);
        assert_eq!(out.released, vec![2]);
    }

    #[test]
    fn rejects_bad_config() {
        assert!(matches!(Staleness::create("{"), Err(ConfigError::Malformed(_))));
        assert!(matches!(Staleness::create(r#"{"max_age":1}"#), Err(ConfigError::Invalid(_))));
        assert!(matches!(Staleness::create(r#"{"max_age_ms":-1}"#), Err(ConfigError::Invalid(_))));
    }
}
