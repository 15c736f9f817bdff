//! [`IdGenerations`]: the idempotency ids a `by = "id"` stage remembers, grouped by the
//! log time they were first seen.
//!
//! With `forget_after_ms` the ids are kept in generations a tenth of the horizon wide, on
//! a fixed grid of log time, and a whole generation is forgotten once its newest possible
//! id is a horizon old. So forgetting never sweeps, and an id is forgotten between one
//! horizon and 1.1 horizons after it was first seen (as a map of ids to times with a
//! sweep every tenth of the horizon did). Only the newest generation takes ids: a hash
//! set of bare ids, sized like the generation before it (at a steady rate it never
//! grows, so no table is copied). When the next one starts it is sealed into a sorted
//! array: 8 bytes an id (a map entry with its times took 25, and twice that while it
//! grew), searched by bisection, and written to a snapshot as it is.
//!
//! A lookup asks each generation (at most 12); a hit is a repeat. The grid makes the
//! generations a function of log time alone, so every instance, and a stage restored
//! from a snapshot, holds the same ones. Without a horizon one generation holds every id.

use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasherDefault;

use streamgate_plugin_sdk::{KeyHasher, RestoreError, SnapshotReader, SnapshotWriter};

/// Generations per horizon: the horizon is cut in tenths.
const TENTHS: i64 = 10;

type IdSet = HashSet<u64, BuildHasherDefault<KeyHasher>>;

/// One generation: the ids first seen in `[start, start + width)` of log time.
struct Generation {
    start: i64,
    ids: Ids,
}

/// A generation's ids: a set while it takes ids, then sorted.
enum Ids {
    Open(IdSet),
    Sealed(Vec<u64>),
}

impl Ids {
    fn len(&self) -> usize {
        match self {
            Ids::Open(set) => set.len(),
            Ids::Sealed(sorted) => sorted.len(),
        }
    }

    fn contains(&self, id: &u64) -> bool {
        match self {
            Ids::Open(set) => set.contains(id),
            Ids::Sealed(sorted) => sorted.binary_search(id).is_ok(),
        }
    }

    /// Adds `id`, opening a sealed generation first (only a restore that regroups does).
    fn insert(&mut self, id: u64) {
        if let Ids::Sealed(sorted) = self {
            *self = Ids::Open(sorted.drain(..).collect());
        }
        if let Ids::Open(set) = self {
            set.insert(id);
        }
    }

    fn seal(&mut self) {
        if let Ids::Open(set) = self {
            let mut sorted: Vec<u64> = set.drain().collect();
            sorted.sort_unstable();
            *self = Ids::Sealed(sorted);
        }
    }

    /// The ids in order: as they are when sealed, else sorted into `scratch`.
    fn sorted<'a>(&'a self, scratch: &'a mut Vec<u64>) -> &'a [u64] {
        match self {
            Ids::Sealed(sorted) => sorted,
            Ids::Open(set) => {
                scratch.clear();
                scratch.extend(set.iter().copied());
                scratch.sort_unstable();
                scratch
            }
        }
    }
}

pub struct IdGenerations {
    /// How long an id is remembered; none: for ever.
    horizon: Option<i64>,
    /// Oldest first.
    generations: VecDeque<Generation>,
}

impl IdGenerations {
    pub fn new(horizon: Option<i64>) -> Self {
        IdGenerations { horizon, generations: VecDeque::new() }
    }

    /// Ids remembered.
    pub fn len(&self) -> usize {
        self.generations.iter().map(|g| g.ids.len()).sum()
    }

    /// Bytes [`Self::write`] writes.
    pub fn written_len(&self) -> usize {
        4 + self.generations.len() * 12 + self.len() * 8
    }

    /// Remembers `id` as first seen at log time `now`; false if it was already known.
    pub fn insert_new(&mut self, id: u64, now: i64) -> bool {
        // Newest first: a repeat usually follows its original soon.
        if self.generations.iter().rev().any(|g| g.ids.contains(&id)) {
            return false;
        }
        self.generation_at(now).ids.insert(id);
        true
    }

    /// Forgets every generation whose ids are all at least a horizon old at `now`.
    pub fn forget_before(&mut self, now: i64) {
        let Some(horizon) = self.horizon else { return };
        let cutoff = now.saturating_sub(horizon);
        let width = width(horizon);
        while self.generations.front().is_some_and(|g| g.start.saturating_add(width) <= cutoff) {
            self.generations.pop_front();
        }
    }

    /// Writes the generations, oldest first, each as its start, its count and its ids
    /// sorted: 8 bytes an id, the same bytes for the same ids on every instance, and no
    /// copy of the whole set on the way (a stage near its memory cap can still take a
    /// snapshot).
    pub fn write(&self, w: &mut SnapshotWriter) {
        w.u32(self.generations.len() as u32);
        let mut scratch = Vec::new();
        for g in &self.generations {
            let sorted = g.ids.sorted(&mut scratch);
            w.i64(g.start).u32(sorted.len() as u32);
            for &id in sorted {
                w.u64(id);
            }
        }
    }

    /// Reads what [`Self::write`] wrote. Each id goes to the generation its time falls in
    /// under this stage's horizon (the same generations, unless the horizon changed).
    pub fn read(&mut self, r: &mut SnapshotReader) -> Result<(), RestoreError> {
        self.generations.clear();
        for _ in 0..r.u32()? {
            let (start, count) = (r.i64()?, r.u32()?);
            let on_grid = match self.horizon {
                Some(horizon) => start.rem_euclid(width(horizon)) == 0,
                None => self.generations.is_empty(),
            };
            if on_grid && self.generations.back().is_none_or(|g| g.start < start) {
                // As written: taken as it is (sorted again only if it is not).
                let mut sorted = Vec::new();
                for _ in 0..count {
                    sorted.push(r.u64()?);
                }
                if !sorted.is_sorted() {
                    sorted.sort_unstable();
                }
                sorted.dedup();
                self.generations.push_back(Generation { start, ids: Ids::Sealed(sorted) });
            } else {
                for _ in 0..count {
                    let id = r.u64()?;
                    self.generation_at(start).ids.insert(id);
                }
            }
        }
        self.settle();
        Ok(())
    }

    /// Reads ids paired with their first-seen log times, as older stages wrote them.
    pub fn read_pairs(&mut self, r: &mut SnapshotReader) -> Result<(), RestoreError> {
        self.generations.clear();
        for _ in 0..r.u32()? {
            let (id, time) = (r.u64()?, r.i64()?);
            self.generation_at(time).ids.insert(id);
        }
        self.settle();
        Ok(())
    }

    /// After a restore: every generation sealed but the newest, which takes ids.
    fn settle(&mut self) {
        let newest = self.generations.len().saturating_sub(1);
        for (at, g) in self.generations.iter_mut().enumerate() {
            if at < newest {
                g.ids.seal();
            } else if let Ids::Sealed(sorted) = &mut g.ids {
                g.ids = Ids::Open(sorted.drain(..).collect());
            }
        }
    }

    /// The generation for log time `time`, made if missing (in order: a restore may
    /// bring times in any order; while running, the newest generation is the one).
    fn generation_at(&mut self, time: i64) -> &mut Generation {
        let Some(horizon) = self.horizon else {
            // One generation for ever; its time is the oldest id's.
            if self.generations.is_empty() {
                self.generations.push_back(Generation { start: time, ids: Ids::Open(IdSet::default()) });
            }
            let only = &mut self.generations[0];
            only.start = only.start.min(time);
            return only;
        };
        let start = time.saturating_sub(time.rem_euclid(width(horizon)));
        let at = match self.generations.iter().rposition(|g| g.start <= start) {
            Some(at) if self.generations[at].start == start => at,
            before => {
                let at = before.map_or(0, |at| at + 1);
                // A new newest generation is sized like the last one: at a steady rate it
                // never grows, so no table is copied and left behind as a hole.
                let mut expected = 0;
                let newest_goes_back = at == self.generations.len();
                if let Some(newest) = self.generations.back_mut()
                    && newest_goes_back
                {
                    expected = newest.ids.len();
                    newest.ids.seal();
                }
                let ids = Ids::Open(IdSet::with_capacity_and_hasher(expected, Default::default()));
                self.generations.insert(at, Generation { start, ids });
                at
            }
        };
        &mut self.generations[at]
    }
}

/// A generation's span of log time.
fn width(horizon: i64) -> i64 {
    (horizon / TENTHS).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starts(ids: &IdGenerations) -> Vec<i64> {
        ids.generations.iter().map(|g| g.start).collect()
    }

    fn written(ids: &IdGenerations) -> Vec<u8> {
        let mut w = SnapshotWriter::default();
        ids.write(&mut w);
        w.finish()
    }

    fn read(horizon: Option<i64>, bytes: &[u8], pairs: bool) -> IdGenerations {
        let mut ids = IdGenerations::new(horizon);
        let mut r = SnapshotReader::new(bytes);
        if pairs { ids.read_pairs(&mut r) } else { ids.read(&mut r) }.unwrap();
        r.finish().unwrap();
        ids
    }

    /// Ids with exact first-seen times, as older stages wrote them.
    fn restored(horizon: Option<i64>, pairs: &[(u64, i64)]) -> IdGenerations {
        let mut w = SnapshotWriter::default();
        w.u32(pairs.len() as u32);
        for &(id, time) in pairs {
            w.u64(id).i64(time);
        }
        read(horizon, &w.finish(), true)
    }

    #[test]
    fn an_id_is_new_once_until_its_generation_is_a_horizon_old() {
        let mut ids = IdGenerations::new(Some(1_000));
        assert!(ids.insert_new(7, 50));
        assert!(!ids.insert_new(7, 60), "a repeat");
        assert!(ids.insert_new(8, 950));
        ids.forget_before(1_099);
        assert!(!ids.insert_new(7, 1_099), "first seen at 50: its generation [0, 100) is kept until 1100");
        ids.forget_before(1_100);
        assert_eq!(ids.len(), 1, "id 7 forgotten, id 8 kept");
        assert!(ids.insert_new(7, 1_100), "id 7 is new again");
    }

    #[test]
    fn a_generation_spans_a_tenth_of_the_horizon_on_a_fixed_grid() {
        let mut ids = IdGenerations::new(Some(1_000));
        for (id, t) in [(1, -30), (2, 0), (3, 99), (4, 100), (5, 250)] {
            ids.insert_new(id, t);
        }
        assert_eq!(starts(&ids), vec![-100, 0, 100, 200]);
        let sealed: Vec<bool> = ids.generations.iter().map(|g| matches!(g.ids, Ids::Sealed(_))).collect();
        assert_eq!(sealed, vec![true, true, true, false], "only the newest takes ids");
        assert!([1, 2, 3, 4, 5].iter().all(|&id| !ids.insert_new(id, 260)), "sealed ones still answer");
    }

    #[test]
    fn a_snapshot_is_written_by_generation_and_round_trips() {
        let mut ids = IdGenerations::new(Some(1_000));
        for (id, t) in [(30, 0), (10, 0), (20, 150), (5, 160)] {
            ids.insert_new(id, t);
        }
        let mut expected = SnapshotWriter::default();
        expected.u32(2).i64(0).u32(2).u64(10).u64(30).i64(100).u32(2).u64(5).u64(20);
        assert_eq!(written(&ids), expected.finish(), "oldest generation first, each sorted by id");
        let back = read(Some(1_000), &written(&ids), false);
        assert_eq!(written(&back), written(&ids));
        let regrouped = read(Some(5_000), &written(&ids), false);
        assert_eq!(starts(&regrouped), vec![0], "a longer horizon: wider generations");
        let mut garbage = SnapshotReader::new(&[9, 0, 0, 0, 1]);
        assert!(IdGenerations::new(None).read(&mut garbage).is_err(), "counts beyond the bytes");
    }

    #[test]
    fn a_restore_puts_each_id_in_the_generation_of_its_time() {
        // Exact first-seen times, sorted by id, as an older stage wrote them.
        let mut ids = restored(Some(1_000), &[(5, -5), (6, 260), (7, 99), (8, 30), (9, 250)]);
        assert_eq!(starts(&ids), vec![-100, 0, 200]);
        assert!(!ids.insert_new(8, 300));
        assert!(ids.insert_new(10, 300));
        ids.forget_before(1_000);
        assert_eq!(ids.len(), 5, "id 5 (generation -100) forgotten");
        ids.forget_before(1_100);
        assert_eq!(ids.len(), 3, "ids 7 and 8 (generation 0) forgotten");
    }

    #[test]
    fn without_a_horizon_every_id_stays_in_one_generation() {
        let mut ids = IdGenerations::new(None);
        for t in 0..1_000 {
            assert!(ids.insert_new(t as u64, t * 1_000));
        }
        ids.forget_before(i64::MAX);
        assert_eq!((ids.len(), starts(&ids)), (1_000, vec![0]));
        let old = restored(None, &[(1, 500), (2, 20), (3, 90)]);
        assert_eq!(starts(&old), vec![20], "one generation, at the oldest id's time");
    }
}
