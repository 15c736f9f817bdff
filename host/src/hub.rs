//! The SSE hub of one tenant: frames serialised once and shared by every client, a
//! history ring for `Last-Event-ID` resume, and (for latest-value tenants) the newest
//! payload per key, which serves snapshots and catches up clients that fell behind.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::broadcast;

use crate::bus::LogPosition;
use crate::policy::PendingEvent;

/// One SSE event, ready for the wire.
#[derive(Debug)]
pub struct Frame {
    pub position: LogPosition,
    /// `event: …\nid: …\ndata: […]\n\n`
    pub wire: Bytes,
}

/// What a new client gets: frames to replay, then the live feed.
pub struct Subscription {
    pub backlog: Vec<Arc<Frame>>,
    pub live: broadcast::Receiver<Arc<Frame>>,
    /// The requested resume point is older than the ring: frames were missed.
    pub gap: bool,
}

pub struct Hub {
    event_name: String,
    latest_value: bool,
    history: usize,
    inner: Mutex<HubInner>,
    live: broadcast::Sender<Arc<Frame>>,
}

#[derive(Default)]
struct HubInner {
    ring: VecDeque<Arc<Frame>>,
    /// Newest (event time, payload) per key; only for latest-value tenants.
    latest: BTreeMap<String, (i64, Bytes)>,
    last_position: Option<LogPosition>,
}

impl Hub {
    /// `client_buffer` frames may queue per client before it counts as lagging.
    pub fn new(event_name: &str, latest_value: bool, history: usize, client_buffer: usize) -> Self {
        Hub {
            event_name: event_name.to_string(),
            latest_value,
            history,
            inner: Mutex::default(),
            live: broadcast::channel(client_buffer).0,
        }
    }

    pub fn latest_value(&self) -> bool {
        self.latest_value
    }

    /// Publishes the events released at `position` as one frame.
    pub fn publish(&self, position: LogPosition, released: &[PendingEvent]) {
        let payloads = released.iter().map(|e| &e.payload);
        let frame = Arc::new(Frame { position, wire: self.encode(position, payloads) });
        let mut inner = self.inner.lock().unwrap();
        if self.latest_value {
            for e in released {
                let newer = inner.latest.get(&e.key).is_none_or(|(t, _)| e.event_time >= *t);
                if newer {
                    inner.latest.insert(e.key.clone(), (e.event_time, e.payload.clone()));
                }
            }
        }
        inner.ring.push_back(frame.clone());
        if inner.ring.len() > self.history {
            inner.ring.pop_front();
        }
        inner.last_position = Some(position);
        // Sent under the lock so a concurrent `subscribe` sees it in the ring or live, never both or neither.
        let _ = self.live.send(frame);
    }

    /// Frames after `after` (if given) from the ring, then everything live.
    pub fn subscribe(&self, after: Option<LogPosition>) -> Subscription {
        let inner = self.inner.lock().unwrap();
        let live = self.live.subscribe();
        let Some(after) = after else {
            return Subscription { backlog: Vec::new(), live, gap: false };
        };
        let gap = inner.ring.front().is_some_and(|f| f.position > after)
            && inner.last_position.is_some_and(|p| p > after);
        let backlog = inner.ring.iter().filter(|f| f.position > after).cloned().collect();
        Subscription { backlog, live, gap }
    }

    /// JSON array of the newest payload per key, oldest first (latest-value tenants).
    pub fn snapshot_json(&self) -> Bytes {
        let inner = self.inner.lock().unwrap();
        json_array(sorted_latest(&inner.latest))
    }

    /// The whole newest state as one frame at the last position, for a client that fell
    /// behind; `None` before the first frame or for tenants without latest values.
    pub fn conflated_frame(&self) -> Option<Arc<Frame>> {
        if !self.latest_value {
            return None;
        }
        let inner = self.inner.lock().unwrap();
        let position = inner.last_position?;
        let wire = self.encode(position, sorted_latest(&inner.latest).into_iter());
        Some(Arc::new(Frame { position, wire }))
    }

    fn encode<'a>(&self, position: LogPosition, payloads: impl Iterator<Item = &'a Bytes>) -> Bytes {
        let data = json_array(payloads);
        let mut wire = BytesMut::with_capacity(data.len() + self.event_name.len() + 48);
        wire.put_slice(b"event: ");
        wire.put_slice(self.event_name.as_bytes());
        wire.put_slice(b"\nid: ");
        wire.put_slice(position.to_string().as_bytes());
        wire.put_slice(b"\ndata: ");
        wire.put_slice(&data);
        wire.put_slice(b"\n\n");
        wire.freeze()
    }
}

fn sorted_latest(latest: &BTreeMap<String, (i64, Bytes)>) -> Vec<&Bytes> {
    let mut entries: Vec<(&i64, &String, &Bytes)> = latest.iter().map(|(k, (t, p))| (t, k, p)).collect();
    entries.sort();
    entries.into_iter().map(|(_, _, p)| p).collect()
}

fn json_array<'a>(payloads: impl IntoIterator<Item = &'a Bytes>) -> Bytes {
    let mut data = BytesMut::new();
    data.put_u8(b'[');
    for (i, p) in payloads.into_iter().enumerate() {
        if i > 0 {
            data.put_u8(b',');
        }
        data.put_slice(p);
    }
    data.put_u8(b']');
    data.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::SourceEvent;

    fn released(items: &[(&str, i64)]) -> Vec<PendingEvent> {
        items
            .iter()
            .map(|(k, t)| {
                let payload = Bytes::from(format!(r#"{{"k":"{k}","t":{t}}}"#));
                PendingEvent::for_test(SourceEvent { key: k.to_string(), event_time: *t, payload })
            })
            .collect()
    }

    fn pos(n: u64) -> LogPosition {
        LogPosition { major: n, minor: 0 }
    }

    #[test]
    fn frames_are_serialised_once_with_event_id_and_json_array() {
        let hub = Hub::new("liveMapLocation", false, 8, 8);
        let mut sub = hub.subscribe(None);
        hub.publish(pos(5), &released(&[("a", 1), ("b", 2)]));
        let f = sub.live.try_recv().unwrap();
        assert_eq!(
            std::str::from_utf8(&f.wire).unwrap(),
            "event: liveMapLocation\nid: 5-0\ndata: [{\"k\":\"a\",\"t\":1},{\"k\":\"b\",\"t\":2}]\n\n"
        );
    }

    #[test]
    fn resume_replays_frames_after_the_id_and_flags_gaps() {
        let hub = Hub::new("e", false, 2, 8);
        for n in 1..=3 {
            hub.publish(pos(n), &released(&[("a", n as i64)]));
        }
        let sub = hub.subscribe(Some(pos(2)));
        assert_eq!(sub.backlog.iter().map(|f| f.position).collect::<Vec<_>>(), vec![pos(3)]);
        assert!(!sub.gap);
        let sub = hub.subscribe(Some(pos(0)));
        assert!(sub.gap, "frame 1 fell out of the two-frame ring");
        assert_eq!(sub.backlog.len(), 2);
    }

    #[test]
    fn latest_value_keeps_newest_per_key_sorted_by_time() {
        let hub = Hub::new("e", true, 8, 8);
        hub.publish(pos(1), &released(&[("b", 5), ("a", 7)]));
        hub.publish(pos(2), &released(&[("b", 9), ("a", 3)]));
        assert_eq!(&hub.snapshot_json()[..], br#"[{"k":"a","t":7},{"k":"b","t":9}]"#);
        let f = hub.conflated_frame().unwrap();
        assert_eq!(f.position, pos(2));
    }
}
