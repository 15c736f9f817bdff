//! Staleness policy: drops events older than `max_age_ms` relative to log time, and
//! expires keys that went silent.
//!
//! An event's fate depends only on its event time and the batch's `now`. For expiry the
//! stage remembers, per key, the newest event time it released; once that falls more
//! than `max_age_ms` behind `now`, the key is declared expired (`Decisions::expire`,
//! `streamgate:policy@0.2.0`) once and forgotten: a later event for it starts over.
//! Only keys with a release in the last `max_age_ms` of log time are remembered, so the
//! state is bounded by the keys alive in that window.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::collections::hash_map::Entry;

use serde::Deserialize;
use streamgate_plugin_sdk::{
    Capability, ConfigError, Decisions, Description, DropReason, Event, KeyMap, Policy, RestoreError,
    SnapshotReader, SnapshotWriter, key_map, parse_config,
};

streamgate_plugin_sdk::export_policy_v4!(crate::Staleness, "../../wit/v0.4.0");

/// State version 2: the newest released event time per key. Version 1 (stateless,
/// empty) is read too: a stage restored from it simply knows no keys yet.
const STATE_VERSION: u32 = 2;

/// Config (JSON): `{"max_age_ms": 30000}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StalenessConfig {
    /// Events whose age (`now - event_time`) exceeds this are dropped as stale; keys
    /// whose newest event is older than this are expired.
    pub max_age_ms: i64,
}

impl Default for StalenessConfig {
    fn default() -> Self {
        StalenessConfig { max_age_ms: 30_000 }
    }
}

pub struct Staleness {
    max_age_ms: i64,
    /// Key → newest event time released for it.
    newest: KeyMap<i64>,
    /// One `(time, key)` per remembered key, oldest first, so expiry looks only at the
    /// oldest. The time is at most the key's newest: a newer release does not touch the
    /// heap (one hash update per event); when an entry surfaces behind its key's newest
    /// it goes back in with the newest, which is once per `max_age_ms` per live key.
    by_time: BinaryHeap<Reverse<(i64, u64)>>,
}

impl Staleness {
    /// Number of keys remembered (each has a release within `max_age_ms` of log time).
    pub fn keys(&self) -> usize {
        self.newest.len()
    }

    fn remember(&mut self, key: u64, event_time: i64) {
        match self.newest.entry(key) {
            Entry::Occupied(mut newest) => {
                if *newest.get() < event_time {
                    newest.insert(event_time);
                }
            }
            Entry::Vacant(slot) => {
                slot.insert(event_time);
                self.by_time.push(Reverse((event_time, key)));
            }
        }
    }

    /// Expires (and forgets) every key whose newest time is before `oldest_allowed`,
    /// in (time, key) order: an entry put back with its key's newest time surfaces
    /// again in this same loop if that time is behind too, in its place.
    fn expire_silent_keys(&mut self, oldest_allowed: i64, out: &mut Decisions) {
        while let Some(&Reverse((t, key))) = self.by_time.peek()
            && t < oldest_allowed
        {
            self.by_time.pop();
            match self.newest.get(&key) {
                Some(&newest) if newest > t => self.by_time.push(Reverse((newest, key))),
                Some(_) => {
                    self.newest.remove(&key);
                    out.expire(key);
                }
                None => {}
            }
        }
    }
}

impl Policy for Staleness {
    fn describe() -> Description {
        Description {
            name: "staleness".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec![Capability::Staleness],
            state_version: STATE_VERSION,
        }
    }

    fn create(config: &str) -> Result<Self, ConfigError> {
        let cfg: StalenessConfig = parse_config(config)?;
        if cfg.max_age_ms < 0 {
            return Err(ConfigError::Invalid(format!("max_age_ms must be >= 0, got {}", cfg.max_age_ms)));
        }
        Ok(Staleness { max_age_ms: cfg.max_age_ms, newest: key_map(), by_time: BinaryHeap::new() })
    }

    fn push(&mut self, now: i64, events: &[Event], out: &mut Decisions) {
        let oldest_allowed = now.saturating_sub(self.max_age_ms);
        for e in events {
            if e.event_time < oldest_allowed {
                out.drop(e.seq, DropReason::Stale);
            } else {
                out.release(e.seq);
                self.remember(e.key, e.event_time);
            }
        }
        self.expire_silent_keys(oldest_allowed, out);
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut w = SnapshotWriter::with_capacity(4 + self.newest.len() * 16);
        w.key_map(&self.newest);
        w.finish()
    }

    fn restore(&mut self, state_version: u32, state: &[u8]) -> Result<(), RestoreError> {
        let newest = match state_version {
            1 if state.is_empty() => key_map(),
            1 => return Err(RestoreError::Corrupt("staleness state version 1 is empty".into())),
            STATE_VERSION => {
                let mut r = SnapshotReader::new(state);
                let newest = r.key_map()?;
                r.finish()?;
                newest
            }
            other => return Err(RestoreError::UnsupportedVersion(other)),
        };
        self.by_time = newest.iter().map(|(&key, &t)| Reverse((t, key))).collect();
        self.newest = newest;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, event_time: i64) -> Event {
        Event { seq, key: seq, event_time, ..Event::default() }
    }

    fn keyed(seq: u64, key: u64, event_time: i64) -> Event {
        Event { seq, key, event_time, ..Event::default() }
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
    fn expires_a_key_one_ms_past_max_age_not_at_it() {
        let mut p = Staleness::create(r#"{"max_age_ms": 1000}"#).unwrap();
        p.decide(5_000, &[keyed(1, 7, 5_000), keyed(2, 8, 5_500)]);
        assert!(p.decide(6_000, &[]).expired.is_empty(), "exactly max_age_ms old is not expired");
        assert_eq!(p.decide(6_001, &[]).expired, vec![7], "one ms more is");
        assert_eq!(p.keys(), 1, "an expired key is forgotten");
        assert!(p.decide(6_400, &[]).expired.is_empty(), "and expired once");
        assert_eq!(p.decide(6_501, &[]).expired, vec![8]);
        assert_eq!(p.keys(), 0);
    }

    #[test]
    fn a_newer_event_keeps_a_key_alive_and_a_later_one_starts_over() {
        let mut p = Staleness::create(r#"{"max_age_ms": 1000}"#).unwrap();
        p.decide(1_000, &[keyed(1, 7, 1_000)]);
        p.decide(1_900, &[keyed(2, 7, 1_800), keyed(3, 7, 1_200)]);
        assert!(p.decide(2_500, &[]).expired.is_empty(), "the newest time (1800) counts, not the last");
        assert_eq!(p.decide(2_801, &[]).expired, vec![7]);
        // The key comes back: it is expired again, once, after its new newest time.
        p.decide(3_000, &[keyed(4, 7, 3_000)]);
        assert!(p.decide(4_000, &[]).expired.is_empty());
        assert_eq!(p.decide(4_001, &[]).expired, vec![7]);
    }

    #[test]
    fn a_stale_event_neither_revives_nor_creates_a_key() {
        let mut p = Staleness::create(r#"{"max_age_ms": 1000}"#).unwrap();
        let out = p.decide(10_000, &[keyed(1, 7, 8_000)]);
        assert_eq!(out.dropped, vec![(1, DropReason::Stale)]);
        assert!(out.expired.is_empty());
        assert_eq!(p.keys(), 0);
    }

    #[test]
    fn snapshot_restores_the_keys_and_reads_the_stateless_version() {
        let mut a = Staleness::create(r#"{"max_age_ms": 1000}"#).unwrap();
        a.decide(1_000, &[keyed(1, 7, 1_000), keyed(2, 8, 1_500)]);
        let mut b = Staleness::create(r#"{"max_age_ms": 1000}"#).unwrap();
        b.restore(STATE_VERSION, &a.snapshot()).unwrap();
        for now in [2_001, 2_501] {
            assert_eq!(a.decide(now, &[]), b.decide(now, &[]));
        }
        assert_eq!(b.keys(), 0);
        b.restore(1, &[]).unwrap();
        assert!(matches!(b.restore(1, &[0]), Err(RestoreError::Corrupt(_))));
        assert!(matches!(b.restore(9, &[]), Err(RestoreError::UnsupportedVersion(9))));
        assert!(matches!(b.restore(STATE_VERSION, &[1, 2]), Err(RestoreError::Corrupt(_))));
    }

    /// The stage against the rule kept plainly (every key's newest release time; each
    /// push expires, in (time, key) order, the keys whose newest fell behind), on a
    /// stream with repeats, old times, log time going back and restores.
    #[test]
    fn expires_exactly_what_the_rule_says() {
        let mut p = Staleness::create(r#"{"max_age_ms": 500}"#).unwrap();
        let mut newest: std::collections::BTreeMap<u64, i64> = Default::default();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut now = 10_000i64;
        for push in 0..5_000u64 {
            now += if next(25) == 0 { -(next(800) as i64) } else { next(60) as i64 };
            let events: Vec<Event> =
                (0..next(6)).map(|i| keyed(push * 8 + i, next(40), now - next(700) as i64 + 100)).collect();
            let out = p.decide(now, &events);
            let oldest_allowed = now - 500;
            let mut released = Vec::new();
            for e in &events {
                if e.event_time >= oldest_allowed {
                    released.push(e.seq);
                    let t = newest.entry(e.key).or_insert(e.event_time);
                    *t = (*t).max(e.event_time);
                }
            }
            let mut expired: Vec<(i64, u64)> =
                newest.iter().filter(|&(_, &t)| t < oldest_allowed).map(|(&k, &t)| (t, k)).collect();
            expired.sort_unstable();
            newest.retain(|_, t| *t >= oldest_allowed);
            assert_eq!(out.released, released, "push {push}");
            assert_eq!(out.expired, expired.iter().map(|&(_, k)| k).collect::<Vec<_>>(), "push {push}");
            if push % 700 == 699 {
                let mut restored = Staleness::create(r#"{"max_age_ms": 500}"#).unwrap();
                restored.restore(STATE_VERSION, &p.snapshot()).unwrap();
                p = restored;
            }
        }
        assert_eq!(p.keys(), newest.len());
    }

    #[test]
    fn rejects_bad_config() {
        assert!(matches!(Staleness::create("{"), Err(ConfigError::Malformed(_))));
        assert!(matches!(Staleness::create(r#"{"max_age":1}"#), Err(ConfigError::Invalid(_))));
        assert!(matches!(Staleness::create(r#"{"max_age_ms":-1}"#), Err(ConfigError::Invalid(_))));
    }
}
