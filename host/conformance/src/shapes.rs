//! The shapes of generated inputs, from a seeded PRNG ([`Rng`]): which keys a log uses ([`KeyPool`]) and where its
//! times fall ([`Bounds`]: steps of log time, event times relative to `now`, log times
//! of events), aimed at the boundaries a plugin's config implies.

use streamgate_plugin_sdk::{Event, hash};

/// Log time of the first generated batch of most logs: a realistic epoch in ms.
pub const BASE_TIME: i64 = 1_763_900_000_000;

/// A run ends with an empty push at least this far after the last batch (further when
/// the config allows longer windows), so that a buffering plugin releases what it holds.
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

/// Keys with names (some non-ASCII: the host hashes whatever the payload holds).
pub(crate) const KEYS: &[&str] = &["taxi-0042", "taxi-0007", "택시-서울-12", "u-123", "🚕"];
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// The times a config implies, from its well-known keys: where a plugin's behaviour
/// changes, so where generated events go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub max_age_ms: i64,
    pub window_ms: i64,
    pub forget_after_ms: Option<i64>,
}

impl Bounds {
    /// Negative bounds (a config the plugin would refuse) become 0.
    pub fn sane(self) -> Self {
        Bounds {
            max_age_ms: self.max_age_ms.max(0),
            window_ms: self.window_ms.max(0),
            forget_after_ms: self.forget_after_ms.map(|f| f.max(0)),
        }
    }

    /// The longest time the config lets a plugin wait for anything.
    pub fn longest(&self) -> i64 {
        self.max_age_ms.max(self.window_ms).max(self.forget_after_ms.unwrap_or(0))
    }

    /// How far after the last batch the flush must come to pass every window.
    pub fn flush_after_ms(&self) -> i64 {
        FLUSH_AFTER_MS.max(self.longest().saturating_mul(2).saturating_add(1))
    }

    /// Log time between two pushes: small steps, and steps right at each bound.
    pub fn step(&self, rng: &mut Rng) -> i64 {
        let b = *rng.pick(&[self.max_age_ms, self.window_ms, self.forget_after_ms.unwrap_or(self.window_ms)]);
        match rng.below(4) {
            0 => b.saturating_add(*rng.pick(&[-1, 0, 1])).max(0),
            _ => *rng.pick(&[0, 0, 1, 100, 400, 1_000, 2_500, 10_000]),
        }
    }

    /// An event time for a push at `now`: mostly a little late, on time or early; also
    /// stale, exactly at each bound and one either side, equal to an earlier event's
    /// time, future-dated (up to past the flush) and, rarely, `i64` extremes.
    pub fn event_time(&self, rng: &mut Rng, now: i64, sent: &[Event]) -> i64 {
        let age = |a: i64| now.saturating_sub(a);
        match rng.below(40) {
            0..=11 => age(rng.below(3_000) as i64),
            12..=16 => now,
            17..=19 => age(-(rng.below(2_000) as i64)),
            20..=22 => age(self.max_age_ms.saturating_add(1 + rng.below(5_000) as i64)),
            23..=27 => age(self.max_age_ms.saturating_add(*rng.pick(&[-1, 0, 0, 1]))),
            28..=30 => age(self.window_ms.saturating_add(*rng.pick(&[-1, 0, 1]))),
            31 => age(self.forget_after_ms.unwrap_or(self.max_age_ms).saturating_add(*rng.pick(&[-1, 0, 1]))),
            32..=35 if !sent.is_empty() => rng.pick(sent).event_time,
            36 | 37 => now.saturating_add(*rng.pick(&[1, HOUR_MS, DAY_MS + 1, 30 * DAY_MS])),
            38 => *rng.pick(&[i64::MIN, i64::MAX, 0, -1]),
            _ => age(rng.below(500) as i64),
        }
    }

    /// The log time an event carries: usually `now`; sometimes earlier (an event a
    /// buffering stage upstream held), at most a little more than a window before.
    pub fn log_time(&self, rng: &mut Rng, now: i64) -> i64 {
        if rng.below(5) > 0 {
            return now;
        }
        let back = *rng.pick(&[1, self.window_ms, self.window_ms.saturating_add(1)]);
        now.saturating_sub(rng.below(back.max(1) as u64 + 1) as i64)
    }
}

/// Where a log starts: usually a realistic epoch; sometimes before 1970 or near the
/// end of `i64`, so that arithmetic on times must saturate.
pub fn base_time(rng: &mut Rng) -> i64 {
    match rng.below(16) {
        0 => -1_000_000,
        1 => i64::MAX - 40 * DAY_MS,
        _ => BASE_TIME,
    }
}

/// The keys of one log and how often each is picked.
pub enum KeyPool {
    /// Picked uniformly.
    Even(Vec<u64>),
    /// One key most of the time, the others rarely.
    Hot { hot: u64, rare: Vec<u64> },
}

impl KeyPool {
    /// Named keys (1 to 5); hash-like keys across the whole u64 range (2, 8 or 64), with
    /// pairs equal in their low 32 bits or differing only in the top bit; one hot key
    /// with rare others; or the extremes of u64.
    pub fn generate(rng: &mut Rng) -> KeyPool {
        match rng.below(5) {
            0 => KeyPool::Even(
                KEYS[..1 + rng.below(KEYS.len() as u64) as usize].iter().map(|k| hash(k)).collect(),
            ),
            1 | 2 => {
                let n = *rng.pick(&[2, 8, 64]);
                let mut keys: Vec<u64> = (0..n).map(|_| rng.next_u64()).collect();
                let k = keys[0];
                keys.push(k ^ (1 << 63));
                keys.push(k ^ (rng.next_u64() << 32));
                KeyPool::Even(keys)
            }
            3 => KeyPool::Hot { hot: rng.next_u64(), rare: (0..3).map(|_| rng.next_u64()).collect() },
            _ => KeyPool::Even(vec![0, 1, u64::MAX, 1 << 63, 1 << 32, (1 << 32) + 1, u64::MAX >> 32]),
        }
    }

    pub fn pick(&self, rng: &mut Rng) -> u64 {
        match self {
            KeyPool::Even(keys) => *rng.pick(keys),
            KeyPool::Hot { hot, rare } => {
                if rng.below(10) < 8 {
                    *hot
                } else {
                    *rng.pick(rare)
                }
            }
        }
    }
}
