//! The bus: one totally ordered log per tenant that every instance reads whole.
//!
//! A log entry is a batch of events ([`batch`]), a heartbeat, or a control entry
//! ([`control`]). Its position orders it; its log time is the only "now" the policies
//! get. Both come from the log itself (Redis assigns them), so every instance sees the
//! same entries, times and positions. Kinds: [`memory`], [`redis_stream`],
//! [`redis_pubsub`]; their settings in [`config`]; how Redis is reached (one server,
//! Sentinel or Cluster) in [`link`].

pub mod batch;
pub mod config;
pub mod control;
pub mod link;
mod memory;
mod redis_conn;
mod redis_pubsub;
mod redis_stream;
mod stream_reply;

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::event::Event;
use crate::readiness::Readiness;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub use batch::{BatchDecodeError, decode_batch, encode_batch};
pub use config::{BusConfig, BusKind, RedisConfig, RedisTopology};
pub use control::Control;
pub use link::RedisLink;
pub use memory::MemoryBus;
pub use redis_pubsub::RedisPubSubBus;
pub use redis_stream::RedisStreamBus;

/// A position in a tenant's log, printed `major-minor` (a Redis stream id for the
/// stream bus). It is the SSE `id:`, valid on every instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPosition {
    pub major: u64,
    pub minor: u64,
}

impl fmt::Display for LogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.major, self.minor)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a log position (expected two integers like 1763900000000-0)")]
pub struct BadPosition(String);

impl FromStr for LogPosition {
    type Err = BadPosition;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadPosition(s.to_string());
        let (a, b) = s.trim().split_once('-').ok_or_else(bad)?;
        Ok(LogPosition { major: a.parse().map_err(|_| bad())?, minor: b.parse().map_err(|_| bad())? })
    }
}

/// What a log entry holds as written (the bus's wire form).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryBody {
    /// An encoded batch (see [`batch`]).
    Batch(Bytes),
    /// Moves log time on while a tenant is idle.
    Heartbeat,
    /// A control message (JSON, see [`Control`]): every instance
    /// applies it at this same position.
    Control(Bytes),
}

impl EntryBody {
    /// A batch of events, encoded.
    pub fn batch(events: &[Event]) -> Self {
        EntryBody::Batch(encode_batch(events))
    }

    /// A control message, encoded.
    pub fn control(control: &Control) -> Self {
        EntryBody::Control(control.encode())
    }
}

/// What a log entry says, decoded by the reader that read it.
#[derive(Clone, Debug, PartialEq)]
pub enum Content {
    Events(Vec<Event>),
    Heartbeat,
    Control(Control),
    /// Written by another version, or damaged: every instance skips it alike (time
    /// still moves on).
    Undecodable {
        reason: SkipReason,
        detail: String,
    },
}

/// Why a log entry was skipped (the `reason` label of
/// `streamgate_log_entries_skipped_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// Not one field this version knows (`b`, `h`, `c`).
    Fields,
    /// A batch that does not decode.
    Batch,
    /// A control message this version does not understand.
    Control,
}

impl SkipReason {
    pub const ALL: [SkipReason; 3] = [SkipReason::Fields, SkipReason::Batch, SkipReason::Control];

    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Fields => "bad_fields",
            SkipReason::Batch => "bad_batch",
            SkipReason::Control => "bad_control",
        }
    }
}

/// One entry of a tenant's log, as every instance reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct LogEntry {
    pub position: LogPosition,
    /// ms since the Unix epoch, assigned by the log.
    pub log_time: i64,
    pub content: Content,
}

impl LogEntry {
    /// Decodes an entry's body; what does not decode becomes [`Content::Undecodable`].
    pub fn decode(position: LogPosition, log_time: i64, body: &EntryBody) -> Self {
        let content = match body {
            EntryBody::Batch(bytes) => match decode_batch(bytes) {
                Ok(events) => Content::Events(events),
                Err(e) => Content::Undecodable { reason: SkipReason::Batch, detail: e.to_string() },
            },
            EntryBody::Heartbeat => Content::Heartbeat,
            EntryBody::Control(bytes) => match Control::decode(bytes) {
                Ok(control) => Content::Control(control),
                Err(e) => Content::Undecodable { reason: SkipReason::Control, detail: e.to_string() },
            },
        };
        LogEntry { position, log_time, content }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("malformed log entry at {position}: {reason}")]
    Malformed { position: String, reason: String },
    #[error(
        "log entry {position} reached {acked} of {wanted} replicas in time; it is published again \
         (is a replica down?)"
    )]
    NotReplicated { position: String, acked: usize, wanted: usize },
}

/// A tenant's log on one of the bus kinds.
#[derive(Clone)]
pub enum Bus {
    Memory(MemoryBus),
    RedisStream(RedisStreamBus),
    RedisPubSub(RedisPubSubBus),
}

/// A list entry written in the same atomic step as a log entry, with the entry's
/// position spliced between `before` and `after`: a chain's history record, so the
/// control entry and its record exist together or not at all.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub list: String,
    pub before: String,
    pub after: String,
    /// Newest list items kept.
    pub kept: usize,
}

impl Bus {
    /// Appends `body` and, where the bus can do both in one step (a Redis stream, with
    /// the list on the same server), `record`. Returns the position, and whether the
    /// record was written (if not, the caller writes it).
    pub async fn publish_recorded(
        &self,
        tenant: &str,
        body: &EntryBody,
        record: Option<&Recorded>,
    ) -> Result<(LogPosition, bool), BusError> {
        match (self, record) {
            (Bus::RedisStream(b), Some(record)) => {
                Ok((b.publish_recorded(tenant, body, record).await?, true))
            }
            _ => Ok((self.publish(tenant, body).await?, false)),
        }
    }

    /// Appends an entry; returns its position once the log has it.
    pub async fn publish(&self, tenant: &str, body: &EntryBody) -> Result<LogPosition, BusError> {
        match self {
            Bus::Memory(b) => Ok(b.publish(tenant, body)),
            Bus::RedisStream(b) => b.publish(tenant, body).await,
            Bus::RedisPubSub(b) => b.publish(tenant, body).await,
        }
    }

    /// Reads the tenant's log in order into `out` until `cancel`, reconnecting on
    /// errors. `ready` says whether the reader is connected and caught up, and why
    /// not: set once caught up, reset while the connection is lost.
    pub async fn read(
        &self,
        tenant: &str,
        out: mpsc::Sender<LogEntry>,
        ready: Arc<Readiness>,
        cancel: CancellationToken,
    ) {
        self.read_after(tenant, None, out, ready, cancel).await
    }

    /// [`Self::read`], from the entry after `after` on a Redis stream (a checkpoint's
    /// position); the other kinds keep nothing to skip and ignore it.
    pub async fn read_after(
        &self,
        tenant: &str,
        after: Option<LogPosition>,
        out: mpsc::Sender<LogEntry>,
        ready: Arc<Readiness>,
        cancel: CancellationToken,
    ) {
        match self {
            Bus::Memory(b) => b.read(tenant, out, ready, cancel).await,
            Bus::RedisStream(b) => b.read(tenant, after, out, ready, cancel).await,
            Bus::RedisPubSub(b) => b.read(tenant, out, ready, cancel).await,
        }
    }
}

/// Milliseconds since the Unix epoch by this machine's clock. Only publishers use it
/// (for trimming and the memory bus); policies never do.
/// Hands a read entry to the tenant's dispatcher unless reading was cancelled; false
/// when the reader must stop (cancelled, or nobody is reading any more).
pub(crate) async fn deliver(
    out: &mpsc::Sender<LogEntry>,
    entry: LogEntry,
    cancel: &CancellationToken,
) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        sent = out.send(entry) => sent.is_ok(),
    }
}

pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_print_and_order() {
        let p: LogPosition = "1763900000000-3".parse().unwrap();
        assert_eq!(p.to_string(), "1763900000000-3");
        assert!(p < "1763900000001-0".parse().unwrap());
        assert!(p > "1763900000000-2".parse().unwrap());
        assert!("abc".parse::<LogPosition>().is_err());
        assert!("1-".parse::<LogPosition>().is_err());
    }
}
