//! Integration-test harness: real `redis-server` and tansu (Kafka) on free loopback
//! ports, streamgate instances as child processes of the built binary, and SSE clients
//! that record every frame. Everything started here is stopped on drop.
#![allow(dead_code)]

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::Notify;

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn scratch_path(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("streamgate-test-{}-{n}-{name}", std::process::id()))
}

/// Polls `ready` every 50 ms until it holds; panics with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn port_open(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

pub fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A private redis-server: no persistence, so it can be stopped and restarted.
pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Redis {
        let port = free_port();
        Redis { child: Self::spawn(port), port }
    }

    fn spawn(port: u16) -> Child {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server not found: run `make test`, which installs it");
        wait_for("redis-server to listen", Duration::from_secs(10), || port_open(port));
        child
    }

    /// Kills the server (losing everything, as without persistence) and starts a
    /// fresh one on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Kills the server and waits until its port is closed: Redis is down.
    pub fn stop(&mut self) {
        kill(&mut self.child);
        wait_for("the old redis-server to let go of its port", Duration::from_secs(10), || {
            !port_open(self.port)
        });
    }

    /// After [`Redis::stop`]: a fresh, empty server on the same port.
    pub fn start_again(&mut self) {
        self.child = Self::spawn(self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The process id (to pause it with SIGSTOP, or read its CPU time from /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// tansu, a Kafka-protocol broker, with in-memory storage.
pub struct Tansu {
    child: Child,
    pub port: u16,
    bin: PathBuf,
}

fn tansu_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("STREAMGATE_TANSU") {
        return p.into();
    }
    // The patched build scripts/setup.sh makes (the unpatched 0.6.0 skips records when a
    // fetch starts inside a record batch).
    let cached = PathBuf::from(std::env::var("HOME").unwrap_or_default())
        .join(".cache/streamgate/tansu-0.6.0-p3/bin/tansu");
    if cached.exists() { cached } else { "tansu".into() }
}

impl Tansu {
    pub fn start() -> Tansu {
        Self::start_on(free_port())
    }

    fn start_on(port: u16) -> Tansu {
        let bin = tansu_bin();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::File::create(scratch_path("tansu.log")).unwrap();
        let child = Command::new(&bin)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start tansu ({}): {e}; run `make test`, which installs it", bin.display())
            });
        wait_for("tansu to listen", Duration::from_secs(20), || port_open(port));
        Tansu { child, port, bin }
    }

    /// The broker's process id (to pause it with SIGSTOP, or read its CPU time from /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        let out = Command::new(&self.bin)
            .args(["topic", "create", "--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .args(["--partitions", &partitions.to_string(), name])
            .output()
            .expect("running tansu topic create");
        assert!(out.status.success(), "tansu topic create failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Tansu {
    /// Kills the broker (its in-memory topics are gone): Kafka is down.
    pub fn stop(&mut self) {
        kill(&mut self.child);
    }

    /// After [`Tansu::stop`]: a fresh broker on the same port, empty (memory storage).
    pub fn start_again(&mut self) {
        *self = Self::start_on(self.port);
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// A `streamgate run` child process.
pub struct Instance {
    child: Option<Child>,
    pub port: u16,
    log: PathBuf,
}

impl Instance {
    /// Starts an instance with `config` (TOML; `listen` is appended) and waits for `/readyz`.
    pub fn start(config: &str) -> Instance {
        Self::start_within(config, Duration::from_secs(30))
    }

    /// [`Self::start`], waiting up to `limit` for `/readyz` (a long log to replay).
    pub fn start_within(config: &str, limit: Duration) -> Instance {
        Self::launch(free_port(), config, limit)
    }

    /// Like [`Instance::start`], on `port`: an instance restarted where it was (behind a
    /// load balancer, which knows it by its address).
    pub fn start_on(port: u16, config: &str) -> Instance {
        Self::launch(port, config, Duration::from_secs(30))
    }

    fn launch(port: u16, config: &str, limit: Duration) -> Instance {
        let path = scratch_path("config.toml");
        std::fs::write(&path, format!("listen = \"127.0.0.1:{port}\"\n{config}")).unwrap();
        Self::spawn(port, &["run".into(), "--config".into(), path.into_os_string()], limit)
    }

    /// Starts `streamgate demo ARGS` (the embedded default: simulators on the in-memory
    /// bus) on a free loopback port and waits for `/readyz`.
    pub fn demo(args: &[&str]) -> Instance {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut all: Vec<OsString> = vec!["demo".into(), "--listen".into(), listen.into()];
        all.extend(args.iter().map(OsString::from));
        Self::spawn(port, &all, Duration::from_secs(30))
    }

    fn spawn(port: u16, args: &[OsString], limit: Duration) -> Instance {
        let log = scratch_path("streamgate.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_streamgate"))
            .args(args)
            .env("RUST_LOG", "info,rdkafka=warn")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("starting streamgate");
        let mut instance = Instance { child: Some(child), port, log };
        let url = instance.url("/readyz");
        let start = Instant::now();
        loop {
            if http_status(&url) == Some(200) {
                break;
            }
            if let Some(status) = instance.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("streamgate exited with {status} before ready:\n{}", instance.log_text());
            }
            assert!(start.elapsed() < limit, "streamgate not ready in {limit:?}:\n{}", instance.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
        instance
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The process id (to read its memory from /proc).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Resident memory of the process, bytes (Linux).
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let kb =
            status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().strip_suffix("kB"));
        kb.and_then(|v| v.trim().parse::<u64>().ok()).expect("VmRSS in /proc/PID/status") * 1024
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the process at once (no graceful shutdown), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c);
        }
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(15) {
                kill(&mut child);
                panic!("streamgate did not stop within 15 s of SIGTERM:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One Prometheus sample, e.g. `metric("streamgate_frames_total{tenant=\"taxi\"}")`.
    pub fn metric(&self, series: &str) -> f64 {
        let body = http_get(&self.url("/metrics")).expect("GET /metrics");
        body.lines()
            .filter_map(|l| l.strip_prefix(series))
            .filter_map(|rest| rest.trim().parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c);
        }
    }
}

/// A blocking one-shot HTTP/1.0 GET: status and body, or `None` when nobody answers.
pub fn http_answer(url: &str) -> Option<(u16, String)> {
    http_request(url)
}

/// A blocking one-shot HTTP/1.0 GET: status code, or `None` when nobody answers.
fn http_status(url: &str) -> Option<u16> {
    let (status, _) = http_request(url)?;
    Some(status)
}

/// Body of a 200 answer.
pub fn http_get(url: &str) -> Option<String> {
    let (status, body) = http_request(url)?;
    (status == 200).then_some(body)
}

fn http_request(url: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}")))?;
    let mut s = TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// One received SSE event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseFrame {
    pub event: String,
    pub id: String,
    pub data: String,
}

impl SseFrame {
    /// The ms part of the id: the log time of the frame (Redis stream ids).
    pub fn log_time(&self) -> i64 {
        self.position().0 as i64
    }

    /// The id as (ms, n), ordered like log positions.
    pub fn position(&self) -> (u64, u64) {
        let (ms, n) = self.id.split_once('-').expect("id is <ms>-<n>");
        (ms.parse().unwrap(), n.parse().unwrap())
    }

    pub fn payloads(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.data).expect("data is a JSON array")
    }
}

/// An SSE client recording every frame in the background.
pub struct SseClient {
    frames: Arc<Mutex<Vec<SseFrame>>>,
    changed: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl SseClient {
    /// Connects and returns once the server answered (the subscription exists).
    pub async fn connect(url: &str) -> SseClient {
        let response = reqwest::Client::new()
            .get(url)
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
        assert_eq!(response.status(), 200, "GET {url}");
        let frames = Arc::new(Mutex::new(Vec::new()));
        let changed = Arc::new(Notify::new());
        let task = tokio::spawn({
            let (frames, changed) = (frames.clone(), changed.clone());
            async move {
                let mut body = response.bytes_stream();
                let mut buf = String::new();
                while let Some(Ok(chunk)) = body.next().await {
                    buf.push_str(std::str::from_utf8(&chunk).expect("SSE is UTF-8"));
                    while let Some(end) = buf.find("\n\n") {
                        let block: String = buf.drain(..end + 2).collect();
                        if let Some(frame) = parse_block(&block) {
                            frames.lock().unwrap().push(frame);
                            changed.notify_waiters();
                        }
                    }
                }
            }
        });
        SseClient { frames, changed, task }
    }

    pub fn frames(&self) -> Vec<SseFrame> {
        self.frames.lock().unwrap().clone()
    }

    /// Waits until `check(frames)` is `Ok`; after `timeout`, panics naming `what` and
    /// the last `Err` (say what is still missing).
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&[SseFrame]) -> Result<(), String>,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            let outcome = check(&self.frames.lock().unwrap());
            let Err(missing) = outcome else { return };
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let n = self.frames.lock().unwrap().len();
                panic!("timed out after {timeout:?} waiting for {what} ({n} frames received): {missing}");
            }
        }
    }
}

impl Drop for SseClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Parses one SSE block; comments and `retry:` blocks give `None`.
fn parse_block(block: &str) -> Option<SseFrame> {
    let (mut event, mut id, mut data) = (String::new(), String::new(), Vec::new());
    for line in BufReader::new(block.as_bytes()).lines() {
        let line = line.unwrap();
        if let Some(v) = line.strip_prefix("event: ") {
            event = v.to_string();
        } else if let Some(v) = line.strip_prefix("id: ") {
            id = v.to_string();
        } else if let Some(v) = line.strip_prefix("data: ") {
            data.push(v.to_string());
        }
    }
    (!data.is_empty()).then(|| SseFrame { event, id, data: data.join("\n") })
}

/// The start of an instance config: this Kafka and Redis, a consumer group, and a
/// session timeout short enough for tests to see a crash's rebalance. Dynamic group
/// membership: tansu 0.6.0 rebalances a group with static members (`group.instance.id`,
/// streamgate's default) every session timeout, and may not fetch in between.
pub fn services_config(tansu: &Tansu, redis: &Redis, group: &str) -> String {
    format!(
        "[kafka]\nbrokers = \"{}\"\ngroup_id = \"{group}\"\nsession_timeout_ms = 6000\ninstance_id = \"\"\n\n\
         [redis]\nurl = \"{}\"\n\n[bus]\nkind = \"redis-stream\"\n",
        tansu.brokers(),
        redis.url()
    )
}

/// The live taxi map tenant, as a config fragment: reorder window 1 s, nothing older
/// than 30 s of log time, per taxi never back in time, snapshot for new viewers.
pub const TAXI_TENANT: &str = r#"
[[tenant]]
name = "taxi"
topic = "taxi"
key = "/mediaId"
time = "/timestamp"
event = "liveMapLocation"
latest_value = true
snapshot_on_connect = true

[[tenant.policies]]
plugin = "builtin:ordering"
config = { window_ms = 1000 }

[[tenant.policies]]
plugin = "builtin:staleness"
config = { max_age_ms = 30000 }

[[tenant.policies]]
plugin = "builtin:dedupe"
config = { newest_per_frame = true, forget_after_ms = 600000 }
"#;

/// The waiting-queue tenant, as a config fragment: per-user delivery, dedupe by
/// eventId, ranks coalesced per frame, admissions never dropped.
pub const QUEUE_TENANT: &str = r#"
[[tenant]]
name = "queue"
topic = "queue"
key = "/userId"
time = "/timestamp"
id = "/eventId"
tag = "/kind"
event = "queueUpdate"

[[tenant.policies]]
plugin = "builtin:dedupe"
config = { by = "id", forget_after_ms = 600000 }

[[tenant.policies]]
plugin = "builtin:coalesce"
config = { tags = ["rank"] }
"#;
