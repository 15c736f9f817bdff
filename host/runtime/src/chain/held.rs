//! The events inside a chain: each with its payload (which never leaves the host), the
//! sequence number stages know it by, and the index of the stage holding it
//! (`stages.len()` once released by the last). After a swap, events whose stage did
//! not survive wait here to re-enter the new chain.
//!
//! The host hands sequence numbers out in order and most events leave soon after, so
//! recent events live in a queue indexed by `seq - first`: finding one is a subtraction,
//! not a hash. An event held far longer than the ones after it (a stage may hold one
//! indefinitely) moves to a map of stragglers once decided slots behind it outnumber the
//! live ones, so the queue stays within a constant factor of what is held.

use std::collections::{BTreeMap, HashMap, VecDeque};

use streamgate_plugin_sdk::KeyMap;

use crate::bindings::{Decisions, wit};
use crate::decisions::{self, Claim, InvalidAnswer};
use crate::event::{Event, key_hash};

/// The stage index an event has while an answer that names it is being checked.
const CLAIMED: usize = usize::MAX;
/// Decided slots the queue may keep behind a straggler before it moves to the map.
const QUEUE_SLACK: usize = 4_096;

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
    /// Events numbered `first..next_seq`, at `seq - first`; `None` once decided.
    recent: VecDeque<Option<HeldEvent>>,
    first: u64,
    /// Held events in `recent`.
    live: usize,
    /// Held events numbered below `first`; the host hands the numbers out, so a fixed
    /// hash is safe.
    stragglers: KeyMap<HeldEvent>,
    next_seq: u64,
    /// Events whose stage did not survive a swap, with the stage of the new chain they
    /// enter on the next push (after every stage that inherited state they shaped).
    reinject: Vec<(u64, usize)>,
}

impl HeldEvents {
    pub(super) fn len(&self) -> usize {
        self.live + self.stragglers.len()
    }

    /// Takes a new event into the first stage at log time `now`.
    pub(super) fn admit(&mut self, event: Event, now: i64) -> wit::Event {
        let held = HeldEvent { key_hash: key_hash(&event.key), event, log_time: now, stage: 0 };
        self.push_back(held)
    }

    /// Numbers `held` and appends it to the queue.
    fn push_back(&mut self, held: HeldEvent) -> wit::Event {
        let seq = self.next_seq;
        self.next_seq += 1;
        let meta = held.meta(seq);
        self.recent.push_back(Some(held));
        self.live += 1;
        if self.recent.len() > 4 * self.live + QUEUE_SLACK {
            self.move_stragglers();
        }
        meta
    }

    /// Moves the oldest held events out of the queue until decided slots no longer
    /// outnumber live ones (amortised O(1) per event).
    fn move_stragglers(&mut self) {
        while self.recent.len() > 2 * self.live + QUEUE_SLACK / 4 {
            if let Some(Some(held)) = self.recent.pop_front() {
                self.stragglers.insert(self.first, held);
                self.live -= 1;
            }
            self.first += 1;
        }
    }

    fn get_mut(&mut self, seq: u64) -> Option<&mut HeldEvent> {
        match seq.checked_sub(self.first) {
            Some(offset) => self.recent.get_mut(usize::try_from(offset).ok()?)?.as_mut(),
            None => self.stragglers.get_mut(&seq),
        }
    }

    fn take(&mut self, seq: u64) -> Option<HeldEvent> {
        let Some(offset) = seq.checked_sub(self.first) else { return self.stragglers.remove(&seq) };
        let held = self.recent.get_mut(usize::try_from(offset).ok()?)?.take()?;
        self.live -= 1;
        while let Some(None) = self.recent.front() {
            self.recent.pop_front();
            self.first += 1;
        }
        Some(held)
    }

    /// Checks stage `index`'s answer ([`decisions::check`]: only events it holds, each
    /// once). On success every named event is claimed until the caller advances or
    /// removes it, as it must; on failure nothing changes.
    pub(super) fn check_answer(&mut self, answer: &Decisions, index: usize) -> Result<(), InvalidAnswer> {
        decisions::check(answer, &mut StageClaims { held: self, index })
    }

    /// Hands a held event to stage `to`, returning what that stage sees.
    pub(super) fn advance(&mut self, seq: u64, to: usize) -> wit::Event {
        let held = self.get_mut(seq).expect("validated answers name held events");
        held.stage = to;
        held.meta(seq)
    }

    /// An event decided for good (dropped).
    pub(super) fn remove(&mut self, seq: u64) -> Option<Event> {
        self.take(seq).map(|h| h.event)
    }

    /// An event released by the last stage.
    pub(super) fn release(&mut self, seq: u64) -> Event {
        self.take(seq).expect("released events are held").event
    }

    /// Every held event with its sequence number, in no particular order.
    fn iter(&self) -> impl Iterator<Item = (u64, &HeldEvent)> {
        let queued = (self.first..).zip(&self.recent).filter_map(|(seq, h)| Some((seq, h.as_ref()?)));
        queued.chain(self.stragglers.iter().map(|(&seq, h)| (seq, h)))
    }

    /// The events stage `index` holds, oldest first.
    pub(super) fn held_by(&self, index: usize) -> Vec<u64> {
        let mut seqs: Vec<u64> = self.iter().filter(|(_, h)| h.stage == index).map(|(seq, _)| seq).collect();
        seqs.sort_unstable();
        seqs
    }

    /// Every held event, for a swap to re-home.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (u64, &mut HeldEvent)> {
        let queued = (self.first..).zip(&mut self.recent).filter_map(|(seq, h)| Some((seq, h.as_mut()?)));
        queued.chain(self.stragglers.iter_mut().map(|(&seq, h)| (seq, h)))
    }

    /// Events left over by an earlier swap and not yet pushed, by the stage they enter.
    pub(super) fn take_waiting(&mut self) -> HashMap<u64, usize> {
        self.reinject.drain(..).collect()
    }

    /// Every held event with its sequence number, in sequence order (a checkpoint).
    pub(super) fn sorted(&self) -> Vec<(u64, &HeldEvent)> {
        let mut all: Vec<(u64, &HeldEvent)> = self.iter().collect();
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
            stragglers.insert(seq, HeldEvent { key_hash: key_hash(&event.key), event, log_time, stage });
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
            let mut held = self.take(old).expect("reinjected events are held");
            held.stage = stage;
            let meta = self.push_back(held);
            injected.entry(stage).or_default().push(meta);
        }
        injected
    }
}

/// The events one stage holds, claimed one by one while its answer is checked.
struct StageClaims<'a> {
    held: &'a mut HeldEvents,
    index: usize,
}

impl decisions::Claims for StageClaims<'_> {
    fn claim(&mut self, seq: u64) -> Claim {
        match self.held.get_mut(seq) {
            Some(h) if h.stage == self.index => {
                h.stage = CLAIMED;
                Claim::Fresh
            }
            Some(h) if h.stage == CLAIMED => Claim::Twice,
            _ => Claim::NotHeld,
        }
    }

    fn unclaim(&mut self, seq: u64) {
        if let Some(h) = self.held.get_mut(seq) {
            h.stage = self.index;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(key: &str) -> Event {
        Event { key: key.into(), ..Event::default() }
    }

    #[test]
    fn a_long_held_event_moves_aside_and_the_queue_stays_small() {
        let mut held = HeldEvents::default();
        let kept = held.admit(event("kept"), 0).seq;
        for n in 0..20_000u64 {
            let seq = held.admit(event("passing"), n as i64).seq;
            held.release(seq);
        }
        assert_eq!(held.len(), 1);
        assert!(held.recent.len() <= QUEUE_SLACK + 1, "queue kept {} slots", held.recent.len());
        assert_eq!(held.held_by(0), vec![kept]);
        assert_eq!(held.advance(kept, 1).seq, kept);
        assert_eq!(held.held_by(1), vec![kept]);
        assert_eq!(held.release(kept).key, "kept");
        assert_eq!(held.len(), 0);
    }

    #[test]
    fn a_rejected_answer_leaves_every_claim_undone() {
        let mut held = HeldEvents::default();
        let seqs: Vec<u64> = (0..3).map(|_| held.admit(event("k"), 0).seq).collect();
        let answer =
            Decisions { released: vec![seqs[0], seqs[1], seqs[0]], dropped: vec![], expired: vec![] };
        assert_eq!(held.check_answer(&answer, 0), Err(InvalidAnswer::Twice { seq: seqs[0], released: true }));
        assert_eq!(held.held_by(0), seqs, "still held by stage 0");
        let unknown = Decisions { released: vec![seqs[2], 99], dropped: vec![], expired: vec![] };
        assert_eq!(held.check_answer(&unknown, 0), Err(InvalidAnswer::NotHeld { seq: 99, released: true }));
        assert_eq!(
            held.check_answer(&unknown, 1),
            Err(InvalidAnswer::NotHeld { seq: seqs[2], released: true })
        );
        assert_eq!(held.held_by(0), seqs);
    }
}
