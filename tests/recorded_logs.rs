//! Recorded logs end to end: `streamgate record` copies a running taxi tenant's Redis
//! stream (a real redis-server, an in-process instance fed by the simulator) bounded by
//! `--max-entries`, and `streamgate conformance --against --log` replays the file: the
//! same plugin and config decide it alike (exit 0), another config differs (exit 1)
//! at an entry of the file, named by its position; the kit's own checks judge it too. A
//! truncated file and a tenant without a log are refused with the reason.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Redis, free_port};
use streamgate::app::{self, Source};
use streamgate::config::Config;
use streamgate::demo;
use streamgate_conformance::RecordedLog;
use tokio_util::sync::CancellationToken;

const PREFIX: &str = "recorded";
/// Entries the recording may read; the stream holds more by the time it runs.
const MAX_ENTRIES: usize = 250;

fn instance_config(redis: &Redis) -> Config {
    let mut config =
        Config::parse(&format!("[redis]\nurl = \"{}\"\nkey_prefix = \"{PREFIX}\"", redis.url())).unwrap();
    config.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    config.bus.heartbeat = Duration::from_millis(50);
    config.bus.batch_linger = Duration::from_millis(5);
    config.tenants = vec![demo::taxi_tenant()];
    config
}

/// Runs the CLI off the async workers; its exit code, stdout and stderr.
async fn cli(args: Vec<String>) -> (Option<i32>, String, String) {
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_streamgate")).args(&args).output().unwrap()
    })
    .await
    .unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

fn args(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Waits (bounded) until the tenant's stream holds more than `len` entries.
async fn stream_longer_than(redis: &Redis, len: usize) {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now: usize =
            redis::cmd("XLEN").arg(format!("{PREFIX}:taxi:log")).query_async(&mut conn).await.unwrap();
        if now > len {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream holds {now} entries after 60 s, not {len}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn scratch_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("streamgate-recorded-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

async fn record(redis: &Redis, tenant: &str, out: &Path) -> (Option<i32>, String, String) {
    let max = MAX_ENTRIES.to_string();
    let (url, out) = (redis.url(), out.display().to_string());
    let items = ["record", "--tenant", tenant, "--redis", &url, "--key-prefix", PREFIX, "--out", &out];
    cli(args(&[&items[..], &["--max-entries", &max]].concat())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_tenant_log_is_bounded_and_replayed_by_the_differential_kit() {
    let redis = Redis::start();
    let cancel = CancellationToken::new();
    let config = instance_config(&redis);
    let source = Source::Simulator { taxis: 40, every: Duration::from_millis(50) };
    let server = tokio::spawn(app::serve(config.clone(), source, cancel.clone()));
    stream_longer_than(&redis, MAX_ENTRIES + 50).await;

    let file = scratch_file("taxi.jsonl");
    let (code, _, stderr) = record(&redis, "taxi", &file).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains(&format!("stopped at --max-entries {MAX_ENTRIES}")), "{stderr}");
    let recorded = RecordedLog::read(&file).unwrap();
    assert_eq!(recorded.header.tenant, "taxi");
    assert_eq!(recorded.header.source, format!("{PREFIX}:taxi:log"));
    assert!(!recorded.entries.is_empty() && recorded.entries.len() <= MAX_ENTRIES, "{stderr}");
    assert!(recorded.events() >= 40, "the simulator's reports were recorded: {}", recorded.events());
    let nows: Vec<i64> = recorded.entries.iter().map(|e| e.now).collect();
    assert!(nows.windows(2).all(|w| w[0] <= w[1]), "log time never goes back");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("liveMapLocation") && !text.contains("\"lat"), "no payloads in the file");
    assert!(!file.with_extension("jsonl.partial").exists(), "the partial file was renamed");

    // From the instances' config file, starting at a position of the first recording.
    let since = recorded.entries[10].position.clone();
    let config_file = scratch_file("streamgate.toml");
    let minimal_tenant =
        "[[tenant]]\nname = \"taxi\"\ntopic = \"t\"\nkey = \"/k\"\ntime = \"/t\"\nevent = \"e\"";
    let toml = format!("[redis]\nurl = \"{}\"\nkey_prefix = \"{PREFIX}\"\n{minimal_tenant}\n", redis.url());
    std::fs::write(&config_file, toml).unwrap();
    let (config_path, since_file) = (config_file.display().to_string(), scratch_file("since.jsonl"));
    let since_out = since_file.display().to_string();
    let items = ["record", "--tenant", "taxi", "--config", &config_path, "--out", &since_out];
    let (code, _, stderr) =
        cli(args(&[&items[..], &["--since", &since, "--max-entries", "5"]].concat())).await;
    assert_eq!(code, Some(0), "{stderr}");
    let from_since = RecordedLog::read(&since_file).unwrap();
    assert_eq!(from_since.entries.len(), 5, "{stderr}");
    assert_eq!(from_since.entries[..], recorded.entries[10..15], "the same entries, from --since on");

    let log = file.display().to_string();
    let same = ["conformance", "builtin:dedupe", "--against", "builtin:dedupe", "--log", &log];
    let (code, stdout, stderr) = cli(args(&[&same[..], &["--recorded-only", "--json"]].concat())).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["identical"], true, "{stdout}");
    assert_eq!(json["cases"], 0, "no generated logs with --recorded-only");
    assert_eq!(json["recorded"][0]["entries"], recorded.entries.len(), "{stdout}");
    assert_eq!(json["recorded"][0]["first_difference"], serde_json::Value::Null);

    // As the taxi chain's third stage: what ordering and staleness pass on, when.
    let before = ["--before", r#"builtin:ordering={"window_ms":1000}"#, "--before", "builtin:staleness"];
    let (code, stdout, stderr) =
        cli(args(&[&same[..], &before[..], &["--recorded-only", "--json"]].concat())).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains("the stages before passed on"), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let seen = json["recorded"][0]["events"].as_u64().unwrap();
    assert!(seen > 0 && seen <= recorded.events() as u64, "{seen} of {} events passed on", recorded.events());
    let broken = ["--before", "builtin:nothing"];
    let (code, _, stderr) = cli(args(&[&same[..], &broken[..]].concat())).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--before builtin:nothing"), "{stderr}");

    // By id, every event of a tenant without ids (id hash 0) after the first is a duplicate.
    let by_id = [&same[..], &["--against-config", r#"{"by":"id"}"#, "--recorded-only"]].concat();
    let (code, stdout, stderr) = cli(args(&by_id)).await;
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("DIFFERENT") && stdout.contains("by old only"), "{stdout}");
    let (_, json, _) = cli(args(&[&by_id[..], &["--json"]].concat())).await;
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let first = &json["recorded"][0]["first_difference"];
    let position = first["position"].as_str().expect("the first difference names an entry");
    let entry = recorded.entries.iter().position(|e| e.position == position).expect("an entry of the file");
    assert_eq!(first["push"], entry + 1, "{json}");
    assert!(!recorded.entries[entry].events.is_empty(), "it differs where events are: {json}");
    assert!(stdout.contains(&format!("first at push {} (entry {position}", entry + 1)), "{stdout}");

    // Without --against, the checks that judge generated runs judge the recorded log too.
    let kit = ["conformance", "builtin:dedupe", "--log", &log, "--cases", "20", "--seed", "5", "--json"];
    let (code, stdout, stderr) = cli(args(&kit)).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let claim = json["checks"].as_array().unwrap().iter().find(|c| c["id"] == "claim/dedupe").unwrap();
    assert_eq!(claim["cases"], 21, "20 generated logs and the recorded one: {claim}");
    assert!(claim["reason"].as_str().unwrap().contains("1 of them recorded"), "{claim}");

    // A file cut short is refused with the reason, not replayed in part.
    let cut = scratch_file("cut.jsonl");
    std::fs::write(&cut, text.lines().take(10).map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let cut = cut.display().to_string();
    let (code, _, stderr) = cli(args(&[&same[..], &["--log", &cut]].concat())).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("truncated: its header declares"), "{stderr}");

    let (code, _, stderr) = record(&redis, "nobody", &scratch_file("nobody.jsonl")).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&format!("no log at {PREFIX}:nobody:log")), "{stderr}");
    assert!(!scratch_file("nobody.jsonl").exists());

    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let () =
        redis::cmd("SET").arg(format!("{PREFIX}:plain:log")).arg("x").query_async(&mut conn).await.unwrap();
    let (code, _, stderr) = record(&redis, "plain", &scratch_file("plain.jsonl")).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&format!("{PREFIX}:plain:log holds a string, not a tenant's log")), "{stderr}");

    cancel.cancel();
    server.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}
