//! A poisoned log cannot stop a tenant: garbage written straight into a tenant's Redis
//! stream (unknown fields, a batch that does not decode, a control entry this version
//! does not understand, a huge entry, two fields) between good entries is skipped by
//! every instance alike and counted by reason, and both instances go on serving the
//! same frames with the same ids.

mod common;

use std::time::Duration;

use common::{Redis, SseClient, free_port, http_get};
use streamgate::app::{self, Source};
use streamgate::config::Config;
use streamgate::demo;
use tokio_util::sync::CancellationToken;

const PREFIX: &str = "poison";

/// The fields of one stream entry.
type Fields = Vec<(&'static str, Vec<u8>)>;
/// What a client saw: each frame's id and payloads.
type Seen = Vec<((u64, u64), Vec<serde_json::Value>)>;

fn instance_config(redis: &Redis) -> Config {
    let mut config =
        Config::parse(&format!("[redis]\nurl = \"{}\"\nkey_prefix = \"{PREFIX}\"", redis.url())).unwrap();
    config.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    config.bus.heartbeat = Duration::from_millis(50);
    config.tenants = vec![demo::taxi_tenant()];
    config
}

/// Writes `fields` as one entry of the taxi tenant's stream; its id.
async fn xadd(conn: &mut redis::aio::MultiplexedConnection, fields: &Fields) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(format!("{PREFIX}:taxi:log")).arg("*");
    for (name, value) in fields {
        cmd.arg(*name).arg(value.as_slice());
    }
    cmd.query_async(conn).await.unwrap()
}

/// Waits (bounded) until the stream holds more than `len` entries; its new length.
async fn grown(conn: &mut redis::aio::MultiplexedConnection, len: usize) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now: usize =
            redis::cmd("XLEN").arg(format!("{PREFIX}:taxi:log")).query_async(conn).await.unwrap();
        if now > len {
            return now;
        }
        assert!(tokio::time::Instant::now() < deadline, "no new log entry within 10 s (still {now})");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn skipped(base: &str, reason: &str) -> f64 {
    let series = format!("streamgate_log_entries_skipped_total{{tenant=\"taxi\",reason=\"{reason}\"}}");
    let body = http_get(&format!("{base}/metrics")).expect("GET /metrics");
    body.lines().filter_map(|l| l.strip_prefix(&series)).filter_map(|v| v.trim().parse::<f64>().ok()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_entries_are_skipped_alike_and_every_good_frame_is_served() {
    let redis = Redis::start();
    let cancel = CancellationToken::new();
    let (a, b) = (instance_config(&redis), instance_config(&redis));
    let mut servers = Vec::new();
    for config in [&a, &b] {
        let source = Source::Simulator { taxis: 20, every: Duration::from_millis(100) };
        servers.push(tokio::spawn(app::serve(config.clone(), source, cancel.clone())));
        let listen = config.listen;
        common::wait_for("an instance to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(listen).is_ok()
        });
    }
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // Good traffic first, then each piece of garbage after a new good entry.
    let mut len = grown(&mut conn, 2).await;
    let garbage: [(&str, Fields); 5] = [
        ("bad_fields", vec![("zz", b"?".to_vec())]),
        ("bad_batch", vec![("b", b"not a batch".to_vec())]),
        ("bad_control", vec![("c", b"{\"op\":\"explode\"".to_vec())]),
        ("bad_batch", vec![("b", vec![0xff; 1 << 20])]),
        ("bad_fields", vec![("h", Vec::new()), ("b", b"x".to_vec())]),
    ];
    let mut last_garbage = String::new();
    for (_, fields) in &garbage {
        last_garbage = xadd(&mut conn, fields).await;
        len = grown(&mut conn, len + 1).await;
    }
    let last: (u64, u64) = {
        let (ms, n) = last_garbage.split_once('-').unwrap();
        (ms.parse().unwrap(), n.parse().unwrap())
    };
    // Both instances replay their rings from the start and go on past the garbage.
    let mut clients = Vec::new();
    for config in [&a, &b] {
        let url = format!("http://{}/tenants/taxi/events?lastEventId=0-0", config.listen);
        let client = SseClient::connect(&url).await;
        client
            .wait_until("frames after the garbage", Duration::from_secs(20), |f| {
                let past = f.iter().filter(|f| f.position() > last).count();
                if past >= 5 { Ok(()) } else { Err(format!("{past} frames after {last_garbage}")) }
            })
            .await;
        clients.push(client);
    }
    let frames: Vec<Seen> =
        clients.iter().map(|c| c.frames().iter().map(|f| (f.position(), f.payloads())).collect()).collect();
    let common_end = frames[0].last().unwrap().0.min(frames[1].last().unwrap().0);
    let upto = |f: &Seen| f.iter().filter(|(p, _)| *p <= common_end).cloned().collect::<Vec<_>>();
    assert!(common_end > last, "both compared streams go past the garbage");
    assert!(upto(&frames[0]).len() >= 5, "enough frames to compare: {}", upto(&frames[0]).len());
    assert_eq!(upto(&frames[0]), upto(&frames[1]), "both instances serve the same frames and ids");
    for config in [&a, &b] {
        let base = format!("http://{}", config.listen);
        for reason in ["bad_fields", "bad_batch", "bad_control"] {
            let want = garbage.iter().filter(|(r, _)| *r == reason).count() as f64;
            assert_eq!(skipped(&base, reason), want, "{base}: entries skipped as {reason}");
        }
    }
    cancel.cancel();
    for server in servers {
        server.await.unwrap().unwrap();
    }
}
