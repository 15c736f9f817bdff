//! `streamgate:policy@0.4.0`'s shapes on the host side: a batch as one list of words,
//! six per event ([`Rows`]), and an answer read from one list of words ([`decisions`]).
//! One list each way is one allocation and one copy on either side of the boundary.

use streamgate_plugin_sdk::ROW_WORDS;

use crate::bindings::{Decisions, drop_reason_of_code, wit};

/// Words before the numbers in an answer: the released, dropped and expired counts.
const COUNTS: usize = 3;

/// A batch's metadata as rows: words `6i..6i + 6` are event i's seq, key, event time,
/// log time, id and tag (times as two's complement).
#[derive(Default)]
pub(crate) struct Rows {
    pub words: Vec<u64>,
}

impl Rows {
    /// Refills the rows with `events`, reusing the buffer: a stage keeps one `Rows` for
    /// all its calls, so a call allocates nothing here.
    pub fn fill(&mut self, events: &[wit::Event]) {
        self.words.clear();
        self.words.reserve(events.len() * ROW_WORDS);
        for e in events {
            self.words.extend([e.seq, e.key, e.event_time as u64, e.log_time as u64, e.id, e.tag]);
        }
    }
}

/// A 0.4.0 answer in the host's terms, or why it is malformed (a length that does not
/// match its counts, an unknown reason code).
pub(crate) fn decisions(words: &[u64]) -> Result<Decisions, String> {
    let [released, dropped, expired] = match words.get(..COUNTS) {
        Some(&[r, d, x]) => [r, d, x],
        _ => return Err(format!("{} words, fewer than the three counts", words.len())),
    };
    let expected = (|| {
        let pairs = usize::try_from(dropped).ok()?.checked_mul(2)?;
        let numbers = usize::try_from(released).ok()?.checked_add(pairs)?;
        numbers.checked_add(usize::try_from(expired).ok()?)?.checked_add(COUNTS)
    })();
    if expected != Some(words.len()) {
        return Err(format!(
            "{} words, but its counts ({released} released, {dropped} dropped, \
             {expired} expired) need 3 + released + 2 × dropped + expired",
            words.len()
        ));
    }
    let (released, rest) = words[COUNTS..].split_at(released as usize);
    let (dropped, expired) = rest.split_at(2 * dropped as usize);
    let dropped = dropped
        .chunks_exact(2)
        .map(|pair| {
            let (seq, code) = (pair[0], pair[1]);
            match u8::try_from(code).ok().and_then(drop_reason_of_code) {
                Some(reason) => Ok(wit::Dropped { seq, reason }),
                None => Err(format!("drop reason code {code} for sequence number {seq}")),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Decisions { released: released.to_vec(), dropped, expired: expired.to_vec() })
}

#[cfg(test)]
mod tests {
    use streamgate_plugin_sdk::{DropReason, answer_words, events_of_rows};

    use super::*;

    #[test]
    fn rows_are_what_the_sdk_reads_in_place() {
        let e = |seq| wit::Event { seq, key: seq + 10, event_time: -1, log_time: 5, id: 0, tag: seq * 2 };
        let mut rows = Rows::default();
        rows.fill(&[e(3), e(4), e(5)]);
        rows.fill(&[e(1), e(2)]);
        let read: Vec<wit::Event> = events_of_rows(&rows.words).iter().map(wit::Event::from).collect();
        assert_eq!(read.len(), 2);
        assert_eq!((read[0].seq, read[1].key, read[1].tag, read[0].event_time), (1, 12, 4, -1));
    }

    #[test]
    fn an_answer_the_sdk_wrote_reads_back() {
        let decided = streamgate_plugin_sdk::Decisions {
            released: vec![9, 1],
            dropped: vec![(2, DropReason::Duplicate), (3, DropReason::Overflow)],
            expired: vec![70, 71],
        };
        let d = decisions(&answer_words(&decided)).unwrap();
        assert_eq!((d.released, d.expired), (vec![9, 1], vec![70, 71]));
        let reasons: Vec<_> = d.dropped.iter().map(|x| (x.seq, x.reason)).collect();
        assert_eq!(reasons, vec![(2, wit::DropReason::Duplicate), (3, wit::DropReason::Overflow)]);
        assert!(decisions(&[0, 0, 0]).unwrap().released.is_empty());
    }

    #[test]
    fn answers_whose_counts_or_codes_do_not_hold_are_refused() {
        for (words, says) in [
            (vec![], "0 words, fewer than the three counts"),
            (vec![1, 0], "2 words"),
            (vec![1, 0, 0], "3 words, but its counts (1 released"),
            (vec![0, 0, 0, 5], "4 words"),
            (vec![0, 1, 0, 4], "4 words"),
            (vec![u64::MAX, u64::MAX, 0, 1], "4 words"),
            (vec![0, 1 << 62, 0, 1, 2], "5 words"),
            (vec![0, 1, 0, 4, 6], "drop reason code 6 for sequence number 4"),
            (vec![0, 1, 0, 4, 1 << 32], "code 4294967296"),
        ] {
            let err = decisions(&words).unwrap_err();
            assert!(err.contains(says), "{words:?}: {err}");
        }
    }
}
