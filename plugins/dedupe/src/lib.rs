//! Dedupe policy, in one of two modes (`by`):
//!
//! - `"time"` (default): per key, event time never goes back. An event whose time is
//!   not newer than the last one released for its key is dropped (`duplicate` when
//!   equal, `out-of-date` when older). With `newest_per_frame`, only the newest event per
//!   key in a batch is released; the others are `superseded`.
//! - `"id"`: each idempotency id (the tenant's `id` pointer) is released at most once;
//!   a repeat is a `duplicate`. For at-least-once streams where every event counts.
//!
//! With `forget_after_ms`, keys (or ids) last seen that far behind log time are
//! forgotten, bounding memory; set it above any staleness bound or redelivery delay.
//!
//! A `streamgate:policy@0.2.0` plugin: a stage claims `coalesce` only when its config
//! has `newest_per_frame` (otherwise it releases every passing event), and always
//! `dedupe`.

use std::collections::BTreeMap;

use serde::Deserialize;
use streamgate_plugin_sdk::{
    Capability, ConfigError, Decisions, Description, DropReason, Event, Policy, RestoreError, SnapshotReader,
    SnapshotWriter, parse_config,
};

#[cfg(feature = "export")]
streamgate_plugin_sdk::export_policy_v2!(crate::Dedupe, "../../wit/v0.2.0");

const STATE_VERSION: u32 = 1;

/// Config (JSON): `{"by": "time", "newest_per_frame": true, "forget_after_ms": 600000}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupeConfig {
    pub by: DedupeBy,
    pub newest_per_frame: bool,
    pub forget_after_ms: Option<i64>,
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DedupeBy {
    #[default]
    Time,
    Id,
}

pub struct Dedupe {
    config: DedupeConfig,
    /// By time: last released event time per key. By id: log time each id was first
    /// seen. (BTreeMap: deterministic iteration.)
    last_time: BTreeMap<u64, i64>,
    /// Log time at which the next forgetting sweep runs.
    next_sweep: i64,
    /// Scratch: index into the batch of the newest passing event per key.
    newest_in_batch: BTreeMap<u64, usize>,
}

impl Dedupe {
    /// Number of keys remembered.
    pub fn keys(&self) -> usize {
        self.last_time.len()
    }

    fn forget_old_keys(&mut self, now: i64) {
        let Some(horizon) = self.config.forget_after_ms else { return };
        if now < self.next_sweep {
            return;
        }
        let cutoff = now.saturating_sub(horizon);
        self.last_time.retain(|_, t| *t >= cutoff);
        // Sweep again after a tenth of the horizon: amortised O(1) per event.
        self.next_sweep = now.saturating_add((horizon / 10).max(1));
    }
}

impl Policy for Dedupe {
    fn describe() -> Description {
        Description {
            name: "dedupe".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec![Capability::Dedupe, Capability::Coalesce],
            state_version: STATE_VERSION,
        }
    }

    fn capabilities(&self) -> Vec<Capability> {
        if self.config.newest_per_frame {
            vec![Capability::Dedupe, Capability::Coalesce]
        } else {
            vec![Capability::Dedupe]
        }
    }

    fn create(config: &str) -> Result<Self, ConfigError> {
        let config: DedupeConfig = parse_config(config)?;
        if let Some(f) = config.forget_after_ms
            && f <= 0
        {
            return Err(ConfigError::Invalid(format!("forget_after_ms must be > 0, got {f}")));
        }
        if config.by == DedupeBy::Id && config.newest_per_frame {
            return Err(ConfigError::Invalid("newest_per_frame applies to by = \"time\" only".into()));
        }
        Ok(Dedupe {
            config,
            last_time: BTreeMap::new(),
            next_sweep: i64::MIN,
            newest_in_batch: BTreeMap::new(),
        })
    }

    fn push(&mut self, now: i64, events: &[Event], out: &mut Decisions) {
        self.forget_old_keys(now);
        if self.config.by == DedupeBy::Id {
            for e in events {
                match self.last_time.entry(e.id) {
                    std::collections::btree_map::Entry::Occupied(_) => out.drop(e.seq, DropReason::Duplicate),
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert(e.log_time);
                        out.release(e.seq);
                    }
                }
            }
            return;
        }
        let mut passed = Vec::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            match self.last_time.get(&e.key) {
                Some(&t) if e.event_time == t => out.drop(e.seq, DropReason::Duplicate),
                Some(&t) if e.event_time < t => out.drop(e.seq, DropReason::OutOfDate),
                _ => {
                    self.last_time.insert(e.key, e.event_time);
                    passed.push(i);
                }
            }
        }
        if !self.config.newest_per_frame {
            out.released.extend(passed.iter().map(|&i| events[i].seq));
            return;
        }
        // Passing events are strictly increasing per key, so the last one is the newest.
        self.newest_in_batch.clear();
        for &i in &passed {
            self.newest_in_batch.insert(events[i].key, i);
        }
        for &i in &passed {
            let e = &events[i];
            if self.newest_in_batch[&e.key] == i {
                out.release(e.seq);
            } else {
                out.drop(e.seq, DropReason::Superseded);
            }
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut w = SnapshotWriter::with_capacity(12 + self.last_time.len() * 16);
        w.i64(self.next_sweep).key_times(&self.last_time);
        w.finish()
    }

    fn restore(&mut self, state_version: u32, state: &[u8]) -> Result<(), RestoreError> {
        if state_version != STATE_VERSION {
            return Err(RestoreError::UnsupportedVersion(state_version));
        }
        let mut r = SnapshotReader::new(state);
        let next_sweep = r.i64()?;
        let last_time = r.key_times()?;
        r.finish()?;
        self.next_sweep = next_sweep;
        self.last_time = last_time;
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
    fn per_key_time_never_goes_back() {
        let mut p = Dedupe::create("").unwrap();
        let out = p.decide(0, &[ev(1, 7, 100), ev(2, 7, 100), ev(3, 7, 90), ev(4, 8, 50)]);
        assert_eq!(out.released, vec![1, 4]);
        assert_eq!(out.dropped, vec![(2, DropReason::Duplicate), (3, DropReason::OutOfDate)]);
        let out = p.decide(0, &[ev(5, 7, 99), ev(6, 7, 101)]);
        assert_eq!(out.released, vec![6]);
        assert_eq!(out.dropped, vec![(5, DropReason::OutOfDate)]);
    }

    #[test]
    fn newest_per_frame_keeps_only_the_last_per_key() {
        let mut p = Dedupe::create(r#"{"newest_per_frame": true}"#).unwrap();
        let out = p.decide(0, &[ev(1, 7, 100), ev(2, 8, 5), ev(3, 7, 110), ev(4, 7, 120)]);
        assert_eq!(out.released, vec![2, 4]);
        assert_eq!(out.dropped, vec![(1, DropReason::Superseded), (3, DropReason::Superseded)]);
    }

    #[test]
    fn claims_coalesce_only_with_newest_per_frame() {
        let plain = Dedupe::create("").unwrap();
        assert_eq!(plain.capabilities(), vec![Capability::Dedupe]);
        let newest = Dedupe::create(r#"{"newest_per_frame": true}"#).unwrap();
        assert_eq!(newest.capabilities(), vec![Capability::Dedupe, Capability::Coalesce]);
        let by_id = Dedupe::create(r#"{"by": "id"}"#).unwrap();
        assert_eq!(by_id.capabilities(), vec![Capability::Dedupe]);
        assert!(newest.capabilities().iter().all(|c| Dedupe::describe().capabilities.contains(c)));
    }

    #[test]
    fn forgets_keys_behind_the_horizon() {
        let mut p = Dedupe::create(r#"{"forget_after_ms": 1000}"#).unwrap();
        p.decide(0, &[ev(1, 7, 100), ev(2, 8, 900)]);
        p.decide(1_500, &[]);
        assert_eq!(p.keys(), 1, "key 7 (time 100) is behind 1500-1000");
        // A forgotten key accepts an older time again: the staleness stage bounds that.
        assert_eq!(p.decide(1_500, &[ev(3, 7, 50)]).released, vec![3]);
    }

    #[test]
    fn snapshot_restores_into_a_fresh_stage() {
        let mut a = Dedupe::create("").unwrap();
        a.decide(0, &[ev(1, 7, 100), ev(2, 8, 200)]);
        let mut b = Dedupe::create("").unwrap();
        b.restore(STATE_VERSION, &a.snapshot()).unwrap();
        let later = [ev(3, 7, 100), ev(4, 8, 201)];
        assert_eq!(a.decide(0, &later), b.decide(0, &later));
        assert!(matches!(b.restore(9, &[]), Err(RestoreError::UnsupportedVersion(9))));
        assert!(matches!(b.restore(STATE_VERSION, &[1, 2]), Err(RestoreError::Corrupt(_))));
    }

    #[test]
    fn by_id_releases_each_id_once_whatever_its_time() {
        let mut p = Dedupe::create(r#"{"by": "id", "forget_after_ms": 1000}"#).unwrap();
        let with_id = |seq, id, t| Event { seq, key: 1, event_time: t, log_time: t, id, ..Event::default() };
        let out = p.decide(0, &[with_id(1, 10, 5), with_id(2, 11, 3), with_id(3, 10, 9)]);
        assert_eq!(out.released, vec![1, 2], "an older time is fine; a repeated id is not");
        assert_eq!(out.dropped, vec![(3, DropReason::Duplicate)]);
        assert_eq!(p.decide(500, &[with_id(4, 11, 500)]).dropped, vec![(4, DropReason::Duplicate)]);
        p.decide(2_000, &[]);
        assert_eq!(p.keys(), 0, "ids first seen before 2000-1000 are forgotten");
    }

    #[test]
    fn rejects_unknown_fields_and_bad_values() {
        assert!(matches!(
            Dedupe::create(r#"{"by":"id","newest_per_frame":true}"#),
            Err(ConfigError::Invalid(_))
        ));
        assert!(matches!(Dedupe::create(r#"{"by":"name"}"#), Err(ConfigError::Invalid(_))));
        assert!(matches!(Dedupe::create(r#"{"newest":true}"#), Err(ConfigError::Invalid(_))));
        assert!(matches!(Dedupe::create(r#"{"forget_after_ms":0}"#), Err(ConfigError::Invalid(_))));
    }
}
