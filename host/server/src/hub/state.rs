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
