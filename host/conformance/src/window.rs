//! What an ordering claim promises across answers: a reorder window. An event is
//! held until log time (`now`) is `window_ms` past its event time or past its arrival
//! (the log time that carried it), whichever comes first, so that an event with an
//! earlier time arriving within the window still goes out before it; only a full
//! buffer (more undecided events than `max_buffered`) may release early. And no
//! longer: it is decided at the first push at which its window has passed, so the
//! window is all the delay ordering adds. This is the builtin ordering's rule. A stage
//! that merely sorts each batch as it comes orders nothing across batches, and one that
//! waits a push too long delays every event: the per-frame check alone catches neither.

use std::collections::BTreeMap;

use streamgate_plugin_sdk::Event;

use crate::generate::Log;
use crate::harness::Answer;
use crate::overflow::undecided_per_push;

/// Every event released at a push whose buffer was not full had waited its window.
pub fn held_for_window(
    log: &Log,
    frames: &[Answer],
    window_ms: i64,
    max_buffered: i64,
) -> Result<(), String> {
    for ((i, f), held) in frames.iter().enumerate().zip(undecided_per_push(log, frames)) {
        if held > max_buffered {
            continue;
        }
        let cutoff = f.now.saturating_sub(window_ms);
        if let Some(e) = f.released.iter().find(|e| e.event_time > cutoff && e.log_time > cutoff) {
            return Err(format!(
                "push {} (now={}) released {} before its reorder window passed: an event is held until now is \
                 window_ms = {window_ms} past its event time or its arrival (here {}), so that a later event with \
                 an earlier time still goes before it; only a buffer holding more than max_buffered = \
                 {max_buffered} may release early (it held {held})",
                i + 1,
                f.now,
                named(e),
                due_at(e, window_ms)
            ));
        }
    }
    Ok(())
}

/// No event is still held after a push at which its window had passed.
pub fn decided_when_due(log: &Log, frames: &[Answer], window_ms: i64) -> Result<(), String> {
    let mut held: BTreeMap<u64, Event> = BTreeMap::new();
    for (i, f) in frames.iter().enumerate() {
        held.extend(log.batches.get(i).into_iter().flat_map(|b| b.events.iter().map(|e| (e.seq, *e))));
        f.released.iter().for_each(|e| _ = held.remove(&e.seq));
        f.dropped.iter().for_each(|(seq, _)| _ = held.remove(seq));
        let cutoff = f.now.saturating_sub(window_ms);
        if let Some(e) = held.values().find(|e| e.event_time <= cutoff || e.log_time <= cutoff) {
            return Err(format!(
                "after push {} (now={}) {} was still held, though its reorder window had passed (window_ms = \
                 {window_ms}: due at {}): an ordering stage decides an event at the first push at which now is \
                 window_ms past its event time or its arrival; holding it longer delays it for nothing",
                i + 1,
                f.now,
                named(e),
                due_at(e, window_ms)
            ));
        }
    }
    Ok(())
}

/// `seq N (event time T, arrived at log time L)`.
fn named(e: &Event) -> String {
    format!("seq {} (event time {}, arrived at log time {})", e.seq, e.event_time, e.log_time)
}

/// When the window of `e` has passed, for messages.
fn due_at(e: &Event, window_ms: i64) -> i64 {
    e.event_time.min(e.log_time).saturating_add(window_ms)
}

#[cfg(test)]
mod tests {
    use streamgate_plugin_sdk::Event;

    use super::*;
    use crate::generate::Batch;

    fn event(seq: u64, event_time: i64, log_time: i64) -> Event {
        Event { seq, key: seq, event_time, log_time, id: 0, tag: 0 }
    }

    fn releasing(now: i64, events: Vec<Event>) -> Answer {
        Answer { now, released: events, dropped: vec![], expired: vec![] }
    }

    #[test]
    fn an_event_waits_a_window_after_its_time_or_its_arrival() {
        let (on_time, future) = (event(1, 1_000, 1_000), event(2, 9_000, 1_000));
        let log = Log::new(vec![
            Batch { now: 1_000, events: vec![on_time, future] },
            Batch { now: 2_000, events: vec![] },
        ]);
        let waited = [releasing(1_000, vec![]), releasing(2_000, vec![on_time, future])];
        assert!(held_for_window(&log, &waited, 1_000, 100).is_ok(), "both due at 2,000 (time, arrival)");
        let early = [releasing(1_000, vec![on_time]), releasing(2_000, vec![future])];
        let err = held_for_window(&log, &early, 1_000, 100).unwrap_err();
        assert!(err.contains("released seq 1 (event time 1000, arrived at log time 1000) before"), "{err}");
        assert!(held_for_window(&log, &early, 0, 100).is_ok(), "a zero window holds nothing");
        assert!(held_for_window(&log, &early, 1_000, 1).is_ok(), "a full buffer may release early");
        assert!(decided_when_due(&log, &waited, 1_000).is_ok());
        let late = [releasing(1_000, vec![]), releasing(2_000, vec![on_time])];
        let err = decided_when_due(&log, &late, 1_000).unwrap_err();
        assert!(
            err.contains("after push 2 (now=2000) seq 2 (event time 9000, arrived at log time 1000)"),
            "{err}"
        );
        assert!(err.contains("due at 2000"), "{err}");
    }
}
