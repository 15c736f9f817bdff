//! The policy worker: applies the chain to every log entry in order and publishes the
//! releases as frames; switches chains at swap orders. It runs on a blocking-pool
//! thread, so a plugin call never holds up the async runtime.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use streamgate_runtime::{Chain, StateTransfer};

use super::dispatch::{SwapOrder, Work};
use super::status::{ChainStatus, SwapStatus};
use crate::bus::{Content, LogEntry};
use crate::hub::Hub;
use crate::metrics::TenantMetrics;

pub struct Worker {
    pub chain: Chain,
    pub hub: Arc<Hub>,
    pub metrics: Arc<TenantMetrics>,
    pub status: watch::Sender<ChainStatus>,
    pub clock: Instant,
    pub last_entry_ms: Arc<AtomicU64>,
}

impl Worker {
    /// Stops when the dispatcher stops or at shutdown (without draining a backlog a slow
    /// plugin built up).
    pub fn run(mut self, mut work: mpsc::Receiver<Work>, cancel: &CancellationToken) {
        // Log time never goes back, even if a bus's stamps do.
        let mut now = i64::MIN;
        while let Some(item) = work.blocking_recv() {
            if cancel.is_cancelled() {
                break;
            }
            self.last_entry_ms.store(self.clock.elapsed().as_millis() as u64, Relaxed);
            self.metrics.log_entries.fetch_add(1, Relaxed);
            match item {
                Work::Entry(entry) => {
                    now = now.max(entry.log_time);
                    self.entry(now, entry);
                }
                Work::Swap(order) => self.swap(order),
            }
        }
        tracing::debug!(tenant = %self.metrics.tenant, held = self.chain.held(), "policy worker stopped");
    }

    fn entry(&mut self, now: i64, entry: LogEntry) {
        let events = match entry.content {
            Content::Events(events) => events,
            // Control entries became swap orders in the dispatcher.
            Content::Heartbeat | Content::Control(_) => Vec::new(),
            Content::Undecodable { reason, detail } => {
                self.metrics.count_skipped(reason);
                tracing::warn!(tenant = %self.metrics.tenant, position = %entry.position, reason = reason.as_str(),
                    detail, "skipping a log entry");
                Vec::new()
            }
        };
        self.metrics.log_events.fetch_add(events.len() as u64, Relaxed);
        let version = self.chain.spec().version;
        let out = self.chain.push(now, events, &self.metrics.policy);
        if !out.released.is_empty() {
            self.metrics.released.fetch_add(out.released.len() as u64, Relaxed);
            self.metrics.frames.fetch_add(1, Relaxed);
            self.hub.publish(entry.position, out.released);
        }
        let reverted = self.chain.spec().version != version;
        self.status.send_modify(|s| {
            s.position = entry.position;
            if reverted {
                s.refresh(&self.chain);
                s.last_error = Some(format!(
                    "last-good: a stage of version {version} faulted at {}; back to version {}",
                    entry.position,
                    self.chain.spec().version
                ));
            }
        });
    }

    /// Waits for the order's chain (prepared since the dispatcher saw the entry) and
    /// switches to it; if it could not be prepared, the running chain stays.
    fn swap(&mut self, order: SwapOrder) {
        let tenant = self.metrics.tenant.clone();
        let prepared =
            order.prepared.blocking_recv().unwrap_or_else(|_| Err("preparation was cancelled".into()));
        match prepared {
            Ok(next) => {
                let report = self.chain.swap(next);
                self.metrics.swaps.fetch_add(1, Relaxed);
                tracing::info!(tenant, position = %order.position, from = report.from_version,
                    to = report.to_version, pause_us = report.pause.as_micros() as u64,
                    stages = ?report.stages, reinjected = report.reinjected, reason = %order.reason,
                    "policy chain swapped");
                for (i, t) in report.stages.iter().enumerate() {
                    if let StateTransfer::Empty { why } = t {
                        tracing::warn!(tenant, stage = i, why, "new stage starts without state");
                    }
                }
                self.status.send_modify(|s| {
                    s.refresh(&self.chain);
                    s.position = order.position;
                    s.swaps += 1;
                    s.last_swap = Some(SwapStatus {
                        position: order.position,
                        log_time: order.log_time,
                        reason: order.reason,
                        report,
                    });
                });
            }
            Err(e) => {
                self.metrics.swap_failures.fetch_add(1, Relaxed);
                tracing::error!(tenant, position = %order.position, version = order.version, error = %e,
                    "policy chain swap failed; the running chain stays");
                self.status.send_modify(|s| {
                    s.position = order.position;
                    s.last_error = Some(format!("version {} at {}: {e}", order.version, order.position));
                });
            }
        }
    }
}
