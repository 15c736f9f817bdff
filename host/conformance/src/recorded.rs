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

impl RecordedEntry {
    /// Its events as stages get them, numbered on from `seq` (the last number given).
    pub fn numbered_events(&self, seq: &mut u64) -> Vec<Event> {
        self.events
            .iter()
            .map(|e| {
                *seq += 1;
                e.numbered(*seq)
            })
            .collect()
    }
}

impl RecordedEvent {
    /// The event as a stage gets it, numbered `seq`.
    pub fn numbered(&self, seq: u64) -> Event {
        Event {
            seq,
            key: self.key,
            event_time: self.event_time,
            log_time: self.log_time,
            id: self.id,
            tag: self.tag,
        }
    }
}

impl From<&Event> for RecordedEvent {
    /// The event without its number.
    fn from(e: &Event) -> Self {
        RecordedEvent { key: e.key, event_time: e.event_time, log_time: e.log_time, id: e.id, tag: e.tag }
    }
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
                Batch { now, events: entry.numbered_events(&mut seq) }
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
mod tests;
