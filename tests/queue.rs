//! The waiting queue end to end, against real tansu (Kafka) and real redis-server: two
//! instances, 1,000 users each subscribed to their own key on either instance. Every
//! user gets exactly their own events, every admission, ranks coalesced and in order,
//! and no duplicate that was injected into Kafka.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{Instance, Redis, SseClient, SseFrame, Tansu};
use futures::future::join_all;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

const USERS: usize = 1_000;
/// Rank updates per user before admission: ranks RANKS, RANKS-1, ..., 1.
const RANKS: usize = 5;

/// Both tenants in one process: the queue under test, the taxi map beside it.
fn config(tansu: &Tansu, redis: &Redis) -> String {
    let services = common::services_config(tansu, redis, "queue-test");
    format!("{services}{}{}", common::TAXI_TENANT, common::QUEUE_TENANT)
}

fn user(i: usize) -> String {
    format!("u-{i:04}")
}

/// Round `n` of the queue: every user's n-th event (ranks first, then admission).
fn event(i: usize, n: usize, start_ms: i64) -> (String, Vec<u8>) {
    let (kind, rank) = if n < RANKS { ("rank", (RANKS - n) as i64) } else { ("admitted", 0) };
    let payload = serde_json::json!({
        "eventId": format!("e-{i}-{n}"),
        "queueType": "concert",
        "userId": user(i),
        "kind": kind,
        "rank": rank,
        "timestamp": start_ms + n as i64 * 100,
    });
    (user(i), serde_json::to_vec(&payload).unwrap())
}

async fn send(producer: &FutureProducer, messages: &[(String, Vec<u8>)]) {
    let sends = messages.iter().map(|(key, payload)| {
        producer.send(FutureRecord::to("queue").key(key).payload(payload), Duration::from_secs(10))
    });
    for r in join_all(sends).await {
        r.map_err(|(e, _)| e).expect("kafka delivery");
    }
}

/// The payloads of a user's stream, frame by frame.
fn events_of(frames: &[SseFrame]) -> Vec<Vec<serde_json::Value>> {
    frames.iter().map(|f| f.payloads()).collect()
}

fn admitted(frames: &[SseFrame]) -> Result<(), String> {
    let n = events_of(frames).iter().flatten().filter(|e| e["kind"] == "admitted").count();
    if n > 0 { Ok(()) } else { Err("not admitted yet".into()) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_user_gets_exactly_their_own_events_once() {
    let (tansu, redis) = (Tansu::start(), Redis::start());
    tansu.create_topic("queue", 4);
    tansu.create_topic("taxi", 4);
    let config = config(&tansu, &redis);
    let instances = [Instance::start(&config), Instance::start(&config)];

    // Each user on one of the two instances, by key; connect in chunks.
    let mut clients = Vec::with_capacity(USERS);
    for chunk in (0..USERS).collect::<Vec<_>>().chunks(100) {
        let connects = chunk.iter().map(|&i| {
            let url = instances[i % 2].url(&format!("/tenants/queue/events?key={}", user(i)));
            async move { SseClient::connect(&url).await }
        });
        clients.extend(join_all(connects).await);
    }

    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", tansu.brokers()).set("linger.ms", "5").create().unwrap();
    let start =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let mut duplicates = 0;
    let mut pace = tokio::time::interval(Duration::from_millis(200));
    for n in 0..=RANKS {
        pace.tick().await;
        let mut round: Vec<_> = (0..USERS).map(|i| event(i, n, start)).collect();
        // Redeliver one user in ten's previous event, as a producer retry would.
        if n > 0 {
            let again: Vec<_> =
                (0..USERS).filter(|i| (i + n) % 10 == 0).map(|i| event(i, n - 1, start)).collect();
            duplicates += again.len();
            round.extend(again);
        }
        send(&producer, &round).await;
    }

    for (i, client) in clients.iter().enumerate() {
        client.wait_until(&format!("{}'s admission", user(i)), Duration::from_secs(60), admitted).await;
    }
    for (i, client) in clients.iter().enumerate() {
        let me = user(i);
        let frames = events_of(&client.frames());
        let mut ids = BTreeSet::new();
        let mut ranks = Vec::new();
        for frame in &frames {
            let ranks_here = frame.iter().filter(|e| e["kind"] == "rank").count();
            assert!(ranks_here <= 1, "{me}: {ranks_here} rank updates in one frame (not coalesced)");
            for e in frame {
                assert_eq!(e["userId"], me.as_str(), "{me} received someone else's event: {e}");
                let id = e["eventId"].as_str().unwrap().to_string();
                assert!(ids.insert(id.clone()), "{me} received {id} twice");
                if e["kind"] == "rank" {
                    ranks.push(e["rank"].as_i64().unwrap());
                }
            }
        }
        let last = frames.iter().flatten().last().unwrap();
        assert_eq!(last["kind"], "admitted", "{me}: the admission is the last event, never behind a rank");
        assert!(ranks.windows(2).all(|w| w[0] > w[1]), "{me}: ranks out of order: {ranks:?}");
    }
    let dropped: f64 = instances
        .iter()
        .map(|x| {
            x.metric("streamgate_policy_outcomes_total{tenant=\"queue\",plugin=\"dedupe@0.1.0\",outcome=\"duplicate\"}")
        })
        .sum::<f64>()
        / 2.0; // both instances read the whole log, and decide identically
    assert!(dropped >= duplicates as f64, "dedupe dropped {dropped} of {duplicates} injected duplicates");
    let by_instance: BTreeMap<u16, f64> =
        instances.iter().map(|x| (x.port, x.metric("streamgate_sse_clients{tenant=\"queue\"}"))).collect();
    assert!(by_instance.values().all(|&n| n == (USERS / 2) as f64), "clients per instance: {by_instance:?}");
}
