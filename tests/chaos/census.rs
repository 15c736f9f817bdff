//! Where events missing from the log are in Kafka: every partition of a topic read from
//! its start by a fresh consumer (outside any group), so a loss can be told apart as the
//! broker's (never stored, or stored at offsets nobody is served) or the gateway's
//! (stored and served, but never published). And what a process that does not stop on
//! SIGTERM is doing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// Reads partitions `0..partitions` of `topic` to their high watermarks and describes
/// where the events numbered `missing` (their `i` field) are: partition and offset, and
/// each partition's offsets without a record; `log_time(i)` says when event `i` entered
/// the log (seconds into the run), told for the records just before and after each
/// partition's missing stretch. Blocking.
pub fn locate(
    brokers: &str,
    topic: &str,
    partitions: i32,
    missing: &[u64],
    log_time: impl Fn(u64) -> Option<f64>,
) -> String {
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
    // Every record's event number, by partition and offset.
    let mut events: BTreeMap<(i32, i64), Option<u64>> = BTreeMap::new();
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
        events.insert((p, o), i);
        if let Some(i) = i.filter(|i| wanted.contains(i)) {
            found.push((i, p, o));
        }
    }
    let mut by_partition: BTreeMap<i32, (i64, i64, usize)> = BTreeMap::new();
    for &(_, p, o) in &found {
        let e = by_partition.entry(p).or_insert((i64::MAX, i64::MIN, 0));
        *e = (e.0.min(o), e.1.max(o), e.2 + 1);
    }
    let when = |p: i32, o: i64| -> String {
        match events.get(&(p, o)).copied().flatten() {
            Some(i) => match log_time(i) {
                Some(t) => format!("offset {o} (event {i}) entered the log {t:.2} s in"),
                None => format!("offset {o} (event {i}) is not in the log"),
            },
            None => format!("offset {o}: no event"),
        }
    };
    let ranges: Vec<String> = by_partition
        .iter()
        .map(|(&p, &(lo, hi, n))| {
            format!("partition {p}: {n} at offsets {lo}..={hi} ({}; {})", when(p, lo - 1), when(p, hi + 1))
        })
        .collect();
    format!(
        "Kafka census of {topic} (high watermarks {high:?}, read up to {next:?}): {} of the {} missing events are \
         stored in Kafka ({}); offsets without a record: {:?}",
        found.len(),
        missing.len(),
        ranges.join("; "),
        holes
    )
}

/// Sends SIGTERM to `instance` and waits up to 15 s for it to exit. If it does not,
/// saves every thread's stack (gdb) next to the build output and returns where; the
/// caller's drop then kills it.
pub fn terminate(instance: &crate::common::Instance) -> Option<String> {
    let pid = instance.pid();
    let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    let exited = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |s| s.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')))
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if exited() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let stacks = std::process::Command::new("gdb")
        .args(["-p", &pid.to_string(), "-batch", "-ex", "thread apply all bt"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| format!("gdb: {e}"));
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_streamgate"));
    let path = bin.parent().unwrap().join(format!("sigterm-hang-{pid}.txt"));
    std::fs::write(&path, &stacks).unwrap();
    let rdkafka: Vec<&str> =
        stacks.lines().filter(|l| l.contains("rd_kafka_") && l.contains(" in ")).take(8).collect();
    Some(format!(
        "no exit 15 s after SIGTERM; thread stacks in {} (rdkafka frames: {rdkafka:?})",
        path.display()
    ))
}
