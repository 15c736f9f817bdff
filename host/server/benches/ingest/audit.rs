//! The topic read back after a run with a plain consumer (no streamgate), every event's
//! number counted as the log's follower counts them: what the broker serves at rest, to
//! tell its losses and duplicates from the instance's.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::load::{Counts, number_in};

/// Reads the whole topic from its start with a plain consumer (no streamgate) and
/// counts each event's number: what the broker serves, to tell its losses and
/// duplicates from the instance's. Also returns the rate the consumer read at, from its
/// first record to its last (events/s): what this broker serves one consumer at most.
pub fn audit_topic(brokers: &str, topic: &str, expected: u64) -> (Counts, f64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "ingest-audit")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("kafka consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut counts = Counts::new();
    let mut quiet = Instant::now();
    let mut first: Option<Instant> = None;
    while counts.unique < expected && quiet.elapsed() < Duration::from_secs(10) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                quiet = Instant::now();
                first.get_or_insert(quiet);
                counts.count(m.payload().and_then(number_in).expect("every event carries its number"));
            }
            Some(Err(e)) => eprintln!("ingest: audit: {e}"),
            None => {}
        }
    }
    let read = first.map_or(0.0, |f| quiet.duration_since(f).as_secs_f64());
    let rate = if read > 0.0 { (counts.unique + counts.duplicated) as f64 / read } else { 0.0 };
    (counts, rate)
}
