//! The pub/sub bus: one Redis channel per tenant (`<prefix>:<tenant>:channel`).
//!
//! At-most-once by nature: what is published while a reader reconnects is gone. A Lua
//! script stamps each message atomically with Redis's `TIME` and a per-tenant counter,
//! so positions and log times still come from Redis, identical on every instance, and
//! a reader can tell (and log) how many messages it missed.
//!
//! A position is `<ms>-<counter>`, like a stream entry's id: the time first, so positions
//! keep rising when Redis restarts without persistence and the counter starts again at
//! 1 (a counter alone went back, and every client that had seen a higher one skipped
//! the new frames as old). The time never goes back either: the script keeps the last
//! one it stamped and never stamps an earlier one.
//!
//! Message layout: `<ms> <counter> ` followed by `B<batch>`, `H` or `C<control>`.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use redis::aio::ConnectionManager;
use redis::{Client, Script};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::readiness::Readiness;

use super::{BusError, EntryBody, LogEntry, LogPosition};

const PUBLISH_SCRIPT: &str = r#"
local n = redis.call('INCR', KEYS[1])
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last = tonumber(redis.call('GET', KEYS[3]) or '0')
if ms < last then ms = last end
redis.call('SET', KEYS[3], ms)
redis.call('PUBLISH', KEYS[2], string.format('%d %d ', ms, n) .. ARGV[1])
return {ms, n}
"#;

#[derive(Clone)]
pub struct RedisPubSubBus {
    client: std::sync::Arc<Client>,
    key_prefix: String,
    script: Script,
    /// Shared by every publisher of this instance; reconnects by itself.
    publisher: tokio::sync::OnceCell<ConnectionManager>,
}

impl RedisPubSubBus {
    pub fn new(url: &str, key_prefix: &str) -> Result<Self, BusError> {
        Ok(RedisPubSubBus {
            client: std::sync::Arc::new(Client::open(url)?),
            key_prefix: key_prefix.to_string(),
            script: Script::new(PUBLISH_SCRIPT),
            publisher: tokio::sync::OnceCell::new(),
        })
    }

    fn channel(&self, tenant: &str) -> String {
        format!("{}:{}:channel", self.key_prefix, tenant)
    }

    pub async fn publish(&self, tenant: &str, body: &EntryBody) -> Result<LogPosition, BusError> {
        let mut conn = self.publisher.get_or_try_init(|| self.client.get_connection_manager()).await?.clone();
        let payload: Vec<u8> = match body {
            EntryBody::Batch(b) => b.to_vec(),
            EntryBody::Heartbeat => b"H".to_vec(),
            EntryBody::Control(c) => [b"C", &c[..]].concat(),
        };
        let (ms, n): (u64, u64) = self
            .script
            .key(format!("{}:{}:counter", self.key_prefix, tenant))
            .key(self.channel(tenant))
            .key(format!("{}:{}:clock", self.key_prefix, tenant))
            .arg(payload)
            .invoke_async(&mut conn)
            .await?;
        Ok(LogPosition { major: ms, minor: n })
    }

    pub async fn read(
        &self,
        tenant: &str,
        out: mpsc::Sender<LogEntry>,
        ready: Arc<Readiness>,
        cancel: CancellationToken,
    ) {
        let channel = self.channel(tenant);
        let mut last_counter: Option<u64> = None;
        while !cancel.is_cancelled() {
            let result: Result<(), BusError> = async {
                let mut pubsub = self.client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                ready.log_up();
                let mut messages = pubsub.on_message();
                loop {
                    let msg = tokio::select! {
                        _ = cancel.cancelled() => return Ok(()),
                        m = messages.next() => m,
                    };
                    let Some(msg) = msg else {
                        return Err(BusError::Malformed {
                            position: "-".into(),
                            reason: "subscription closed".into(),
                        });
                    };
                    let entry = parse_message(msg.get_payload_bytes())?;
                    let counter = entry.position.minor;
                    match last_counter {
                        Some(prev) if counter > prev + 1 => tracing::warn!(
                            tenant,
                            missed = counter - prev - 1,
                            "pub/sub bus lost messages (at-most-once)"
                        ),
                        Some(prev) if counter <= prev => tracing::warn!(
                            tenant,
                            counter,
                            "pub/sub bus counter started again (Redis restarted without its data?); \
                             positions go on rising with Redis's time"
                        ),
                        _ => {}
                    }
                    last_counter = Some(counter);
                    if !super::deliver(&out, entry, &cancel).await {
                        return Ok(());
                    }
                }
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(tenant, error = %e, "redis pub/sub reader failed; resubscribing");
                ready.log_down(format_args!("redis pub/sub: {e}"));
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }
}

/// Position is `<ms>-<counter>`; log time is the stamped ms.
fn parse_message(raw: &[u8]) -> Result<LogEntry, BusError> {
    let bad = |reason: &str| BusError::Malformed { position: "-".into(), reason: reason.into() };
    let mut parts = raw.splitn(3, |&b| b == b' ');
    let mut number = |what: &str| -> Result<u64, BusError> {
        let field = parts.next().ok_or_else(|| bad(what))?;
        std::str::from_utf8(field).ok().and_then(|s| s.parse().ok()).ok_or_else(|| bad(what))
    };
    let ms = number("time")?;
    let counter = number("counter")?;
    let rest = parts.next().ok_or_else(|| bad("body"))?;
    let body = match rest.first() {
        Some(b'H') => EntryBody::Heartbeat,
        Some(b'B') => EntryBody::Batch(bytes::Bytes::copy_from_slice(rest)),
        Some(b'C') => EntryBody::Control(bytes::Bytes::copy_from_slice(&rest[1..])),
        _ => return Err(bad("unknown body")),
    };
    Ok(LogEntry::decode(LogPosition { major: ms, minor: counter }, ms as i64, &body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Content;

    #[test]
    fn parses_stamped_messages() {
        let e = parse_message(b"1763900000123 42 H").unwrap();
        assert_eq!(e.position, LogPosition { major: 1_763_900_000_123, minor: 42 });
        assert_eq!(e.log_time, 1_763_900_000_123);
        assert_eq!(e.content, Content::Heartbeat);
        let e = parse_message(b"1 2 B\x00 x").unwrap();
        assert!(matches!(e.content, Content::Undecodable { .. }), "a damaged batch is skipped: {e:?}");
        assert!(parse_message(b"garbage").is_err());
    }
}
