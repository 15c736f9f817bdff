//! The newest payload per key of a latest-value tenant: serves snapshots, a new
//! client's first frame, and clients that fell behind. Keys leave it when the policy
//! chain expires them; the chain names keys by hash ([`key_hash`]), so an index from
//! hash to key string is kept alongside.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;

use crate::event::{Event, key_hash};

#[derive(Default)]
pub(super) struct Latest {
    /// Key → (event time, payload) of its newest event.
    by_key: BTreeMap<String, (i64, Bytes)>,
    /// [`key_hash`] → key, for every key in `by_key`.
    by_hash: HashMap<u64, String>,
}

impl Latest {
    /// Keeps `e` if it is not older than what its key has.
    pub(super) fn offer(&mut self, e: &Event) {
        match self.by_key.get_mut(&e.key) {
            Some((newest, payload)) => {
                if e.event_time >= *newest {
                    (*newest, *payload) = (e.event_time, e.payload.clone());
                }
            }
            None => {
                self.by_hash.insert(key_hash(&e.key), e.key.clone());
                self.by_key.insert(e.key.clone(), (e.event_time, e.payload.clone()));
            }
        }
    }

    /// The keys it has of these hashes, sorted (hashes of keys it does not have are
    /// ignored).
    pub(super) fn keys_of(&self, hashes: &[u64]) -> Vec<String> {
        let mut keys: Vec<String> = hashes.iter().filter_map(|h| self.by_hash.get(h).cloned()).collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// Forgets these keys.
    pub(super) fn remove(&mut self, keys: &[String]) {
        for key in keys {
            if self.by_key.remove(key).is_some() {
                self.by_hash.remove(&key_hash(key));
            }
        }
    }

    pub(super) fn contains(&self, key: &str) -> bool {
        self.by_key.contains_key(key)
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

    #[cfg(test)]
    pub(super) fn indexed(&self) -> usize {
        self.by_hash.len()
    }
}
