//! Seeded, reproducible inputs: a small PRNG and a generator of logs (batches of
//! event metadata at increasing log times) with several keys, redeliveries, late,
//! early, stale and boundary-aged events, idempotency ids and tags.

use std::collections::BTreeMap;

use streamgate_plugin_sdk::{Event, hash};

/// Log time of the first generated batch: a realistic epoch in milliseconds.
pub const BASE_TIME: i64 = 1_763_900_000_000;

/// A run ends with an empty push this far after the last batch, so that a buffering
/// plugin (ordering) releases what it holds.
pub const FLUSH_AFTER_MS: i64 = 86_400_000;

/// splitmix64: tiny, fast, and the same numbers on every platform.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `1 / n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

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
}

impl Log {
    pub fn events(&self) -> usize {
        self.batches.iter().map(|b| b.events.len()).sum()
    }

    /// Log time of the flush push that ends a run of this log.
    pub fn flush_time(&self) -> i64 {
        self.batches.last().map_or(BASE_TIME, |b| b.now).saturating_add(FLUSH_AFTER_MS)
    }
}

/// Keys (some non-ASCII: the host hashes whatever the payload holds).
const KEYS: &[&str] = &["taxi-0042", "taxi-0007", "택시-서울-12", "u-123", "🚕"];
/// Tags of the queue tenant; a config's own `tags` are added.
const TAGS: &[&str] = &["rank", "admitted", "left"];

/// Makes logs; knows the names behind the hashes it uses, for readable reports.
pub struct Generator {
    max_age_ms: i64,
    tags: Vec<u64>,
    names: BTreeMap<u64, String>,
}

impl Generator {
    /// `max_age_ms` places stale and boundary-aged events; `config_tags` are the tag
    /// names the plugin's config mentions.
    pub fn new(max_age_ms: i64, config_tags: &[String]) -> Self {
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
        Generator { max_age_ms: max_age_ms.max(0), tags, names }
    }

    /// The name a key or tag hash was made from, if this generator made it.
    pub fn name_of(&self, hash: u64) -> Option<&str> {
        self.names.get(&hash).map(String::as_str)
    }

    /// A log of 1 to 10 batches of up to 12 events each, over 1 to 5 keys.
    pub fn log(&self, rng: &mut Rng) -> Log {
        let keys: Vec<u64> =
            KEYS[..1 + rng.below(KEYS.len() as u64) as usize].iter().map(|k| hash(k)).collect();
        let mut now = BASE_TIME;
        let mut seq = 1;
        let mut sent: Vec<Event> = Vec::new();
        let mut log = Log::default();
        for _ in 0..1 + rng.below(10) {
            now += *rng.pick(&[0, 1, 100, 400, 1_000, 2_500, 10_000]);
            let mut events = Vec::new();
            for _ in 0..rng.below(13) {
                let e = if !sent.is_empty() && rng.one_in(6) {
                    // Redelivery: the same event again, later in the log.
                    Event { seq, log_time: now, ..*rng.pick(&sent) }
                } else {
                    Event {
                        seq,
                        key: *rng.pick(&keys),
                        event_time: now.saturating_sub(self.age(rng)),
                        log_time: now,
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

    /// How far behind log time an event is: mostly a little late, sometimes on time,
    /// early (negative), stale, or exactly at the staleness bound.
    fn age(&self, rng: &mut Rng) -> i64 {
        match rng.below(10) {
            0..=4 => rng.below(3_000) as i64,
            5 | 6 => 0,
            7 => -(rng.below(2_000) as i64),
            8 => self.max_age_ms.saturating_add(1 + rng.below(5_000) as i64),
            _ => self.max_age_ms - rng.below(2) as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_log_and_seqs_increase() {
        let g = Generator::new(30_000, &["rank".into()]);
        let a = g.log(&mut Rng::new(7));
        assert_eq!(a, g.log(&mut Rng::new(7)));
        let seqs: Vec<u64> = a.batches.iter().flat_map(|b| b.events.iter().map(|e| e.seq)).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        let nows: Vec<i64> = a.batches.iter().map(|b| b.now).collect();
        assert!(nows.windows(2).all(|w| w[0] <= w[1]), "{nows:?}");
    }

    #[test]
    fn logs_contain_what_the_properties_need() {
        let g = Generator::new(30_000, &[]);
        let mut rng = Rng::new(1);
        let (mut stale, mut redelivered, mut same_key_in_batch) = (0, 0, 0);
        for _ in 0..100 {
            let log = g.log(&mut rng);
            for b in &log.batches {
                stale += b.events.iter().filter(|e| e.event_time < b.now - 30_000).count();
                redelivered += b.events.iter().filter(|e| e.id != hash(&format!("evt-{}", e.seq))).count();
                let keys: std::collections::BTreeSet<u64> = b.events.iter().map(|e| e.key).collect();
                same_key_in_batch += usize::from(keys.len() < b.events.len());
            }
        }
        assert!(
            stale > 20 && redelivered > 20 && same_key_in_batch > 20,
            "{stale} {redelivered} {same_key_in_batch}"
        );
    }
}
