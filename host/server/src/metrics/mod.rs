//! Per-tenant counters, rendered as Prometheus text by `GET /metrics`.
//!
//! Hot-path counters are atomics; the policy chain's counters (calls, drops by reason,
//! faults, per plugin) are the runtime's [`Counts`], which the chain reports into.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use streamgate_runtime::Counts;

use crate::bus::SkipReason;
use crate::event::DecodeError;

mod render;

#[derive(Default)]
pub struct TenantMetrics {
    pub tenant: String,
    /// Messages read from the source.
    pub consumed: AtomicU64,
    /// Partitions whose first record after an assignment was beyond the resume offset.
    pub offset_gaps: AtomicU64,
    /// Records in the topic not yet committed by the group, at the last probe.
    pub source_lag: AtomicI64,
    /// Partitions nobody consumes (committed offset behind and unmoved), at the last probe.
    pub partitions_stalled: AtomicI64,
    decode_errors: [AtomicU64; DecodeError::ALL.len()],
    /// Events published to the bus by this instance.
    pub published: AtomicU64,
    pub publish_errors: AtomicU64,
    /// Log entries and the events in them read by this instance.
    pub log_entries: AtomicU64,
    pub log_events: AtomicU64,
    /// Log entries skipped as undecodable, by [`SkipReason`].
    skipped: [AtomicU64; SkipReason::ALL.len()],
    /// Events released by the chain, and the frames they formed.
    pub released: AtomicU64,
    pub frames: AtomicU64,
    /// Keys removed from the latest values because the policy chain expired them.
    pub expired_keys: AtomicU64,
    pub sse_clients: AtomicI64,
    /// Times a slow client fell behind and got the conflated state (or a gap).
    pub sse_lagged: AtomicU64,
    /// Chain swaps applied from the log, and ones that failed to prepare.
    pub swaps: AtomicU64,
    pub swap_failures: AtomicU64,
    /// Decisions only this instance could make (a call past the timeout, a chain it could
    /// not prepare), published to the log for every instance to follow.
    pub reports: AtomicU64,
    /// Checkpoints by [`CheckpointOutcome`], and the size of the last one taken.
    checkpoints: [AtomicU64; CheckpointOutcome::ALL.len()],
    pub checkpoint_bytes: AtomicI64,
    /// How long the worker paused to take the last checkpoint, µs.
    pub checkpoint_pause_us: AtomicI64,
    /// What the policy chain reports: calls, drops and faults per plugin, `last-good`
    /// reverts.
    pub policy: Counts,
    /// The shadow deploy's diff and stops, on this instance.
    pub shadow: ShadowMetrics,
}

/// Kinds of difference a shadow counts (`streamgate_shadow_differences_total{kind}`).
pub const SHADOW_KINDS: [&str; 8] = [
    "released_only_live",
    "released_only_candidate",
    "drop_reasons_differ",
    "dropped_only_live",
    "dropped_only_candidate",
    "reordered_entries",
    "expired_only_live",
    "expired_only_candidate",
];

/// Why a shadow stopped (`streamgate_shadow_stopped_total{reason}`).
pub const SHADOW_STOPS: [&str; 4] = ["stopped", "promoted", "candidate_fault", "fell_behind"];

/// A shadow deploy's counts, summed over every shadow this instance ran.
#[derive(Default)]
pub struct ShadowMetrics {
    /// 1 while a shadow runs.
    pub running: AtomicI64,
    /// Log entries both chains decided.
    pub entries: AtomicU64,
    /// By [`SHADOW_KINDS`].
    pub differences: [AtomicU64; SHADOW_KINDS.len()],
    /// By [`SHADOW_STOPS`].
    pub stops: [AtomicU64; SHADOW_STOPS.len()],
    /// Promotions where no intact shadow ran here: a swap moved the live state instead.
    pub promotions_by_swap: AtomicU64,
}

impl ShadowMetrics {
    pub fn stopped(&self, why: &'static str) {
        self.stops[slot(&SHADOW_STOPS, why)].fetch_add(1, Relaxed);
        self.running.store(0, Relaxed);
    }
}

impl TenantMetrics {
    pub fn new(tenant: &str) -> Self {
        TenantMetrics { tenant: tenant.to_string(), policy: Counts::new(tenant), ..Default::default() }
    }

    pub fn count_decode_error(&self, e: DecodeError) {
        self.decode_errors[slot(&DecodeError::ALL, e)].fetch_add(1, Relaxed);
    }

    pub fn decode_errors(&self, e: DecodeError) -> u64 {
        self.decode_errors[slot(&DecodeError::ALL, e)].load(Relaxed)
    }

    pub fn count_skipped(&self, reason: SkipReason) {
        self.skipped[slot(&SkipReason::ALL, reason)].fetch_add(1, Relaxed);
    }

    pub fn skipped(&self, reason: SkipReason) -> u64 {
        self.skipped[slot(&SkipReason::ALL, reason)].load(Relaxed)
    }

    pub fn count_checkpoint(&self, outcome: CheckpointOutcome) {
        self.checkpoints[slot(&CheckpointOutcome::ALL, outcome)].fetch_add(1, Relaxed);
    }

    pub fn checkpoints(&self, outcome: CheckpointOutcome) -> u64 {
        self.checkpoints[slot(&CheckpointOutcome::ALL, outcome)].load(Relaxed)
    }
}

/// What became of a checkpoint (the `reason` label of `streamgate_checkpoints_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointOutcome {
    /// Taken here and written to Redis (this instance was first at its position).
    Written,
    /// Taken here and equal to the one another instance wrote.
    Verified,
    /// Taken here and different from the one another instance wrote: non-determinism.
    Mismatch,
    /// Not written: larger than `max_bytes`, the writer busy, or a stage without a
    /// snapshot.
    Skipped,
    /// Writing or comparing failed (Redis unreachable).
    Failed,
    /// This instance started from a checkpoint.
    Restored,
    /// A stored checkpoint was not used at start (damaged, unverified, mismatched,
    /// trimmed from the log, another chain).
    Rejected,
}

impl CheckpointOutcome {
    pub const ALL: [CheckpointOutcome; 7] = [
        CheckpointOutcome::Written,
        CheckpointOutcome::Verified,
        CheckpointOutcome::Mismatch,
        CheckpointOutcome::Skipped,
        CheckpointOutcome::Failed,
        CheckpointOutcome::Restored,
        CheckpointOutcome::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointOutcome::Written => "written",
            CheckpointOutcome::Verified => "verified",
            CheckpointOutcome::Mismatch => "mismatch",
            CheckpointOutcome::Skipped => "skipped",
            CheckpointOutcome::Failed => "failed",
            CheckpointOutcome::Restored => "restored",
            CheckpointOutcome::Rejected => "rejected",
        }
    }
}

/// The counter slot of `x` in its kind's list of every value.
fn slot<T: PartialEq>(all: &[T], x: T) -> usize {
    all.iter().position(|v| *v == x).expect("every value is listed")
}

/// One single-valued series: name, type, help, and how to read it.
type Series = (&'static str, &'static str, &'static str, fn(&TenantMetrics) -> i64);

pub use render::render;

#[cfg(test)]
mod tests {
    use super::*;
    use streamgate_runtime::ChainObserver;

    #[test]
    fn renders_counters_with_labels() {
        let m = TenantMetrics::new("taxi");
        m.consumed.fetch_add(3, Relaxed);
        m.count_decode_error(DecodeError::NotJson);
        m.policy.dropped("dedupe@0.1.0", "duplicate", 1);
        m.policy.dropped("dedupe@0.1.0", "duplicate", 1);
        let text = render([&m]);
        assert!(text.contains("streamgate_source_messages_total{tenant=\"taxi\"} 3"), "{text}");
        assert!(text.contains("streamgate_source_dropped_total{tenant=\"taxi\",reason=\"not_json\"} 1"));
        assert!(text.contains("plugin=\"dedupe@0.1.0\",outcome=\"duplicate\"} 2"));
        assert_eq!(m.policy.plugin_count("dedupe@0.1.0", "duplicate"), 2);
    }

    #[test]
    fn label_values_cannot_break_out() {
        let m = TenantMetrics::new("t\"x");
        m.policy.dropped("evil\"} 1\nstreamgate_up 0\\", "duplicate", 1);
        let text = render([&m]);
        assert!(text.contains(r#"plugin="evil\"} 1\nstreamgate_up 0\\",outcome="duplicate"} 1"#), "{text}");
        assert!(text.contains(r#"tenant="t\"x""#), "{text}");
        assert!(!text.lines().any(|l| l.starts_with("streamgate_up")), "no line injected: {text}");
    }
}
