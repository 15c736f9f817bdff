//! The SSE hub of one tenant: frames serialised once and shared by every client
//! ([`frame`]), a history ring for `Last-Event-ID` resume ([`ring`]), the newest payload
//! per key (or per key and tag) for latest-value tenants ([`latest`]), per-key
//! routing for clients that asked for some keys only ([`keyed`]), and what of it a
//! checkpoint carries ([`state`]).
//!
//! Expiry: keys the policy chain expires at a log position leave the latest values at
//! that position, before that position's releases are applied, and the position's frame
//! carries their removal (`NAME-expired`, see [`frame`]) to live clients, the ring and
//! keyed clients of those keys. Catch-up frames (a lagging or gap-resuming client) carry
//! the removals the client missed, as far as the ring still knows them.
//!
//! Locks, and why they are small: the policy worker publishes under `state` (ring,
//! latest values, last position) only to push and to send to the all-keys channel, so
//! a concurrent subscriber sees each frame in the ring or live, never neither. Keyed
//! routing takes `keyed` only to find who wants which events; encoding their parts and
//! sending happen outside both. Subscribers filter and encode resumed frames outside
//! the locks too. Only one worker publishes per tenant, so frames never overtake.
//!
//! Shutdown: [`Hub::close`] ends every client's live feed at once (their streams then
//! end with the shutdown hint), so no client waits on a shutdown signal of its own: a
//! wait shared by every client locks a list every client shares, once a frame each.

mod frame;
mod keyed;
mod latest;
mod ring;
mod state;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc};

pub use frame::Frame;
use keyed::KeyedClients;
use latest::Latest;
use ring::Ring;
pub use state::{HubState, KeptValue};

use crate::bus::LogPosition;
use crate::event::Event;
use crate::metrics::TenantMetrics;

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
        self.hub.keyed.lock().unwrap().remove(self.id);
    }
}

/// What the worker updates with every frame.
struct State {
    ring: Ring,
    latest: Latest,
    last_position: Option<LogPosition>,
    /// The all-keys channel; `None` once the hub is closed.
    live: Option<broadcast::Sender<Arc<Frame>>>,
}

pub struct Hub {
    event_name: String,
    latest_value: bool,
    client_buffer: usize,
    metrics: Arc<TenantMetrics>,
    state: Mutex<State>,
    keyed: Mutex<KeyedClients>,
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
            client_buffer,
            metrics,
            state: Mutex::new(State {
                ring: Ring::new(history),
                latest: Latest::default(),
                last_position: None,
                live: Some(broadcast::channel(client_buffer).0),
            }),
            keyed: Mutex::default(),
        }
    }

    /// Keeps the newest value per key and each of these tag hashes apart (instead of
    /// one per key), for latest-value tenants that name tags (`latest_tags`).
    pub fn keeping_tags(self, tags: BTreeSet<u64>) -> Self {
        self.state.lock().unwrap().latest = Latest::per_tag(tags);
        self
    }

    pub fn latest_value(&self) -> bool {
        self.latest_value
    }

    /// Publishes what the chain decided at `position` as one frame (the policy worker):
    /// the keys of the `expired` hashes leave the latest values (latest-value tenants;
    /// unknown hashes are ignored), then the `released` events are applied. Nothing is
    /// published when neither remains; returns whether a frame was.
    pub fn publish(&self, position: LogPosition, released: Vec<Event>, expired: &[u64]) -> bool {
        // Only this worker changes the latest values, so the keys looked up here are
        // still there below.
        let removed = if self.latest_value && !expired.is_empty() {
            self.state.lock().unwrap().latest.keys_of(expired)
        } else {
            Vec::new()
        };
        if removed.is_empty() && released.is_empty() {
            return false;
        }
        self.metrics.expired_keys.fetch_add(removed.len() as u64, Relaxed);
        // Serialised once, outside the locks.
        let frame = Arc::new(Frame::new(&self.event_name, position, removed, released));
        {
            let mut state = self.state.lock().unwrap();
            if self.latest_value {
                state.latest.remove(&frame.removed);
                for e in &frame.events {
                    state.latest.offer(e);
                }
            }
            state.ring.push(frame.clone());
            state.last_position = Some(position);
            // Sent under the lock so a concurrent `subscribe` sees it in the ring or
            // live, never neither.
            if let Some(live) = &state.live {
                let _ = live.send(frame.clone());
            }
        }
        self.route(&frame);
        true
    }

    /// Delivers each keyed client the part of `frame` it asked for.
    fn route(&self, frame: &Frame) {
        let deliveries = {
            let keyed = self.keyed.lock().unwrap();
            if keyed.is_empty() {
                return;
            }
            keyed.deliveries(frame)
        };
        let mut outcomes = Vec::with_capacity(deliveries.len());
        for d in deliveries {
            let part = match &d.catch_up {
                // Catch up with the newest state of its keys instead of the frames it missed.
                Some(keys) if self.latest_value => self.state_frame(frame.position, keys),
                _ => {
                    let removed = d.removed.iter().map(|&i| frame.removed[i].clone()).collect();
                    let events = d.events.iter().map(|&i| frame.events[i].clone()).collect();
                    Frame::new(&self.event_name, frame.position, removed, events)
                }
            };
            match d.tx.try_send(Arc::new(part)) {
                Ok(()) => outcomes.push((d.id, true)),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    outcomes.push((d.id, false));
                    self.metrics.sse_lagged.fetch_add(1, Relaxed);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        let mut keyed = self.keyed.lock().unwrap();
        for (id, fit) in outcomes {
            keyed.delivered(id, fit);
        }
    }

    /// Ends every client's live feed (shutdown): all-keys and keyed clients see their
    /// feed closed after the frames already sent to it, and so do clients that come later.
    pub fn close(&self) {
        self.state.lock().unwrap().live = None;
        self.keyed.lock().unwrap().close();
    }

    /// Frames after `after` (if given) from the ring, then everything live; with
    /// `keys`, only events of those keys. With `snapshot_first` and no `after`, a
    /// latest-value tenant's current state (of those keys) comes first. A frame may
    /// come both in the backlog and live; clients skip ids they already sent.
    pub fn subscribe(
        self: &Arc<Self>,
        after: Option<LogPosition>,
        keys: Option<Vec<String>>,
        snapshot_first: bool,
    ) -> Subscription {
        let wanted: Option<BTreeSet<String>> = keys.map(|k| k.into_iter().collect());
        // Keyed clients register before reading the ring, so no frame falls between.
        let keyed_live = wanted.as_ref().map(|keys| {
            let (tx, rx) = mpsc::channel(self.client_buffer);
            let id = self.keyed.lock().unwrap().add(keys.clone(), tx);
            Live::Keys(rx, KeyedGuard { hub: self.clone(), id })
        });
        let (frames, gap, state, live) = {
            let state = self.state.lock().unwrap();
            let live = keyed_live.unwrap_or_else(|| {
                // A closed hub's new clients get a feed that is already closed.
                Live::All(state.live.as_ref().map_or_else(|| broadcast::channel(1).1, |l| l.subscribe()))
            });
            match after {
                Some(after) => {
                    let gap = state.ring.missed_since(after);
                    (state.ring.after(after), gap, None, live)
                }
                None if snapshot_first && self.latest_value => {
                    let current = state.last_position.map(|p| (p, state.latest.sorted(wanted.as_ref())));
                    (Vec::new(), false, current, live)
                }
                None => (Vec::new(), false, None, live),
            }
        };
        let mut backlog = Vec::with_capacity(frames.len() + 1);
        if let Some((position, events)) = state
            && !events.is_empty()
        {
            backlog.push(Arc::new(Frame::new(&self.event_name, position, Vec::new(), events)));
        }
        match &wanted {
            None => backlog.extend(frames),
            Some(keys) => {
                let wanted = |k: &str| keys.contains(k);
                backlog.extend(frames.iter().filter_map(|f| f.only(&self.event_name, &wanted)).map(Arc::new));
            }
        }
        Subscription { backlog, live, gap }
    }

    /// JSON array of the newest payload per key (of `keys`, if given), oldest first
    /// (latest-value tenants).
    pub fn snapshot_json(&self, keys: Option<&[String]>) -> Bytes {
        let keys: Option<BTreeSet<String>> = keys.map(|k| k.iter().cloned().collect());
        let events = self.state.lock().unwrap().latest.sorted(keys.as_ref());
        frame::json_array(events.iter().map(|e| &e.payload))
    }

    /// The whole newest state as one frame at the last position, for a client that fell
    /// behind after `since` (its last frame): it also removes the keys removed after
    /// `since` that the ring still records and the state does not have. `None` before
    /// the first frame or for tenants without latest values.
    pub fn conflated_frame(&self, since: Option<LogPosition>) -> Option<Arc<Frame>> {
        if !self.latest_value {
            return None;
        }
        let (position, removed, events) = {
            let state = self.state.lock().unwrap();
            let position = state.last_position?;
            let missed = since.map(|s| state.ring.after(s)).unwrap_or_default();
            let removed: BTreeSet<String> = missed
                .iter()
                .flat_map(|f| &f.removed)
                .filter(|k| !state.latest.contains(k))
                .cloned()
                .collect();
            (position, removed, state.latest.sorted(None))
        };
        Some(Arc::new(Frame::new(&self.event_name, position, removed.into_iter().collect(), events)))
    }

    /// The newest state of `keys` at the last position, with the removal of those of
    /// `keys` it does not have: a keyed client resuming from before the ring, which may
    /// hold values since removed. `None` before the first frame or for tenants without
    /// latest values.
    pub fn current_frame_of(&self, keys: &[String]) -> Option<Arc<Frame>> {
        if !self.latest_value {
            return None;
        }
        let keys: BTreeSet<String> = keys.iter().cloned().collect();
        let (position, removed, events) = {
            let state = self.state.lock().unwrap();
            let removed = keys.iter().filter(|k| !state.latest.contains(k)).cloned().collect();
            (state.last_position?, removed, state.latest.sorted(Some(&keys)))
        };
        Some(Arc::new(Frame::new(&self.event_name, position, removed, events)))
    }

    /// The newest state of `keys` as a frame at `position`, with the removal of those of
    /// `keys` it does not have (a keyed client catching up); encoded outside the lock.
    fn state_frame(&self, position: LogPosition, keys: &BTreeSet<String>) -> Frame {
        let (removed, events) = {
            let state = self.state.lock().unwrap();
            let removed = keys.iter().filter(|k| !state.latest.contains(k)).cloned().collect();
            (removed, state.latest.sorted(Some(keys)))
        };
        Frame::new(&self.event_name, position, removed, events)
    }
}

#[cfg(test)]
mod tests;
