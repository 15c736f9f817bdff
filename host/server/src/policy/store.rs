//! Cluster state outside the logs: uploaded plugin components (content-addressed by
//! sha256, so every instance can fetch the bytes a chain names) and each tenant's
//! history of chains set through the admin API. Redis for a cluster, memory for the
//! embedded demo.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use streamgate_runtime::ChainSpec;

use crate::bus::link::Conn;
use crate::bus::{LogPosition, Recorded, RedisLink};

/// Chains kept per tenant (older ones are trimmed).
const HISTORY_KEPT: isize = 100;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("stored chain history is unreadable: {0}")]
    Corrupt(#[from] serde_json::Error),
}

/// A chain the admin API put into a tenant's log, or that `last-good` went back to,
/// kept (in Redis) so instances that start later know which chain was active before the
/// oldest entry they read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChainRecord {
    pub chain: ChainSpec,
    pub reason: String,
    /// Log position of the control entry (of the entry whose fault made `last-good` go
    /// back, for such a record).
    pub position: String,
    /// Wall-clock ms when it was published.
    pub published_ms: i64,
    /// Recorded by the instances when `last-good` went back to `chain` after a fault:
    /// no log entry says so, and the chain it left has no `last-good` of its own after.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub last_good: bool,
}

/// Recorded chains in log order, one per position (every instance that went back at one
/// entry may record it, in any order); a record whose position does not read is left out.
pub fn in_log_order(history: Vec<ChainRecord>) -> Vec<(LogPosition, ChainRecord)> {
    let mut ordered: Vec<(LogPosition, ChainRecord)> =
        history.into_iter().filter_map(|r| Some((r.position.parse().ok()?, r))).collect();
    ordered.sort_by_key(|(p, _)| *p);
    ordered.dedup_by_key(|(p, _)| *p);
    ordered
}

/// Appends the record unless one at its position is kept already (every instance that
/// went back at that entry records it; the first one wins).
const RECORD_ONCE: &str = r#"
for _, item in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local ok, rec = pcall(cjson.decode, item)
  if ok and type(rec) == 'table' and rec['position'] == ARGV[2] then return 0 end
end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[3]), -1)
return 1
"#;

#[derive(Clone)]
pub enum Store {
    Memory(Arc<Mutex<MemoryState>>),
    Redis(RedisStore),
}

#[derive(Default)]
pub struct MemoryState {
    plugins: HashMap<String, Bytes>,
    versions: HashMap<String, u64>,
    history: HashMap<String, Vec<ChainRecord>>,
}

#[derive(Clone)]
pub struct RedisStore {
    link: RedisLink,
}

impl Store {
    pub fn memory() -> Self {
        Store::Memory(Arc::default())
    }

    /// One Redis server at `url` (the `single` topology).
    pub fn redis(url: &str, prefix: &str) -> Result<Self, StoreError> {
        Ok(Self::redis_link(RedisLink::single(url, prefix)?))
    }

    /// Redis as `link` reaches it (any topology; a tenant's keys hash-tagged under a
    /// Cluster, like its log).
    pub fn redis_link(link: RedisLink) -> Self {
        Store::Redis(RedisStore { link })
    }

    /// Stores a plugin under its reference; `true` if it was not there yet.
    pub async fn put_plugin(&self, reference: &str, bytes: &Bytes) -> Result<bool, StoreError> {
        match self {
            Store::Memory(m) => {
                let mut m = m.lock().unwrap();
                Ok(m.plugins.insert(reference.to_string(), bytes.clone()).is_none())
            }
            Store::Redis(r) => {
                let created: bool =
                    r.conn().await?.set_nx(r.key(&format!("plugin:{reference}")), &bytes[..]).await?;
                Ok(created)
            }
        }
    }

    /// Tells every instance that a plugin was stored, so each compiles it before a chain
    /// names it (see [`Store::announcements`]).
    pub async fn announce_plugin(&self, reference: &str) -> Result<(), StoreError> {
        match self {
            Store::Memory(_) => Ok(()),
            Store::Redis(r) => Ok(r.conn().await?.publish(r.key("plugins"), reference).await?),
        }
    }

    /// Plugin references announced from now on (never ends for the memory store: one
    /// process compiles what it stores).
    pub async fn announcements(&self) -> Result<BoxStream<'static, String>, StoreError> {
        match self {
            Store::Memory(_) => Ok(futures::stream::pending().boxed()),
            Store::Redis(r) => {
                let mut pubsub = r.link.pubsub().await?;
                pubsub.subscribe(r.key("plugins")).await?;
                Ok(pubsub
                    .into_on_message()
                    .filter_map(|m| async move { m.get_payload::<String>().ok() })
                    .boxed())
            }
        }
    }

    pub async fn get_plugin(&self, reference: &str) -> Result<Option<Bytes>, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.lock().unwrap().plugins.get(reference).cloned()),
            Store::Redis(r) => {
                let bytes: Option<Vec<u8>> =
                    r.conn().await?.get(r.key(&format!("plugin:{reference}"))).await?;
                Ok(bytes.map(Bytes::from))
            }
        }
    }

    /// The next chain version of `tenant` (1, 2, ...), unique across instances.
    pub async fn next_version(&self, tenant: &str) -> Result<u64, StoreError> {
        match self {
            Store::Memory(m) => {
                let mut m = m.lock().unwrap();
                let v = m.versions.entry(tenant.to_string()).or_default();
                *v += 1;
                Ok(*v)
            }
            Store::Redis(r) => {
                Ok(r.conn().await?.incr(r.link.tenant_key(tenant, "chain-version"), 1).await?)
            }
        }
    }

    pub async fn record_chain(&self, tenant: &str, record: &ChainRecord) -> Result<(), StoreError> {
        match self {
            Store::Memory(m) => {
                let mut m = m.lock().unwrap();
                let h = m.history.entry(tenant.to_string()).or_default();
                h.push(record.clone());
                let excess = h.len().saturating_sub(HISTORY_KEPT as usize);
                h.drain(..excess);
                Ok(())
            }
            Store::Redis(r) => {
                let key = r.link.tenant_key(tenant, "chains");
                let json = serde_json::to_string(record)?;
                redis::pipe()
                    .rpush(&key, json)
                    .ignore()
                    .ltrim(&key, -HISTORY_KEPT, -1)
                    .ignore()
                    .query_async::<()>(&mut r.conn().await?)
                    .await?;
                Ok(())
            }
        }
    }

    /// Appends `record` unless a record at its position is kept already.
    pub async fn record_chain_once(&self, tenant: &str, record: &ChainRecord) -> Result<(), StoreError> {
        match self {
            Store::Memory(m) => {
                let known = m
                    .lock()
                    .unwrap()
                    .history
                    .get(tenant)
                    .is_some_and(|h| h.iter().any(|r| r.position == record.position));
                if known { Ok(()) } else { self.record_chain(tenant, record).await }
            }
            Store::Redis(r) => {
                let json = serde_json::to_string(record)?;
                redis::Script::new(RECORD_ONCE)
                    .key(r.link.tenant_key(tenant, "chains"))
                    .arg(json)
                    .arg(&record.position)
                    .arg(HISTORY_KEPT)
                    .invoke_async::<i64>(&mut r.conn().await?)
                    .await?;
                Ok(())
            }
        }
    }

    /// `record` as a list entry the bus writes with its control entry in one step (the
    /// position spliced in), where the store shares the bus's Redis; `None` otherwise.
    pub fn history_entry(&self, tenant: &str, record: &ChainRecord) -> Option<Recorded> {
        let Store::Redis(r) = self else { return None };
        const MARK: &str = "\u{1}";
        let json = serde_json::to_string(&ChainRecord { position: MARK.into(), ..record.clone() }).ok()?;
        // Quotes inside a JSON string are escaped, so this sequence is only the field.
        let field = r#""position":"\u0001""#;
        let (before, after) = json.split_once(field)?;
        Some(Recorded {
            list: r.link.tenant_key(tenant, "chains"),
            before: format!(r#"{before}"position":""#),
            after: format!(r#""{after}"#),
            kept: HISTORY_KEPT as usize,
        })
    }

    /// Chains set for `tenant`, oldest first.
    pub async fn chain_history(&self, tenant: &str) -> Result<Vec<ChainRecord>, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.lock().unwrap().history.get(tenant).cloned().unwrap_or_default()),
            Store::Redis(r) => {
                let items: Vec<String> =
                    r.conn().await?.lrange(r.link.tenant_key(tenant, "chains"), 0, -1).await?;
                Ok(items.iter().map(|s| serde_json::from_str(s)).collect::<Result<_, _>>()?)
            }
        }
    }
}

impl RedisStore {
    fn key(&self, suffix: &str) -> String {
        self.link.key(suffix)
    }

    async fn conn(&self) -> Result<Conn, StoreError> {
        Ok(self.link.shared().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_store_keeps_plugins_versions_and_history() {
        let s = Store::memory();
        let bytes = Bytes::from_static(b"wasm");
        assert!(s.put_plugin("sha256:x", &bytes).await.unwrap());
        assert!(!s.put_plugin("sha256:x", &bytes).await.unwrap(), "second put is not new");
        assert_eq!(s.get_plugin("sha256:x").await.unwrap(), Some(bytes));
        assert_eq!(s.get_plugin("sha256:y").await.unwrap(), None);
        assert_eq!(s.next_version("t").await.unwrap(), 1);
        assert_eq!(s.next_version("t").await.unwrap(), 2);
        assert_eq!(s.next_version("u").await.unwrap(), 1);
        let rec = ChainRecord {
            chain: Default::default(),
            reason: "set".into(),
            position: "1-0".into(),
            published_ms: 5,
            last_good: false,
        };
        s.record_chain("t", &rec).await.unwrap();
        assert_eq!(s.chain_history("t").await.unwrap(), vec![rec.clone()]);
        assert!(s.chain_history("u").await.unwrap().is_empty());
        // Every instance that went back at one entry records it: kept once.
        let back = ChainRecord { position: "2-0".into(), last_good: true, ..rec.clone() };
        for _ in 0..3 {
            s.record_chain_once("t", &back).await.unwrap();
        }
        assert_eq!(s.chain_history("t").await.unwrap(), vec![rec, back]);
    }

    #[test]
    fn a_history_entry_takes_the_position_it_is_published_at() {
        let rec = ChainRecord {
            chain: ChainSpec { version: 4, policies: vec![] },
            reason: "a \"quoted\" \\u0001 reason".into(),
            position: String::new(),
            published_ms: 9,
            last_good: false,
        };
        assert!(Store::memory().history_entry("t", &rec).is_none(), "memory writes its record itself");
        let redis = Store::redis("redis://127.0.0.1:1", "sg").unwrap();
        let entry = redis.history_entry("t", &rec).expect("redis records with the entry");
        assert_eq!(entry.list, "sg:t:chains");
        let json = format!("{}1700000000000-3{}", entry.before, entry.after);
        let back: ChainRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ChainRecord { position: "1700000000000-3".into(), ..rec });
    }
}
