//! Where events that never reached the Redis log are in Kafka, for a scenario's
//! diagnosis: the whole topic read with a group-less consumer, each wanted id found with
//! its partition and offset (or not at all: the broker lost an acknowledged record).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// One line per wanted id (at most `show`): `e-0000042 at partition 1 offset 977`, or
/// `not in the topic`. Reads for at most 20 s.
pub fn locate(brokers: &str, topic: &str, partitions: i32, wanted: &[String], show: usize) -> String {
    let wanted: Vec<&String> = wanted.iter().take(show).collect();
    let consumer: BaseConsumer = match ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "chaos-diagnosis")
        .set("enable.auto.commit", "false")
        .create()
    {
        Ok(c) => c,
        Err(e) => return format!("cannot read the topic: {e}"),
    };
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in 0..partitions {
        let _ = tpl.add_partition_offset(topic, p, Offset::Beginning);
        let high = consumer.fetch_watermarks(topic, p, Duration::from_secs(5)).map_or(0, |(_, h)| h);
        ends.insert(p, high);
    }
    if let Err(e) = consumer.assign(&tpl) {
        return format!("cannot read the topic: {e}");
    }
    let mut found: BTreeMap<&str, (i32, i64)> = BTreeMap::new();
    let mut reached: BTreeMap<i32, i64> = BTreeMap::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20)
        && ends.iter().any(|(p, &h)| reached.get(p).copied().unwrap_or(-1) + 1 < h)
    {
        let Some(Ok(msg)) = consumer.poll(Duration::from_millis(200)) else { continue };
        reached.insert(msg.partition(), msg.offset());
        let Some(payload) = msg.payload() else { continue };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) else { continue };
        if let Some(id) = v["id"].as_str()
            && let Some(w) = wanted.iter().find(|w| w.as_str() == id)
        {
            found.entry(w.as_str()).or_insert((msg.partition(), msg.offset()));
        }
    }
    let mut out = format!("the topic's high watermarks {ends:?}, read up to {reached:?}:\n");
    for id in wanted {
        match found.get(id.as_str()) {
            Some((p, o)) => out.push_str(&format!("  {id} at partition {p} offset {o}\n")),
            None => out.push_str(&format!("  {id} not in the topic\n")),
        }
    }
    out
}
