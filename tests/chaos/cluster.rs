//! Three streamgate instances (child processes, so SIGKILL and SIGTERM are real) on one
//! real tansu and one real redis-server, serving the `feed` tenant: topic `feed` (4
//! partitions), every message keyed, deduplicated by its `id` and otherwise released
//! as it is, so the expected stream is exactly the produced ids in log order.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::{Instance, Redis, Tansu, http_get};

pub const TENANT: &str = "feed";
/// The consumer group's session timeout: a killed member is dropped after it.
pub const SESSION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(6);
pub const PREFIX: &str = "chaos";

pub struct Cluster {
    pub tansu: Tansu,
    pub redis: Redis,
    instances: Vec<Instance>,
}

impl Cluster {
    /// Starts the broker, Redis and `n` instances, each ready.
    pub fn start(n: usize) -> Cluster {
        let redis = Redis::start();
        let tansu = Tansu::start();
        tansu.create_topic(TENANT, 4);
        let mut cluster = Cluster { tansu, redis, instances: Vec::new() };
        for _ in 0..n {
            let instance = Instance::start(&cluster.config());
            cluster.instances.push(instance);
        }
        cluster
    }

    /// Every instance's config, with dynamic group membership (`instance_id = ""`; static
    /// membership is streamgate's default): on tansu 0.6.0, three instances each given a
    /// `group.instance.id` consumed nothing in 60 s.
    fn config(&self) -> String {
        format!(
            r#"
[kafka]
brokers = "{brokers}"
group_id = "chaos"
session_timeout_ms = {session_ms}
instance_id = ""

[redis]
url = "{redis}"
key_prefix = "{PREFIX}"

[bus]
kind = "redis-stream"
retention_ms = 3600000
heartbeat_ms = 100

[[tenant]]
name = "{TENANT}"
topic = "{TENANT}"
key = "/k"
time = "/t"
id = "/id"
event = "update"
history_frames = 100000

[[tenant.policies]]
plugin = "builtin:dedupe"
config = {{ by = "id" }}
"#,
            brokers = self.tansu.brokers(),
            session_ms = SESSION_TIMEOUT.as_millis(),
            redis = self.redis.url(),
        )
    }

    pub fn len(&self) -> usize {
        self.instances.len()
    }

    /// `http://127.0.0.1:PORT` of instance `i`.
    pub fn base(&self, i: usize) -> String {
        self.instances[i].url("")
    }

    /// The last `n` lines of instance `i`'s log.
    pub fn log_tail(&self, i: usize, n: usize) -> String {
        let log = self.instances[i].log_text();
        let tail: Vec<&str> = log.lines().rev().take(n).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    pub fn instance(&self, i: usize) -> &Instance {
        &self.instances[i]
    }

    /// SIGKILL: no shutdown at all.
    pub fn kill(&mut self, i: usize) {
        self.instances[i].kill();
    }

    /// SIGTERM, then waits for the process to exit cleanly.
    pub fn terminate(&mut self, i: usize) {
        self.instances[i].stop();
    }

    /// Starts instance `i` again (same identity, new port) and waits until ready.
    pub fn restart(&mut self, i: usize) {
        self.instances[i] = Instance::start(&self.config());
    }

    /// Starts instance `i` again on its old port (as behind a load balancer) and waits
    /// until ready.
    pub fn restart_in_place(&mut self, i: usize) {
        let port = self.instances[i].port;
        self.instances[i] = Instance::start_on(port, &self.config());
    }

    /// Sum over the live instances `live` of a tenant series, e.g.
    /// `streamgate_source_decode_errors_total`.
    pub fn metric_sum(&self, live: &[usize], name: &str) -> f64 {
        live.iter().map(|&i| metric(&self.instances[i], name)).sum()
    }

    /// Waits until every instance in `live` has read messages from Kafka: the group has
    /// settled and each holds partitions.
    pub fn wait_all_consuming(&self, live: &[usize], timeout: Duration) {
        let consumed = |i: usize| metric(&self.instances[i], "streamgate_source_messages_total");
        let start = std::time::Instant::now();
        while !live.iter().all(|&i| consumed(i) > 0.0) {
            if start.elapsed() > timeout {
                let idle: Vec<usize> = live.iter().copied().filter(|&i| consumed(i) == 0.0).collect();
                panic!(
                    "instances {idle:?} consumed nothing from Kafka in {timeout:?} (the group did not \
                     settle); instance {}'s log ends:\n{}",
                    idle[0],
                    self.log_tail(idle[0], 30)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every entry of the tenant's Redis log: the `id`s of its events, in log order.
    pub async fn log_ids(&self) -> Vec<String> {
        let client = redis::Client::open(self.redis.url()).unwrap();
        // The whole log in one reply: more than the default response timeout on a loaded machine.
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(60)));
        let mut conn =
            client.get_multiplexed_async_connection_with_config(&config).await.expect("connecting to Redis");
        let key = format!("{PREFIX}:{TENANT}:log");
        let reply: redis::streams::StreamRangeReply =
            redis::cmd("XRANGE").arg(&key).arg("-").arg("+").query_async(&mut conn).await.unwrap();
        let mut ids = Vec::new();
        for entry in &reply.ids {
            let Some(body) = entry.get::<Vec<u8>>("b") else { continue };
            let events = streamgate::bus::decode_batch(&bytes::Bytes::from(body))
                .unwrap_or_else(|e| panic!("log entry {} does not decode: {e}", entry.id));
            for event in events {
                let v: serde_json::Value = serde_json::from_slice(&event.payload).expect("payload is JSON");
                ids.extend(v["id"].as_str().map(str::to_string));
            }
        }
        ids
    }
}

/// The sum of every sample of `name` (all label sets) on `instance`'s `/metrics`.
fn metric(instance: &Instance, name: &str) -> f64 {
    let body = http_get(&instance.url("/metrics")).unwrap_or_default();
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Distinct ids in `ids`.
pub fn distinct(ids: &[String]) -> BTreeSet<&str> {
    ids.iter().map(String::as_str).collect()
}
