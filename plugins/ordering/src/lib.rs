//! Ordering policy: holds events for a reorder window and releases them in event-time
//! order.
//!
//! An event is released once log time passes `window_ms` beyond its event time or
//! beyond its arrival (the log time that carried it), whichever comes first: late
//! events wait at most one window, and a clock-skewed future timestamp cannot pin an
//! event forever. Each batch's releases are sorted by (event time, seq). Above
//! `max_buffered` held events, the earliest are released early.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use serde::Deserialize;
use streamgate_plugin_sdk::{
    Capability, ConfigError, Decisions, Description, Event, KeyMap, Policy, RestoreError, SnapshotReader,
    SnapshotWriter, key_map, parse_config,
};

streamgate_plugin_sdk::export_policy_v3!(crate::Ordering, "../../wit/v0.3.0");

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

/// A min-heap of `(time, seq)`.
type TimeHeap = BinaryHeap<Reverse<(i64, u64)>>;

/// Held events live in one map by seq; two min-heaps order them by event time and by
/// arrival. An event released through one heap leaves a stale entry in the other, which
/// is skipped when it surfaces and swept when stale entries outnumber the held ones.
pub struct Ordering {
    config: OrderingConfig,
    /// Held events by seq.
    held: KeyMap<Event>,
    /// `(event time, seq)`: release order.
    by_time: TimeHeap,
    /// `(arrival log time, seq)`: arrival order, whatever order the log times came in.
    by_arrival: Arrivals,
}

/// Arrival times in order: a queue while they rise (the usual case, O(1) per event),
/// plus a heap for the few that arrive with an earlier log time than the queue's last.
#[derive(Default)]
struct Arrivals {
    in_order: VecDeque<(i64, u64)>,
    late: TimeHeap,
}

impl Arrivals {
    fn push(&mut self, log_time: i64, seq: u64) {
        match self.in_order.back() {
            Some(&(last, _)) if log_time < last => self.late.push(Reverse((log_time, seq))),
            _ => self.in_order.push_back((log_time, seq)),
        }
    }

    fn len(&self) -> usize {
        self.in_order.len() + self.late.len()
    }

    fn clear(&mut self) {
        self.in_order.clear();
        self.late.clear();
    }

    /// Pops the earliest arrival if it is at most `cutoff`.
    fn pop_until(&mut self, cutoff: i64) -> Option<u64> {
        let queued = self.in_order.front().map(|&(t, seq)| (t, seq));
        let late = self.late.peek().map(|&Reverse(entry)| entry);
        match (queued, late) {
            (Some(q), Some(l)) if l < q && l.0 <= cutoff => self.late.pop().map(|Reverse((_, seq))| seq),
            (Some(q), _) if q.0 <= cutoff => self.in_order.pop_front().map(|(_, seq)| seq),
            (None, Some(l)) if l.0 <= cutoff => self.late.pop().map(|Reverse((_, seq))| seq),
            _ => None,
        }
    }
}

impl Ordering {
    /// Number of events held.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    fn hold(&mut self, e: Event) {
        self.held.insert(e.seq, e);
        self.by_time.push(Reverse((e.event_time, e.seq)));
        self.by_arrival.push(e.log_time, e.seq);
    }

    /// Pops `heap`'s earliest held event if its time is at most `cutoff`, skipping
    /// stale entries.
    fn pop_due(held: &mut KeyMap<Event>, heap: &mut TimeHeap, cutoff: i64) -> Option<Event> {
        while let Some(&Reverse((t, seq))) = heap.peek() {
            if t > cutoff {
                return None;
            }
            heap.pop();
            if let Some(e) = held.remove(&seq) {
                return Some(e);
            }
        }
        None
    }

    /// Rebuilds a heap whose stale entries outnumber the held events (amortised O(1)
    /// per event; keeps a far-future event time from pinning garbage forever).
    fn sweep(&mut self) {
        let limit = 2 * self.held.len() + 1_024;
        if self.by_time.len() > limit {
            self.by_time = self.held.values().map(|e| Reverse((e.event_time, e.seq))).collect();
        }
        if self.by_arrival.len() > limit {
            let mut held: Vec<(i64, u64)> = self.held.values().map(|e| (e.log_time, e.seq)).collect();
            held.sort_unstable();
            self.by_arrival = Arrivals { in_order: held.into(), late: TimeHeap::new() };
        }
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
        Ok(Ordering { config, held: key_map(), by_time: TimeHeap::new(), by_arrival: Arrivals::default() })
    }

    fn push(&mut self, now: i64, events: &[Event], out: &mut Decisions) {
        for e in events {
            self.hold(*e);
        }
        let cutoff = now.saturating_sub(self.config.window_ms);
        let mut due = Vec::new();
        while let Some(e) = Self::pop_due(&mut self.held, &mut self.by_time, cutoff) {
            due.push(e);
        }
        while let Some(seq) = self.by_arrival.pop_until(cutoff) {
            due.extend(self.held.remove(&seq));
        }
        while self.held.len() > self.config.max_buffered as usize {
            let e = Self::pop_due(&mut self.held, &mut self.by_time, i64::MAX).expect("over the limit");
            due.push(e);
        }
        self.sweep();
        due.sort_unstable_by_key(|e| (e.event_time, e.seq));
        out.released.extend(due.iter().map(|e| e.seq));
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut held: Vec<&Event> = self.held.values().collect();
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
        self.held.clear();
        self.by_time.clear();
        self.by_arrival.clear();
        for e in held {
            self.hold(e);
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
        assert!(p.by_time.len() <= 2 * p.held() + 1_024, "stale entries swept: {}", p.by_time.len());
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
