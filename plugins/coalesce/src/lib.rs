//! Coalesce policy: per key, a batch releases only the newest of its coalescible events.
//!
//! Events whose tag is listed in `tags` (all events when `tags` is empty) are
//! coalescible: of those, each key keeps only its newest (by event time, then log
//! order) in a batch; the others are `superseded`. Events with any other tag (a queue's
//! `admitted` or `left`) are never coalesced or dropped. Survivors keep their log
//! order, so an `admitted` is never reordered behind a later rank update. Stateless.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use streamgate_plugin_sdk::{
    Capability, ConfigError, Decisions, Description, DropReason, Event, Policy, RestoreError, hash,
    parse_config,
};

streamgate_plugin_sdk::export_policy!(crate::Coalesce, "../../wit");

/// Config (JSON): `{"tags": ["rank"]}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoalesceConfig {
    pub tags: Vec<String>,
}

pub struct Coalesce {
    /// Hashes of the coalescible tags; empty means every event.
    tags: BTreeSet<u64>,
}

impl Coalesce {
    fn coalescible(&self, e: &Event) -> bool {
        self.tags.is_empty() || self.tags.contains(&e.tag)
    }
}

impl Policy for Coalesce {
    fn describe() -> Description {
        Description {
            name: "coalesce".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec![Capability::Coalesce],
            state_version: 1,
        }
    }

    fn create(config: &str) -> Result<Self, ConfigError> {
        let config: CoalesceConfig = parse_config(config)?;
        if let Some(empty) = config.tags.iter().find(|t| t.is_empty()) {
            return Err(ConfigError::Invalid(format!("tags must be non-empty strings, got {empty:?}")));
        }
        Ok(Coalesce { tags: config.tags.iter().map(|t| hash(t)).collect() })
    }

    fn push(&mut self, _now: i64, events: &[Event], out: &mut Decisions) {
        // Newest coalescible event per key: (event time, index in batch).
        let mut newest: BTreeMap<u64, (i64, usize)> = BTreeMap::new();
        for (i, e) in events.iter().enumerate().filter(|(_, e)| self.coalescible(e)) {
            let entry = newest.entry(e.key).or_insert((e.event_time, i));
            if (e.event_time, i) >= *entry {
                *entry = (e.event_time, i);
            }
        }
        for (i, e) in events.iter().enumerate() {
            if !self.coalescible(e) || newest[&e.key].1 == i {
                out.release(e.seq);
            } else {
                out.drop(e.seq, DropReason::Superseded);
            }
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        Vec::new()
    }

    fn restore(&mut self, state_version: u32, state: &[u8]) -> Result<(), RestoreError> {
        match (state_version, state.is_empty()) {
            (1, true) => Ok(()),
            (1, false) => Err(RestoreError::Corrupt("coalesce keeps no state".into())),
            (v, _) => Err(RestoreError::UnsupportedVersion(v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, user: u64, tag: &str, t: i64) -> Event {
        Event { seq, key: user, event_time: t, tag: hash(tag), ..Event::default() }
    }

    #[test]
    fn keeps_the_newest_rank_per_user_and_every_admission_in_log_order() {
        let mut p = Coalesce::create(r#"{"tags": ["rank"]}"#).unwrap();
        let batch = [
            ev(1, 7, "rank", 10),
            ev(2, 8, "rank", 10),
            ev(3, 7, "rank", 20),
            ev(4, 7, "admitted", 25),
            ev(5, 7, "rank", 15),
            ev(6, 8, "left", 30),
        ];
        let out = p.decide(0, &batch);
        assert_eq!(out.released, vec![2, 3, 4, 6]);
        assert_eq!(out.dropped, vec![(1, DropReason::Superseded), (5, DropReason::Superseded)]);
    }

    #[test]
    fn without_tags_every_event_coalesces() {
        let mut p = Coalesce::create("").unwrap();
        let out = p.decide(0, &[ev(1, 7, "a", 5), ev(2, 7, "b", 5)]);
        assert_eq!(out.released, vec![2], "equal times: the later in the log wins");
    }

    #[test]
    fn rejects_bad_config() {
        assert!(matches!(Coalesce::create(r#"{"tags": [""]}"#), Err(ConfigError::Invalid(_))));
        assert!(matches!(Coalesce::create(r#"{"tag": "rank"}"#), Err(ConfigError::Invalid(_))));
    }
}
