//! How streamgate reaches Redis: one server, the primary Sentinel names, or a Cluster.
//!
//! [`RedisLink`] hands out connections ([`Conn`], one type for every topology) and
//! names keys. Under `cluster` a tenant's keys carry a hash tag
//! (`<prefix>:{<tenant>}:log`), so its log, its chain history and its chain counter
//! share one slot (the script that appends a control entry and its record touches two
//! of them); under `single` and `sentinel` the names are the ones streamgate always
//! used (`<prefix>:<tenant>:log`), so existing logs and uploaded plugins survive an
//! upgrade.
//!
//! Under `sentinel`, writes go to the primary the sentinels name (looked up again
//! after any error) and log readers read from a replica that is in sync with it when
//! there is one: a reader then only sees what a replica holds, which a failover to that
//! replica keeps. The data nodes are reached without a password (only the sentinels'
//! URLs can carry credentials).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{MultiplexedConnection, PubSub};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::sentinel::Sentinel;
use redis::{AsyncConnectionConfig, Client, RedisResult};

use super::config::{RedisConfig, RedisTopology};
pub use super::redis_conn::Conn;
use super::redis_conn::Slot;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Response timeout of the shared connections of `sentinel` and `cluster`.
const SHARED_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Who a connection is for: writers need the primary; log readers under `sentinel`
/// prefer a replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    LogReader,
}

/// A write counts once this many replicas acknowledge it (`WAIT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Confirm {
    pub replicas: usize,
    pub timeout: Duration,
}

/// Redis as configured: cheap to clone, shared by the bus and the plugin store.
#[derive(Clone)]
pub struct RedisLink {
    inner: Arc<Inner>,
    prefix: String,
}

struct Inner {
    kind: Kind,
    confirm: Option<Confirm>,
    /// `single`: the reconnecting manager; `cluster`: the cluster connection.
    managed: tokio::sync::OnceCell<Conn>,
    /// `sentinel`: the current primary connection, dropped after an error.
    tracked: Arc<Slot>,
}

enum Kind {
    Single(Client),
    Sentinel { sentinel: tokio::sync::Mutex<Sentinel>, master: String },
    Cluster { client: Box<ClusterClient>, nodes: Vec<Client> },
}

impl RedisLink {
    /// One server at `url` with `prefix` (the `single` topology).
    pub fn single(url: &str, prefix: &str) -> RedisResult<Self> {
        Ok(Self::new(Kind::Single(Client::open(url)?), None, prefix))
    }

    /// Redis as `[redis]` describes it (no connection is made yet).
    pub fn open(config: &RedisConfig) -> RedisResult<Self> {
        let prefix = &config.key_prefix;
        match config.topology {
            RedisTopology::Single => Self::single(&config.url, prefix),
            RedisTopology::Sentinel => {
                let sentinel = Sentinel::build(config.sentinels.clone())?;
                let confirm = (config.confirm_replicas > 0).then_some(Confirm {
                    replicas: config.confirm_replicas,
                    timeout: config.confirm_timeout,
                });
                let kind = Kind::Sentinel {
                    sentinel: tokio::sync::Mutex::new(sentinel),
                    master: config.master_name.clone(),
                };
                Ok(Self::new(kind, confirm, prefix))
            }
            RedisTopology::Cluster => {
                let client = Box::new(ClusterClient::new(config.nodes.clone())?);
                let nodes =
                    config.nodes.iter().map(|n| Client::open(n.as_str())).collect::<Result<_, _>>()?;
                Ok(Self::new(Kind::Cluster { client, nodes }, None, prefix))
            }
        }
    }

    fn new(kind: Kind, confirm: Option<Confirm>, prefix: &str) -> Self {
        let inner = Inner { kind, confirm, managed: Default::default(), tracked: Default::default() };
        RedisLink { inner: Arc::new(inner), prefix: prefix.to_string() }
    }

    pub fn topology(&self) -> RedisTopology {
        match self.inner.kind {
            Kind::Single(_) => RedisTopology::Single,
            Kind::Sentinel { .. } => RedisTopology::Sentinel,
            Kind::Cluster { .. } => RedisTopology::Cluster,
        }
    }

    /// How many replicas must acknowledge a log append (`sentinel` only).
    pub fn confirm(&self) -> Option<Confirm> {
        self.inner.confirm
    }

    /// A key outside any tenant: `<prefix>:<suffix>`.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.prefix)
    }

    /// One of `tenant`'s keys; under `cluster` hash-tagged by the tenant, so all of
    /// them live on one shard.
    pub fn tenant_key(&self, tenant: &str, suffix: &str) -> String {
        match self.inner.kind {
            Kind::Cluster { .. } => format!("{}:{{{tenant}}}:{suffix}", self.prefix),
            _ => format!("{}:{tenant}:{suffix}", self.prefix),
        }
    }

    /// A connection of its own (for a blocking read: nothing else queues behind it).
    pub async fn dedicated(&self, role: Role, response_timeout: Duration) -> RedisResult<Conn> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(response_timeout));
        match &self.inner.kind {
            Kind::Single(client) => {
                Ok(Conn::Plain(client.get_multiplexed_async_connection_with_config(&config).await?))
            }
            Kind::Sentinel { .. } => {
                if role == Role::LogReader
                    && let Some(replica) = self.replica_in_sync(&config).await
                {
                    return Ok(Conn::Plain(replica));
                }
                let client = self.primary_client().await?;
                Ok(Conn::Plain(client.get_multiplexed_async_connection_with_config(&config).await?))
            }
            Kind::Cluster { client, .. } => {
                let config = ClusterConfig::new()
                    .set_connection_timeout(CONNECT_TIMEOUT)
                    .set_response_timeout(response_timeout);
                Ok(Conn::Cluster(client.get_async_connection_with_config(config).await?))
            }
        }
    }

    /// The connection this instance's writers share (reconnects after errors).
    pub async fn shared(&self) -> RedisResult<Conn> {
        if let Kind::Sentinel { .. } = self.inner.kind {
            return self.shared_primary().await;
        }
        let conn = self
            .inner
            .managed
            .get_or_try_init(|| async {
                match &self.inner.kind {
                    Kind::Single(client) => Ok(Conn::Managed(client.get_connection_manager().await?)),
                    Kind::Cluster { .. } => self.dedicated(Role::Primary, SHARED_RESPONSE_TIMEOUT).await,
                    Kind::Sentinel { .. } => unreachable!("handled above"),
                }
            })
            .await?;
        Ok(conn.clone())
    }

    async fn shared_primary(&self) -> RedisResult<Conn> {
        if let Some(conn) = self.inner.tracked.tracked() {
            return Ok(conn);
        }
        let Conn::Plain(conn) = self.dedicated(Role::Primary, SHARED_RESPONSE_TIMEOUT).await? else {
            unreachable!("sentinel connections are plain")
        };
        Ok(self.inner.tracked.hold(conn))
    }

    /// The primary the sentinels name now.
    async fn primary_client(&self) -> RedisResult<Client> {
        let Kind::Sentinel { sentinel, master } = &self.inner.kind else {
            unreachable!("called for sentinel only")
        };
        sentinel.lock().await.async_master_for(master, None).await
    }

    /// A connection to a replica the sentinels name that is in sync with its primary
    /// now; `None` when there is none. A replica still loading its first copy (a node
    /// just restarted) answers reads from an empty or stale dataset: a log reader there
    /// would see the log go back.
    async fn replica_in_sync(&self, config: &AsyncConnectionConfig) -> Option<MultiplexedConnection> {
        let Kind::Sentinel { sentinel, master } = &self.inner.kind else { return None };
        let client = sentinel.lock().await.async_replica_for(master, None).await.ok()?;
        let mut conn = client.get_multiplexed_async_connection_with_config(config).await.ok()?;
        let info: String = redis::cmd("INFO").arg("replication").query_async(&mut conn).await.ok()?;
        in_sync(&info).then_some(conn)
    }

    /// A subscriber connection. Under `cluster`, messages published on any node reach
    /// every node, so the first node that answers serves.
    pub async fn pubsub(&self) -> RedisResult<PubSub> {
        match &self.inner.kind {
            Kind::Single(client) => client.get_async_pubsub().await,
            Kind::Sentinel { .. } => self.primary_client().await?.get_async_pubsub().await,
            Kind::Cluster { nodes, .. } => {
                let mut last = None;
                for node in nodes {
                    match node.get_async_pubsub().await {
                        Ok(pubsub) => return Ok(pubsub),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.expect("validated: at least one node"))
            }
        }
    }

    /// Where this link points, for reports (addresses only: URLs may hold passwords).
    pub async fn describe(&self) -> String {
        match &self.inner.kind {
            Kind::Single(client) => format!("redis {}", client.get_connection_info().addr()),
            Kind::Sentinel { master, .. } => match self.primary_client().await {
                Ok(client) => format!("redis primary {master:?} at {}", client.get_connection_info().addr()),
                Err(_) => format!("redis primary {master:?}"),
            },
            Kind::Cluster { nodes, .. } => {
                let addrs: Vec<String> =
                    nodes.iter().map(|n| n.get_connection_info().addr().to_string()).collect();
                format!("redis cluster {}", addrs.join(","))
            }
        }
    }
}

/// Whether an `INFO replication` answer is a replica's whose link to its primary is up
/// and not in a full sync.
fn in_sync(info: &str) -> bool {
    let has = |line: &str| info.lines().any(|l| l.trim() == line);
    has("role:slave") && has("master_link_status:up") && !has("master_sync_in_progress:1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_serves_log_readers_only_while_in_sync() {
        let synced = "# Replication\r\nrole:slave\r\nmaster_link_status:up\r\nmaster_sync_in_progress:0\r\n";
        assert!(in_sync(synced));
        assert!(!in_sync(&synced.replace(":up", ":down")), "link down");
        assert!(!in_sync(&synced.replace("progress:0", "progress:1")), "loading its first copy");
        assert!(!in_sync("role:master\r\n"), "not a replica (any more)");
    }

    #[test]
    fn only_the_cluster_layout_tags_a_tenants_keys() {
        let single = RedisLink::single("redis://127.0.0.1:1", "sg").unwrap();
        assert_eq!(single.tenant_key("taxi", "log"), "sg:taxi:log", "names as before the switch");
        assert_eq!(single.key("plugin:sha256:x"), "sg:plugin:sha256:x");
        let config = RedisConfig {
            topology: RedisTopology::Cluster,
            nodes: vec!["redis://127.0.0.1:1".into()],
            key_prefix: "sg".into(),
            ..RedisConfig::default()
        };
        let cluster = RedisLink::open(&config).unwrap();
        assert_eq!(cluster.tenant_key("taxi", "log"), "sg:{taxi}:log");
        assert_eq!(cluster.tenant_key("taxi", "chains"), "sg:{taxi}:chains");
        assert_eq!(cluster.key("plugins"), "sg:plugins");
    }
}
