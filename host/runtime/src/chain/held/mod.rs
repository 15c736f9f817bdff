//! The events inside a chain: each with its payload (which never leaves the host), the
//! sequence number stages know it by, and the index of the stage holding it
//! (`stages.len()` once released by the last). After a swap, events whose stage did
//! not survive wait here to re-enter the new chain.
//!
//! The host hands sequence numbers out in order and most events leave soon after, so
//! recent events live in queues indexed by `seq - first`: finding one is a subtraction,
//! not a hash. What every stage's call reads and writes (the metadata plugins see, and
//! the holding stage) is kept apart from the events themselves, so checking an answer
//! and handing events on touches 48 bytes an event, not the payload's handle and key.
//! Decided slots leave the front of the queues once per push ([`HeldEvents::compact`]).
//! An event held far longer than the ones after it (a stage may hold one indefinitely)
//! moves to a map of stragglers once decided slots behind it outnumber the live ones,
//! so the queues stay within a constant factor of what is held.

use std::collections::{BTreeMap, HashMap, VecDeque};

use streamgate_plugin_sdk::KeyMap;

use crate::bindings::{Decisions, wit};
use crate::decisions::{self, Claim, InvalidAnswer};
use crate::event::{Event, key_hash};

/// The stage index of an event its stage's answer drops, until it is removed.
const CLAIMED: usize = usize::MAX;
/// The stage index of a decided slot, until it leaves the queue.
const DECIDED: usize = usize::MAX - 1;
/// Decided slots the queue may keep behind a straggler before it moves to the map.
const QUEUE_SLACK: usize = 4_096;

/// A held event's metadata (what its stage sees, but its number) and where it is.
#[derive(Clone, Copy, Debug)]
struct Meta {
    key_hash: u64,
    event_time: i64,
    log_time: i64,
    id: u64,
    tag: u64,
    /// Index of the stage holding it ([`CLAIMED`], [`DECIDED`]).
    stage: usize,
    /// The number of the last answer that named it ([`HeldEvents::answers`]): an event
    /// an answer names twice is told from one it never held by this.
    answer: u32,
}

impl Meta {
    fn of(event: &Event, log_time: i64, stage: usize) -> Meta {
        let (event_time, id, tag) = (event.event_time, event.id, event.tag);
        Meta { key_hash: key_hash(&event.key), event_time, log_time, id, tag, stage, answer: 0 }
    }

    fn wit(&self, seq: u64) -> wit::Event {
        let Meta { key_hash: key, event_time, log_time, id, tag, .. } = *self;
        wit::Event { seq, key, event_time, log_time, id, tag }
    }
}

/// A held event as a checkpoint records it.
pub(super) struct HeldRef<'a> {
    pub(super) event: &'a Event,
    pub(super) log_time: i64,
    /// Index of the stage holding it.
    pub(super) stage: usize,
}

#[derive(Clone, Default)]
pub(super) struct HeldEvents {
    /// Metadata of the events numbered `first..next_seq`, at `seq - first`.
    meta: VecDeque<Meta>,
    /// The same events, at the same index; `None` once decided.
    events: VecDeque<Option<Event>>,
    first: u64,
    /// Held events in the queues.
    live: usize,
    /// Held events numbered below `first`; the host hands the numbers out, so a fixed
    /// hash is safe.
    stragglers: KeyMap<(Meta, Event)>,
    next_seq: u64,
    /// Events whose stage did not survive a swap, with the stage of the new chain they
    /// enter on the next push (after every stage that inherited state they shaped).
    reinject: Vec<(u64, usize)>,
    /// Answers checked so far (wrapping): the current one's number marks what it names.
    answers: u32,
}

impl HeldEvents {
    pub(super) fn len(&self) -> usize {
        self.live + self.stragglers.len()
    }

    /// Takes a new event into the first stage at log time `now`.
    pub(super) fn admit(&mut self, event: Event, now: i64) -> wit::Event {
        let meta = Meta::of(&event, now, 0);
        self.push_back(meta, event)
    }

    /// Numbers an event and appends it to the queues.
    fn push_back(&mut self, meta: Meta, event: Event) -> wit::Event {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.meta.push_back(meta);
        self.events.push_back(Some(event));
        self.live += 1;
        meta.wit(seq)
    }

    /// Drops decided slots from the front of the queues, then moves the oldest held
    /// events aside while decided slots outnumber live ones (amortised O(1) per event).
    /// Called once per push.
    pub(super) fn compact(&mut self) {
        let decided = self.meta.iter().position(|m| m.stage != DECIDED).unwrap_or(self.meta.len());
        if decided > 0 {
            self.meta.drain(..decided);
            self.events.drain(..decided);
            self.first += decided as u64;
        }
        if self.meta.len() > 4 * self.live + QUEUE_SLACK {
            while self.meta.len() > 2 * self.live + QUEUE_SLACK / 4 {
                let (meta, event) = (self.meta.pop_front(), self.events.pop_front());
                if let (Some(meta), Some(Some(event))) = (meta, event) {
                    self.stragglers.insert(self.first, (meta, event));
                    self.live -= 1;
                }
                self.first += 1;
            }
        }
    }

    /// Where `seq` is in the queues, if it is there (decided or not).
    fn index(&self, seq: u64) -> Option<usize> {
        let index = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        (index < self.meta.len()).then_some(index)
    }

    /// The metadata of held event `seq` (its stage may be [`CLAIMED`]).
    fn meta_mut(&mut self, seq: u64) -> Option<&mut Meta> {
        let meta = match self.index(seq) {
            Some(i) => &mut self.meta[i],
            None if seq < self.first => &mut self.stragglers.get_mut(&seq)?.0,
            None => return None,
        };
        (meta.stage != DECIDED).then_some(meta)
    }

    fn take(&mut self, seq: u64) -> Option<Event> {
        let Some(i) = self.index(seq) else {
            return if seq < self.first { self.stragglers.remove(&seq).map(|(_, e)| e) } else { None };
        };
        let event = self.events[i].take()?;
        self.meta[i].stage = DECIDED;
        self.live -= 1;
        Some(event)
    }

    /// Checks stage `index`'s answer ([`decisions::check`]: only events it holds, each
    /// once) and, as it goes, hands each released event to the next stage, appending
    /// what that stage sees to `next` in release order: one lookup per event. Each
    /// dropped event stays claimed until the caller removes it, as it must. On failure
    /// nothing changes but `next`, which the caller discards.
    pub(super) fn check_answer(
        &mut self,
        answer: &Decisions,
        index: usize,
        next: &mut Vec<wit::Event>,
    ) -> Result<(), InvalidAnswer> {
        self.answers = self.answers.wrapping_add(1);
        decisions::check(answer, &mut StageClaims { held: self, index, next })
    }

    /// Hands a held event to stage `to`, returning what that stage sees.
    pub(super) fn advance(&mut self, seq: u64, to: usize) -> wit::Event {
        let meta = self.meta_mut(seq).expect("validated answers name held events");
        meta.stage = to;
        meta.wit(seq)
    }

    /// An event decided for good (dropped).
    pub(super) fn remove(&mut self, seq: u64) -> Option<Event> {
        self.take(seq)
    }

    /// An event decided for good (dropped) and not wanted: dropped where it lies.
    pub(super) fn discard(&mut self, seq: u64) {
        match self.index(seq) {
            Some(i) if self.events[i].is_some() => {
                self.events[i] = None;
                self.meta[i].stage = DECIDED;
                self.live -= 1;
            }
            Some(_) => {}
            None => drop(self.stragglers.remove(&seq)),
        }
    }

    /// An event released by the last stage.
    pub(super) fn release(&mut self, seq: u64) -> Event {
        self.take(seq).expect("released events are held")
    }

    /// Every held event with its sequence number, in no particular order.
    fn iter(&self) -> impl Iterator<Item = (u64, HeldRef<'_>)> {
        let queued = (self.first..).zip(self.meta.iter().zip(&self.events)).filter_map(|(seq, (m, e))| {
            Some((seq, HeldRef { event: e.as_ref()?, log_time: m.log_time, stage: m.stage }))
        });
        let aside = self
            .stragglers
            .iter()
            .map(|(&seq, (m, event))| (seq, HeldRef { event, log_time: m.log_time, stage: m.stage }));
        queued.chain(aside)
    }

    /// The events stage `index` holds, oldest first.
    pub(super) fn held_by(&self, index: usize) -> Vec<u64> {
        let mut seqs: Vec<u64> = self.iter().filter(|(_, h)| h.stage == index).map(|(seq, _)| seq).collect();
        seqs.sort_unstable();
        seqs
    }

    /// The stage of every held event, for a swap to re-home.
    pub(super) fn stages_mut(&mut self) -> impl Iterator<Item = (u64, &mut usize)> {
        let queued = (self.first..).zip(&mut self.meta).filter(|(_, m)| m.stage != DECIDED);
        let aside = self.stragglers.iter_mut().map(|(&seq, (m, _))| (seq, m));
        queued.chain(aside).map(|(seq, m)| (seq, &mut m.stage))
    }

    /// Events left over by an earlier swap and not yet pushed, by the stage they enter.
    pub(super) fn take_waiting(&mut self) -> HashMap<u64, usize> {
        self.reinject.drain(..).collect()
    }

    /// Every held event with its sequence number, in sequence order (a checkpoint).
    pub(super) fn sorted(&self) -> Vec<(u64, HeldRef<'_>)> {
        let mut all: Vec<(u64, HeldRef<'_>)> = self.iter().collect();
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
        let mut stragglers = KeyMap::default();
        for (seq, event, log_time, stage) in held {
            stragglers.insert(seq, (Meta::of(&event, log_time, stage), event));
        }
        HeldEvents { stragglers, first: next_seq, next_seq, reinject, ..HeldEvents::default() }
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
            let mut meta = *self.meta_mut(old).expect("reinjected events are held");
            let event = self.take(old).expect("reinjected events are held");
            meta.stage = stage;
            let wit = self.push_back(meta, event);
            injected.entry(stage).or_default().push(wit);
        }
        injected
    }
}

/// The events one stage holds, claimed one by one while its answer is checked: a
/// released one moves to the next stage at once (and into `next`), a dropped one is
/// marked [`CLAIMED`]; both are marked with the answer's number.
struct StageClaims<'a> {
    held: &'a mut HeldEvents,
    index: usize,
    next: &'a mut Vec<wit::Event>,
}

impl decisions::Claims for StageClaims<'_> {
    fn claim(&mut self, seq: u64, released: bool) -> Claim {
        let answer = self.held.answers;
        match self.held.meta_mut(seq) {
            Some(m) if m.stage == self.index => {
                m.answer = answer;
                if released {
                    m.stage = self.index + 1;
                    self.next.push(m.wit(seq));
                } else {
                    m.stage = CLAIMED;
                }
                Claim::Fresh
            }
            // Named by this answer already (released, so now the next stage's; or dropped).
            Some(m) if m.answer == answer && (m.stage == self.index + 1 || m.stage == CLAIMED) => {
                Claim::Twice
            }
            _ => Claim::NotHeld,
        }
    }

    fn unclaim(&mut self, seq: u64, _: bool) {
        if let Some(m) = self.held.meta_mut(seq) {
            m.stage = self.index;
        }
    }
}

#[cfg(test)]
mod tests;
