//! What the soak samples over time (each instance's resident memory and open file
//! descriptors from `/proc`, Redis's `used_memory`, events delivered) and the growth
//! check on it: after the warm-up, the mean of the last third against the mean of the
//! first third, within a stated bound.

/// One sample, taken every few seconds.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Seconds since the producers started.
    pub at_s: f64,
    /// Resident memory per instance, MB.
    pub rss_mb: Vec<f64>,
    /// Open file descriptors per instance.
    pub fds: Vec<f64>,
    /// Redis `used_memory`, MB.
    pub redis_mb: f64,
    /// Payloads delivered so far to one client per tenant on instance 0 (taxi, queue).
    pub delivered: [u64; 2],
    /// Messages the broker acknowledged so far (taxi, queue).
    pub produced: [u64; 2],
}

/// Resident memory of process `pid`, MB (`VmRSS` in `/proc/PID/status`).
pub fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().strip_suffix("kB"));
    kb.and_then(|v| v.trim().parse::<f64>().ok()).expect("VmRSS in /proc/PID/status") / 1024.0
}

/// Open file descriptors of process `pid` (entries of `/proc/PID/fd`).
pub fn open_fds(pid: u32) -> f64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/fd: {e}"))
        .count() as f64
}

/// Redis's `used_memory` (INFO memory), MB.
pub async fn redis_used_mb(conn: &mut redis::aio::MultiplexedConnection) -> f64 {
    let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await.expect("INFO memory");
    let bytes = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .expect("used_memory in INFO memory");
    bytes / 1e6
}

/// How much a series may grow after the warm-up: the last third's mean at most
/// `factor` times the first third's plus `slack` (in the series' unit).
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    pub factor: f64,
    pub slack: f64,
}

impl Bound {
    pub fn describe(&self, unit: &str) -> String {
        format!("≤ first × {:.2} + {} {unit}", self.factor, self.slack)
    }
}

/// One series' verdict: means of the first and last thirds after the warm-up.
#[derive(Clone, Debug)]
pub struct Growth {
    pub what: String,
    pub unit: &'static str,
    pub first: f64,
    pub last: f64,
    pub peak: f64,
    pub bound: Bound,
}

impl Growth {
    /// The series `values` (one per sample) of the samples taken after `warmup_s`.
    pub fn of(
        what: String,
        unit: &'static str,
        samples: &[Sample],
        warmup_s: f64,
        bound: Bound,
        value: impl Fn(&Sample) -> f64,
    ) -> Growth {
        let after: Vec<f64> = samples.iter().filter(|s| s.at_s >= warmup_s).map(&value).collect();
        assert!(after.len() >= 6, "{what}: only {} samples after the warm-up of {warmup_s} s", after.len());
        let third = after.len() / 3;
        let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
        let peak = samples.iter().map(value).fold(f64::MIN, f64::max);
        Growth {
            what,
            unit,
            first: mean(&after[..third]),
            last: mean(&after[after.len() - third..]),
            peak,
            bound,
        }
    }

    pub fn ok(&self) -> bool {
        self.last <= self.first * self.bound.factor + self.bound.slack
    }

    /// A row of the figures table.
    pub fn row(&self) -> String {
        let change = if self.first > 0.0 {
            format!("{:+.1} %", (self.last / self.first - 1.0) * 100.0)
        } else {
            "-".into()
        };
        format!(
            "| {} | {:.1} {u} | {:.1} {u} | {change} | {:.1} {u} | {} | {} |",
            self.what,
            self.first,
            self.last,
            self.peak,
            self.bound.describe(self.unit),
            if self.ok() { "yes" } else { "NO" },
            u = self.unit
        )
    }
}

pub const TABLE_HEADER: &str = "| series | first third (mean) | last third (mean) | change | peak (whole run) | bound | within |\n\
                                | --- | ---: | ---: | ---: | ---: | --- | --- |";

/// Events per second between the first and last sample of each third after the warm-up,
/// for counter `value` (cumulative): (first third, last third).
pub fn rates(samples: &[Sample], warmup_s: f64, value: impl Fn(&Sample) -> u64) -> (f64, f64) {
    let after: Vec<&Sample> = samples.iter().filter(|s| s.at_s >= warmup_s).collect();
    let third = after.len() / 3;
    let rate = |a: &Sample, b: &Sample| (value(b) - value(a)) as f64 / (b.at_s - a.at_s).max(1e-9);
    (rate(after[0], after[third]), rate(after[after.len() - 1 - third], after[after.len() - 1]))
}

/// The sum of the samples of `name` whose labels contain `labels` in a `/metrics` body.
pub fn metric_sum(body: &str, name: &str, labels: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']) && l.contains(labels))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}
