//! Expiry end to end, against real tansu (Kafka) and real redis-server: two instances of
//! the taxi map; 100 taxis report, then only 50 keep reporting. Once the silent 50 are
//! more than 30 s of log time old, the staleness stage expires them: they leave
//! `/snapshot` on both instances and a new viewer's first frame, and every live stream
//! (connected before) carried the same removal events at the same ids; a client of two
//! keys got only its own key's removal.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Instance, Redis, SseClient, SseFrame, Tansu};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

const TAXIS: usize = 100;
/// Taxis `0..LIVE` keep reporting; the others report once.
const LIVE: usize = 50;
/// The staleness bound in `common::TAXI_TENANT`.
const MAX_AGE_MS: i64 = 30_000;
const EXPIRED_EVENT: &str = "liveMapLocation-expired";

fn taxi(i: usize) -> String {
    format!("taxi-{i:04}")
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn producer(tansu: &Tansu) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", tansu.brokers())
        .set("linger.ms", "5")
        .create()
        .expect("kafka producer")
}

/// Sends one report of each taxi in `taxis`, stamped now; returns the stamp.
async fn report(producer: &FutureProducer, taxis: std::ops::Range<usize>, round: usize) -> i64 {
    let now = wall_ms();
    let sends = taxis.map(|i| {
        let payload = serde_json::json!({
            "mediaId": taxi(i),
            "lat": 37.5 + i as f64 * 0.001,
            "lng": 127.0 + round as f64 * 0.0001,
            "timestamp": now,
        })
        .to_string();
        let producer = producer.clone();
        async move {
            producer
                .send(FutureRecord::to("taxi").key(&taxi(i)).payload(&payload), Duration::from_secs(10))
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        }
    });
    for result in futures::future::join_all(sends).await {
        result.expect("kafka delivery");
    }
    now
}

/// Each removal event of a stream: the id of its frame (its own, or that of the frame's
/// next event, which carries it) and the keys removed. A removal whose next event has not
/// been parsed yet is left out until it has.
fn removals(frames: &[SseFrame]) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        if f.event != EXPIRED_EVENT {
            continue;
        }
        let id = if f.id.is_empty() {
            frames.get(i + 1).map(|n| n.id.clone()).unwrap_or_default()
        } else {
            f.id.clone()
        };
        if id.is_empty() {
            continue;
        }
        out.push((id, serde_json::from_str(&f.data).expect("removed keys are a JSON array of strings")));
    }
    out
}

fn removed_keys(frames: &[SseFrame]) -> BTreeSet<String> {
    removals(frames).into_iter().flat_map(|(_, keys)| keys).collect()
}

fn taxis_in(payloads: &[serde_json::Value]) -> BTreeSet<String> {
    payloads.iter().map(|p| p["mediaId"].as_str().expect("mediaId").to_string()).collect()
}

fn snapshot(instance: &Instance) -> BTreeSet<String> {
    let body = common::http_get(&instance.url("/tenants/taxi/snapshot")).expect("GET /snapshot");
    taxis_in(&serde_json::from_str::<Vec<serde_json::Value>>(&body).expect("snapshot is a JSON array"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_taxis_expire_at_the_same_position_on_every_instance() {
    let started = std::time::Instant::now();
    let (tansu, redis) = (Tansu::start(), Redis::start());
    tansu.create_topic("taxi", 4);
    let config = format!("{}{}", common::services_config(&tansu, &redis, "expiry"), common::TAXI_TENANT);
    let (a, b) = (Instance::start(&config), Instance::start(&config));
    let client_a = SseClient::connect(&a.url("/tenants/taxi/events")).await;
    let client_b = SseClient::connect(&b.url("/tenants/taxi/events")).await;
    // A client of one live taxi (0) and one silent taxi (99).
    let two = SseClient::connect(&b.url("/tenants/taxi/events?key=taxi-0099&key=taxi-0000")).await;

    let producer = producer(&tansu);
    let silent_since = report(&producer, 0..TAXIS, 0).await;
    let live: BTreeSet<String> = (0..LIVE).map(taxi).collect();
    let silent: BTreeSet<String> = (LIVE..TAXIS).map(taxi).collect();
    let all: BTreeSet<String> = live.union(&silent).cloned().collect();
    client_a
        .wait_until("every taxi on A", Duration::from_secs(30), |f| {
            let seen: BTreeSet<String> = f.iter().flat_map(|f| taxis_in(&f.payloads())).collect();
            if seen == all { Ok(()) } else { Err(format!("{} of {TAXIS} taxis", seen.len())) }
        })
        .await;
    // B reads the same log on its own schedule: awaited, not assumed to be where A is.
    common::wait_for("B's snapshot to hold every taxi before any expires", Duration::from_secs(20), || {
        snapshot(&b) == all
    });

    // Only the live half keeps reporting, twice a second, until the test ends.
    let reporting = tokio::spawn(async move {
        let mut pace = tokio::time::interval(Duration::from_millis(500));
        for round in 1.. {
            pace.tick().await;
            report(&producer, 0..LIVE, round).await;
        }
    });

    let expiry = |name: &'static str| {
        let silent = silent.clone();
        move |f: &[SseFrame]| {
            let removed = removed_keys(f);
            if removed == silent {
                Ok(())
            } else {
                Err(format!("{name} removed {} of {} taxis", removed.len(), silent.len()))
            }
        }
    };
    let limit = Duration::from_secs(60);
    client_a.wait_until("the silent taxis' removal on A", limit, expiry("A")).await;
    client_b.wait_until("the silent taxis' removal on B", limit, expiry("B")).await;
    two.wait_until("taxi-0099's removal for the keyed client", limit, |f| {
        if removed_keys(f).is_empty() { Err("none yet".into()) } else { Ok(()) }
    })
    .await;

    // Gone from both snapshots and from a new viewer's first frame; the live half stays.
    assert_eq!(snapshot(&a), live, "A's snapshot is the live taxis");
    assert_eq!(snapshot(&b), live, "B's snapshot is the live taxis");
    let viewer = SseClient::connect(&b.url("/tenants/taxi/events")).await;
    viewer
        .wait_until("the new viewer's first frame", limit, |f| {
            if f.is_empty() { Err("none yet".into()) } else { Ok(()) }
        })
        .await;
    let first = &viewer.frames()[0];
    assert_eq!(first.event, "liveMapLocation");
    assert_eq!(taxis_in(&first.payloads()), live, "the first frame holds exactly the live taxis");

    // The same removals at the same ids on both instances, each taxi once, more than
    // 30 s of log time after its last report.
    let (removals_a, removals_b) = (removals(&client_a.frames()), removals(&client_b.frames()));
    assert_eq!(removals_a, removals_b, "both instances removed the same keys at the same ids");
    let listed: Vec<&String> = removals_a.iter().flat_map(|(_, keys)| keys).collect();
    assert_eq!(listed.len(), silent.len(), "each silent taxi is removed once: {removals_a:?}");
    for (id, keys) in &removals_a {
        let log_time: i64 = id.split_once('-').expect("id is <ms>-<n>").0.parse().unwrap();
        assert!(
            log_time - silent_since > MAX_AGE_MS,
            "{keys:?} removed at {id}, not 30 s after {silent_since}"
        );
        assert!(keys.iter().all(|k| silent.contains(k)), "a live taxi was removed at {id}: {keys:?}");
    }
    // The streams agree frame by frame as far as both got.
    let (frames_a, frames_b) = (client_a.frames(), client_b.frames());
    let common_len = frames_a.len().min(frames_b.len());
    assert_eq!(frames_a[..common_len], frames_b[..common_len], "the two instances' streams differ");
    // The client of taxi-0000 and taxi-0099 got the removal of taxi-0099 only, at A's id.
    let keyed = removals(&two.frames());
    let at = removals_a.iter().find(|(_, keys)| keys.contains(&taxi(99))).map(|(id, _)| id.clone());
    assert_eq!(keyed, vec![(at.expect("taxi-0099 was removed"), vec![taxi(99)])]);
    for (name, instance) in [("A", &a), ("B", &b)] {
        let expired = instance.metric("streamgate_expired_keys_total{tenant=\"taxi\"}");
        assert_eq!(expired, silent.len() as f64, "{name} counted the expired keys");
    }
    reporting.abort();
    eprintln!("expiry acceptance took {:.1} s", started.elapsed().as_secs_f64());
}
