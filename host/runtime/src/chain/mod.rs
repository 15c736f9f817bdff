//! A tenant's policy chain: events enter the first stage, each stage's releases feed
//! the next, the last stage's releases become the frame. Payloads never leave the host;
//! stages see metadata and answer with sequence numbers.
//!
//! - [`held`]: the events inside the chain and which stage holds each.
//! - [`faults`]: quarantine, restart back-off and the tenant's failure policy.
//! - [`prepare`]: creating (and trying) the stages of a chain off the event path.
//! - [`swap`]: replacing a running chain between two log entries, and `last-good`.
//! - [`checkpoint`]: the whole state as data, and a chain rebuilt from it.
//! - [`fork`]: a copy of a running chain's state in a candidate chain (a shadow), and
//!   promoting that candidate.
//!
//! Every answer is checked by [`crate::decisions::check`]; an invalid one, a trap,
//! running out of fuel or a memory overrun is a fault, handled in [`faults`]: the same on
//! every instance. A call that overruns the wall-clock timeout is not a fault here (only
//! this machine measured it): the chain reports it ([`ChainOutput::overran`]) and the
//! host publishes it through the log, where every instance applies it at the same
//! position ([`Chain::fault_stage`]). Other tenants never notice.

mod checkpoint;
mod faults;
mod fork;
mod held;
mod prepare;
mod swap;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

pub use checkpoint::{ChainState, HeldState, RestoreError, StageState};
pub use faults::FailurePolicy;
pub use fork::ForkError;
pub use prepare::{ChainError, PreparedChain, PreparedStage, trial_batch};
pub use swap::{StateTransfer, SwapReport};

use streamgate_plugin_sdk::DropReason;

use crate::PolicyRuntime;
use crate::bindings::wit;
use crate::event::Event;
use crate::observer::ChainObserver;
use crate::sandbox::StageLimits;
use crate::spec::ChainSpec;
use faults::{Slot, StageFault};
use held::HeldEvents;

/// How a chain runs its stages and treats their faults.
#[derive(Clone, Copy, Debug)]
pub struct ChainOptions {
    pub failure_policy: FailurePolicy,
    pub limits: StageLimits,
    pub restart_backoff: Duration,
    pub restart_backoff_max: Duration,
}

impl ChainOptions {
    /// The runtime's sandbox limits and back-off, a tenant's own call budget if any.
    pub fn new(
        runtime: &PolicyRuntime,
        failure_policy: FailurePolicy,
        call_timeout: Option<Duration>,
    ) -> Self {
        let sandbox = runtime.sandbox();
        ChainOptions {
            failure_policy,
            limits: runtime.limits(call_timeout),
            restart_backoff: sandbox.restart_backoff,
            restart_backoff_max: sandbox.restart_backoff_max,
        }
    }

    /// Fail-open with the runtime's limits.
    pub fn defaults(runtime: &PolicyRuntime) -> Self {
        Self::new(runtime, FailurePolicy::default(), None)
    }
}

/// What one `push` produced.
#[derive(Default)]
pub struct ChainOutput {
    /// Released by the last stage, in emission order.
    pub released: Vec<Event>,
    /// Stages whose call ran past the wall-clock timeout on this instance.
    pub overran: Vec<Overrun>,
    /// Key hashes any stage declared expired during this push (0.2.0 `decisions.expired`):
    /// the union over stages, ascending, each once: the server removes these keys' latest
    /// values at this log position. Empty (no allocation) when no stage says so.
    pub expired: Vec<u64>,
    /// Events dropped during this push, with the reason, in the order they were dropped:
    /// only while [`Chain::record_drops`] is on (a shadow compares them), else empty.
    pub dropped: Vec<Dropped>,
}

/// An event a stage dropped (or the failure policy dropped, `dropped_on_fault`).
#[derive(Clone, Debug)]
pub struct Dropped {
    pub event: Event,
    pub reason: &'static str,
}

/// A stage call that was still running at its wall-clock deadline (it went on to finish
/// on its fuel): which stage of which chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overrun {
    pub version: u64,
    pub stage: usize,
    pub plugin: String,
}

/// The chain that ran before the last swap, kept for `last-good`.
struct PreviousChain {
    spec: ChainSpec,
    stages: Vec<(std::sync::Arc<crate::Plugin>, String)>,
}

pub struct Chain {
    slots: Vec<Slot>,
    options: ChainOptions,
    held: HeldEvents,
    spec: ChainSpec,
    previous: Option<PreviousChain>,
    /// Overruns seen during the current `push`.
    overran: Vec<Overrun>,
    /// Keys declared expired during the current `push`, in the order stages said so.
    expired: Vec<u64>,
    /// Whether pushes return the events they drop.
    record_drops: bool,
    /// Drops of the current `push`, while `record_drops`.
    dropped: Vec<Dropped>,
}

impl Chain {
    /// Loads every `builtin:` or file plugin of `spec` and creates its stage (tests,
    /// benchmarks, tools); any failure names the policy.
    pub fn build(
        runtime: &PolicyRuntime,
        spec: &ChainSpec,
        options: ChainOptions,
    ) -> Result<Chain, ChainError> {
        Ok(Chain::new(PreparedChain::load(runtime, spec, options.limits)?, options))
    }

    /// Starts a chain from prepared stages.
    pub fn new(prepared: PreparedChain, options: ChainOptions) -> Chain {
        let slots = prepared.stages.into_iter().map(|p| Slot::new(p, &options)).collect();
        Chain {
            slots,
            options,
            held: HeldEvents::default(),
            spec: prepared.spec,
            previous: None,
            overran: Vec::new(),
            expired: Vec::new(),
            record_drops: false,
            dropped: Vec::new(),
        }
    }

    /// Whether each push returns the events dropped in it ([`ChainOutput::dropped`]),
    /// for comparing two chains event by event; off by default (it costs a copy of
    /// each dropped event's handle).
    pub fn record_drops(&mut self, on: bool) {
        self.record_drops = on;
    }

    /// What this chain runs (version 0: the configured chain).
    pub fn spec(&self) -> &ChainSpec {
        &self.spec
    }

    pub fn options(&self) -> &ChainOptions {
        &self.options
    }

    /// `name@version` of each stage, in order.
    pub fn labels(&self) -> Vec<String> {
        self.slots.iter().map(|s| s.label.clone()).collect()
    }

    /// Events held inside the chain.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Whether stage `index` is quarantined.
    pub fn quarantined(&self, index: usize) -> bool {
        self.slots[index].stage.is_none()
    }

    /// Keeps no chain for `last-good` to go back to (as after a `last-good` revert).
    pub fn forget_previous(&mut self) {
        self.previous = None;
    }

    /// The chain `last-good` would go back to.
    pub fn previous_spec(&self) -> Option<&ChainSpec> {
        self.previous.as_ref().map(|p| &p.spec)
    }

    /// Runs one log entry's events (possibly none: time still moves) through the chain.
    pub fn push(&mut self, now: i64, events: Vec<Event>, observer: &dyn ChainObserver) -> ChainOutput {
        let mut injected = self.held.take_reinjected();
        let mut input: Vec<wit::Event> = events.into_iter().map(|e| self.held.admit(e, now)).collect();
        loop {
            match self.run_stages(now, input, injected, observer) {
                Some(released) => {
                    let mut expired = std::mem::take(&mut self.expired);
                    expired.sort_unstable();
                    expired.dedup();
                    let overran = std::mem::take(&mut self.overran);
                    let dropped = std::mem::take(&mut self.dropped);
                    return ChainOutput { released, overran, expired, dropped };
                }
                // `last-good` replaced the chain: what the faulted chain held goes on
                // through the restored one.
                None => (input, injected) = (Vec::new(), self.held.take_reinjected()),
            }
        }
    }

    /// Faults stage `stage` of chain `version` at log time `now`, as if its call had
    /// failed there: the failure policy takes what it holds, it is quarantined, and the
    /// rest of the chain runs (an entry without events). How every instance applies an
    /// overrun one of them reported. `None` (nothing done) if the chain is no longer
    /// that version or the stage is already quarantined.
    pub fn fault_stage(
        &mut self,
        version: u64,
        stage: usize,
        reason: String,
        now: i64,
        observer: &dyn ChainObserver,
    ) -> Option<ChainOutput> {
        let slot = self.slots.get_mut(stage).filter(|s| s.stage.is_some() && self.spec.version == version)?;
        slot.reported = Some(reason);
        Some(self.push(now, Vec::new(), observer))
    }

    /// Passes `input` through every stage, adding `injected` events before the stage
    /// they enter; `None` if `last-good` replaced the chain.
    fn run_stages(
        &mut self,
        now: i64,
        mut input: Vec<wit::Event>,
        mut injected: BTreeMap<usize, Vec<wit::Event>>,
        observer: &dyn ChainObserver,
    ) -> Option<Vec<Event>> {
        for index in 0..self.slots.len() {
            if let Some(mut older) = injected.remove(&index) {
                older.append(&mut input);
                input = older;
            }
            self.restart_if_due(index, now, observer);
            let slot = &mut self.slots[index];
            let answer = match (&mut slot.stage, slot.reported.take()) {
                (Some(_), Some(reason)) => Err(StageFault::Reported(reason)),
                (Some(stage), None) => {
                    observer.call(&slot.label);
                    let answer = stage.push(now, &input).map_err(StageFault::from);
                    // A call that faulted anyway is handled alike everywhere already.
                    if stage.overran() && answer.is_ok() {
                        let plugin = slot.label.clone();
                        self.overran.push(Overrun { version: self.spec.version, stage: index, plugin });
                    }
                    answer
                }
                (None, _) => Err(StageFault::Quarantined),
            };
            // The stage has read its input: the check refills it with what the next
            // stage gets (or the failure policy does).
            input.clear();
            let held = &mut self.held;
            let answer = answer.and_then(|d| {
                held.check_answer(&d, index, &mut input)?;
                Ok(d)
            });
            match answer {
                Ok(mut d) => {
                    self.expired.append(&mut d.expired);
                    self.slots[index].backoff = self.options.restart_backoff;
                    // Counted once per reason per batch, not per event.
                    let mut drops = [0u64; DropReason::ALL.len()];
                    for x in &d.dropped {
                        let reason = DropReason::from(x.reason);
                        if !self.record_drops {
                            self.held.discard(x.seq);
                        } else if let Some(event) = self.held.remove(x.seq) {
                            self.dropped.push(Dropped { event, reason: reason.as_str() });
                        }
                        drops[usize::from(reason.code())] += 1;
                    }
                    let label = &self.slots[index].label;
                    for (reason, n) in DropReason::ALL.iter().zip(drops).filter(|(_, n)| *n > 0) {
                        observer.dropped(label, reason.as_str(), n);
                    }
                }
                Err(fault) => {
                    let new_fault = !matches!(fault, StageFault::Quarantined);
                    if new_fault {
                        self.quarantine(index, now, &fault, observer);
                        if self.options.failure_policy == FailurePolicy::LastGood
                            && self.revert_to_last_good(observer)
                        {
                            return None;
                        }
                    }
                    input = self.apply_failure_policy(index, observer);
                }
            }
        }
        // Events that re-entered after the last stage are released first (older).
        let done = injected.remove(&self.slots.len()).unwrap_or_default();
        let released = done.iter().chain(&input).map(|e| self.held.release(e.seq)).collect();
        self.held.compact();
        Some(released)
    }
}
