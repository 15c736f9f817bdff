//! The fault suite: real tansu, redis-server and three `streamgate` processes through the
//! faults users meet (a crash, a rolling restart, Redis restarting, a client moving to
//! another instance, the broker or Redis unreachable, the broker restarted, malformed input, stalled
//! clients, the cluster behind nginx and HAProxy). Each scenario prints one table
//! row (produced, in the log, delivered per instance, lost, duplicated, identical
//! streams) and asserts what the README's "Guarantees under faults" promises.
//!
//! `cargo test --test chaos` runs the short version; `STREAMGATE_CHAOS=full` (`make
//! chaos`) the long one. Scenarios run one at a time: each starts its own cluster.

mod common;

mod chaos {
    pub mod balancer;
    pub mod behind;
    pub mod broker_restart;
    pub mod census;
    pub mod client;
    pub mod cluster;
    pub mod crash;
    pub mod feed;
    pub mod follow;
    pub mod ingest_scale;
    pub mod kafka_scan;
    pub mod load;
    pub mod outage;
    pub mod plan;
    pub mod plot;
    pub mod samples;
    pub mod soak;
    pub mod soak_feed;
    pub mod soak_run;
    pub mod tally;
    pub mod tape;
    pub mod watch;
}

/// One scenario at a time: three instances each are enough for two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_one_instance_then_restart() {
    let _turn = ONE_AT_A_TIME.lock().await;
    chaos::crash::sigkill_then_restart(&[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_two_instances_in_a_row_then_restart() {
    let _turn = ONE_AT_A_TIME.lock().await;
    chaos::crash::sigkill_then_restart(&[0, 1]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_streams_with_a_hint_and_clients_resume_elsewhere() {
    let _turn = ONE_AT_A_TIME.lock().await;
    chaos::crash::sigterm_then_resume_elsewhere().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_mid_stream() {
    let _turn = ONE_AT_A_TIME.lock().await;
    chaos::outage::redis_restart().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_unreachable_mid_stream() {
    let _turn = ONE_AT_A_TIME.lock().await;
    chaos::outage::unreachable(chaos::outage::Server::Broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_mid_stream() {
    let _turn = ONE_AT_A_TIME.lock().await;
    chaos::outage::unreachable(chaos::outage::Server::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_away_resumes_on_another_instance() {
    let _turn = ONE_AT_A_TIME.lock().await;
    chaos::outage::client_resumes_elsewhere().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_counted_drops() {
    let _turn = ONE_AT_A_TIME.lock().await;
    chaos::load::malformed_tenth().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_do_not_slow_readers() {
    let _turn = ONE_AT_A_TIME.lock().await;
    chaos::load::stalled_clients().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_mid_stream() {
    let _turn = ONE_AT_A_TIME.lock().await;
    chaos::broker_restart::broker_restart().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_crash_behind_nginx() {
    let _turn = ONE_AT_A_TIME.lock().await;
    chaos::behind::stop_and_crash_behind(chaos::balancer::Kind::Nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_crash_behind_haproxy() {
    let _turn = ONE_AT_A_TIME.lock().await;
    chaos::behind::stop_and_crash_behind(chaos::balancer::Kind::Haproxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_instance_ready_behind_haproxy() {
    let _turn = ONE_AT_A_TIME.lock().await;
    chaos::behind::none_ready_behind(chaos::balancer::Kind::Haproxy).await;
}

/// Issue 17's soak: both demo tenants at a steady rate, RSS, fds and Redis memory
/// sampled, nothing growing past its bound after the warm-up (`make soak`: 30 minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_holds_memory_and_fds_steady() {
    let _turn = ONE_AT_A_TIME.lock().await;
    chaos::soak::soak().await;
}

/// Issue 17's ingest at scale: events as fast as the machine allows while instances
/// join and leave, every one in the log (`make chaos`: 1,000,000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_at_scale_with_instances_joining_and_leaving() {
    let _turn = ONE_AT_A_TIME.lock().await;
    chaos::ingest_scale::events_with_instances_joining_and_leaving().await;
}
