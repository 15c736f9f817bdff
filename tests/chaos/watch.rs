//! Watching the instances through an outage: what each one's `/readyz` says (polled
//! until every instance shows what is expected, bounded) and how much CPU each burns
//! meanwhile (user + system time from `/proc/PID/stat`), to show that sources and log
//! readers wait rather than spin while a part is down.

use std::time::{Duration, Instant};

use super::cluster::Cluster;
use crate::common::http_answer;

/// Most CPU an instance may use while Kafka or Redis is down, in cores: a source or a
/// reader retrying without a pause would use a whole one.
pub const IDLE_CPU_BOUND: f64 = 0.20;

/// Polls every instance's `/readyz` every 100 ms until each has answered `503` with
/// `reason` in its body (each need not say so at the same moment); how long that took.
/// Panics after `within` with the last answers.
pub fn wait_all_not_ready(cluster: &Cluster, reason: &str, within: Duration) -> Duration {
    wait_all(cluster, within, &format!("503 naming {reason:?}"), |status, body| {
        status == 503 && body.starts_with("not ready\n") && body.contains(reason)
    })
}

/// Polls until every instance's `/readyz` answers `200`; how long that took.
pub fn wait_all_ready(cluster: &Cluster, within: Duration) -> Duration {
    wait_all(cluster, within, "200 ready", |status, body| status == 200 && body.starts_with("ready"))
}

fn wait_all(cluster: &Cluster, within: Duration, what: &str, ok: impl Fn(u16, &str) -> bool) -> Duration {
    let start = Instant::now();
    let mut seen = vec![false; cluster.len()];
    let mut last: Vec<Option<(u16, String)>> = vec![None; cluster.len()];
    loop {
        for i in 0..cluster.len() {
            if seen[i] {
                continue;
            }
            let answer = http_answer(&format!("{}/readyz", cluster.base(i)));
            seen[i] = answer.as_ref().is_some_and(|(s, b)| ok(*s, b));
            last[i] = answer;
        }
        if seen.iter().all(|&s| s) {
            return start.elapsed();
        }
        if start.elapsed() > within {
            let pending: Vec<usize> = (0..cluster.len()).filter(|&i| !seen[i]).collect();
            panic!(
                "/readyz of instances {pending:?} did not answer {what} within {within:?}; last answers: {:?}",
                pending.iter().map(|&i| &last[i]).collect::<Vec<_>>()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// CPU time of a set of processes from a starting point.
pub struct CpuClock {
    start: Instant,
    ticks: Vec<(u32, u64)>,
}

impl CpuClock {
    pub fn start(pids: &[u32]) -> CpuClock {
        CpuClock { start: Instant::now(), ticks: pids.iter().map(|&p| (p, cpu_ticks(p))).collect() }
    }

    /// Each process's CPU use since the start, in cores (1.0 = one core busy throughout).
    pub fn cores(&self) -> Vec<f64> {
        let wall = self.start.elapsed().as_secs_f64();
        self.ticks.iter().map(|&(pid, t0)| (cpu_ticks(pid) - t0) as f64 / clock_ticks() / wall).collect()
    }
}

/// `utime + stime` of `pid`, in clock ticks (`/proc/PID/stat` fields 14 and 15).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/stat: {e}"));
    // The command name (field 2) may hold spaces: count fields after its closing ')'.
    let rest = &stat[stat.rfind(')').expect("a (comm) field") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields[n - 3].parse::<u64>().expect("a tick count");
    field(14) + field(15)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// `0.03, 0.02, 0.04` as `3 / 2 / 4 %`.
pub fn percents(cores: &[f64]) -> String {
    cores.iter().map(|c| format!("{:.0}", c * 100.0)).collect::<Vec<_>>().join(" / ") + " %"
}
