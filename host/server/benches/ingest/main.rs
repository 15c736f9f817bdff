//! `make bench-ingest`: the rate one `streamgate run` instance (release build, shipped
//! defaults: the config sets only the addresses, one tenant and one builtin stage) moves
//! events from Kafka into the tenant's Redis stream, with real tansu and redis-server on
//! free loopback ports, and nothing lost: a follower of the log counts every event's
//! number, once each.
//!
//! Two shapes. **drain**: the topic holds `INGEST_EVENTS` events (default 2,000,000,
//! about 120 bytes of JSON, `INGEST_PARTITIONS` partitions, default 4) before the
//! instance starts; the rate is the events over the time from its start to the last
//! event in the log. **live**: a producer at fixed rates (`INGEST_RATES`, events/s,
//! default `25000,50000,100000,150000,200000,300000`) for `INGEST_STEP_SECS` each
//! (default 15), stepping up until the instance falls behind: a rate is sustained when
//! every event of its step is in the log within `LAG_LIMIT` of the step's end.
//!
//! CPU is each process's user + system time over the measured window (100 % = one
//! core): streamgate, tansu, redis-server and this process (the producer, librdkafka's
//! threads and the log follower). `INGEST_SHAPES` (`drain,live`) picks the shapes;
//! `INGEST_LINGER_MS` sets the producer's `linger.ms` (librdkafka's default, 5, unless
//! set: `make bench-fanout`'s producer uses 1). `INGEST_AUDIT=1` reads the topic back
//! after the live steps with a plain consumer, to tell the broker's losses from the
//! instance's.

#[path = "../../../../tests/common/mod.rs"]
mod common;
#[path = "../fanout/defaults.rs"]
mod defaults;
#[allow(dead_code)]
#[path = "../fanout/stats.rs"]
mod stats;

mod audit;
mod load;

use std::time::{Duration, Instant};

use common::{Instance, Redis, Tansu};
use load::{Follower, Kafka};
use stats::{cpu_seconds, own_cpu_seconds};

const TOPIC: &str = "ingest";
const TENANT: &str = "ingest";
/// A live step is sustained when all its events are in the log this soon after it ends.
const LAG_LIMIT: Duration = Duration::from_secs(2);
/// Waiting for stragglers ends after this long without a new event in the log.
const QUIET: Duration = Duration::from_secs(20);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn env_list(name: &str, default: &str) -> Vec<String> {
    let v = std::env::var(name).unwrap_or_else(|_| default.to_string());
    v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

/// tansu and redis-server, and the instance once started (dropped first).
struct Servers {
    instance: Option<Instance>,
    tansu: Tansu,
    redis: Redis,
}

impl Servers {
    fn start(partitions: u32) -> Servers {
        let (tansu, redis) = (Tansu::start(), Redis::start());
        tansu.create_topic(TOPIC, partitions);
        Servers { instance: None, tansu, redis }
    }

    /// The shipped defaults: addresses, the tenant, one builtin stage (and, for
    /// experiments only, `INGEST_CONFIG_EXTRA`: TOML lines after `[kafka]`'s, which may
    /// open other tables; the tables are measured without).
    fn config(&self) -> String {
        let extra = std::env::var("INGEST_CONFIG_EXTRA").unwrap_or_default().replace("\\n", "\n");
        defaults::config(&defaults::Shape {
            brokers: &self.tansu.brokers(),
            redis_url: &self.redis.url(),
            tenant: TENANT,
            topic: TOPIC,
            kafka_extra: &extra,
            tenant_extra: "",
        })
    }

    fn start_instance(&mut self) {
        self.instance = Some(Instance::start(&self.config()));
    }

    fn follow(&self) -> Follower {
        Follower::start(&self.redis.url(), &format!("streamgate:{TENANT}:log"))
    }

    /// What the source reported so far: holes fetched again, offset gaps, group assignments.
    fn source_report(&self) -> String {
        let Some(instance) = &self.instance else { return String::new() };
        let log = instance.log_text();
        let refetched = log.matches("fetching them again").count();
        let gaps = instance.metric(&format!("streamgate_source_offset_gaps_total{{tenant=\"{TENANT}\"}}"));
        let assigned = log.matches("kafka partitions assigned").count();
        format!("; so far {refetched} holes fetched again, {gaps} offset gaps, {assigned} assignments")
    }

    fn pids(&self) -> [u32; 4] {
        let instance = self.instance.as_ref().map_or(0, Instance::pid);
        [instance, self.tansu.pid(), self.redis.pid(), std::process::id()]
    }
}

/// CPU seconds of each process now (the bench's own from its own clock).
fn cpu_now(pids: [u32; 4]) -> [f64; 4] {
    [cpu_seconds(pids[0]), cpu_seconds(pids[1]), cpu_seconds(pids[2]), own_cpu_seconds()]
}

struct Row {
    shape: String,
    rate: f64,
    /// drain: the rate from the first event in the log to the last.
    steady: Option<f64>,
    events: u64,
    lost: u64,
    duplicated: u64,
    /// streamgate, tansu, redis-server, this process: % of one core.
    cpu: [f64; 4],
    rss: u64,
    note: String,
}

fn cpu_percent(before: [f64; 4], after: [f64; 4], secs: f64) -> [f64; 4] {
    std::array::from_fn(|i| 100.0 * (after[i] - before[i]) / secs)
}

fn drain(events: u64, partitions: u32) -> Row {
    let mut servers = Servers::start(partitions);
    let kafka = Kafka::new(
        &servers.tansu.brokers(),
        TOPIC,
        std::env::var("INGEST_LINGER_MS").ok().and_then(|v| v.parse().ok()),
    );
    let start = Instant::now();
    kafka.preload(0, events);
    let preload = start.elapsed();
    eprintln!(
        "ingest: {events} events in the topic in {preload:.1?} ({:.0}/s)",
        events as f64 / preload.as_secs_f64()
    );
    let follower = servers.follow();
    let before = cpu_now(servers.pids());
    let start = Instant::now();
    servers.start_instance();
    let before = [0.0, before[1], before[2], before[3]];
    let last = follower.wait_for(events, QUIET);
    let first = follower.first_event();
    let pids = servers.pids();
    let secs = last.duration_since(start).as_secs_f64();
    let cpu = cpu_percent(before, cpu_now(pids), start.elapsed().as_secs_f64());
    let rss = servers.instance.as_ref().map_or(0, Instance::rss_bytes);
    let counts = follower.counts.lock().unwrap();
    Row {
        shape: format!("drain, {partitions} partitions"),
        rate: counts.unique as f64 / secs,
        // The rate once the consumer has its partitions (group join excluded).
        steady: first.map(|f| counts.unique as f64 / last.duration_since(f).as_secs_f64()),
        events,
        lost: counts.missing(0..events),
        duplicated: counts.duplicated,
        cpu,
        rss,
        note: format!(
            "first event in the log {:.1} s, last {secs:.1} s after the start",
            first.map_or(f64::NAN, |f| f.duration_since(start).as_secs_f64())
        ) + &servers.source_report(),
    }
}

fn live(rates: &[u64], step_secs: u64, partitions: u32) -> Vec<Row> {
    let mut servers = Servers::start(partitions);
    servers.start_instance();
    let follower = servers.follow();
    let kafka = Kafka::new(
        &servers.tansu.brokers(),
        TOPIC,
        std::env::var("INGEST_LINGER_MS").ok().and_then(|v| v.parse().ok()),
    );
    // Warm-up: the consumer has its partitions and the log its first entries.
    kafka.preload(0, 1_000);
    follower.wait_for(1_000, Duration::from_secs(60));
    let mut next = 1_000;
    let mut rows = Vec::new();
    for &rate in rates {
        let pids = servers.pids();
        let before = cpu_now(pids);
        let backlog = |sent_upto: u64| {
            sent_upto.saturating_sub(follower.events.load(std::sync::atomic::Ordering::Relaxed))
        };
        let paced = kafka.paced(next, rate, step_secs, &backlog);
        let cpu = cpu_percent(before, cpu_now(pids), paced.elapsed.as_secs_f64());
        let end = Instant::now();
        let target = next + paced.sent;
        let mut sustained = follower.wait_until(target, end + LAG_LIMIT);
        let in_time = if sustained { Instant::now() } else { follower.wait_for(target, QUIET) };
        let counts = follower.counts.lock().unwrap();
        let lost = counts.missing(next..target);
        let (acked, failed) = kafka.deliveries();
        eprintln!(
            "ingest: producer acked {acked}, failed {failed}; missing {:?}, duplicated {:?}",
            counts.runs(next..target, 0, 5),
            counts.runs(next..target, 2, 5)
        );
        sustained &= lost == 0;
        let caught_up = in_time.saturating_duration_since(end);
        rows.push(Row {
            shape: "live".into(),
            rate: paced.sent as f64 / paced.elapsed.as_secs_f64(),
            steady: None,
            events: paced.sent,
            lost,
            duplicated: counts.duplicated,
            cpu,
            rss: servers.instance.as_ref().map_or(0, Instance::rss_bytes),
            note: format!(
                "target {rate}/s: {}; max backlog {} events, the last in the log {:.2} s after the step",
                if sustained { "sustained" } else { "fell behind" },
                paced.max_backlog,
                caught_up.as_secs_f64()
            ) + &servers.source_report(),
        });
        drop(counts);
        next = target;
        if !sustained {
            break;
        }
    }
    if std::env::var_os("INGEST_AUDIT").is_some() {
        let (audit, rate) = audit::audit_topic(&servers.tansu.brokers(), TOPIC, next);
        eprintln!(
            "ingest: the topic read back by a plain consumer: {} of {next} events, {} missing, {} duplicated, \
             at {rate:.0} events/s",
            audit.unique,
            audit.missing(0..next),
            audit.duplicated
        );
    }
    rows
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    let shapes = env_list("INGEST_SHAPES", "drain,live");
    let events = env_u64("INGEST_EVENTS", 2_000_000);
    let partitions = env_u64("INGEST_PARTITIONS", 4) as u32;
    let step = env_u64("INGEST_STEP_SECS", 15);
    let rates: Vec<u64> = env_list("INGEST_RATES", "25000,50000,100000,150000,200000,300000")
        .iter()
        .filter_map(|r| r.parse().ok())
        .collect();
    let load_before = load_average();
    let mut rows = Vec::new();
    if shapes.iter().any(|s| s == "drain") {
        rows.push(drain(events, partitions));
    }
    if shapes.iter().any(|s| s == "live") {
        rows.extend(live(&rates, step, partitions));
    }
    println!(
        "\ningest: Kafka (tansu) -> one streamgate instance -> Redis stream; load average {load_before} before, {} after",
        load_average()
    );
    println!(
        "| shape | rate (events/s) | events | lost | duplicated | streamgate CPU | RSS | tansu CPU | redis-server CPU | producer + counter CPU | |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for r in &rows {
        println!(
            "| {} | {:.0}{} | {} | {} | {} | {:.0} % | {:.0} MB | {:.0} % | {:.0} % | {:.0} % | {} |",
            r.shape,
            r.rate,
            r.steady.map_or(String::new(), |s| format!(" ({s:.0} from the first event)")),
            r.events,
            r.lost,
            r.duplicated,
            r.cpu[0],
            r.rss as f64 / 1e6,
            r.cpu[1],
            r.cpu[2],
            r.cpu[3],
            r.note
        );
    }
}
