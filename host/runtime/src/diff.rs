//! Comparing what two chains decided on the same log entries, entry by entry: the
//! running counts of a shadow deploy (events released by one and not the other, drops
//! with different reasons, releases in a different order, keys expired by one and not
//! the other), per key, with a bounded
//! sample of concrete differences and a bounded series over log time. A pure function
//! of the two chains' outputs, so a replay of the log gives the same counts.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::chain::ChainOutput;

/// Concrete differences kept (the newest).
pub const SAMPLE: usize = 100;
/// Keys counted one by one; differences of further keys count in `other_keys`.
pub const KEYS: usize = 1000;
/// Points of the series kept (the newest), one per [`POINT_EVERY_MS`] of log time.
pub const POINTS: usize = 600;
pub const POINT_EVERY_MS: i64 = 1000;
/// Keys listed in a report, most differences first.
const TOP_KEYS: usize = 20;

/// An event as both chains know it (payloads are not compared: the chains never see them).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventId {
    pub key: String,
    pub event_time: i64,
    pub id: u64,
    pub tag: u64,
}

impl EventId {
    fn of(e: &crate::Event) -> Self {
        EventId { key: e.key.clone(), event_time: e.event_time, id: e.id, tag: e.tag }
    }
}

/// What one chain decided at one log entry: releases in order, drops with reasons,
/// the key hashes it expired (ascending).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decided {
    pub released: Vec<EventId>,
    pub dropped: Vec<(EventId, &'static str)>,
    pub expired: Vec<u64>,
}

impl Decided {
    /// The decisions of one push (drops only if the chain records them).
    pub fn of(out: &ChainOutput) -> Self {
        Decided {
            released: out.released.iter().map(EventId::of).collect(),
            dropped: out.dropped.iter().map(|d| (EventId::of(&d.event), d.reason)).collect(),
            expired: out.expired.clone(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Released,
    Dropped(&'static str),
}

impl Outcome {
    fn describe(side: Option<Outcome>) -> String {
        match side {
            Some(Outcome::Released) => "released".into(),
            Some(Outcome::Dropped(reason)) => format!("dropped ({reason})"),
            None => "not decided at this entry (held, or decided earlier or later)".into(),
        }
    }
}

/// The running counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DiffCounts {
    /// Log entries both chains decided.
    pub entries: u64,
    /// Entries where the two did anything differently.
    pub differing_entries: u64,
    pub released_live: u64,
    pub released_candidate: u64,
    pub dropped_live: u64,
    pub dropped_candidate: u64,
    /// Events the live chain released at an entry where the candidate did not.
    pub released_only_live: u64,
    /// Events the candidate released at an entry where the live chain did not.
    pub released_only_candidate: u64,
    /// Events both dropped, for different reasons.
    pub drop_reasons_differ: u64,
    /// Events one dropped at an entry where the other neither released nor dropped them.
    pub dropped_only_live: u64,
    pub dropped_only_candidate: u64,
    /// Entries where both released the same events in a different order.
    pub reordered_entries: u64,
    /// Keys the live chain expired at an entry where the candidate did not (their
    /// latest values leave the map on one and stay on the other), and the converse.
    pub expired_only_live: u64,
    pub expired_only_candidate: u64,
    /// Events decided differently (each counted once, whatever the kind).
    pub differing_events: u64,
}

impl DiffCounts {
    /// Differing events per event the live chain decided (0 before any).
    pub fn rate(&self) -> f64 {
        let decided = self.released_live + self.dropped_live;
        if decided == 0 { 0.0 } else { self.differing_events as f64 / decided as f64 }
    }
}

/// One concrete difference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Sample {
    pub position: String,
    pub key: String,
    pub event_time: i64,
    pub live: String,
    pub candidate: String,
}

/// The counts at one point of log time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Point {
    pub position: String,
    pub log_time: i64,
    pub entries: u64,
    pub decided_live: u64,
    pub differing_events: u64,
}

/// A report of the diff so far.
#[derive(Clone, Debug, Serialize)]
pub struct DiffReport {
    pub counts: DiffCounts,
    pub rate: f64,
    /// Keys with the most differing events, most first.
    pub keys: Vec<(String, u64)>,
    /// Differing events of keys beyond the first [`KEYS`] counted one by one.
    pub other_keys: u64,
    /// The newest concrete differences, oldest first.
    pub sample: Vec<Sample>,
    /// The counts over log time, oldest first.
    pub series: Vec<Point>,
}

#[derive(Default)]
pub struct Diff {
    counts: DiffCounts,
    per_key: BTreeMap<String, u64>,
    other_keys: u64,
    sample: VecDeque<Sample>,
    series: VecDeque<Point>,
    last_point: Option<i64>,
}

impl Diff {
    pub fn counts(&self) -> &DiffCounts {
        &self.counts
    }

    /// Compares what the live chain and the candidate decided at the entry at
    /// `position` (log time `now`); returns the events decided differently there.
    pub fn compare(&mut self, position: &str, now: i64, live: &Decided, candidate: &Decided) -> u64 {
        let c = &mut self.counts;
        c.entries += 1;
        c.released_live += live.released.len() as u64;
        c.released_candidate += candidate.released.len() as u64;
        c.dropped_live += live.dropped.len() as u64;
        c.dropped_candidate += candidate.dropped.len() as u64;
        let mut outcomes: BTreeMap<&EventId, (Vec<Outcome>, Vec<Outcome>)> = BTreeMap::new();
        for (side, decided) in [(0, live), (1, candidate)] {
            let released = decided.released.iter().map(|e| (e, Outcome::Released));
            let dropped = decided.dropped.iter().map(|(e, r)| (e, Outcome::Dropped(r)));
            for (event, outcome) in released.chain(dropped) {
                let entry = outcomes.entry(event).or_default();
                if side == 0 { entry.0.push(outcome) } else { entry.1.push(outcome) }
            }
        }
        let mut differing = 0;
        for (event, (mut l, mut r)) in outcomes {
            l.sort_unstable();
            r.sort_unstable();
            let (l, r) = without_common(l, r);
            let pairs = l.len().max(r.len());
            for i in 0..pairs {
                let (a, b) = (l.get(i).copied(), r.get(i).copied());
                let kind = match (a, b) {
                    (Some(Outcome::Released), _) => &mut self.counts.released_only_live,
                    (_, Some(Outcome::Released)) => &mut self.counts.released_only_candidate,
                    (Some(_), Some(_)) => &mut self.counts.drop_reasons_differ,
                    (Some(_), None) => &mut self.counts.dropped_only_live,
                    (None, _) => &mut self.counts.dropped_only_candidate,
                };
                *kind += 1;
                differing += 1;
                self.note(position, event, a, b);
            }
        }
        differing += self.compare_expired(position, now, &live.expired, &candidate.expired);
        if differing == 0 && live.released != candidate.released {
            self.counts.reordered_entries += 1;
            if let Some(first) = live.released.iter().zip(&candidate.released).find(|(a, b)| a != b) {
                let (a, b) = first;
                let sample = Sample {
                    position: position.to_string(),
                    key: a.key.clone(),
                    event_time: a.event_time,
                    live: "released, in another order (first difference here)".into(),
                    candidate: format!("released {} (t={}) in its place", b.key, b.event_time),
                };
                self.push_sample(sample);
            }
        }
        if differing > 0 || live.released != candidate.released {
            self.counts.differing_entries += 1;
        }
        self.counts.differing_events += differing;
        if self.last_point.is_none_or(|t| now >= t + POINT_EVERY_MS) {
            self.last_point = Some(now);
            self.point(position, now);
        }
        differing
    }

    /// Counts and samples the keys one side expired at this entry and the other did not.
    fn compare_expired(&mut self, position: &str, now: i64, live: &[u64], candidate: &[u64]) -> u64 {
        let mut differing = 0;
        for (hash, by_live) in symmetric_difference(live, candidate) {
            let count = if by_live {
                &mut self.counts.expired_only_live
            } else {
                &mut self.counts.expired_only_candidate
            };
            *count += 1;
            differing += 1;
            let key = EventId { key: format!("#{hash:016x}"), event_time: now, id: 0, tag: 0 };
            let (expired, kept) = ("expired the key".to_string(), "did not expire the key here".to_string());
            let (l, c) = if by_live { (expired, kept) } else { (kept, expired) };
            self.note_with(position, &key, l, c);
        }
        differing
    }

    fn note(&mut self, position: &str, event: &EventId, live: Option<Outcome>, candidate: Option<Outcome>) {
        self.note_with(position, event, Outcome::describe(live), Outcome::describe(candidate));
    }

    fn note_with(&mut self, position: &str, event: &EventId, live: String, candidate: String) {
        let known = self.per_key.len();
        match self.per_key.get_mut(&event.key) {
            Some(n) => *n += 1,
            None if known < KEYS => {
                self.per_key.insert(event.key.clone(), 1);
            }
            None => self.other_keys += 1,
        }
        self.push_sample(Sample {
            position: position.to_string(),
            key: event.key.clone(),
            event_time: event.event_time,
            live,
            candidate,
        });
    }

    fn push_sample(&mut self, sample: Sample) {
        if self.sample.len() == SAMPLE {
            self.sample.pop_front();
        }
        self.sample.push_back(sample);
    }

    fn point(&mut self, position: &str, now: i64) {
        if self.series.len() == POINTS {
            self.series.pop_front();
        }
        let c = &self.counts;
        self.series.push_back(Point {
            position: position.to_string(),
            log_time: now,
            entries: c.entries,
            decided_live: c.released_live + c.dropped_live,
            differing_events: c.differing_events,
        });
    }

    /// The counts, the keys with most differences, the sample and the series.
    pub fn report(&self) -> DiffReport {
        let mut keys: Vec<(String, u64)> = self.per_key.iter().map(|(k, n)| (k.clone(), *n)).collect();
        keys.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        keys.truncate(TOP_KEYS);
        DiffReport {
            counts: self.counts.clone(),
            rate: self.counts.rate(),
            keys,
            other_keys: self.other_keys,
            sample: self.sample.iter().cloned().collect(),
            series: self.series.iter().cloned().collect(),
        }
    }

    /// Differing events per key (the first [`KEYS`] keys that differed).
    pub fn per_key(&self) -> &BTreeMap<String, u64> {
        &self.per_key
    }
}

/// The values in one ascending list and not the other, with whether the first had it.
fn symmetric_difference(a: &[u64], b: &[u64]) -> Vec<(u64, bool)> {
    let only = |x: &[u64], y: &[u64], first: bool| {
        x.iter().filter(|v| y.binary_search(v).is_err()).map(move |&v| (v, first)).collect::<Vec<_>>()
    };
    let mut out = only(a, b, true);
    out.extend(only(b, a, false));
    out.sort_unstable();
    out
}

/// Both sorted lists without the outcomes they share (as multisets).
fn without_common(l: Vec<Outcome>, r: Vec<Outcome>) -> (Vec<Outcome>, Vec<Outcome>) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < l.len() && j < r.len() {
        match l[i].cmp(&r[j]) {
            std::cmp::Ordering::Equal => (i, j) = (i + 1, j + 1),
            std::cmp::Ordering::Less => {
                a.push(l[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                b.push(r[j]);
                j += 1;
            }
        }
    }
    a.extend_from_slice(&l[i..]);
    b.extend_from_slice(&r[j..]);
    (a, b)
}

#[cfg(test)]
mod tests;
