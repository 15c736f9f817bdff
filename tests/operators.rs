//! Operators' basics: `streamgate check` against a real tansu and redis-server (all
//! reachable, a wrong broker port, Redis stopped, a missing topic, malformed configs),
//! JSON log lines by flag or env, and the Grafana dashboard in `deploy/grafana`
//! querying only metrics (and labels) a live instance serves.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use common::{Instance, QUEUE_TENANT, Redis, TAXI_TENANT, Tansu, free_port, http_get, services_config};
use serde_json::Value;

/// Writes `text` to a fresh file and returns its path.
fn config_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("streamgate-operators-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the binary with `args` (and `env`), without the caller's STREAMGATE_* overrides.
fn streamgate(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamgate"));
    cmd.args(args).env("RUST_LOG", "info,rdkafka=warn");
    for var in
        ["STREAMGATE_KAFKA_BROKERS", "STREAMGATE_REDIS_URL", "STREAMGATE_LOG_FORMAT", "STREAMGATE_LISTEN"]
    {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied()).output().expect("running streamgate")
}

/// `streamgate check --config PATH EXTRA...`: exit code and stdout (stderr appended).
fn check(path: &std::path::Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["check", "--config", path.to_str().unwrap(), "--timeout-ms", "10000"];
    args.extend(extra);
    let out = streamgate(&args, &[]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().expect("exited"), text)
}

#[test]
fn check_passes_with_everything_reachable_and_names_each_failing_address() {
    let (tansu, mut redis) = (Tansu::start(), Redis::start());
    tansu.create_topic("taxi", 2);
    let good = format!("{}{TAXI_TENANT}", services_config(&tansu, &redis, "check"));
    let path = config_file("good.toml", &good);
    let (code, out) = check(&path, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("ok   kafka {} (metadata: ", tansu.brokers())), "{out}");
    assert!(
        out.contains(&format!("ok   topic taxi (tenant taxi) on {}: 2 partitions", tansu.brokers())),
        "{out}"
    );
    assert!(out.contains(&format!("ok   redis 127.0.0.1:{} (PING: PONG", redis.port)), "{out}");
    assert!(out.contains("ok   chain of tenant taxi: 3 stages created"), "{out}");
    assert!(out.lines().last().unwrap().starts_with("check passed: "), "{out}");
    assert!(!out.contains("FAIL"), "{out}");

    // A second broker address nobody listens on: named, the rest still checked.
    let wrong = format!("127.0.0.1:{}", free_port());
    let two = good.replace(&tansu.brokers(), &format!("{},{wrong}", tansu.brokers()));
    let (code, out) = check(&config_file("wrong-port.toml", &two), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("FAIL kafka {wrong}: connection refused")), "{out}");
    assert!(out.contains(&format!("ok   kafka {} ", tansu.brokers())), "{out}");
    assert!(out.contains("ok   redis "), "{out}");
    assert!(out.lines().last().unwrap().starts_with("check failed: 1 of "), "{out}");

    // A tenant whose topic does not exist.
    let missing = format!("{}{QUEUE_TENANT}", services_config(&tansu, &redis, "check"));
    let (code, out) = check(&config_file("missing-topic.toml", &missing), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL topic queue (tenant queue)"), "{out}");
    assert!(out.contains("no such topic"), "{out}");

    // A chain naming an upload the plugin store in Redis does not hold.
    let upload = format!("sha256:{}", "0".repeat(64));
    let uploaded = good.replace("builtin:ordering", &upload);
    let uploaded = config_file("uploaded.toml", &uploaded);
    let (code, out) = check(&uploaded, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("FAIL chain of tenant taxi: plugin {upload} is not in the plugin store")),
        "{out}"
    );
    let (code, out) = check(&uploaded, &["--offline"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("skip chain of tenant taxi: names uploaded plugins"), "{out}");

    redis.stop();
    let (code, out) = check(&path, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("FAIL redis 127.0.0.1:{}: connection refused", redis.port)), "{out}");
    assert!(out.contains(&format!("ok   kafka {} ", tansu.brokers())), "{out}");

    // --offline: the config alone, with Redis still down.
    let (code, out) = check(&path, &["--offline"]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("kafka") && !out.contains("redis"), "no network checks offline: {out}");
    assert!(out.contains("ok   chain of tenant taxi"), "{out}");
}

/// A broker that listens on one port but advertises another, where nothing listens: the
/// bootstrap address answers, yet every consumer would fail on the advertised one.
#[test]
fn check_names_an_advertised_broker_nobody_can_reach() {
    struct Broker(std::process::Child);
    impl Drop for Broker {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let (listen, advertised) = (free_port(), free_port());
    let bin = std::env::var_os("STREAMGATE_TANSU").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/streamgate/tansu-0.6.0-p3/bin/tansu")
    });
    let _broker = Broker(
        Command::new(&bin)
            .args(["broker", "--storage-engine", "memory://tansu/"])
            .args(["--listener-url", &format!("tcp://127.0.0.1:{listen}")])
            .args(["--advertised-listener-url", &format!("tcp://127.0.0.1:{advertised}")])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}; run `make test`, which builds it", bin.display())),
    );
    common::wait_for("tansu to listen", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", listen)).is_ok()
    });
    let config =
        format!("[kafka]\nbrokers = \"127.0.0.1:{listen}\"\n[bus]\nkind = \"memory\"\n{QUEUE_TENANT}");
    let file = config_file("advertised.toml", &config);
    // A broker just started may take longer than the check's 2 s to answer its first
    // metadata request on a loaded machine: wait until it answers one (bounded).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (code, out) = loop {
        let (code, out) = check(&file, &[]);
        if !out.contains("no metadata within") || std::time::Instant::now() > deadline {
            break (code, out);
        }
    };
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("ok   kafka 127.0.0.1:{listen} (metadata: ")), "{out}");
    let line = format!("as advertised, 127.0.0.1:{advertised}: connection refused");
    assert!(out.lines().any(|l| l.starts_with("FAIL kafka broker ") && l.contains(&line)), "{out}");
    assert!(out.contains("skip redis: bus.kind = \"memory\""), "{out}");
    assert!(!out.contains("librdkafka"), "the client's own errors stay out of the report: {out}");
}

#[test]
fn check_refuses_a_bad_config_with_the_reason_and_line() {
    let broken = config_file("broken.toml", "listen = \"127.0.0.1:1\"\n\n[[tenant]\nname = \"taxi\"\n");
    let (code, out) = check(&broken, &["--offline"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.starts_with("FAIL config: "), "{out}");
    assert!(out.contains("line 3"), "the parse error names the line: {out}");

    let typo = TAXI_TENANT.replace("\"/mediaId\"", "\"mediaId\"");
    let (code, out) = check(&config_file("typo.toml", &typo), &["--offline"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("JSON pointer"), "{out}");

    let keyless = format!("{TAXI_TENANT}\n[tenant.auth]\nkey_file = \"/nonexistent/taxi.keys\"\n");
    let (code, out) = check(&config_file("keyless.toml", &keyless), &["--offline"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("/nonexistent/taxi.keys"), "the unreadable key file is named: {out}");

    let unknown_plugin = TAXI_TENANT.replace("builtin:ordering", "builtin:no-such-plugin");
    let (code, out) = check(&config_file("unknown-plugin.toml", &unknown_plugin), &["--offline"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL chain of tenant taxi: "), "{out}");
    assert!(out.contains("no-such-plugin"), "{out}");
}

#[test]
fn logs_are_text_by_default_and_json_by_flag_or_env() {
    let missing = "/nonexistent/streamgate.toml";
    let text = streamgate(&["run", "--config", missing], &[]);
    let stderr = String::from_utf8_lossy(&text.stderr);
    assert!(!text.status.success());
    assert!(stderr.starts_with("streamgate: cannot read config file"), "{stderr}");

    let json = streamgate(&["run", "--config", missing], &[("STREAMGATE_LOG_FORMAT", "json")]);
    let stderr = String::from_utf8_lossy(&json.stderr);
    assert!(!json.status.success());
    let line: Value = serde_json::from_str(stderr.lines().next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("not a JSON line ({e}): {stderr}"));
    assert_eq!(line["level"], "ERROR", "{line}");
    assert!(line["fields"]["error"].as_str().unwrap().contains("cannot read config file"), "{line}");

    let refused = streamgate(&["run", "--config", missing, "--log-format", "yaml"], &[]);
    assert_eq!(refused.status.code(), Some(2), "clap refuses an unknown format");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("text, json"), "the choices are named");

    let demo = Instance::demo(&["--log-format", "json", "--taxis", "20"]);
    let log = demo.log_text();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}\n{log}")))
        .collect();
    let listening = lines
        .iter()
        .find(|l| l["fields"]["message"].as_str().is_some_and(|m| m.contains("streamgate listening on")))
        .unwrap_or_else(|| panic!("no listening line: {log}"));
    assert_eq!(listening["level"], "INFO");
    assert!(listening["target"].as_str().unwrap().starts_with("streamgate"), "{listening}");
    assert!(listening["timestamp"].as_str().is_some_and(|t| t.contains('T')), "{listening}");
    let started = lines.iter().find(|l| l["fields"]["message"] == "tenant started").expect("a tenant line");
    assert!(started["fields"]["tenant"].is_string(), "fields are their own keys: {started}");
}

/// The metric names and label names a PromQL expression uses (the ones Prometheus adds
/// itself, instance and job, left out). Identifiers followed by `(` are functions.
fn expr_terms(expr: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut metrics, mut labels) = (BTreeSet::new(), BTreeSet::new());
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        if i > start {
            let word = &expr[start..i];
            if word.starts_with("streamgate_") {
                metrics.insert(word.to_string());
            } else if expr[i..].trim_start().starts_with(['=', '!'])
                || (expr[..start].trim_end().ends_with(['(', ','])
                    && !expr[i..].trim_start().starts_with('('))
            {
                // In `{label=~"…"}` or a `by (a, b)` list.
                labels.insert(word.to_string());
            }
        } else {
            i += 1;
        }
    }
    labels.retain(|l| !["instance", "job"].contains(&l.as_str()) && !l.starts_with("__"));
    (metrics, labels)
}

/// Every value under the key `key`, anywhere in `v`.
fn collect<'a>(v: &'a Value, key: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == key {
                    out.push(x);
                }
                collect(x, key, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect(x, key, out)),
        _ => {}
    }
}

#[test]
fn the_dashboard_queries_only_what_a_live_instance_serves() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/grafana/streamgate.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("valid JSON");

    // A datasource variable, and no panel, target or variable pinned to a UID.
    let vars = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        vars.iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus" && v["name"] == "datasource")
    );
    let mut sources = Vec::new();
    collect(&dashboard, "datasource", &mut sources);
    let pinned: Vec<_> = sources.iter().filter(|d| d["uid"] != "${datasource}").collect();
    assert!(!sources.is_empty() && pinned.is_empty(), "datasources not from the variable: {pinned:?}");

    let mut exprs = Vec::new();
    collect(&dashboard, "expr", &mut exprs);
    collect(&dashboard, "definition", &mut exprs);
    let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in exprs {
        let (metrics, labels) = expr_terms(e.as_str().expect("expressions are strings"));
        assert_eq!(metrics.len(), 1, "one metric per query, so its labels can be checked: {e}");
        wanted.entry(metrics.into_iter().next().unwrap()).or_default().extend(labels);
    }
    // The figures the README's /metrics list names each have a panel.
    for name in [
        "streamgate_source_messages_total",
        "streamgate_source_dropped_total",
        "streamgate_source_offset_gaps_total",
        "streamgate_source_lag",
        "streamgate_source_partitions_stalled",
        "streamgate_bus_published_events_total",
        "streamgate_log_entries_total",
        "streamgate_log_entries_skipped_total",
        "streamgate_policy_outcomes_total",
        "streamgate_cluster_reports_total",
        "streamgate_frames_total",
        "streamgate_expired_keys_total",
        "streamgate_sse_clients",
        "streamgate_sse_lagged_total",
        "streamgate_http_refused_total",
    ] {
        assert!(wanted.contains_key(name), "no panel queries {name}");
    }

    // Fast taxis with duplicates: policy drops show up within seconds.
    let demo = Instance::demo(&["--taxis", "50", "--every-ms", "100"]);
    let series = |text: &str| -> BTreeMap<String, BTreeSet<String>> {
        let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let labels = found.entry(line[..name_end].to_string()).or_default();
            if let Some(inner) = line[name_end..].strip_prefix('{').and_then(|r| r.split_once('}')) {
                labels.extend(
                    inner.0.split(',').filter_map(|kv| kv.split_once('=')).map(|(k, _)| k.to_string()),
                );
            }
        }
        found
    };
    // Series labelled by plugin appear with the first policy call: poll until all are there.
    let start = std::time::Instant::now();
    loop {
        let served = series(&http_get(&demo.url("/metrics")).unwrap_or_default());
        let missing: Vec<String> = wanted
            .iter()
            .flat_map(|(name, labels)| match served.get(name) {
                None => vec![format!("{name} (no samples)")],
                Some(have) => labels.difference(have).map(|l| format!("{name} label {l}")).collect(),
            })
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the dashboard queries what /metrics lacks: {missing:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
