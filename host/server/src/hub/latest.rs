//! The newest payload per key of a latest-value tenant: serves snapshots, a new
//! client's first frame, and clients that fell behind.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::event::Event;

#[derive(Default)]
pub(super) struct Latest {
    /// Key → (event time, payload) of its newest event.
    by_key: BTreeMap<String, (i64, Bytes)>,
}

impl Latest {
    /// Keeps `e` if it is not older than what its key has.
    pub(super) fn offer(&mut self, e: &Event) {
        if self.by_key.get(&e.key).is_none_or(|(newest, _)| e.event_time >= *newest) {
            self.by_key.insert(e.key.clone(), (e.event_time, e.payload.clone()));
        }
    }

    /// The newest event of every key (of `keys`, if given), oldest event time first.
    pub(super) fn sorted(&self, keys: Option<&BTreeSet<String>>) -> Vec<Event> {
        let mut entries: Vec<(i64, &String, &Bytes)> = match keys {
            None => self.by_key.iter().map(|(k, (t, p))| (*t, k, p)).collect(),
            Some(keys) => keys
                .iter()
                .filter_map(|k| self.by_key.get_key_value(k))
                .map(|(k, (t, p))| (*t, k, p))
                .collect(),
        };
        entries.sort();
        entries
            .into_iter()
            .map(|(t, k, p)| Event { key: k.clone(), event_time: t, payload: p.clone(), ..Event::default() })
            .collect()
    }
}
