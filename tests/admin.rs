//! The admin API and the operators' CLI on one instance (in-memory bus, simulated taxis,
//! so frames flow the whole time): tokens, every kind of bad upload refused with its
//! reason while frames keep flowing, setting and rolling back a chain, inspection, the
//! watched `plugins_dir`, and `streamgate plugin ...`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::SseClient;
use serde_json::Value;
use streamgate::app::{self, Source};
use streamgate::bus::BusKind;
use streamgate::config::Config;
use streamgate::demo;
use streamgate::tenant::PolicyRef;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "admin-token-for-tests-0123";

fn component(name: &str) -> PathBuf {
    PathBuf::from(streamgate_runtime::builtin::component_path(name))
}

struct Server {
    base: String,
    http: reqwest::Client,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Taxi tenants on the memory bus: `taxi` with builtins, `dev` reading its dedupe
    /// from the watched `plugins_dir`.
    async fn start(plugins_dir: &Path) -> Server {
        let port = common::free_port();
        let mut config = demo::demo_config(format!("127.0.0.1:{port}").parse().unwrap());
        config.bus.kind = BusKind::Memory;
        config.bus.heartbeat = Duration::from_millis(50);
        config.admin.token = Some(TOKEN.into());
        config.admin.max_plugin_bytes = 1 << 20;
        config.admin.watch_interval = Duration::from_millis(50);
        config.plugins_dir = Some(plugins_dir.to_path_buf());
        let mut dev = demo::taxi_tenant();
        dev.name = "dev".into();
        dev.policies[2] = PolicyRef { plugin: "dedupe.wasm".into(), ..dev.policies[2].clone() };
        config.tenants.push(dev);
        Config::validate(&config).unwrap();
        let cancel = CancellationToken::new();
        let every = Duration::from_millis(100);
        let task = tokio::spawn({
            let cancel = cancel.clone();
            async move { app::serve(config, Source::Simulator { taxis: 30, every }, cancel).await.unwrap() }
        });
        let server =
            Server { base: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new(), cancel, task };
        let start = Instant::now();
        while server.http.get(server.url("/readyz")).send().await.map(|r| r.status().as_u16()).ok()
            != Some(200)
        {
            assert!(start.elapsed() < Duration::from_secs(20), "server not ready in 20 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn call(&self, req: reqwest::RequestBuilder, token: Option<&str>) -> (u16, Value) {
        let req = match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.bytes().await.unwrap();
        (
            status,
            serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into())),
        )
    }

    async fn upload(&self, bytes: Vec<u8>, config: Option<&str>) -> (u16, Value) {
        let mut req = self.http.post(self.url("/admin/plugins")).body(bytes);
        if let Some(c) = config {
            req = req.query(&[("config", c)]);
        }
        self.call(req, Some(TOKEN)).await
    }

    async fn set_chain(&self, tenant: &str, chain: Value) -> (u16, Value) {
        self.call(
            self.http.put(self.url(&format!("/admin/tenants/{tenant}/chain"))).json(&chain),
            Some(TOKEN),
        )
        .await
    }

    async fn rollback(&self, tenant: &str) -> (u16, Value) {
        self.call(self.http.post(self.url(&format!("/admin/tenants/{tenant}/rollback"))), Some(TOKEN)).await
    }

    async fn inspect(&self, tenant: &str) -> Value {
        let (status, body) =
            self.call(self.http.get(self.url(&format!("/admin/tenants/{tenant}"))), Some(TOKEN)).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task).await.expect("clean shutdown").unwrap();
    }
}

/// What a bad upload is, its bytes, its `?config=`, the status and reason expected.
type BadUpload = (&'static str, Vec<u8>, Option<&'static str>, u16, &'static str);

fn error(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_else(|| panic!("an error message: {body}"))
}

fn taxi_chain(dedupe: &str) -> Value {
    serde_json::json!({ "policies": [
        { "plugin": "builtin:ordering", "config": { "window_ms": 1000 } },
        { "plugin": "builtin:staleness", "config": { "max_age_ms": 30000 } },
        { "plugin": dedupe, "config": { "newest_per_frame": true } },
    ]})
}

fn labels(v: &Value) -> Vec<String> {
    v["labels"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect()
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("streamgate-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(component("dedupe"), dir.join("dedupe.wasm")).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_refuses_bad_uploads_sets_rolls_back_and_watches_plugins_dir() {
    let dir = scratch_dir();
    let server = Server::start(&dir).await;
    let sse = SseClient::connect(&server.url("/tenants/taxi/events")).await;

    // Tokens.
    let (status, body) = server.call(server.http.get(server.url("/admin/tenants/taxi")), None).await;
    assert_eq!(status, 401, "{body}");
    assert!(error(&body).contains("Authorization: Bearer"), "{body}");
    let (status, _) = server.call(server.http.get(server.url("/admin/tenants/taxi")), Some("wrong")).await;
    assert_eq!(status, 401);

    // Bad uploads, each with its reason; frames flow throughout.
    let frames_before = sse.frames().len();
    let wrong_world = wat::parse_str(
        r#"(component (instance $i) (export "streamgate:policy/policy@0.5.0" (instance $i)))"#,
    )
    .unwrap();
    let misbehave = std::fs::read(component("fixture_misbehave")).unwrap();
    let dedupe = std::fs::read(component("dedupe")).unwrap();
    let cases: [BadUpload; 6] = [
        ("not wasm", b"hello, plugin".to_vec(), None, 422, "magic bytes"),
        ("a core module", b"\0asm\x01\0\0\0".to_vec(), None, 422, "core Wasm module, not a component"),
        ("a wrong world version", wrong_world, None, 422, "it exports [streamgate:policy/policy@0.5.0]"),
        ("a config it rejects", dedupe.clone(), Some(r#"{"by":"nope"}"#), 422, "rejected its config"),
        ("a trap on its first batch", misbehave, Some(r#"{"fault":"trap"}"#), 422, "failed its trial batch"),
        ("too big", vec![0u8; (1 << 20) + 1], None, 413, ""),
    ];
    for (what, bytes, config, want, reason) in cases {
        let (status, body) = server.upload(bytes, config).await;
        assert_eq!(status, want, "{what}: {body}");
        if !reason.is_empty() {
            assert!(error(&body).contains(reason), "{what}: {body}");
        }
    }
    let (status, body) = server.set_chain("taxi", taxi_chain(&format!("sha256:{}", "0".repeat(64)))).await;
    assert_eq!(status, 404, "{body}");
    assert!(error(&body).contains("not in the plugin store"), "{body}");
    let (status, body) =
        server.set_chain("taxi", serde_json::json!({ "policies": [{ "plugin": "/etc/passwd" }] })).await;
    assert_eq!(status, 422, "{body}");
    assert!(error(&body).contains("not a plugin reference"), "{body}");
    let (status, body) = server
        .set_chain(
            "taxi",
            serde_json::json!({ "policies": [{ "plugin": "builtin:dedupe", "config": {"by": 5} }] }),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(error(&body).contains("policy 0") && error(&body).contains("rejected its config"), "{body}");
    assert_eq!(server.inspect("taxi").await["active"]["version"], 0, "nothing bad got in");
    let n = frames_before + 3;
    sse.wait_until("frames to keep flowing", Duration::from_secs(10), |f| {
        if f.len() >= n { Ok(()) } else { Err(format!("{} frames", f.len())) }
    })
    .await;

    // A good upload, a chain, and rollbacks (which toggle like `undo`).
    let next = std::fs::read(component("fixture_dedupe_next")).unwrap();
    let (status, body) = server.upload(next.clone(), None).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!((body["name"].as_str(), body["version"].as_str()), (Some("dedupe"), Some("0.2.0")));
    let sha = body["plugin"].as_str().unwrap().to_string();
    assert_eq!(server.upload(next, None).await.0, 200, "the same bytes again: already stored");
    let (status, body) = server.set_chain("taxi", taxi_chain(&sha)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["applied"], true);
    assert_eq!(labels(&body["status"])[2], "dedupe@0.2.0");
    let transfer = &body["status"]["last_swap"]["stages"][2];
    assert_eq!(
        (transfer["state"].as_str(), transfer["from"].as_str()),
        (Some("restored"), Some("dedupe@0.1.0"))
    );
    let (status, body) = server.rollback("taxi").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["version"].as_u64(), labels(&body["status"])[2].as_str()), (Some(2), "dedupe@0.1.0"));
    let (_, body) = server.rollback("taxi").await;
    assert_eq!(labels(&body["status"])[2], "dedupe@0.2.0", "rolling back a rollback");
    let inspection = server.inspect("taxi").await;
    assert_eq!(inspection["history"].as_array().unwrap().len(), 3);
    assert_eq!(inspection["history"][1]["reason"], "rollback from version 1 to version 0");
    assert_eq!(inspection["swaps"], 3);
    assert!(inspection["calls"]["ordering@0.1.0"].as_u64().unwrap() > 0, "{inspection}");
    let (status, body) = server.rollback("queue").await;
    assert_eq!(status, 409, "{body}");
    assert!(error(&body).contains("no earlier chain"), "{body}");

    // A plugin that refuses the old state starts empty, and the API says why.
    let (status, body) = server.upload(std::fs::read(component("fixture_misbehave")).unwrap(), None).await;
    assert_eq!(status, 201, "{body}");
    let misbehave = body["plugin"].as_str().unwrap().to_string();
    let stage =
        |config: Value| serde_json::json!({ "policies": [{ "plugin": misbehave, "config": config }] });
    assert_eq!(server.set_chain("queue", stage(serde_json::json!({}))).await.0, 200);
    let (status, body) =
        server.set_chain("queue", stage(serde_json::json!({ "fault": "refuse-state" }))).await;
    assert_eq!(status, 200, "{body}");
    let transfer = &body["status"]["last_swap"]["stages"][0];
    assert_eq!(transfer["state"], "empty", "{body}");
    assert!(transfer["why"].as_str().unwrap().contains("unsupported state version 1"), "{body}");

    // plugins_dir: replacing the file swaps the tenant that uses it.
    assert_eq!(labels(&server.inspect("dev").await["active"])[2], "dedupe@0.1.0");
    let staging = dir.join("dedupe.wasm.part");
    std::fs::copy(component("fixture_dedupe_next"), &staging).unwrap();
    std::fs::rename(&staging, dir.join("dedupe.wasm")).unwrap();
    let start = Instant::now();
    loop {
        let active = server.inspect("dev").await["active"].clone();
        if labels(&active)[2] == "dedupe@0.2.0" {
            assert_eq!(active["last_swap"]["reason"], "plugins_dir: dedupe.wasm replaced");
            assert_eq!(active["policies"][2]["source"], "dedupe.wasm");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "plugins_dir swap not seen in 10 s: {active}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Rolling back to a configured chain that names a plugins_dir file is allowed.
    let (status, body) = server.rollback("dev").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"]["policies"][2]["plugin"], "dedupe.wasm", "{body}");

    // The CLI on top of the API.
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_streamgate"))
            .args(["plugin", "--url", &server.base])
            .args(args)
            .env("STREAMGATE_ADMIN_TOKEN", TOKEN)
            .output()
            .unwrap()
    };
    let out = cli(&["push", component("coalesce").to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("(coalesce@0.1.0,"), "{out:?}");
    let next = component("fixture_dedupe_next");
    let out = cli(&["set", "queue", "--policy", &format!("{}={{\"by\":\"id\"}}", next.display())]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("active on this instance"), "{out:?}");
    let out = cli(&["status", "queue"]);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(labels(&status["active"]), ["dedupe@0.2.0"]);
    assert_eq!(status["active"]["last_swap"]["stages"][0]["state"], "empty", "no dedupe ran before it");
    let out = cli(&["push", "/nonexistent.wasm"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent.wasm"), "{out:?}");
    let out = cli(&["set", "nope", "--policy", "builtin:dedupe"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("404: unknown tenant \"nope\""), "{out:?}");
    server.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
