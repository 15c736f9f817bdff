//! Unit tests of recorded logs: reading, refusing, numbering.

use super::*;

fn sample() -> RecordedLog {
    let event =
        |key: u64, event_time: i64| RecordedEvent { key, event_time, log_time: 1_000, id: u64::MAX, tag: 0 };
    RecordedLog::new(
        "taxi",
        "streamgate:taxi:log",
        vec![
            RecordedEntry {
                position: "1000-0".into(),
                now: 1_000,
                kind: EntryKind::Events,
                events: vec![event(1 << 63, 990), event(7, i64::MIN)],
            },
            RecordedEntry {
                position: "1200-0".into(),
                now: 1_200,
                kind: EntryKind::Heartbeat,
                events: vec![],
            },
            RecordedEntry {
                position: "1100-1".into(),
                now: 1_100,
                kind: EntryKind::Events,
                events: vec![event(7, i64::MAX)],
            },
        ],
    )
}

#[test]
fn a_recorded_log_round_trips_and_replays_in_log_order() {
    let log = sample();
    let text = log.to_jsonl();
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(text.contains(r#""key":"8000000000000000""#), "hashes as 16 hex digits: {text}");
    assert!(!text.contains("payload"), "{text}");
    assert_eq!(RecordedLog::parse(&text).unwrap(), log);
    let replay = log.to_log(5_000);
    let nows: Vec<i64> = replay.batches.iter().map(|b| b.now).collect();
    assert_eq!(nows, [1_000, 1_200, 1_200], "now never goes back");
    let seqs: Vec<u64> = replay.batches.iter().flat_map(|b| b.events.iter().map(|e| e.seq)).collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(replay.batches[0].events[0].key, 1 << 63);
    assert_eq!(replay.flush_time(), 1_200 + crate::generate::FLUSH_AFTER_MS);
    assert_eq!(log.position_of_push(3), Some("1100-1"));
    assert_eq!(log.position_of_push(4), None, "the flush is no entry");
}

#[test]
fn truncated_foreign_and_damaged_files_are_refused_with_the_reason() {
    let text = sample().to_jsonl();
    let without_last: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
    let refused = |text: &str| RecordedLog::parse(text).unwrap_err().to_string();
    assert!(refused(&without_last).contains("truncated: its header declares 3 entries but it holds 2"));
    let cut = &text[..text.len() - 10];
    assert!(refused(cut).contains("line 4: the last line is cut short"), "{}", refused(cut));
    assert!(refused("").contains("empty"));
    let newer = text.replacen(r#""version":1"#, r#""version":2"#, 1);
    assert!(refused(&newer).contains("version 2 is not supported"), "{}", refused(&newer));
    let foreign = "{\"format\":\"something-else\",\"version\":1}\n";
    assert!(refused(foreign).contains("not a recorded log header"), "{}", refused(foreign));
    assert!(refused("B\u{1}garbage\n").contains("not a recorded log header"));
    let bad_hash = text.replacen(r#""key":"8000000000000000""#, r#""key":"zz""#, 1);
    assert!(refused(&bad_hash).contains("line 2:"), "{}", refused(&bad_hash));
    let extra = format!("{text}{}", text.lines().nth(2).unwrap()) + "\n";
    assert!(refused(&extra).contains("more entries than the 3"), "{}", refused(&extra));
    let bad_position = text.replacen("1200-0", "later", 1);
    assert!(refused(&bad_position).contains("line 3: \"later\" is not a log position"));
}
