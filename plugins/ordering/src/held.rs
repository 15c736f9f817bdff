//! The events an ordering stage holds, indexed twice: by event time and by arrival.
//!
//! **By event time**, a ring of one-millisecond buckets covers the times from `base` (one
//! past the last cutoff released) for `span` milliseconds: holding an event is a push
//! onto its bucket, and releasing up to a cutoff walks the buckets in time order, so
//! the released events come out already sorted by time (and by seq within a bucket).
//! Events whose time falls outside the ring when they arrive (far in the future, or
//! behind `base` after log time went back) wait in an ordered map instead: correct for
//! any time, and rare.
//!
//! **By arrival** (an event also leaves one window after the log time that carried it),
//! a queue while log times rise and a heap for the few that do not. Only events stamped
//! after their log time are indexed so: any other is due by time no later than by
//! arrival. An entry whose event already left by time is stale and skipped when it
//! surfaces; the index is rebuilt when stale entries outnumber the held events.
//!
//! No hashing and no comparison-based index on the hot path: holding an event is two
//! pushes, releasing it a bucket drain and a queue pop. The stage sorts a push's releases
//! only when they are not in order already.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use streamgate_plugin_sdk::Event;

/// A bucket of the ring: the events of one millisecond, in arrival order; `None` where
/// an event left early (by arrival or over the limit).
type Bucket = Vec<Option<Event>>;

/// Where an arrival entry's event waits: its index in its ring bucket, or [`OUTSIDE`].
type Slot = u32;
const OUTSIDE: Slot = Slot::MAX;

/// An arrival index entry: (log time, seq, event time, slot). Sequence numbers are
/// unique, so the order is the (log time, seq) order.
type Arrival = (i64, u64, i64, Slot);

/// A bucket that grew past this many events is given back to the allocator when it is
/// drained, so one burst does not pin its memory for good.
const BUCKET_KEEP: usize = 256;

pub(crate) struct Held {
    ring: Vec<Bucket>,
    /// `ring.len() - 1` (the length is a power of two).
    mask: u64,
    /// The earliest event time the ring holds; the ring covers `base .. base + span`.
    base: i64,
    /// Events in the ring (not counting the `None`s).
    in_ring: usize,
    /// Events whose time was outside the ring when they arrived, by (time, seq).
    outside: BTreeMap<(i64, u64), Event>,
    /// Arrivals in rising log time order.
    in_order: VecDeque<Arrival>,
    /// Arrivals with a log time earlier than the queue's last.
    late: BinaryHeap<Reverse<Arrival>>,
}

impl Held {
    /// A ring of at least `span_ms` one-millisecond buckets (rounded up to a power of two).
    pub fn new(span_ms: usize) -> Held {
        let span = span_ms.next_power_of_two().max(1);
        Held {
            ring: (0..span).map(|_| Vec::new()).collect(),
            mask: span as u64 - 1,
            base: i64::MIN,
            in_ring: 0,
            outside: BTreeMap::new(),
            in_order: VecDeque::new(),
            late: BinaryHeap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.in_ring + self.outside.len()
    }

    fn bucket_of(&self, time: i64) -> usize {
        (time as u64 & self.mask) as usize
    }

    /// Whether the ring covers `time` (`base <= time < base + span`, without overflow).
    fn ring_covers(&self, time: i64) -> bool {
        time >= self.base && (time.wrapping_sub(self.base) as u64) <= self.mask
    }

    pub fn insert(&mut self, e: Event) {
        let slot = if self.ring_covers(e.event_time) {
            let bucket = self.bucket_of(e.event_time);
            let bucket = &mut self.ring[bucket];
            bucket.push(Some(e));
            self.in_ring += 1;
            (bucket.len() - 1) as Slot
        } else {
            self.outside.insert((e.event_time, e.seq), e);
            OUTSIDE
        };
        // Only an event stamped after the log time that carried it can be due by arrival
        // before it is due by time: every other one leaves through the ring (or the map)
        // no later than its arrival deadline, so it needs no arrival entry.
        if e.event_time <= e.log_time {
            return;
        }
        let entry = (e.log_time, e.seq, e.event_time, slot);
        match self.in_order.back() {
            Some(&(last, ..)) if e.log_time < last => self.late.push(Reverse(entry)),
            _ => self.in_order.push_back(entry),
        }
    }

    /// Whether an event with this time would wait outside the ring because the ring has
    /// moved past it (a late event).
    pub fn behind_ring(&self, time: i64) -> bool {
        time < self.base
    }

    /// Moves every held event with an event time at most `cutoff` out: the ring's to
    /// `due` in time order (and arrival order within a millisecond, which is seq order
    /// unless a stage upstream reordered), those waiting outside it to `others` in
    /// (time, seq) order. The ring then starts after `cutoff`.
    pub fn release_through(&mut self, cutoff: i64, due: &mut Vec<Event>, others: &mut Vec<Event>) {
        if cutoff >= self.base {
            let buckets = (cutoff.wrapping_sub(self.base) as u64).saturating_add(1).min(self.mask + 1);
            let mut time = self.base;
            for _ in 0..buckets {
                if self.in_ring == 0 {
                    break;
                }
                let bucket = self.bucket_of(time);
                self.drain_bucket(bucket, due);
                time = time.wrapping_add(1);
            }
            self.base = cutoff.saturating_add(1);
        }
        while let Some(entry) = self.outside.first_entry()
            && entry.key().0 <= cutoff
        {
            others.push(entry.remove());
        }
    }

    fn drain_bucket(&mut self, bucket: usize, due: &mut Vec<Event>) {
        let cells = &mut self.ring[bucket];
        if cells.is_empty() {
            return;
        }
        let first = due.len();
        due.extend(cells.iter().flatten());
        self.in_ring -= due.len() - first;
        if cells.capacity() > BUCKET_KEEP {
            *cells = Vec::new();
        } else {
            cells.clear();
        }
    }

    /// Moves every held event that arrived at log time `cutoff` or before to `due`, in
    /// arrival order.
    pub fn release_arrived_through(&mut self, cutoff: i64, due: &mut Vec<Event>) {
        loop {
            let queued = self.in_order.front().copied();
            let late = self.late.peek().map(|&Reverse(entry)| entry);
            let entry = match (queued, late) {
                (Some(q), Some(l)) if l < q && l.0 <= cutoff => self.late.pop().map(|Reverse(l)| l),
                (Some(q), _) if q.0 <= cutoff => self.in_order.pop_front(),
                (None, Some(l)) if l.0 <= cutoff => self.late.pop().map(|Reverse(l)| l),
                _ => return,
            };
            if let Some(e) = entry.and_then(|entry| self.take(entry)) {
                due.push(e);
            }
        }
    }

    /// The event an arrival entry names, if it is still held.
    fn take(&mut self, (_, seq, time, slot): Arrival) -> Option<Event> {
        if slot == OUTSIDE {
            return self.outside.remove(&(time, seq));
        }
        if !self.ring_covers(time) {
            return None; // its bucket was released: it left by time
        }
        let bucket = self.bucket_of(time);
        let cell = self.ring[bucket].get_mut(slot as usize)?;
        match *cell {
            Some(e) if e.seq == seq => {
                *cell = None;
                self.in_ring -= 1;
                Some(e)
            }
            _ => None,
        }
    }

    /// Moves the earliest held events, by (time, seq), to `due` until at most `limit`
    /// are held.
    pub fn release_beyond(&mut self, limit: usize, due: &mut Vec<Event>) {
        let mut time = self.base;
        while self.len() > limit {
            let ring_first = if self.in_ring > 0 {
                // Buckets before `time` are empty: the scan only moves forward.
                while self.ring[self.bucket_of(time)].iter().all(Option::is_none) {
                    time = time.wrapping_add(1);
                }
                let cells = &self.ring[self.bucket_of(time)];
                let first = cells.iter().enumerate().filter_map(|(i, cell)| cell.map(|e| (e.seq, i))).min();
                first.map(|(seq, i)| ((time, seq), i))
            } else {
                None
            };
            let outside_first = self.outside.first_key_value().map(|(&key, _)| key);
            match (ring_first, outside_first) {
                (Some((ring, i)), outside) if outside.is_none_or(|o| ring < o) => {
                    let bucket = self.bucket_of(time);
                    due.push(self.ring[bucket][i].take().expect("held"));
                    self.in_ring -= 1;
                }
                (_, Some(_)) => due.push(self.outside.pop_first().expect("not empty").1),
                _ => return, // nothing held
            }
        }
    }

    /// Rebuilds the arrival index when its stale entries outnumber the held events
    /// (amortised O(1) per event; keeps a far-future log time from pinning garbage).
    pub fn sweep(&mut self) {
        if self.in_order.len() + self.late.len() <= 2 * self.len() + 1_024 {
            return;
        }
        let mut arrivals: Vec<Arrival> = Vec::with_capacity(self.len());
        for cells in &self.ring {
            for (slot, cell) in cells.iter().enumerate() {
                if let Some(e) = cell
                    && e.event_time > e.log_time
                {
                    arrivals.push((e.log_time, e.seq, e.event_time, slot as Slot));
                }
            }
        }
        let future = self.outside.values().filter(|e| e.event_time > e.log_time);
        arrivals.extend(future.map(|e| (e.log_time, e.seq, e.event_time, OUTSIDE)));
        arrivals.sort_unstable();
        self.in_order = arrivals.into();
        self.late.clear();
    }

    /// Every held event, in no particular order.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.ring.iter().flatten().flatten().chain(self.outside.values())
    }

    /// Arrival index size, stale entries included (for tests).
    #[cfg(test)]
    pub fn index_len(&self) -> usize {
        self.in_order.len() + self.late.len()
    }
}
