//! The default bus: one Redis Stream per tenant (`<prefix>:<tenant>:log`).
//!
//! Redis assigns each entry its id, `<ms>-<n>`: that id is the log position, and its
//! ms part is the log time, so every instance agrees on both. Entries are trimmed by
//! age (`MINID ~`). Readers start at the oldest retained entry, so an instance that
//! joins late rebuilds its policy state from the same log as the others, or after the
//! position of a checkpoint it started from (see `crate::checkpoint`).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::readiness::Readiness;

use super::{BusError, Content, EntryBody, LogEntry, LogPosition, SkipReason, wall_clock_ms};

const READ_COUNT: usize = 256;
const BLOCK_MS: u64 = 500;
const FIELD_BATCH: &str = "b";
const FIELD_HEARTBEAT: &str = "h";
const FIELD_CONTROL: &str = "c";

/// XADD a control entry and RPUSH its record (with the new id spliced in) as one step.
const PUBLISH_RECORDED: &str = r"
local id = redis.call('XADD', KEYS[1], 'MINID', '~', ARGV[1], '*', ARGV[2], ARGV[3])
redis.call('RPUSH', KEYS[2], ARGV[4] .. id .. ARGV[5])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[6]), -1)
return id
";

#[derive(Clone)]
pub struct RedisStreamBus {
    client: Client,
    key_prefix: String,
    retention: std::time::Duration,
    /// Shared by every publisher of this instance; reconnects by itself.
    publisher: tokio::sync::OnceCell<ConnectionManager>,
}

impl RedisStreamBus {
    pub fn new(url: &str, key_prefix: &str, retention: std::time::Duration) -> Result<Self, BusError> {
        Ok(RedisStreamBus {
            client: Client::open(url)?,
            key_prefix: key_prefix.to_string(),
            retention,
            publisher: tokio::sync::OnceCell::new(),
        })
    }

    fn key(&self, tenant: &str) -> String {
        format!("{}:{}:log", self.key_prefix, tenant)
    }

    async fn connect(&self, response_timeout: Duration) -> Result<MultiplexedConnection, BusError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(response_timeout));
        Ok(self.client.get_multiplexed_async_connection_with_config(&config).await?)
    }

    /// The shared publishing connection (reconnects by itself).
    async fn publisher(&self) -> Result<ConnectionManager, BusError> {
        Ok(self.publisher.get_or_try_init(|| self.client.get_connection_manager()).await?.clone())
    }

    /// Entries older than the retention are trimmed (`MINID ~`) as new ones are added.
    fn min_id(&self) -> u64 {
        (wall_clock_ms().max(0) as u64).saturating_sub(self.retention.as_millis() as u64)
    }

    pub async fn publish(&self, tenant: &str, body: &EntryBody) -> Result<LogPosition, BusError> {
        let (mut conn, min_id) = (self.publisher().await?, self.min_id());
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.key(tenant)).arg("MINID").arg("~").arg(min_id).arg("*");
        match body {
            EntryBody::Batch(bytes) => cmd.arg(FIELD_BATCH).arg(&bytes[..]),
            EntryBody::Heartbeat => cmd.arg(FIELD_HEARTBEAT).arg(""),
            EntryBody::Control(bytes) => cmd.arg(FIELD_CONTROL).arg(&bytes[..]),
        };
        let id: String = cmd.query_async(&mut conn).await?;
        id.parse().map_err(|_| BusError::Malformed { position: id, reason: "XADD returned a bad id".into() })
    }

    /// Appends a control entry and its record in one script: both or neither.
    pub async fn publish_recorded(
        &self,
        tenant: &str,
        body: &EntryBody,
        record: &super::Recorded,
    ) -> Result<LogPosition, BusError> {
        let EntryBody::Control(bytes) = body else {
            return self.publish(tenant, body).await;
        };
        let (mut conn, min_id) = (self.publisher().await?, self.min_id());
        let id: String = redis::Script::new(PUBLISH_RECORDED)
            .key(self.key(tenant))
            .key(&record.list)
            .arg(min_id)
            .arg(FIELD_CONTROL)
            .arg(&bytes[..])
            .arg(&record.before)
            .arg(&record.after)
            .arg(record.kept)
            .invoke_async(&mut conn)
            .await?;
        id.parse().map_err(|_| BusError::Malformed { position: id, reason: "XADD returned a bad id".into() })
    }

    /// Reads from the oldest retained entry, or from the one after `after` (an
    /// instance that starts from a checkpoint at `after`).
    pub async fn read(
        &self,
        tenant: &str,
        after: Option<LogPosition>,
        out: mpsc::Sender<LogEntry>,
        ready: Arc<Readiness>,
        cancel: CancellationToken,
    ) {
        let key = self.key(tenant);
        let mut last_id = after.map_or_else(|| "0-0".to_string(), |p| p.to_string());
        let mut backoff = Duration::from_millis(100);
        while !cancel.is_cancelled() {
            let result = tokio::select! {
                _ = cancel.cancelled() => return,
                r = self.read_connected(&key, &mut last_id, &out, &ready, &cancel) => r,
            };
            match result {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(tenant, error = %e, retry_in = ?backoff, "redis stream reader failed; reconnecting");
                    ready.log_down(format_args!("redis stream: {e}"));
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Reads until cancelled (`Ok`) or the connection fails (`Err`).
    async fn read_connected(
        &self,
        key: &str,
        last_id: &mut String,
        out: &mpsc::Sender<LogEntry>,
        ready: &Readiness,
        cancel: &CancellationToken,
    ) -> Result<(), BusError> {
        let mut conn = self.connect(Duration::from_millis(BLOCK_MS + 5_000)).await?;
        loop {
            let reply: Value = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(READ_COUNT)
                .arg("BLOCK")
                .arg(BLOCK_MS)
                .arg("STREAMS")
                .arg(key)
                .arg(&*last_id)
                .query_async(&mut conn)
                .await?;
            let entries = parse_xread(reply)?;
            if entries.len() < READ_COUNT {
                ready.log_up();
            }
            for entry in entries {
                *last_id = entry.position.to_string();
                if !super::deliver(out, entry, cancel).await {
                    return Ok(());
                }
            }
        }
    }
}

impl RedisStreamBus {
    /// The stream key of `tenant`'s log.
    pub fn stream_key(&self, tenant: &str) -> String {
        self.key(tenant)
    }

    /// Whether the log still holds the entry at `position` (trimming has not passed it).
    pub async fn holds(&self, tenant: &str, position: LogPosition) -> Result<bool, BusError> {
        let mut conn = self.connect(Duration::from_secs(5)).await?;
        let p = position.to_string();
        let reply: Value =
            redis::cmd("XRANGE").arg(self.key(tenant)).arg(&p).arg(&p).query_async(&mut conn).await?;
        Ok(matches!(reply, Value::Array(items) if !items.is_empty()))
    }

    /// What Redis holds at `tenant`'s log key (`TYPE`): `stream`, or `none` when nothing.
    pub async fn key_type(&self, tenant: &str) -> Result<String, BusError> {
        let mut conn = self.connect(Duration::from_secs(5)).await?;
        Ok(redis::cmd("TYPE").arg(self.key(tenant)).query_async(&mut conn).await?)
    }

    /// At most `count` entries from `from` on (inclusive), in log order (`XRANGE`),
    /// decoded as readers decode them: `streamgate record` reads a log by such pages.
    pub async fn range(
        &self,
        tenant: &str,
        from: LogPosition,
        count: usize,
    ) -> Result<Vec<LogEntry>, BusError> {
        let mut conn = self.connect(Duration::from_secs(10)).await?;
        let reply: Value = redis::cmd("XRANGE")
            .arg(self.key(tenant))
            .arg(from.to_string())
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await?;
        // The same shape as one stream of an `XREAD` reply.
        let as_xread = Value::Array(vec![Value::Array(vec![Value::Nil, reply])]);
        parse_xread(as_xread)
    }
}

/// Parses an `XREAD` reply for one stream (nil when the block timed out). A damaged
/// entry is kept in place as [`Content::Undecodable`] (the reader moves past it), so one
/// bad write never stops a tenant.
fn parse_xread(reply: Value) -> Result<Vec<LogEntry>, BusError> {
    let malformed = |position: &str, reason: &str| BusError::Malformed {
        position: position.to_string(),
        reason: reason.to_string(),
    };
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams,
        Value::Map(pairs) => pairs.into_iter().map(|(k, v)| Value::Array(vec![k, v])).collect(),
        _ => return Err(malformed("?", "XREAD reply is not an array")),
    };
    let mut entries = Vec::new();
    for stream in streams {
        let Value::Array(mut parts) = stream else { return Err(malformed("?", "stream is not a pair")) };
        let Some(Value::Array(items)) = parts.pop() else { return Err(malformed("?", "no entries")) };
        for item in items {
            let Value::Array(mut pair) = item else { return Err(malformed("?", "entry is not a pair")) };
            let fields = pair.pop();
            let id = match pair.pop() {
                Some(Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
                Some(Value::SimpleString(s)) => s,
                _ => return Err(malformed("?", "entry id missing")),
            };
            let position: LogPosition = id.parse().map_err(|_| malformed(&id, "bad id"))?;
            let log_time = position.major as i64;
            entries.push(match entry_body(fields) {
                Ok(body) => LogEntry::decode(position, log_time, &body),
                Err(why) => {
                    let content = Content::Undecodable { reason: SkipReason::Fields, detail: why.into() };
                    LogEntry { position, log_time, content }
                }
            });
        }
    }
    Ok(entries)
}

/// The one field of a stream entry as an [`EntryBody`].
fn entry_body(fields: Option<Value>) -> Result<EntryBody, &'static str> {
    let Some(Value::Array(mut fields)) = fields else { return Err("no fields") };
    if fields.len() != 2 {
        return Err("expected exactly one field");
    }
    let value = fields.pop().unwrap();
    let name = fields.pop().unwrap();
    match (name, value) {
        (Value::BulkString(n), Value::BulkString(v)) if n == FIELD_BATCH.as_bytes() => {
            Ok(EntryBody::Batch(v.into()))
        }
        (Value::BulkString(n), _) if n == FIELD_HEARTBEAT.as_bytes() => Ok(EntryBody::Heartbeat),
        (Value::BulkString(n), Value::BulkString(v)) if n == FIELD_CONTROL.as_bytes() => {
            Ok(EntryBody::Control(v.into()))
        }
        _ => Err("unknown field"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, fields: Vec<Value>) -> Value {
        Value::Array(vec![Value::BulkString(id.into()), Value::Array(fields)])
    }

    fn bulk(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    #[test]
    fn a_damaged_entry_is_skipped_in_place_and_its_neighbours_read() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk(b"k"),
            Value::Array(vec![
                entry("1-0", vec![bulk(b"h"), bulk(b"")]),
                entry("2-0", vec![bulk(b"zz"), bulk(b"?")]),
                entry("3-0", vec![bulk(b"b"), bulk(b"not a batch")]),
                entry("4-0", vec![]),
                entry("5-0", vec![bulk(b"h"), bulk(b"")]),
            ]),
        ])]);
        let entries = parse_xread(reply).unwrap();
        let positions: Vec<u64> = entries.iter().map(|e| e.position.major).collect();
        assert_eq!(positions, [1, 2, 3, 4, 5], "every entry keeps its place");
        assert_eq!(entries[0].content, Content::Heartbeat);
        for e in &entries[1..4] {
            assert!(matches!(e.content, Content::Undecodable { .. }), "{e:?}");
        }
        assert_eq!(entries[4].content, Content::Heartbeat);
    }
}
