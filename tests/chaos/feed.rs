//! The producer of a scenario: `total` good messages with ids `e-0000000`.. into the
//! topic at a steady rate, optionally one malformed message after every `salt`-th good
//! one. Each record is its own broker batch (`batch.num.messages = 1`), so a consumer
//! never resumes inside a batch (tansu 0.6.0 answers such a fetch from the next batch:
//! issue 17, fixed elsewhere; this suite measures the gateway, not that broker bug).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Keys spread messages over the topic's partitions.
pub const KEYS: u64 = 40;

/// What was acknowledged by the broker.
#[derive(Debug, Default)]
pub struct Produced {
    /// Ids of good messages, each acknowledged.
    pub ids: Vec<String>,
    /// Malformed messages acknowledged.
    pub malformed: u64,
}

pub struct Feed {
    acked: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Produced>,
}

pub fn id(i: u64) -> String {
    format!("e-{i:07}")
}

fn good(i: u64) -> Vec<u8> {
    let t = streamgate::bus::wall_clock_ms();
    format!(r#"{{"id":"{}","k":"k{}","t":{t},"i":{i}}}"#, id(i), i % KEYS).into_bytes()
}

/// Malformed in turn: not JSON, JSON without the key, a time that is not a number.
fn bad(n: u64) -> Vec<u8> {
    match n % 3 {
        0 => b"{not json".to_vec(),
        1 => br#"{"id":"x","t":1}"#.to_vec(),
        _ => br#"{"id":"x","k":"k1","t":"soon"}"#.to_vec(),
    }
}

impl Feed {
    /// Starts producing `total` good messages at `per_second`.
    pub fn start(brokers: &str, topic: &str, total: u64, per_second: u64, salt: Option<u64>) -> Feed {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("batch.num.messages", "1")
            .set("linger.ms", "0")
            .set("message.timeout.ms", "120000")
            .create()
            .expect("kafka producer");
        let acked = Arc::new(AtomicU64::new(0));
        let topic = topic.to_string();
        let task = tokio::spawn({
            let acked = acked.clone();
            async move {
                let tick = Duration::from_millis(20);
                let per_tick = (per_second / 50).max(1);
                let mut interval = tokio::time::interval(tick);
                let mut out = Produced::default();
                let mut i = 0;
                while i < total {
                    interval.tick().await;
                    let mut sends = Vec::new();
                    for _ in 0..per_tick.min(total - i) {
                        sends.push((Some(id(i)), i % KEYS, good(i)));
                        if salt.is_some_and(|s| (i + 1) % s == 0) {
                            sends.push((None, i % KEYS, bad(i)));
                        }
                        i += 1;
                    }
                    let acks = sends.into_iter().map(|(id, key, payload)| {
                        let (producer, topic) = (&producer, &topic);
                        async move {
                            let key = format!("k{key}");
                            let record = FutureRecord::to(topic).key(&key).payload(&payload);
                            let sent = producer.send(record, Duration::from_secs(120)).await;
                            sent.map(|_| id).map_err(|(e, _)| e)
                        }
                    });
                    for ack in futures::future::join_all(acks).await {
                        match ack.unwrap_or_else(|e| panic!("the broker refused a message for good: {e}")) {
                            Some(id) => {
                                out.ids.push(id);
                                acked.fetch_add(1, Relaxed);
                            }
                            None => out.malformed += 1,
                        }
                    }
                }
                out
            }
        });
        Feed { acked, task }
    }

    /// Good messages acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Relaxed)
    }

    /// Waits until `n` good messages are acknowledged (bounded).
    pub async fn wait_acked(&self, n: u64, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.acked() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {n} messages acknowledged by the broker within {timeout:?}",
                self.acked()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the last acknowledgement; what was produced.
    pub async fn finish(self, timeout: Duration) -> Produced {
        tokio::time::timeout(timeout, self.task)
            .await
            .unwrap_or_else(|_| panic!("the producer did not finish within {timeout:?}"))
            .expect("producer task")
    }
}
