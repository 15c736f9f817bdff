//! `streamgate:policy@0.3.0`'s shapes on the host side: a batch as six columns of
//! numbers, and decisions whose drops are two parallel lists. Lists of numbers cross
//! the boundary as one block each; 0.1.0's list of records is lowered field by field.

use crate::bindings::{Decisions, drop_reason_of_code, wit, wit_v0_3};

/// A batch's metadata by field: element i of each column is event i.
#[derive(Default)]
pub(crate) struct Columns {
    pub seqs: Vec<u64>,
    pub keys: Vec<u64>,
    pub event_times: Vec<i64>,
    pub log_times: Vec<i64>,
    pub ids: Vec<u64>,
    pub tags: Vec<u64>,
}

impl Columns {
    /// Refills the columns with `events`' fields, reusing their buffers: a stage keeps
    /// one `Columns` for all its calls, so a call allocates nothing here.
    pub fn fill(&mut self, events: &[wit::Event]) {
        let columns = [&mut self.seqs, &mut self.keys, &mut self.ids, &mut self.tags];
        for column in columns {
            column.clear();
        }
        self.event_times.clear();
        self.log_times.clear();
        self.seqs.extend(events.iter().map(|e| e.seq));
        self.keys.extend(events.iter().map(|e| e.key));
        self.event_times.extend(events.iter().map(|e| e.event_time));
        self.log_times.extend(events.iter().map(|e| e.log_time));
        self.ids.extend(events.iter().map(|e| e.id));
        self.tags.extend(events.iter().map(|e| e.tag));
    }
}

/// A 0.3.0 answer in the host's terms, or why it is malformed (drop lists of different
/// lengths, an unknown reason code).
pub(crate) fn decisions(d: wit_v0_3::Decisions) -> Result<Decisions, String> {
    if d.dropped.len() != d.dropped_reasons.len() {
        return Err(format!(
            "{} dropped sequence numbers but {} reasons",
            d.dropped.len(),
            d.dropped_reasons.len()
        ));
    }
    let dropped = d
        .dropped
        .iter()
        .zip(&d.dropped_reasons)
        .map(|(&seq, &code)| match drop_reason_of_code(code) {
            Some(reason) => Ok(wit::Dropped { seq, reason }),
            None => Err(format!("drop reason code {code} for sequence number {seq}")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Decisions { released: d.released, dropped, expired: d.expired })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(dropped: Vec<u64>, codes: Vec<u8>) -> wit_v0_3::Decisions {
        wit_v0_3::Decisions { released: vec![1], dropped, dropped_reasons: codes, expired: vec![9] }
    }

    #[test]
    fn columns_keep_each_event_at_one_index() {
        let e = |seq| wit::Event { seq, key: seq + 10, event_time: -1, log_time: 5, id: 0, tag: seq * 2 };
        let mut c = Columns::default();
        c.fill(&[e(3), e(4), e(5)]);
        c.fill(&[e(1), e(2)]);
        assert_eq!((c.seqs, c.keys, c.tags), (vec![1, 2], vec![11, 12], vec![2, 4]));
        assert_eq!((c.event_times, c.log_times, c.ids), (vec![-1, -1], vec![5, 5], vec![0, 0]));
    }

    #[test]
    fn drops_pair_up_and_bad_codes_or_lengths_are_refused() {
        let d = decisions(answer(vec![2, 3], vec![0, 5])).unwrap();
        assert_eq!(d.released, vec![1]);
        assert_eq!(d.expired, vec![9]);
        let reasons: Vec<_> = d.dropped.iter().map(|x| (x.seq, x.reason)).collect();
        assert_eq!(reasons, vec![(2, wit::DropReason::Stale), (3, wit::DropReason::Overflow)]);
        assert!(decisions(answer(vec![2], vec![6])).unwrap_err().contains("code 6"));
        assert!(decisions(answer(vec![2, 3], vec![0])).unwrap_err().contains("2 dropped"));
    }
}
