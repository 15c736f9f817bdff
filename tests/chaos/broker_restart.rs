//! The broker killed and started again on the same port mid-stream. The test broker
//! (tansu 0.6.0 with memory storage) forgets everything when it stops: topics, records
//! and the group's committed offsets. The topic is created again once it is back, as an
//! operator provisioning a fresh broker would, and the producer's unacknowledged
//! messages go to the new topic. What this shows about streamgate: `/readyz` names the
//! source while the broker is down, the instances back off (little CPU), reconnect by
//! themselves (`/readyz` 200 again), and serve identical streams; how many events a
//! forgetting broker costs, and partitions it leaves stalled, are counted, not promised (a
//! durable broker keeps topics and offsets across a restart).

use std::collections::BTreeSet;
use std::time::Duration;

use super::cluster::TENANT;
use super::plan::Run;
use super::{tally, watch};

pub async fn broker_restart() {
    let (mut run, live) = Run::start(None).await;
    run.until_acked(run.plan.at(1, 3)).await;
    let pids: Vec<u32> = (0..run.cluster.len()).map(|i| run.cluster.instance(i).pid()).collect();
    let reason = format!("{TENANT}: source: kafka unreachable");
    let acked_before = run.feed.as_ref().expect("feeding").acked() as usize;
    tokio::task::block_in_place(|| run.cluster.tansu.stop());
    let down_at = tokio::time::Instant::now();
    let cpu = watch::CpuClock::start(&pids);
    let noticed = tokio::task::block_in_place(|| {
        watch::wait_all_not_ready(&run.cluster, &reason, Duration::from_secs(30))
    });
    tokio::time::sleep_until(down_at + run.plan.outage).await;
    let cores = cpu.cores();
    let outage = down_at.elapsed();
    tokio::task::block_in_place(|| {
        run.cluster.tansu.start_again();
        run.cluster.tansu.create_topic(TENANT, 4);
    });
    let back = tokio::task::block_in_place(|| watch::wait_all_ready(&run.cluster, Duration::from_secs(60)));
    let (produced, _) = run.finish().await;
    let (tail_missing, waited) = wait_log_has_tail(&run, &produced).await;
    let (log, repeats) = run.log().await;
    let in_log: BTreeSet<&str> = log.iter().map(String::as_str).collect();
    let logged: Vec<String> = produced.iter().filter(|id| in_log.contains(id.as_str())).cloned().collect();
    let full = run.full_streams(&logged).await;
    for (i, client) in live.iter().enumerate() {
        let what = format!("instance {i}'s live client to get every logged event through the restart");
        tally::wait_complete(client, &what, &logged, run.plan.patience()).await;
    }
    let lost_before = produced[..acked_before].iter().filter(|id| !in_log.contains(id.as_str())).count();
    let lost_after = produced.len() - logged.len() - lost_before;
    let notes = format!(
        "broker killed at 1/3, restarted empty on its port {:.1} s later and the topic created again; every \
         /readyz 503 naming the source within {:.1} s, 200 again {:.1} s after the restart; CPU while down {}; \
         {} acknowledged events never consumed: {lost_before} acknowledged before the kill, {lost_after} after (below the \
         consumers' old offsets in the new topic, or in partitions left stalled){}; {repeats} events twice in the log; live \
         clients compared too",
        outage.as_secs_f64(),
        noticed.as_secs_f64(),
        back.as_secs_f64(),
        watch::percents(&cores),
        produced.len() - logged.len(),
        if tail_missing == 0 {
            String::new()
        } else {
            format!(
                "; {tail_missing} of the last 40 (one per key) still not in the log {} s after the feed ended: \
                 partitions left stalled (see /readyz)",
                waited.as_secs()
            )
        },
    );
    let mut streams = full.clone();
    streams.extend(live.iter().map(|c| c.recorded()));
    let mut row = tally::count("Broker restart (forgets)", &produced, &log, &streams, notes);
    row.delivered.truncate(3);
    row.print();
    assert_eq!(row.duplicated, 0, "events delivered twice: {}", row.line());
    if let Err(why) = &row.identical {
        panic!("streams differ ({why}): {}", row.line());
    }
    for (i, c) in cores.iter().enumerate() {
        assert!(
            *c < watch::IDLE_CPU_BOUND,
            "instance {i} used {:.0} % of a core while the broker was down (bound {:.0} %): spinning?",
            c * 100.0,
            watch::IDLE_CPU_BOUND * 100.0
        );
    }
}

/// Waits (bounded by the plan's patience) until the log holds the last event of every key
/// (every partition consumed to its end), then until the log stops growing; how many of
/// those last events are missing, and how long it waited. A broker that forgets can leave
/// partitions stalled: that is counted, not waited out.
async fn wait_log_has_tail(run: &Run, produced: &[String]) -> (usize, Duration) {
    let last_of_each_key = &produced[produced.len().saturating_sub(super::feed::KEYS as usize)..];
    let start = tokio::time::Instant::now();
    let mut missing = last_of_each_key.len();
    while start.elapsed() < run.plan.patience() {
        let (log, _) = run.log().await;
        missing = last_of_each_key.iter().filter(|id| !log.contains(id)).count();
        if missing == 0 {
            break;
        }
        // Each look reads and decodes the whole log: not too often.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Else wait until two reads of the log a few seconds apart agree (bounded).
    for _ in 0..if missing == 0 { 0 } else { 12 } {
        let before = run.log().await.0.len();
        tokio::time::sleep(Duration::from_secs(5)).await;
        if run.log().await.0.len() == before {
            break;
        }
    }
    (missing, start.elapsed())
}
