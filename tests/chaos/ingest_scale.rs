//! Ingest at scale: events produced into a 6-partition topic as fast as the machine
//! allows (1,000,000 with `STREAMGATE_CHAOS=full`, 50,000 otherwise) while a second and
//! third instance join and leave (SIGTERM and SIGKILL) and a first one stays; then every
//! produced event, by id, must be in the tenant's Redis log.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::cluster::SESSION_TIMEOUT;
use crate::common::{Instance, Redis, Tansu};

const TOPIC: &str = "bulk";
const PARTITIONS: u32 = 6;
const PREFIX: &str = "bulk";

fn config(tansu: &Tansu, redis: &Redis) -> String {
    format!(
        r#"
[kafka]
brokers = "{}"
group_id = "bulk"
session_timeout_ms = {}
instance_id = ""

[redis]
url = "{}"
key_prefix = "{PREFIX}"

[bus]
kind = "redis-stream"
retention_ms = 3600000

[[tenant]]
name = "{TOPIC}"
topic = "{TOPIC}"
key = "/k"
time = "/t"
id = "/id"
event = "bulk"
history_frames = 64
"#,
        tansu.brokers(),
        SESSION_TIMEOUT.as_millis(),
        redis.url()
    )
}

fn payload(i: u64) -> Vec<u8> {
    format!(r#"{{"id":"e-{i:07}","k":"k{}","t":{},"i":{i}}}"#, i % 64, streamgate::bus::wall_clock_ms())
        .into_bytes()
}

/// Produces `total` events as fast as the broker takes them, or at `per_second`; counts
/// acknowledgements in `acked` and returns how long it took (a message the broker refuses
/// for good fails the test).
async fn produce(brokers: String, total: u64, per_second: Option<u64>, acked: Arc<AtomicU64>) -> Duration {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "10")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "300000")
        .create()
        .expect("kafka producer");
    let start = tokio::time::Instant::now();
    let sends = futures::stream::iter(0..total).map(|i| {
        let producer = &producer;
        async move {
            if let Some(rate) = per_second {
                tokio::time::sleep_until(start + Duration::from_micros(i * 1_000_000 / rate)).await;
            }
            let (key, body) = (format!("k{}", i % 64), payload(i));
            let record = FutureRecord::to(TOPIC).key(&key).payload(&body);
            producer.send(record, Duration::from_secs(300)).await.map_err(|(e, _)| e)
        }
    });
    let mut acks = sends.buffer_unordered(20_000);
    while let Some(ack) = acks.next().await {
        ack.unwrap_or_else(|e| panic!("the broker refused an event for good: {e}"));
        acked.fetch_add(1, Relaxed);
    }
    start.elapsed()
}

/// What happens to instances 1 and 2 while the events flow.
#[derive(Clone, Copy, Debug)]
enum Step {
    Join(usize),
    Term(usize),
    Kill(usize),
}

/// Ends with instance 0 alone: it must take over every partition. The step after a kill
/// waits until the group has dropped the killed member (its session timeout): with
/// tansu 0.6.0, a rebalance while a dead member is still counted was seen to leave the
/// live member assigned nothing (all 6 partitions stalled for minutes, the group
/// "Stable") and to keep an instance stopping then from exiting.
const CHURN: [Step; 6] =
    [Step::Join(1), Step::Join(2), Step::Term(1), Step::Join(1), Step::Kill(2), Step::Term(1)];

pub async fn events_with_instances_joining_and_leaving() {
    let full = std::env::var("STREAMGATE_CHAOS").is_ok_and(|v| v == "full");
    // The short version is paced so that the churn happens while events flow.
    let (total, per_second, step_every) = if full {
        (1_000_000, None, Duration::from_millis(2500))
    } else {
        (50_000, Some(2_500), Duration::from_secs(2))
    };
    let (redis, tansu) = tokio::task::block_in_place(|| (Redis::start(), Tansu::start()));
    tansu.create_topic(TOPIC, PARTITIONS);
    let config = config(&tansu, &redis);
    let mut instances: Vec<Option<Instance>> =
        vec![Some(tokio::task::block_in_place(|| Instance::start(&config))), None, None];
    let (start, start_ms) = (Instant::now(), streamgate::bus::wall_clock_ms());
    let acked = Arc::new(AtomicU64::new(0));
    let producer = tokio::spawn(produce(tansu.brokers(), total, per_second, acked.clone()));
    let mut history = Vec::new();
    // Logs of the instances that left, for a diagnosis.
    let mut left: Vec<(String, String)> = Vec::new();
    // SIGTERMs that did not end the process within 15 s (it was then killed).
    let mut hangs: Vec<String> = Vec::new();
    let mut last_kill: Option<Instant> = None;
    for step in CHURN {
        tokio::time::sleep(step_every).await;
        if let Some(killed) = last_kill.take() {
            tokio::time::sleep_until((killed + SESSION_TIMEOUT + Duration::from_secs(2)).into()).await;
        }
        let lag =
            instances[0].as_ref().unwrap().metric(&format!("streamgate_source_lag{{tenant=\"{TOPIC}\"}}"));
        let at = start.elapsed().as_secs_f64();
        history.push(format!("{at:.1} s {step:?} ({} acked, group lag {lag})", acked.load(Relaxed)));
        tokio::task::block_in_place(|| match step {
            Step::Join(i) => instances[i] = Some(Instance::start(&config)),
            Step::Term(i) | Step::Kill(i) => {
                let mut leaving = instances[i].take().expect("running");
                if matches!(step, Step::Kill(_)) {
                    leaving.kill();
                    last_kill = Some(Instant::now());
                } else if let Some(hang) = super::census::terminate(&leaving) {
                    hangs.push(format!("instance {i} at {at:.1} s: {hang}"));
                }
                left.push((format!("instance {i} until {at:.1} s"), leaving.log_text()));
            }
        });
    }
    let patience = Duration::from_secs(if full { 600 } else { 120 });
    let produced_in = tokio::time::timeout(patience, producer)
        .await
        .unwrap_or_else(|_| panic!("{total} events not acknowledged within {patience:?}"))
        .expect("producer task");
    let hung = || format!("{} SIGTERMs did not stop the instance within 15 s: {hangs:?}", hangs.len());
    let survivor = instances[0].as_ref().unwrap();
    let lag = || survivor.metric(&format!("streamgate_source_lag{{tenant=\"{TOPIC}\"}}"));
    let deadline = Instant::now() + patience;
    // Twice in a row (probes run every 2 s): the group has committed every record.
    let mut zero_since: Option<Instant> = None;
    while zero_since.is_none_or(|t| t.elapsed() < Duration::from_secs(5)) {
        let now_lag = lag();
        zero_since = if now_lag == 0.0 { zero_since.or(Some(Instant::now())) } else { None };
        if Instant::now() >= deadline {
            left.push(("instance 0 (running)".into(), survivor.log_text()));
            panic!(
                "the group still lags {now_lag} records {patience:?} after the last event was produced \
                 (partitions nobody consumes?); churn: {history:?}\n{}\nthe instances' Kafka lines:\n{}",
                hung(),
                kafka_lines(&left)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let found = read_log(&redis.url(), total).await;
    // From the first event produced to the log entry (Redis's clock) of the last one.
    let in_log_after = Duration::from_millis((found.last_ms - start_ms).max(1) as u64);
    let missing: Vec<u64> = (0..total).filter(|&i| found.counts[i as usize] == 0).collect();
    println!(
        "ingest at scale: {total} events produced in {:.1} s ({:.0}/s), the last in the log after {:.1} s ({:.0}/s \
         into the log); {} in the log, {} twice or more (redelivered), {} missing; {} log entries; churn: {history:?}",
        produced_in.as_secs_f64(),
        total as f64 / produced_in.as_secs_f64(),
        in_log_after.as_secs_f64(),
        total as f64 / in_log_after.as_secs_f64(),
        total - missing.len() as u64,
        found.counts.iter().filter(|&&c| c > 1).count(),
        missing.len(),
        found.entries
    );
    assert_eq!(found.foreign, 0, "the log holds events that were never produced");
    if !missing.is_empty() {
        for (i, instance) in instances.iter().enumerate() {
            if let Some(instance) = instance {
                left.push((format!("instance {i} (running)"), instance.log_text()));
            }
        }
        let brokers = tansu.brokers();
        let census = tokio::task::block_in_place(|| {
            let log_time = |i: u64| {
                let ms = found.first_ms[i as usize];
                (ms > 0).then(|| (ms - start_ms) as f64 / 1000.0)
            };
            super::census::locate(&brokers, TOPIC, PARTITIONS as i32, &missing, log_time)
        });
        panic!(
            "{} of {total} produced events are not in the Redis log (first {:?}); churn: {history:?}\n{census}\n\
             {}\nthe instances' Kafka lines:\n{}",
            missing.len(),
            &missing[..missing.len().min(10)],
            hung(),
            kafka_lines(&left)
        );
    }
    assert!(hangs.is_empty(), "{}\nthe instances' Kafka lines:\n{}", hung(), kafka_lines(&left));
}

/// Assignments, skipped offsets, warnings and errors from each instance's log.
fn kafka_lines(logs: &[(String, String)]) -> String {
    let mut out = String::new();
    for (who, log) in logs {
        out.push_str(&format!("-- {who}\n"));
        for line in
            log.lines().filter(|l| l.contains("assigned") || l.contains("WARN") || l.contains("ERROR"))
        {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// How often each produced id occurs in the log.
struct Found {
    counts: Vec<u32>,
    foreign: usize,
    entries: usize,
    /// The log time (ms) of the last entry holding events.
    last_ms: i64,
    /// The log time (ms) of each event's first entry (0: absent).
    first_ms: Vec<i64>,
}

/// Reads the whole log, a page at a time.
async fn read_log(url: &str, total: u64) -> Found {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.expect("connecting to Redis");
    let key = format!("{PREFIX}:{TOPIC}:log");
    let mut found = Found {
        counts: vec![0; total as usize],
        foreign: 0,
        entries: 0,
        last_ms: 0,
        first_ms: vec![0; total as usize],
    };
    let mut after = "-".to_string();
    loop {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&key)
            .arg(&after)
            .arg("+")
            .arg("COUNT")
            .arg(200)
            .query_async(&mut conn)
            .await
            .unwrap();
        let Some(last) = reply.ids.last() else { break };
        after = format!("({}", last.id);
        for entry in &reply.ids {
            found.entries += 1;
            let Some(body) = entry.get::<Vec<u8>>("b") else { continue };
            found.last_ms =
                entry.id.split_once('-').and_then(|(ms, _)| ms.parse().ok()).unwrap_or(found.last_ms);
            let events = streamgate::bus::decode_batch(&bytes::Bytes::from(body))
                .unwrap_or_else(|e| panic!("log entry {} does not decode: {e}", entry.id));
            for event in events {
                let v: serde_json::Value = serde_json::from_slice(&event.payload).expect("payload is JSON");
                match v["i"].as_u64().filter(|&i| i < total) {
                    Some(i) => {
                        found.counts[i as usize] += 1;
                        if found.first_ms[i as usize] == 0 {
                            found.first_ms[i as usize] = found.last_ms;
                        }
                    }
                    None => found.foreign += 1,
                }
            }
        }
    }
    found
}
