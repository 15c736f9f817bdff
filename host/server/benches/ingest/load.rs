//! The load and the count: a Kafka producer of numbered events (about 120 bytes of
//! JSON, each carrying its number `"n"`), and a follower of the tenant's Redis stream
//! that decodes every batch entry and counts each number it finds, so the table can say
//! how many events reached the log, how many never did and how many came twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message};
use redis::Value;

/// Distinct keys the events cycle through.
const KEYS: u64 = 10_000;

/// Event `n`: key, event time (ms, for the policies) and its number.
pub fn event(n: u64, now_ms: u64) -> (String, String) {
    let key = format!("k-{:05}", n % KEYS);
    let body = format!(
        r#"{{"k":"{key}","t":{now_ms},"n":{n},"lat":37.5665,"lng":126.978,"speed":42.5,"pad":"abcdefghijklmnopqrstuvwx"}}"#
    );
    (key, body)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// Counts the broker's acknowledgements and refusals.
#[derive(Default)]
pub struct Deliveries {
    pub acked: AtomicU64,
    pub failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.acked.fetch_add(1, Relaxed),
            Err((e, m)) => {
                eprintln!("ingest: event at partition {} not delivered: {e}", m.partition());
                self.failed.fetch_add(1, Relaxed)
            }
        };
    }
}

/// An rdkafka producer with librdkafka's defaults (`linger.ms` 5), as a bulk producer
/// runs, one request in flight at a time.
pub struct Kafka {
    producer: ThreadedProducer<Deliveries>,
    topic: String,
}

impl Kafka {
    /// `linger_ms`: the producer's `linger.ms` (`None`: librdkafka's default, 5).
    pub fn new(brokers: &str, topic: &str, linger_ms: Option<u64>) -> Kafka {
        let mut config = ClientConfig::new();
        if let Some(ms) = linger_ms {
            config.set("linger.ms", ms.to_string());
        }
        let producer = config
            .set("bootstrap.servers", brokers)
            .set("queue.buffering.max.messages", "1000000")
            .set("max.in.flight.requests.per.connection", "1")
            .create_with_context(Deliveries::default())
            .expect("kafka producer");
        Kafka { producer, topic: topic.to_string() }
    }

    /// Acknowledged and refused sends so far.
    pub fn deliveries(&self) -> (u64, u64) {
        let d = self.producer.context();
        (d.acked.load(Relaxed), d.failed.load(Relaxed))
    }

    /// Sends event `n`, waiting while the producer's queue is full.
    pub fn send(&self, n: u64, now_ms: u64) {
        let (key, body) = event(n, now_ms);
        let mut record = BaseRecord::to(&self.topic).key(&key).payload(&body);
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => panic!("producing event {n}: {e}"),
            }
        }
    }

    /// Sends events `first..first + count` as fast as the broker takes them, then waits
    /// until every one is acknowledged.
    pub fn preload(&self, first: u64, count: u64) {
        let now = now_ms();
        for n in first..first + count {
            self.send(n, now);
        }
        self.producer.flush(Duration::from_secs(300)).expect("the broker acknowledges the preload");
    }

    /// Sends at `rate` events/s for `secs`, numbered from `first`, paced in 1 ms steps;
    /// then waits for the acknowledgements. Returns how many were sent.
    pub fn paced(&self, first: u64, rate: u64, secs: u64, backlog: &dyn Fn(u64) -> u64) -> Paced {
        let start = Instant::now();
        let until = start + Duration::from_secs(secs);
        let (mut sent, mut max_backlog) = (0u64, 0u64);
        let mut next_sample = start;
        while Instant::now() < until {
            let owed = (start.elapsed().as_secs_f64() * rate as f64) as u64;
            let now = now_ms();
            while sent < owed {
                self.send(first + sent, now);
                sent += 1;
            }
            if Instant::now() >= next_sample {
                max_backlog = max_backlog.max(backlog(first + sent));
                next_sample += Duration::from_millis(100);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let elapsed = start.elapsed();
        self.producer.flush(Duration::from_secs(60)).expect("the broker acknowledges every event");
        Paced { sent, elapsed, max_backlog }
    }
}

pub struct Paced {
    pub sent: u64,
    pub elapsed: Duration,
    /// The most events sent but not yet in the log, sampled every 100 ms.
    pub max_backlog: u64,
}

/// What the follower has seen: how often each event number came.
pub struct Counts {
    seen: Vec<u8>,
    pub unique: u64,
    pub duplicated: u64,
    /// Entries that were not a batch of events (heartbeats, control entries).
    pub other_entries: u64,
}

impl Counts {
    pub fn new() -> Counts {
        Counts { seen: Vec::new(), unique: 0, duplicated: 0, other_entries: 0 }
    }

    pub fn count(&mut self, n: u64) {
        let i = n as usize;
        if i >= self.seen.len() {
            self.seen.resize((i + 1).next_power_of_two(), 0);
        }
        match self.seen[i] {
            0 => self.unique += 1,
            _ => self.duplicated += 1,
        }
        self.seen[i] = self.seen[i].saturating_add(1);
    }

    /// The first few runs of numbers in `range` seen `times` (0: missing, 2: duplicated),
    /// as `start..end` (for reports).
    pub fn runs(&self, range: std::ops::Range<u64>, times: u8, limit: usize) -> Vec<std::ops::Range<u64>> {
        let mut runs: Vec<std::ops::Range<u64>> = Vec::new();
        for n in range {
            if self.seen.get(n as usize).copied().unwrap_or(0) != times {
                continue;
            }
            if let Some(r) = runs.last_mut().filter(|r| r.end == n) {
                r.end = n + 1;
            } else if runs.len() == limit {
                break;
            } else {
                runs.push(n..n + 1);
            }
        }
        runs
    }

    /// Numbers in `range` never seen.
    pub fn missing(&self, range: std::ops::Range<u64>) -> u64 {
        range.filter(|&n| self.seen.get(n as usize).copied().unwrap_or(0) == 0).count() as u64
    }
}

/// The number in `"n":<digits>` of an event's payload.
pub fn number_in(payload: &[u8]) -> Option<u64> {
    let at = memchr::memmem::find(payload, br#""n":"#)? + 4;
    let digits = payload[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&payload[at..at + digits]).ok()?.parse().ok()
}

/// Reads the tenant's log from its start on a thread of its own, counting events.
pub struct Follower {
    pub counts: Arc<std::sync::Mutex<Counts>>,
    /// Events seen (a copy of `counts.unique + duplicated` readable without the lock).
    pub events: Arc<AtomicU64>,
    /// When the first event came, µs after `started` (0: none yet).
    first_us: Arc<AtomicU64>,
    started: Instant,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Follower {
    pub fn start(redis_url: &str, key: &str) -> Follower {
        let client = redis::Client::open(redis_url).expect("a redis url");
        let mut conn = client.get_connection().expect("redis reachable");
        let counts = Arc::new(std::sync::Mutex::new(Counts::new()));
        let events = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (first_us, started) = (Arc::new(AtomicU64::new(0)), Instant::now());
        let (c, e, s, key) = (counts.clone(), events.clone(), stop.clone(), key.to_string());
        let first = first_us.clone();
        let thread = std::thread::spawn(move || {
            let mut last = "0-0".to_string();
            while !s.load(Relaxed) {
                let reply: Value = redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(100)
                    .arg("BLOCK")
                    .arg(100)
                    .arg("STREAMS")
                    .arg(&key)
                    .arg(&last)
                    .query(&mut conn)
                    .expect("XREAD");
                let mut counts = c.lock().unwrap();
                for (id, body) in entries(reply) {
                    last = id;
                    let Some(body) = body else {
                        counts.other_entries += 1;
                        continue;
                    };
                    let batch = streamgate::bus::decode_batch(&body).expect("a batch entry decodes");
                    for ev in batch {
                        counts.count(number_in(&ev.payload).expect("every event carries its number"));
                    }
                }
                let seen = counts.unique + counts.duplicated;
                if seen > 0 && first.load(Relaxed) == 0 {
                    first.store(started.elapsed().as_micros().max(1) as u64, Relaxed);
                }
                e.store(seen, Relaxed);
            }
        });
        Follower { counts, events, first_us, started, stop, thread: Some(thread) }
    }

    /// When the first event came into the log, if one did.
    pub fn first_event(&self) -> Option<Instant> {
        let us = self.first_us.load(Relaxed);
        (us > 0).then(|| self.started + Duration::from_micros(us))
    }

    /// Waits until `target` events are counted or `deadline`; whether they all came.
    pub fn wait_until(&self, target: u64, deadline: Instant) -> bool {
        while self.events.load(Relaxed) < target && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.events.load(Relaxed) >= target
    }

    /// Waits until `target` events are counted or `quiet` passed with none added;
    /// returns when the last one came.
    pub fn wait_for(&self, target: u64, quiet: Duration) -> Instant {
        let (mut seen, mut changed) = (self.events.load(Relaxed), Instant::now());
        while seen < target && changed.elapsed() < quiet {
            std::thread::sleep(Duration::from_millis(5));
            let now = self.events.load(Relaxed);
            if now != seen {
                (seen, changed) = (now, Instant::now());
            }
        }
        changed
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `(id, batch body)` of each entry in an XREAD reply (body `None` for other entries).
fn entries(reply: Value) -> Vec<(String, Option<Bytes>)> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    };
    let mut out = Vec::new();
    let streams = match reply {
        Value::Array(s) => s,
        Value::Map(m) => m.into_iter().map(|(k, v)| Value::Array(vec![k, v])).collect(),
        _ => return out,
    };
    for stream in streams {
        let Value::Array(mut parts) = stream else { continue };
        let Some(Value::Array(items)) = parts.pop() else { continue };
        for item in items {
            let Value::Array(mut pair) = item else { continue };
            let fields = pair.pop();
            let Some(id) = pair.pop().as_ref().and_then(text) else { continue };
            let body = match fields {
                Some(Value::Array(f)) if f.len() == 2 && text(&f[0]).as_deref() == Some("b") => match &f[1] {
                    Value::BulkString(b) => Some(Bytes::copy_from_slice(b)),
                    _ => None,
                },
                _ => None,
            };
            out.push((id, body));
        }
    }
    out
}
