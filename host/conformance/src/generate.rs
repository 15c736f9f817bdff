//! Seeded, reproducible inputs: a small PRNG and a generator of logs (batches of
//! event metadata at non-decreasing log times) that reach where plugins go wrong: keys
//! across the whole u64 range (hash-like, few, many, one hot key with rare ones, pairs
//! equal in their low 32 bits), event times at every boundary the config implies
//! (`max_age_ms` ± 1, `window_ms` ± 1, `forget_after_ms` ± 1, equal times), late, early,
//! stale, future-dated and `i64` extremes, `log-time` other than `now`, redeliveries,
//! idempotency ids and tags. [`crate::shapes`] picks the keys and times.

use std::collections::BTreeMap;

use streamgate_plugin_sdk::{Event, hash};

use crate::shapes::{self, Bounds, KEYS, KeyPool};

pub use crate::shapes::{BASE_TIME, FLUSH_AFTER_MS, Rng};

/// One push: the log time and the events of one log entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub now: i64,
    pub events: Vec<Event>,
}

/// The input of one run, without its final flush.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Log {
    pub batches: Vec<Batch>,
    /// How far after the last batch the flush comes, beyond [`FLUSH_AFTER_MS`].
    pub flush_after_ms: i64,
}

impl Log {
    pub fn new(batches: Vec<Batch>) -> Self {
        Log { batches, flush_after_ms: FLUSH_AFTER_MS }
    }

    pub fn events(&self) -> usize {
        self.batches.iter().map(|b| b.events.len()).sum()
    }

    /// Log time of the flush push that ends a run of this log.
    pub fn flush_time(&self) -> i64 {
        let after = self.flush_after_ms.max(FLUSH_AFTER_MS);
        self.batches.last().map_or(BASE_TIME, |b| b.now).saturating_add(after)
    }

    /// Every event of the log by sequence number, with the index of the push that
    /// brought it.
    pub fn index(&self) -> BTreeMap<u64, (Event, usize)> {
        let mut out = BTreeMap::new();
        for (i, b) in self.batches.iter().enumerate() {
            for e in &b.events {
                out.insert(e.seq, (*e, i));
            }
        }
        out
    }
}

/// Tags of the queue tenant; a config's own `tags` are added.
const TAGS: &[&str] = &["rank", "admitted", "left"];

/// Makes logs for one config; knows the names behind the hashes it uses, for readable
/// reports.
pub struct Generator {
    bounds: Bounds,
    tags: Vec<u64>,
    names: BTreeMap<u64, String>,
}

impl Generator {
    /// `bounds` are the times the config implies (where boundary events go);
    /// `config_tags` are the tag names the plugin's config mentions.
    pub fn new(bounds: Bounds, config_tags: &[String]) -> Self {
        let mut names = BTreeMap::new();
        let mut tags = vec![0];
        for name in
            KEYS.iter().copied().chain(TAGS.iter().copied()).chain(config_tags.iter().map(|t| t.as_str()))
        {
            names.insert(hash(name), name.to_string());
        }
        for name in TAGS.iter().copied().chain(config_tags.iter().map(|t| t.as_str())) {
            if !tags.contains(&hash(name)) {
                tags.push(hash(name));
            }
        }
        Generator { bounds: bounds.sane(), tags, names }
    }

    /// The name a key or tag hash was made from, if this generator made it.
    pub fn name_of(&self, hash: u64) -> Option<&str> {
        self.names.get(&hash).map(String::as_str)
    }

    /// A log of 1 to 10 batches of up to 12 events each (sometimes 40), over keys of
    /// one [`KeyPool`] shape, ending with a flush beyond every window of the config.
    pub fn log(&self, rng: &mut Rng) -> Log {
        let keys = KeyPool::generate(rng);
        let mut now = shapes::base_time(rng);
        let mut seq = 1;
        let mut sent: Vec<Event> = Vec::new();
        let mut log = Log { batches: Vec::new(), flush_after_ms: self.bounds.flush_after_ms() };
        for _ in 0..1 + rng.below(10) {
            now = now.saturating_add(self.bounds.step(rng));
            let size = if rng.one_in(8) { 13 + rng.below(28) } else { rng.below(13) };
            let mut events = Vec::with_capacity(size as usize);
            for _ in 0..size {
                let e = if !sent.is_empty() && rng.one_in(6) {
                    // Redelivery: the same event again, later in the log.
                    Event { seq, log_time: now, ..*rng.pick(&sent) }
                } else {
                    let event_time = self.bounds.event_time(rng, now, &sent);
                    Event {
                        seq,
                        key: keys.pick(rng),
                        event_time,
                        log_time: self.bounds.log_time(rng, now),
                        id: hash(&format!("evt-{seq}")),
                        tag: *rng.pick(&self.tags),
                    }
                };
                seq += 1;
                sent.push(e);
                events.push(e);
            }
            log.batches.push(Batch { now, events });
        }
        log
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generator() -> Generator {
        Generator::new(Bounds { max_age_ms: 30_000, window_ms: 1_000, forget_after_ms: None }, &[])
    }

    #[test]
    fn the_same_seed_gives_the_same_log_and_seqs_increase() {
        let g = generator();
        let a = g.log(&mut Rng::new(7));
        assert_eq!(a, g.log(&mut Rng::new(7)));
        let seqs: Vec<u64> = a.batches.iter().flat_map(|b| b.events.iter().map(|e| e.seq)).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        let nows: Vec<i64> = a.batches.iter().map(|b| b.now).collect();
        assert!(nows.windows(2).all(|w| w[0] <= w[1]), "{nows:?}");
    }

    #[test]
    fn logs_reach_every_corner_of_the_input_space() {
        let g = generator();
        let mut rng = Rng::new(1);
        let mut seen = BTreeMap::<&str, usize>::new();
        let mut count = |what: &'static str, yes: bool| *seen.entry(what).or_default() += usize::from(yes);
        for _ in 0..400 {
            let log = g.log(&mut rng);
            for b in &log.batches {
                let keys: std::collections::BTreeSet<u64> = b.events.iter().map(|e| e.key).collect();
                count("same key twice in a batch", keys.len() < b.events.len());
                for e in &b.events {
                    let age = b.now.saturating_sub(e.event_time);
                    count("stale", age > 30_000);
                    count("exactly max_age", age == 30_000);
                    count("max_age + 1", age == 30_001);
                    count("exactly window", age == 1_000);
                    count("future beyond the flush", e.event_time > log.flush_time());
                    count("i64 extreme", e.event_time == i64::MAX || e.event_time == i64::MIN);
                    count("log time before now", e.log_time < b.now);
                    count("high key bit", e.key >> 63 == 1);
                    count("redelivered", e.id != hash(&format!("evt-{}", e.seq)));
                }
            }
        }
        assert!(seen.values().all(|&n| n >= 5), "{seen:?}");
        assert_eq!(seen.len(), 10, "{seen:?}");
    }
}
