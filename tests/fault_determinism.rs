//! Every instance decides the same through plugin faults. Two instances on one real
//! redis-server run the taxi tenant; through the admin API its chain gets a stage that
//! is slow on some inputs (a key that is a multiple of 10 costs it a million loop
//! iterations): on some batches it runs out of fuel, a fault both instances see alike.
//! Instance A is the slow machine: its call timeout is 1 ms (as if it ran a thousand
//! times slower than B, whose timeout is the default second), so it also sees
//! wall-clock overruns that B never does. It must not act on them alone: it publishes
//! each one to the log, and both fault the stage at that entry. Under `fail-open`,
//! `fail-closed` and `last-good`, both instances serve the same frames with the same
//! ids from the first entry to past the faults.

mod common;

use std::time::Duration;

use common::{Redis, SseClient, free_port, http_get};
use serde_json::json;
use streamgate::app::{self, Source};
use streamgate::config::Config;
use streamgate::demo;
use streamgate_runtime::FailurePolicy;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "fault-determinism-admin-token";
/// What a client saw: each frame's id and payloads.
type Seen = Vec<((u64, u64), Vec<serde_json::Value>)>;

fn instance_config(
    redis: &Redis,
    prefix: &str,
    policy: FailurePolicy,
    call_timeout_ms: Option<u64>,
) -> Config {
    let text = format!(
        "[redis]\nurl = \"{}\"\nkey_prefix = \"{prefix}\"\n[admin]\ntoken = \"{TOKEN}\"",
        redis.url()
    );
    let mut config = Config::parse(&text).unwrap();
    config.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    config.bus.heartbeat = Duration::from_millis(50);
    let mut taxi = demo::taxi_tenant();
    taxi.policies.truncate(0);
    taxi.policies
        .push(toml::from_str("plugin = \"builtin:dedupe\"\nconfig = { newest_per_frame = true }").unwrap());
    taxi.failure_policy = policy;
    taxi.call_timeout = call_timeout_ms.map(Duration::from_millis);
    config.tenants = vec![taxi];
    config
}

/// The sum of every series of `name` on `base`'s `/metrics` whose labels contain `labels`.
fn metric(base: &str, name: &str, labels: &str) -> f64 {
    let body = http_get(&format!("{base}/metrics")).expect("GET /metrics");
    body.lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Log positions of the tenant's control entries whose JSON has `op`.
async fn control_entries(
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    op: &str,
) -> Vec<(u64, u64)> {
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(format!("{prefix}:taxi:log"))
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .unwrap();
    let tag = format!("\"op\":\"{op}\"");
    entries
        .ids
        .iter()
        .filter(|e| e.get::<String>("c").is_some_and(|c| c.contains(&tag)))
        .map(|e| {
            let (ms, n) = e.id.split_once('-').unwrap();
            (ms.parse().unwrap(), n.parse().unwrap())
        })
        .collect()
}

/// Sets the taxi chain, through `base`'s admin API, to the dedupe stage and then the
/// `misbehave` fixture under `config`.
async fn set_misbehaving_chain(http: &reqwest::Client, base: &str, config: serde_json::Value) {
    let misbehave = std::fs::read(streamgate_runtime::builtin::component_path("fixture_misbehave")).unwrap();
    let upload = http.post(format!("{base}/admin/plugins")).bearer_auth(TOKEN).body(misbehave);
    let uploaded: serde_json::Value = upload.send().await.unwrap().json().await.unwrap();
    let plugin = uploaded["plugin"].as_str().unwrap_or_else(|| panic!("upload refused: {uploaded}"));
    let chain = json!({"policies": [
        {"plugin": "builtin:dedupe", "config": {"newest_per_frame": true}},
        {"plugin": plugin, "config": config},
    ]});
    let set = http.put(format!("{base}/admin/tenants/taxi/chain")).bearer_auth(TOKEN).json(&chain);
    let answer = set.send().await.unwrap();
    assert_eq!(answer.status(), 200, "chain set: {}", answer.text().await.unwrap());
}

/// Runs both instances under `policy` until both counted `faults` faults (and A at least
/// `reports` published overruns); returns how many overrun reports the log holds.
async fn round(redis: &Redis, policy: FailurePolicy, faults: f64, reports: usize) -> usize {
    let prefix = format!("faults-{policy:?}").to_lowercase();
    let a = instance_config(redis, &prefix, policy, Some(1));
    // B: a budget no call of this test reaches, however starved the machine (its faults
    // are the fuel's, the same everywhere); A: 1 ms, which every slow key overruns.
    let b = instance_config(redis, &prefix, policy, Some(30_000));
    let cancel = CancellationToken::new();
    let mut servers = Vec::new();
    let mut clients = Vec::new();
    for config in [&a, &b] {
        let source = Source::Simulator { taxis: 100, every: Duration::from_millis(200) };
        servers.push(tokio::spawn(app::serve(config.clone(), source, cancel.clone())));
        let listen = config.listen;
        common::wait_for("an instance to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(listen).is_ok()
        });
        let url = format!("http://{listen}/tenants/taxi/events?lastEventId=0-0");
        clients.push(SseClient::connect(&url).await);
    }

    // A stage slow on every tenth key, set on both through A's admin API.
    let http = reqwest::Client::new();
    let base_a = format!("http://{}", a.listen);
    let base_b = format!("http://{}", b.listen);
    let misbehave = json!({"fault": "slow-keys", "every": 10, "spin": 1_000_000});
    set_misbehaving_chain(&http, &base_a, misbehave).await;

    let fault_series = r#"plugin="misbehave@0.1.0",outcome="fault""#;
    common::wait_for(
        &format!("{policy:?}: {faults} faults on both, {reports} reports from A"),
        Duration::from_secs(90),
        || {
            let published = metric(&base_a, "streamgate_cluster_reports_total", "taxi") as usize;
            [&base_a, &base_b]
                .iter()
                .all(|base| metric(base, "streamgate_policy_outcomes_total", fault_series) >= faults)
                && published >= reports
        },
    );
    assert_eq!(metric(&base_b, "streamgate_cluster_reports_total", "taxi"), 0.0, "B never overran its 30 s");

    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let overruns = control_entries(&mut conn, &prefix, "fault-stage").await;
    let last_report = overruns.last().copied().unwrap_or_default();
    for (client, name) in clients.iter().zip(["A", "B"]) {
        client
            .wait_until(
                &format!("{policy:?}: {name}'s frames past the last report"),
                Duration::from_secs(30),
                |f| {
                    let past = f.iter().filter(|f| f.position() > last_report).count();
                    match (past, f.len()) {
                        (3.., 20..) => Ok(()),
                        _ => Err(format!("{past} frames after {last_report:?}, {} in all", f.len())),
                    }
                },
            )
            .await;
    }
    let seen: Vec<Seen> =
        clients.iter().map(|c| c.frames().iter().map(|f| (f.position(), f.payloads())).collect()).collect();
    let common_end = seen[0].last().unwrap().0.min(seen[1].last().unwrap().0);
    let upto = |f: &Seen| f.iter().filter(|(p, _)| *p <= common_end).cloned().collect::<Vec<_>>();
    let (frames_a, frames_b) = (upto(&seen[0]), upto(&seen[1]));
    assert!(frames_a.len() >= 10, "{policy:?}: enough frames to compare ({})", frames_a.len());
    if let Some(i) = frames_a.iter().zip(&frames_b).position(|(x, y)| x != y) {
        panic!("{policy:?}: frame {i} differs: A {:?} / B {:?}", frames_a[i].0, frames_b[i].0);
    }
    assert_eq!(frames_a.len(), frames_b.len(), "{policy:?}: both serve the same number of frames");
    cancel.cancel();
    for server in servers {
        server.await.unwrap().unwrap();
    }
    overruns.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_instances_serve_the_same_frames_through_faults_under_every_failure_policy() {
    let redis = Redis::start();
    let mut reports = 0;
    reports += round(&redis, FailurePolicy::FailOpen, 3.0, 1).await;
    reports += round(&redis, FailurePolicy::FailClosed, 3.0, 1).await;
    // last-good faults once: back to the configured chain, which has no slow stage.
    reports += round(&redis, FailurePolicy::LastGood, 1.0, 0).await;
    assert!(reports >= 2, "A's overruns reached the log ({reports} reports)");
}

/// `GET /admin/tenants/taxi` on `base`.
async fn inspect(http: &reqwest::Client, base: &str) -> serde_json::Value {
    let answer = http.get(format!("{base}/admin/tenants/taxi")).bearer_auth(TOKEN).send().await.unwrap();
    answer.json().await.unwrap()
}

/// A `last-good` revert leaves no entry in the log. An instance that starts after the
/// log no longer holds the entry that set the faulted chain (trimmed, as retention
/// does) must still start with the chain its peers went back to, not the faulted one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_starts_after_a_last_good_revert_runs_the_chain_its_peers_went_back_to() {
    let redis = Redis::start();
    let prefix = "late-start";
    let a = instance_config(&redis, prefix, FailurePolicy::LastGood, None);
    let cancel = CancellationToken::new();
    let source = || Source::Simulator { taxis: 100, every: Duration::from_millis(200) };
    let server_a = tokio::spawn(app::serve(a.clone(), source(), cancel.clone()));
    common::wait_for("A to listen", Duration::from_secs(10), || {
        std::net::TcpStream::connect(a.listen).is_ok()
    });
    let http = reqwest::Client::new();
    let base_a = format!("http://{}", a.listen);
    set_misbehaving_chain(&http, &base_a, json!({"fault": "trap", "from_batch": 20})).await;

    // The stage traps on its 20th batch; last-good goes back to the configured chain (version 0)
    // and the instance records that in the chain history.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let reverted_at = loop {
        let seen = inspect(&http, &base_a).await;
        let record =
            seen["history"].as_array().and_then(|h| h.iter().find(|r| r["last_good"] == true).cloned());
        if let Some(record) = record {
            assert_eq!(seen["active"]["version"], 0, "A went back to the configured chain: {seen}");
            assert_eq!(record["chain"]["version"], 0, "{record}");
            break record["position"].as_str().unwrap().to_string();
        }
        assert!(tokio::time::Instant::now() < deadline, "no last-good revert recorded: {seen}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Retention trims the log up to past the revert: the entry that set version 1 is gone.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (ms, n) = reverted_at.split_once('-').unwrap();
    let after = format!("{ms}-{}", n.parse::<u64>().unwrap() + 1);
    let _: u64 = redis::cmd("XTRIM")
        .arg(format!("{prefix}:taxi:log"))
        .arg("MINID")
        .arg(&after)
        .query_async(&mut conn)
        .await
        .unwrap();

    let c = instance_config(&redis, prefix, FailurePolicy::LastGood, None);
    let server_c = tokio::spawn(app::serve(c.clone(), source(), cancel.clone()));
    common::wait_for("C to listen", Duration::from_secs(10), || {
        std::net::TcpStream::connect(c.listen).is_ok()
    });
    let base_c = format!("http://{}", c.listen);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let seen = inspect(&http, &base_c).await;
        if seen["active"]["position"].as_str().is_some_and(|p| p != "0-0") {
            assert_eq!(seen["active"]["version"], 0, "C runs what A went back to, not version 1: {seen}");
            assert_eq!(seen["active"]["labels"], inspect(&http, &base_a).await["active"]["labels"]);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "C did not start reading: {seen}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cancel.cancel();
    for server in [server_a, server_c] {
        server.await.unwrap().unwrap();
    }
}
