//! Checkpoints in Redis, per tenant: a hash per checkpoint (`digest`, `blob`, and how
//! many instances found the same state, `ok`, or another, `bad`) and an index of the
//! newest `keep` positions, plus the newest trusted one when none of those is trusted
//! yet (a lone instance writing checkpoints nobody verifies, as the last one up in a
//! rolling restart does, must not push every usable checkpoint out). Whoever reaches a
//! position first writes (one script: a position is written once, never overwritten);
//! everyone after compares digests. Every key expires with the log's retention: a
//! checkpoint outlives the entries after it by nothing, and a late instance needs those
//! entries to catch up.

use std::time::Duration;

use redis::Value;

use crate::bus::RedisLink;
use crate::bus::link::Conn;

use crate::bus::LogPosition;

/// Writes the checkpoint unless its position has one, else compares digests.
/// KEYS: index, this checkpoint. ARGV: index member, digest, blob ('' to only compare),
/// ttl ms, keep, key prefix of the checkpoints, verifications that make one trusted.
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
local keep, trust = tonumber(ARGV[5]), tonumber(ARGV[7])
local function trusted(m)
  local c = redis.call('HMGET', ARGV[6] .. m, 'ok', 'bad')
  return c[1] and tonumber(c[1]) >= trust and tonumber(c[2]) == 0
end
local old = redis.call('ZRANGE', KEYS[1], 0, -(keep + 1))
local spare = false
if #old > 0 then
  spare = true
  for _, m in ipairs(redis.call('ZRANGE', KEYS[1], -keep, -1)) do
    if trusted(m) then spare = false break end
  end
end
for i = #old, 1, -1 do
  if spare and trusted(old[i]) then
    spare = false
  else
    redis.call('DEL', ARGV[6] .. old[i])
    redis.call('ZREM', KEYS[1], old[i])
  end
end
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

impl Stored {
    /// `min_verifications` other instances found the same state, and none another
    /// (the rule the store's retention keeps the newest of).
    pub fn trusted(&self, min_verifications: u64) -> bool {
        self.bad == 0 && self.ok >= min_verifications
    }
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
    retention: Retention,
}

/// Which checkpoints stay, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Every key's lifetime: the log's retention.
    pub ttl: Duration,
    /// Newest checkpoints kept.
    pub keep: usize,
    /// Instances besides the writer that must have found the same state (and none
    /// another) for a checkpoint to be trusted; the newest trusted one stays even when
    /// `keep` newer untrusted ones came after it.
    pub min_verifications: u64,
}

impl CheckpointStore {
    /// Checkpoints on one Redis at `url` under `prefix`.
    pub fn new(url: &str, prefix: &str, retention: Retention) -> Result<Self, StoreError> {
        Ok(Self::with_link(RedisLink::single(url, prefix)?, retention))
    }

    /// Checkpoints through `link` (any topology).
    pub fn with_link(link: RedisLink, retention: Retention) -> Self {
        CheckpointStore { link, retention }
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
                .arg(self.retention.ttl.as_millis().max(1) as u64)
                .arg(self.retention.keep)
                .arg(self.record_prefix(tenant))
                .arg(self.retention.min_verifications)
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
