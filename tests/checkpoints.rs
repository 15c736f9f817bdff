//! Fast start from checkpoints, against real tansu (Kafka) and redis-server: two
//! instances take checkpoints of the taxi and queue tenants every second of log time
//! (one writes, the other verifies) while simulated taxis and queue users report,
//! duplicates included, and the taxi chain is swapped. A third instance started late
//! begins from the newest verified checkpoint, and its streams are those of an
//! instance that replayed the whole log: every frame and id from its first live frame
//! on, and the same first frame for a client connecting afterwards. A fourth, started
//! after every stored checkpoint was damaged or marked mismatched, refuses them all,
//! replays the log, and serves the same streams too. One started with the queue's
//! configured chain edited refuses the queue's checkpoints (they ran the old config).

mod common;

use std::time::{Duration, Instant};

use common::{Instance, Redis, SseClient, SseFrame, Tansu};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use streamgate::bus::LogPosition;
use streamgate::checkpoint::{CheckpointStore, Offer, Retention, codec};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "test-admin-token-0123456789";
const WAIT: Duration = Duration::from_secs(90);
const USERS: usize = 40;

fn config(tansu: &Tansu, redis: &Redis) -> String {
    let services = common::services_config(tansu, redis, "checkpoints");
    let queue = common::QUEUE_TENANT.replace(
        "event = \"queueUpdate\"\n",
        "event = \"queueUpdate\"\nlatest_value = true\nlatest_tags = [\"rank\", \"admitted\"]\n\
         snapshot_on_connect = true\n",
    );
    format!(
        "{services}\n[admin]\ntoken = \"{TOKEN}\"\n\n[checkpoint]\nenabled = true\ninterval_ms = 1000\n\
         min_verifications = 1\n{}{queue}",
        common::TAXI_TENANT
    )
}

fn metric(i: &Instance, tenant: &str, reason: &str) -> f64 {
    i.metric(&format!("streamgate_checkpoints_total{{tenant=\"{tenant}\",reason=\"{reason}\"}}"))
}

async fn admin(i: &Instance, req: impl FnOnce(&reqwest::Client, String) -> reqwest::RequestBuilder) -> Value {
    let http = reqwest::Client::new();
    let resp = req(&http, i.url("")).bearer_auth(TOKEN).send().await.expect("admin API reachable");
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "admin: {status} {body}");
    body
}

async fn status(i: &Instance, tenant: &str) -> Value {
    admin(i, |h, base| h.get(format!("{base}/admin/tenants/{tenant}"))).await["active"].clone()
}

/// Queue users' events at `step`: ranks falling, every fifth user admitted at step 8,
/// and the events of step - 3 sent again (duplicates the dedupe stage must drop).
fn queue_events(step: i64) -> Vec<(String, Vec<u8>)> {
    let one = |i: usize, s: i64| {
        let kind = if i.is_multiple_of(5) && s >= 8 { "admitted" } else { "rank" };
        let payload = json!({
            "eventId": format!("e-{i}-{s}"), "queueType": "concert", "userId": format!("u-{i:03}"),
            "kind": kind, "rank": 1000 - s, "timestamp": 1_763_900_000_000 + s * 1_000,
        });
        (format!("u-{i:03}"), serde_json::to_vec(&payload).unwrap())
    };
    let mut out: Vec<_> = (0..USERS).map(|i| one(i, step)).collect();
    if step > 3 {
        out.extend((0..USERS).map(|i| one(i, step - 3)));
    }
    out
}

/// Taxis through the simulator and queue users every 250 ms, until `cancel`.
fn traffic(tansu: &Tansu, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
    let brokers = tansu.brokers();
    tokio::spawn(async move {
        let taxis = tokio::spawn({
            let (brokers, cancel) = (brokers.clone(), cancel.clone());
            async move {
                let every = Duration::from_millis(100);
                streamgate::source::simulate::run_into_kafka(
                    &brokers,
                    "taxi",
                    300,
                    every,
                    u64::MAX,
                    7,
                    cancel,
                )
                .await
            }
        });
        let producer: FutureProducer =
            ClientConfig::new().set("bootstrap.servers", &brokers).set("linger.ms", "5").create().unwrap();
        let mut step = 1;
        while !cancel.is_cancelled() {
            let events = queue_events(step);
            let sends = events.iter().map(|(key, payload)| {
                producer.send(FutureRecord::to("queue").key(key).payload(payload), Duration::from_secs(10))
            });
            for r in futures::future::join_all(sends).await {
                r.map_err(|(e, _)| e).expect("kafka delivery");
            }
            step += 1;
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
        taxis.await.unwrap().expect("taxi simulator");
    })
}

/// Waits until `what` (summed over instances) reaches `at_least`.
fn wait_metric(instances: &[&Instance], tenant: &str, reason: &str, at_least: f64) {
    common::wait_for(&format!("{tenant} checkpoints {reason} >= {at_least}"), WAIT, || {
        instances.iter().map(|i| metric(i, tenant, reason)).sum::<f64>() >= at_least
    });
}

/// Waits until every instance's worker has passed log time `ms` for `tenant`.
async fn wait_position(instances: &[&Instance], tenant: &str, ms: i64) {
    let start = Instant::now();
    for i in instances {
        loop {
            let p: LogPosition = status(i, tenant).await["position"].as_str().unwrap().parse().unwrap();
            if p.major as i64 >= ms {
                break;
            }
            assert!(start.elapsed() < WAIT, "{tenant}: an instance stays at {p}, short of {ms}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The live frames of `late` (after its first, the state on connect) are exactly the
/// frames of `reference` from the same id on.
fn assert_same_from_first(reference: &[SseFrame], late: &[SseFrame], what: &str) {
    let live = &late[1..];
    assert!(
        live.len() > 5,
        "{what}: the late stream got {} live frames; the reference {}; late: {late:?}",
        live.len(),
        reference.len()
    );
    let from = reference
        .iter()
        .position(|f| f.id == live[0].id)
        .unwrap_or_else(|| panic!("{what}: the reference never sent id {}", live[0].id));
    let theirs = &reference[from..];
    assert_eq!(theirs.len(), live.len(), "{what}: frame counts from id {} differ", live[0].id);
    for (a, b) in theirs.iter().zip(live) {
        assert_eq!(a, b, "{what}: the streams differ");
    }
}

/// Connects to every instance's stream of `tenant` (all keys).
async fn watch(instances: &[&Instance], tenant: &str) -> Vec<SseClient> {
    let mut clients = Vec::new();
    for i in instances {
        clients.push(SseClient::connect(&i.url(&format!("/tenants/{tenant}/events"))).await);
    }
    clients
}

/// With the log quiet, a client connecting to any instance gets the same first frame
/// (returned).
async fn same_state_on_connect(instances: &[&Instance], tenant: &str) -> SseFrame {
    let clients = watch(instances, tenant).await;
    let mut firsts = Vec::new();
    for c in &clients {
        c.wait_until(&format!("{tenant}: the state on connect"), WAIT, |f| {
            if f.is_empty() { Err("no frame yet".into()) } else { Ok(()) }
        })
        .await;
        firsts.push(c.frames()[0].clone());
    }
    assert!(firsts[0].payloads().len() >= 10, "{tenant}: a state of many keys: {:?}", firsts[0]);
    for f in &firsts[1..] {
        assert_eq!(f, &firsts[0], "{tenant}: the state on connect differs between instances");
    }
    firsts.swap_remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_instance_starts_from_a_verified_checkpoint_and_serves_the_same_streams() {
    let (tansu, redis) = (Tansu::start(), Redis::start());
    tansu.create_topic("taxi", 4);
    tansu.create_topic("queue", 4);
    let config = config(&tansu, &redis);
    let (a, b) = (Instance::start(&config), Instance::start(&config));
    let cancel = CancellationToken::new();
    let load = traffic(&tansu, cancel.clone());
    wait_metric(&[&a, &b], "taxi", "verified", 2.0);

    // Swap the taxi chain (a dedupe config change moves its state), then wait for
    // checkpoints of the new chain.
    let chain = json!({ "policies": [
        { "plugin": "builtin:ordering", "config": { "window_ms": 1000 } },
        { "plugin": "builtin:staleness", "config": { "max_age_ms": 30000 } },
        { "plugin": "builtin:dedupe", "config": { "newest_per_frame": true, "forget_after_ms": 500000 } },
    ]});
    admin(&a, |h, base| h.put(format!("{base}/admin/tenants/taxi/chain")).json(&chain)).await;
    for i in [&a, &b] {
        let start = Instant::now();
        while status(i, "taxi").await["version"] != 1 {
            assert!(start.elapsed() < WAIT, "never switched to version 1");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let verified = metric(&a, "taxi", "verified") + metric(&b, "taxi", "verified");
    wait_metric(&[&a, &b], "taxi", "verified", verified + 3.0);
    wait_metric(&[&a, &b], "queue", "verified", 3.0);
    assert_eq!(metric(&a, "taxi", "mismatch") + metric(&b, "taxi", "mismatch"), 0.0);

    // The late instance, while traffic goes on.
    let watched_a: Vec<_> =
        [watch(&[&a], "taxi").await, watch(&[&a], "queue").await].into_iter().flatten().collect();
    let started = Instant::now();
    let c = Instance::start(&config);
    let c_ready = started.elapsed();
    let watched_c: Vec<_> =
        [watch(&[&c], "taxi").await, watch(&[&c], "queue").await].into_iter().flatten().collect();
    for tenant in ["taxi", "queue"] {
        assert_eq!(
            metric(&c, tenant, "restored"),
            1.0,
            "{tenant}: started from a checkpoint:\n{}",
            c.log_text()
        );
    }
    let c_taxi = status(&c, "taxi").await;
    assert_eq!((c_taxi["version"].as_u64(), c_taxi["swaps"].as_u64()), (Some(1), Some(0)), "{c_taxi}");
    common::wait_for("the late instance to take part in checkpoints", WAIT, || {
        metric(&c, "taxi", "verified") + metric(&c, "taxi", "written") >= 2.0
    });
    for c in &watched_c {
        c.wait_until("live frames on the late instance", WAIT, |f| {
            if f.len() > 8 { Ok(()) } else { Err(format!("{} frames", f.len())) }
        })
        .await;
    }
    let stop_ms = streamgate::bus::wall_clock_ms();
    cancel.cancel();
    load.await.unwrap();
    // Heartbeats move log time on: 3 s after the last event, every window has flushed.
    wait_position(&[&a, &b, &c], "taxi", stop_ms + 3_000).await;
    wait_position(&[&a, &b, &c], "queue", stop_ms + 3_000).await;
    let mut states = Vec::new();
    for (i, tenant) in ["taxi", "queue"].iter().enumerate() {
        assert_same_from_first(&watched_a[i].frames(), &watched_c[i].frames(), tenant);
        states.push(same_state_on_connect(&[&a, &b, &c], tenant).await);
        assert_eq!(metric(&c, tenant, "mismatch"), 0.0, "{tenant}: the late instance's checkpoints agree");
    }
    eprintln!("late instance ready from a checkpoint in {c_ready:?}");

    // With every instance stopped (none writes new ones), damage the newest
    // checkpoint's bytes and mark the others mismatched: the next instance refuses them
    // all, replays the log, and ends in the same state.
    drop((watched_a, watched_c));
    for mut i in [a, b, c] {
        i.stop();
    }

    // An edited config: the queue's configured chain (version 0) now coalesces another
    // way. Its checkpoints ran the old policies: refused, so the edit takes effect as it
    // would without checkpoints. The taxi's chain was set through the admin API (version
    // 1), which no config edit changes: restored.
    let edited =
        config.replace("config = { tags = [\"rank\"] }", "config = { tags = [\"rank\", \"admitted\"] }");
    assert_ne!(edited, config, "the queue's coalesce config is in the test config");
    let mut e = Instance::start(&edited);
    assert_eq!(metric(&e, "taxi", "restored"), 1.0, "taxi: its admin-set chain resumes:\n{}", e.log_text());
    assert_eq!(metric(&e, "queue", "restored"), 0.0, "queue: no checkpoint of the old config is used");
    assert!(metric(&e, "queue", "rejected") >= 1.0);
    assert!(e.log_text().contains("the config's policies changed since"), "{}", e.log_text());
    e.stop();

    let mut conn =
        redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    for tenant in ["taxi", "queue"] {
        let members: Vec<String> = redis::cmd("ZREVRANGE")
            .arg(format!("streamgate:{tenant}:checkpoints"))
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(members.len() >= 2, "{tenant}: checkpoints kept: {members:?}");
        for (n, m) in members.iter().enumerate() {
            let key = format!("streamgate:{tenant}:checkpoint:{m}");
            let cmd = if n == 0 { ("blob", "damaged") } else { ("bad", "1") };
            let _: () =
                redis::cmd("HSET").arg(&key).arg(cmd.0).arg(cmd.1).query_async(&mut conn).await.unwrap();
        }
    }
    let d = Instance::start(&config);
    wait_position(&[&d], "taxi", stop_ms + 3_000).await;
    wait_position(&[&d], "queue", stop_ms + 3_000).await;
    for (tenant, state) in ["taxi", "queue"].into_iter().zip(states) {
        assert_eq!(metric(&d, tenant, "restored"), 0.0, "{tenant}: no checkpoint used");
        assert!(metric(&d, tenant, "rejected") >= 2.0, "{tenant}: each checkpoint refused");
        assert_eq!(same_state_on_connect(&[&d], tenant).await, state, "{tenant}: the replayed state");
    }
    let log = d.log_text();
    assert!(log.contains("its bytes do not match its digest"), "{log}");
    assert!(log.contains("not trusted"), "{log}");
    assert!(log.contains("replaying the whole retained log"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_is_written_once_and_a_different_state_there_is_a_mismatch() {
    let redis = Redis::start();
    let retention = Retention { ttl: Duration::from_secs(60), keep: 2, min_verifications: 1 };
    let store = CheckpointStore::new(&redis.url(), "sg", retention).unwrap();
    let at = |major| LogPosition { major, minor: 0 };
    let blob = b"SGCP-first".to_vec();
    let d = codec::digest(&blob);
    assert_eq!(store.offer("t", at(1), &d, &blob).await.unwrap(), Offer::Written);
    assert_eq!(store.offer("t", at(1), &d, &blob).await.unwrap(), Offer::Verified);
    assert_eq!(store.offer("t", at(1), &codec::digest(b"other"), b"other").await.unwrap(), Offer::Mismatch);
    let stored = store.newest_first("t").await.unwrap();
    assert_eq!((stored.len(), stored[0].ok, stored[0].bad), (1, 1, 1));
    assert_eq!(stored[0].blob, blob, "the first writer's bytes stay");
    // Only the newest `keep` stay.
    for major in 2..=4 {
        assert_eq!(store.offer("t", at(major), &d, &blob).await.unwrap(), Offer::Written);
    }
    let kept = || async {
        store.newest_first("t").await.unwrap().iter().map(|s| s.position.major).collect::<Vec<_>>()
    };
    assert_eq!(kept().await, [4, 3], "1 was mismatched, 2 never verified: neither is trusted");
    // The newest trusted one stays while only untrusted ones come after it (a lone
    // instance writing), and goes once a newer one is trusted.
    assert_eq!(store.offer("t", at(3), &d, &blob).await.unwrap(), Offer::Verified);
    for major in 5..=7 {
        assert_eq!(store.offer("t", at(major), &d, &blob).await.unwrap(), Offer::Written);
        assert_eq!(kept().await, [major, major - 1, 3], "the trusted 3 is kept");
    }
    assert_eq!(store.offer("t", at(7), &d, &blob).await.unwrap(), Offer::Verified);
    assert_eq!(store.offer("t", at(8), &d, &blob).await.unwrap(), Offer::Written);
    assert_eq!(kept().await, [8, 7], "a newer trusted one replaces it");
    let mut conn =
        redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let old: i64 = redis::cmd("EXISTS")
        .arg("sg:t:checkpoint:00000000000000000001-00000000000000000000")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(old, 0, "a checkpoint that left the index is deleted");
    let ttl: i64 = redis::cmd("PTTL").arg("sg:t:checkpoints").query_async(&mut conn).await.unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "the index expires with the log: {ttl}");
}
