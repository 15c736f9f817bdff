//! The Kafka source: one consumer per tenant in the shared consumer group. Offsets are
//! stored only after the batch holding their messages is on the bus, so a crash or a
//! rebalance redelivers rather than loses (at-least-once; dedupe policies absorb it).
//! [`offsets`] notices records the broker skipped at an assignment, [`continuity`] in the
//! middle of a partition (and fetches them again once); [`monitor`] tells `/readyz` whether
//! the broker answers and which partitions nobody consumes.
//!
//! Each instance joins its groups as a static member (`group.instance.id`, see
//! [`KafkaConfig::group_instance_id`]): a member that restarts gets its partitions back
//! at once, and one that vanishes is removed after `session_timeout_ms`.
//!
//! Latency: the consumer asks the broker to answer a fetch within
//! [`FETCH_WAIT_MAX_MS`] (librdkafka's default, 500 ms, is the whole delay when a broker
//! holds a fetch for its full wait, as tansu does), and a batch goes to the bus as soon
//! as the previous one is at least one linger (`frame_ms`) old: the first event after a
//! quiet spell is published at once, a steady flow once per linger.

pub mod continuity;
mod handoff;
pub mod monitor;
pub mod offsets;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use serde::Deserialize;

use self::handoff::{Batch, Handoff};
use self::offsets::{SourceConsumer, SourceContext};
use super::{Extractor, LogPublisher};
use crate::bus::{Bus, BusConfig};
use crate::event::DecodeError;
use crate::metrics::TenantMetrics;
use crate::tenant::TenantConfig;

/// Back-off after a failed receive, so a broken broker connection is not a busy loop.
const RECEIVE_BACKOFF_MIN: Duration = Duration::from_millis(50);
const RECEIVE_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Consumer properties set before `[kafka] options` (which may override them).
/// `fetch.wait.max.ms`: how long a broker may hold a fetch when it has nothing; a
/// broker that does not answer early (tansu polls its store, then sleeps the rest of the
/// wait) adds up to twice this to every event, and an idle consumer sends one fetch per
/// wait, so 10 ms costs about 100 small requests a second per broker while idle.
pub const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("fetch.wait.max.ms", FETCH_WAIT_MAX_MS),
    // A fetch error (a broker restarting) is retried after this, not librdkafka's 500 ms.
    ("fetch.error.backoff.ms", "100"),
    // Once the local queue is over its threshold (`queued.min.messages`), the next fetch
    // waits this long, not librdkafka's 1,000 ms: by then the source has drained the
    // queue and sat idle. Measured with `make bench-ingest` (drain of 1,000,000 events,
    // from the first event): 104,000-112,000 events/s with 1,000 ms, 188,000-228,000
    // with 10 or 25 ms; it costs nothing below the threshold.
    ("fetch.queue.backoff.ms", "10"),
];

/// See [`CONSUMER_DEFAULTS`].
pub const FETCH_WAIT_MAX_MS: &str = "10";

/// `[kafka]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers (env `STREAMGATE_KAFKA_BROKERS`).
    pub brokers: String,
    /// Consumer group; each tenant's consumer joins `<group_id>.<tenant>`.
    pub group_id: String,
    #[serde(rename = "session_timeout_ms", with = "streamgate_runtime::duration_ms")]
    pub session_timeout: Duration,
    /// Static membership: this instance's `group.instance.id` (env
    /// `STREAMGATE_KAFKA_INSTANCE_ID`). Unset: `<hostname>-<listen port>`; empty: none
    /// (dynamic membership).
    pub instance_id: Option<String>,
    /// A partition whose committed offset stays behind its high watermark this long
    /// is reported as stalled (nobody consumes it).
    #[serde(rename = "stalled_after_ms", with = "streamgate_runtime::duration_ms")]
    pub stalled_after: Duration,
    /// Extra librdkafka properties, passed through as they are (they win over the above).
    pub options: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            group_id: "streamgate".into(),
            session_timeout: Duration::from_secs(10),
            instance_id: None,
            stalled_after: Duration::from_secs(30),
            options: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// The `group.instance.id` this instance joins with: `instance_id` when set (none
    /// when empty), else `<hostname>-<port>` from the listen address, stable across
    /// restarts and unique per host. A listen port of 0 is not stable: no static id.
    pub fn group_instance_id(&self, listen: std::net::SocketAddr) -> Option<String> {
        match self.instance_id.as_deref() {
            Some("") => None,
            Some(id) => Some(id.to_string()),
            None if listen.port() == 0 => None,
            None => {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
                let host = host.trim();
                Some(format!("{}-{}", if host.is_empty() { "localhost" } else { host }, listen.port()))
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("kafka consumer for tenant {tenant}: {source}")]
pub struct KafkaSourceError {
    tenant: String,
    source: rdkafka::error::KafkaError,
}

/// Builds the tenant's consumer and subscribes it, as `instance` (static membership)
/// when given; errors mean bad config.
pub fn consumer(
    kafka: &KafkaConfig,
    tenant: &TenantConfig,
    instance: Option<&str>,
) -> Result<SourceConsumer, KafkaSourceError> {
    let err = |source| KafkaSourceError { tenant: tenant.name.clone(), source };
    let cfg = client_config(kafka, tenant, instance);
    let consumer: SourceConsumer = cfg.create_with_context(SourceContext::default()).map_err(err)?;
    consumer.subscribe(&[&tenant.topic]).map_err(err)?;
    Ok(consumer)
}

/// The consumer's librdkafka properties: ours (with `instance` as the static member id
/// when given), then [`CONSUMER_DEFAULTS`], then `options`.
fn client_config(kafka: &KafkaConfig, tenant: &TenantConfig, instance: Option<&str>) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &kafka.brokers)
        .set("group.id", format!("{}.{}", kafka.group_id, tenant.name))
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", kafka.session_timeout.as_millis().to_string());
    if let Some(id) = instance {
        cfg.set("group.instance.id", id);
    }
    for (k, v) in CONSUMER_DEFAULTS {
        cfg.set(*k, *v);
    }
    for (k, v) in &kafka.options {
        cfg.set(k, v);
    }
    cfg
}

/// Consumes until `cancel`, then publishes what it holds, commits and leaves the group.
pub async fn run(
    consumer: Arc<SourceConsumer>,
    tenant: TenantConfig,
    bus: Bus,
    bus_config: BusConfig,
    metrics: Arc<TenantMetrics>,
    cancel: CancellationToken,
) {
    let extractor = Extractor::for_tenant(&tenant);
    let linger = tenant.linger(&bus_config);
    let publisher = LogPublisher::new(&tenant.name, bus, metrics.clone());
    let handoff = Handoff::start(consumer.clone(), tenant.topic.clone(), publisher);
    // The batch being cut: its events and the highest offset seen per partition.
    let mut batch = Batch::default();
    // One timer for the whole loop, reset when a batch starts (it runs while the batch
    // is not empty): a timer made afresh in the select for every message cost a
    // registration and a removal per message.
    let flush_timer = tokio::time::sleep_until(Instant::now());
    tokio::pin!(flush_timer);
    // A batch is handed over one linger after the previous one at the earliest.
    let mut last_flush: Option<Instant> = None;
    // After a receive error, wait before asking again (doubling, reset by a message).
    let mut error_backoff = RECEIVE_BACKOFF_MIN;
    // Holes in the middle of a partition (see `continuity`).
    let mut holes = continuity::OffsetContinuity::default();
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = &mut flush_timer, if !batch.is_empty() => {
                if handoff.hand_over(&mut batch, &cancel).await.is_err() { break }
                last_flush = Some(Instant::now());
            }
            received = consumer.recv() => {
                let msg = match received {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(tenant = %tenant.name, error = %e, retry_in = ?error_backoff, "kafka receive failed");
                        tokio::select! {
                            _ = cancel.cancelled() => break,
                            _ = tokio::time::sleep(error_backoff) => {}
                        }
                        error_backoff = (error_backoff * 2).min(RECEIVE_BACKOFF_MAX);
                        continue;
                    }
                };
                error_backoff = RECEIVE_BACKOFF_MIN;
                let (partition, offset) = (msg.partition(), msg.offset());
                if consumer.context().first_since_assignment(partition) {
                    holes.restart(partition, offset);
                    offsets::check_first_offset(
                        Arc::downgrade(&consumer), tenant.name.clone(), tenant.topic.clone(),
                        partition, offset, metrics.clone(),
                    );
                } else if !continuity::admit(&consumer, &tenant.topic, &mut holes, partition, offset, &metrics) {
                    continue;
                }
                metrics.consumed.fetch_add(1, Relaxed);
                if batch.is_empty() {
                    // This message starts a batch.
                    flush_timer.as_mut().reset(next_flush(Instant::now(), last_flush, linger));
                }
                match msg.payload().ok_or(DecodeError::NotJson).and_then(|p| extractor.decode(p)) {
                    Ok(event) => batch.events.push(event),
                    Err(e) => {
                        metrics.count_decode_error(e);
                        tracing::debug!(tenant = %tenant.name, partition = msg.partition(), offset = msg.offset(), error = %e, "dropped a source message");
                    }
                }
                batch.offsets.insert(partition, offset);
                if batch.events.len() >= bus_config.batch_max_events {
                    if handoff.hand_over(&mut batch, &cancel).await.is_err() { break }
                    last_flush = Some(Instant::now());
                }
            }
        }
    }
    // Shutdown: publish what was handed over and what is held (bounded: one grace
    // period), then commit what was published.
    handoff.finish(batch).await;
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        tracing::debug!(tenant = %tenant.name, error = %e, "final offset commit");
    }
    consumer.unsubscribe();
    leave_group(consumer, &tenant.name).await;
}

/// How long a stopping source waits for its consumer to leave the group.
const LEAVE_WAIT: Duration = Duration::from_secs(5);

/// Drops the consumer, which leaves the group: librdkafka closes a consumer only once
/// the group's rebalance has ended, which waits on the broker (one was seen never ending
/// it). So the drop runs on a thread of its own, awaited at most [`LEAVE_WAIT`]; past
/// that the source stops without it (its offsets are committed) and the process may exit.
async fn leave_group(consumer: Arc<SourceConsumer>, tenant: &str) {
    let (left, has_left) = tokio::sync::oneshot::channel();
    let closing = std::thread::Builder::new().name("kafka-leave".into()).spawn(move || {
        drop(consumer);
        let _ = left.send(());
    });
    if let Err(e) = closing {
        tracing::warn!(tenant, error = %e, "no thread to leave the Kafka group on; stopping without leaving");
        return;
    }
    match tokio::time::timeout(LEAVE_WAIT, has_left).await {
        Ok(_) => tracing::info!(tenant, "kafka source stopped"),
        Err(_) => tracing::warn!(tenant, wait = ?LEAVE_WAIT,
            "kafka source stopped without leaving the group (the broker has not ended the rebalance); \
             its offsets are committed, the group drops it after the session timeout"),
    }
}

/// When a batch started now goes out: at once after a quiet spell, else one linger
/// after the previous batch (the frame cadence).
fn next_flush(now: Instant, last_flush: Option<Instant>, linger: Duration) -> Instant {
    last_flush.map_or(now, |last| (last + linger).max(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_static_member_id_is_stable_per_host_and_port_unless_set() {
        let listen = |port| std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let derived = KafkaConfig::default().group_instance_id(listen(8080)).expect("a derived id");
        assert!(derived.ends_with("-8080") && derived.len() > 5, "{derived}");
        assert_eq!(KafkaConfig::default().group_instance_id(listen(8080)), Some(derived.clone()));
        assert_ne!(KafkaConfig::default().group_instance_id(listen(8081)), Some(derived));
        assert_eq!(KafkaConfig::default().group_instance_id(listen(0)), None, "port 0 is not stable");
        let set = KafkaConfig { instance_id: Some("gw-1".into()), ..KafkaConfig::default() };
        assert_eq!(set.group_instance_id(listen(0)).as_deref(), Some("gw-1"));
        let off = KafkaConfig { instance_id: Some(String::new()), ..KafkaConfig::default() };
        assert_eq!(off.group_instance_id(listen(8080)), None);
    }

    #[test]
    fn a_batch_waits_only_for_the_rest_of_one_linger_after_the_previous() {
        let (now, linger) = (Instant::now(), Duration::from_millis(50));
        assert_eq!(next_flush(now, None, linger), now, "the first batch goes at once");
        let recent = now - Duration::from_millis(20);
        assert_eq!(next_flush(now, Some(recent), linger), now + Duration::from_millis(30));
        let long_ago = now - Duration::from_millis(500);
        assert_eq!(next_flush(now, Some(long_ago), linger), now, "after a quiet spell, at once");
    }

    #[test]
    fn the_latency_defaults_apply_unless_options_say_otherwise() {
        let tenant = crate::demo::taxi_tenant();
        let mut kafka = KafkaConfig::default();
        let cfg = client_config(&kafka, &tenant, None);
        assert_eq!(cfg.get("fetch.wait.max.ms"), Some(FETCH_WAIT_MAX_MS));
        assert_eq!(cfg.get("fetch.error.backoff.ms"), Some("100"));
        assert_eq!(cfg.get("fetch.queue.backoff.ms"), Some("10"));
        kafka.options.insert("fetch.wait.max.ms".into(), "250".into());
        assert_eq!(client_config(&kafka, &tenant, None).get("fetch.wait.max.ms"), Some("250"));
    }
}
