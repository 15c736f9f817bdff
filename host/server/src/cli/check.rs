//! `streamgate check --config FILE`: loads a config exactly as `run` does (parse, env
//! overrides, validation, auth keys and token files), prepares each tenant's policy
//! chain, then reaches every Kafka broker and the Redis URL with a short timeout. One
//! verdict per line on stdout (`ok`, `FAIL` or `skip`, what, address, why) and a summary.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::metadata::Metadata;
use streamgate_runtime::PolicyRuntime;
use streamgate_runtime::plugin::is_plugin_ref;

use crate::bus::link::Role;
use crate::bus::{BusKind, RedisLink, RedisTopology};
use crate::config::Config;
use crate::policy::{Catalog, Store};
use crate::tenant::TenantConfig;

/// Creating a chain compiles its plugins, which takes a while on a busy machine: this
/// much on top of the connection timeout when the plugins come from Redis.
const CHAIN_FETCH_GRACE: Duration = Duration::from_secs(60);

/// The verdicts printed so far.
#[derive(Default)]
struct Report {
    ok: usize,
    failed: usize,
    skipped: usize,
}

impl Report {
    fn ok(&mut self, what: &str, detail: &str) {
        self.ok += 1;
        print_line("ok", what, detail);
    }

    fn fail(&mut self, what: &str, detail: &str) {
        self.failed += 1;
        print_line("FAIL", what, detail);
    }

    fn skip(&mut self, what: &str, detail: &str) {
        self.skipped += 1;
        print_line("skip", what, detail);
    }

    /// Prints the summary line.
    fn finish(&self) {
        let total = self.ok + self.failed;
        if self.failed == 0 {
            println!("check passed: {} ok, {} skipped", self.ok, self.skipped);
        } else {
            println!("check failed: {} of {total} checks failed", self.failed);
        }
    }
}

fn print_line(verdict: &str, what: &str, detail: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{verdict:<4} {what}{detail}");
    let _ = out.flush();
}

/// Runs the checks; exit status 0 when all passed, 1 when one failed, 2 when the config
/// is invalid (nothing else is tried then).
pub fn check(path: &Path, offline: bool, timeout: Duration) -> ExitCode {
    let mut report = Report::default();
    let config = match Config::load(path).map_err(|e| e.to_string()).and_then(|c| {
        c.admin.tokens().map(|_| c).map_err(|e| format!("config file {} is invalid: {e}", path.display()))
    }) {
        Ok(config) => config,
        Err(e) => {
            report.fail("config", &format!(": {e}"));
            report.finish();
            return ExitCode::from(2);
        }
    };
    let names: Vec<&str> = config.tenants.iter().map(|t| t.name.as_str()).collect();
    report.ok("config", &format!(" {} (tenants: {})", path.display(), names.join(", ")));
    let runtime = tokio::runtime::Runtime::new().expect("starting the tokio runtime");
    runtime.block_on(async {
        let redis_up = if offline {
            false
        } else {
            let bootstrap: Vec<String> = config
                .kafka
                .brokers
                .split(',')
                .map(str::trim)
                .filter(|b| !b.is_empty())
                .map(|b| if b.contains(':') { b.to_string() } else { format!("{b}:9092") })
                .collect();
            let mut advertised = BTreeMap::new();
            for addr in &bootstrap {
                advertised.extend(kafka(&mut report, &config, addr, timeout).await);
            }
            advertised.retain(|addr, _| !bootstrap.contains(addr));
            for (addr, id) in advertised {
                advertised_broker(&mut report, id, &addr, timeout).await;
            }
            redis(&mut report, &config, timeout).await
        };
        chains(&mut report, &config, offline, redis_up, timeout).await;
    });
    report.finish();
    if report.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// One bootstrap broker: a TCP connection (the clearest reason when it fails), then the
/// cluster's metadata through it, and the tenants' topics in that metadata. Returns the
/// brokers the metadata advertises (address, broker id): the addresses clients go on to use.
async fn kafka(report: &mut Report, config: &Config, addr: &str, timeout: Duration) -> BTreeMap<String, i32> {
    let what = format!("kafka {addr}");
    if let Err(e) = tcp(addr, timeout).await {
        report.fail(&what, &format!(": {e}"));
        return BTreeMap::new();
    }
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", addr).set("group.id", &config.kafka.group_id);
    for (k, v) in &config.kafka.options {
        client.set(k, v);
    }
    let metadata = tokio::task::spawn_blocking(move || -> Result<Metadata, String> {
        let consumer: BaseConsumer<Quiet> =
            client.create_with_context(Quiet).map_err(|e| format!("kafka client: {e}"))?;
        consumer.fetch_metadata(None, timeout).map_err(|e| format!("no metadata within {timeout:?}: {e}"))
    })
    .await
    .expect("the metadata request does not panic");
    let metadata = match metadata {
        Ok(m) => m,
        Err(e) => {
            report.fail(&what, &format!(": {e}"));
            return BTreeMap::new();
        }
    };
    report.ok(
        &what,
        &format!(" (metadata: {} topics, {} brokers)", metadata.topics().len(), metadata.brokers().len()),
    );
    for t in &config.tenants {
        topic(report, &metadata, t, addr);
    }
    metadata.brokers().iter().map(|b| (format!("{}:{}", b.host(), b.port()), b.id())).collect()
}

/// A broker the cluster advertises but the config does not list: consumers connect to it
/// after bootstrap, so an advertised name nobody can reach fails them all the same.
async fn advertised_broker(report: &mut Report, id: i32, addr: &str, timeout: Duration) {
    let what = format!("kafka broker {id} as advertised, {addr}");
    match tcp(addr, timeout).await {
        Ok(()) => report.ok(&what, ""),
        Err(e) => report.fail(&what, &format!(": {e}; check the broker's advertised listeners")),
    }
}

/// The check's Kafka client keeps librdkafka's logs and errors to itself: the verdict
/// says what failed, and its retries (to an advertised broker, say) would only repeat it.
struct Quiet;

impl ClientContext for Quiet {
    fn log(&self, _: RDKafkaLogLevel, _: &str, _: &str) {}
    fn error(&self, _: rdkafka::error::KafkaError, _: &str) {}
}

impl ConsumerContext for Quiet {}

fn topic(report: &mut Report, metadata: &Metadata, tenant: &TenantConfig, broker: &str) {
    let what = format!("topic {} (tenant {}) on {broker}", tenant.topic, tenant.name);
    match metadata.topics().iter().find(|m| m.name() == tenant.topic) {
        Some(m) if m.error().is_none() => report.ok(&what, &format!(": {} partitions", m.partitions().len())),
        Some(m) => report.fail(&what, &format!(": {:?}", m.error())),
        None => report.fail(&what, ": no such topic; create it or fix the tenant's `topic`"),
    }
}

async fn tcp(addr: &str, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err("connection refused (nothing listens there)".into())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no connection within {timeout:?}")),
    }
}

/// Redis as configured (the bus and the plugin store): for a Sentinel the primary the
/// sentinels name, for a Cluster its state; connect, PING, and the server's version.
/// Returns whether it answered.
async fn redis(report: &mut Report, config: &Config, timeout: Duration) -> bool {
    if config.bus.kind == BusKind::Memory {
        report.skip("redis", ": bus.kind = \"memory\" uses no Redis");
        return false;
    }
    let link = match RedisLink::open(&config.redis) {
        Ok(link) => link,
        Err(e) => {
            report.fail("redis", &format!(": [redis] holds an address that is not a Redis URL: {e}"));
            return false;
        }
    };
    let answer = tokio::time::timeout(timeout, async {
        // The address only: URLs may hold a password.
        let what = link.describe().await;
        let mut conn = link.dedicated(Role::Primary, timeout).await.map_err(|e| (what.clone(), e))?;
        let query = async {
            let pong: String = redis::cmd("PING").query_async(&mut conn).await?;
            let info: String = match link.topology() {
                RedisTopology::Cluster => redis::cmd("CLUSTER").arg("INFO").query_async(&mut conn).await?,
                _ => redis::cmd("INFO").arg("server").query_async(&mut conn).await?,
            };
            Ok::<_, redis::RedisError>((pong, info))
        };
        query.await.map(|answer| (what.clone(), answer)).map_err(|e| (what, e))
    })
    .await;
    match answer {
        Ok(Ok((what, (pong, info)))) => {
            let field = |name: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(str::trim)
                    .unwrap_or("unknown")
                    .to_string()
            };
            let detail = match link.topology() {
                RedisTopology::Cluster => {
                    format!("cluster_state {}, {} primaries", field("cluster_state:"), field("cluster_size:"))
                }
                _ => format!("redis {}", field("redis_version:")),
            };
            report.ok(&what, &format!(" (PING: {pong}, {detail})"));
            true
        }
        Ok(Err((what, e))) if e.is_connection_refusal() => {
            report.fail(&what, ": connection refused (nothing listens there)");
            false
        }
        Ok(Err((what, e))) => {
            report.fail(&what, &format!(": {e}"));
            false
        }
        Err(_) => {
            report.fail("redis", &format!(": no answer within {timeout:?}"));
            false
        }
    }
}

/// Every tenant's configured chain, created as `run` creates it (plugins resolved and
/// compiled, each stage made from its config). Chains naming uploaded plugins need the
/// plugin store in Redis.
async fn chains(report: &mut Report, config: &Config, offline: bool, redis_up: bool, timeout: Duration) {
    let runtime = PolicyRuntime::new(&config.sandbox);
    let store = match config.bus.kind {
        BusKind::Memory => Store::memory(),
        _ if !redis_up => Store::memory(),
        _ => match RedisLink::open(&config.redis) {
            Ok(link) => Store::redis_link(link),
            Err(e) => return report.fail("chains", &format!(": plugin store: {e}")),
        },
    };
    let catalog = Arc::new(Catalog::new(runtime, store, config.plugins_dir.clone()));
    for t in &config.tenants {
        let what = format!("chain of tenant {}", t.name);
        let spec = t.configured_chain(config.plugins_dir.is_some());
        let stored = spec.policies.iter().any(|s| is_plugin_ref(&s.plugin));
        if stored && config.bus.kind != BusKind::Memory && !redis_up {
            let why = if offline { "--offline" } else { "Redis did not answer" };
            report.skip(&what, &format!(": names uploaded plugins (sha256:…) kept in Redis ({why})"));
            continue;
        }
        let limits = crate::tenant::chain_options(&catalog, t).limits;
        let prepared =
            tokio::time::timeout(timeout + CHAIN_FETCH_GRACE, catalog.prepare(&spec, limits, false, false));
        let refs: Vec<&str> = spec.policies.iter().map(|s| s.plugin.as_str()).collect();
        match prepared.await {
            Ok(Ok(_)) if refs.is_empty() => report.ok(&what, ": no policies (events pass as they come)"),
            Ok(Ok(_)) => {
                report.ok(&what, &format!(": {} stages created ({})", refs.len(), refs.join(" -> ")))
            }
            Ok(Err(e)) => report.fail(&what, &format!(": {e}")),
            Err(_) => report.fail(&what, ": not created in time (plugin store slow?)"),
        }
    }
}
