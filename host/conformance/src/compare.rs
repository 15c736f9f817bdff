//! How two runs of one log differ, push by push: events released by one only, the
//! same events in another order, drops with another reason or by one only, keys
//! expired by one only, a run that failed on one side only, and events one still holds
//! after the flush.

use std::collections::BTreeMap;

use streamgate_plugin_sdk::DropReason;

use crate::generate::Log;
use crate::harness::{Answer, Failure, Trace};

/// One push (or the end of a run) where the two plugins decided differently.
#[derive(Clone, Debug)]
pub struct Difference {
    /// 1-based index of the generated (or recorded) log.
    pub case: usize,
    /// 1-based push; the flush is the last; 0 for the run as a whole.
    pub push: usize,
    pub now: i64,
    /// The log position of the entry behind the push, on a recorded log.
    pub position: Option<String>,
    pub what: Vec<String>,
}

/// Every difference of one log's two runs.
pub fn compare(
    case: usize,
    log: &Log,
    new: Result<Trace, Failure>,
    old: Result<Trace, Failure>,
) -> Vec<Difference> {
    let whole =
        |what: Vec<String>| vec![Difference { case, push: 0, now: log.flush_time(), position: None, what }];
    let (new, old) = match (new, old) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => {
            let said = |r: &Result<Trace, Failure>| match r {
                Ok(_) => "ran".to_string(),
                Err(f) => format!("failed: {}", f.message),
            };
            let (a, b) = (said(&a), said(&b));
            return if a == b { Vec::new() } else { whole(vec![format!("new {a}; old {b}")]) };
        }
    };
    let mut out: Vec<Difference> = new
        .frames
        .iter()
        .zip(&old.frames)
        .enumerate()
        .filter_map(|(i, (a, b))| {
            let what = frame_differences(a, b);
            (!what.is_empty()).then_some(Difference { case, push: i + 1, now: a.now, position: None, what })
        })
        .collect();
    let held = |t: &Trace| t.still_held.iter().map(|e| e.seq).collect::<Vec<_>>();
    if held(&new) != held(&old) {
        out.extend(whole(vec![format!(
            "still held after the flush: {:?} by new, {:?} by old",
            held(&new),
            held(&old)
        )]));
    }
    out
}

fn frame_differences(new: &Answer, old: &Answer) -> Vec<String> {
    let mut what = Vec::new();
    let (a, b) = (new.released_seqs(), old.released_seqs());
    if a != b {
        let only = |x: &[u64], y: &[u64]| x.iter().filter(|s| !y.contains(s)).copied().collect::<Vec<_>>();
        let (only_new, only_old) = (only(&a, &b), only(&b, &a));
        if only_new.is_empty() && only_old.is_empty() {
            what.push(format!("released the same events in another order: {a:?} by new, {b:?} by old"));
        } else {
            what.push(format!("released {only_new:?} by new only, {only_old:?} by old only"));
        }
    }
    // Drops that differ, grouped by how they differ: one line per pair of reasons.
    let reasons = |f: &Answer| f.dropped.iter().copied().collect::<BTreeMap<u64, DropReason>>();
    let (ra, rb) = (reasons(new), reasons(old));
    let mut groups = BTreeMap::<(Option<&str>, Option<&str>), Vec<u64>>::new();
    for seq in ra.keys().chain(rb.keys().filter(|seq| !ra.contains_key(seq))) {
        let (by_new, by_old) = (ra.get(seq).map(|r| r.as_str()), rb.get(seq).map(|r| r.as_str()));
        if by_new != by_old {
            groups.entry((by_new, by_old)).or_default().push(*seq);
        }
    }
    if new.expired != old.expired {
        let only = |x: &[u64], y: &[u64]| x.iter().filter(|k| !y.contains(k)).copied().collect::<Vec<_>>();
        let keys = crate::determinism::keys;
        what.push(format!(
            "expired keys {} by new only, {} by old only",
            keys(&only(&new.expired, &old.expired)),
            keys(&only(&old.expired, &new.expired))
        ));
    }
    for ((by_new, by_old), seqs) in groups {
        let seqs = if seqs.len() == 1 { seqs[0].to_string() } else { format!("{seqs:?}") };
        what.push(match (by_new, by_old) {
            (Some(a), Some(b)) => format!("dropped {seqs} as `{a}` by new, as `{b}` by old"),
            (Some(a), None) => format!("dropped {seqs} as `{a}` by new only"),
            (None, Some(b)) => format!("dropped {seqs} as `{b}` by old only"),
            (None, None) => unreachable!("only differing drops are grouped"),
        });
    }
    what
}
