//! [`export_policy_v4!`]: a [`Policy`](crate::Policy) as a component of
//! `streamgate:policy@0.4.0`, whose batch and answer are one list of 64-bit words each:
//! the batch is read in place as [`Event`](crate::Event)s ([`events_of_rows`]) and the
//! answer written in one allocation of its exact size ([`answer_words`]).

use crate::{Decisions, Event};

/// Words per event in a 0.4.0 batch: `Event`'s six fields, in order.
pub const ROW_WORDS: usize = 6;

// `Event` is a row: six 8-byte integers in WIT order, with `u64`'s alignment.
const _: () = assert!(size_of::<Event>() == ROW_WORDS * size_of::<u64>());
const _: () = assert!(align_of::<Event>() == align_of::<u64>());

/// Exports a [`Policy`](crate::Policy) implementation as the component's
/// `streamgate:policy/policy@0.4.0` (world `policy-plugin`); `$wit_path` is the directory
/// holding the 0.4.0 `policy.wit` (`wit/v0.4.0` in this repository). The policy sees the
/// same [`Event`](crate::Event)s and fills the same [`Decisions`](crate::Decisions) as
/// under the other worlds; only the shell differs.
///
/// Call it once at the crate root of a `cdylib` plugin, instead of another version's
/// macro; the crate must depend on `wit-bindgen` for `wasm32` targets. On other targets
/// it expands to nothing.
#[macro_export]
macro_rules! export_policy_v4 {
    ($policy:ty, $wit_path:literal) => {
        #[cfg(target_arch = "wasm32")]
        mod __streamgate_export_v4 {
            wit_bindgen::generate!({ path: $wit_path, world: "streamgate:policy/policy-plugin@0.4.0" });

            use exports::streamgate::policy::policy as wit;

            ::std::thread_local! {
                /// The decisions of the call under way, kept between calls so a push
                /// allocates nothing for them once their vectors have grown.
                static DECIDED: ::core::cell::RefCell<$crate::Decisions> = Default::default();
            }

            $crate::__policy_shell!($policy, {
                fn capabilities(&self) -> Vec<wit::Capability> {
                    self.0.borrow().capabilities().into_iter().map(capability).collect()
                }

                fn push(&self, now: i64, events: Vec<u64>) -> Vec<u64> {
                    DECIDED.with_borrow_mut(|decided| {
                        decided.released.clear();
                        decided.dropped.clear();
                        decided.expired.clear();
                        self.0.borrow_mut().push(now, $crate::events_of_rows(&events), decided);
                        $crate::answer_words(decided)
                    })
                }
            });
        }
    };
}

/// A 0.4.0 batch read in place: six words per event, in [`Event`]'s field order. Words
/// after the last whole row are ignored (the host sends whole rows).
pub fn events_of_rows(rows: &[u64]) -> &[Event] {
    let events = rows.len() / ROW_WORDS;
    // SAFETY: `Event` is `repr(C)` with six 8-byte integer fields (every bit pattern is
    // a valid value), so its size is six words and its alignment `u64`'s (both asserted
    // above); `rows` holds at least `events * ROW_WORDS` initialised words and the slice
    // borrows them for its whole lifetime.
    unsafe { std::slice::from_raw_parts(rows.as_ptr().cast::<Event>(), events) }
}

/// `decided` as 0.4.0's answer: `[released, dropped, expired counts, released seqs,
/// (dropped seq, reason code) pairs, expired keys]`, allocated once at its exact size.
pub fn answer_words(decided: &Decisions) -> Vec<u64> {
    let (released, dropped, expired) = (&decided.released, &decided.dropped, &decided.expired);
    let mut words = Vec::with_capacity(3 + released.len() + 2 * dropped.len() + expired.len());
    words.extend([released.len() as u64, dropped.len() as u64, expired.len() as u64]);
    words.extend_from_slice(released);
    words.extend(dropped.iter().flat_map(|&(seq, reason)| [seq, u64::from(reason.code())]));
    words.extend_from_slice(expired);
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DropReason;

    #[test]
    fn rows_are_read_in_place_as_events() {
        let rows: Vec<u64> = vec![1, 7, 10, 5, 0, 4, 2, 8, (-20i64) as u64, 5, 3, 0, 99];
        let events = events_of_rows(&rows);
        assert_eq!(events.len(), 2, "the partial row is left out");
        assert_eq!(events[0], Event { seq: 1, key: 7, event_time: 10, log_time: 5, id: 0, tag: 4 });
        assert_eq!(events[1], Event { seq: 2, key: 8, event_time: -20, log_time: 5, id: 3, tag: 0 });
        assert!(events_of_rows(&[]).is_empty());
    }

    #[test]
    fn the_answer_is_counts_then_released_dropped_pairs_and_expired() {
        let decided = Decisions {
            released: vec![4, 2],
            dropped: vec![(3, DropReason::Stale), (5, DropReason::Overflow)],
            expired: vec![77],
        };
        let words = answer_words(&decided);
        assert_eq!(words, vec![2, 2, 1, 4, 2, 3, 0, 5, 5, 77]);
        assert_eq!(words.capacity(), words.len(), "one allocation of the exact size");
        assert_eq!(answer_words(&Decisions::default()), vec![0, 0, 0]);
    }
}
