//! Start time of a late instance with and without checkpoints, and what they cost in
//! Redis, at a high ingest rate (real tansu and redis-server). A measurement, not a
//! check of behaviour (tests/checkpoints.rs is that), so it is a benchmark:
//!
//! ```text
//! make bench-fast-start
//! # = cargo bench -p streamgate --bench fast_start
//! ```
//!
//! Two instances with checkpoints (every `FAST_START_INTERVAL_MS`, default 5,000 ms of
//! log time) read the taxi log while this test appends batches of 1,000 taxi reports
//! straight to the tenant's Redis stream (the bus a Kafka source would feed) at
//! `FAST_START_RATE` events/s (default 100,000) for `FAST_START_SECONDS` (default 30),
//! as fast as Redis takes them if the rate is out of reach. Then a third instance
//! starts from the newest checkpoint and a fourth with checkpoints off (a full replay
//! of the same log); the table gives the time each took to be ready and to reach the
//! end of the log, the achieved ingest rate, and Redis's memory for the log and the
//! checkpoints.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use common::{Instance, Redis, Tansu};
use serde_json::Value;
use streamgate::bus::{EntryBody, LogPosition, RedisStreamBus, wall_clock_ms};
use streamgate::event::Event;

const TOKEN: &str = "test-admin-token-0123456789";
const TAXIS: usize = 10_000;
const BATCH: usize = 1_000;
const PUBLISHERS: usize = 4;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn config(tansu: &Tansu, redis: &Redis, checkpoints: bool, interval_ms: u64) -> String {
    let services = common::services_config(tansu, redis, "fast-start");
    format!(
        "{services}retention_ms = 3600000\n\n[admin]\ntoken = \"{TOKEN}\"\n\n[checkpoint]\nenabled = {checkpoints}\n\
         interval_ms = {interval_ms}\n{}",
        common::TAXI_TENANT
    )
}

/// Where `instance`'s taxi worker is in the log.
async fn position(instance: &Instance) -> LogPosition {
    let resp = reqwest::Client::new()
        .get(instance.url("/admin/tenants/taxi"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("admin API reachable");
    let body: Value = resp.json().await.expect("tenant status");
    body["active"]["position"].as_str().expect("a position").parse().expect("a log position")
}

/// Waits (at most `limit`) until `instance` has applied the entry at `last`.
async fn reach(instance: &Instance, last: LogPosition, limit: Duration) {
    let start = Instant::now();
    while position(instance).await < last {
        assert!(start.elapsed() < limit, "not at {last} after {limit:?}:\n{}", instance.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One batch of taxi reports stamped `now` (fresh for the staleness stage).
fn batch(round: u64, now: i64) -> EntryBody {
    let events: Vec<Event> = (0..BATCH)
        .map(|i| {
            let taxi = (round as usize * BATCH + i) % TAXIS;
            let key = format!("taxi-{taxi:05}");
            let lat = 37.5 + (round % 100) as f64 * 1e-4;
            let payload = format!(r#"{{"mediaId":"{key}","lat":{lat},"lng":126.97,"timestamp":{now}}}"#);
            Event { key, event_time: now, payload: payload.into(), ..Event::default() }
        })
        .collect();
    EntryBody::batch(&events)
}

/// Appends batches at `rate` events/s for `seconds`; returns the events appended and
/// the position of the last batch.
async fn pump(redis: &Redis, rate: u64, seconds: u64) -> (u64, LogPosition, Duration) {
    let bus = RedisStreamBus::new(&redis.url(), "streamgate", Duration::from_secs(3600)).unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS as u64 {
        let (bus, sent) = (bus.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let mut last = LogPosition::default();
            let mut round = p;
            while Instant::now() < deadline {
                // Paced: the batches due by now at `rate`, never ahead.
                let due = start.elapsed().as_secs_f64() * rate as f64;
                if sent.load(Relaxed) as f64 >= due {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                // A loaded machine may time an append out: it is tried again (counted once).
                let mut tries = 0;
                last = loop {
                    match bus.publish("taxi", &batch(round, wall_clock_ms())).await {
                        Ok(p) => break p,
                        Err(e) => {
                            tries += 1;
                            assert!(tries < 20, "XADD failed 20 times: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                };
                sent.fetch_add(BATCH as u64, Relaxed);
                round += PUBLISHERS as u64;
            }
            last
        }));
    }
    let mut last = LogPosition::default();
    for t in tasks {
        last = last.max(t.await.unwrap());
    }
    (sent.load(Relaxed), last, start.elapsed())
}

/// `MEMORY USAGE` of every key matching `pattern`, summed, and how many keys.
async fn memory_of(conn: &mut redis::aio::MultiplexedConnection, pattern: &str) -> (u64, usize) {
    let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query_async(conn).await.unwrap();
    let (mut total, count) = (0, keys.len());
    for k in keys {
        let n: Option<u64> =
            redis::cmd("MEMORY").arg("USAGE").arg(&k).arg("SAMPLES").arg(0).query_async(conn).await.unwrap();
        total += n.unwrap_or(0);
    }
    (total, count)
}

async fn used_memory(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await.unwrap();
    info.lines().find_map(|l| l.strip_prefix("used_memory:")).and_then(|v| v.trim().parse().ok()).unwrap()
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(fast_start_table());
}

async fn fast_start_table() {
    let rate = env_u64("FAST_START_RATE", 100_000);
    let seconds = env_u64("FAST_START_SECONDS", 30);
    let interval = env_u64("FAST_START_INTERVAL_MS", 5_000);
    let (tansu, redis) = (Tansu::start(), Redis::start());
    tansu.create_topic("taxi", 4);
    let with = config(&tansu, &redis, true, interval);
    let writers = [Instance::start(&with), Instance::start(&with)];

    let (events, last, took) = pump(&redis, rate, seconds).await;
    let achieved = events as f64 / took.as_secs_f64();
    // The last checkpoint taken while events were arriving.
    let loaded_pause_us = writers[0].metric("streamgate_checkpoint_pause_us{tenant=\"taxi\"}");
    let loaded_bytes = writers[0].metric("streamgate_checkpoint_bytes{tenant=\"taxi\"}");
    let caught_up = Instant::now();
    for w in &writers {
        reach(w, last, Duration::from_secs(1800)).await;
    }
    let lag = caught_up.elapsed();
    // A checkpoint at or after the end of the ingest, written and verified.
    let verified = "streamgate_checkpoints_total{tenant=\"taxi\",reason=\"verified\"}";
    let before: f64 = writers.iter().map(|w| w.metric(verified)).sum();
    common::wait_for("a checkpoint verified after the ingest", Duration::from_secs(120), || {
        writers.iter().map(|w| w.metric(verified)).sum::<f64>() >= before + 1.0
    });

    let mut conn =
        redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let (log_bytes, _) = memory_of(&mut conn, "streamgate:taxi:log").await;
    let (checkpoint_bytes, checkpoint_keys) = memory_of(&mut conn, "streamgate:taxi:checkpoint:*").await;
    let keys: Vec<String> =
        redis::cmd("KEYS").arg("streamgate:taxi:checkpoint:*").query_async(&mut conn).await.unwrap();
    let mut sizes = Vec::new();
    for k in keys {
        let n: u64 = redis::cmd("HSTRLEN").arg(&k).arg("blob").query_async(&mut conn).await.unwrap();
        sizes.push(mb(n));
    }
    let used = used_memory(&mut conn).await;
    let one_checkpoint = writers[0].metric("streamgate_checkpoint_bytes{tenant=\"taxi\"}");
    let pause_us = writers[0].metric("streamgate_checkpoint_pause_us{tenant=\"taxi\"}");

    let mut rows = Vec::new();
    for (name, config) in
        [("from a checkpoint", with.clone()), ("full replay", config(&tansu, &redis, false, interval))]
    {
        let start = Instant::now();
        let late = Instance::start_within(&config, Duration::from_secs(1800));
        let ready = start.elapsed();
        reach(&late, last, Duration::from_secs(1800)).await;
        let at_end = start.elapsed();
        let restored = late.metric("streamgate_checkpoints_total{tenant=\"taxi\",reason=\"restored\"}");
        rows.push((name, ready, at_end, restored, late.rss_bytes()));
    }

    println!(
        "\nfast start: {events} taxi events appended in {took:.1?} ({achieved:.0} events/s; target {rate}), checkpoint every {interval} ms of log time"
    );
    println!(
        "the two running instances reached the end {lag:.1?} after the ingest ended; the last checkpoint paused the chain {pause_us} µs"
    );
    println!(
        "redis: used_memory {}, the log {}, {checkpoint_keys} checkpoints kept {} (encoded: {}; the last one taken {})",
        mb(used),
        mb(log_bytes),
        mb(checkpoint_bytes),
        sizes.join(", "),
        mb(one_checkpoint as u64)
    );
    println!(
        "during the ingest, a checkpoint paused the chain {loaded_pause_us} µs and was {} encoded",
        mb(loaded_bytes as u64)
    );
    println!("| late instance | ready (/readyz) | at the end of the log | restored | RSS |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (name, ready, at_end, restored, rss) in &rows {
        println!(
            "| {name} | {:.2} s | {:.2} s | {restored} | {} |",
            ready.as_secs_f64(),
            at_end.as_secs_f64(),
            mb(*rss)
        );
    }
    assert_eq!(rows[0].3, 1.0, "the first late instance started from a checkpoint");
    assert_eq!(rows[1].3, 0.0, "the second replayed the log");
}
