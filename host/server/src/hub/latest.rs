//! The newest payload per key of a latest-value tenant, or per key and tag when the
//! tenant names tags to keep apart (`latest_tags`, e.g. a queue user's newest `rank` and
//! `admitted`): serves snapshots, a new client's first frame, and clients that fell
//! behind. Keys (with all their tags) leave it when the policy chain expires them; the
//! chain names keys by hash ([`key_hash`]), so an index from hash to key string is kept
//! alongside.
//!
//! Bounded by the keys the tenant has at once (expiry removes them) times the tags it
//! keeps apart: events whose tag is not one of those tags are delivered but not kept.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;

use crate::event::{Event, key_hash};

/// Tag slot of a tenant that keeps one value per key.
const ONE_PER_KEY: u64 = 0;

/// One kept value.
struct Kept {
    event_time: i64,
    /// Order in which values were kept (log order, since only the worker offers).
    seq: u64,
    payload: Bytes,
}

#[derive(Default)]
pub(super) struct Latest {
    /// Tag hashes kept apart per key; `None`: one value per key, whatever its tag.
    tags: Option<BTreeSet<u64>>,
    /// Key → tag slot → its newest value.
    by_key: BTreeMap<String, BTreeMap<u64, Kept>>,
    /// [`key_hash`] → key, for every key in `by_key`.
    by_hash: HashMap<u64, String>,
    next_seq: u64,
}

impl Latest {
    /// Keeps the newest value per key and each of these tag hashes.
    pub(super) fn per_tag(tags: BTreeSet<u64>) -> Self {
        Latest { tags: Some(tags), ..Latest::default() }
    }

    /// Keeps `e` if it is not older than what its key (and tag) has; an event whose tag
    /// is not kept apart is ignored by a per-tag state.
    pub(super) fn offer(&mut self, e: &Event) {
        let slot = match &self.tags {
            None => ONE_PER_KEY,
            Some(tags) if tags.contains(&e.tag) => e.tag,
            Some(_) => return,
        };
        let seq = self.next_seq;
        let kept = Kept { event_time: e.event_time, seq, payload: e.payload.clone() };
        match self.by_key.get_mut(&e.key) {
            Some(slots) => match slots.get_mut(&slot) {
                Some(old) if e.event_time < old.event_time => return,
                Some(old) => *old = kept,
                None => {
                    slots.insert(slot, kept);
                }
            },
            None => {
                self.by_hash.insert(key_hash(&e.key), e.key.clone());
                self.by_key.insert(e.key.clone(), BTreeMap::from([(slot, kept)]));
            }
        }
        self.next_seq += 1;
    }

    /// The keys it has of these hashes, sorted (hashes of keys it does not have are
    /// ignored).
    pub(super) fn keys_of(&self, hashes: &[u64]) -> Vec<String> {
        let mut keys: Vec<String> = hashes.iter().filter_map(|h| self.by_hash.get(h).cloned()).collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// Forgets these keys, all their tags.
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

    /// The newest events of every key (of `keys`, if given): one value per key oldest
    /// event time first, or, per key and tag, in the order they were kept (log order),
    /// so a client applying them in turn ends in the current state.
    pub(super) fn sorted(&self, keys: Option<&BTreeSet<String>>) -> Vec<Event> {
        let chosen: Vec<(&String, &BTreeMap<u64, Kept>)> = match keys {
            None => self.by_key.iter().collect(),
            Some(keys) => keys.iter().filter_map(|k| self.by_key.get_key_value(k)).collect(),
        };
        let mut entries: Vec<(&String, u64, &Kept)> =
            chosen.into_iter().flat_map(|(k, slots)| slots.iter().map(move |(t, v)| (k, *t, v))).collect();
        if self.tags.is_some() {
            entries.sort_by_key(|(_, _, v)| v.seq);
        } else {
            entries.sort_by(|a, b| (a.2.event_time, a.0).cmp(&(b.2.event_time, b.0)));
        }
        entries
            .into_iter()
            .map(|(k, tag, v)| Event {
                key: k.clone(),
                event_time: v.event_time,
                tag,
                payload: v.payload.clone(),
                ..Event::default()
            })
            .collect()
    }

    /// Every kept value, by key then tag, and the next keeping order (a checkpoint).
    pub(super) fn values(&self) -> (Vec<super::KeptValue>, u64) {
        let values = self
            .by_key
            .iter()
            .flat_map(|(k, slots)| {
                slots.iter().map(move |(&tag, v)| super::KeptValue {
                    key: k.clone(),
                    tag,
                    event_time: v.event_time,
                    seq: v.seq,
                    payload: v.payload.clone(),
                })
            })
            .collect();
        (values, self.next_seq)
    }

    /// Replaces what is kept with a checkpoint's values (tags kept apart stay as set).
    pub(super) fn restore(&mut self, values: Vec<super::KeptValue>, next_seq: u64) {
        self.by_key.clear();
        self.by_hash.clear();
        for v in values {
            self.by_hash.insert(key_hash(&v.key), v.key.clone());
            let kept = Kept { event_time: v.event_time, seq: v.seq, payload: v.payload };
            self.by_key.entry(v.key).or_default().insert(v.tag, kept);
        }
        self.next_seq = next_seq;
    }

    #[cfg(test)]
    pub(super) fn indexed(&self) -> usize {
        self.by_hash.len()
    }
}
