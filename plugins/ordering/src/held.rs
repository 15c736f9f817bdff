//! The events an ordering stage holds: a slab of events, indexed twice, by event time
//! (a min-heap) and by arrival (a queue while log times rise, a heap for the few that do
//! not). Releasing through one index leaves a stale entry in the other: it names a slot
//! whose event has another sequence number (or none) and is skipped when it surfaces;
//! the indexes are rebuilt when stale entries outnumber the held events.
//!
//! No hashing on the hot path: holding and releasing an event are a slot write and a
//! heap operation each.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use streamgate_plugin_sdk::Event;

/// An index entry: (time, seq, slot). Sequence numbers are unique, so the order is the
/// (time, seq) order.
type Entry = (i64, u64, u32);
type MinHeap = BinaryHeap<Reverse<Entry>>;

#[derive(Default)]
pub(crate) struct Held {
    slots: Vec<Option<Event>>,
    free: Vec<u32>,
    live: usize,
    by_time: MinHeap,
    /// Arrivals in rising log time order.
    in_order: VecDeque<Entry>,
    /// Arrivals with a log time earlier than the queue's last.
    late: MinHeap,
}

impl Held {
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn insert(&mut self, e: Event) {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(e);
                slot
            }
            None => {
                self.slots.push(Some(e));
                (self.slots.len() - 1) as u32
            }
        };
        self.live += 1;
        self.by_time.push(Reverse((e.event_time, e.seq, slot)));
        match self.in_order.back() {
            Some(&(last, _, _)) if e.log_time < last => self.late.push(Reverse((e.log_time, e.seq, slot))),
            _ => self.in_order.push_back((e.log_time, e.seq, slot)),
        }
    }

    /// The event in `slot` if it is still the one with `seq`.
    fn take(&mut self, seq: u64, slot: u32) -> Option<Event> {
        let cell = &mut self.slots[slot as usize];
        match *cell {
            Some(e) if e.seq == seq => {
                *cell = None;
                self.free.push(slot);
                self.live -= 1;
                Some(e)
            }
            _ => None,
        }
    }

    /// The held event with the earliest event time, if that time is at most `cutoff`.
    pub fn pop_by_time(&mut self, cutoff: i64) -> Option<Event> {
        while let Some(&Reverse((t, seq, slot))) = self.by_time.peek() {
            if t > cutoff {
                return None;
            }
            self.by_time.pop();
            if let Some(e) = self.take(seq, slot) {
                return Some(e);
            }
        }
        None
    }

    /// The held event that arrived first, if it arrived at log time `cutoff` or before.
    pub fn pop_by_arrival(&mut self, cutoff: i64) -> Option<Event> {
        loop {
            let queued = self.in_order.front().copied();
            let late = self.late.peek().map(|&Reverse(entry)| entry);
            let (_, seq, slot) = match (queued, late) {
                (Some(q), Some(l)) if l < q && l.0 <= cutoff => self.late.pop().map(|Reverse(l)| l)?,
                (Some(q), _) if q.0 <= cutoff => self.in_order.pop_front()?,
                (None, Some(l)) if l.0 <= cutoff => self.late.pop().map(|Reverse(l)| l)?,
                _ => return None,
            };
            if let Some(e) = self.take(seq, slot) {
                return Some(e);
            }
        }
    }

    /// Rebuilds an index whose stale entries outnumber the held events (amortised O(1)
    /// per event; keeps a far-future event time from pinning garbage forever).
    pub fn sweep(&mut self) {
        let limit = 2 * self.live + 1_024;
        if self.by_time.len() > limit {
            self.by_time = self.entries(|e| e.event_time).map(Reverse).collect();
        }
        if self.in_order.len() + self.late.len() > limit {
            let mut arrivals: Vec<Entry> = self.entries(|e| e.log_time).collect();
            arrivals.sort_unstable();
            self.in_order = arrivals.into();
            self.late.clear();
        }
    }

    fn entries(&self, time: impl Fn(&Event) -> i64) -> impl Iterator<Item = Entry> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(move |(slot, e)| e.as_ref().map(|e| (time(e), e.seq, slot as u32)))
    }

    /// Every held event, in no particular order.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.slots.iter().flatten()
    }

    /// Index sizes, stale entries included (for tests).
    #[cfg(test)]
    pub fn index_len(&self) -> usize {
        self.by_time.len().max(self.in_order.len() + self.late.len())
    }
}
