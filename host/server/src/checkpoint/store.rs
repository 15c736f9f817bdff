//! Checkpoints in Redis, per tenant: a hash per checkpoint (`digest`, `blob`, and how
//! many instances found the same state, `ok`, or another, `bad`) and an index of the
//! newest `keep` positions. Whoever reaches a position first writes (one script: a
//! position is written once, never overwritten); everyone after compares digests. Every
//! key expires with the log's retention: a checkpoint outlives the entries after it
//! by nothing, and a late instance needs those entries to catch up.

use std::time::Duration;

use redis::Value;

use crate::bus::RedisLink;
use crate::bus::link::Conn;

use crate::bus::LogPosition;

/// Writes the checkpoint unless its position has one, else compares digests.
/// KEYS: index, this checkpoint. ARGV: index member, digest, blob ('' to only compare),
/// ttl ms, keep, key prefix of the checkpoints.
const OFFER: &str = r"
local d = redis.call('HGET', KEYS[2], 'digest')
if d then
  if d == ARGV[2] then redis.call('HINCRBY', KEYS[2], 'ok', 1) return 'verified' end
  redis.call('HINCRBY', KEYS[2], 'bad', 1)
  return 'mismatch'
end
if ARGV[3] == '' then return 'absent' end
redis.call('HSET', KEYS[2], 'digest', ARGV[2], 'blob', ARGV[3], 'ok', 0, 'bad', 0)
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[1], 0, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local keep = tonumber(ARGV[5])
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -(keep + 1))) do
  redis.call('DEL', ARGV[6] .. m)
end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(keep + 1))
return 'written'
";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected reply from the checkpoint script: {0}")]
    Reply(String),
}

/// What offering a checkpoint did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Written,
    Verified,
    Mismatch,
}

/// A checkpoint as stored.
#[derive(Debug, Clone)]
pub struct Stored {
    pub position: LogPosition,
    pub digest: String,
    pub blob: Vec<u8>,
    pub ok: u64,
    pub bad: u64,
}

/// An index member: zero-padded, so members sort by position.
fn member(p: LogPosition) -> String {
    format!("{:020}-{:020}", p.major, p.minor)
}

fn parse_member(m: &str) -> Option<LogPosition> {
    let (a, b) = m.split_once('-')?;
    Some(LogPosition { major: a.parse().ok()?, minor: b.parse().ok()? })
}

pub struct CheckpointStore {
    /// Redis as `[redis]` describes it: the key names (hash-tagged per tenant under a
    /// Cluster, so a tenant's checkpoint keys share a slot) and the connection.
    link: RedisLink,
    ttl: Duration,
    keep: usize,
}

impl CheckpointStore {
    /// Checkpoints on one Redis at `url` under `prefix`, expiring after `ttl` (the log's
    /// retention).
    pub fn new(url: &str, prefix: &str, ttl: Duration, keep: usize) -> Result<Self, StoreError> {
        Ok(Self::with_link(RedisLink::single(url, prefix)?, ttl, keep))
    }

    /// Checkpoints through `link` (any topology), expiring after `ttl`.
    pub fn with_link(link: RedisLink, ttl: Duration, keep: usize) -> Self {
        CheckpointStore { link, ttl, keep }
    }

    async fn conn(&self) -> Result<Conn, StoreError> {
        Ok(self.link.shared().await?)
    }

    fn index(&self, tenant: &str) -> String {
        self.link.tenant_key(tenant, "checkpoints")
    }

    fn record_prefix(&self, tenant: &str) -> String {
        self.link.tenant_key(tenant, "checkpoint:")
    }

    /// Offers this instance's checkpoint at `position`: compares first (without sending
    /// the blob), writes only if nobody has.
    pub async fn offer(
        &self,
        tenant: &str,
        position: LogPosition,
        digest: &str,
        blob: &[u8],
    ) -> Result<Offer, StoreError> {
        let mut conn = self.conn().await?;
        let m = member(position);
        let record = format!("{}{m}", self.record_prefix(tenant));
        for send in [&[][..], blob] {
            let reply: String = redis::Script::new(OFFER)
                .key(self.index(tenant))
                .key(&record)
                .arg(&m)
                .arg(digest)
                .arg(send)
                .arg(self.ttl.as_millis().max(1) as u64)
                .arg(self.keep)
                .arg(self.record_prefix(tenant))
                .invoke_async(&mut conn)
                .await?;
            match reply.as_str() {
                "written" => return Ok(Offer::Written),
                "verified" => return Ok(Offer::Verified),
                "mismatch" => return Ok(Offer::Mismatch),
                "absent" => continue,
                other => return Err(StoreError::Reply(other.to_string())),
            }
        }
        Err(StoreError::Reply("absent after writing".into()))
    }

    /// The stored checkpoints, newest first (those that expired between the index and
    /// their record are left out).
    pub async fn newest_first(&self, tenant: &str) -> Result<Vec<Stored>, StoreError> {
        let mut conn = self.conn().await?;
        let members: Vec<String> =
            redis::cmd("ZREVRANGE").arg(self.index(tenant)).arg(0).arg(-1).query_async(&mut conn).await?;
        let mut found = Vec::with_capacity(members.len());
        for m in members {
            let Some(position) = parse_member(&m) else { continue };
            let record = format!("{}{m}", self.record_prefix(tenant));
            let fields: Vec<Value> = redis::cmd("HMGET")
                .arg(&record)
                .arg("digest")
                .arg("blob")
                .arg("ok")
                .arg("bad")
                .query_async(&mut conn)
                .await?;
            let [digest, blob, ok, bad] =
                <[Value; 4]>::try_from(fields).map_err(|_| StoreError::Reply(m.clone()))?;
            let (Value::BulkString(digest), Value::BulkString(blob)) = (digest, blob) else { continue };
            let count = |v: Value| match v {
                Value::BulkString(b) => String::from_utf8_lossy(&b).parse().unwrap_or(0),
                _ => 0,
            };
            found.push(Stored {
                position,
                digest: String::from_utf8_lossy(&digest).into_owned(),
                blob,
                ok: count(ok),
                bad: count(bad),
            });
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_members_sort_as_positions_do_and_read_back() {
        let a = LogPosition { major: 9, minor: 10 };
        let b = LogPosition { major: 10, minor: 2 };
        assert!(member(a) < member(b));
        assert!(member(LogPosition { major: 9, minor: 9 }) < member(a));
        assert_eq!(parse_member(&member(b)), Some(b));
        assert_eq!(parse_member("x"), None);
    }
}
