//! The hub's unit tests: wire format, resume, latest values (per key, and per key and
//! tag), keyed routing, lag.

use super::*;

fn hub(latest_value: bool, history: usize, buffer: usize) -> Arc<Hub> {
    Arc::new(Hub::new("e", latest_value, history, buffer, Arc::new(TenantMetrics::new("t"))))
}

fn released(items: &[(&str, i64)]) -> Vec<Event> {
    items
        .iter()
        .map(|(k, t)| Event {
            key: k.to_string(),
            event_time: *t,
            payload: Bytes::from(format!(r#"{{"k":"{k}","t":{t}}}"#)),
            ..Default::default()
        })
        .collect()
}

fn pos(n: u64) -> LogPosition {
    LogPosition { major: n, minor: 0 }
}

fn data(f: &Frame) -> &str {
    let text = std::str::from_utf8(&f.wire).unwrap();
    text.split("data: ").nth(1).unwrap().trim_end()
}

fn next(live: &mut Live) -> Option<Arc<Frame>> {
    match live {
        Live::All(rx) => rx.try_recv().ok(),
        Live::Keys(rx, _) => rx.try_recv().ok(),
    }
}

#[test]
fn frames_are_serialised_once_with_event_id_and_json_array() {
    let hub = Arc::new(Hub::new("liveMapLocation", false, 8, 8, Arc::new(TenantMetrics::new("t"))));
    let mut sub = hub.subscribe(None, None, false);
    hub.publish(pos(5), released(&[("a", 1), ("b", 2)]), &[]);
    let f = next(&mut sub.live).unwrap();
    assert_eq!(
        std::str::from_utf8(&f.wire).unwrap(),
        "event: liveMapLocation\nid: 5-0\ndata: [{\"k\":\"a\",\"t\":1},{\"k\":\"b\",\"t\":2}]\n\n"
    );
}

#[test]
fn resume_replays_frames_after_the_id_and_flags_gaps() {
    let hub = hub(false, 2, 8);
    for n in 1..=3 {
        hub.publish(pos(n), released(&[("a", n as i64)]), &[]);
    }
    let sub = hub.subscribe(Some(pos(2)), None, false);
    assert_eq!(sub.backlog.iter().map(|f| f.position).collect::<Vec<_>>(), vec![pos(3)]);
    assert!(!sub.gap);
    let sub = hub.subscribe(Some(pos(0)), None, false);
    assert!(sub.gap, "frame 1 fell out of the two-frame ring");
    assert_eq!(sub.backlog.len(), 2);
}

#[test]
fn latest_value_keeps_newest_per_key_sorted_by_time() {
    let hub = hub(true, 8, 8);
    hub.publish(pos(1), released(&[("b", 5), ("a", 7)]), &[]);
    hub.publish(pos(2), released(&[("b", 9), ("a", 3)]), &[]);
    assert_eq!(&hub.snapshot_json(None)[..], br#"[{"k":"a","t":7},{"k":"b","t":9}]"#);
    assert_eq!(&hub.snapshot_json(Some(&["b".into()]))[..], br#"[{"k":"b","t":9}]"#);
    let f = hub.conflated_frame(None).unwrap();
    assert_eq!(f.position, pos(2));
}

#[test]
fn keyed_clients_get_only_their_keys_in_order_with_the_frame_id() {
    let hub = hub(false, 8, 8);
    let mut ab = hub.subscribe(None, Some(vec!["a".into(), "b".into()]), false);
    let mut c = hub.subscribe(None, Some(vec!["c".into()]), false);
    hub.publish(pos(1), released(&[("b", 1), ("x", 1), ("a", 2), ("b", 3)]), &[]);
    hub.publish(pos(2), released(&[("x", 4)]), &[]);
    let f = next(&mut ab.live).unwrap();
    assert_eq!(f.position, pos(1));
    assert_eq!(data(&f), r#"[{"k":"b","t":1},{"k":"a","t":2},{"k":"b","t":3}]"#);
    assert!(next(&mut ab.live).is_none(), "no frame without its keys");
    assert!(next(&mut c.live).is_none(), "c was never published");
    // Resume for keyed clients filters the ring the same way.
    let resumed = hub.subscribe(Some(pos(0)), Some(vec!["a".into()]), false);
    assert_eq!(resumed.backlog.len(), 1);
    assert_eq!(data(&resumed.backlog[0]), r#"[{"k":"a","t":2}]"#);
}

#[test]
fn dropping_a_keyed_subscription_unregisters_it() {
    let hub = hub(false, 8, 8);
    let sub = hub.subscribe(None, Some(vec!["a".into()]), false);
    assert_eq!(hub.keyed.lock().unwrap().counts(), (1, 1));
    drop(sub);
    assert_eq!(hub.keyed.lock().unwrap().counts(), (0, 0));
}

#[test]
fn a_full_keyed_client_is_counted_and_catches_up_with_the_newest_state() {
    let hub = hub(true, 8, 1);
    let mut slow = hub.subscribe(None, Some(vec!["a".into()]), false);
    hub.publish(pos(1), released(&[("a", 1)]), &[]);
    hub.publish(pos(2), released(&[("a", 2)]), &[]);
    assert_eq!(hub.metrics.sse_lagged.load(Relaxed), 1, "the second frame did not fit");
    assert_eq!(data(&next(&mut slow.live).unwrap()), r#"[{"k":"a","t":1}]"#);
    hub.publish(pos(3), released(&[("b", 3), ("a", 3)]), &[]);
    let f = next(&mut slow.live).unwrap();
    assert_eq!((f.position, data(&f)), (pos(3), r#"[{"k":"a","t":3}]"#));
}

#[test]
fn snapshot_first_gives_a_new_client_every_key_at_once() {
    let hub = hub(true, 8, 8);
    hub.publish(pos(1), released(&[("a", 1), ("b", 2)]), &[]);
    hub.publish(pos(2), released(&[("c", 3)]), &[]);
    let all = hub.subscribe(None, None, true);
    assert_eq!(all.backlog.len(), 1);
    assert_eq!(all.backlog[0].position, pos(2));
    assert_eq!(data(&all.backlog[0]), r#"[{"k":"a","t":1},{"k":"b","t":2},{"k":"c","t":3}]"#);
    let one = hub.subscribe(None, Some(vec!["b".into(), "zz".into()]), true);
    assert_eq!(data(&one.backlog[0]), r#"[{"k":"b","t":2}]"#);
    assert!(hub.subscribe(None, None, false).backlog.is_empty());
}

fn hashes(keys: &[&str]) -> Vec<u64> {
    keys.iter().map(|k| crate::event::key_hash(k)).collect()
}

fn wire(f: &Frame) -> &str {
    std::str::from_utf8(&f.wire).unwrap()
}

#[test]
fn expired_keys_leave_the_snapshot_the_first_frame_and_the_conflated_state() {
    let hub = hub(true, 8, 8);
    hub.publish(pos(1), released(&[("a", 1), ("b", 2), ("c", 3)]), &[]);
    let mut live = hub.subscribe(None, None, false);
    // "zz" was never published: ignored. Removals come first, then the releases.
    assert!(hub.publish(pos(2), released(&[("c", 5)]), &hashes(&["a", "zz"])));
    assert_eq!(
        wire(&next(&mut live.live).unwrap()),
        "event: e-expired\ndata: [\"a\"]\n\nevent: e\nid: 2-0\ndata: [{\"k\":\"c\",\"t\":5}]\n\n"
    );
    assert_eq!(&hub.snapshot_json(None)[..], br#"[{"k":"b","t":2},{"k":"c","t":5}]"#);
    assert_eq!(&hub.snapshot_json(Some(&["a".into()]))[..], b"[]");
    let first = hub.subscribe(None, None, true);
    assert_eq!(data(&first.backlog[0]), r#"[{"k":"b","t":2},{"k":"c","t":5}]"#);
    let conflated = hub.conflated_frame(None).unwrap();
    assert_eq!(
        wire(&conflated),
        "event: e\nid: 2-0\ndata: [{\"k\":\"b\",\"t\":2},{\"k\":\"c\",\"t\":5}]\n\n"
    );
    // A client that fell behind after frame 1 learns the removal it missed.
    let caught_up = hub.conflated_frame(Some(pos(1))).unwrap();
    assert!(wire(&caught_up).starts_with("event: e-expired\ndata: [\"a\"]\n\nevent: e\nid: 2-0\n"));
    assert_eq!(hub.state.lock().unwrap().latest.indexed(), 2, "the hash index forgets a too");
    assert_eq!(hub.metrics.expired_keys.load(Relaxed), 1);
}

#[test]
fn an_expiry_alone_carries_the_id_is_replayed_on_resume_and_a_key_can_come_back() {
    let hub = hub(true, 8, 8);
    hub.publish(pos(1), released(&[("a", 1), ("b", 2)]), &[]);
    assert!(hub.publish(pos(2), Vec::new(), &hashes(&["b"])));
    assert!(!hub.publish(pos(3), Vec::new(), &hashes(&["b", "zz"])), "nothing left to remove: no frame");
    let resumed = hub.subscribe(Some(pos(1)), None, false);
    let replayed: Vec<&str> = resumed.backlog.iter().map(|f| wire(f)).collect();
    assert_eq!(replayed, vec!["event: e-expired\nid: 2-0\ndata: [\"b\"]\n\n"]);
    hub.publish(pos(4), released(&[("b", 9)]), &[]);
    assert_eq!(&hub.snapshot_json(None)[..], br#"[{"k":"a","t":1},{"k":"b","t":9}]"#);
    hub.publish(pos(5), Vec::new(), &hashes(&["b", "a"]));
    assert_eq!(&hub.snapshot_json(None)[..], b"[]");
    assert!(hub.conflated_frame(Some(pos(4))).unwrap().removed == ["a", "b"]);
}

#[test]
fn keyed_clients_get_only_the_removals_of_their_keys() {
    let hub = hub(true, 8, 8);
    let mut a = hub.subscribe(None, Some(vec!["a".into()]), false);
    let mut c = hub.subscribe(None, Some(vec!["c".into()]), false);
    hub.publish(pos(1), released(&[("a", 1), ("b", 2)]), &[]);
    hub.publish(pos(2), released(&[("b", 3)]), &hashes(&["a"]));
    assert_eq!(data(&next(&mut a.live).unwrap()), r#"[{"k":"a","t":1}]"#);
    assert_eq!(wire(&next(&mut a.live).unwrap()), "event: e-expired\nid: 2-0\ndata: [\"a\"]\n\n");
    assert!(next(&mut c.live).is_none(), "neither c's data nor its removal");
    let resumed = hub.subscribe(Some(pos(1)), Some(vec!["a".into()]), false);
    assert_eq!(resumed.backlog.len(), 1);
    assert_eq!(resumed.backlog[0].removed, ["a"]);
    assert!(hub.subscribe(Some(pos(1)), Some(vec!["c".into()]), false).backlog.is_empty());
}

#[test]
fn a_full_keyed_client_catches_up_with_the_removal_it_missed() {
    let hub = hub(true, 8, 1);
    let mut slow = hub.subscribe(None, Some(vec!["a".into(), "b".into()]), false);
    hub.publish(pos(1), released(&[("a", 1), ("b", 1)]), &[]);
    hub.publish(pos(2), Vec::new(), &hashes(&["a"]));
    assert_eq!(hub.metrics.sse_lagged.load(Relaxed), 1, "the removal did not fit");
    next(&mut slow.live).unwrap();
    hub.publish(pos(3), released(&[("b", 3)]), &[]);
    assert_eq!(
        wire(&next(&mut slow.live).unwrap()),
        "event: e-expired\ndata: [\"a\"]\n\nevent: e\nid: 3-0\ndata: [{\"k\":\"b\",\"t\":3}]\n\n"
    );
}

#[test]
fn tenants_without_latest_values_ignore_expiry() {
    let hub = hub(false, 8, 8);
    hub.publish(pos(1), released(&[("a", 1)]), &[]);
    assert!(!hub.publish(pos(2), Vec::new(), &hashes(&["a"])));
    assert!(hub.subscribe(Some(pos(1)), None, false).backlog.is_empty());
}

/// A hub keeping the newest value per key and tag `rank`, `admitted` (a queue).
fn queue_hub(history: usize, buffer: usize) -> Arc<Hub> {
    let tags = ["rank", "admitted"].iter().map(|t| crate::event::key_hash(t)).collect();
    let metrics = Arc::new(TenantMetrics::new("t"));
    Arc::new(Hub::new("e", true, history, buffer, metrics).keeping_tags(tags))
}

/// Events of (user, kind, time), tagged with the kind's hash as the source does.
fn tagged(items: &[(&str, &str, i64)]) -> Vec<Event> {
    items
        .iter()
        .map(|(k, kind, t)| Event {
            key: k.to_string(),
            event_time: *t,
            tag: crate::event::key_hash(kind),
            payload: Bytes::from(format!(r#"{{"k":"{k}","kind":"{kind}","t":{t}}}"#)),
            ..Default::default()
        })
        .collect()
}

#[test]
fn a_keyed_client_starts_with_its_own_newest_value_per_tag_in_log_order() {
    let hub = queue_hub(8, 8);
    hub.publish(pos(1), tagged(&[("u1", "rank", 10), ("u2", "rank", 11)]), &[]);
    hub.publish(pos(2), tagged(&[("u1", "rank", 20), ("u1", "note", 21)]), &[]);
    // Admitted at an earlier event time than the last rank: log order still puts it last.
    hub.publish(pos(3), tagged(&[("u1", "admitted", 15), ("u2", "rank", 30)]), &[]);
    let mut u1 = hub.subscribe(None, Some(vec!["u1".into()]), true);
    assert_eq!(u1.backlog.len(), 1);
    assert_eq!(
        wire(&u1.backlog[0]),
        "event: e\nid: 3-0\ndata: [{\"k\":\"u1\",\"kind\":\"rank\",\"t\":20},\
         {\"k\":\"u1\",\"kind\":\"admitted\",\"t\":15}]\n\n",
        "u1's newest rank, then its admission; not u2's, not the untracked note"
    );
    hub.publish(pos(4), tagged(&[("u2", "admitted", 40), ("u1", "rank", 41)]), &[]);
    let f = next(&mut u1.live).unwrap();
    assert_eq!((f.position, data(&f)), (pos(4), r#"[{"k":"u1","kind":"rank","t":41}]"#));
    // An older rank does not replace a newer one (never back in time).
    hub.publish(pos(5), tagged(&[("u1", "rank", 1)]), &[]);
    let u1_again = hub.subscribe(None, Some(vec!["u1".into()]), true);
    assert_eq!(
        data(&u1_again.backlog[0]),
        r#"[{"k":"u1","kind":"admitted","t":15},{"k":"u1","kind":"rank","t":41}]"#
    );
    assert_eq!(u1_again.backlog[0].position, pos(5));
    assert!(hub.subscribe(None, Some(vec!["u9".into()]), true).backlog.is_empty(), "no state, no frame");
}

#[test]
fn a_keyed_client_resuming_from_before_the_ring_gets_its_current_state() {
    let hub = queue_hub(2, 8);
    hub.publish(pos(1), tagged(&[("u1", "rank", 1)]), &[]);
    hub.publish(pos(2), tagged(&[("u1", "admitted", 2)]), &[]);
    hub.publish(pos(3), tagged(&[("u2", "rank", 3)]), &[]);
    let resumed = hub.subscribe(Some(pos(0)), Some(vec!["u1".into()]), true);
    assert!(resumed.gap);
    let state = hub.current_frame_of(&["u1".into(), "u9".into()]).unwrap();
    assert_eq!(
        wire(&state),
        "event: e-expired\ndata: [\"u9\"]\n\nevent: e\nid: 3-0\ndata: [{\"k\":\"u1\",\"kind\":\"rank\",\"t\":1},\
         {\"k\":\"u1\",\"kind\":\"admitted\",\"t\":2}]\n\n",
        "everything u1 has, at the newest id; u9 has nothing to keep"
    );
    let without_latest = Hub::new("e", false, 2, 8, Arc::new(TenantMetrics::new("t")));
    assert!(without_latest.current_frame_of(&["u1".into()]).is_none());
}

#[test]
fn expiry_removes_every_tag_of_a_key_and_a_full_keyed_client_catches_up_with_all_of_them() {
    let hub = queue_hub(8, 1);
    let mut slow = hub.subscribe(None, Some(vec!["u1".into()]), true);
    hub.publish(pos(1), tagged(&[("u1", "rank", 1)]), &[]);
    hub.publish(pos(2), tagged(&[("u1", "admitted", 2)]), &[]);
    assert_eq!(hub.metrics.sse_lagged.load(Relaxed), 1, "the admission did not fit");
    next(&mut slow.live).unwrap();
    hub.publish(pos(3), tagged(&[("u1", "rank", 3)]), &[]);
    assert_eq!(
        data(&next(&mut slow.live).unwrap()),
        r#"[{"k":"u1","kind":"admitted","t":2},{"k":"u1","kind":"rank","t":3}]"#,
        "the missed admission comes back with the newest rank"
    );
    hub.publish(pos(4), Vec::new(), &hashes(&["u1"]));
    assert_eq!(&hub.snapshot_json(None)[..], b"[]");
    assert_eq!(hub.state.lock().unwrap().latest.indexed(), 0);
}

#[test]
fn closing_ends_every_live_feed_after_what_it_was_sent_and_new_ones_at_once() {
    use tokio::sync::broadcast::error::TryRecvError;
    let hub = hub(true, 8, 8);
    let mut all = hub.subscribe(None, None, false);
    let mut keyed = hub.subscribe(None, Some(vec!["a".into()]), false);
    hub.publish(pos(1), released(&[("a", 1)]), &[]);
    hub.close();
    hub.publish(pos(2), released(&[("a", 2)]), &[]);
    let Live::All(rx) = &mut all.live else { panic!("an all-keys feed") };
    assert_eq!(rx.try_recv().unwrap().position, pos(1), "sent before the close");
    assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Closed);
    let Live::Keys(rx, _) = &mut keyed.live else { panic!("a keyed feed") };
    assert_eq!(rx.try_recv().unwrap().position, pos(1));
    assert_eq!(rx.try_recv().unwrap_err(), tokio::sync::mpsc::error::TryRecvError::Disconnected);
    // Frames still reach the ring: a resume after the close replays them.
    let late = hub.subscribe(Some(pos(1)), None, false);
    assert_eq!(late.backlog.iter().map(|f| f.position).collect::<Vec<_>>(), vec![pos(2)]);
    let Live::All(mut rx) = late.live else { panic!("an all-keys feed") };
    assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Closed);
    let Live::Keys(mut rx, _) = hub.subscribe(None, Some(vec!["a".into()]), false).live else {
        panic!("a keyed feed")
    };
    assert_eq!(rx.try_recv().unwrap_err(), tokio::sync::mpsc::error::TryRecvError::Disconnected);
}
