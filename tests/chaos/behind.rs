//! The three instances behind a load balancer started from `deploy/`'s example file
//! (nginx or HAProxy), browsers connecting only to the balancer: one instance stopped
//! (SIGTERM) and another crashed (SIGKILL) mid-stream, both restarted on their old
//! addresses. Clients that reconnect as `EventSource` does, with `Last-Event-ID`, through
//! the balancer, get every event once, in the same frames as every instance.

use std::time::Duration;

use super::balancer::{Balancer, Kind};
use super::cluster::{SESSION_TIMEOUT, TENANT};
use super::follow::{Followed, Follower};
use super::plan::{Frozen, Run};
use super::{tally, watch};

/// Clients behind the balancer: two per instance with least-connections balancing.
const CLIENTS: usize = 6;

/// SIGTERM instance 0 at 1/3, SIGKILL instance 1 at 1/2, both back on their ports at
/// 2/3 (the crashed one no sooner than the group's session timeout after its crash).
pub async fn stop_and_crash_behind(kind: Kind) {
    let (mut run, live) = Run::start(None).await;
    drop(live);
    let ports: Vec<u16> = (0..run.cluster.len()).map(|i| run.cluster.instance(i).port).collect();
    let balancer = tokio::task::block_in_place(|| Balancer::start(kind, &ports));
    let clients: Vec<Follower> = (0..CLIENTS).map(|_| Follower::start(&balancer.base(), TENANT)).collect();
    for (n, c) in clients.iter().enumerate() {
        let what = format!("client {n} to connect through {}", kind.name());
        c.wait_until(&what, Duration::from_secs(20), |f| connected(f, 1)).await;
    }
    run.until_acked(run.plan.at(1, 3)).await;
    tokio::task::block_in_place(|| run.cluster.terminate(0));
    let moved = wait_moved(&clients, 0, "the clients of the stopped instance").await;
    run.until_acked(run.plan.at(1, 2)).await;
    run.cluster.kill(1);
    let killed_at = tokio::time::Instant::now();
    let crashed = wait_moved(&clients, moved, "the clients of the crashed instance").await;
    run.until_acked(run.plan.at(2, 3)).await;
    tokio::time::sleep_until(killed_at + SESSION_TIMEOUT + Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| {
        run.cluster.restart_in_place(0);
        run.cluster.restart_in_place(1);
    });
    let mut clients = clients;
    let late = readmitted(&run, &balancer, &mut clients).await;
    let (produced, _) = run.finish().await;
    let full = run.full_streams(&produced).await;
    for (n, c) in clients.iter().enumerate() {
        let what = format!("client {n} behind {} to get every event", kind.name());
        c.wait_until(&what, run.plan.patience(), |f| complete(&f.stream, &produced)).await;
    }
    let seen: Vec<Followed> = clients.iter().map(Follower::followed).collect();
    let hinted: usize = seen.iter().map(|f| f.hinted_ends).sum();
    let broken: usize = seen.iter().map(|f| f.broken_ends).sum();
    let refusals: Vec<&String> = seen.iter().flat_map(|f| &f.refused).collect();
    let refused = refusals.len();
    let (log, repeats) = run.log().await;
    let notes = format!(
        "{CLIENTS} clients through {} (deploy/ example): i0 stopped at 1/3, i1 killed at 1/2, both back \
         at 2/3 on their ports; {hinted} streams ended with the hint, {broken} broke, {refused} attempts \
         refused; {late} new clients until both restarted instances had one; each client's \
         joined stream compared; {repeats} events twice in the log",
        kind.name()
    );
    let mut streams = full.clone();
    streams.extend(seen.iter().map(|f| f.stream.clone()));
    let mut row =
        tally::count(&format!("SIGTERM + SIGKILL behind {}", kind.name()), &produced, &log, &streams, notes);
    row.delivered.truncate(3);
    row.print();
    row.assert_promises();
    assert_eq!(row.in_log, row.produced, "every produced event reached the log");
    assert!(hinted >= 1, "a client of the stopped instance got the shutdown hint through {}", kind.name());
    assert!(broken >= 1, "a client of the crashed instance saw its stream break");
    assert!(crashed > moved, "the crash moved clients too");
    assert!(
        refusals.is_empty(),
        "the balancer refused clients (a browser gives up on a non-200): {refusals:?}"
    );
    if let Some(early) = seen.iter().find(|f| f.stream.frames.is_empty()) {
        panic!("a client behind {} got no frame at all: {early:?}", kind.name());
    }
}

/// The broker frozen for the whole cluster at a third of the way through: every
/// instance's `/readyz` says 503, so a balancer that checks it counts none of them ready.
/// For [`PROBE_WHILE_UNREADY`] after that, new clients connecting through the balancer
/// must still get a stream (200), and the clients already connected keep theirs; after
/// the thaw every event reaches every client.
pub async fn none_ready_behind(kind: Kind) {
    let (mut run, live) = Run::start(None).await;
    drop(live);
    let ports: Vec<u16> = (0..run.cluster.len()).map(|i| run.cluster.instance(i).port).collect();
    let balancer = tokio::task::block_in_place(|| Balancer::start(kind, &ports));
    let clients: Vec<Follower> = (0..CLIENTS).map(|_| Follower::start(&balancer.base(), TENANT)).collect();
    for (n, c) in clients.iter().enumerate() {
        let what = format!("client {n} to connect through {}", kind.name());
        c.wait_until(&what, Duration::from_secs(20), |f| connected(f, 1)).await;
    }
    run.until_acked(run.plan.at(1, 3)).await;
    let frozen = Frozen::new(run.cluster.tansu.pid());
    let reason = format!("{TENANT}: source: kafka unreachable");
    tokio::task::block_in_place(|| watch::wait_all_not_ready(&run.cluster, &reason, Duration::from_secs(30)));
    let url = format!("{}/tenants/{TENANT}/events", balancer.base());
    let http = reqwest::Client::new();
    let until = tokio::time::Instant::now() + PROBE_WHILE_UNREADY;
    let mut probes = 0;
    while tokio::time::Instant::now() < until {
        let answer = http.get(&url).header("last-event-id", "0-0").send();
        let status =
            tokio::time::timeout(Duration::from_secs(10), answer).await.map(|r| r.map(|r| r.status()));
        assert!(
            matches!(status, Ok(Ok(s)) if s == 200),
            "while no instance was ready, a new client through {} got {status:?} (probe {probes})",
            kind.name()
        );
        probes += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(frozen);
    tokio::task::block_in_place(|| watch::wait_all_ready(&run.cluster, Duration::from_secs(60)));
    let (produced, _) = run.finish().await;
    let full = run.full_streams(&produced).await;
    for (n, c) in clients.iter().enumerate() {
        let what = format!("client {n} behind {} to get every event", kind.name());
        c.wait_until(&what, run.plan.patience(), |f| complete(&f.stream, &produced)).await;
    }
    let seen: Vec<Followed> = clients.iter().map(Follower::followed).collect();
    let (log, repeats) = run.log().await;
    let notes = format!(
        "broker frozen at 1/3 until every /readyz said 503, then {} s more: {probes} new clients through {} \
         all got a stream; the {CLIENTS} connected clients kept theirs, joined streams compared; {repeats} events \
         twice in the log",
        PROBE_WHILE_UNREADY.as_secs(),
        kind.name()
    );
    let mut streams = full.clone();
    streams.extend(seen.iter().map(|f| f.stream.clone()));
    let mut row =
        tally::count(&format!("No instance ready behind {}", kind.name()), &produced, &log, &streams, notes);
    row.delivered.truncate(3);
    row.print();
    row.assert_promises();
    assert_eq!(row.in_log, row.produced, "every produced event reached the log");
    for (n, f) in seen.iter().enumerate() {
        assert_eq!(
            (f.connections, f.hinted_ends, f.broken_ends, f.refused.len()),
            (1, 0, 0, 0),
            "client {n} behind {} kept its one stream through the outage",
            kind.name()
        );
    }
}

/// How long new clients keep connecting while no instance is ready: past HAProxy's two
/// failed checks a second apart.
const PROBE_WHILE_UNREADY: Duration = Duration::from_secs(5);

/// `Ok` once `f` has had `n` connections answered.
fn connected(f: &Followed, n: usize) -> Result<(), String> {
    if f.connections >= n { Ok(()) } else { Err(format!("{} connections", f.connections)) }
}

/// `Ok` once `stream` delivered every id of `produced`.
fn complete(stream: &super::client::Recorded, produced: &[String]) -> Result<(), String> {
    let missing = tally::missing(stream, produced);
    match missing.first() {
        None => Ok(()),
        Some(first) => Err(format!("{} ids missing, first {first}", missing.len())),
    }
}

/// Waits until more than `before` streams have ended across `clients` and every client
/// is connected again; the number of ended streams then.
async fn wait_moved(clients: &[Follower], before: usize, what: &str) -> usize {
    let ended = |f: &Followed| f.hinted_ends + f.broken_ends;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let seen: Vec<Followed> = clients.iter().map(Follower::followed).collect();
        let total: usize = seen.iter().map(ended).sum();
        // Each client is connected again once it has one more answered connection than ends.
        let back = seen.iter().all(|f| f.connections > ended(f));
        if total > before && back {
            return total;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: no stream ended and reconnected within 30 s ({total} ended, before {before}): {:?}",
            seen.iter()
                .map(|f| (f.connections, f.hinted_ends, f.broken_ends, f.refused.len()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Connects new clients through the balancer, one every half second, until both
/// restarted instances (0 and 1) serve one: the balancer sends streams to an instance
/// that is back (HAProxy once its `/readyz` checks pass, nginx once its `fail_timeout`
/// is over). How many clients that took.
async fn readmitted(run: &Run, balancer: &Balancer, clients: &mut Vec<Follower>) -> usize {
    let serves = |i: usize| run.cluster.metric_sum(&[i], "streamgate_sse_clients") >= 1.0;
    let mut late = 0;
    while !tokio::task::block_in_place(|| serves(0) && serves(1)) {
        assert!(
            late < 60,
            "after {late} new clients through the balancer, a restarted instance still has none"
        );
        clients.push(Follower::start(&balancer.base(), TENANT));
        late += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    late
}
