//! The Prometheus text of every tenant's counters (`GET /metrics`).

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use super::*;

/// Renders every tenant's counters in the Prometheus text format.
pub fn render<'a>(tenants: impl IntoIterator<Item = &'a TenantMetrics>) -> String {
    let tenants: Vec<&TenantMetrics> = tenants.into_iter().collect();
    let mut out = String::new();
    let simple: [Series; 20] = [
        ("streamgate_source_messages_total", "counter", "Messages read from the source.", |m| {
            m.consumed.load(Relaxed) as i64
        }),
        (
            "streamgate_source_offset_gaps_total",
            "counter",
            "Partitions whose first record fetched after an assignment was beyond the resume offset (records skipped).",
            |m| m.offset_gaps.load(Relaxed) as i64,
        ),
        (
            "streamgate_source_lag",
            "gauge",
            "Records in the tenant's topic the group has not committed yet (last probe).",
            |m| m.source_lag.load(Relaxed),
        ),
        (
            "streamgate_source_partitions_stalled",
            "gauge",
            "Partitions whose committed offset stays behind the high watermark without moving (nobody consumes them).",
            |m| m.partitions_stalled.load(Relaxed),
        ),
        (
            "streamgate_bus_published_events_total",
            "counter",
            "Events this instance published to the bus.",
            |m| m.published.load(Relaxed) as i64,
        ),
        ("streamgate_bus_publish_errors_total", "counter", "Failed bus publishes (retried).", |m| {
            m.publish_errors.load(Relaxed) as i64
        }),
        ("streamgate_log_entries_total", "counter", "Log entries read.", |m| {
            m.log_entries.load(Relaxed) as i64
        }),
        ("streamgate_log_events_total", "counter", "Events in log entries read.", |m| {
            m.log_events.load(Relaxed) as i64
        }),
        ("streamgate_released_events_total", "counter", "Events released by the policy chain.", |m| {
            m.released.load(Relaxed) as i64
        }),
        ("streamgate_frames_total", "counter", "SSE frames produced.", |m| m.frames.load(Relaxed) as i64),
        (
            "streamgate_expired_keys_total",
            "counter",
            "Keys removed from the latest values because the policy chain expired them.",
            |m| m.expired_keys.load(Relaxed) as i64,
        ),
        ("streamgate_sse_clients", "gauge", "Connected SSE clients.", |m| m.sse_clients.load(Relaxed)),
        (
            "streamgate_sse_lagged_total",
            "counter",
            "Slow-client catch-ups (conflated or skipped frames).",
            |m| m.sse_lagged.load(Relaxed) as i64,
        ),
        ("streamgate_chain_swaps_total", "counter", "Policy chain swaps applied from the log.", |m| {
            m.swaps.load(Relaxed) as i64
        }),
        (
            "streamgate_chain_swap_failures_total",
            "counter",
            "Chain swaps that could not be prepared (the running chain stayed).",
            |m| m.swap_failures.load(Relaxed) as i64,
        ),
        (
            "streamgate_cluster_reports_total",
            "counter",
            "Faults only this instance saw (wall-clock overruns, local swap failures), published to the log.",
            |m| m.reports.load(Relaxed) as i64,
        ),
        (
            "streamgate_chain_last_good_reverts_total",
            "counter",
            "Times last-good went back to the previous chain after a fault.",
            |m| m.policy.last_good_reverts.load(Relaxed) as i64,
        ),
        (
            "streamgate_checkpoint_bytes",
            "gauge",
            "Size of the last checkpoint this instance took (encoded).",
            |m| m.checkpoint_bytes.load(Relaxed),
        ),
        (
            "streamgate_checkpoint_pause_us",
            "gauge",
            "How long the last checkpoint paused the chain, µs.",
            |m| m.checkpoint_pause_us.load(Relaxed),
        ),
        (
            "streamgate_source_decode_errors_total",
            "counter",
            "Source messages dropped as undecodable, all reasons.",
            |m| DecodeError::ALL.iter().map(|e| m.decode_errors(*e) as i64).sum(),
        ),
    ];
    for (name, kind, help, get) in simple {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for m in &tenants {
            let _ = writeln!(out, "{name}{{tenant=\"{}\"}} {}", label(&m.tenant), get(m));
        }
    }
    by_reason(
        &mut out,
        &tenants,
        "streamgate_source_dropped_total",
        "Source messages dropped, by reason.",
        |m| DecodeError::ALL.iter().map(|e| (e.as_str(), m.decode_errors(*e))).collect(),
    );
    by_reason(
        &mut out,
        &tenants,
        "streamgate_checkpoints_total",
        "Checkpoints by outcome (mismatch: another instance's state differed at the same position).",
        |m| CheckpointOutcome::ALL.iter().map(|o| (o.as_str(), m.checkpoints(*o))).collect(),
    );
    by_reason(
        &mut out,
        &tenants,
        "streamgate_log_entries_skipped_total",
        "Log entries skipped as undecodable, by reason.",
        |m| SkipReason::ALL.iter().map(|r| (r.as_str(), m.skipped(*r))).collect(),
    );
    let shadow_simple: [Series; 3] = [
        (
            "streamgate_shadow_running",
            "gauge",
            "1 while a shadow (candidate) chain runs beside the live one.",
            |m| m.shadow.running.load(Relaxed),
        ),
        (
            "streamgate_shadow_entries_total",
            "counter",
            "Log entries the live and the shadow chain both decided.",
            |m| m.shadow.entries.load(Relaxed) as i64,
        ),
        (
            "streamgate_shadow_promotions_by_swap_total",
            "counter",
            "Promotions where no intact shadow ran on this instance (a swap moved the live chain's state instead).",
            |m| m.shadow.promotions_by_swap.load(Relaxed) as i64,
        ),
    ];
    for (name, kind, help, get) in shadow_simple {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for m in &tenants {
            let _ = writeln!(out, "{name}{{tenant=\"{}\"}} {}", label(&m.tenant), get(m));
        }
    }
    let name = "streamgate_shadow_differences_total";
    let _ = writeln!(
        out,
        "# HELP {name} Events the shadow decided differently from the live chain, by kind (reordered_entries: entries).\n# TYPE {name} counter"
    );
    for m in &tenants {
        for (kind, n) in SHADOW_KINDS.iter().zip(&m.shadow.differences) {
            let _ = writeln!(
                out,
                "{name}{{tenant=\"{}\",kind=\"{kind}\"}} {}",
                label(&m.tenant),
                n.load(Relaxed)
            );
        }
    }
    by_reason(&mut out, &tenants, "streamgate_shadow_stopped_total", "Shadows ended, by reason.", |m| {
        SHADOW_STOPS.iter().zip(&m.shadow.stops).map(|(r, n)| (*r, n.load(Relaxed))).collect()
    });
    let name = "streamgate_policy_outcomes_total";
    let _ = writeln!(
        out,
        "# HELP {name} Policy drops by reason, faults and invalid decisions, per plugin.\n# TYPE {name} counter"
    );
    for m in &tenants {
        for ((plugin, what), n) in m.policy.outcomes() {
            let _ = writeln!(
                out,
                "{name}{{tenant=\"{}\",plugin=\"{}\",outcome=\"{}\"}} {n}",
                label(&m.tenant),
                label(&plugin),
                label(what)
            );
        }
    }
    let name = "streamgate_policy_calls_total";
    let _ = writeln!(out, "# HELP {name} Batch calls into each plugin.\n# TYPE {name} counter");
    for m in &tenants {
        for (plugin, n) in m.policy.calls() {
            let _ =
                writeln!(out, "{name}{{tenant=\"{}\",plugin=\"{}\"}} {n}", label(&m.tenant), label(&plugin));
        }
    }
    out
}

/// One counter per tenant and reason.
fn by_reason(
    out: &mut String,
    tenants: &[&TenantMetrics],
    name: &str,
    help: &str,
    counts: impl Fn(&TenantMetrics) -> Vec<(&'static str, u64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for m in tenants {
        for (reason, n) in counts(m) {
            let _ = writeln!(out, "{name}{{tenant=\"{}\",reason=\"{reason}\"}} {n}", label(&m.tenant));
        }
    }
}

/// A label value in the text exposition format: backslash, quote and newline escaped,
/// so no name (a tenant's, a plugin's) can end a label or start a line.
fn label(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n").into()
}
