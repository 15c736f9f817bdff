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
//! after any error) and log readers read from a replica when one is known: a reader
//! then only sees what a replica holds, which a failover to that replica keeps.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection, PubSub};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::Sentinel;
use redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisFuture, RedisResult, Value};

use super::config::{RedisConfig, RedisTopology};

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
    Cluster { client: ClusterClient, nodes: Vec<Client> },
}

/// The shared primary connection under `sentinel`, with a generation so an error on
/// an old connection does not drop its replacement.
#[derive(Default)]
pub struct Slot(Mutex<(u64, Option<MultiplexedConnection>)>);

impl Slot {
    fn invalidate(&self, generation: u64) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if slot.0 == generation {
            slot.1 = None;
        }
    }
}

impl RedisLink {
    /// One server at `url` with `prefix` (the `single` topology).
    pub fn single(url: &str, prefix: &str) -> RedisResult<Self> {
        Ok(Self::new(Kind::Single(Client::open(url)?), None, prefix))
    }

    pub fn open(config: &RedisConfig) -> RedisResult<Self> {
        let prefix = &config.key_prefix;
        match config.topology {
            RedisTopology::Single => Self::single(&config.url, prefix),
            RedisTopology::Sentinel => {
                let sentinel = Sentinel::build(config.sentinels.clone())?;
                let confirm = (config.confirm_replicas > 0)
                    .then_some(Confirm { replicas: config.confirm_replicas, timeout: config.confirm_timeout });
                let kind = Kind::Sentinel {
                    sentinel: tokio::sync::Mutex::new(sentinel),
                    master: config.master_name.clone(),
                };
                Ok(Self::new(kind, confirm, prefix))
            }
            RedisTopology::Cluster => {
                let client = ClusterClient::new(config.nodes.clone())?;
                let nodes = config.nodes.iter().map(|n| Client::open(n.as_str())).collect::<Result<_, _>>()?;
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
                let client = self.sentinel_client(role).await?;
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
        let slot = &self.inner.tracked;
        {
            let current = slot.0.lock().unwrap_or_else(|e| e.into_inner());
            if let (generation, Some(conn)) = &*current {
                return Ok(Conn::Tracked(conn.clone(), slot.clone(), *generation));
            }
        }
        let Conn::Plain(conn) = self.dedicated(Role::Primary, SHARED_RESPONSE_TIMEOUT).await? else {
            unreachable!("sentinel connections are plain")
        };
        let mut current = slot.0.lock().unwrap_or_else(|e| e.into_inner());
        current.0 += 1;
        current.1 = Some(conn.clone());
        Ok(Conn::Tracked(conn, slot.clone(), current.0))
    }

    /// The server a `sentinel` role connects to: the primary, or for a log reader a
    /// replica when the sentinels know one (else the primary).
    async fn sentinel_client(&self, role: Role) -> RedisResult<Client> {
        let Kind::Sentinel { sentinel, master } = &self.inner.kind else {
            unreachable!("called for sentinel only")
        };
        let mut sentinel = sentinel.lock().await;
        if role == Role::LogReader
            && let Ok(replica) = sentinel.async_replica_for(master, None).await
        {
            return Ok(replica);
        }
        sentinel.async_master_for(master, None).await
    }

    /// A subscriber connection. Under `cluster`, messages published on any node reach
    /// every node, so the first node that answers serves.
    pub async fn pubsub(&self) -> RedisResult<PubSub> {
        match &self.inner.kind {
            Kind::Single(client) => client.get_async_pubsub().await,
            Kind::Sentinel { .. } => self.sentinel_client(Role::Primary).await?.get_async_pubsub().await,
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
            Kind::Sentinel { master, .. } => match self.sentinel_client(Role::Primary).await {
                Ok(client) => format!("redis primary {master:?} at {}", client.get_connection_info().addr()),
                Err(_) => format!("redis primary {master:?}"),
            },
            Kind::Cluster { nodes, .. } => {
                let addrs: Vec<String> = nodes.iter().map(|n| n.get_connection_info().addr().to_string()).collect();
                format!("redis cluster {}", addrs.join(","))
            }
        }
    }
}

/// A connection of any topology; errors on the shared `sentinel` connection drop it,
/// so the next use asks the sentinels for the primary again.
#[derive(Clone)]
pub enum Conn {
    Plain(MultiplexedConnection),
    Managed(ConnectionManager),
    Cluster(ClusterConnection),
    Tracked(MultiplexedConnection, Arc<Slot>, u64),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Plain(c) => c.req_packed_command(cmd),
            Conn::Managed(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Tracked(c, slot, generation) => Box::pin(async move {
                let result = c.req_packed_command(cmd).await;
                if result.is_err() {
                    slot.invalidate(*generation);
                }
                result
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Plain(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Managed(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Tracked(c, slot, generation) => Box::pin(async move {
                let result = c.req_packed_commands(pipeline, offset, count).await;
                if result.is_err() {
                    slot.invalidate(*generation);
                }
                result
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Plain(c) | Conn::Tracked(c, ..) => c.get_db(),
            Conn::Managed(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
