//! streamgate on Redis with replicas (Sentinel) and on a Redis Cluster, against real
//! local processes (tansu, redis-server, sentinels, two `streamgate` instances): a
//! failover mid-stream loses nothing and both instances' streams stay identical; a
//! Cluster holds two tenants' logs on different shards, each with its chain history
//! beside it, and a plugin uploaded and a chain set through the admin API reach both
//! instances.

mod common;

#[allow(dead_code)]
mod chaos {
    pub mod client;
    pub mod feed;
    pub mod tally;
    pub mod tape;
}

mod topologies {
    pub mod servers;
}

use std::time::Duration;

use chaos::client::{Recorded, Recorder};
use chaos::feed::Feed;
use chaos::tally::{identical, ids_of, wait_complete};
use chaos::tape::position;
use common::{Instance, Tansu};
use topologies::servers::{Cluster, MASTER, Sentinels, cli};

const TOKEN: &str = "admin-token-for-redis-topologies";

/// Instances on `tansu` and the `[redis]` section given, serving a deduplicated
/// tenant per name (topic of the same name; every message keyed, with an `id`).
fn config(tansu: &Tansu, redis: &str, tenants: &[&str]) -> String {
    let mut config = format!(
        "[kafka]\nbrokers = \"{}\"\ngroup_id = \"topologies\"\nsession_timeout_ms = 6000\ninstance_id = \"\"\n\n\
         {redis}\n[bus]\nkind = \"redis-stream\"\nretention_ms = 3600000\nheartbeat_ms = 100\n\n\
         [admin]\ntoken = \"{TOKEN}\"\n",
        tansu.brokers()
    );
    for t in tenants {
        config.push_str(&format!(
            "\n[[tenant]]\nname = \"{t}\"\ntopic = \"{t}\"\nkey = \"/k\"\ntime = \"/t\"\nid = \"/id\"\n\
             event = \"update\"\nhistory_frames = 100000\n\n[[tenant.policies]]\nplugin = \"builtin:dedupe\"\n\
             config = {{ by = \"id\" }}\n"
        ));
    }
    config
}

fn quoted(urls: &[String]) -> String {
    urls.iter().map(|u| format!("\"{u}\"")).collect::<Vec<_>>().join(", ")
}

/// Every produced id exactly once in each stream, and the streams identical.
fn assert_complete_once_and_identical(streams: &[Recorded], produced: &[String]) {
    for (n, s) in streams.iter().enumerate() {
        let ids = ids_of(s);
        let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), produced.len(), "instance {n} delivered every produced id");
        assert_eq!(ids.len(), produced.len(), "instance {n} delivered no id twice");
    }
    if let Err(why) = identical(streams) {
        panic!("the instances' streams differ: {why}");
    }
}

/// `streamgate check --config` on `config`: its exit code and report.
fn check(config: &str) -> (i32, String) {
    let path = common::scratch_path("check.toml");
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_streamgate"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("running streamgate check");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().expect("exited"), text)
}

fn gaps(instance: &Instance, tenant: &str) -> f64 {
    instance.metric(&format!("streamgate_log_gaps_total{{tenant=\"{tenant}\"}}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_mid_stream_loses_nothing_and_streams_stay_identical() {
    let redis = tokio::task::spawn_blocking(Sentinels::start).await.unwrap();
    let tansu = Tansu::start();
    tansu.create_topic("feed", 4);
    let section = format!(
        "[redis]\ntopology = \"sentinel\"\nsentinels = [{}]\nmaster_name = \"{MASTER}\"\nkey_prefix = \"ha\"\n",
        quoted(&redis.urls())
    );
    let config = config(&tansu, &section, &["feed"]);
    let (code, report) = check(&config);
    let primary =
        format!("ok   redis primary \"{MASTER}\" at 127.0.0.1:{} (PING: PONG", redis.primary_port());
    assert!(
        code == 0 && report.contains(&primary),
        "check finds the primary through the sentinels: {report}"
    );
    let instances = [Instance::start(&config), Instance::start(&config)];
    let clients = [
        Recorder::connect(&instances[0].url(""), "feed", None).await,
        Recorder::connect(&instances[1].url(""), "feed", None).await,
    ];
    // Log readers read the replica (what they deliver, a failover to it keeps).
    let replica = redis.nodes.iter().map(|n| n.port).find(|&p| p != redis.primary_port()).unwrap();
    tokio::task::spawn_blocking(move || {
        common::wait_for("both instances' log readers on the replica", Duration::from_secs(20), || {
            cli(replica, &["CLIENT", "LIST"]).matches("cmd=xread").count() == 2
        })
    })
    .await
    .unwrap();
    let feed = Feed::start(&tansu.brokers(), "feed", 1_500, 100, None);
    feed.wait_acked(300, Duration::from_secs(60)).await;

    // The replica paused 1.5 s: the primary takes appends, no reader delivers them. What
    // the paused replica holds ends at or before the primary's last entry at the pause.
    let old_primary = redis.primary_port();
    let xlen = || cli(old_primary, &["XLEN", "ha:feed:log"]).trim().parse::<u64>().unwrap();
    let paused = redis.nodes.iter().find(|n| n.port == replica).unwrap();
    paused.signal("STOP");
    let last = cli(old_primary, &["XREVRANGE", "ha:feed:log", "+", "-", "COUNT", "1"]);
    let held_at_stop = position(last.lines().next().expect("the log has entries").trim());
    let xlen_before = xlen();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let xlen_after = xlen();
    let beyond: Vec<String> = clients
        .iter()
        .flat_map(|c| c.recorded().frames)
        .filter(|f| position(&f.id) > held_at_stop)
        .map(|f| f.id)
        .collect();
    paused.signal("CONT");
    assert!(beyond.is_empty(), "frames of entries no replica held (log at {held_at_stop:?}): {beyond:?}");
    assert!(xlen_after > xlen_before, "the primary took appends meanwhile ({xlen_before} -> {xlen_after})");
    feed.wait_acked(450, Duration::from_secs(60)).await;

    // The primary dies while the feed is still producing (the sentinels' promotion and
    // the pair settling afterwards may outlast the feed on a loaded machine).
    let acked_at_failover = feed.acked();
    let (redis, new_primary) = tokio::task::spawn_blocking(move || {
        let mut redis = redis;
        let new = redis.fail_over();
        (redis, new)
    })
    .await
    .unwrap();
    assert_ne!(old_primary, new_primary, "the sentinels promoted the replica");
    let produced = feed.finish(Duration::from_secs(120)).await;
    assert!(acked_at_failover < 1_500, "the failover happened mid-stream ({acked_at_failover} acked)");
    for (n, c) in clients.iter().enumerate() {
        wait_complete(c, &format!("instance {n}'s stream"), &produced.ids, Duration::from_secs(120)).await;
    }
    let streams = [clients[0].recorded(), clients[1].recorded()];
    assert_complete_once_and_identical(&streams, &produced.ids);
    for (n, i) in instances.iter().enumerate() {
        assert_eq!(gaps(i, "feed"), 0.0, "instance {n} read nothing the failover lost");
    }
    let failed: f64 =
        instances.iter().map(|i| i.metric("streamgate_bus_publish_errors_total{tenant=\"feed\"}")).sum();
    assert!(failed > 0.0, "appends failed during the failover and were published again");
    // The log is on the new primary, in full, under the unchanged key name.
    let length: usize = cli(new_primary, &["XLEN", "ha:feed:log"]).trim().parse().unwrap();
    assert!(length > 0, "the log lives on the promoted primary");
    drop(redis);
}

/// An admin API call with the token: status and JSON body.
async fn admin(req: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let resp = req.bearer_auth(TOKEN).send().await.expect("admin API answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// Two tenant names whose logs (`sg:{name}:log`) hash to slots on different nodes.
fn tenants_on_different_shards(cluster: &Cluster) -> (String, String) {
    let candidates = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"];
    let first = candidates[0];
    let home = cluster.node_serving(&format!("sg:{{{first}}}:log"));
    let other = candidates[1..]
        .iter()
        .find(|c| cluster.node_serving(&format!("sg:{{{c}}}:log")) != home)
        .expect("some candidate hashes to another shard");
    (first.to_string(), other.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_spreads_tenants_over_shards_and_the_admin_api_reaches_every_instance() {
    let cluster = tokio::task::spawn_blocking(Cluster::start).await.unwrap();
    let (a, b) = tenants_on_different_shards(&cluster);
    let tansu = Tansu::start();
    tansu.create_topic(&a, 4);
    tansu.create_topic(&b, 4);
    let section = format!(
        "[redis]\ntopology = \"cluster\"\nnodes = [{}]\nkey_prefix = \"sg\"\n",
        quoted(&cluster.urls())
    );
    let config = config(&tansu, &section, &[&a, &b]);
    let (code, report) = check(&config);
    assert!(
        code == 0 && report.contains("cluster_state ok, 3 primaries"),
        "check sees the cluster: {report}"
    );
    let instances = [Instance::start(&config), Instance::start(&config)];

    // Upload through one instance, set the chain of `a` through the other.
    let http = reqwest::Client::new();
    let plugin = std::fs::read(streamgate_runtime::builtin::component_path("fixture_dedupe_next")).unwrap();
    let (status, body) = admin(http.post(instances[0].url("/admin/plugins")).body(plugin)).await;
    assert_eq!(status, 201, "upload: {body}");
    let sha = body["plugin"].as_str().expect("the upload names its reference").to_string();
    let chain = serde_json::json!({ "policies": [{ "plugin": sha, "config": { "by": "id" } }] });
    let url = instances[1].url(&format!("/admin/tenants/{a}/chain"));
    let (status, body) = admin(http.put(url).json(&chain)).await;
    assert_eq!(status, 200, "set chain: {body}");
    for (n, i) in instances.iter().enumerate() {
        let url = i.url(&format!("/admin/tenants/{a}"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (_, body) = admin(http.get(&url)).await;
            if body.to_string().contains("dedupe@0.2.0") {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "instance {n} runs the uploaded plugin: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let clients = [
        [
            Recorder::connect(&instances[0].url(""), &a, None).await,
            Recorder::connect(&instances[0].url(""), &b, None).await,
        ],
        [
            Recorder::connect(&instances[1].url(""), &a, None).await,
            Recorder::connect(&instances[1].url(""), &b, None).await,
        ],
    ];
    let feeds = [
        Feed::start(&tansu.brokers(), &a, 400, 100, None),
        Feed::start(&tansu.brokers(), &b, 400, 100, None),
    ];
    let mut produced = Vec::new();
    for feed in feeds {
        produced.push(feed.finish(Duration::from_secs(120)).await.ids);
    }
    for (t, ids) in produced.iter().enumerate() {
        for (n, per_instance) in clients.iter().enumerate() {
            let what = format!("instance {n}'s stream of tenant {t}");
            wait_complete(&per_instance[t], &what, ids, Duration::from_secs(90)).await;
        }
        let streams = [clients[0][t].recorded(), clients[1][t].recorded()];
        assert_complete_once_and_identical(&streams, ids);
    }

    // Each tenant's log and chain history on one shard; the two tenants on two shards.
    let log_a = cluster.node_holding(&format!("sg:{{{a}}}:log")).expect("a's log exists");
    let log_b = cluster.node_holding(&format!("sg:{{{b}}}:log")).expect("b's log exists");
    assert_ne!(log_a, log_b, "the two tenants' logs are on different shards");
    let chains_a = cluster.node_holding(&format!("sg:{{{a}}}:chains")).expect("a's chain history exists");
    assert_eq!(chains_a, log_a, "a tenant's chain history shares its log's shard");
}
