//! Recorded logs: what the first policy stage of a running tenant saw, written by
//! `streamgate record` and replayed by the kit (`streamgate conformance --log FILE`).
//!
//! The file is JSON lines, format [`FORMAT`] version [`VERSION`]. The first line is the
//! [`Header`]: it names the tenant and the stream and declares how many entries and
//! events follow, so a file cut short is refused rather than replayed in part. Each
//! further line is one log entry as a stage receives it ([`RecordedEntry`]): its log
//! position, its log time (`now`), and either `"kind":"events"` with the events'
//! metadata or `"kind":"heartbeat"` (time moved on with no events):
//!
//! ```text
//! {"format":"streamgate-recorded-log","version":1,"tenant":"taxi","source":"streamgate:taxi:log","entries":2,"events":1}
//! {"position":"1763900000000-0","now":1763900000000,"kind":"events","events":[{"key":"8a3c…","event_time":1763899999950,"log_time":1763900000000,"id":"0000000000000000","tag":"0000000000000000"}]}
//! {"position":"1763900000200-0","now":1763900000200,"kind":"heartbeat"}
//! ```
//!
//! Key, id and tag are the 64-bit hashes plugins get, as 16 hex digits (so tools that
//! read numbers as doubles keep them whole); times are integers (ms since the epoch).
//! Payloads are never recorded: they never reach a plugin, and leaving them out keeps
//! subscriber data out of the file. A replay numbers the events from 1 in log order,
//! as a fresh chain would.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use streamgate_plugin_sdk::Event;

use crate::generate::{Batch, Log};

/// The `format` of the header line.
pub const FORMAT: &str = "streamgate-recorded-log";
/// The version this kit writes and reads.
pub const VERSION: u32 = 1;

/// The first line of a recorded log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub tenant: String,
    /// Where the entries were read (the Redis stream key).
    pub source: String,
    /// Entry lines that follow.
    pub entries: usize,
    /// Events in them.
    pub events: usize,
}

/// What one log entry brought the stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Events,
    Heartbeat,
}

/// One log entry as a stage receives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedEntry {
    /// The log position (`<ms>-<n>` for a Redis stream).
    pub position: String,
    /// The log time the stages were pushed at.
    pub now: i64,
    pub kind: EntryKind,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<RecordedEvent>,
}

/// An event's metadata as plugins receive it, without its sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedEvent {
    #[serde(with = "hex_hash")]
    pub key: u64,
    pub event_time: i64,
    pub log_time: i64,
    #[serde(with = "hex_hash")]
    pub id: u64,
    #[serde(with = "hex_hash")]
    pub tag: u64,
}

/// A whole recorded log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedLog {
    pub header: Header,
    pub entries: Vec<RecordedEntry>,
}

/// Why a file is not a recorded log this kit can replay.
#[derive(Debug, thiserror::Error)]
pub enum RecordedLogError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the file is empty, not a recorded log")]
    Empty,
    #[error("line 1 is not a recorded log header ({0}); record one with `streamgate record`")]
    NotARecordedLog(String),
    #[error("recorded log version {found} is not supported (this kit reads version {VERSION})")]
    UnsupportedVersion { found: u32 },
    #[error("line {line}: {reason}")]
    BadLine { line: usize, reason: String },
    #[error("the file is truncated: its header declares {declared} entries but it holds {found}")]
    Truncated { declared: usize, found: usize },
    #[error("the file holds more entries than the {declared} its header declares")]
    TooManyEntries { declared: usize },
    #[error("its header declares {declared} events but the entries hold {found}")]
    EventCount { declared: usize, found: usize },
}

impl RecordedLog {
    /// A log of `entries` read from `source`, with the header counting them.
    pub fn new(tenant: &str, source: &str, entries: Vec<RecordedEntry>) -> Self {
        let header = Header {
            format: FORMAT.into(),
            version: VERSION,
            tenant: tenant.into(),
            source: source.into(),
            entries: entries.len(),
            events: entries.iter().map(|e| e.events.len()).sum(),
        };
        RecordedLog { header, entries }
    }

    /// One entry's line, newline included (the writer bounds a file by these).
    pub fn entry_line(entry: &RecordedEntry) -> String {
        let mut line = serde_json::to_string(entry).expect("a recorded entry serialises");
        line.push('\n');
        line
    }

    /// The whole file.
    pub fn to_jsonl(&self) -> String {
        let mut out = serde_json::to_string(&self.header).expect("a header serialises");
        out.push('\n');
        for entry in &self.entries {
            out.push_str(&Self::entry_line(entry));
        }
        out
    }

    /// Reads a file written by `streamgate record`.
    pub fn read(path: &Path) -> Result<Self, RecordedLogError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| RecordedLogError::Io { path: path.display().to_string(), source })?;
        Self::parse(&text)
    }

    /// Parses a file's text, refusing foreign, damaged and truncated files.
    pub fn parse(text: &str) -> Result<Self, RecordedLogError> {
        let mut lines = text.split_inclusive('\n').enumerate().filter(|(_, l)| !l.trim().is_empty());
        let (_, first) = lines.next().ok_or(RecordedLogError::Empty)?;
        let value: serde_json::Value = serde_json::from_str(first)
            .map_err(|e| RecordedLogError::NotARecordedLog(format!("not JSON: {e}")))?;
        if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(RecordedLogError::NotARecordedLog(format!("no \"format\":\"{FORMAT}\"")));
        }
        let found = value.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
        if found != u64::from(VERSION) {
            return Err(RecordedLogError::UnsupportedVersion { found: found.min(u32::MAX.into()) as u32 });
        }
        let header: Header = serde_json::from_value(value)
            .map_err(|e| RecordedLogError::NotARecordedLog(format!("bad header: {e}")))?;
        let mut entries = Vec::with_capacity(header.entries.min(1 << 16));
        for (index, line) in lines {
            let number = index + 1;
            if !line.ends_with('\n') {
                return Err(RecordedLogError::BadLine {
                    line: number,
                    reason: "the last line is cut short (no newline): the file is truncated".into(),
                });
            }
            if entries.len() == header.entries {
                return Err(RecordedLogError::TooManyEntries { declared: header.entries });
            }
            let entry: RecordedEntry = serde_json::from_str(line)
                .map_err(|e| RecordedLogError::BadLine { line: number, reason: e.to_string() })?;
            check_entry(&entry).map_err(|reason| RecordedLogError::BadLine { line: number, reason })?;
            entries.push(entry);
        }
        if entries.len() != header.entries {
            return Err(RecordedLogError::Truncated { declared: header.entries, found: entries.len() });
        }
        let events = entries.iter().map(|e| e.events.len()).sum();
        if events != header.events {
            return Err(RecordedLogError::EventCount { declared: header.events, found: events });
        }
        Ok(RecordedLog { header, entries })
    }

    pub fn events(&self) -> usize {
        self.header.events
    }

    /// The log a replay pushes: one batch per entry at its `now` (never going back, as
    /// the worker keeps it), events numbered from 1, and a flush `flush_after_ms` after
    /// the last entry.
    pub fn to_log(&self, flush_after_ms: i64) -> Log {
        let mut seq = 0;
        let mut now = i64::MIN;
        let batches = self
            .entries
            .iter()
            .map(|entry| {
                now = now.max(entry.now);
                let events = entry
                    .events
                    .iter()
                    .map(|e| {
                        seq += 1;
                        Event {
                            seq,
                            key: e.key,
                            event_time: e.event_time,
                            log_time: e.log_time,
                            id: e.id,
                            tag: e.tag,
                        }
                    })
                    .collect();
                Batch { now, events }
            })
            .collect();
        Log { batches, flush_after_ms }
    }

    /// The position of the entry behind push `push` (1-based), if it is one.
    pub fn position_of_push(&self, push: usize) -> Option<&str> {
        push.checked_sub(1).and_then(|i| self.entries.get(i)).map(|e| e.position.as_str())
    }
}

fn check_entry(entry: &RecordedEntry) -> Result<(), String> {
    let numbers = entry
        .position
        .split_once('-')
        .filter(|(a, b)| [a, b].iter().all(|s| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())));
    if numbers.is_none() {
        return Err(format!("{:?} is not a log position like 1763900000000-0", entry.position));
    }
    match (entry.kind, entry.events.is_empty()) {
        (EntryKind::Heartbeat, false) => Err("a heartbeat with events".into()),
        _ => Ok(()),
    }
}

/// A 64-bit hash as 16 hex digits.
mod hex_hash {
    use super::*;

    pub fn serialize<S: serde::Serializer>(hash: &u64, s: S) -> Result<S::Ok, S::Error> {
        let mut text = String::with_capacity(16);
        write!(text, "{hash:016x}").expect("writing to a string");
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() || text.len() > 16 {
            return Err(serde::de::Error::custom(format!("{text:?} is not a hash of 1 to 16 hex digits")));
        }
        u64::from_str_radix(&text, 16)
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a hash in hex digits")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RecordedLog {
        let event = |key: u64, event_time: i64| RecordedEvent {
            key,
            event_time,
            log_time: 1_000,
            id: u64::MAX,
            tag: 0,
        };
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
}
