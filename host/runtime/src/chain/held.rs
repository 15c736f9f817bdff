//! The events inside a chain: each with its payload (which never leaves the host), the
//! sequence number stages know it by, and the index of the stage holding it
//! (`stages.len()` once released by the last). After a swap, events whose stage did
//! not survive wait here to re-enter the new chain.

use std::collections::{BTreeMap, HashMap};

use streamgate_plugin_sdk::KeyMap;

use crate::bindings::wit;
use crate::event::{Event, key_hash};

/// An event held by a stage of the chain.
#[derive(Clone, Debug)]
pub(super) struct HeldEvent {
    pub(super) event: Event,
    pub(super) log_time: i64,
    key_hash: u64,
    /// Index of the stage holding it.
    pub(super) stage: usize,
}

impl HeldEvent {
    fn meta(&self, seq: u64) -> wit::Event {
        wit::Event {
            seq,
            key: self.key_hash,
            event_time: self.event.event_time,
            log_time: self.log_time,
            id: self.event.id,
            tag: self.event.tag,
        }
    }
}

#[derive(Clone, Default)]
pub(super) struct HeldEvents {
    /// By sequence number; the host hands the numbers out, so a fixed hash is safe.
    by_seq: KeyMap<HeldEvent>,
    next_seq: u64,
    /// Events whose stage did not survive a swap, with the stage of the new chain they
    /// enter on the next push (after every stage that inherited state they shaped).
    reinject: Vec<(u64, usize)>,
}

impl HeldEvents {
    pub(super) fn len(&self) -> usize {
        self.by_seq.len()
    }

    /// Takes a new event into the first stage at log time `now`.
    pub(super) fn admit(&mut self, event: Event, now: i64) -> wit::Event {
        let seq = self.next_seq();
        let held = HeldEvent { key_hash: key_hash(&event.key), event, log_time: now, stage: 0 };
        let meta = held.meta(seq);
        self.by_seq.insert(seq, held);
        meta
    }

    fn next_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// The stage holding `seq`, if it is held.
    pub(super) fn stage_of(&self, seq: u64) -> Option<usize> {
        self.by_seq.get(&seq).map(|h| h.stage)
    }

    /// Hands a held event to stage `to`, returning what that stage sees.
    pub(super) fn advance(&mut self, seq: u64, to: usize) -> wit::Event {
        let held = self.by_seq.get_mut(&seq).expect("validated answers name held events");
        held.stage = to;
        held.meta(seq)
    }

    /// An event decided for good (dropped).
    pub(super) fn remove(&mut self, seq: u64) -> Option<Event> {
        self.by_seq.remove(&seq).map(|h| h.event)
    }

    /// An event released by the last stage.
    pub(super) fn release(&mut self, seq: u64) -> Event {
        self.by_seq.remove(&seq).expect("released events are held").event
    }

    /// The events stage `index` holds, oldest first.
    pub(super) fn held_by(&self, index: usize) -> Vec<u64> {
        let mut seqs: Vec<u64> =
            self.by_seq.iter().filter(|(_, h)| h.stage == index).map(|(&seq, _)| seq).collect();
        seqs.sort_unstable();
        seqs
    }

    /// Every held event, for a swap to re-home.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (&u64, &mut HeldEvent)> {
        self.by_seq.iter_mut()
    }

    /// Events left over by an earlier swap and not yet pushed, by the stage they enter.
    pub(super) fn take_waiting(&mut self) -> HashMap<u64, usize> {
        self.reinject.drain(..).collect()
    }

    /// Every held event with its sequence number, in sequence order (a checkpoint).
    pub(super) fn sorted(&self) -> Vec<(u64, &HeldEvent)> {
        let mut all: Vec<(u64, &HeldEvent)> = self.by_seq.iter().map(|(&s, h)| (s, h)).collect();
        all.sort_unstable_by_key(|(s, _)| *s);
        all
    }

    /// The sequence number the next admitted event gets.
    pub(super) fn next_number(&self) -> u64 {
        self.next_seq
    }

    /// Events waiting to re-enter after a swap, with the stage they enter.
    pub(super) fn waiting(&self) -> &[(u64, usize)] {
        &self.reinject
    }

    /// Held events as a checkpoint recorded them (see [`Self::sorted`]).
    pub(super) fn rebuilt(
        held: impl IntoIterator<Item = (u64, Event, i64, usize)>,
        next_seq: u64,
        reinject: Vec<(u64, usize)>,
    ) -> Self {
        let mut by_seq = KeyMap::default();
        for (seq, event, log_time, stage) in held {
            by_seq.insert(seq, HeldEvent { key_hash: key_hash(&event.key), event, log_time, stage });
        }
        HeldEvents { by_seq, next_seq, reinject }
    }

    pub(super) fn set_reinject(&mut self, mut reinject: Vec<(u64, usize)>) {
        reinject.sort_unstable();
        self.reinject = reinject;
    }

    /// Events left over by a swap, by the stage they enter next. They get new sequence
    /// numbers (older than this push's events), so each stage sees them increase.
    pub(super) fn take_reinjected(&mut self) -> BTreeMap<usize, Vec<wit::Event>> {
        let mut injected: BTreeMap<usize, Vec<wit::Event>> = BTreeMap::new();
        for (old, stage) in std::mem::take(&mut self.reinject) {
            let mut held = self.by_seq.remove(&old).expect("reinjected events are held");
            let seq = self.next_seq();
            held.stage = stage;
            injected.entry(stage).or_default().push(held.meta(seq));
            self.by_seq.insert(seq, held);
        }
        injected
    }
}
