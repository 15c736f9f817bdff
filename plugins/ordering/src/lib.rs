//! Ordering policy: holds events for a reorder window and releases them in event-time
//! order.
//!
//! An event is released once log time passes `window_ms` beyond its event time or
//! beyond its arrival (the log time that carried it), whichever comes first: late
//! events wait at most one window, and a clock-skewed future timestamp cannot pin an
//! event forever. Each batch's releases are sorted by (event time, seq). Above
//! `max_buffered` held events, the earliest are released early.

mod held;

use serde::Deserialize;
use streamgate_plugin_sdk::{
    Capability, ConfigError, Decisions, Description, Event, Policy, RestoreError, SnapshotReader,
    SnapshotWriter, parse_config,
};

use held::Held;

streamgate_plugin_sdk::export_policy_v4!(crate::Ordering, "../../wit/v0.4.0");

const STATE_VERSION: u32 = 1;
/// Bytes of one held event in a snapshot.
const EVENT_BYTES: usize = 48;

/// Config (JSON): `{"window_ms": 1000, "max_buffered": 100000}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrderingConfig {
    pub window_ms: i64,
    pub max_buffered: u32,
}

impl Default for OrderingConfig {
    fn default() -> Self {
        OrderingConfig { window_ms: 1_000, max_buffered: 100_000 }
    }
}

pub struct Ordering {
    config: OrderingConfig,
    held: Held,
    /// Scratch for one push's releases (from the ring; the rest), kept for capacity.
    due: Vec<Event>,
    others: Vec<Event>,
}

/// How many milliseconds of event time the ring of buckets covers: twice the window
/// and a second, at least 1,024 and at most 65,536 (events beyond wait in an ordered map).
fn ring_span(config: &OrderingConfig) -> usize {
    let span = config.window_ms.saturating_mul(2).saturating_add(1_000);
    span.clamp(1_024, 65_536) as usize
}

/// Appends the seqs of `a` and `b` together in (event time, seq) order, emptying both.
fn release_in_order(a: &mut Vec<Event>, b: &mut Vec<Event>, released: &mut Vec<u64>) {
    let order = |e: &Event| (e.event_time, e.seq);
    for events in [&mut *a, &mut *b] {
        if !events.is_sorted_by_key(order) {
            events.sort_unstable_by_key(order);
        }
    }
    released.reserve(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if order(&a[i]) <= order(&b[j]) {
            released.push(a[i].seq);
            i += 1;
        } else {
            released.push(b[j].seq);
            j += 1;
        }
    }
    released.extend(a[i..].iter().chain(&b[j..]).map(|e| e.seq));
    a.clear();
    b.clear();
}

impl Ordering {
    /// Number of events held.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

impl Policy for Ordering {
    fn describe() -> Description {
        Description {
            name: "ordering".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec![Capability::Ordering],
            state_version: STATE_VERSION,
        }
    }

    fn create(config: &str) -> Result<Self, ConfigError> {
        let config: OrderingConfig = parse_config(config)?;
        if config.window_ms < 0 {
            return Err(ConfigError::Invalid(format!("window_ms must be >= 0, got {}", config.window_ms)));
        }
        if config.max_buffered == 0 {
            return Err(ConfigError::Invalid("max_buffered must be > 0".into()));
        }
        Ok(Ordering { held: Held::new(ring_span(&config)), config, due: Vec::new(), others: Vec::new() })
    }

    fn push(&mut self, now: i64, events: &[Event], out: &mut Decisions) {
        let cutoff = now.saturating_sub(self.config.window_ms);
        // Released from the ring (in time order) and otherwise (late events, arrivals,
        // overflow: few), merged by (time, seq) at the end.
        let mut due = std::mem::take(&mut self.due);
        let mut others = std::mem::take(&mut self.others);
        for e in events {
            if e.event_time <= cutoff && self.held.behind_ring(e.event_time) {
                others.push(*e); // late, and due already: never held
            } else {
                self.held.insert(*e);
            }
        }
        self.held.release_through(cutoff, &mut due, &mut others);
        self.held.release_arrived_through(cutoff, &mut others);
        self.held.release_beyond(self.config.max_buffered as usize, &mut others);
        self.held.sweep();
        release_in_order(&mut due, &mut others, &mut out.released);
        self.due = due;
        self.others = others;
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut held: Vec<&Event> = self.held.events().collect();
        held.sort_unstable_by_key(|e| (e.event_time, e.seq));
        let mut w = SnapshotWriter::with_capacity(4 + held.len() * EVENT_BYTES);
        w.u32(held.len() as u32);
        for e in held {
            w.u64(e.seq).u64(e.key).i64(e.event_time).i64(e.log_time).u64(e.id).u64(e.tag);
        }
        w.finish()
    }

    fn restore(&mut self, state_version: u32, state: &[u8]) -> Result<(), RestoreError> {
        if state_version != STATE_VERSION {
            return Err(RestoreError::UnsupportedVersion(state_version));
        }
        let mut r = SnapshotReader::new(state);
        let n = r.u32()?;
        // Never trust the count for an allocation: at most what the bytes can hold.
        let mut held = Vec::with_capacity((n as usize).min(state.len() / EVENT_BYTES));
        for _ in 0..n {
            held.push(Event {
                seq: r.u64()?,
                key: r.u64()?,
                event_time: r.i64()?,
                log_time: r.i64()?,
                id: r.u64()?,
                tag: r.u64()?,
            });
        }
        r.finish()?;
        self.held = Held::new(ring_span(&self.config));
        for e in held {
            self.held.insert(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, event_time: i64, log_time: i64) -> Event {
        Event { seq, key: seq % 3, event_time, log_time, ..Event::default() }
    }

    fn push(p: &mut Ordering, now: i64, events: &[Event]) -> Vec<u64> {
        let out = p.decide(now, events);
        assert!(out.dropped.is_empty(), "ordering never drops");
        out.released
    }

    #[test]
    fn releases_in_event_time_order_after_the_window() {
        let mut p = Ordering::create(r#"{"window_ms": 100}"#).unwrap();
        assert_eq!(push(&mut p, 1_000, &[ev(1, 990, 1_000), ev(2, 950, 1_000)]), Vec::<u64>::new());
        assert_eq!(push(&mut p, 1_060, &[ev(3, 940, 1_060)]), vec![3, 2]);
        assert_eq!(push(&mut p, 1_100, &[]), vec![1]);
        assert_eq!(p.held(), 0);
    }

    #[test]
    fn future_timestamps_wait_at_most_one_window_after_arrival() {
        let mut p = Ordering::create(r#"{"window_ms": 100}"#).unwrap();
        assert!(push(&mut p, 1_000, &[ev(1, 99_999, 1_000)]).is_empty());
        assert!(push(&mut p, 1_099, &[]).is_empty());
        assert_eq!(push(&mut p, 1_100, &[]), vec![1]);
    }

    #[test]
    fn an_event_that_arrived_earlier_is_not_held_behind_a_later_arrival() {
        // Log times need not rise with seq (events a stage upstream held): seq 2 arrived
        // at 0 and must come out a window later, whatever seq 1 waits for.
        let mut p = Ordering::create(r#"{"window_ms": 100}"#).unwrap();
        assert!(push(&mut p, 50, &[ev(1, 10_000, 50), ev(2, 10_000, 0)]).is_empty());
        assert_eq!(push(&mut p, 100, &[]), vec![2]);
        assert_eq!(push(&mut p, 150, &[]), vec![1]);
    }

    #[test]
    fn far_future_events_released_on_arrival_leave_no_garbage_behind() {
        let mut p = Ordering::create(r#"{"window_ms": 10}"#).unwrap();
        for n in 0..10_000u64 {
            let now = n as i64 * 10;
            push(&mut p, now, &[ev(n, i64::MAX - n as i64, now)]);
        }
        assert_eq!(p.held(), 1, "each waits one window after its arrival");
        assert!(p.held.index_len() <= 2 * p.held() + 1_024, "stale entries swept: {}", p.held.index_len());
    }

    #[test]
    fn overflow_releases_the_earliest() {
        let mut p = Ordering::create(r#"{"window_ms": 100, "max_buffered": 2}"#).unwrap();
        assert_eq!(push(&mut p, 0, &[ev(1, 30, 0), ev(2, 10, 0), ev(3, 20, 0)]), vec![2]);
        assert_eq!(p.held(), 2);
    }

    #[test]
    fn snapshot_carries_held_events() {
        let mut a = Ordering::create(r#"{"window_ms": 100}"#).unwrap();
        push(&mut a, 1_000, &[ev(1, 990, 1_000), ev(2, 950, 1_000)]);
        let mut b = Ordering::create(r#"{"window_ms": 100}"#).unwrap();
        b.restore(STATE_VERSION, &a.snapshot()).unwrap();
        assert_eq!(push(&mut a, 2_000, &[]), push(&mut b, 2_000, &[]));
    }

    #[test]
    fn garbage_and_other_state_versions_are_refused() {
        let mut p = Ordering::create("").unwrap();
        let garbage = [0xff, 0xff, 0x0f, 0x00, 1, 2, 3];
        assert!(matches!(p.restore(STATE_VERSION, &garbage), Err(RestoreError::Corrupt(_))));
        assert!(matches!(
            p.restore(STATE_VERSION + 1, &[0, 0, 0, 0]),
            Err(RestoreError::UnsupportedVersion(_))
        ));
    }

    #[test]
    fn rejects_bad_config() {
        assert!(matches!(Ordering::create(r#"{"window_ms":-1}"#), Err(ConfigError::Invalid(_))));
        assert!(matches!(Ordering::create(r#"{"max_buffered":0}"#), Err(ConfigError::Invalid(_))));
        assert!(matches!(Ordering::create("[1,"), Err(ConfigError::Malformed(_))));
    }
}

/// The new index against the rule itself, on streams built to reach every path: times
/// out of order, far in the past and future, log time going back, a tight limit,
/// restores mid-stream.
#[cfg(test)]
mod model_tests {
    use super::*;

    /// The rule, plainly: every held event due by time or by arrival leaves, then the
    /// earliest over the limit; a push's releases sorted by (time, seq).
    struct Model {
        window: i64,
        limit: usize,
        held: Vec<Event>,
    }

    impl Model {
        fn push(&mut self, now: i64, events: &[Event]) -> Vec<u64> {
            self.held.extend_from_slice(events);
            let cutoff = now.saturating_sub(self.window);
            let (mut due, kept): (Vec<Event>, Vec<Event>) =
                self.held.iter().partition(|e| e.event_time <= cutoff || e.log_time <= cutoff);
            self.held = kept;
            self.held.sort_by_key(|e| (e.event_time, e.seq));
            while self.held.len() > self.limit {
                due.push(self.held.remove(0));
            }
            due.sort_by_key(|e| (e.event_time, e.seq));
            due.iter().map(|e| e.seq).collect()
        }
    }

    /// xorshift64*: a fixed stream of numbers for a fixed seed.
    struct Numbers(u64);

    impl Numbers {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn run(seed: u64, window: i64, limit: u32) {
        let config = format!(r#"{{"window_ms": {window}, "max_buffered": {limit}}}"#);
        let mut plugin = Ordering::create(&config).unwrap();
        let mut model = Model { window, limit: limit as usize, held: Vec::new() };
        let mut n = Numbers(seed);
        let mut now: i64 = 1_000_000;
        let mut seq = 0u64;
        for push in 0..3_000 {
            now += match n.below(20) {
                2..=5 => 0,                                    // several pushes at one log time
                0 => -(n.below(3 * window as u64 + 1) as i64), // log time goes back
                1 => n.below(200_000) as i64,                  // a long pause
                _ => n.below(window as u64 / 4 + 2) as i64,
            };
            let mut batch = Vec::new();
            for _ in 0..n.below(12) {
                seq += 1 + n.below(3);
                let event_time = match n.below(30) {
                    0 => i64::MAX - n.below(1_000) as i64,
                    1 => i64::MIN + n.below(1_000) as i64,
                    2 => now + 100_000 + n.below(1_000_000) as i64,
                    3 => now - 100_000 - n.below(1_000_000) as i64,
                    4..=9 => now + n.below(3) as i64, // many events at one time
                    _ => now - n.below(2 * window as u64 + 50) as i64 + 20,
                };
                let log_time =
                    if n.below(10) == 0 { now - n.below(3 * window as u64 + 1) as i64 } else { now };
                batch.push(Event { seq, key: n.below(50), event_time, log_time, ..Event::default() });
            }
            let got = plugin.decide(now, &batch).released;
            assert_eq!(got, model.push(now, &batch), "seed {seed}, push {push}, now {now}");
            assert_eq!(plugin.held(), model.held.len(), "seed {seed}, push {push}");
            if push % 500 == 499 {
                let mut restored = Ordering::create(&config).unwrap();
                restored.restore(STATE_VERSION, &plugin.snapshot()).unwrap();
                plugin = restored;
            }
        }
    }

    #[test]
    fn releases_exactly_what_the_rule_says() {
        for seed in 1..=12 {
            run(seed * 0x9E37_79B9, 100, 100_000);
            run(seed * 0x85EB_CA6B, 1_000, 40);
            run(seed * 0xC2B2_AE35, 0, 7);
        }
    }
}
