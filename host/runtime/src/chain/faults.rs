//! When a stage's call fails: the stage's store is dropped (quarantine, freeing its
//! memory), what it held is passed on or dropped by the tenant's [`FailurePolicy`], and
//! a fresh stage is tried after a back-off that doubles while faults continue. The
//! back-off is counted in log time (the `now` of the entries), never an instance's
//! clock, so every instance that saw the same fault restarts at the same entry.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::prepare::PreparedStage;
use super::{Chain, ChainOptions};
use crate::bindings::wit;
use crate::decisions::InvalidAnswer;
use crate::observer::ChainObserver;
use crate::plugin::Plugin;
use crate::stage::{StageError, WasmStage};

/// What a tenant's chain does with the events of a stage that faulted (trap, timeout,
/// memory limit, invalid answer) and while that stage is quarantined.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicy {
    /// Pass them on unfiltered: nothing is lost, some duplicates or disorder may show.
    #[default]
    FailOpen,
    /// Drop them, counted: nothing unchecked reaches a client.
    FailClosed,
    /// Go back to the chain that ran before the last swap (its stages start from the
    /// healthy stages' state) and run the held events through it. Without an earlier
    /// chain it acts as `fail-open`.
    LastGood,
}

/// Why a stage's answer was not used.
#[derive(Debug, thiserror::Error)]
pub(super) enum StageFault {
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error(transparent)]
    Invalid(#[from] InvalidAnswer),
    #[error("quarantined")]
    Quarantined,
    /// An instance reported a fault through the log (a wall-clock overrun).
    #[error("faulted on the cluster's word: {0}")]
    Reported(String),
}

/// One stage of a running chain, with its quarantine state.
pub(super) struct Slot {
    pub(super) plugin: Arc<Plugin>,
    pub(super) config: String,
    pub(super) label: String,
    /// `None` while quarantined after a fault.
    pub(super) stage: Option<WasmStage>,
    /// A fault the cluster reported, applied at this stage's next turn.
    pub(super) reported: Option<String>,
    /// Log time (ms) from which a quarantined stage is restarted.
    pub(super) restart_at: i64,
    /// Quarantine length after the next fault; doubles on faults in a row.
    pub(super) backoff: Duration,
}

impl Slot {
    pub(super) fn new(p: PreparedStage, options: &ChainOptions) -> Self {
        Slot {
            label: p.plugin.label(),
            plugin: p.plugin,
            config: p.config,
            stage: Some(p.stage),
            reported: None,
            restart_at: i64::MIN,
            backoff: options.restart_backoff,
        }
    }
}

/// Log time `backoff` after `now`.
fn after(now: i64, backoff: Duration) -> i64 {
    now.saturating_add(backoff.as_millis().min(i64::MAX as u128) as i64)
}

impl Chain {
    /// Drops the faulted stage's store (freeing its memory) until its backoff ends.
    pub(super) fn quarantine(
        &mut self,
        index: usize,
        now: i64,
        fault: &StageFault,
        observer: &dyn ChainObserver,
    ) {
        let max = self.options.restart_backoff_max;
        let slot = &mut self.slots[index];
        slot.stage = None;
        slot.restart_at = after(now, slot.backoff);
        observer.fault(&slot.label);
        tracing::error!(tenant = %observer.tenant(), plugin = %slot.label, stage = index, %fault,
            quarantine = ?slot.backoff, policy = ?self.options.failure_policy, "policy stage faulted");
        slot.backoff = (slot.backoff * 2).min(max);
    }

    pub(super) fn restart_if_due(&mut self, index: usize, now: i64, observer: &dyn ChainObserver) {
        let (limits, max) = (self.options.limits, self.options.restart_backoff_max);
        let slot = &mut self.slots[index];
        if slot.stage.is_some() || now < slot.restart_at {
            return;
        }
        match slot.plugin.stage(&slot.config, limits) {
            Ok(fresh) => {
                tracing::info!(tenant = %observer.tenant(), plugin = %slot.label, stage = index, "policy stage restarted");
                slot.stage = Some(fresh);
            }
            Err(e) => {
                observer.fault(&slot.label);
                slot.restart_at = after(now, slot.backoff);
                slot.backoff = (slot.backoff * 2).min(max);
                tracing::error!(tenant = %observer.tenant(), plugin = %slot.label, error = %e, "policy stage restart failed");
            }
        }
    }

    /// Everything stage `index` holds, passed on (fail-open) or dropped (fail-closed).
    pub(super) fn apply_failure_policy(
        &mut self,
        index: usize,
        observer: &dyn ChainObserver,
    ) -> Vec<wit::Event> {
        let held = self.held.held_by(index);
        match self.options.failure_policy {
            // `last-good` with nothing to go back to passes events on, like fail-open.
            FailurePolicy::FailOpen | FailurePolicy::LastGood => {
                held.into_iter().map(|seq| self.held.advance(seq, index + 1)).collect()
            }
            FailurePolicy::FailClosed => {
                for &seq in &held {
                    self.held.remove(seq);
                }
                if !held.is_empty() {
                    observer.dropped(&self.slots[index].label, "dropped_on_fault", held.len() as u64);
                }
                Vec::new()
            }
        }
    }
}
