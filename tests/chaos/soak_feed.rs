//! The soak's producer: the built-in taxi and queue simulators (the demo's, with their
//! duplicates, late, stale and off-duty taxis, redelivered queue events) ticking on the
//! wall clock into two Kafka topics, keyed by taxi and by user, until cancelled.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use streamgate::source::simulate::{FaultRates, QueueSim, Simulator, TaxiSim};
use tokio_util::sync::CancellationToken;

/// One simulator and where and how often it produces.
pub struct Source {
    pub topic: String,
    /// The JSON field whose value keys the message (so a taxi stays on one partition).
    pub key_field: &'static str,
    pub every: Duration,
    pub sim: Box<dyn Simulator>,
}

impl Source {
    /// `taxis` taxis reporting every `every`, with the demo's fault rates.
    pub fn taxis(topic: &str, taxis: usize, every: Duration) -> Source {
        let sim = TaxiSim::new(taxis, 42, FaultRates::default());
        Source { topic: topic.into(), key_field: "mediaId", every, sim: Box::new(sim) }
    }

    /// A sale `crowd` users rush into, the line moving every `every`.
    pub fn queue(topic: &str, crowd: usize, every: Duration) -> Source {
        let sim = QueueSim::new(crowd, 7);
        Source { topic: topic.into(), key_field: "userId", every, sim: Box::new(sim) }
    }
}

/// A running source: messages the broker acknowledged so far.
pub struct Producing {
    pub acked: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Producing {
    /// Waits for the source's last tick to be acknowledged (bounded).
    pub async fn finish(self, timeout: Duration) -> u64 {
        tokio::time::timeout(timeout, self.task)
            .await
            .unwrap_or_else(|_| panic!("a soak producer did not finish within {timeout:?}"))
            .expect("soak producer task");
        self.acked.load(Relaxed)
    }
}

/// Starts producing `source` into `brokers` until `stop` is cancelled.
pub fn start(brokers: &str, mut source: Source, stop: CancellationToken) -> Producing {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "120000")
        .create()
        .expect("kafka producer");
    let acked = Arc::new(AtomicU64::new(0));
    let task = tokio::spawn({
        let acked = acked.clone();
        async move {
            let mut tick = tokio::time::interval(source.every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let reports = source.sim.tick(streamgate::bus::wall_clock_ms());
                let sends = reports.iter().map(|raw| {
                    let key = key_of(raw, source.key_field);
                    let (producer, topic) = (&producer, &source.topic);
                    async move {
                        let record = FutureRecord::to(topic).key(&key).payload(raw);
                        producer.send(record, Duration::from_secs(120)).await.map_err(|(e, _)| e)
                    }
                });
                for sent in futures::future::join_all(sends).await {
                    sent.unwrap_or_else(|e| panic!("the broker refused a soak message for good: {e}"));
                    acked.fetch_add(1, Relaxed);
                }
            }
        }
    });
    Producing { acked, task }
}

/// The string at `field` of a JSON object (empty when absent).
fn key_of(raw: &[u8], field: &str) -> String {
    serde_json::from_slice::<serde_json::Value>(raw)
        .ok()
        .and_then(|v| v[field].as_str().map(str::to_string))
        .unwrap_or_default()
}
