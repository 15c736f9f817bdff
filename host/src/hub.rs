//! The SSE hub of one tenant: frames serialised once and shared by every client, a
//! history ring for `Last-Event-ID` resume, per-key routing for clients that asked for
//! some keys only, and (for latest-value tenants) the newest payload per key, which
//! serves snapshots and catches up clients that fell behind.
//!
//! Routing is by key lookup: each published event finds its key's subscribers in a map,
//! so the cost is per delivered event, never per client times events.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::{broadcast, mpsc};

use crate::bus::LogPosition;
use crate::metrics::TenantMetrics;
use crate::policy::PendingEvent;

/// One SSE event, ready for the wire, with the events it carries (for key routing).
#[derive(Debug)]
pub struct Frame {
    pub position: LogPosition,
    /// `event: …\nid: …\ndata: […]\n\n`
    pub wire: Bytes,
    events: Vec<FrameEvent>,
}

#[derive(Debug, Clone)]
struct FrameEvent {
    key: String,
    payload: Bytes,
}

/// What a new client gets: frames to replay, then the live feed.
pub struct Subscription {
    pub backlog: Vec<Arc<Frame>>,
    pub live: Live,
    /// The requested resume point is older than the ring: frames were missed.
    pub gap: bool,
}

/// The live feed of one client.
pub enum Live {
    /// Every frame, shared with every other all-keys client.
    All(broadcast::Receiver<Arc<Frame>>),
    /// Frames cut down to the client's keys; unsubscribes on drop.
    Keys(mpsc::Receiver<Arc<Frame>>, KeyedGuard),
}

/// Removes a keyed client from the hub when its stream ends.
pub struct KeyedGuard {
    hub: Arc<Hub>,
    id: u64,
}

impl Drop for KeyedGuard {
    fn drop(&mut self) {
        let mut inner = self.hub.inner.lock().unwrap();
        if let Some(client) = inner.clients.remove(&self.id) {
            for key in client.keys {
                if let Some(ids) = inner.keyed.get_mut(&key) {
                    ids.retain(|&i| i != self.id);
                    if ids.is_empty() {
                        inner.keyed.remove(&key);
                    }
                }
            }
        }
    }
}

pub struct Hub {
    event_name: String,
    latest_value: bool,
    history: usize,
    client_buffer: usize,
    metrics: Arc<TenantMetrics>,
    inner: Mutex<HubInner>,
    live: broadcast::Sender<Arc<Frame>>,
}

#[derive(Default)]
struct HubInner {
    ring: VecDeque<Arc<Frame>>,
    /// Newest (event time, payload) per key; only for latest-value tenants.
    latest: BTreeMap<String, (i64, Bytes)>,
    last_position: Option<LogPosition>,
    /// Key → ids of the keyed clients that want it.
    keyed: HashMap<String, Vec<u64>>,
    clients: HashMap<u64, KeyedClient>,
    next_client: u64,
}

struct KeyedClient {
    keys: Vec<String>,
    tx: mpsc::Sender<Arc<Frame>>,
    /// A frame was dropped because the client was full: catch up first.
    missed: bool,
}

impl Hub {
    /// `client_buffer` frames may queue per client before it counts as lagging.
    pub fn new(
        event_name: &str,
        latest_value: bool,
        history: usize,
        client_buffer: usize,
        metrics: Arc<TenantMetrics>,
    ) -> Self {
        Hub {
            event_name: event_name.to_string(),
            latest_value,
            history,
            client_buffer,
            metrics,
            inner: Mutex::default(),
            live: broadcast::channel(client_buffer).0,
        }
    }

    pub fn latest_value(&self) -> bool {
        self.latest_value
    }

    /// Publishes the events released at `position` as one frame.
    pub fn publish(&self, position: LogPosition, released: Vec<PendingEvent>) {
        let times: Vec<i64> = released.iter().map(|e| e.event_time).collect();
        let events: Vec<FrameEvent> =
            released.into_iter().map(|e| FrameEvent { key: e.key, payload: e.payload }).collect();
        // Serialised once, outside the lock.
        let frame = Arc::new(Frame { position, wire: self.encode(position, events.iter()), events });
        let mut inner = self.inner.lock().unwrap();
        if self.latest_value {
            for (e, &t) in frame.events.iter().zip(&times) {
                if inner.latest.get(&e.key).is_none_or(|(newest, _)| t >= *newest) {
                    inner.latest.insert(e.key.clone(), (t, e.payload.clone()));
                }
            }
        }
        inner.ring.push_back(frame.clone());
        if inner.ring.len() > self.history {
            inner.ring.pop_front();
        }
        inner.last_position = Some(position);
        if !inner.keyed.is_empty() {
            self.route(&mut inner, &frame);
        }
        // Sent under the lock so a concurrent `subscribe` sees it in the ring or live, never both or neither.
        let _ = self.live.send(frame);
    }

    /// Delivers each keyed client the part of `frame` it asked for.
    fn route(&self, inner: &mut HubInner, frame: &Frame) {
        let mut wanted: BTreeMap<u64, Vec<&FrameEvent>> = BTreeMap::new();
        for e in &frame.events {
            if let Some(ids) = inner.keyed.get(&e.key) {
                for &id in ids {
                    wanted.entry(id).or_default().push(e);
                }
            }
        }
        for (id, events) in wanted {
            let client = inner.clients.get_mut(&id).expect("keyed ids have clients");
            let part = if client.missed && self.latest_value {
                // Catch up with the newest state of its keys instead of the frames it missed.
                let keys: BTreeSet<&str> = client.keys.iter().map(String::as_str).collect();
                self.state_frame(&inner.latest, frame.position, Some(&keys))
            } else {
                let events: Vec<FrameEvent> = events.into_iter().cloned().collect();
                Frame { position: frame.position, wire: self.encode(frame.position, events.iter()), events }
            };
            match client.tx.try_send(Arc::new(part)) {
                Ok(()) => client.missed = false,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    client.missed = true;
                    self.metrics.sse_lagged.fetch_add(1, Relaxed);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }

    /// Frames after `after` (if given) from the ring, then everything live; with
    /// `keys`, only events of those keys. With `snapshot_first` and no `after`, a
    /// latest-value tenant's current state (of those keys) comes first.
    pub fn subscribe(
        self: &Arc<Self>,
        after: Option<LogPosition>,
        keys: Option<Vec<String>>,
        snapshot_first: bool,
    ) -> Subscription {
        let mut inner = self.inner.lock().unwrap();
        let wanted: Option<BTreeSet<String>> = keys.as_ref().map(|k| k.iter().cloned().collect());
        let filter = wanted.as_ref().map(|w| w.iter().map(String::as_str).collect::<BTreeSet<&str>>());
        let mut backlog = Vec::new();
        let mut gap = false;
        match after {
            Some(after) => {
                gap = inner.ring.front().is_some_and(|f| f.position > after)
                    && inner.last_position.is_some_and(|p| p > after);
                for f in inner.ring.iter().filter(|f| f.position > after) {
                    match &filter {
                        None => backlog.push(f.clone()),
                        Some(keys) => {
                            let events: Vec<FrameEvent> =
                                f.events.iter().filter(|e| keys.contains(e.key.as_str())).cloned().collect();
                            if !events.is_empty() {
                                let wire = self.encode(f.position, events.iter());
                                backlog.push(Arc::new(Frame { position: f.position, wire, events }));
                            }
                        }
                    }
                }
            }
            None if snapshot_first && self.latest_value => {
                if let Some(position) = inner.last_position {
                    let state = self.state_frame(&inner.latest, position, filter.as_ref());
                    if !state.events.is_empty() {
                        backlog.push(Arc::new(state));
                    }
                }
            }
            None => {}
        }
        let live = match wanted {
            None => Live::All(self.live.subscribe()),
            Some(keys) => {
                let (tx, rx) = mpsc::channel(self.client_buffer);
                let id = inner.next_client;
                inner.next_client += 1;
                for key in &keys {
                    inner.keyed.entry(key.clone()).or_default().push(id);
                }
                inner.clients.insert(id, KeyedClient { keys: keys.into_iter().collect(), tx, missed: false });
                Live::Keys(rx, KeyedGuard { hub: self.clone(), id })
            }
        };
        Subscription { backlog, live, gap }
    }

    /// JSON array of the newest payload per key (of `keys`, if given), oldest first
    /// (latest-value tenants).
    pub fn snapshot_json(&self, keys: Option<&[String]>) -> Bytes {
        let inner = self.inner.lock().unwrap();
        let keys: Option<BTreeSet<&str>> = keys.map(|k| k.iter().map(String::as_str).collect());
        json_array(sorted_latest(&inner.latest, keys.as_ref()).iter().map(|e| &e.payload))
    }

    /// The whole newest state as one frame at the last position, for a client that fell
    /// behind; `None` before the first frame or for tenants without latest values.
    pub fn conflated_frame(&self) -> Option<Arc<Frame>> {
        if !self.latest_value {
            return None;
        }
        let inner = self.inner.lock().unwrap();
        let position = inner.last_position?;
        Some(Arc::new(self.state_frame(&inner.latest, position, None)))
    }

    fn state_frame(
        &self,
        latest: &BTreeMap<String, (i64, Bytes)>,
        position: LogPosition,
        keys: Option<&BTreeSet<&str>>,
    ) -> Frame {
        let events = sorted_latest(latest, keys);
        Frame { position, wire: self.encode(position, events.iter()), events }
    }

    fn encode<'a>(&self, position: LogPosition, events: impl Iterator<Item = &'a FrameEvent>) -> Bytes {
        let data = json_array(events.map(|e| &e.payload));
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

/// Latest payloads (of `keys`, if given), oldest event time first.
fn sorted_latest(latest: &BTreeMap<String, (i64, Bytes)>, keys: Option<&BTreeSet<&str>>) -> Vec<FrameEvent> {
    let mut entries: Vec<(i64, &String, &Bytes)> = match keys {
        None => latest.iter().map(|(k, (t, p))| (*t, k, p)).collect(),
        Some(keys) => {
            keys.iter().filter_map(|k| latest.get_key_value(*k)).map(|(k, (t, p))| (*t, k, p)).collect()
        }
    };
    entries.sort();
    entries.into_iter().map(|(_, k, p)| FrameEvent { key: k.clone(), payload: p.clone() }).collect()
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

    fn hub(latest_value: bool, history: usize, buffer: usize) -> Arc<Hub> {
        Arc::new(Hub::new("e", latest_value, history, buffer, Arc::new(TenantMetrics::new("t"))))
    }

    fn released(items: &[(&str, i64)]) -> Vec<PendingEvent> {
        items
            .iter()
            .map(|(k, t)| {
                let payload = Bytes::from(format!(r#"{{"k":"{k}","t":{t}}}"#));
                PendingEvent::for_test(SourceEvent {
                    key: k.to_string(),
                    event_time: *t,
                    payload,
                    ..Default::default()
                })
            })
            .collect()
    }

    fn pos(n: u64) -> LogPosition {
        LogPosition { major: n, minor: 0 }
    }

    fn data(f: &Frame) -> &str {
        let text = std::str::from_utf8(&f.wire).unwrap();
        text.split("data: ").nth(1).unwrap().trim_end()
    }

    fn next(live: &mut Live) -> Option<Arc<Frame>> {
        match live {
            Live::All(rx) => rx.try_recv().ok(),
            Live::Keys(rx, _) => rx.try_recv().ok(),
        }
    }

    #[test]
    fn frames_are_serialised_once_with_event_id_and_json_array() {
        let hub = Arc::new(Hub::new("liveMapLocation", false, 8, 8, Arc::new(TenantMetrics::new("t"))));
        let mut sub = hub.subscribe(None, None, false);
        hub.publish(pos(5), released(&[("a", 1), ("b", 2)]));
        let f = next(&mut sub.live).unwrap();
        assert_eq!(
            std::str::from_utf8(&f.wire).unwrap(),
            "event: liveMapLocation\nid: 5-0\ndata: [{\"k\":\"a\",\"t\":1},{\"k\":\"b\",\"t\":2}]\n\n"
        );
    }

    #[test]
    fn resume_replays_frames_after_the_id_and_flags_gaps() {
        let hub = hub(false, 2, 8);
        for n in 1..=3 {
            hub.publish(pos(n), released(&[("a", n as i64)]));
        }
        let sub = hub.subscribe(Some(pos(2)), None, false);
        assert_eq!(sub.backlog.iter().map(|f| f.position).collect::<Vec<_>>(), vec![pos(3)]);
        assert!(!sub.gap);
        let sub = hub.subscribe(Some(pos(0)), None, false);
        assert!(sub.gap, "frame 1 fell out of the two-frame ring");
        assert_eq!(sub.backlog.len(), 2);
    }

    #[test]
    fn latest_value_keeps_newest_per_key_sorted_by_time() {
        let hub = hub(true, 8, 8);
        hub.publish(pos(1), released(&[("b", 5), ("a", 7)]));
        hub.publish(pos(2), released(&[("b", 9), ("a", 3)]));
        assert_eq!(&hub.snapshot_json(None)[..], br#"[{"k":"a","t":7},{"k":"b","t":9}]"#);
        assert_eq!(&hub.snapshot_json(Some(&["b".into()]))[..], br#"[{"k":"b","t":9}]"#);
        let f = hub.conflated_frame().unwrap();
        assert_eq!(f.position, pos(2));
    }

    #[test]
    fn keyed_clients_get_only_their_keys_in_order_with_the_frame_id() {
        let hub = hub(false, 8, 8);
        let mut ab = hub.subscribe(None, Some(vec!["a".into(), "b".into()]), false);
        let mut c = hub.subscribe(None, Some(vec!["c".into()]), false);
        hub.publish(pos(1), released(&[("b", 1), ("x", 1), ("a", 2), ("b", 3)]));
        hub.publish(pos(2), released(&[("x", 4)]));
        let f = next(&mut ab.live).unwrap();
        assert_eq!(f.position, pos(1));
        assert_eq!(data(&f), r#"[{"k":"b","t":1},{"k":"a","t":2},{"k":"b","t":3}]"#);
        assert!(next(&mut ab.live).is_none(), "no frame without its keys");
        assert!(next(&mut c.live).is_none(), "c was never published");
        // Resume for keyed clients filters the ring the same way.
        let resumed = hub.subscribe(Some(pos(0)), Some(vec!["a".into()]), false);
        assert_eq!(resumed.backlog.len(), 1);
        assert_eq!(data(&resumed.backlog[0]), r#"[{"k":"a","t":2}]"#);
    }

    #[test]
    fn dropping_a_keyed_subscription_unregisters_it() {
        let hub = hub(false, 8, 8);
        let sub = hub.subscribe(None, Some(vec!["a".into()]), false);
        assert_eq!(hub.inner.lock().unwrap().keyed.len(), 1);
        drop(sub);
        let inner = hub.inner.lock().unwrap();
        assert!(inner.keyed.is_empty() && inner.clients.is_empty());
    }

    #[test]
    fn a_full_keyed_client_is_counted_and_catches_up_with_the_newest_state() {
        let hub = hub(true, 8, 1);
        let mut slow = hub.subscribe(None, Some(vec!["a".into()]), false);
        hub.publish(pos(1), released(&[("a", 1)]));
        hub.publish(pos(2), released(&[("a", 2)]));
        assert_eq!(hub.metrics.sse_lagged.load(Relaxed), 1, "the second frame did not fit");
        assert_eq!(data(&next(&mut slow.live).unwrap()), r#"[{"k":"a","t":1}]"#);
        hub.publish(pos(3), released(&[("b", 3), ("a", 3)]));
        let f = next(&mut slow.live).unwrap();
        assert_eq!((f.position, data(&f)), (pos(3), r#"[{"k":"a","t":3}]"#));
    }

    #[test]
    fn snapshot_first_gives_a_new_client_every_key_at_once() {
        let hub = hub(true, 8, 8);
        hub.publish(pos(1), released(&[("a", 1), ("b", 2)]));
        hub.publish(pos(2), released(&[("c", 3)]));
        let all = hub.subscribe(None, None, true);
        assert_eq!(all.backlog.len(), 1);
        assert_eq!(all.backlog[0].position, pos(2));
        assert_eq!(data(&all.backlog[0]), r#"[{"k":"a","t":1},{"k":"b","t":2},{"k":"c","t":3}]"#);
        let one = hub.subscribe(None, Some(vec!["b".into(), "zz".into()]), true);
        assert_eq!(data(&one.backlog[0]), r#"[{"k":"b","t":2}]"#);
        assert!(hub.subscribe(None, None, false).backlog.is_empty());
    }
}
