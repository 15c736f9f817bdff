//! The Redis buses against a real redis-server: every reader sees the same log, with
//! positions and times assigned by Redis, and readers and publishers ride out a
//! Redis restart.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::Redis;
use streamgate::bus::{Bus, Content, EntryBody, LogEntry, RedisPubSubBus, RedisStreamBus};
use streamgate::event::Event;
use streamgate::readiness::Readiness;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A running reader of one tenant's log.
struct Reader {
    rx: mpsc::Receiver<LogEntry>,
    ready: Arc<Readiness>,
    cancel: CancellationToken,
}

impl Reader {
    fn start(bus: &Bus, tenant: &str) -> Reader {
        let (tx, rx) = mpsc::channel(1024);
        let (ready, cancel) = (Arc::new(Readiness::without_source()), CancellationToken::new());
        tokio::spawn({
            let (bus, tenant, ready, cancel) =
                (bus.clone(), tenant.to_string(), ready.clone(), cancel.clone());
            async move { bus.read(&tenant, tx, ready, cancel).await }
        });
        Reader { rx, ready, cancel }
    }

    async fn wait_ready(&self) {
        tokio::time::timeout(Duration::from_secs(10), self.ready.log_ready())
            .await
            .expect("reader connected and caught up within 10 s");
    }

    /// The next `n` entries, or a panic naming how many arrived.
    async fn take(&mut self, n: usize) -> Vec<LogEntry> {
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            match tokio::time::timeout(Duration::from_secs(10), self.rx.recv()).await {
                Ok(Some(e)) => got.push(e),
                _ => panic!("only {} of {n} entries arrived within 10 s", got.len()),
            }
        }
        got
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn event(i: usize) -> Event {
    Event {
        key: format!("k{i}"),
        event_time: i as i64,
        payload: Bytes::from(format!("{{\"i\":{i}}}")),
        ..Event::default()
    }
}

fn body(i: usize) -> EntryBody {
    if i.is_multiple_of(5) { EntryBody::Heartbeat } else { EntryBody::batch(&[event(i)]) }
}

/// What a reader decodes of `body(i)`.
fn content(i: usize) -> Content {
    if i.is_multiple_of(5) { Content::Heartbeat } else { Content::Events(vec![event(i)]) }
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test]
async fn stream_bus_gives_every_reader_the_same_log_with_redis_positions() {
    let redis = Redis::start();
    let bus = Bus::RedisStream(RedisStreamBus::new(&redis.url(), "test", Duration::from_secs(60)).unwrap());
    let early = Reader::start(&bus, "taxi");
    early.wait_ready().await;
    let before = wall_ms();
    // Two publishers (two instances' sources) interleave; Redis decides the one order.
    let other = Bus::RedisStream(RedisStreamBus::new(&redis.url(), "test", Duration::from_secs(60)).unwrap());
    futures::join!(
        async {
            for i in (0..40).step_by(2) {
                bus.publish("taxi", &body(i)).await.unwrap();
            }
        },
        async {
            for i in (1..40).step_by(2) {
                other.publish("taxi", &body(i)).await.unwrap();
            }
        }
    );
    let mut early = early;
    let seen_early = early.take(40).await;
    // A reader that starts later replays the retained log from the start.
    let mut late = Reader::start(&bus, "taxi");
    let seen_late = late.take(40).await;
    assert_eq!(seen_early, seen_late, "both readers see the same entries, positions and times");
    for pair in seen_early.windows(2) {
        assert!(pair[0].position < pair[1].position, "positions strictly increase");
    }
    for e in &seen_early {
        assert_eq!(e.log_time, e.position.major as i64, "log time is the stream id's ms");
        assert!((e.log_time - before).abs() < 10_000, "log time is Redis's clock");
    }
    let batches = seen_early.iter().filter(|e| e.content != Content::Heartbeat).count();
    assert_eq!(batches, 32, "8 of the 40 entries were heartbeats");
    // Other tenants' logs are separate.
    bus.publish("queue", &EntryBody::Heartbeat).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(300), early.rx.recv()).await.is_err());
}

#[tokio::test]
async fn stream_reader_and_publisher_ride_out_a_redis_restart() {
    let mut redis = Redis::start();
    let bus = Bus::RedisStream(RedisStreamBus::new(&redis.url(), "test", Duration::from_secs(60)).unwrap());
    let mut reader = Reader::start(&bus, "taxi");
    reader.wait_ready().await;
    for i in 1..=3 {
        bus.publish("taxi", &body(i)).await.unwrap();
    }
    let first = reader.take(3).await;
    redis.restart();
    // The publisher reconnects by itself; retry until the new server takes the write.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while bus.publish("taxi", &body(4)).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "publisher did not reconnect within 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = reader.take(1).await;
    assert_eq!(after[0].content, content(4));
    assert!(after[0].position > first[2].position, "the log moves on after the restart");
}

#[tokio::test]
async fn pubsub_bus_stamps_time_and_counter_positions_from_redis() {
    let redis = Redis::start();
    let bus = Bus::RedisPubSub(RedisPubSubBus::new(&redis.url(), "test").unwrap());
    let mut one = Reader::start(&bus, "taxi");
    let mut two = Reader::start(&bus, "taxi");
    one.wait_ready().await;
    two.wait_ready().await;
    let before = wall_ms();
    for i in 0..20 {
        bus.publish("taxi", &body(i)).await.unwrap();
    }
    let (a, b) = (one.take(20).await, two.take(20).await);
    assert_eq!(a, b, "every subscriber gets the same entries, positions and times");
    for (i, e) in a.iter().enumerate() {
        assert_eq!(e.position.minor, i as u64 + 1, "the counter is the position's second part");
        assert_eq!(e.position.major, e.log_time as u64, "Redis's TIME is its first");
        assert_eq!(e.content, content(i));
        assert!((e.log_time - before).abs() < 10_000, "log time is Redis's TIME");
    }
    assert!(a.windows(2).all(|w| w[0].position < w[1].position), "positions rise");
}

#[tokio::test]
async fn pubsub_positions_keep_rising_when_redis_restarts_empty() {
    let mut redis = Redis::start();
    let bus = Bus::RedisPubSub(RedisPubSubBus::new(&redis.url(), "test").unwrap());
    let mut reader = Reader::start(&bus, "taxi");
    reader.wait_ready().await;
    for i in 0..3 {
        bus.publish("taxi", &body(i)).await.unwrap();
    }
    let before = reader.take(3).await;
    // Without persistence the per-tenant counter starts again at 1: a position made of
    // the counter alone went back, and clients that had seen a higher one skipped every
    // new frame as old.
    redis.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while reader.ready.is_ready() {
        assert!(tokio::time::Instant::now() < deadline, "the reader did not notice Redis going away");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reader.wait_ready().await;
    let (mut after, mut published) = (Vec::new(), 0u64);
    while after.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no message went through the restarted Redis");
        if bus.publish("taxi", &body(3)).await.is_ok() {
            published += 1;
            // Published while the reader may still be resubscribing (at-most-once):
            // wait for this one briefly, else publish again.
            if let Ok(got) = tokio::time::timeout(Duration::from_millis(500), reader.take(1)).await {
                after = got;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(after[0].position.minor <= published, "the counter started again: {}", after[0].position);
    assert!(
        after[0].position > before[2].position,
        "{} after the restart must be past {} before it",
        after[0].position,
        before[2].position
    );
}

#[tokio::test]
async fn a_reader_that_finds_its_entries_gone_after_reconnecting_counts_a_gap() {
    let mut redis = Redis::start();
    let bus = Bus::RedisStream(RedisStreamBus::new(&redis.url(), "test", Duration::from_secs(60)).unwrap());
    let mut reader = Reader::start(&bus, "taxi");
    reader.wait_ready().await;
    for i in 1..=3 {
        bus.publish("taxi", &body(i)).await.unwrap();
    }
    reader.take(3).await;
    assert_eq!(reader.ready.log_gaps().0, 0, "no gap while the log holds what was read");
    // Restarted without persistence: the three entries read are gone, and a new entry
    // is appended before the reader is back (its id is newer than all it read).
    redis.stop();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while reader.ready.is_ready() {
        assert!(tokio::time::Instant::now() < deadline, "the reader did not notice Redis going away");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    redis.start_again();
    while bus.publish("taxi", &body(4)).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "publisher did not reconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while reader.ready.log_gaps().0 == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the reader did not report the lost entries");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (count, detail) = reader.ready.log_gaps();
    assert_eq!(count, 1, "one loss, counted once");
    let detail = detail.unwrap();
    assert!(detail.contains("is gone; the log now holds "), "the report says what is left: {detail}");
    // The reader goes on with what was appended after.
    assert_eq!(reader.take(1).await[0].content, content(4));
}
