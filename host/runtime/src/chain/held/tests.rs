//! The held events' queues, claims and stragglers.

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
        held.compact();
    }
    assert_eq!(held.len(), 1);
    assert!(held.meta.len() <= QUEUE_SLACK + 1, "queue kept {} slots", held.meta.len());
    assert_eq!(held.events.len(), held.meta.len());
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
    let answer = Decisions { released: vec![seqs[0], seqs[1], seqs[0]], dropped: vec![], expired: vec![] };
    let mut next = Vec::new();
    assert_eq!(
        held.check_answer(&answer, 0, &mut next),
        Err(InvalidAnswer::Twice { seq: seqs[0], released: true })
    );
    assert_eq!(held.held_by(0), seqs, "still held by stage 0");
    let unknown = Decisions { released: vec![seqs[2], 99], dropped: vec![], expired: vec![] };
    assert_eq!(
        held.check_answer(&unknown, 0, &mut next),
        Err(InvalidAnswer::NotHeld { seq: 99, released: true })
    );
    assert_eq!(
        held.check_answer(&unknown, 1, &mut next),
        Err(InvalidAnswer::NotHeld { seq: seqs[2], released: true })
    );
    assert_eq!(held.held_by(0), seqs);
}

#[test]
fn an_accepted_answer_hands_released_events_on_and_names_each_once() {
    let mut held = HeldEvents::default();
    let seqs: Vec<u64> = (0..4).map(|_| held.admit(event("k"), 0).seq).collect();
    let dropped = |seq| wit::Dropped { seq, reason: wit::DropReason::Stale };
    let mut next = Vec::new();
    let answer =
        Decisions { released: vec![seqs[2], seqs[0]], dropped: vec![dropped(seqs[1])], expired: vec![] };
    assert_eq!(held.check_answer(&answer, 0, &mut next), Ok(()));
    let handed: Vec<u64> = next.iter().map(|e| e.seq).collect();
    assert_eq!(handed, vec![seqs[2], seqs[0]], "in release order");
    assert_eq!(held.held_by(1), vec![seqs[0], seqs[2]]);
    held.discard(seqs[1]);
    assert_eq!((held.held_by(0), held.len()), (vec![seqs[3]], 3));
    // Stage 0 no longer holds what it handed on, in a later answer...
    let again = Decisions { released: vec![seqs[3], seqs[0]], dropped: vec![], expired: vec![] };
    assert_eq!(
        held.check_answer(&again, 0, &mut Vec::new()),
        Err(InvalidAnswer::NotHeld { seq: seqs[0], released: true })
    );
    // ...and an event released and dropped in one answer is named twice.
    let both = Decisions { released: vec![seqs[3]], dropped: vec![dropped(seqs[3])], expired: vec![] };
    assert_eq!(
        held.check_answer(&both, 0, &mut Vec::new()),
        Err(InvalidAnswer::Twice { seq: seqs[3], released: false })
    );
    assert_eq!((held.held_by(0), held.held_by(1)), (vec![seqs[3]], vec![seqs[0], seqs[2]]), "undone");
}
