//! One connection type for every Redis topology ([`Conn`]), so the bus and the plugin
//! store send the same commands to one server, a Sentinel-named primary or a Cluster.

use std::sync::{Arc, Mutex};

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// The shared primary connection under `sentinel`, with a generation so an error on
/// an old connection does not drop its replacement.
#[derive(Default)]
pub struct Slot(Mutex<(u64, Option<MultiplexedConnection>)>);

impl Slot {
    /// The shared connection, if one is held.
    pub(super) fn tracked(self: &Arc<Self>) -> Option<Conn> {
        let slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (generation, conn) = &*slot;
        conn.clone().map(|c| Conn::Tracked(c, self.clone(), *generation))
    }

    /// Holds `conn` as the shared connection from now on.
    pub(super) fn hold(self: &Arc<Self>, conn: MultiplexedConnection) -> Conn {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        slot.0 += 1;
        slot.1 = Some(conn.clone());
        Conn::Tracked(conn, self.clone(), slot.0)
    }

    fn invalidate(&self, generation: u64) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if slot.0 == generation {
            slot.1 = None;
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
