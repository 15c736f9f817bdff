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

/// What claiming one answered number found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Held by the stage and not named before in this answer: now claimed.
    Fresh,
    /// Not held by the stage (unknown, held by another, or already decided).
    NotHeld,
    /// Already claimed by this answer.
    Twice,
}

/// The events a stage holds, as [`check`] claims them.
pub(crate) trait Claims {
    /// Claims `seq`, named among the answer's released events or its dropped ones.
    fn claim(&mut self, seq: u64, released: bool) -> Claim;
    /// Undoes a [`Claim::Fresh`] claim (the answer was refused).
    fn unclaim(&mut self, seq: u64, released: bool);
}

/// The rule itself: every released, then every dropped number, in answer order, must be
/// claimed fresh; the first that is not makes the answer invalid, and every claim made
/// is undone. On success every named number stays claimed.
pub(crate) fn check(answer: &Decisions, held: &mut impl Claims) -> Result<(), InvalidAnswer> {
    let released = answer.released.iter().map(|&s| (s, true));
    let named = released.chain(answer.dropped.iter().map(|d| (d.seq, false)));
    let mut claimed = 0;
    for (seq, released) in named.clone() {
        let invalid = match held.claim(seq, released) {
            Claim::Fresh => {
                claimed += 1;
                continue;
            }
            Claim::NotHeld => InvalidAnswer::NotHeld { seq, released },
            Claim::Twice => InvalidAnswer::Twice { seq, released },
        };
        named.take(claimed).for_each(|(seq, released)| held.unclaim(seq, released));
        return Err(invalid);
    }
    Ok(())
}

/// Checks `answer` against what the stage holds (`holds(seq)`); on success every
/// released and dropped number is held and named once.
pub fn validate(answer: &Decisions, holds: impl Fn(u64) -> bool) -> Result<(), InvalidAnswer> {
    /// Claims kept in a set beside `holds`.
    struct SeenOnce<F> {
        holds: F,
        // A fixed-hash set is safe here: only numbers the host handed out (held ones)
        // are inserted, so a plugin cannot choose colliding keys.
        seen: streamgate_plugin_sdk::KeyMap<()>,
    }
    impl<F: Fn(u64) -> bool> Claims for SeenOnce<F> {
        fn claim(&mut self, seq: u64, _: bool) -> Claim {
            if !(self.holds)(seq) {
                Claim::NotHeld
            } else if self.seen.insert(seq, ()).is_some() {
                Claim::Twice
            } else {
                Claim::Fresh
            }
        }

        fn unclaim(&mut self, _: u64, _: bool) {}
    }
    let mut seen = streamgate_plugin_sdk::KeyMap::<()>::default();
    seen.reserve(answer.released.len() + answer.dropped.len());
    check(answer, &mut SeenOnce { holds, seen })
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
