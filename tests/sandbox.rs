//! The sandbox from outside: a misbehaving plugin hurts only its own tenant. A memory
//! bomb's memory comes back once its stage is quarantined, and a tenant whose plugin
//! spins forever does not slow another tenant's frames.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{SseClient, free_port};
use streamgate::app::{self, Source};
use streamgate::config::Config;
use streamgate::demo;
use streamgate::tenant::{PolicyRef, TenantConfig};
use streamgate_runtime::builtin::component_path;
use streamgate_runtime::{
    Chain, ChainOptions, ChainSpec, Counts, Event, FailurePolicy, PolicyRuntime, SandboxConfig,
};
use tokio_util::sync::CancellationToken;

/// One test at a time: one reads the whole process's memory, the other a tenant's
/// cadence beside a plugin that burns a core; neither measures the other's work.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn fixture(config: &str) -> PolicyRef {
    PolicyRef { plugin: component_path("fixture_misbehave"), config: Some(toml::from_str(config).unwrap()) }
}

/// A field of /proc/self/status, in KiB.
fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn batch(t: i64) -> Vec<Event> {
    (0..3)
        .map(|i| Event {
            key: format!("k{i}"),
            event_time: t,
            payload: Bytes::from_static(b"{}"),
            ..Default::default()
        })
        .collect()
}

#[test]
fn memory_returns_after_a_memory_bomb_is_quarantined() {
    const CAP_MIB: u64 = 256;
    let _one = ONE_AT_A_TIME.blocking_lock();
    let runtime = PolicyRuntime::new(&SandboxConfig {
        max_memory_bytes: (CAP_MIB << 20) as usize,
        call_timeout: Duration::from_secs(10),
        // All the fuel it wants: the memory cap is what must stop the bomb.
        fuel_per_call: u64::MAX / 4,
        ..SandboxConfig::default()
    });
    let options =
        ChainOptions { failure_policy: FailurePolicy::FailOpen, ..ChainOptions::defaults(&runtime) };
    let refs = [fixture("fault = \"memory-bomb\"\nfrom_batch = 2")];
    let spec = ChainSpec { version: 0, policies: refs.iter().map(|r| r.stage_spec(false)).collect() };
    let mut chain = Chain::build(&runtime, &spec, options).unwrap();
    let metrics = Counts::new("bomb");
    assert_eq!(chain.push(1, batch(1), &metrics).released.len(), 3);

    let before = proc_status_kib("VmRSS:");
    assert_eq!(chain.push(2, batch(2), &metrics).released.len(), 3, "fail-open passes the batch on");
    assert!(chain.quarantined(0), "the bomb's stage is quarantined");
    assert_eq!(metrics.plugin_count("misbehave@0.1.0", "fault"), 1);
    let peak = proc_status_kib("VmHWM:");
    let after = proc_status_kib("VmRSS:");
    assert!(
        peak >= before + (CAP_MIB / 2) * 1024,
        "the bomb did allocate (peak {peak} KiB vs {before} KiB before)"
    );
    assert!(
        after < before + 32 * 1024,
        "memory came back: {after} KiB now vs {before} KiB before the bomb (peak {peak} KiB)"
    );
}

fn tenant(name: &str, policies: Vec<PolicyRef>, call_timeout: Option<Duration>) -> TenantConfig {
    TenantConfig {
        name: name.into(),
        policies,
        call_timeout,
        latest_value: false,
        snapshot_on_connect: false,
        ..demo::taxi_tenant()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_plugin_does_not_slow_another_tenants_frames() {
    const TICK: Duration = Duration::from_millis(100);
    let _one = ONE_AT_A_TIME.lock().await;
    let mut config = Config::parse("").unwrap();
    config.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    config.bus.kind = streamgate::bus::BusKind::Memory;
    // Restart at once after every fault: the spinning tenant burns a whole core.
    config.sandbox.restart_backoff = Duration::ZERO;
    config.tenants = vec![
        tenant("spin", vec![fixture("fault = \"loop\"")], Some(Duration::from_millis(500))),
        tenant("calm", demo::taxi_tenant().policies, None),
    ];
    let cancel = CancellationToken::new();
    let server = tokio::spawn(app::serve(
        config.clone(),
        Source::Simulator { taxis: 50, every: TICK },
        cancel.clone(),
    ));
    let base = format!("http://{}", config.listen);
    common::wait_for("the server to listen", Duration::from_secs(10), || {
        std::net::TcpStream::connect(config.listen).is_ok()
    });
    let calm = SseClient::connect(&format!("{base}/tenants/calm/events")).await;
    // Warm up past the reorder window, then watch the cadence for a few seconds.
    calm.wait_until("calm's first frames", Duration::from_secs(10), |f| {
        if f.len() >= 5 { Ok(()) } else { Err(format!("{} frames", f.len())) }
    })
    .await;
    let mut arrivals = Vec::new();
    let mut seen = calm.frames().len();
    let watch_until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < watch_until {
        calm.wait_until("the next calm frame", Duration::from_secs(5), |f| {
            if f.len() > seen { Ok(()) } else { Err("no new frame".into()) }
        })
        .await;
        seen = calm.frames().len();
        arrivals.push(Instant::now());
    }
    let spin_faults = common::http_get(&format!("{base}/metrics"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("tenant=\"spin\"") && l.contains("outcome=\"fault\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    cancel.cancel();
    server.await.unwrap().unwrap();

    assert!(spin_faults >= 4.0, "the spinning plugin kept spinning and faulting ({spin_faults} faults)");
    let worst = arrivals.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    println!("calm tenant: {} frames in 4 s, worst gap {worst:?}", arrivals.len());
    // One frame per 100 ms tick; 2 ticks is the bound: one tick late at most.
    assert!(worst < 2 * TICK, "calm tenant's worst frame gap was {worst:?} (tick {TICK:?})");
}
