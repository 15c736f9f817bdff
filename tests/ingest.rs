//! Ingest keeps what it must and refuses what would poison the log, against real tansu
//! and redis-server: a consumer resuming inside a broker record batch gets that batch's
//! records (the test broker is patched for it; streamgate counts any skip as a gap),
//! and far-future event times are refused and counted instead of freezing a key.

mod common;

use std::time::Duration;

use common::{Instance, Redis, SseClient, TAXI_TENANT, Tansu, services_config, wait_for};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

fn wall_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn taxi(id: &str, timestamp: i64) -> Vec<u8> {
    format!(r#"{{"mediaId":"{id}","lat":37.5,"lng":127.0,"timestamp":{timestamp}}}"#).into_bytes()
}

/// Sends `payloads` to partition 0 of `topic` at once, so the producer puts them in one
/// record batch (it lingers 500 ms to collect them).
async fn send_batch(tansu: &Tansu, topic: &str, payloads: Vec<Vec<u8>>) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", tansu.brokers())
        .set("linger.ms", "500")
        .create()
        .expect("kafka producer");
    let sends = payloads.iter().map(|p| {
        producer.send(FutureRecord::<(), _>::to(topic).partition(0).payload(p), Duration::from_secs(10))
    });
    for result in futures::future::join_all(sends).await {
        result.map_err(|(e, _)| e).expect("kafka delivery");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_inside_a_record_batch_gets_the_rest_of_that_batch() {
    let (tansu, redis) = (Tansu::start(), Redis::start());
    tansu.create_topic("taxi", 1);
    let now = wall_ms();
    // Offsets 0..20 in one batch, 20..25 in the next.
    send_batch(&tansu, "taxi", (0..20).map(|i| taxi(&format!("taxi-{i:02}"), now)).collect()).await;
    send_batch(&tansu, "taxi", (20..25).map(|i| taxi(&format!("taxi-{i:02}"), now)).collect()).await;
    // The group has consumed up to offset 7: inside the first batch.
    let group = "resume";
    let committer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", tansu.brokers())
        .set("group.id", format!("{group}.taxi"))
        .create()
        .expect("kafka consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("taxi", 0, Offset::Offset(7)).unwrap();
    committer.commit(&tpl, CommitMode::Sync).expect("committing offset 7");
    drop(committer);

    let instance = Instance::start(&format!("{}{TAXI_TENANT}", services_config(&tansu, &redis, group)));
    let consumed = || instance.metric("streamgate_source_messages_total{tenant=\"taxi\"}");
    let gaps = || instance.metric("streamgate_source_offset_gaps_total{tenant=\"taxi\"}");
    wait_for("the 18 records from offset 7 on to be consumed", Duration::from_secs(30), || {
        consumed() >= 18.0 || gaps() > 0.0
    });
    assert_eq!(
        gaps(),
        0.0,
        "the broker skipped records after offset 7 (consumed {}); is tansu the patched build \
         (scripts/setup.sh, STREAMGATE_TANSU)?",
        consumed()
    );
    assert_eq!(consumed(), 18.0, "offsets 7..25, each once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_future_event_times_are_refused_and_do_not_freeze_the_key() {
    let (tansu, redis) = (Tansu::start(), Redis::start());
    tansu.create_topic("taxi", 1);
    let instance = Instance::start(&format!("{}{TAXI_TENANT}", services_config(&tansu, &redis, "future")));
    let client = SseClient::connect(&instance.url("/tenants/taxi/events")).await;
    let now = wall_ms();
    // i64::MAX, then microseconds instead of milliseconds, then an honest report.
    send_batch(&tansu, "taxi", vec![taxi("taxi-01", i64::MAX), taxi("taxi-01", now * 1_000)]).await;
    send_batch(&tansu, "taxi", vec![taxi("taxi-01", now), taxi("taxi-02", now)]).await;
    client
        .wait_until("taxi-01's honest report", Duration::from_secs(30), |frames| {
            let seen = frames.iter().flat_map(|f| f.payloads());
            let mut seen = seen.filter(|p| p["mediaId"] == "taxi-01").map(|p| p["timestamp"].clone());
            if seen.any(|t| t == now) { Ok(()) } else { Err("no taxi-01 report stamped now yet".into()) }
        })
        .await;
    let refused = instance.metric("streamgate_source_dropped_total{tenant=\"taxi\",reason=\"future_time\"}");
    assert_eq!(refused, 2.0, "both far-future reports are counted as refused");
    let future: Vec<_> = client
        .frames()
        .iter()
        .flat_map(|f| f.payloads())
        .filter(|p| p["timestamp"].as_i64().is_none_or(|t| t > now + 60_000))
        .collect();
    assert!(future.is_empty(), "far-future reports reached subscribers: {future:?}");
}
