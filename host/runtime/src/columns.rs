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
    pub fn of(events: &[wit::Event]) -> Self {
        let n = events.len();
        let mut c = Columns {
            seqs: Vec::with_capacity(n),
            keys: Vec::with_capacity(n),
            event_times: Vec::with_capacity(n),
            log_times: Vec::with_capacity(n),
            ids: Vec::with_capacity(n),
            tags: Vec::with_capacity(n),
        };
        for e in events {
            c.seqs.push(e.seq);
            c.keys.push(e.key);
            c.event_times.push(e.event_time);
            c.log_times.push(e.log_time);
            c.ids.push(e.id);
            c.tags.push(e.tag);
        }
        c
    }
}

/// A 0.3.0 answer in the host's terms, or why it is malformed (drop lists of different
/// lengths, an unknown reason code).
pub(crate) fn decisions(d: wit_v0_3::Decisions) -> Result<Decisions, String> {
    if d.dropped.len() != d.dropped_reasons.len() {
        return Err(format!(
            "invalid answer: {} dropped sequence numbers but {} reasons",
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
            None => Err(format!("invalid answer: drop reason code {code} for sequence number {seq}")),
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
        let c = Columns::of(&[e(1), e(2)]);
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
