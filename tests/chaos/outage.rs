//! Parts that go away for a while: the broker or Redis unreachable (frozen with
//! SIGSTOP), Redis restarted mid-stream, and a client that drops off and comes back on
//! another instance.

use std::time::Duration;

use super::client::Recorder;
use super::cluster::TENANT;
use super::plan::{Frozen, Run, joined};
use super::{tally, watch};

/// Which server to make unreachable.
#[derive(Clone, Copy, Debug)]
pub enum Server {
    Broker,
    Redis,
}

/// The broker or Redis is frozen (SIGSTOP: connections stay open and nothing answers)
/// for `Plan::outage` from a third of the way through (longer if the instances take
/// longer to notice), then thawed. Meanwhile every instance's `/readyz` answers 503
/// naming the part that is down, and each uses less than [`watch::IDLE_CPU_BOUND`] of a
/// core (sources and readers back off); after, 200 again. Producers, sources and log
/// readers wait it out; every event reaches the log (repeats, if any, dropped by the id
/// dedupe) and every instance serves the same complete stream.
pub async fn unreachable(server: Server) {
    let (mut run, live) = Run::start(None).await;
    run.until_acked(run.plan.at(1, 3)).await;
    let (pid, reason) = match server {
        Server::Broker => (run.cluster.tansu.pid(), format!("{TENANT}: source: kafka unreachable")),
        Server::Redis => (run.cluster.redis.pid(), format!("{TENANT}: log: redis stream")),
    };
    let pids: Vec<u32> = (0..run.cluster.len()).map(|i| run.cluster.instance(i).pid()).collect();
    let frozen = Frozen::new(pid);
    let frozen_at = tokio::time::Instant::now();
    let cpu = watch::CpuClock::start(&pids);
    let noticed = tokio::task::block_in_place(|| {
        watch::wait_all_not_ready(&run.cluster, &reason, Duration::from_secs(30))
    });
    tokio::time::sleep_until(frozen_at + run.plan.outage).await;
    let cores = cpu.cores();
    let outage = frozen_at.elapsed();
    drop(frozen);
    let back = tokio::task::block_in_place(|| watch::wait_all_ready(&run.cluster, Duration::from_secs(60)));
    let (produced, _) = run.finish().await;
    let full = run.full_streams(&produced).await;
    for (i, client) in live.iter().enumerate() {
        let what = format!("instance {i}'s live client to get every event through the outage");
        tally::wait_complete(client, &what, &produced, run.plan.patience()).await;
    }
    let (log, repeats) = run.log().await;
    let secs = run.plan.outage.as_secs();
    let notes = format!(
        "{server:?} frozen {:.1} s at 1/3; every /readyz 503 naming it within {:.1} s, 200 again {:.1} s \
         after; CPU while down {}; {repeats} events twice in the log; live clients compared too",
        outage.as_secs_f64(),
        noticed.as_secs_f64(),
        back.as_secs_f64(),
        watch::percents(&cores),
    );
    let mut streams = full.clone();
    streams.extend(live.iter().map(|c| c.recorded()));
    let mut row = tally::count(&format!("{server:?} unreachable {secs} s"), &produced, &log, &streams, notes);
    row.delivered.truncate(3);
    row.print();
    row.assert_promises();
    assert_eq!(row.in_log, row.produced, "every produced event reached the log");
    for (i, c) in cores.iter().enumerate() {
        assert!(
            *c < watch::IDLE_CPU_BOUND,
            "instance {i} used {:.0} % of a core while {server:?} was down (bound {:.0} %): spinning?",
            c * 100.0,
            watch::IDLE_CPU_BOUND * 100.0
        );
    }
}

/// Redis (no persistence) is killed and started again a third of the way through. The
/// log starts over empty; publishers retry until the new server takes their batches and
/// readers carry on from the last position, so live clients lose nothing. The column
/// "in the log" counts only what the new log holds: what was delivered before the
/// restart lives on in each instance's history only.
pub async fn redis_restart() {
    let (mut run, live) = Run::start(None).await;
    run.until_acked(run.plan.at(1, 3)).await;
    tokio::task::block_in_place(|| run.cluster.redis.restart());
    let (produced, _) = run.finish().await;
    let mut streams = Vec::new();
    for (i, client) in live.iter().enumerate() {
        let what = format!("instance {i}'s live client to get every event through the restart");
        tally::wait_complete(client, &what, &produced, run.plan.patience()).await;
        streams.push(client.recorded());
    }
    let (log, _) = run.log().await;
    let notes = "Redis killed and restarted empty at 1/3; live clients; the new log holds only later events";
    let row = tally::count("Redis restart", &produced, &log, &streams, notes.into());
    row.print();
    row.assert_promises();
    assert!(row.in_log < row.produced, "the restarted Redis started with an empty log");
}

/// A client of instance 0 disconnects a third of the way through, stays away
/// (`Plan::away`), and resumes with its `Last-Event-ID` on instance 1.
pub async fn client_resumes_elsewhere() {
    let (mut run, live) = Run::start(None).await;
    run.until_acked(run.plan.at(1, 3)).await;
    let mut live = live;
    let gone = live.remove(0);
    let before = gone.recorded();
    drop(gone);
    let last = before.last_id().expect("frames before leaving").to_string();
    tokio::time::sleep(run.plan.away).await;
    let resumed = Recorder::connect(&run.cluster.base(1), TENANT, Some(&last)).await;
    let (produced, _) = run.finish().await;
    let full = run.full_streams(&produced).await;
    tally::wait_resumed(&resumed, &before, "the resumed client", &produced, run.plan.patience()).await;
    let after = resumed.recorded();
    let moved = joined(&before, &after);
    let (log, _) = run.log().await;
    let notes = format!(
        "a client of i0 left at 1/3 for {} s and resumed on i1 ({} + {} frames, the 4th stream compared)",
        run.plan.away.as_secs(),
        before.frames.len(),
        after.frames.len()
    );
    let mut streams = full.clone();
    streams.push(moved);
    let mut row = tally::count("client away 5 s, resumes elsewhere", &produced, &log, &streams, notes);
    row.delivered.truncate(3);
    row.print();
    row.assert_promises();
    assert_eq!(row.in_log, row.produced, "every produced event reached the log");
}
