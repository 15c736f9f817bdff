//! `/readyz` follows what the instance can reach now, with the reason in the body: a
//! real redis-server stopped and started again (meanwhile the partition whose records
//! cannot be published shows as stalled), then the Kafka broker stopped.

mod common;

use std::time::{Duration, Instant};

use common::{Instance, Redis, TAXI_TENANT, Tansu, http_answer, services_config};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// Polls `/readyz` every 100 ms until its status and body satisfy `done`; the body then.
fn wait_readyz(instance: &Instance, within: Duration, why: &str, done: impl Fn(u16, &str) -> bool) -> String {
    let start = Instant::now();
    let mut last = None;
    loop {
        let answer = http_answer(&instance.url("/readyz"));
        if let Some((status, body)) = &answer
            && done(*status, body)
        {
            return body.clone();
        }
        last = answer.or(last);
        assert!(
            start.elapsed() < within,
            "/readyz did not show {why} within {within:?}; last answer: {last:?}\nlog:\n{}",
            instance.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn produce(tansu: &Tansu, n: usize) {
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", tansu.brokers()).create().expect("kafka producer");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    for i in 0..n {
        let payload = format!(r#"{{"mediaId":"taxi-{i}","lat":37.5,"lng":127.0,"timestamp":{now}}}"#);
        producer.send(BaseRecord::<(), _>::to("taxi").partition(0).payload(&payload)).expect("queued");
    }
    producer.flush(Duration::from_secs(10)).expect("kafka delivery");
}

#[test]
fn readyz_follows_redis_down_and_back_then_kafka_down() {
    let (mut tansu, mut redis) = (Tansu::start(), Redis::start());
    tansu.create_topic("taxi", 1);
    let services =
        services_config(&tansu, &redis, "ready").replace("[kafka]\n", "[kafka]\nstalled_after_ms = 2000\n");
    let instance = Instance::start(&format!("{services}{TAXI_TENANT}"));
    let stalled = || instance.metric("streamgate_source_partitions_stalled{tenant=\"taxi\"}");
    wait_readyz(&instance, Duration::from_secs(5), "ready", |s, body| s == 200 && body == "ready\n");

    redis.stop();
    let body = wait_readyz(&instance, Duration::from_secs(20), "Redis down", |s, _| s == 503);
    assert!(body.starts_with("not ready\n"), "{body}");
    assert!(body.contains("taxi: log: redis stream:"), "the reason names the log and Redis: {body}");

    // Records the instance reads but cannot publish: their offsets are not committed.
    produce(&tansu, 5);
    let body = wait_readyz(&instance, Duration::from_secs(20), "a stalled partition", |_, body| {
        body.contains("stalled partition 0 of topic taxi")
    });
    assert!(body.contains("assigned to this instance"), "{body}");
    assert_eq!(stalled(), 1.0, "the gauge counts the stalled partition");

    redis.start_again();
    // The new Redis is empty: the entries read before are gone, which is reported, but
    // the instance is ready.
    let body = wait_readyz(&instance, Duration::from_secs(30), "Redis back, nothing stalled", |s, body| {
        s == 200 && !body.contains("stalled partition")
    });
    assert!(body.starts_with("ready\ntaxi: log lost entries already delivered (count 1; last: "), "{body}");
    assert_eq!(instance.metric("streamgate_log_gaps_total{tenant=\"taxi\"}"), 1.0, "the loss is counted");
    assert_eq!(stalled(), 0.0);

    tansu.stop();
    let body = wait_readyz(&instance, Duration::from_secs(30), "Kafka down", |s, _| s == 503);
    assert!(body.contains("taxi: source: kafka unreachable"), "the reason names the source: {body}");
    assert!(!body.contains("taxi: log:"), "the log is still fine: {body}");
}

#[test]
fn a_partition_held_by_a_member_that_does_not_consume_is_reported_stalled() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let (tansu, redis) = (Tansu::start(), Redis::start());
    tansu.create_topic("taxi", 2);
    let services =
        services_config(&tansu, &redis, "idle").replace("[kafka]\n", "[kafka]\nstalled_after_ms = 3000\n");
    let instance = Instance::start(&format!("{services}{TAXI_TENANT}"));
    // A second member of the tenant's group that takes partitions and never reads them.
    let idle: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", tansu.brokers())
        .set("group.id", "idle.taxi")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("kafka consumer");
    idle.subscribe(&["taxi"]).unwrap();
    let start = Instant::now();
    while idle.assignment().unwrap().count() == 0 {
        assert!(start.elapsed() < Duration::from_secs(60), "the idle member got no partition in 60 s");
        let _ = idle.poll(Duration::from_millis(100));
    }
    let held = idle.assignment().unwrap().elements()[0].partition();
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", tansu.brokers()).create().expect("kafka producer");
    for p in 0..2 {
        for i in 0..5 {
            let payload = format!(r#"{{"mediaId":"taxi-{i}","timestamp":1}}"#);
            producer.send(BaseRecord::<(), _>::to("taxi").partition(p).payload(&payload)).expect("queued");
        }
    }
    producer.flush(Duration::from_secs(10)).expect("kafka delivery");

    let line = format!("stalled partition {held} of topic taxi");
    let body =
        wait_readyz(&instance, Duration::from_secs(30), "the idle member's partition stalled", |s, body| {
            s == 200 && body.contains(&line)
        });
    assert!(body.contains("not assigned to this instance"), "{body}");
    assert!(body.starts_with("ready\n"), "a stalled partition is reported, the instance stays ready: {body}");
    assert!(instance.metric("streamgate_source_partitions_stalled{tenant=\"taxi\"}") >= 1.0);
    drop(idle);
}
