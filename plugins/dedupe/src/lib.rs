//! Dedupe policy, in one of two modes (`by`):
//!
//! - `"time"` (default): per key, event time never goes back. An event whose time is
//!   not newer than the last one released for its key is dropped (`duplicate` when
//!   equal, `out-of-date` when older). With `newest_per_frame`, only the newest event per
//!   key in a batch is released; the others are `superseded`.
//! - `"id"`: each idempotency id (the tenant's `id` pointer) is released at most once;
//!   a repeat is a `duplicate`. For at-least-once streams where every event counts.
//!
//! With `forget_after_ms`, keys (or ids) are forgotten that long in log time after they
//! last released an event (ids: after they were first seen, in generations: see
//! [`ids`]; about 14 bytes of linear memory per id), bounding memory; set it
//! above any staleness bound or redelivery delay. Forgetting never looks at event times,
//! so a key once stamped far in the future (`i64::MAX`, microseconds for milliseconds)
//! is forgotten like any other instead of holding back its later events forever. Drops
//! do not refresh a key: a key that only drops is forgotten on time.
//!
//! State version 3: by time, per key the event time and the log time of its last
//! release; by id, the id generations (8 bytes an id, see [`ids`]). Version 2 (by id:
//! each id with its first-seen time) and version 1 (event times only) are still
//! restored: under version 1 each key counts as last released at the first push after
//! the restore, or at its event time if that is earlier.
//!
//! A `streamgate:policy@0.2.0` plugin: a stage claims `coalesce` only when its config
//! has `newest_per_frame` (otherwise it releases every passing event), and always
//! `dedupe`.

mod ids;

use ids::IdGenerations;
use std::collections::hash_map::Entry;

use serde::Deserialize;
use streamgate_plugin_sdk::{
    Capability, ConfigError, Decisions, Description, DropReason, Event, KeyMap, Policy, RestoreError,
    SnapshotReader, SnapshotWriter, key_map, parse_config,
};

#[cfg(feature = "export")]
streamgate_plugin_sdk::export_policy_v4!(crate::Dedupe, "../../wit/v0.4.0");

const STATE_VERSION: u32 = 3;
/// By time as version 3; by id, each id with its first-seen time (16 bytes an id):
/// restored, never written.
const STATE_VERSION_ID_TIMES: u32 = 2;
/// The state before release log times were kept: restored, never written.
const STATE_VERSION_EVENT_TIMES: u32 = 1;

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

/// What the stage remembers of one key.
#[derive(Clone, Copy)]
struct Seen {
    /// The last released event time.
    time: i64,
    /// The log time of its last release: what forgetting looks at.
    released_at: i64,
    /// The push (counted from the stage's creation) and the position among that push's
    /// passing events of the key's last pass: how `newest_per_frame` finds the newest
    /// per key in a batch with one lookup per event. Not part of a snapshot.
    push: u64,
    pass: u32,
}

/// Per-key state lives in a [`KeyMap`]: one hash lookup per event. Its iteration order
/// never reaches a decision (forgetting keeps or removes each key on its own merits) or
/// a snapshot (written sorted by key).
pub struct Dedupe {
    config: DedupeConfig,
    /// By time: per key.
    seen: KeyMap<Seen>,
    /// By id: the ids remembered.
    ids: IdGenerations,
    /// Restored from version 1: release times are event times, capped at the next
    /// push's log time.
    cap_released_at: bool,
    /// Log time at which the next forgetting sweep runs.
    next_sweep: i64,
    /// Pushes so far (see [`Seen::push`]).
    push_number: u64,
    /// Scratch for one push: each passing event's seq, and whether a newer one for its
    /// key in the same push superseded it.
    passed: Vec<(u64, bool)>,
}

impl Dedupe {
    /// Number of keys (by id: ids) remembered.
    pub fn keys(&self) -> usize {
        self.seen.len() + self.ids.len()
    }

    fn forget_old_keys(&mut self, now: i64) {
        let Some(horizon) = self.config.forget_after_ms else { return };
        if now < self.next_sweep {
            return;
        }
        let cutoff = now.saturating_sub(horizon);
        self.seen.retain(|_, seen| seen.released_at >= cutoff);
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
            ids: IdGenerations::new(config.forget_after_ms),
            config,
            seen: key_map(),
            cap_released_at: false,
            next_sweep: i64::MIN,
            push_number: 0,
            passed: Vec::new(),
        })
    }

    fn push(&mut self, now: i64, events: &[Event], out: &mut Decisions) {
        if std::mem::take(&mut self.cap_released_at) {
            self.seen.values_mut().for_each(|seen| seen.released_at = seen.released_at.min(now));
        }
        if self.config.by == DedupeBy::Id {
            self.ids.forget_before(now);
            for e in events {
                if self.ids.insert_new(e.id, now) {
                    out.release(e.seq);
                } else {
                    out.drop(e.seq, DropReason::Duplicate);
                }
            }
            return;
        }
        self.forget_old_keys(now);
        self.push_number += 1;
        let push = self.push_number;
        let mut passed = std::mem::take(&mut self.passed);
        passed.clear();
        for e in events {
            let passing = Seen { time: e.event_time, released_at: now, push, pass: passed.len() as u32 };
            match self.seen.entry(e.key) {
                Entry::Occupied(mut o) => {
                    let last = *o.get();
                    if e.event_time == last.time {
                        out.drop(e.seq, DropReason::Duplicate);
                        continue;
                    } else if e.event_time < last.time {
                        out.drop(e.seq, DropReason::OutOfDate);
                        continue;
                    }
                    // Passing events are strictly newer per key: the key's earlier pass
                    // in this push is not its newest.
                    if last.push == push {
                        passed[last.pass as usize].1 = true;
                    }
                    o.insert(passing);
                }
                Entry::Vacant(v) => {
                    v.insert(passing);
                }
            }
            passed.push((e.seq, false));
        }
        if self.config.newest_per_frame {
            for &(seq, superseded) in &passed {
                if superseded {
                    out.drop(seq, DropReason::Superseded);
                } else {
                    out.release(seq);
                }
            }
        } else {
            out.released.extend(passed.iter().map(|&(seq, _)| seq));
        }
        self.passed = passed;
    }

    /// Version 3: the next sweep, then by time the key times and the release log times
    /// (the same keys), by id the id generations.
    fn snapshot(&self) -> Vec<u8> {
        if self.config.by == DedupeBy::Id {
            let mut w = SnapshotWriter::with_capacity(8 + self.ids.written_len());
            w.i64(self.next_sweep);
            self.ids.write(&mut w);
            return w.finish();
        }
        let mut seen: Vec<(u64, Seen)> = self.seen.iter().map(|(&k, &s)| (k, s)).collect();
        seen.sort_unstable_by_key(|&(key, _)| key);
        let mut w = SnapshotWriter::with_capacity(16 + seen.len() * 32);
        w.i64(self.next_sweep).u32(seen.len() as u32);
        for &(key, s) in &seen {
            w.u64(key).i64(s.time);
        }
        w.u32(seen.len() as u32);
        for &(key, s) in &seen {
            w.u64(key).i64(s.released_at);
        }
        w.finish()
    }

    fn restore(&mut self, state_version: u32, state: &[u8]) -> Result<(), RestoreError> {
        if !(STATE_VERSION_EVENT_TIMES..=STATE_VERSION).contains(&state_version) {
            return Err(RestoreError::UnsupportedVersion(state_version));
        }
        let mut r = SnapshotReader::new(state);
        let next_sweep = r.i64()?;
        if self.config.by == DedupeBy::Id {
            let mut ids = IdGenerations::new(self.config.forget_after_ms);
            if state_version == STATE_VERSION {
                ids.read(&mut r)?;
            } else {
                // Each id with its time, then (version 2) no release times.
                ids.read_pairs(&mut r)?;
                if state_version == STATE_VERSION_ID_TIMES && r.u32()? != 0 {
                    return Err(RestoreError::Corrupt("release times in a by-id snapshot".into()));
                }
            }
            r.finish()?;
            self.ids = ids;
            self.next_sweep = next_sweep;
            return Ok(());
        }
        let times = r.key_map()?;
        let (released_at, cap) = match state_version {
            STATE_VERSION | STATE_VERSION_ID_TIMES => (Some(r.key_map()?), false),
            // Only event times were kept: they stand in for release times until the next
            // push caps them at its log time (a future stamp is then forgotten on time).
            STATE_VERSION_EVENT_TIMES => (None, true),
            v => return Err(RestoreError::UnsupportedVersion(v)),
        };
        r.finish()?;
        let mut seen = KeyMap::with_capacity_and_hasher(times.len(), Default::default());
        for (&key, &time) in &times {
            let released_at = match &released_at {
                Some(at) => *at
                    .get(&key)
                    .ok_or_else(|| RestoreError::Corrupt("release times do not match the keys".into()))?,
                _ => time,
            };
            seen.insert(key, Seen { time, released_at, push: 0, pass: 0 });
        }
        if released_at.is_some_and(|at| at.len() != times.len()) {
            return Err(RestoreError::Corrupt("release times do not match the keys".into()));
        }
        self.next_sweep = next_sweep;
        self.seen = seen;
        self.cap_released_at = cap;
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
        p.decide(0, &[ev(1, 7, 100)]);
        p.decide(900, &[ev(2, 8, 900)]);
        p.decide(1_500, &[]);
        assert_eq!(p.keys(), 1, "key 7 (released at log time 0) is behind 1500-1000");
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
    fn a_far_future_event_time_does_not_freeze_its_key() {
        let mut p = Dedupe::create(r#"{"forget_after_ms": 1000}"#).unwrap();
        assert_eq!(p.decide(0, &[ev(1, 7, i64::MAX), ev(2, 8, 10)]).released, vec![1, 2]);
        // Later events of key 7 are out of date while it is remembered, and dropping
        // them does not keep it remembered.
        assert_eq!(p.decide(600, &[ev(3, 7, 600)]).dropped, vec![(3, DropReason::OutOfDate)]);
        assert_eq!(p.decide(900, &[ev(4, 7, 900)]).dropped, vec![(4, DropReason::OutOfDate)]);
        // 1000 ms of log time after its last release, the key is forgotten.
        assert_eq!(p.decide(1_200, &[ev(5, 7, 1_200)]).released, vec![5], "key 7 is free again");
        assert_eq!(p.decide(1_300, &[ev(6, 7, 1_150)]).dropped, vec![(6, DropReason::OutOfDate)]);
    }

    #[test]
    fn restores_version_1_state_and_caps_its_future_times() {
        // Version 1: next sweep, then (key, event time) pairs.
        let mut w = SnapshotWriter::default();
        w.i64(i64::MIN).key_times(&std::collections::BTreeMap::from([(7, i64::MAX), (8, 100)]));
        let v1 = w.finish();
        let mut p = Dedupe::create(r#"{"forget_after_ms": 1000}"#).unwrap();
        p.restore(STATE_VERSION_EVENT_TIMES, &v1).unwrap();
        assert_eq!(p.decide(500, &[ev(1, 7, 400), ev(2, 8, 100)]).dropped.len(), 2, "memory kept");
        // Key 8 counts as released at its event time (100), key 7 at the first push (500).
        p.decide(1_200, &[]);
        assert_eq!(p.keys(), 1, "key 8 forgotten at 100 + 1000");
        assert_eq!(p.decide(1_600, &[ev(3, 7, 1_600)]).released, vec![3], "key 7 forgotten at 500 + 1000");
        // Version 2 round-trips the release times.
        let mut q = Dedupe::create(r#"{"forget_after_ms": 1000}"#).unwrap();
        q.restore(STATE_VERSION, &p.snapshot()).unwrap();
        let later = [ev(4, 7, 1_600), ev(5, 7, 1_700)];
        assert_eq!(p.decide(2_000, &later), q.decide(2_000, &later));
        let mut by_id = Dedupe::create(r#"{"by": "id"}"#).unwrap();
        by_id.restore(STATE_VERSION_EVENT_TIMES, &v1).unwrap();
        assert_eq!(by_id.keys(), 2);
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
    fn restores_version_2_by_id_state_and_writes_it_in_generations() {
        // Version 2 by id: next sweep, (id, first-seen log time) pairs, no release times.
        let mut w = SnapshotWriter::default();
        w.i64(i64::MIN).u32(2).u64(10).i64(50).u64(11).i64(950).u32(0);
        let v2 = w.finish();
        let mut p = Dedupe::create(r#"{"by": "id", "forget_after_ms": 1000}"#).unwrap();
        p.restore(STATE_VERSION_ID_TIMES, &v2).unwrap();
        let with_id = |seq, id| Event { seq, key: 1, id, ..Event::default() };
        assert_eq!(p.decide(1_000, &[with_id(1, 10), with_id(2, 12)]).released, vec![2], "id 10 remembered");
        assert_eq!(p.decide(1_100, &[with_id(3, 10), with_id(4, 11)]).released, vec![3], "id 10 forgotten");
        let mut q = Dedupe::create(r#"{"by": "id", "forget_after_ms": 1000}"#).unwrap();
        q.restore(STATE_VERSION, &p.snapshot()).unwrap();
        assert_eq!(q.snapshot(), p.snapshot());
        assert_eq!(q.keys(), 3);
        let mut w = SnapshotWriter::default();
        w.i64(i64::MIN).u32(1).u64(10).i64(50).u32(1).u64(10).i64(50);
        assert!(matches!(q.restore(STATE_VERSION_ID_TIMES, &w.finish()), Err(RestoreError::Corrupt(_))));
        assert_eq!(q.keys(), 3, "a refused restore leaves the state as it was");
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
