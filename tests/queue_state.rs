//! The waiting queue's current state on (re)connect, against real tansu (Kafka) and real
//! redis-server with two instances: a user who connects after their rank changed, or
//! after their admission, gets their own current state first (the newest `rank`, then
//! `admitted`), the same frame on either instance, then the live updates; a reconnect
//! with `lastEventId` resumes with what it missed. No user ever sees another's event.

mod common;

use std::time::Duration;

use common::{Instance, Redis, SseClient, SseFrame, Tansu};
use futures::future::join_all;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

const USERS: usize = 20;
const WAIT: Duration = Duration::from_secs(60);

/// The queue tenant keeping each user's newest rank and admission, first frame on connect.
fn config(tansu: &Tansu, redis: &Redis) -> String {
    let services = common::services_config(tansu, redis, "queue-state-test");
    let queue = common::QUEUE_TENANT.replace(
        "event = \"queueUpdate\"\n",
        "event = \"queueUpdate\"\nlatest_value = true\nlatest_tags = [\"rank\", \"admitted\"]\n\
         snapshot_on_connect = true\n",
    );
    assert_ne!(queue, common::QUEUE_TENANT, "the fragment still names its event");
    format!("{services}{queue}")
}

fn user(i: usize) -> String {
    format!("u-{i:04}")
}

/// One queue event of user `i`; `step` makes event ids and times unique and increasing.
fn event(i: usize, step: i64, kind: &str, rank: i64) -> (String, Vec<u8>) {
    let payload = json!({
        "eventId": format!("e-{i}-{step}"),
        "queueType": "concert",
        "userId": user(i),
        "kind": kind,
        "rank": rank,
        "timestamp": 1_763_900_000_000 + step * 1_000,
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

/// Connects user `i` to `instance` (resuming after `last_event_id`, if given).
async fn connect(instance: &Instance, i: usize, last_event_id: Option<&str>) -> SseClient {
    let resume = last_event_id.map(|id| format!("&lastEventId={id}")).unwrap_or_default();
    SseClient::connect(&instance.url(&format!("/tenants/queue/events?key={}{resume}", user(i)))).await
}

/// The events of a stream, in order.
fn events(frames: &[SseFrame]) -> Vec<Value> {
    frames.iter().flat_map(|f| f.payloads()).collect()
}

/// `Ok` once the stream's last event is `kind` (with `rank`, for ranks).
fn ends_in(frames: &[SseFrame], kind: &str, rank: i64) -> Result<(), String> {
    match events(frames).last() {
        Some(e) if e["kind"] == kind && (kind != "rank" || e["rank"] == rank) => Ok(()),
        last => Err(format!("last event {last:?}, want {kind} {rank}")),
    }
}

/// Every event is user `i`'s, and ids strictly increase.
fn assert_own_and_ordered(frames: &[SseFrame], i: usize) {
    for e in events(frames) {
        assert_eq!(e["userId"], user(i).as_str(), "{} received someone else's event: {e}", user(i));
    }
    let ids: Vec<(u64, u64)> = frames.iter().map(SseFrame::position).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{}: ids not strictly increasing: {ids:?}", user(i));
}

/// Waits until each watcher of user `i` (one per instance, connected before) ends in `kind`.
async fn both_instances_applied(watchers: &[[SseClient; 2]], kind_of: impl Fn(usize) -> (&'static str, i64)) {
    for (i, pair) in watchers.iter().enumerate() {
        let (kind, rank) = kind_of(i);
        for w in pair {
            w.wait_until(&format!("{} {kind} {rank}", user(i)), WAIT, |f| ends_in(f, kind, rank)).await;
        }
    }
}

/// Connects every user to both instances anew and checks the first frame: the user's
/// current state, identical on both instances. Returns the clients.
async fn late_joiners(
    instances: &[Instance; 2],
    want: impl Fn(usize) -> Vec<(&'static str, i64)>,
) -> Vec<[SseClient; 2]> {
    let mut all = Vec::with_capacity(USERS);
    for i in 0..USERS {
        let pair = [connect(&instances[0], i, None).await, connect(&instances[1], i, None).await];
        for c in &pair {
            c.wait_until(&format!("{}'s state", user(i)), WAIT, |f| {
                if f.is_empty() { Err("no frame".into()) } else { Ok(()) }
            })
            .await;
        }
        let (a, b) = (pair[0].frames()[0].clone(), pair[1].frames()[0].clone());
        assert_eq!(a, b, "{}: the first frame differs between the instances", user(i));
        assert_eq!(a.event, "queueUpdate");
        let got: Vec<(String, i64)> = a
            .payloads()
            .iter()
            .map(|e| (e["kind"].as_str().unwrap().to_string(), e["rank"].as_i64().unwrap()))
            .collect();
        let want: Vec<(String, i64)> = want(i).into_iter().map(|(k, r)| (k.to_string(), r)).collect();
        assert_eq!(got, want, "{}: the first frame is not their current state", user(i));
        assert_own_and_ordered(&pair[0].frames(), i);
        all.push(pair);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_connecting_late_starts_with_their_current_state_on_either_instance() {
    let (tansu, redis) = (Tansu::start(), Redis::start());
    tansu.create_topic("queue", 4);
    let config = config(&tansu, &redis);
    let instances = [Instance::start(&config), Instance::start(&config)];
    let mut watchers = Vec::with_capacity(USERS);
    for i in 0..USERS {
        watchers.push([connect(&instances[0], i, None).await, connect(&instances[1], i, None).await]);
    }
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", tansu.brokers()).set("linger.ms", "5").create().unwrap();

    // Everyone's rank falls 3, then 2.
    send(&producer, &(0..USERS).map(|i| event(i, 1, "rank", 3)).collect::<Vec<_>>()).await;
    send(&producer, &(0..USERS).map(|i| event(i, 2, "rank", 2)).collect::<Vec<_>>()).await;
    both_instances_applied(&watchers, |_| ("rank", 2)).await;
    let first = late_joiners(&instances, |_| vec![("rank", 2)]).await;

    // Even users are admitted; odd ones move to rank 1.
    let step3: Vec<_> = (0..USERS)
        .map(|i| if i % 2 == 0 { event(i, 3, "admitted", 0) } else { event(i, 3, "rank", 1) })
        .collect();
    send(&producer, &step3).await;
    both_instances_applied(&watchers, |i| if i % 2 == 0 { ("admitted", 0) } else { ("rank", 1) }).await;
    let second = late_joiners(&instances, |i| {
        if i % 2 == 0 { vec![("rank", 2), ("admitted", 0)] } else { vec![("rank", 1)] }
    })
    .await;

    // A reconnect resuming from the first state's id gets what it missed, nothing older.
    for i in 0..USERS {
        let since = first[i][0].frames()[0].clone();
        let resumed = connect(&instances[(i + 1) % 2], i, Some(&since.id)).await;
        let (kind, rank) = if i % 2 == 0 { ("admitted", 0) } else { ("rank", 1) };
        resumed.wait_until(&format!("{} resumed", user(i)), WAIT, |f| ends_in(f, kind, rank)).await;
        let frames = resumed.frames();
        assert!(
            frames.iter().all(|f| f.position() > since.position()),
            "{}: replayed before its id",
            user(i)
        );
        assert_eq!(events(&frames).len(), 1, "{}: exactly the one missed event: {frames:?}", user(i));
        assert_own_and_ordered(&frames, i);
    }

    // Then live updates follow the state: odd users are admitted too.
    let step4: Vec<_> = (0..USERS).filter(|i| i % 2 == 1).map(|i| event(i, 4, "admitted", 0)).collect();
    send(&producer, &step4).await;
    for (i, pair) in second.iter().enumerate() {
        for c in pair {
            c.wait_until(&format!("{} admitted live", user(i)), WAIT, |f| ends_in(f, "admitted", 0)).await;
            assert_own_and_ordered(&c.frames(), i);
        }
        assert_eq!(pair[0].frames(), pair[1].frames(), "{}: the instances' streams differ", user(i));
        if i % 2 == 0 {
            assert_eq!(pair[0].frames().len(), 1, "{}: nothing after its admission", user(i));
        }
    }
    drop(first);
}
