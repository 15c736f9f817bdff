//! The built-in simulators, sources like Kafka: the taxi fleet ([`taxi`]) and the
//! waiting queue ([`queue`]). Deterministic for a seed. They feed the embedded demo
//! straight onto the bus ([`run_on_bus`]) and `streamgate simulate` into a Kafka topic
//! ([`run_into_kafka`]). A tenant names its simulator with `simulator = "taxi"|"queue"`.

pub mod queue;
mod seoul;
pub mod taxi;

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use super::{Extractor, LogPublisher};
use crate::bus::wall_clock_ms;
pub use crate::tenant::SimulatorKind;
pub use queue::{Door, DoorBusy, QueueSim};
pub use taxi::{FaultRates, TaxiSim};

/// Something that produces raw payloads, tick by tick.
pub trait Simulator: Send + 'static {
    fn tick(&mut self, now_ms: i64) -> Vec<Vec<u8>>;
}

/// A simulator of `kind`: `size` taxis, or a sale `10 * size` users rush into, at most
/// 5,000 (the demo's 300 taxis: 3,000 users; each moving user gets a rank every tick),
/// with its door for users joining from outside.
pub fn build(kind: SimulatorKind, size: usize) -> (Box<dyn Simulator>, Option<Door>) {
    match kind {
        SimulatorKind::Taxi => (Box::new(TaxiSim::new(size, 42, FaultRates::default())), None),
        SimulatorKind::Queue => {
            let sim = QueueSim::new((size * 10).min(5_000), 7);
            let door = sim.door();
            (Box::new(sim), Some(door))
        }
    }
}

/// How often a simulator of `kind` ticks when taxis report every `every` (the queue
/// moves half as often).
pub fn tick_every(kind: SimulatorKind, every: Duration) -> Duration {
    match kind {
        SimulatorKind::Taxi => every,
        SimulatorKind::Queue => every * 2,
    }
}

/// Drives a simulator straight onto the bus (the embedded demo's source).
pub async fn run_on_bus(
    mut sim: Box<dyn Simulator>,
    every: Duration,
    extractor: Extractor,
    publisher: LogPublisher,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        // One log entry per tick.
        for raw in sim.tick(wall_clock_ms()) {
            match extractor.decode(&raw) {
                Ok(e) => batch.push(e),
                Err(e) => tracing::warn!(error = %e, "simulator produced an undecodable report"),
            }
        }
        if publisher.publish(&batch, &cancel).await.is_err() {
            return;
        }
        batch.clear();
    }
}

/// Produces simulated reports into a Kafka topic (`streamgate simulate`), keyed by
/// taxi id. Returns how many messages were delivered.
pub async fn run_into_kafka(
    brokers: &str,
    topic: &str,
    taxis: usize,
    every: Duration,
    ticks: u64,
    seed: u64,
    cancel: CancellationToken,
) -> Result<u64, rdkafka::error::KafkaError> {
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", brokers).set("linger.ms", "5").create()?;
    // A steady load: every taxi reports every tick (no breaks, unlike the demo's).
    let mut sim = TaxiSim::new(taxis, seed, FaultRates { off_duty_one_in: 0, ..FaultRates::default() });
    let mut tick = tokio::time::interval(every);
    let mut delivered = 0u64;
    for _ in 0..ticks {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let reports = sim.tick(wall_clock_ms());
        let sends = reports.iter().map(|raw| {
            let key = serde_json::from_slice::<serde_json::Value>(raw)
                .ok()
                .and_then(|v| v["mediaId"].as_str().map(str::to_string))
                .unwrap_or_default();
            let producer = producer.clone();
            async move {
                producer
                    .send(FutureRecord::to(topic).key(&key).payload(raw), Duration::from_secs(10))
                    .await
                    .map_err(|(e, _)| e)
            }
        });
        for result in futures::future::join_all(sends).await {
            result?;
            delivered += 1;
        }
    }
    Ok(delivered)
}
