//! `/readyz` follows what the instance can reach now, with the reason in the body: a
//! real redis-server stopped and started again, then the Kafka broker stopped.

mod common;

use std::time::{Duration, Instant};

use common::{Instance, Redis, TAXI_TENANT, Tansu, http_answer, services_config};

/// Polls `/readyz` every 100 ms until it answers `status`; its body then.
fn wait_readyz(instance: &Instance, status: u16, within: Duration, why: &str) -> String {
    let start = Instant::now();
    let mut last = None;
    loop {
        let answer = http_answer(&instance.url("/readyz"));
        if let Some((s, body)) = &answer
            && *s == status
        {
            return body.clone();
        }
        last = answer.or(last);
        assert!(
            start.elapsed() < within,
            "/readyz did not answer {status} within {within:?} ({why}); last answer: {last:?}\nlog:\n{}",
            instance.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn readyz_follows_redis_down_and_back_then_kafka_down() {
    let (mut tansu, mut redis) = (Tansu::start(), Redis::start());
    tansu.create_topic("taxi", 2);
    let instance = Instance::start(&format!("{}{TAXI_TENANT}", services_config(&tansu, &redis, "ready")));
    let body = wait_readyz(&instance, 200, Duration::from_secs(5), "started");
    assert_eq!(body, "ready\n");

    redis.stop();
    let body = wait_readyz(&instance, 503, Duration::from_secs(20), "redis stopped");
    assert!(body.starts_with("not ready\n"), "{body}");
    assert!(body.contains("taxi: log: redis stream:"), "the reason names the log and Redis: {body}");

    redis.start_again();
    let body = wait_readyz(&instance, 200, Duration::from_secs(30), "redis started again");
    assert_eq!(body, "ready\n");

    tansu.stop();
    let body = wait_readyz(&instance, 503, Duration::from_secs(30), "kafka stopped");
    assert!(body.contains("taxi: source: kafka unreachable"), "the reason names the source: {body}");
    assert!(!body.contains("taxi: log:"), "the log is still fine: {body}");
}
