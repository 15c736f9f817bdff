//! The one check of a stage's answer, used by the chain, the upload trial and the
//! conformance kit alike: a stage may release or drop only events it holds (given to it
//! and not yet decided), each once.

use crate::bindings::Decisions;

/// Why an answer is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAnswer {
    #[error("answered with sequence number {seq}, which it does not hold (unknown, or already decided)")]
    NotHeld { seq: u64, released: bool },
    #[error("answered sequence number {seq} twice in one answer")]
    Twice { seq: u64, released: bool },
}

/// Checks `answer` against what the stage holds (`holds(seq)`); on success every
/// released and dropped number is held and named once.
pub fn validate(answer: &Decisions, holds: impl Fn(u64) -> bool) -> Result<(), InvalidAnswer> {
    // A fixed-hash set is safe here: only numbers the host handed out (held ones) are
    // inserted, so a plugin cannot choose colliding keys.
    let mut seen = streamgate_plugin_sdk::KeyMap::<()>::default();
    seen.reserve(answer.released.len() + answer.dropped.len());
    let released = answer.released.iter().map(|&s| (s, true));
    for (seq, released) in released.chain(answer.dropped.iter().map(|d| (d.seq, false))) {
        if !holds(seq) {
            return Err(InvalidAnswer::NotHeld { seq, released });
        }
        if seen.insert(seq, ()).is_some() {
            return Err(InvalidAnswer::Twice { seq, released });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::wit;

    fn answer(released: &[u64], dropped: &[u64]) -> Decisions {
        Decisions {
            released: released.to_vec(),
            dropped: dropped
                .iter()
                .map(|&seq| wit::Dropped { seq, reason: wit::DropReason::Stale })
                .collect(),
            expired: vec![],
        }
    }

    #[test]
    fn only_held_numbers_once() {
        let holds = |s: u64| s < 3;
        assert_eq!(validate(&answer(&[0, 2], &[1]), holds), Ok(()));
        assert_eq!(
            validate(&answer(&[0], &[5]), holds),
            Err(InvalidAnswer::NotHeld { seq: 5, released: false })
        );
        assert_eq!(
            validate(&answer(&[1], &[1]), holds),
            Err(InvalidAnswer::Twice { seq: 1, released: false })
        );
        assert_eq!(
            validate(&answer(&[2, 2], &[]), holds),
            Err(InvalidAnswer::Twice { seq: 2, released: true })
        );
    }
}
