//! What the benchmark measures: a latency histogram shared by every subscriber task
//! (log-linear buckets, 64 per power of two: values within 1.6 %), and a process's CPU
//! time and resident memory read from `/proc`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

const SUB_BUCKETS: u64 = 64;
const BUCKETS: usize = 64 * 40;
/// Copies of the counts, one per recording thread (round robin beyond that): threads
/// adding to the same counters would bounce their cache lines between cores on every
/// message, which cost the load client more than reading the sockets.
const SHARDS: usize = 8;

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Relaxed) % SHARDS;
}

/// Produce -> receipt latencies in microseconds, and how many were recorded.
pub struct Histogram {
    /// `SHARDS` runs of `BUCKETS` counters; a thread adds to its own run only.
    counts: Vec<AtomicU64>,
}

impl Histogram {
    pub fn new() -> Self {
        Histogram { counts: (0..BUCKETS * SHARDS).map(|_| AtomicU64::new(0)).collect() }
    }

    fn index(us: u64) -> usize {
        if us < SUB_BUCKETS {
            return us as usize;
        }
        let exp = 63 - us.leading_zeros() as u64; // >= 6
        let sub = (us >> (exp - 6)) - SUB_BUCKETS;
        ((SUB_BUCKETS + (exp - 6) * SUB_BUCKETS + sub) as usize).min(BUCKETS - 1)
    }

    /// The smallest value of bucket `i`.
    fn lower(i: usize) -> u64 {
        let i = i as u64;
        if i < SUB_BUCKETS {
            return i;
        }
        let exp = (i - SUB_BUCKETS) / SUB_BUCKETS + 6;
        let sub = (i - SUB_BUCKETS) % SUB_BUCKETS;
        (SUB_BUCKETS + sub) << (exp - 6)
    }

    pub fn record(&self, us: u64, n: u64) {
        let shard = SHARD.with(|s| *s);
        self.counts[shard * BUCKETS + Self::index(us)].fetch_add(n, Relaxed);
    }

    pub fn reset(&self) {
        for c in &self.counts {
            c.store(0, Relaxed);
        }
    }

    /// Count and the given quantiles (in ms) of what was recorded since the last reset.
    pub fn summary(&self, quantiles: &[f64]) -> (u64, Vec<f64>) {
        let mut counts = vec![0u64; BUCKETS];
        for shard in self.counts.chunks(BUCKETS) {
            for (sum, c) in counts.iter_mut().zip(shard) {
                *sum += c.load(Relaxed);
            }
        }
        let total: u64 = counts.iter().sum();
        let values = quantiles
            .iter()
            .map(|q| {
                if total == 0 {
                    return f64::NAN;
                }
                let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
                let mut seen = 0;
                for (i, c) in counts.iter().enumerate() {
                    seen += c;
                    if seen >= rank {
                        // The bucket's midpoint.
                        let (lo, hi) = (Self::lower(i), Self::lower(i + 1));
                        return (lo + hi) as f64 / 2.0 / 1000.0;
                    }
                }
                f64::NAN
            })
            .collect();
        (total, values)
    }
}

/// CPU seconds (user + system) a process has used, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) closed by ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after ')'.
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// Resident memory of a process in bytes, from `/proc/PID/status`.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// CPU seconds this process (the load client, with its producer) has used.
pub fn own_cpu_seconds() -> f64 {
    cpu_seconds(std::process::id())
}

/// Raises the soft limit of open files to the hard limit; returns the new soft limit.
pub fn raise_open_files() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid rlimit for the duration of both calls.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}
