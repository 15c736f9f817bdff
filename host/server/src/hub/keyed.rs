//! Clients that asked for some keys only (`?key=K`): each published event finds its
//! key's subscribers in a map, so routing costs per delivered event, never per client
//! times events. A client whose buffer is full misses the frame and is marked, to be
//! caught up with the newest state of its keys (latest-value tenants).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::frame::Frame;

pub(super) struct KeyedClient {
    pub(super) keys: BTreeSet<String>,
    pub(super) tx: mpsc::Sender<Arc<Frame>>,
    /// A frame was dropped because the client was full: catch up first.
    pub(super) missed: bool,
}

/// A delivery to make outside the lock: which client, through which sender, of which
/// of the frame's removed keys and events (indexes), and whether it must catch up instead.
pub(super) struct Delivery {
    pub(super) id: u64,
    pub(super) tx: mpsc::Sender<Arc<Frame>>,
    pub(super) removed: Vec<usize>,
    pub(super) events: Vec<usize>,
    /// The client's keys, when it missed a frame and gets their newest state instead.
    pub(super) catch_up: Option<BTreeSet<String>>,
}

#[derive(Default)]
pub(super) struct KeyedClients {
    /// Key → ids of the clients that want it.
    by_key: HashMap<String, Vec<u64>>,
    clients: HashMap<u64, KeyedClient>,
    next_id: u64,
    /// The hub closed: clients added now get a closed feed.
    closed: bool,
}

impl KeyedClients {
    pub(super) fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    pub(super) fn add(&mut self, keys: BTreeSet<String>, tx: mpsc::Sender<Arc<Frame>>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        if self.closed {
            return id; // `tx` dropped: the client's feed is closed
        }
        for key in &keys {
            self.by_key.entry(key.clone()).or_default().push(id);
        }
        self.clients.insert(id, KeyedClient { keys, tx, missed: false });
        id
    }

    /// Drops every client's sender (their feeds end) and refuses new ones.
    pub(super) fn close(&mut self) {
        self.closed = true;
        self.by_key.clear();
        self.clients.clear();
    }

    pub(super) fn remove(&mut self, id: u64) {
        let Some(client) = self.clients.remove(&id) else { return };
        for key in client.keys {
            if let Some(ids) = self.by_key.get_mut(&key) {
                ids.retain(|&i| i != id);
                if ids.is_empty() {
                    self.by_key.remove(&key);
                }
            }
        }
    }

    /// Who gets which removed keys and events of `frame`, by client id.
    pub(super) fn deliveries(&self, frame: &Frame) -> Vec<Delivery> {
        let mut wanted: BTreeMap<u64, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
        for (i, key) in frame.removed.iter().enumerate() {
            for &id in self.by_key.get(key).into_iter().flatten() {
                wanted.entry(id).or_default().0.push(i);
            }
        }
        for (i, e) in frame.events.iter().enumerate() {
            for &id in self.by_key.get(&e.key).into_iter().flatten() {
                wanted.entry(id).or_default().1.push(i);
            }
        }
        wanted
            .into_iter()
            .map(|(id, (removed, events))| {
                let client = &self.clients[&id];
                let catch_up = client.missed.then(|| client.keys.clone());
                Delivery { id, tx: client.tx.clone(), removed, events, catch_up }
            })
            .collect()
    }

    /// Records whether a delivery fit into the client's buffer.
    pub(super) fn delivered(&mut self, id: u64, fit: bool) {
        if let Some(client) = self.clients.get_mut(&id) {
            client.missed = !fit;
        }
    }

    #[cfg(test)]
    pub(super) fn counts(&self) -> (usize, usize) {
        (self.by_key.len(), self.clients.len())
    }
}
