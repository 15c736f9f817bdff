//! Where events missing from the log are in Kafka: every partition of a topic read from
//! its start by a fresh consumer (outside any group), so a loss can be told apart as the
//! broker's (never stored, or stored at offsets nobody is served) or the gateway's
//! (stored and served, but never published).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// Reads partitions `0..partitions` of `topic` to their high watermarks and describes
/// where the events numbered `missing` (their `i` field) are: partition and offset, and
/// each partition's offsets without a record. Blocking.
pub fn locate(brokers: &str, topic: &str, partitions: i32, missing: &[u64]) -> String {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "census")
        .set("enable.auto.commit", "false")
        .create()
        .expect("kafka consumer");
    let mut tpl = TopicPartitionList::new();
    let mut high = BTreeMap::new();
    for p in 0..partitions {
        let (_, h) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("watermarks");
        high.insert(p, h);
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).expect("assigning every partition");
    let wanted: std::collections::BTreeSet<u64> = missing.iter().copied().collect();
    let mut found: Vec<(u64, i32, i64)> = Vec::new();
    let mut next: BTreeMap<i32, i64> = (0..partitions).map(|p| (p, 0)).collect();
    let mut holes: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while next.iter().any(|(p, &n)| n < high[p]) && Instant::now() < deadline {
        let Some(Ok(msg)) = consumer.poll(Duration::from_secs(1)) else { continue };
        let (p, o) = (msg.partition(), msg.offset());
        if o != next[&p] {
            holes.push(format!("partition {p}: offsets {}..{} absent", next[&p], o));
        }
        next.insert(p, o + 1);
        let i = msg
            .payload()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
            .and_then(|v| v["i"].as_u64());
        if let Some(i) = i.filter(|i| wanted.contains(i)) {
            found.push((i, p, o));
        }
    }
    let mut by_partition: BTreeMap<i32, (i64, i64, usize)> = BTreeMap::new();
    for &(_, p, o) in &found {
        let e = by_partition.entry(p).or_insert((i64::MAX, i64::MIN, 0));
        *e = (e.0.min(o), e.1.max(o), e.2 + 1);
    }
    let ranges: Vec<String> =
        by_partition.iter().map(|(p, (lo, hi, n))| format!("partition {p}: {n} at offsets {lo}..={hi}")).collect();
    format!(
        "Kafka census of {topic} (high watermarks {high:?}, read up to {next:?}): {} of the {} missing events are \
         stored in Kafka ({}); offsets without a record: {:?}",
        found.len(),
        missing.len(),
        ranges.join("; "),
        holes
    )
}
