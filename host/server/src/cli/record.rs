//! `streamgate record`: copies what a running tenant's first policy stage sees from its Redis
//! stream (`<prefix>:<tenant>:log`) into a recorded log file
//! ([`streamgate_conformance::recorded`]), bounded in entries and bytes, for
//! `streamgate conformance NEW --against OLD --log FILE` to replay before a swap.
//!
//! Per entry it keeps the position, the log time and the events' metadata as plugins
//! get it (key, id and tag hashed); never payloads. Heartbeats are kept (time moves on);
//! control entries (chain changes) and entries that do not decode are skipped and
//! counted. The file is written whole to `FILE.partial` and then renamed, so a file at
//! the given path is always complete.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use streamgate_conformance::recorded::{EntryKind, RecordedEntry, RecordedEvent, RecordedLog};

use crate::bus::{BusKind, Content, LogEntry, LogPosition, RedisLink, RedisStreamBus};
use crate::config::Config;
use crate::event::key_hash;

/// Entries asked of Redis at a time.
const PAGE: usize = 256;

/// What to record and where to.
pub(super) struct RecordArgs {
    pub tenant: String,
    pub config: Option<PathBuf>,
    pub redis: Option<String>,
    pub key_prefix: Option<String>,
    pub out: PathBuf,
    pub max_entries: usize,
    pub max_bytes: usize,
    pub since: Option<LogPosition>,
}

/// Why recording stopped.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    EndOfStream,
    MaxEntries,
    MaxBytes,
}

/// The entries kept so far and what was skipped.
#[derive(Default)]
struct Recorder {
    entries: Vec<RecordedEntry>,
    /// Bytes of the entry lines kept.
    bytes: usize,
    /// Entries read from the stream, kept or not.
    read: usize,
    heartbeats: usize,
    controls: usize,
    undecodable: usize,
    /// Log time never goes back (as the policy worker keeps it).
    now: i64,
}

impl Recorder {
    /// Keeps `entry` unless its line would pass `max_bytes` (then `false`).
    fn add(&mut self, entry: LogEntry, max_bytes: usize) -> bool {
        self.now = self.now.max(entry.log_time);
        let (kind, events) = match entry.content {
            Content::Events(events) => (EntryKind::Events, events),
            Content::Heartbeat => (EntryKind::Heartbeat, Vec::new()),
            Content::Control(_) => {
                self.read += 1;
                self.controls += 1;
                return true;
            }
            Content::Undecodable { .. } => {
                self.read += 1;
                self.undecodable += 1;
                return true;
            }
        };
        let now = self.now;
        let events = events
            .iter()
            .map(|e| RecordedEvent {
                key: key_hash(&e.key),
                event_time: e.event_time,
                log_time: now,
                id: e.id,
                tag: e.tag,
            })
            .collect();
        let recorded = RecordedEntry { position: entry.position.to_string(), now, kind, events };
        let line = RecordedLog::entry_line(&recorded).len();
        if self.bytes + line > max_bytes {
            return false;
        }
        self.read += 1;
        self.bytes += line;
        self.heartbeats += usize::from(kind == EntryKind::Heartbeat);
        self.entries.push(recorded);
        true
    }
}

pub(super) async fn record(args: RecordArgs) -> anyhow::Result<()> {
    if args.max_entries == 0 || args.max_bytes == 0 {
        bail!("--max-entries and --max-bytes must be above 0");
    }
    let bus = RedisStreamBus::with_link(redis_of(&args)?, Duration::ZERO);
    let key = bus.stream_key(&args.tenant);
    match bus.key_type(&args.tenant).await.with_context(|| format!("reading {key}"))?.as_str() {
        "stream" => {}
        "none" => bail!(
            "no log at {key}: check the tenant name and the key prefix (--key-prefix, or the config's \
             [redis] key_prefix), and that the tenant uses the redis-stream bus"
        ),
        other => bail!("{key} holds a {other}, not a tenant's log (a stream)"),
    }
    let mut recorder = Recorder::default();
    let mut from = args.since.unwrap_or_default();
    let stop = 'pages: loop {
        let want = (args.max_entries - recorder.read).min(PAGE);
        if want == 0 {
            break Stop::MaxEntries;
        }
        let page = bus.range(&args.tenant, from, want).await.with_context(|| format!("reading {key}"))?;
        let got = page.len();
        for entry in page {
            from = after(entry.position);
            if !recorder.add(entry, args.max_bytes) {
                break 'pages Stop::MaxBytes;
            }
        }
        if got < want {
            break Stop::EndOfStream;
        }
    };
    let log = RecordedLog::new(&args.tenant, &key, std::mem::take(&mut recorder.entries));
    write_whole(&args.out, &log.to_jsonl())?;
    eprintln!("{}", summary(&args, &log, &recorder, &stop));
    Ok(())
}

/// Redis as the config (any topology) or the flags (one server) reach it.
fn redis_of(args: &RecordArgs) -> anyhow::Result<RedisLink> {
    let Some(path) = &args.config else {
        let url = args.redis.clone().context("give --config FILE or --redis URL")?;
        let prefix = args.key_prefix.clone().unwrap_or_else(|| "streamgate".into());
        return Ok(RedisLink::single(&url, &prefix)?);
    };
    let config = Config::load(path)?;
    if config.bus.kind != BusKind::RedisStream {
        bail!(
            "{}: the bus is {:?}; only a redis-stream log can be recorded",
            path.display(),
            config.bus.kind
        );
    }
    if !config.tenants.iter().any(|t| t.name == args.tenant) {
        bail!("{}: no tenant named {:?}", path.display(), args.tenant);
    }
    Ok(RedisLink::open(&config.redis)?)
}

/// The first position after `position`.
fn after(position: LogPosition) -> LogPosition {
    match position.minor.checked_add(1) {
        Some(minor) => LogPosition { minor, ..position },
        None => LogPosition { major: position.major.saturating_add(1), minor: 0 },
    }
}

/// Writes `FILE.partial`, then renames it to `FILE`.
fn write_whole(out: &Path, text: &str) -> anyhow::Result<()> {
    let mut partial = out.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    std::fs::write(&partial, text).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, out)
        .with_context(|| format!("renaming {} to {}", partial.display(), out.display()))
}

fn summary(args: &RecordArgs, log: &RecordedLog, recorder: &Recorder, stop: &Stop) -> String {
    let span = match (log.entries.first(), log.entries.last()) {
        (Some(a), Some(b)) => format!(", {} to {}", a.position, b.position),
        _ => String::new(),
    };
    let why = match stop {
        Stop::EndOfStream => "reached the end of the stream".to_string(),
        Stop::MaxEntries => format!("stopped at --max-entries {} (the stream goes on)", args.max_entries),
        Stop::MaxBytes => format!("stopped at --max-bytes {} (the stream goes on)", args.max_bytes),
    };
    format!(
        "recorded {} entries of tenant {} ({} events, {} heartbeats{span}) into {}; skipped {} control \
         and {} undecodable entries; {why}",
        log.entries.len(),
        args.tenant,
        log.events(),
        recorder.heartbeats,
        args.out.display(),
        recorder.controls,
        recorder.undecodable,
    )
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::bus::{Control, SkipReason};
    use crate::event::Event;

    fn entry(major: u64, content: Content) -> LogEntry {
        LogEntry { position: LogPosition { major, minor: 0 }, log_time: major as i64, content }
    }

    #[test]
    fn entries_become_what_stages_see_and_the_byte_bound_holds() {
        let event = Event {
            key: "taxi-1".into(),
            event_time: 90,
            id: 3,
            tag: 4,
            payload: Bytes::from_static(b"{\"secret\":1}"),
        };
        let mut recorder = Recorder::default();
        assert!(recorder.add(entry(100, Content::Events(vec![event])), usize::MAX));
        assert!(recorder.add(entry(50, Content::Heartbeat), usize::MAX));
        let control = Control::FaultStage { version: 1, stage: 0, plugin: "p".into(), reason: "slow".into() };
        assert!(recorder.add(entry(120, Content::Control(control)), usize::MAX));
        assert_eq!(recorder.controls, 1);
        let undecodable = Content::Undecodable { reason: SkipReason::Batch, detail: "x".into() };
        assert!(recorder.add(entry(130, undecodable), usize::MAX));
        assert_eq!(recorder.undecodable, 1);
        let kept = &recorder.entries;
        assert_eq!(kept.len(), 2);
        let seen = kept[0].events[0];
        assert_eq!(
            (seen.key, seen.event_time, seen.log_time, seen.id, seen.tag),
            (key_hash("taxi-1"), 90, 100, 3, 4)
        );
        assert_eq!((kept[1].kind, kept[1].now), (EntryKind::Heartbeat, 100), "log time never goes back");
        let text = RecordedLog::new("taxi", "k", kept.clone()).to_jsonl();
        assert!(!text.contains("secret") && !text.contains("taxi-1"), "no payloads, no keys: {text}");
        let full = recorder.bytes;
        assert!(
            !recorder.add(entry(140, Content::Heartbeat), full + 10),
            "a line past --max-bytes is not kept"
        );
        assert_eq!(recorder.entries.len(), 2);
        assert_eq!(after(LogPosition { major: 5, minor: u64::MAX }), LogPosition { major: 6, minor: 0 });
    }
}
