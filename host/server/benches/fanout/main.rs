//! `make bench-fanout`: streamgate and Nchan side by side, with the same Rust load
//! client, in one run. For each server and each subscriber count it opens that many SSE
//! connections (raw TCP), measures the memory they added, then publishes at each rate
//! and measures produce -> receipt latency from a send time embedded in every message,
//! deliveries per second, and the CPU of the server and of this client. streamgate runs
//! its shipped defaults with real tansu and redis-server (one tenant, one staleness
//! stage); messages reach it through Kafka and Nchan through its HTTP publisher.
//!
//! Environment: `FANOUT_SHAPES` (default `1000:200,2000;10000:10,100`: subscribers, then
//! rates in messages per second), `FANOUT_SECS` (measured seconds per rate, 15),
//! `FANOUT_IDLE_SECS` (idle CPU window, 20), `FANOUT_SERVERS` (`streamgate,nchan`);
//! for experiments only, `FANOUT_KAFKA_EXTRA` and `FANOUT_TENANT_EXTRA` add lines (`;`
//! separated) to streamgate's `[kafka]` and tenant sections, and `FANOUT_STREAMGATE_URL`
//! replaces the subscribers' request target.

#[path = "../../../../tests/common/mod.rs"]
mod common;

mod client;
mod defaults;
mod publish;
mod servers;
mod split;
mod stats;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use client::Shared;
use publish::Publish;
use stats::{cpu_seconds, own_cpu_seconds, rss_bytes};

/// Seconds of publishing at the rate before measuring.
const WARM_UP: Duration = Duration::from_secs(3);
/// After the last message, deliveries are awaited until none came for this long...
const DRAIN_QUIET: Duration = Duration::from_millis(1_000);
/// ...or this long at most (a backlog the server cannot clear).
const DRAIN_MAX: Duration = Duration::from_secs(60);

struct Row {
    server: &'static str,
    subscribers: usize,
    connected: u64,
    rate: f64,
    sent_per_s: f64,
    deliveries_per_s: f64,
    quantiles: Vec<f64>,
    server_cpu: f64,
    client_cpu: f64,
    kb_per_conn: f64,
    /// Where the latency went (streamgate only), see [`split`].
    split: Option<String>,
}

/// One server under test.
struct Target<'a> {
    name: &'static str,
    addr: SocketAddr,
    path: &'a str,
    /// Processes whose CPU counts as the server's; the first one's memory is measured.
    pids: Vec<u32>,
    publisher: Box<dyn Publish>,
}

fn main() {
    let shapes = parse_shapes(&std::env::var("FANOUT_SHAPES").unwrap_or("1000:200,2000;10000:10,100".into()));
    let secs = env_u64("FANOUT_SECS", 15);
    let idle_secs = env_u64("FANOUT_IDLE_SECS", 20);
    let servers = std::env::var("FANOUT_SERVERS").unwrap_or("streamgate,nchan".into());
    let open_files = stats::raise_open_files();
    let most = shapes.iter().map(|(n, _)| *n).max().unwrap_or(0) as u64;
    assert!(open_files > most + 256, "open files limited to {open_files}: raise `ulimit -Hn` above {most}");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!("fanout: shapes {shapes:?}, {secs} s per rate, open files {open_files}");
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut idle = Vec::new();
    if servers.contains("streamgate") {
        let extra = |name: &str| std::env::var(name).unwrap_or_default().replace(';', "\n");
        let sg = servers::Streamgate::start(&extra("FANOUT_KAFKA_EXTRA"), &extra("FANOUT_TENANT_EXTRA"));
        let pid = sg.instance.pid();
        let extra = [sg.tansu.pid(), sg.redis.pid()];
        println!("fanout: streamgate up (pid {pid}); idle CPU over {idle_secs} s");
        let cpu = idle_cpu(&[&[pid], &extra], idle_secs);
        idle.push(("streamgate", cpu[0], Some(cpu[1])));
        // FANOUT_STREAMGATE_URL=http://bench/tenants/bench/events (absolute form) takes
        // hyper's path instead of the event-stream writer: to compare the two.
        let path =
            std::env::var("FANOUT_STREAMGATE_URL").unwrap_or(format!("/tenants/{}/events", servers::TENANT));
        let mut target = Target {
            name: "streamgate",
            addr: ([127, 0, 0, 1], sg.instance.port).into(),
            path: &path,
            pids: vec![pid],
            publisher: Box::new(publish::Kafka::new(&sg.tansu.brokers(), servers::TOPIC)),
        };
        rows.extend(run_target(&runtime, &mut target, &shapes, secs));
    }
    if servers.contains("nchan") {
        let nchan = servers::Nchan::start(most + 1_000);
        let worker = nchan.worker().expect("nginx worker");
        println!("fanout: nchan up (worker pid {worker}); idle CPU over {idle_secs} s");
        idle.push(("nchan", idle_cpu(&[&[worker]], idle_secs)[0], None));
        let addr: SocketAddr = ([127, 0, 0, 1], nchan.port).into();
        let mut target = Target {
            name: "nchan",
            addr,
            path: "/sub",
            pids: vec![worker],
            publisher: Box::new(publish::Nchan::new(addr, "/pub")),
        };
        rows.extend(run_target(&runtime, &mut target, &shapes, secs));
    }
    print_table(&rows, &idle, idle_secs);
    println!("\nfanout: done in {:.0} s", started.elapsed().as_secs_f64());
}

/// CPU % of each group of processes over `secs` seconds without subscribers or messages.
fn idle_cpu(groups: &[&[u32]], secs: u64) -> Vec<f64> {
    let total = |g: &[u32]| g.iter().map(|&p| cpu_seconds(p)).sum::<f64>();
    let before: Vec<f64> = groups.iter().map(|g| total(g)).collect();
    std::thread::sleep(Duration::from_secs(secs.max(1)));
    groups.iter().zip(before).map(|(g, b)| 100.0 * (total(g) - b) / secs.max(1) as f64).collect()
}

fn run_target(
    runtime: &tokio::runtime::Runtime,
    target: &mut Target,
    shapes: &[(usize, Vec<f64>)],
    secs: u64,
) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut next_message = 0u64;
    let mut primed = false;
    for (subscribers, rates) in shapes {
        let shared = Arc::new(Shared {
            latency: stats::Histogram::new(),
            split: split::Split::new(),
            connected: AtomicU64::new(0),
            closed: AtomicU64::new(0),
        });
        let rss_before = rss_bytes(target.pids[0]);
        let t = Instant::now();
        let mut set =
            runtime.block_on(client::connect_all(target.addr, target.path, *subscribers, shared.clone()));
        let connected = shared.connected.load(Relaxed);
        // Let the server finish what the connections started before reading its memory.
        std::thread::sleep(Duration::from_secs(1));
        let kb_per_conn =
            (rss_bytes(target.pids[0]) as f64 - rss_before as f64) / 1024.0 / connected.max(1) as f64;
        println!(
            "fanout: {}: {connected}/{subscribers} subscribers in {:.1} s, {kb_per_conn:.1} KB each",
            target.name,
            t.elapsed().as_secs_f64()
        );
        if !primed {
            // Until the first message gets through (a consumer joining its group).
            let deadline = Instant::now() + Duration::from_secs(90);
            while shared.latency.summary(&[]).0 == 0 {
                assert!(Instant::now() < deadline, "{}: no message delivered in 90 s", target.name);
                next_message += publish::paced(
                    &mut *target.publisher,
                    20.0,
                    next_message,
                    Instant::now() + Duration::from_millis(500),
                );
            }
            primed = true;
        }
        for &rate in rates {
            next_message +=
                publish::paced(&mut *target.publisher, rate, next_message, Instant::now() + WARM_UP);
            shared.latency.reset();
            shared.split.reset();
            let cpu: f64 = target.pids.iter().map(|&p| cpu_seconds(p)).sum();
            let own = own_cpu_seconds();
            let start = Instant::now();
            let sent =
                publish::paced(&mut *target.publisher, rate, next_message, start + Duration::from_secs(secs));
            let elapsed = start.elapsed().as_secs_f64();
            let server_cpu =
                100.0 * (target.pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>() - cpu) / elapsed;
            let client_cpu = 100.0 * (own_cpu_seconds() - own) / elapsed;
            next_message += sent;
            // What is still on its way counts too, and must not spill into the next rate.
            let last_delivery = drain(&shared.latency);
            let (count, quantiles) = shared.latency.summary(&[0.5, 0.99, 0.999]);
            let split = shared.split.summary();
            let row = Row {
                server: target.name,
                subscribers: *subscribers,
                connected: shared.connected.load(Relaxed) - shared.closed.load(Relaxed).min(connected),
                rate,
                sent_per_s: sent as f64 / elapsed,
                // Over the time they took to arrive, backlog included.
                deliveries_per_s: count as f64 / elapsed.max((last_delivery - start).as_secs_f64()),
                quantiles,
                server_cpu,
                client_cpu,
                kb_per_conn,
                split: (split.frames > 0).then(|| split.line()),
            };
            println!("fanout: {}", format_row(&row));
            if let Some(split) = &row.split {
                println!("fanout: {}", split);
            }
            rows.push(row);
        }
        runtime.block_on(set.shutdown());
        // Let the server close its side before the next shape measures its memory.
        std::thread::sleep(Duration::from_secs(2));
    }
    rows
}

/// Waits until the subscribers have received what was sent (no new deliveries for
/// [`DRAIN_QUIET`]), at most [`DRAIN_MAX`]; returns when the last one came.
fn drain(latency: &stats::Histogram) -> Instant {
    let start = Instant::now();
    let mut seen = latency.summary(&[]).0;
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < DRAIN_QUIET && start.elapsed() < DRAIN_MAX {
        std::thread::sleep(Duration::from_millis(100));
        let now = latency.summary(&[]).0;
        if now != seen {
            (seen, quiet_since) = (now, Instant::now());
        }
    }
    quiet_since
}

fn format_row(r: &Row) -> String {
    format!(
        "| {} | {} ({} open) | {:.0} ({:.0} sent/s) | {:.0} | {:.1} | {:.1} | {:.1} | {:.0} % | {:.0} % | {:.1} |",
        r.server,
        r.subscribers,
        r.connected,
        r.rate,
        r.sent_per_s,
        r.deliveries_per_s,
        r.quantiles[0],
        r.quantiles[1],
        r.quantiles[2],
        r.server_cpu,
        r.client_cpu,
        r.kb_per_conn
    )
}

fn print_table(rows: &[Row], idle: &[(&str, f64, Option<f64>)], idle_secs: u64) {
    println!(
        "\n| server | subscribers | msg/s | deliveries/s | p50 ms | p99 ms | p999 ms | server CPU | client CPU | KB/conn |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in rows {
        println!("{}", format_row(r));
    }
    println!();
    for r in rows {
        if let Some(split) = &r.split {
            println!("{} {} x {:.0}/s: {split}", r.server, r.subscribers, r.rate);
        }
    }
    println!();
    for (server, cpu, services) in idle {
        let services = services.map(|c| format!(" (tansu + redis-server: {c:.2} %)")).unwrap_or_default();
        println!("idle CPU of {server} over {idle_secs} s, no subscribers: {cpu:.2} %{services}");
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `1000:200,2000;10000:10` -> [(1000, [200, 2000]), (10000, [10])].
fn parse_shapes(spec: &str) -> Vec<(usize, Vec<f64>)> {
    spec.split(';')
        .filter(|s| !s.trim().is_empty())
        .map(|shape| {
            let (subs, rates) = shape.split_once(':').expect("FANOUT_SHAPES: SUBSCRIBERS:RATE,RATE;...");
            let rates = rates.split(',').map(|r| r.trim().parse().expect("FANOUT_SHAPES: a rate")).collect();
            (subs.trim().parse().expect("FANOUT_SHAPES: a subscriber count"), rates)
        })
        .collect()
}
