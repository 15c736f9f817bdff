//! How long and how hard a scenario runs: the short version under `make test`, the full
//! one when `STREAMGATE_CHAOS=full` (`make chaos`); and the steps every scenario shares.

use std::time::Duration;

use super::client::{Recorded, Recorder};
use super::cluster::{Cluster, TENANT};
use super::feed::Feed;
use super::tally;

pub struct Plan {
    /// Good messages produced.
    pub total: u64,
    /// Messages per second.
    pub rate: u64,
    /// How long a client stays away before resuming elsewhere.
    pub away: Duration,
    /// How long the broker or Redis stays unreachable.
    pub outage: Duration,
    /// Clients that connect and never read.
    pub stalled: usize,
}

impl Plan {
    pub fn get() -> Plan {
        if std::env::var("STREAMGATE_CHAOS").is_ok_and(|v| v == "full") {
            Plan {
                total: 30_000,
                rate: 1_000,
                away: Duration::from_secs(5),
                outage: Duration::from_secs(20),
                stalled: 1_000,
            }
        } else {
            Plan {
                total: 2_000,
                rate: 250,
                away: Duration::from_secs(5),
                outage: Duration::from_secs(4),
                stalled: 1_000,
            }
        }
    }

    /// Bound on any wait for the whole feed (producing plus catching up).
    pub fn patience(&self) -> Duration {
        Duration::from_secs(60 + 3 * self.total / self.rate)
    }

    /// The point `num/den` of the way through the feed.
    pub fn at(&self, num: u64, den: u64) -> u64 {
        self.total * num / den
    }
}

/// A running scenario: the cluster and its producer.
pub struct Run {
    pub plan: Plan,
    pub cluster: Cluster,
    pub feed: Option<Feed>,
}

impl Run {
    /// Starts 3 instances, one recorder per instance from the start of the log (returned),
    /// then the producer, and waits until every instance consumes.
    pub async fn start(salt: Option<u64>) -> (Run, Vec<Recorder>) {
        let plan = Plan::get();
        let cluster = tokio::task::block_in_place(|| Cluster::start(3));
        let mut live = Vec::new();
        for i in 0..cluster.len() {
            live.push(Recorder::connect(&cluster.base(i), TENANT, Some("0-0")).await);
        }
        let feed = Feed::start(&cluster.tansu.brokers(), TENANT, plan.total, plan.rate, salt);
        let all: Vec<usize> = (0..cluster.len()).collect();
        tokio::task::block_in_place(|| cluster.wait_all_consuming(&all, Duration::from_secs(60)));
        (Run { plan, cluster, feed: Some(feed) }, live)
    }

    /// Waits until `n` good messages are acknowledged.
    pub async fn until_acked(&self, n: u64) {
        self.feed.as_ref().expect("feeding").wait_acked(n, self.plan.patience()).await;
    }

    /// Waits for the producer to finish; the ids it produced and the malformed count.
    pub async fn finish(&mut self) -> (Vec<String>, u64) {
        let produced = self.feed.take().expect("feeding").finish(self.plan.patience()).await;
        (produced.ids, produced.malformed)
    }

    /// A new recorder per instance from the start of the log, each waited on until it
    /// delivered all of `produced`.
    pub async fn full_streams(&self, produced: &[String]) -> Vec<Recorded> {
        let mut out = Vec::new();
        for i in 0..self.cluster.len() {
            let r = Recorder::connect(&self.cluster.base(i), TENANT, Some("0-0")).await;
            let what = format!("instance {i} to deliver every produced event");
            let patience = self.plan.patience();
            // The inner wait outlasts this one, so a timeout here gets the diagnosis.
            let waited = tally::wait_complete(&r, &what, produced, patience + Duration::from_secs(10));
            if tokio::time::timeout(patience, waited).await.is_err() {
                let missing = tally::missing(&r.recorded(), produced);
                panic!("timed out after {patience:?} waiting for {what}\n{}", self.diagnose(&missing).await);
            }
            out.push(r.recorded());
        }
        out
    }

    /// What a stream missing events needs explained: how many of the missing ids the
    /// Redis log holds (none: never consumed from Kafka), each instance's `/readyz`
    /// (stalled partitions) and the end of its log.
    async fn diagnose(&self, missing: &[String]) -> String {
        let (log, _) = self.log().await;
        let in_log = missing.iter().filter(|id| log.contains(id)).count();
        let mut out = format!(
            "{} ids missing (first {:?}), {in_log} of them in the Redis log\n",
            missing.len(),
            missing.first()
        );
        let brokers = self.cluster.tansu.brokers();
        let found =
            tokio::task::block_in_place(|| super::kafka_scan::locate(&brokers, TENANT, 4, missing, 5));
        let counts =
            ["streamgate_source_decode_errors_total", "streamgate_source_offset_gaps_total"].map(|m| {
                let sum = tokio::task::block_in_place(|| self.cluster.metric_sum(&[0, 1, 2], m));
                format!("{m} {sum}")
            });
        out.push_str(&format!("in Kafka, {found}{}\n", counts.join(", ")));
        for i in 0..self.cluster.len() {
            let url = format!("{}/readyz", self.cluster.base(i));
            let ready = tokio::task::block_in_place(|| crate::common::http_answer(&url));
            let tail = self.cluster.log_tail(i, 15);
            out.push_str(&format!("instance {i} /readyz: {ready:?}\ninstance {i} log ends:\n{tail}\n"));
        }
        out
    }

    /// Ids in the Redis log, and how many entries repeated an id (redeliveries).
    pub async fn log(&self) -> (Vec<String>, usize) {
        let ids = self.cluster.log_ids().await;
        let repeats = ids.len() - super::cluster::distinct(&ids).len();
        (ids, repeats)
    }
}

/// Freezes process `pid` (SIGSTOP: its sockets stay open, nothing answers) and lets it
/// go again (SIGCONT) when dropped.
pub struct Frozen(u32);

impl Frozen {
    pub fn new(pid: u32) -> Frozen {
        signal("-STOP", pid);
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal("-CONT", self.0);
    }
}

fn signal(which: &str, pid: u32) {
    let status = std::process::Command::new("kill").arg(which).arg(pid.to_string()).status();
    assert!(status.is_ok_and(|s| s.success()), "kill {which} {pid} failed");
}

/// `part` is exactly the start of `whole`, frame by frame.
pub fn assert_prefix(what: &str, part: &Recorded, whole: &Recorded) {
    let n = part.frames.len();
    assert!(
        n <= whole.frames.len(),
        "{what}: {n} frames, more than the full stream's {}",
        whole.frames.len()
    );
    if let Some(k) = (0..n).find(|&k| part.frames[k] != whole.frames[k]) {
        panic!("{what}: frame {k} is {:?}, the full stream has {:?}", part.frames[k], whole.frames[k]);
    }
}

/// `a` then `b`, as one stream (a client that moved).
pub fn joined(a: &Recorded, b: &Recorded) -> Recorded {
    let mut out = a.clone();
    out.frames.extend(b.frames.iter().cloned());
    out.arrivals.extend(b.arrivals.iter().cloned());
    out
}
