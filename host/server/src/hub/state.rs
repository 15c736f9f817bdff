//! What of a hub a checkpoint carries: the latest values a client gets on connect and
//! the position of the last frame. Not the history ring: an instance started from a
//! checkpoint has no frames from before it, so a `Last-Event-ID` older than the
//! checkpoint is treated as one older than the ring (a gap).

use bytes::Bytes;

use super::Hub;
use crate::bus::LogPosition;

/// A hub's state at a log position.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HubState {
    /// Position of the last frame published.
    pub last_position: Option<LogPosition>,
    /// The order the next kept value gets.
    pub next_seq: u64,
    /// The latest values, by key then tag (latest-value tenants; empty otherwise).
    pub latest: Vec<KeptValue>,
}

/// One kept latest value.
#[derive(Clone, Debug, PartialEq)]
pub struct KeptValue {
    pub key: String,
    /// The tag slot (0 for tenants that keep one value per key).
    pub tag: u64,
    pub event_time: i64,
    /// The order in which values were kept.
    pub seq: u64,
    pub payload: Bytes,
}

impl Hub {
    /// The state now (the policy worker, between two frames).
    pub fn state(&self) -> HubState {
        let state = self.state.lock().unwrap();
        let (latest, next_seq) = state.latest.values();
        HubState { last_position: state.last_position, next_seq, latest }
    }

    /// Starts from a checkpoint's state, before any frame is published: the ring counts
    /// every frame up to the last one as already gone, so a resume from an older id is
    /// a gap and one from the last frame's id misses nothing.
    pub fn restore(&self, hub: HubState) {
        let mut state = self.state.lock().unwrap();
        state.latest.restore(hub.latest, hub.next_seq);
        if let Some(last) = hub.last_position {
            state.ring.start_after(last);
        }
        state.last_position = hub.last_position;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::event::Event;
    use crate::metrics::TenantMetrics;

    fn hub() -> Arc<Hub> {
        Arc::new(Hub::new("e", true, 8, 8, Arc::new(TenantMetrics::new("t"))))
    }

    fn at(n: u64) -> LogPosition {
        LogPosition { major: n, minor: 0 }
    }

    fn event(key: &str, t: i64) -> Event {
        let payload = Bytes::from(format!(r#"{{"k":"{key}","t":{t}}}"#));
        Event { key: key.into(), event_time: t, payload, ..Event::default() }
    }

    #[test]
    fn a_restored_hub_gives_the_same_state_on_connect_and_counts_older_ids_as_a_gap() {
        let original = hub();
        original.publish(at(1), vec![event("a", 1), event("b", 1)], &[]);
        original.publish(at(2), vec![event("a", 2)], &[]);
        let restored = hub();
        restored.restore(original.state());
        assert_eq!(restored.state(), original.state());
        let first = |h: &Arc<Hub>| h.subscribe(None, None, true).backlog[0].wire.clone();
        assert_eq!(first(&restored), first(&original), "the same first frame on connect");
        assert!(restored.subscribe(Some(at(1)), None, false).gap, "older than the restored frames");
        let from_last = restored.subscribe(Some(at(2)), None, false);
        assert!(!from_last.gap && from_last.backlog.is_empty(), "nothing missed from the last frame");
        // Both go on alike.
        for h in [&original, &restored] {
            h.publish(at(3), vec![event("b", 3)], &[]);
        }
        assert_eq!(first(&restored), first(&original));
    }
}
