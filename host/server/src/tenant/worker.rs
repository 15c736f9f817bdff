//! The policy worker: applies the chain to every log entry in order and publishes the
//! releases as frames; switches chains at swap orders and faults stages at fault
//! orders. What only this instance saw (a call past the timeout, a chain it could not
//! prepare) it does not act on alone: it sends it to be published in the log, and acts
//! on the entry like every other instance. It runs on a blocking-pool thread, so a
//! plugin call never holds up the async runtime.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use streamgate_runtime::{Chain, ChainOutput, Event, StateTransfer};

use crate::checkpoint::CheckpointTap;

use super::dispatch::{FaultOrder, PrepareFailure, SwapOrder, Work};
use super::shadow::{Shadow, ShadowBoard};
use super::status::{ChainStatus, SwapStatus};
use crate::bus::{Content, Control, LogEntry, LogPosition};
use crate::hub::Hub;
use crate::metrics::TenantMetrics;
use crate::policy::ChainRecord;

pub struct Worker {
    pub chain: Chain,
    pub hub: Arc<Hub>,
    pub metrics: Arc<TenantMetrics>,
    pub status: watch::Sender<ChainStatus>,
    pub clock: Instant,
    pub last_entry_ms: Arc<AtomicU64>,
    /// Where reports go to be published in the log.
    pub reports: mpsc::UnboundedSender<Control>,
    /// Chain changes the admin API's records do not cover (a `last-good` revert, an
    /// applied `revert`), for the chain history: an instance that starts later must start
    /// with the chain its peers run.
    pub history: mpsc::UnboundedSender<ChainRecord>,
    /// This instance's name in reports.
    pub instance: String,
    /// Overruns reported and not yet back from the log: (chain version, stage).
    pub reported: HashSet<(u64, usize)>,
    /// The candidate chain running beside this one, if any (see [`super::shadow`]).
    pub shadow: Option<Shadow>,
    pub shadow_board: Arc<ShadowBoard>,
    /// Where checkpoints go, when the tenant keeps them.
    pub checkpoints: Option<CheckpointTap>,
    /// Log time to start from (a checkpoint's), else none yet.
    pub start_time: Option<i64>,
}

impl Worker {
    /// Stops when the dispatcher stops or at shutdown (without draining a backlog a slow
    /// plugin built up).
    pub fn run(mut self, mut work: mpsc::Receiver<Work>, cancel: &CancellationToken) {
        // Log time never goes back, even if a bus's stamps do.
        let mut now = self.start_time.unwrap_or(i64::MIN);
        while let Some(item) = work.blocking_recv() {
            if cancel.is_cancelled() {
                break;
            }
            self.last_entry_ms.store(self.clock.elapsed().as_millis() as u64, Relaxed);
            self.metrics.log_entries.fetch_add(1, Relaxed);
            match item {
                Work::Entry(entry) => {
                    let (before, position) = (now, entry.position);
                    now = now.max(entry.log_time);
                    self.entry(now, entry);
                    if let Some(tap) = self.checkpoints.as_ref().filter(|t| t.due(before, now)) {
                        tap.take(&mut self.chain, &self.hub, position, now, &self.metrics);
                    }
                }
                Work::Swap(order) => self.swap(order),
                Work::StartShadow(order) => self.start_shadow(order),
                Work::StopShadow { position, reason, started_at } => {
                    let meant = |s: &Shadow| started_at.is_none_or(|at| at == s.started_at);
                    if let Some(shadow) = self.shadow.take_if(|s| meant(s)) {
                        tracing::info!(tenant = %self.metrics.tenant, %position, reason, "shadow stopped");
                        shadow.stop(format!("{reason} at {position}"));
                        self.chain.record_drops(false);
                    }
                    self.status.send_modify(|s| s.position = position);
                }
                Work::Fault(order) => {
                    now = now.max(order.log_time);
                    self.fault(now, order);
                }
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
        let copy = self.shadow.as_ref().map(|_| events.clone());
        let out = self.chain.push(now, events, &self.metrics.policy);
        self.feed_shadow(entry.position, now, copy, &out);
        self.emit(entry.position, version, out);
    }

    /// Hands the shadow what the live chain got and decided (never waits for it).
    fn feed_shadow(
        &mut self,
        position: LogPosition,
        now: i64,
        events: Option<Vec<Event>>,
        out: &ChainOutput,
    ) {
        let Some(shadow) = &mut self.shadow else { return };
        shadow.feed(position, now, events.unwrap_or_default(), out);
        if !shadow.running() {
            // A stop only this instance saw is published: every instance drops the
            // candidate at that entry, so a later promotion finds none anywhere.
            if let Some(reason) = shadow.local_stop() {
                let reason = format!("{reason} (seen by {})", self.instance);
                let started_at = Some(shadow.started_at.to_string());
                let _ = self.reports.send(Control::StopShadow { reason, started_at });
            }
            self.shadow = None;
            self.chain.record_drops(false);
        }
    }

    /// Applies a fault some instance reported, at its position in the log.
    fn fault(&mut self, now: i64, order: FaultOrder) {
        self.reported.remove(&(order.version, order.stage));
        let version = self.chain.spec().version;
        let reason = format!("{} (reported at {})", order.reason, order.position);
        match self.chain.fault_stage(order.version, order.stage, reason, now, &self.metrics.policy) {
            Some(out) => {
                self.feed_shadow(order.position, now, None, &out);
                tracing::error!(tenant = %self.metrics.tenant, position = %order.position, plugin = order.plugin,
                    stage = order.stage, reason = order.reason, "policy stage faulted on a report from the log");
                self.emit(order.position, version, out);
                self.status.send_modify(|s| {
                    s.last_error = Some(format!(
                        "stage {} ({}) faulted at {}: {}",
                        order.stage, order.plugin, order.position, order.reason
                    ));
                });
            }
            None => self.status.send_modify(|s| s.position = order.position),
        }
    }

    /// Publishes a push's releases and expired keys as the frame of `position`, reports its overruns and
    /// notes a `last-good` revert (`version` ran before the push).
    fn emit(&mut self, position: LogPosition, version: u64, out: ChainOutput) {
        if !out.released.is_empty() || !out.expired.is_empty() {
            self.metrics.released.fetch_add(out.released.len() as u64, Relaxed);
            // Expired keys leave the latest values at this very position, on every instance.
            if self.hub.publish(position, out.released, &out.expired) {
                self.metrics.frames.fetch_add(1, Relaxed);
            }
        }
        let timeout = self.chain.options().limits.call_timeout;
        for o in out.overran {
            if self.reported.insert((o.version, o.stage)) {
                let reason = format!(
                    "a call took longer than call_timeout_ms = {} on instance {} at {position}",
                    timeout.as_millis(),
                    self.instance
                );
                let _ = self.reports.send(Control::FaultStage {
                    version: o.version,
                    stage: o.stage,
                    plugin: o.plugin,
                    reason,
                });
            }
        }
        let reverted = self.chain.spec().version != version;
        if reverted {
            let reason = format!("last-good: a stage of version {version} faulted at {position}");
            self.keep_in_history(position, reason, true);
        }
        self.status.send_modify(|s| {
            s.position = position;
            if reverted {
                s.refresh(&self.chain);
                s.last_error = Some(format!(
                    "last-good: a stage of version {version} faulted at {position}; back to version {}",
                    self.chain.spec().version
                ));
            }
        });
    }

    /// Sends the running chain, in force since `position`, to the chain history.
    fn keep_in_history(&self, position: LogPosition, reason: String, last_good: bool) {
        let chain = self.chain.spec().clone();
        let (position, published_ms) = (position.to_string(), crate::bus::wall_clock_ms());
        let _ = self.history.send(ChainRecord { chain, reason, position, published_ms, last_good });
    }

    /// Waits for the order's chain (prepared since the dispatcher saw the entry) and
    /// switches to it; if it could not be prepared, the running chain stays.
    fn swap(&mut self, order: SwapOrder) {
        let tenant = self.metrics.tenant.clone();
        let prepared = order.prepared.blocking_recv().unwrap_or_else(|_| {
            Err(PrepareFailure { message: "preparation was cancelled".into(), local: false })
        });
        match prepared {
            Ok(_) if order.only_from.is_some_and(|from| from != self.chain.spec().version) => {
                tracing::debug!(tenant, position = %order.position, "a revert for another chain version; ignored");
                self.status.send_modify(|s| s.position = order.position);
            }
            Ok(next) => {
                let report =
                    match self.promotion(order.promote, order.position, order.version, &next.spec.policies) {
                        Some(report) => report,
                        None => self.chain.swap(next),
                    };
                if order.forget_previous {
                    self.chain.forget_previous();
                }
                if order.only_from.is_some() {
                    // A revert is in the log, but not in the chain history: recorded, so
                    // an instance that starts after it starts with the chain kept.
                    self.keep_in_history(order.position, order.reason.clone(), false);
                }
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
                tracing::error!(tenant, position = %order.position, version = order.version, error = e.message,
                    "policy chain swap failed; the running chain stays");
                self.status.send_modify(|s| {
                    s.position = order.position;
                    s.last_error =
                        Some(format!("version {} at {}: {}", order.version, order.position, e.message));
                });
                // Others may have switched: they come back to the chain this one kept.
                if e.local && order.only_from.is_none() {
                    let running = self.chain.spec();
                    let _ = self.reports.send(Control::Revert {
                        from_version: order.version,
                        chain: running.clone(),
                        reason: format!(
                            "instance {} could not prepare version {} at {} ({}) and kept version {}",
                            self.instance, order.version, order.position, e.message, running.version
                        ),
                    });
                }
            }
        }
    }
}
