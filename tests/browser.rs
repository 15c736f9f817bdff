//! The pages as their users see them: headless Chromium (Debian's `chromium`), driven by
//! Playwright for Python (`tests/browser/pages.py`, installed by `scripts/setup.sh browser`,
//! which `make test` runs), against a real `streamgate demo` on a free loopback port.
//!
//! Screenshots of each page (and of a failure) go to `<target dir>/browser-artifacts/`; with
//! `STREAMGATE_UPDATE_SCREENSHOTS=1` the map's and the queue's also replace `docs/img/*.png`.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Instance;

/// Longer than the script's own bounded waits add up to: only a hung browser hits it.
const SCRIPT_LIMIT: Duration = Duration::from_secs(420);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the repository")
}

/// The Playwright venv `scripts/setup.sh browser` makes.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("STREAMGATE_BROWSER_PYTHON") {
        return p.into();
    }
    let cache = std::env::var_os("STREAMGATE_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/streamgate")
    });
    let python = cache.join("browser-venv/bin/python");
    assert!(
        python.exists(),
        "no Playwright venv at {}: run `scripts/setup.sh browser` (`make test` does)",
        python.display()
    );
    python
}

/// `<target dir>/browser-artifacts`: this test binary is `<target dir>/debug/deps/browser-…`.
fn artifacts() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors().nth(3).expect("a target dir above the test binary").join("browser-artifacts")
}

/// Runs one scenario of `pages.py` against `demo`; panics with its output unless it passed.
fn run(scenario: &str, demo: &Instance) {
    run_against(scenario, &demo.url(""), &[], &|| demo.log_text());
}

/// Runs one scenario against the demo at `url` (`env` for the script); `log` is the
/// demo's log, shown on failure.
fn run_against(scenario: &str, url: &str, env: &[(&str, &str)], log: &dyn Fn() -> String) {
    let artifacts = artifacts();
    let out_path = artifacts.join(format!("{scenario}.log"));
    std::fs::create_dir_all(&artifacts).unwrap();
    let out = std::fs::File::create(&out_path).unwrap();
    let mut cmd = Command::new(python());
    cmd.arg(repo().join("tests/browser/pages.py"))
        .args(["--url", url, "--scenario", scenario, "--artifacts"])
        .envs(env.iter().copied())
        .arg(&artifacts)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    if std::env::var("STREAMGATE_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        cmd.arg("--docs").arg(repo().join("docs/img"));
    }
    let mut child = cmd.spawn().expect("starting the browser test script");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > SCRIPT_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    println!("{output}\nartifacts (screenshots, this log): {}", artifacts.display());
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!(
            "browser scenario {scenario} failed ({s}):\n{output}\nartifacts in {}\nstreamgate's log:\n{}",
            artifacts.display(),
            log()
        ),
        None => panic!("browser scenario {scenario} still running after {SCRIPT_LIMIT:?}:\n{output}"),
    }
}

#[test]
fn the_map_shows_moving_taxis_and_removes_expired_ones() {
    // One taxi in 25 goes off duty 5 s, 15 s, 25 s, ... after the start: four expire
    // 30 s after their breaks start.
    let demo = Instance::demo(&["--taxis", "100", "--every-ms", "500"]);
    run("map", &demo);
}

#[test]
fn the_queue_page_follows_a_new_user_from_the_back_of_the_line_to_admission() {
    // A crowd of 450 (ten per taxi), five admitted every 500 ms and some leaving: the line
    // lasts about a minute, so even a browser slow to start joins some hundreds back, and
    // is admitted within about 45 s.
    let demo = Instance::demo(&["--taxis", "45", "--every-ms", "250"]);
    run("queue", &demo);
}

/// A demo with the admin API on (`STREAMGATE_ADMIN_TOKEN`), stopped when dropped.
struct AdminDemo {
    child: std::process::Child,
    url: String,
    log: PathBuf,
}

impl AdminDemo {
    fn start(token: &str, args: &[&str]) -> AdminDemo {
        let port = common::free_port();
        let log =
            std::env::temp_dir().join(format!("streamgate-admin-demo-{}-{port}.log", std::process::id()));
        let out = std::fs::File::create(&log).unwrap();
        let listen = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_streamgate"))
            .args(["demo", "--listen", &listen])
            .args(args)
            .env("STREAMGATE_ADMIN_TOKEN", token)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("starting streamgate demo");
        let demo = AdminDemo { child, url: format!("http://{listen}"), log };
        let ready = format!("{}/readyz", demo.url);
        common::wait_for("the demo to be ready", Duration::from_secs(30), || {
            common::http_answer(&ready).is_some_and(|(status, _)| status == 200)
        });
        demo
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for AdminDemo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

#[test]
fn the_shadow_page_follows_a_shadow_deploys_diff_over_time() {
    // Ten reports a second per taxi: the candidate's dedupe (every report of a frame)
    // decides differently from the demo's (each taxi's newest) within seconds.
    let token = "shadow-page-admin-token-0123";
    let demo = AdminDemo::start(token, &["--taxis", "200", "--every-ms", "100"]);
    run_against("shadow", &demo.url, &[("STREAMGATE_ADMIN_TOKEN", token)], &|| demo.log_text());
}
