//! How long and how hard the soak runs (`STREAMGATE_SOAK=full`: 30 minutes at the issue's
//! rates; otherwise a minute, lighter), the instances' config (the demo's two tenants),
//! and the soak's SSE clients with the comparison of their streams at the end.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::tape::{self, Tape, TapeClient};

pub struct SoakPlan {
    pub full: bool,
    pub duration: Duration,
    pub taxis: usize,
    pub taxi_every: Duration,
    /// Users rushing into the queue when the sale opens.
    pub crowd: usize,
    pub queue_every: Duration,
    pub sample_every: Duration,
    /// Samples before this are not held to the growth bounds: state is still filling
    /// (latest values, dedupe memory up to `forget_after_ms`, the Redis log up to its
    /// retention).
    pub warmup: Duration,
    /// How long a hopping client stays on one instance.
    pub hop: Duration,
    pub retention_ms: u64,
    /// Keyed queue clients (`?key=u-…`) per instance.
    pub keyed: usize,
    /// Frames each tenant keeps for resuming: the demo's 1,024 in full; fewer in the short
    /// version, so the ring fills within its warm-up (it holds most of an instance's memory).
    pub history_frames: usize,
}

impl SoakPlan {
    /// The plan; `STREAMGATE_SOAK_MINUTES` changes the full soak's length (the warm-up
    /// stays 12 minutes, or 40 % of a shorter soak).
    pub fn get() -> SoakPlan {
        let mut plan = Self::by_env();
        if let Some(minutes) = std::env::var("STREAMGATE_SOAK_MINUTES").ok().filter(|_| plan.full) {
            let minutes: u64 = minutes.parse().expect("STREAMGATE_SOAK_MINUTES is a whole number of minutes");
            plan.duration = Duration::from_secs(minutes * 60);
            plan.warmup = plan.warmup.min(plan.duration * 2 / 5);
        }
        plan
    }

    fn by_env() -> SoakPlan {
        if std::env::var("STREAMGATE_SOAK").is_ok_and(|v| v == "full") {
            SoakPlan {
                full: true,
                duration: Duration::from_secs(30 * 60),
                taxis: 5_000,
                taxi_every: Duration::from_secs(1),
                crowd: 50_000,
                queue_every: Duration::from_secs(10),
                sample_every: Duration::from_secs(5),
                // The tenants' dedupe forgets after 10 minutes of log time: state grows
                // until then.
                warmup: Duration::from_secs(12 * 60),
                hop: Duration::from_secs(60),
                retention_ms: 120_000,
                keyed: 20,
                history_frames: 1024,
            }
        } else {
            SoakPlan {
                full: false,
                duration: Duration::from_secs(60),
                taxis: 500,
                taxi_every: Duration::from_secs(1),
                crowd: 5_000,
                queue_every: Duration::from_secs(5),
                sample_every: Duration::from_secs(2),
                warmup: Duration::from_secs(20),
                hop: Duration::from_secs(10),
                retention_ms: 15_000,
                keyed: 5,
                history_frames: 64,
            }
        }
    }

    /// Each instance's config: the demo's taxi and queue tenants (`streamgate demo`) on
    /// these Kafka and Redis, with dynamic group membership as the other tests use.
    pub fn config(&self, brokers: &str, redis: &str) -> String {
        format!(
            r#"
[kafka]
brokers = "{brokers}"
group_id = "soak"
session_timeout_ms = 6000
instance_id = ""

[redis]
url = "{redis}"
key_prefix = "soak"

[bus]
kind = "redis-stream"
retention_ms = {retention}

[[tenant]]
name = "taxi"
topic = "taxi-locations"
key = "/mediaId"
time = "/timestamp"
event = "liveMapLocation"
latest_value = true
snapshot_on_connect = true
history_frames = {history}

[[tenant.policies]]
plugin = "builtin:ordering"
config = {{ window_ms = 1000 }}

[[tenant.policies]]
plugin = "builtin:staleness"
config = {{ max_age_ms = 30000 }}

[[tenant.policies]]
plugin = "builtin:dedupe"
config = {{ newest_per_frame = true, forget_after_ms = 600000 }}

[[tenant]]
name = "queue"
topic = "queue-events"
key = "/userId"
time = "/timestamp"
id = "/eventId"
tag = "/kind"
event = "queueUpdate"
latest_value = true
latest_tags = ["rank", "admitted", "left"]
snapshot_on_connect = true
history_frames = {history}

[[tenant.policies]]
plugin = "builtin:dedupe"
config = {{ by = "id", forget_after_ms = 600000 }}

[[tenant.policies]]
plugin = "builtin:coalesce"
config = {{ tags = ["rank"] }}
"#,
            retention = self.retention_ms,
            history = self.history_frames,
        )
    }
}

const TENANTS: [&str; 2] = ["taxi", "queue"];

/// The soak's clients: per instance one all-keys client per tenant from the start of
/// the log (the references), per tenant one client hopping between instances, and
/// keyed queue users on every instance.
pub struct Tapes {
    /// `references[i][n]`: instance `i`, tenant `TENANTS[n]`.
    references: Vec<[TapeClient; 2]>,
    movers: [TapeClient; 2],
    keyed: Vec<TapeClient>,
}

impl Tapes {
    pub fn start(plan: &SoakPlan, bases: &[String], cancel: &CancellationToken) -> Tapes {
        let path = |n: usize| format!("/tenants/{}/events", TENANTS[n]);
        let from_start = || Some("0-0".to_string());
        let references = bases
            .iter()
            .map(|b| {
                [0, 1]
                    .map(|n| TapeClient::start(vec![b.clone()], path(n), from_start(), None, cancel.clone()))
            })
            .collect();
        let mut rotated = bases.to_vec();
        rotated.rotate_left(1);
        let movers = [0, 1].map(|n| {
            TapeClient::start(rotated.clone(), path(n), from_start(), Some(plan.hop), cancel.clone())
        });
        let mut keyed = Vec::new();
        for (i, base) in bases.iter().enumerate() {
            for k in 0..plan.keyed {
                // Users spread over the line, a different set on each instance.
                let user = (k * bases.len() + i) * plan.crowd / (plan.keyed * bases.len());
                let path = format!("/tenants/queue/events?key=u-{user:04}");
                keyed.push(TapeClient::start(vec![base.clone()], path, None, None, cancel.clone()));
            }
        }
        Tapes { references, movers, keyed }
    }

    /// Payloads delivered so far to instance 0's reference clients (taxi, queue).
    pub fn delivered_on_first(&self) -> [u64; 2] {
        [0, 1].map(|n| self.references[0][n].payloads())
    }

    /// After the producers stopped: waits (bounded) until every instance's reference
    /// stream of a tenant ends at the same frame, then asserts that they are identical
    /// and that each hopping client saw exactly a stretch of them. Returns a summary.
    pub async fn settle_and_compare(&self, timeout: Duration) -> String {
        let mut summary = Vec::new();
        for n in 0..2 {
            let tenant = TENANTS[n];
            let deadline = tokio::time::Instant::now() + timeout;
            let mut steady_since = tokio::time::Instant::now();
            let mut last_seen = Vec::new();
            loop {
                let lasts: Vec<Option<String>> = self.references.iter().map(|r| r[n].last_id()).collect();
                let agree = lasts.windows(2).all(|w| w[0] == w[1]);
                if !agree || lasts != last_seen {
                    steady_since = tokio::time::Instant::now();
                    last_seen = lasts.clone();
                }
                if agree && steady_since.elapsed() > Duration::from_secs(3) {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{tenant}: the instances' streams did not end at the same frame within {timeout:?}: {lasts:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let mut tapes: Vec<Tape> = self.references.iter().map(|r| r[n].tape()).collect();
            let shortest = tapes.iter().map(|t| t.frames.len()).min().unwrap_or(0);
            let trimmed: usize = tapes.iter().map(|t| t.frames.len() - shortest).max().unwrap_or(0);
            assert!(
                trimmed <= 2,
                "{tenant}: a stream went on {trimmed} frames past the others after they settled"
            );
            for t in &mut tapes {
                t.frames.truncate(shortest);
                assert_eq!(t.broken, 0, "{tenant}: a reference stream broke");
            }
            for (i, t) in tapes.iter().enumerate().skip(1) {
                tape::same(&tapes[0], t).unwrap_or_else(|e| {
                    panic!("{tenant}: instance {i}'s stream differs from instance 0's: {e}")
                });
            }
            let mut mover = self.movers[n].tape();
            let end = tapes[0].frames.last().map(|f| tape::position(&f.id));
            mover.frames.retain(|f| Some(tape::position(&f.id)) <= end);
            tape::stretch_of(&mover, &tapes[0])
                .unwrap_or_else(|e| panic!("{tenant}: the client hopping between instances: {e}"));
            summary.push(format!(
                "{tenant}: the 3 instances' streams identical ({} frames, {} events); a client hopping between \
                 instances {} times saw {} frames, each equal to the reference's, none missed or repeated",
                shortest,
                tapes[0].frames.iter().map(|f| f.payloads).sum::<usize>(),
                mover.connections - 1,
                mover.frames.len()
            ));
        }
        let keyed: Vec<Tape> = self.keyed.iter().map(TapeClient::tape).collect();
        let silent = keyed.iter().filter(|t| t.frames.is_empty()).count();
        assert_eq!(silent, 0, "{silent} of {} keyed queue clients received no frame", keyed.len());
        assert!(keyed.iter().all(|t| t.broken == 0), "a keyed queue client's stream broke");
        let frames: usize = keyed.iter().map(|t| t.frames.len()).sum();
        summary.push(format!(
            "{} keyed queue clients (?key=u-…) connected throughout: {frames} frames, none broke",
            keyed.len()
        ));
        summary.join("\n\n")
    }
}
