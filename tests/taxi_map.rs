//! The live taxi map end to end, against real tansu (Kafka) and real redis-server:
//! two streamgate instances in one consumer group, a topic with 4 partitions, 200 taxis
//! reporting with duplicates, late, backwards-in-time and stale reports mixed in. The
//! waiting-queue tenant runs in the same processes, idle: the taxi map must not care.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Instance, Redis, SseClient, SseFrame, Tansu};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

const TAXIS: usize = 200;
const ROUNDS: usize = 60;
const ROUND_MS: i64 = 100;
/// The staleness bound in `common::TAXI_TENANT`.
const MAX_AGE_MS: i64 = 30_000;

fn config(tansu: &Tansu, redis: &Redis, group: &str) -> String {
    let services = common::services_config(tansu, redis, group);
    format!("{services}{}{}", common::TAXI_TENANT, common::QUEUE_TENANT)
}

/// A taxi report as produced.
#[derive(Clone, Debug, PartialEq)]
struct Report {
    taxi: String,
    lat: f64,
    lng: f64,
    timestamp: i64,
}

impl Report {
    fn json(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "mediaId": self.taxi, "lat": self.lat, "lng": self.lng, "timestamp": self.timestamp
        }))
        .unwrap()
    }
}

/// Deterministic traffic: one report per taxi per round, plus faults. Returns the
/// rounds (what to send, in order) and each taxi's newest non-stale report.
fn traffic(start_ms: i64) -> (Vec<Vec<Report>>, BTreeMap<String, Report>) {
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut roll = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % 100
    };
    let mut rounds: Vec<Vec<Report>> = vec![Vec::new(); ROUNDS + 1];
    let mut newest = BTreeMap::new();
    for r in 0..ROUNDS {
        for i in 0..TAXIS {
            let taxi = format!("taxi-{i:04}");
            // Six decimals, as GPS units send: the JSON text stays short and exact.
            let micro = |deg: f64| (deg * 1e6).round() / 1e6;
            let report = Report {
                taxi: taxi.clone(),
                lat: micro(37.45 + (i as f64) * 0.001 + (r as f64) * 0.0001),
                lng: micro(126.85 + (i as f64) * 0.0015 + (r as f64) * 0.0001),
                timestamp: start_ms + r as i64 * ROUND_MS + (i as i64 % 50),
            };
            newest.insert(taxi.clone(), report.clone());
            match roll() {
                // Duplicate: the same report twice.
                0..4 => {
                    rounds[r].push(report.clone());
                    rounds[r].push(report);
                }
                // Late: arrives after the next round's newer report.
                4..8 => rounds[r + 1].push(report),
                // Backwards: a newer report, then an older one from a lagging path.
                8..11 => {
                    let mut old = report.clone();
                    old.timestamp -= 5_000;
                    old.lat = micro(old.lat - 0.01);
                    rounds[r].push(report);
                    rounds[r].push(old);
                }
                // Stale: a report from 40 s ago, older than the 30 s bound.
                11..13 => {
                    let mut stale = report.clone();
                    stale.timestamp = start_ms - 40_000;
                    rounds[r].push(report);
                    rounds[r].push(stale);
                }
                _ => rounds[r].push(report),
            }
        }
    }
    (rounds, newest)
}

fn producer(tansu: &Tansu) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", tansu.brokers())
        .set("linger.ms", "5")
        .create()
        .expect("kafka producer")
}

async fn send_round(producer: &FutureProducer, reports: &[Report]) {
    let messages = reports.iter().map(|r| (r.taxi.clone(), r.json()));
    send_raw(producer, messages).await;
}

/// Messages a gateway must survive: each is dropped and counted, nothing else changes.
fn bad_messages() -> Vec<(String, Vec<u8>)> {
    let oversized = format!(r#"{{"mediaId":"taxi-0001","timestamp":1,"pad":"{}"}}"#, "x".repeat(70_000));
    vec![
        ("taxi-0001".into(), b"{not json".to_vec()),
        ("taxi-0002".into(), br#"{"lat":37.5,"lng":127.0,"timestamp":1}"#.to_vec()),
        ("taxi-0003".into(), br#"{"mediaId":"taxi-0003","lat":37.5}"#.to_vec()),
        ("taxi-0004".into(), oversized.into_bytes()),
    ]
}

async fn send_raw(producer: &FutureProducer, messages: impl Iterator<Item = (String, Vec<u8>)>) {
    let sends = messages.map(|(key, payload)| {
        let producer = producer.clone();
        async move {
            producer
                .send(FutureRecord::to("taxi").key(&key).payload(&payload), Duration::from_secs(10))
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        }
    });
    for result in futures::future::join_all(sends).await {
        result.expect("kafka delivery");
    }
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// The last position each taxi was sent in.
fn last_positions(frames: &[SseFrame]) -> BTreeMap<String, (f64, f64, i64)> {
    let mut last = BTreeMap::new();
    for f in frames {
        for p in f.payloads() {
            last.insert(
                p["mediaId"].as_str().unwrap().to_string(),
                (p["lat"].as_f64().unwrap(), p["lng"].as_f64().unwrap(), p["timestamp"].as_i64().unwrap()),
            );
        }
    }
    last
}

/// Whether a received position is exactly this report (coordinates to the micro-degree).
fn is_report(got: Option<&(f64, f64, i64)>, r: &Report) -> bool {
    got.is_some_and(|&(lat, lng, t)| {
        t == r.timestamp && (lat - r.lat).abs() < 1e-9 && (lng - r.lng).abs() < 1e-9
    })
}

/// `Ok` once every taxi's last position is its newest report; else what differs.
fn reached_newest(frames: &[SseFrame], newest: &BTreeMap<String, Report>) -> Result<(), String> {
    let last = last_positions(frames);
    let behind: Vec<String> = newest
        .iter()
        .filter(|(taxi, r)| !is_report(last.get(*taxi), r))
        .map(|(taxi, r)| format!("{taxi}: got {:?}, want {}", last.get(taxi), r.timestamp))
        .collect();
    if behind.is_empty() {
        Ok(())
    } else {
        Err(format!("{} taxis behind, e.g. {:?}", behind.len(), &behind[..behind.len().min(3)]))
    }
}

/// The taxi map's promises, checked on one client's whole stream.
fn assert_taxi_stream(frames: &[SseFrame], newest: &BTreeMap<String, Report>) {
    assert!(!frames.is_empty(), "no frames received");
    let mut last_time: BTreeMap<String, i64> = BTreeMap::new();
    // A taxi silent for 30 s of log time is removed (`liveMapLocation-expired`): not a
    // position, and not what this test is about (tests/expiry.rs is).
    assert!(frames.iter().all(|f| f.event == "liveMapLocation" || f.event == "liveMapLocation-expired"));
    for f in frames.iter().filter(|f| f.event == "liveMapLocation") {
        let payloads = f.payloads();
        assert!(!payloads.is_empty(), "empty frame {}", f.id);
        let times: Vec<i64> = payloads.iter().map(|p| p["timestamp"].as_i64().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "frame {} not sorted by timestamp: {times:?}", f.id);
        for p in &payloads {
            let taxi = p["mediaId"].as_str().unwrap().to_string();
            let t = p["timestamp"].as_i64().unwrap();
            assert!(
                t >= f.log_time() - MAX_AGE_MS,
                "frame {} sent {taxi} at {t}, older than 30 s of log time",
                f.id
            );
            if let Some(prev) = last_time.insert(taxi.clone(), t) {
                assert!(t > prev, "{taxi} went from {prev} to {t} (frame {})", f.id);
            }
        }
    }
    let last = last_positions(frames);
    for (taxi, r) in newest {
        assert!(
            is_report(last.get(taxi), r),
            "{taxi} ends at {:?}, not its newest report {r:?}",
            last.get(taxi)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_emit_identical_streams() {
    let (tansu, redis) = (Tansu::start(), Redis::start());
    tansu.create_topic("taxi", 4);
    tansu.create_topic("queue", 4);
    let config = config(&tansu, &redis, "identical");
    let a = Instance::start(&config);
    let b = Instance::start(&config);
    let client_a = SseClient::connect(&a.url("/tenants/taxi/events")).await;
    let client_b = SseClient::connect(&b.url("/tenants/taxi/events")).await;
    let two_taxis = SseClient::connect(&b.url("/tenants/taxi/events?key=taxi-0007&key=taxi-0150")).await;

    let (rounds, newest) = traffic(wall_ms());
    let total: usize = rounds.iter().map(Vec::len).sum();
    assert!(total >= 10_000, "the test must send at least 10,000 events, not {total}");
    let producer = producer(&tansu);
    let mut pace = tokio::time::interval(Duration::from_millis(ROUND_MS as u64));
    for (n, round) in rounds.iter().enumerate() {
        pace.tick().await;
        send_round(&producer, round).await;
        if n == 1 {
            send_raw(&producer, bad_messages().into_iter()).await;
        }
    }

    let limit = Duration::from_secs(60);
    client_a.wait_until("every taxi's newest position on A", limit, |f| reached_newest(f, &newest)).await;
    client_b.wait_until("every taxi's newest position on B", limit, |f| reached_newest(f, &newest)).await;
    let last_a = client_a.frames().last().unwrap().position();
    client_b
        .wait_until("B to reach A's last frame", limit, |f| match f.last() {
            Some(l) if l.position() >= last_a => Ok(()),
            other => Err(format!("B is at {:?}", other.map(|l| &l.id))),
        })
        .await;

    let (frames_a, frames_b) = (client_a.frames(), client_b.frames());
    assert_taxi_stream(&frames_a, &newest);
    assert_eq!(frames_a.len(), frames_b.len(), "both clients get the same number of frames");
    for (fa, fb) in frames_a.iter().zip(&frames_b) {
        assert_eq!(fa, fb, "the two instances' streams differ");
    }
    // A client for two keys gets exactly those taxis' events, in frames of the same ids.
    let wanted: BTreeMap<String, Report> = newest
        .iter()
        .filter(|(k, _)| *k == "taxi-0007" || *k == "taxi-0150")
        .map(|(k, r)| (k.clone(), r.clone()))
        .collect();
    two_taxis.wait_until("the two taxis' newest positions", limit, |f| reached_newest(f, &wanted)).await;
    let keyed = two_taxis.frames();
    assert_taxi_stream(&keyed, &wanted);
    let ids_b: std::collections::BTreeSet<&str> = frames_b.iter().map(|f| f.id.as_str()).collect();
    for f in &keyed {
        assert!(ids_b.contains(f.id.as_str()), "keyed frame {} is not a frame of B", f.id);
        assert!(
            last_positions(std::slice::from_ref(f)).keys().all(|k| wanted.contains_key(k)),
            "frame {} has other taxis",
            f.id
        );
    }
    // A map viewer arriving now sees every taxi at once, in its first frame.
    let late = SseClient::connect(&a.url("/tenants/taxi/events")).await;
    late.wait_until(
        "the snapshot frame",
        limit,
        |f| if f.is_empty() { Err("none yet".into()) } else { Ok(()) },
    )
    .await;
    reached_newest(&late.frames()[..1], &newest).expect("the first frame holds every taxi's newest position");

    // The faults were really there, and the policies really removed them.
    for (plugin, outcome) in [("staleness", "stale"), ("dedupe", "duplicate"), ("dedupe", "out_of_date")] {
        let series = format!(
            "streamgate_policy_outcomes_total{{tenant=\"taxi\",plugin=\"{plugin}@0.1.0\",outcome=\"{outcome}\"}}"
        );
        assert!(a.metric(&series) > 0.0, "{plugin} dropped nothing as {outcome} on A");
    }
    let both = |series: &str| a.metric(series) + b.metric(series);
    let consumed = both("streamgate_source_messages_total{tenant=\"taxi\"}");
    assert!(consumed >= (total + 4) as f64, "the group consumed {consumed} of {} messages", total + 4);
    for reason in ["not_json", "bad_key", "bad_time", "too_large"] {
        let dropped =
            both(&format!("streamgate_source_dropped_total{{tenant=\"taxi\",reason=\"{reason}\"}}"));
        assert!(dropped >= 1.0, "the {reason} message was not counted as dropped");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivor_ends_with_every_newest_position_after_a_crash() {
    let (tansu, redis) = (Tansu::start(), Redis::start());
    tansu.create_topic("taxi", 4);
    tansu.create_topic("queue", 4);
    let config = config(&tansu, &redis, "crash");
    let mut doomed = Instance::start(&config);
    let survivor = Instance::start(&config);
    let client = SseClient::connect(&survivor.url("/tenants/taxi/events")).await;

    let (rounds, newest) = traffic(wall_ms());
    let producer = producer(&tansu);
    let mut pace = tokio::time::interval(Duration::from_millis(ROUND_MS as u64));
    for (n, round) in rounds.iter().enumerate() {
        pace.tick().await;
        if n == ROUNDS / 3 {
            doomed.kill();
        }
        send_round(&producer, round).await;
    }

    client
        .wait_until("every taxi's newest position after the rebalance", Duration::from_secs(90), |f| {
            reached_newest(f, &newest)
        })
        .await;
    assert_taxi_stream(&client.frames(), &newest);
    assert!(
        survivor.metric("streamgate_source_messages_total{tenant=\"taxi\"}") > 0.0,
        "the survivor consumed nothing itself"
    );
}
