//! The soak: the demo's two tenants (the taxi map and the waiting queue) fed through real
//! tansu and redis-server to three instances at a steady rate for a long time, with SSE
//! clients connected throughout (some hopping between instances with `Last-Event-ID`),
//! sampling each instance's memory and file descriptors, Redis's memory and events
//! delivered. After the warm-up nothing may grow beyond its bound, and every instance
//! serves the same streams. Writes the figures (`soak-*.md`) and a plot (`soak-*.svg`)
//! next to the build output.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::plot::{Panel, Series, svg};
use super::samples::{self, Bound, Growth, Sample};
use super::soak_feed::{self, Source};
use super::soak_run::{SoakPlan, Tapes};
use crate::common::{Instance, Redis, Tansu};

/// Runs the soak the plan describes and asserts its bounds.
pub async fn soak() {
    let plan = SoakPlan::get();
    let (redis, tansu) = tokio::task::block_in_place(|| (Redis::start(), Tansu::start()));
    tansu.create_topic("taxi-locations", 4);
    tansu.create_topic("queue-events", 4);
    let config = plan.config(&tansu.brokers(), &redis.url());
    let instances: Vec<Instance> =
        tokio::task::block_in_place(|| (0..3).map(|_| Instance::start(&config)).collect());
    let pids: Vec<u32> = instances.iter().map(Instance::pid).collect();
    let bases: Vec<String> = instances.iter().map(|i| i.url("")).collect();
    let cancel = CancellationToken::new();
    let tapes = Tapes::start(&plan, &bases, &cancel);
    let stop = CancellationToken::new();
    let brokers = tansu.brokers();
    let feeds = [
        soak_feed::start(
            &brokers,
            Source::taxis("taxi-locations", plan.taxis, plan.taxi_every),
            stop.clone(),
        ),
        soak_feed::start(&brokers, Source::queue("queue-events", plan.crowd, plan.queue_every), stop.clone()),
    ];
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("connecting to Redis");
    // A busy machine can hold an answer up for seconds: a sample waits, never fails.
    conn.set_response_timeout(Duration::from_secs(60));
    let (start, mut samples) = (Instant::now(), Vec::<Sample>::new());
    let mut every = tokio::time::interval(plan.sample_every);
    while start.elapsed() < plan.duration {
        every.tick().await;
        let sample = Sample {
            at_s: start.elapsed().as_secs_f64(),
            rss_mb: pids.iter().map(|&p| samples::rss_mb(p)).collect(),
            fds: pids.iter().map(|&p| samples::open_fds(p)).collect(),
            redis_mb: samples::redis_used_mb(&mut conn).await,
            delivered: tapes.delivered_on_first(),
            produced: [0, 1].map(|n| feeds[n].acked.load(std::sync::atomic::Ordering::Relaxed)),
        };
        if samples.len() % (60_000 / plan.sample_every.as_millis() as usize).max(1) == 0 {
            println!("soak {:>5.0} s: {sample:?}", sample.at_s);
        }
        samples.push(sample);
    }
    stop.cancel();
    let [taxi_feed, queue_feed] = feeds;
    let produced =
        [taxi_feed.finish(Duration::from_secs(120)).await, queue_feed.finish(Duration::from_secs(120)).await];
    let mut compared = tapes.settle_and_compare(Duration::from_secs(180)).await;
    compared.push_str(&counters(&instances));
    cancel.cancel();
    let figures = figures(&plan, &samples, produced, &compared);
    let name = if plan.full { "soak-full" } else { "soak-short" };
    let (md_path, svg_path) =
        (target_dir().join(format!("{name}.md")), target_dir().join(format!("{name}.svg")));
    std::fs::write(&md_path, &figures.text).unwrap();
    std::fs::write(&svg_path, plot(&plan, &samples)).unwrap();
    println!("{}\nfigures: {}\nplot: {}", figures.text, md_path.display(), svg_path.display());
    for g in &figures.growth {
        assert!(g.ok(), "{} grew beyond its bound after the warm-up: {}", g.what, g.row());
    }
    for (tenant, (first, last)) in ["taxi", "queue"].iter().zip(figures.delivered_rates) {
        assert!(
            last >= first * 0.5,
            "{tenant}: delivery slowed from {first:.0}/s to {last:.0}/s over the soak (did the instances fall behind?)"
        );
        assert!(first > 0.0, "{tenant}: nothing delivered after the warm-up");
    }
    drop(instances);
}

/// Policy faults and lagged SSE clients per instance, from `/metrics`.
fn counters(instances: &[Instance]) -> String {
    let bodies: Vec<String> =
        instances.iter().map(|i| crate::common::http_get(&i.url("/metrics")).unwrap_or_default()).collect();
    let sum = |name: &str, labels: &str| -> Vec<f64> {
        bodies.iter().map(|b| samples::metric_sum(b, name, labels)).collect()
    };
    format!(
        "\n\nPolicy faults per instance (`streamgate_policy_outcomes_total{{outcome=\"fault\"}}`): {:?}; slow-client \
         catch-ups per instance (`streamgate_sse_lagged_total`): {:?}",
        sum("streamgate_policy_outcomes_total", "outcome=\"fault\""),
        sum("streamgate_sse_lagged_total", "")
    )
}

/// The build output directory (where `make soak` picks the files up).
fn target_dir() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_streamgate"));
    bin.parent().and_then(|p| p.parent()).expect("the binary lives in <target>/<profile>/").to_path_buf()
}

/// The soak's figures: growth per series, delivery rates, and the text of the report.
struct Figures {
    growth: Vec<Growth>,
    delivered_rates: [(f64, f64); 2],
    text: String,
}

fn figures(plan: &SoakPlan, samples: &[Sample], produced: [u64; 2], compared: &str) -> Figures {
    let w = plan.warmup.as_secs_f64();
    let rss = Bound { factor: 1.2, slack: 16.0 };
    let fds = Bound { factor: 1.0, slack: 16.0 };
    let redis = Bound { factor: 1.2, slack: 16.0 };
    let mut growth = Vec::new();
    for i in 0..3 {
        growth.push(Growth::of(format!("instance {i} RSS"), "MB", samples, w, rss, |s| s.rss_mb[i]));
    }
    for i in 0..3 {
        growth.push(Growth::of(format!("instance {i} open fds"), "", samples, w, fds, |s| s.fds[i]));
    }
    growth.push(Growth::of("Redis used_memory".into(), "MB", samples, w, redis, |s| s.redis_mb));
    let delivered_rates = [0, 1].map(|n| samples::rates(samples, w, |s| s.delivered[n]));
    let produced_rates = [0, 1].map(|n| samples::rates(samples, w, |s| s.produced[n]));
    let mut text = format!(
        "Soak ({}): {} s, {} taxis every {} ms and a queue of {} users moving every {} ms through tansu and \
         redis-server to 3 instances; samples every {} s, warm-up {} s (shaded in the plot).\n\n{}\n",
        if plan.full { "full" } else { "short" },
        plan.duration.as_secs(),
        plan.taxis,
        plan.taxi_every.as_millis(),
        plan.crowd,
        plan.queue_every.as_millis(),
        plan.sample_every.as_secs(),
        plan.warmup.as_secs(),
        samples::TABLE_HEADER
    );
    for g in &growth {
        text.push_str(&g.row());
        text.push('\n');
    }
    text.push_str("\n| tenant | produced | produced/s (first / last third) | delivered/s to one client (first / last third) |\n| --- | ---: | ---: | ---: |\n");
    for (n, tenant) in ["taxi", "queue"].iter().enumerate() {
        let ((pf, pl), (df, dl)) = (produced_rates[n], delivered_rates[n]);
        text.push_str(&format!("| {tenant} | {} | {pf:.0} / {pl:.0} | {df:.0} / {dl:.0} |\n", produced[n]));
    }
    text.push_str(&format!("\n{compared}\n"));
    Figures { growth, delivered_rates, text }
}

fn plot(plan: &SoakPlan, samples: &[Sample]) -> String {
    let line = |label: String, value: &dyn Fn(&Sample) -> f64| Series {
        label,
        points: samples.iter().map(|s| (s.at_s, value(s))).collect(),
    };
    let per_instance = |f: fn(&Sample, usize) -> f64| -> Vec<Series> {
        (0..3).map(|i| line(format!("instance {i}"), &|s: &Sample| f(s, i))).collect()
    };
    let rate = |n: usize, label: &str| Series {
        label: label.into(),
        points: samples
            .windows(2)
            .map(|w| (w[1].at_s, (w[1].delivered[n] - w[0].delivered[n]) as f64 / (w[1].at_s - w[0].at_s)))
            .collect(),
    };
    let panels = [
        Panel {
            title: "Resident memory (VmRSS)".into(),
            unit: "MB".into(),
            series: per_instance(|s, i| s.rss_mb[i]),
        },
        Panel {
            title: "Open file descriptors".into(),
            unit: "fds".into(),
            series: per_instance(|s, i| s.fds[i]),
        },
        Panel {
            title: "Redis used_memory".into(),
            unit: "MB".into(),
            series: vec![line("redis-server".into(), &|s: &Sample| s.redis_mb)],
        },
        Panel {
            title: "Events delivered to one client per tenant (instance 0)".into(),
            unit: "events/s".into(),
            series: vec![rate(0, "taxi"), rate(1, "queue")],
        },
    ];
    let title = format!(
        "streamgate soak: {} taxis at {} Hz + a queue of {} users, 3 instances, {} min",
        plan.taxis,
        1000 / plan.taxi_every.as_millis().max(1),
        plan.crowd,
        plan.duration.as_secs() / 60
    );
    svg(&title, &panels, plan.warmup.as_secs_f64())
}
