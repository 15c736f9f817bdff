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

pub struct Ordering {
    config: OrderingConfig,
    held: Held,
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
        Ok(Ordering { config, held: Held::default() })
    }

    fn push(&mut self, now: i64, events: &[Event], out: &mut Decisions) {
        for e in events {
            self.held.insert(*e);
        }
        let cutoff = now.saturating_sub(self.config.window_ms);
        let mut due = Vec::new();
        while let Some(e) = self.held.pop_by_time(cutoff) {
            due.push(e);
        }
        while let Some(e) = self.held.pop_by_arrival(cutoff) {
            due.push(e);
        }
        while self.held.len() > self.config.max_buffered as usize {
            due.push(self.held.pop_by_time(i64::MAX).expect("over the limit"));
        }
        self.held.sweep();
        due.sort_unstable_by_key(|e| (e.event_time, e.seq));
        out.released.extend(due.iter().map(|e| e.seq));
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
        self.held = Held::default();
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
