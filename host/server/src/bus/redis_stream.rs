//! The default bus: one Redis Stream per tenant (`<prefix>:<tenant>:log`, hash-tagged
//! under a Cluster, see [`super::link`]).
//!
//! Redis assigns each entry its id, `<ms>-<n>`: that id is the log position, and its
//! ms part is the log time, so every instance agrees on both. Entries are trimmed by
//! age (`MINID ~`). Readers start at the oldest retained entry, so an instance that
//! joins late rebuilds its policy state from the same log as the others, or after the
//! position of a checkpoint it started from (see `crate::checkpoint`).
//!
//! With replicas (`sentinel`), an append counts only once `confirm_replicas` replicas
//! acknowledge it (`WAIT`); until then it is an error, and the source publishes the
//! batch again (a duplicate entry the tenant's dedupe drops) before it stores any Kafka
//! offset. A reader that reconnects checks that the log still holds the last entry it
//! read: if not (and retention does not explain it), entries it delivered were lost (a
//! failover to a replica that lacked them, or a restart without persistence); that is
//! counted (`streamgate_log_gaps_total`), logged and shown by `/readyz`.

use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::readiness::Readiness;

use super::link::{Conn, RedisLink, Role};
use super::stream_reply::{FIELD_BATCH, FIELD_CONTROL, FIELD_HEARTBEAT, parse_xread};
use super::{BusError, EntryBody, LogEntry, LogPosition, wall_clock_ms};

const READ_COUNT: usize = 256;
const BLOCK_MS: u64 = 500;

/// XADD a control entry and RPUSH its record (with the new id spliced in) as one step.
const PUBLISH_RECORDED: &str = r"
local id = redis.call('XADD', KEYS[1], 'MINID', '~', ARGV[1], '*', ARGV[2], ARGV[3])
redis.call('RPUSH', KEYS[2], ARGV[4] .. id .. ARGV[5])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[6]), -1)
return id
";

#[derive(Clone)]
pub struct RedisStreamBus {
    link: RedisLink,
    retention: Duration,
}

impl RedisStreamBus {
    /// One Redis server at `url` (the `single` topology).
    pub fn new(url: &str, key_prefix: &str, retention: Duration) -> Result<Self, BusError> {
        Ok(Self::with_link(RedisLink::single(url, key_prefix)?, retention))
    }

    /// Redis as `link` reaches it (any topology).
    pub fn with_link(link: RedisLink, retention: Duration) -> Self {
        RedisStreamBus { link, retention }
    }

    fn key(&self, tenant: &str) -> String {
        self.link.tenant_key(tenant, "log")
    }

    /// Entries older than the retention are trimmed (`MINID ~`) as new ones are added.
    fn min_id(&self) -> u64 {
        (wall_clock_ms().max(0) as u64).saturating_sub(self.retention.as_millis() as u64)
    }

    pub async fn publish(&self, tenant: &str, body: &EntryBody) -> Result<LogPosition, BusError> {
        let (mut conn, min_id) = (self.link.shared().await?, self.min_id());
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.key(tenant)).arg("MINID").arg("~").arg(min_id).arg("*");
        match body {
            EntryBody::Batch(bytes) => cmd.arg(FIELD_BATCH).arg(&bytes[..]),
            EntryBody::Heartbeat => cmd.arg(FIELD_HEARTBEAT).arg(""),
            EntryBody::Control(bytes) => cmd.arg(FIELD_CONTROL).arg(&bytes[..]),
        };
        let id: String = match self.link.confirm() {
            None => cmd.query_async(&mut conn).await?,
            Some(confirm) => {
                // One pipeline on one connection: the WAIT covers this XADD.
                let (id, acked): (String, usize) = redis::pipe()
                    .add_command(cmd)
                    .cmd("WAIT")
                    .arg(confirm.replicas)
                    .arg(confirm.timeout.as_millis() as u64)
                    .query_async(&mut conn)
                    .await?;
                check_confirmed(&id, acked, confirm.replicas)?;
                id
            }
        };
        parse_id(id)
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
        let (mut conn, min_id) = (self.link.shared().await?, self.min_id());
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
        if let Some(confirm) = self.link.confirm() {
            // The same connection (it never reconnects by itself), so WAIT covers the script.
            let acked: usize = redis::cmd("WAIT")
                .arg(confirm.replicas)
                .arg(confirm.timeout.as_millis() as u64)
                .query_async(&mut conn)
                .await?;
            check_confirmed(&id, acked, confirm.replicas)?;
        }
        parse_id(id)
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
                r = self.read_connected(tenant, &key, &mut last_id, &out, &ready, &cancel) => r,
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
        tenant: &str,
        key: &str,
        last_id: &mut String,
        out: &mpsc::Sender<LogEntry>,
        ready: &Readiness,
        cancel: &CancellationToken,
    ) -> Result<(), BusError> {
        let mut conn = self.link.dedicated(Role::LogReader, Duration::from_millis(BLOCK_MS + 5_000)).await?;
        if let Ok(last) = last_id.parse::<LogPosition>()
            && last != LogPosition::default()
        {
            check_still_held(&mut conn, tenant, key, last, self.retention, ready).await?;
        }
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

/// After a reconnect: the log must still hold the last entry read, unless retention
/// trimmed it (then it is older than the log's first entry and than the newest by more
/// than the retention). Otherwise entries this reader delivered are gone: counted and
/// logged; the reader goes on from where it was (later entries keep increasing ids).
async fn check_still_held(
    conn: &mut Conn,
    tenant: &str,
    key: &str,
    last: LogPosition,
    retention: Duration,
    ready: &Readiness,
) -> Result<(), BusError> {
    let one = |cmd: &str, from: String, to: &str| {
        let mut c = redis::cmd(cmd);
        c.arg(key).arg(from).arg(to).arg("COUNT").arg(1);
        c
    };
    let mut first_of = async |cmd: redis::Cmd| -> Result<Option<LogPosition>, BusError> {
        let reply: Value = cmd.query_async(conn).await?;
        let entries = parse_xread(Value::Array(vec![Value::Array(vec![Value::Nil, reply])]))?;
        Ok(entries.first().map(|e| e.position))
    };
    if first_of(one("XRANGE", last.to_string(), &last.to_string())).await?.is_some() {
        return Ok(());
    }
    let first = first_of(one("XRANGE", "-".into(), "+")).await?;
    let newest = first_of(one("XREVRANGE", "+".into(), "-")).await?;
    if trimmed(last, first, newest, retention) {
        return Ok(());
    }
    let holds = match (first, newest) {
        (Some(f), Some(n)) => format!("{f} to {n}"),
        _ => "nothing".to_string(),
    };
    let detail = format!("last entry read {last} is gone; the log now holds {holds}");
    tracing::error!(
        tenant,
        last_read = %last,
        holds,
        "the log lost entries this instance already delivered (a failover to a replica that \
         lacked them, or a restart without persistence); streams may now differ between instances"
    );
    ready.log_gap(detail);
    Ok(())
}

/// Whether retention explains that `last` is no longer in a log holding `first` to
/// `newest`: it is older than the first entry, and older than the newest by more than
/// the retention (trimming is by age and only ever takes the oldest entries).
fn trimmed(
    last: LogPosition,
    first: Option<LogPosition>,
    newest: Option<LogPosition>,
    retention: Duration,
) -> bool {
    matches!((first, newest), (Some(f), Some(n))
        if f > last && last.major.saturating_add(retention.as_millis() as u64) < n.major)
}

/// `Err` unless at least `wanted` replicas acknowledged the entry `id`.
fn check_confirmed(id: &str, acked: usize, wanted: usize) -> Result<(), BusError> {
    if acked >= wanted {
        return Ok(());
    }
    Err(BusError::NotReplicated { position: id.to_string(), acked, wanted })
}

fn parse_id(id: String) -> Result<LogPosition, BusError> {
    id.parse().map_err(|_| BusError::Malformed { position: id, reason: "XADD returned a bad id".into() })
}

impl RedisStreamBus {
    /// The stream key of `tenant`'s log.
    pub fn stream_key(&self, tenant: &str) -> String {
        self.key(tenant)
    }

    /// Whether the log still holds the entry at `position` (trimming has not passed it).
    pub async fn holds(&self, tenant: &str, position: LogPosition) -> Result<bool, BusError> {
        let mut conn = self.link.dedicated(Role::Primary, Duration::from_secs(5)).await?;
        let p = position.to_string();
        let reply: Value =
            redis::cmd("XRANGE").arg(self.key(tenant)).arg(&p).arg(&p).query_async(&mut conn).await?;
        Ok(matches!(reply, Value::Array(items) if !items.is_empty()))
    }

    /// What Redis holds at `tenant`'s log key (`TYPE`): `stream`, or `none` when nothing.
    pub async fn key_type(&self, tenant: &str) -> Result<String, BusError> {
        let mut conn = self.link.dedicated(Role::Primary, Duration::from_secs(5)).await?;
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
        let mut conn = self.link.dedicated(Role::Primary, Duration::from_secs(10)).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_age_explains_a_missing_entry() {
        let at = |ms: u64| LogPosition { major: ms, minor: 0 };
        let retention = Duration::from_secs(60);
        assert!(
            trimmed(at(1_000), Some(at(5_000)), Some(at(100_000)), retention),
            "old enough to be trimmed"
        );
        assert!(
            !trimmed(at(50_000), Some(at(60_000)), Some(at(100_000)), retention),
            "too young to be trimmed"
        );
        assert!(
            !trimmed(at(1_000), Some(at(500)), Some(at(100_000)), retention),
            "a hole after the first entry"
        );
        assert!(!trimmed(at(1_000), None, None, retention), "an empty log");
    }

    #[test]
    fn an_append_fewer_replicas_acknowledged_is_an_error_naming_both_counts() {
        assert!(check_confirmed("1-0", 1, 1).is_ok());
        assert!(check_confirmed("1-0", 2, 1).is_ok());
        let err = check_confirmed("1-0", 0, 1).unwrap_err().to_string();
        assert!(err.contains("1-0") && err.contains("0 of 1"), "{err}");
    }
}
