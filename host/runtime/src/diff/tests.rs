//! The diff's kinds of difference, its bounds, and a real fork: a candidate dedupe
//! forked from a running one decides like a replay that swapped at that position.

use super::*;
use crate::{Chain, ChainOptions, ChainSpec, Counts, Event, PolicyRuntime, SandboxConfig, StageSpec};

fn id(key: &str, t: i64) -> EventId {
    EventId { key: key.into(), event_time: t, id: 0, tag: 0 }
}

#[test]
fn each_kind_of_difference_is_counted_once_per_event() {
    let mut diff = Diff::default();
    let live = Decided {
        released: vec![id("a", 1), id("b", 1), id("c", 1)],
        dropped: vec![(id("d", 1), "duplicate"), (id("e", 1), "stale")],
        expired: vec![],
    };
    let candidate = Decided {
        released: vec![id("a", 1), id("f", 1)],
        dropped: vec![(id("b", 1), "duplicate"), (id("d", 1), "out_of_date")],
        expired: vec![],
    };
    assert_eq!(diff.compare("1-0", 1000, &live, &candidate), 5);
    let c = diff.counts();
    assert_eq!((c.released_only_live, c.released_only_candidate), (2, 1), "{c:?}");
    assert_eq!((c.drop_reasons_differ, c.dropped_only_live, c.dropped_only_candidate), (1, 1, 0), "{c:?}");
    assert_eq!((c.entries, c.differing_entries, c.reordered_entries), (1, 1, 0));
    assert_eq!(diff.per_key().get("b"), Some(&1));
    let report = diff.report();
    let b = report.sample.iter().find(|s| s.key == "b").unwrap();
    assert_eq!((b.live.as_str(), b.candidate.as_str()), ("released", "dropped (duplicate)"));

    // Same events in another order: one reordered entry, no differing event.
    let swapped = Decided { released: vec![id("y", 1), id("x", 1)], dropped: vec![], expired: vec![] };
    let ordered = Decided { released: vec![id("x", 1), id("y", 1)], dropped: vec![], expired: vec![] };
    assert_eq!(diff.compare("2-0", 1001, &ordered, &swapped), 0);
    assert_eq!(diff.counts().reordered_entries, 1);
    assert_eq!(diff.counts().differing_entries, 2);
    // Alike: nothing.
    assert_eq!(diff.compare("3-0", 1002, &ordered, &ordered), 0);
    assert_eq!(diff.counts().differing_entries, 2);
    assert_eq!(diff.counts().entries, 3);
}

#[test]
fn keys_expired_by_one_chain_only_are_differences() {
    let mut diff = Diff::default();
    let live = Decided { expired: vec![3, 7, 9], ..Decided::default() };
    let candidate = Decided { expired: vec![7, 11], ..Decided::default() };
    assert_eq!(
        diff.compare("1-0", 1000, &live, &candidate),
        3,
        "3 and 9 by live only, 11 by the candidate only"
    );
    let c = diff.counts();
    assert_eq!((c.expired_only_live, c.expired_only_candidate, c.differing_entries), (2, 1, 1), "{c:?}");
    let report = diff.report();
    let eleven = report.sample.iter().find(|s| s.key == format!("#{:016x}", 11)).expect("sampled");
    assert_eq!(
        (eleven.live.as_str(), eleven.candidate.as_str()),
        ("did not expire the key here", "expired the key")
    );
    // A candidate that expires every key it sees, or none, is never "identical".
    assert_eq!(diff.compare("2-0", 1001, &live, &live), 0);
    assert_eq!(diff.compare("3-0", 1002, &live, &Decided::default()), 3);
}

#[test]
fn sample_keys_and_series_stay_bounded() {
    let mut diff = Diff::default();
    let none = Decided::default();
    for i in 0..(KEYS as i64 + 500) {
        let live = Decided { released: vec![id(&format!("k{i}"), i)], dropped: vec![], expired: vec![] };
        diff.compare(&format!("{i}-0"), i * POINT_EVERY_MS, &live, &none);
    }
    let report = diff.report();
    assert_eq!(report.sample.len(), SAMPLE);
    assert_eq!(report.series.len(), POINTS);
    assert_eq!(diff.per_key().len(), KEYS);
    assert_eq!(report.other_keys, 500);
    assert_eq!(report.counts.differing_events, KEYS as u64 + 500);
    assert!((report.rate - 1.0).abs() < 1e-9);
}

fn event(key: &str, t: i64) -> Event {
    Event { key: key.into(), event_time: t, ..Default::default() }
}

fn dedupe(config: &str) -> ChainSpec {
    ChainSpec { version: 0, policies: vec![StageSpec::new("builtin:dedupe", config)] }
}

#[test]
fn a_fork_starts_from_the_running_state_and_leaves_the_running_chain_alone() {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    let options = ChainOptions::defaults(&runtime);
    let counts = Counts::new("t");
    let batches: Vec<Vec<Event>> = (0..40)
        .map(|i| vec![event("a", 10 + 2 * i), event("a", 11 + 2 * i), event("b", 100 - i), event("a", 9)])
        .collect();
    let (first, rest) = batches.split_at(20);
    // Never forked, and swapped at the fork's position: the two oracles.
    let mut never = Chain::build(&runtime, &dedupe("{}"), options).unwrap();
    let mut swapped = Chain::build(&runtime, &dedupe("{}"), options).unwrap();
    let mut live = Chain::build(&runtime, &dedupe("{}"), options).unwrap();
    live.record_drops(true);
    for (n, b) in first.iter().enumerate() {
        let now = 1000 + n as i64;
        never.push(now, b.clone(), &counts);
        swapped.push(now, b.clone(), &counts);
        live.push(now, b.clone(), &counts);
    }
    let next = crate::PreparedChain::load(&runtime, &dedupe(r#"{"newest_per_frame":true}"#), options.limits);
    let (mut candidate, report) = live.fork(next.unwrap()).unwrap();
    assert!(matches!(report.stages[0], crate::StateTransfer::Restored { .. }), "{report:?}");
    let next = crate::PreparedChain::load(&runtime, &dedupe(r#"{"newest_per_frame":true}"#), options.limits);
    swapped.swap(next.unwrap());
    let mut diff = Diff::default();
    for (n, b) in rest.iter().enumerate() {
        let now = 2000 + n as i64;
        let l = live.push(now, b.clone(), &counts);
        let c = candidate.push(now, b.clone(), &counts);
        assert_eq!(l.released, never.push(now, b.clone(), &counts).released, "the running chain changed");
        assert_eq!(c.released, swapped.push(now, b.clone(), &counts).released, "the fork is not a swap");
        diff.compare(&format!("{n}-0"), now, &Decided::of(&l), &Decided::of(&c));
    }
    let counts = diff.counts();
    assert!(counts.released_only_live > 0 && counts.dropped_candidate > counts.dropped_live, "{counts:?}");
    // Promotion: the candidate, with its own state, becomes the running chain.
    live.promote(candidate, 7);
    assert_eq!(live.spec().version, 7);
    assert_eq!(live.previous_spec().map(|s| s.version), Some(0));
}
