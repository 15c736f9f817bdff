//! Replacing a running chain between two log entries without losing or repeating an
//! event: a stage of the same component and config carries on untouched; any other new
//! stage takes the state of the old stage of the same plugin name (snapshot → restore);
//! events held by a stage whose state did not move re-enter the new chain right after
//! the last stage whose state they already shaped; the old chain is kept for
//! `last-good`.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::faults::Slot;
use super::prepare::{PreparedChain, PreparedStage};
use super::{Chain, PreviousChain};
use crate::observer::ChainObserver;

/// How a new stage started.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum StateTransfer {
    /// The same component with the same config: the running stage carries on as it is.
    Kept { stage: String },
    /// It continues from the old stage's snapshot.
    Restored { from: String, bytes: usize },
    /// It starts empty, and why.
    Empty { why: String },
}

/// What a swap did.
#[derive(Clone, Debug, Serialize)]
pub struct SwapReport {
    pub from_version: u64,
    pub to_version: u64,
    /// One per new stage, in order.
    pub stages: Vec<StateTransfer>,
    /// Events that re-entered the new chain at its first stage.
    pub reinjected: usize,
    /// Time the chain was unavailable (snapshot, restore, switch).
    #[serde(serialize_with = "micros")]
    pub pause: Duration,
}

fn micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_micros() as u64)
}

impl Chain {
    /// Switches to `next`, moving state over stage by stage (matched by plugin name, in
    /// order). A plugin that refuses the old state starts empty and the report says so.
    pub fn swap(&mut self, next: PreparedChain) -> SwapReport {
        let started = Instant::now();
        let from_version = self.spec.version;
        let limits = self.options.limits;
        let mut old: Vec<Option<Slot>> = self.slots.drain(..).map(Some).collect();
        let previous = PreviousChain {
            spec: std::mem::replace(&mut self.spec, next.spec),
            stages: old.iter().flatten().map(|s| (s.plugin.clone(), s.config.clone())).collect(),
        };
        // Old stage index -> new stage index, for stages whose state moved.
        let mut moved = vec![None; old.len()];
        // New stage index -> the old stage whose state it took.
        let mut origin = Vec::with_capacity(next.stages.len());
        let mut stages = Vec::with_capacity(next.stages.len());
        for (j, mut p) in next.stages.into_iter().enumerate() {
            let name = &p.plugin.description().name;
            let Some(i) =
                old.iter().position(|o| o.as_ref().is_some_and(|s| &s.plugin.description().name == name))
            else {
                stages.push(StateTransfer::Empty { why: format!("no {name} stage ran before") });
                origin.push(None);
                self.slots.push(Slot::new(p, &self.options));
                continue;
            };
            let mut from = old[i].take().expect("found above");
            if from.stage.is_some() && from.plugin.digest() == p.plugin.digest() && from.config == p.config {
                // Nothing to move: keep the stage (and its store) running.
                moved[i] = Some(j);
                origin.push(Some(i));
                stages.push(StateTransfer::Kept { stage: from.label.clone() });
                self.slots.push(from);
                continue;
            }
            let mut clean = true;
            let held = from.stage.as_ref().map_or(0, |s| s.held());
            let transfer = match from.stage.as_mut().map(|s| s.snapshot()) {
                None => StateTransfer::Empty { why: format!("{} was quarantined", from.label) },
                Some(Err(e)) => {
                    StateTransfer::Empty { why: format!("{} could not snapshot: {e}", from.label) }
                }
                Some(Ok(state)) => {
                    match p.stage.restore(from.plugin.description().state_version, &state, held) {
                        Ok(()) => {
                            moved[i] = Some(j);
                            StateTransfer::Restored { from: from.label.clone(), bytes: state.len() }
                        }
                        Err(e) => {
                            // Whatever it half-loaded goes with the store; start clean, or
                            // quarantined (never half-restored) if no clean stage can be made.
                            match p.plugin.stage(&p.config, limits) {
                                Ok(fresh) => p.stage = fresh,
                                Err(_) => clean = false,
                            }
                            StateTransfer::Empty { why: format!("{} {e}", p.plugin.label()) }
                        }
                    }
                }
            };
            origin.push(moved[i].map(|_| i));
            stages.push(transfer);
            let mut slot = Slot::new(p, &self.options);
            if !clean {
                slot.stage = None;
            }
            self.slots.push(slot);
        }
        // Left over by an earlier swap and not yet pushed: not in any stage's state.
        let waiting = self.held.take_waiting();
        let mut reinject = Vec::new();
        for (seq, stage) in self.held.stages_mut() {
            let held = if waiting.contains_key(&seq) { None } else { moved.get(*stage).copied().flatten() };
            let passed = waiting.get(&seq).copied().unwrap_or(*stage);
            match held {
                Some(j) => *stage = j,
                None => {
                    // It went through old stages 0..p.stage: skip the new stages that
                    // took their state (it already shaped it), enter the one after.
                    let entry = origin
                        .iter()
                        .rposition(|o: &Option<usize>| o.is_some_and(|i| i < passed))
                        .map_or(0, |j| j + 1);
                    reinject.push((seq, entry));
                }
            }
        }
        let reinjected = reinject.len();
        self.held.set_reinject(reinject);
        self.previous = Some(previous);
        SwapReport {
            from_version,
            to_version: self.spec.version,
            stages,
            reinjected,
            pause: started.elapsed(),
        }
    }

    /// `last-good`: goes back to the chain before the last swap, once. `false` if
    /// there is none or it cannot be recreated (the caller then passes events on).
    pub(super) fn revert_to_last_good(&mut self, observer: &dyn ChainObserver) -> bool {
        let Some(previous) = self.previous.take() else { return false };
        let mut stages = Vec::with_capacity(previous.stages.len());
        for (plugin, config) in &previous.stages {
            match plugin.stage(config, self.options.limits) {
                Ok(stage) => {
                    stages.push(PreparedStage { plugin: plugin.clone(), config: config.clone(), stage })
                }
                Err(e) => {
                    tracing::error!(tenant = %observer.tenant(), plugin = %plugin.label(), error = %e,
                        "last-good: the previous chain cannot be recreated; passing events on");
                    return false;
                }
            }
        }
        let report = self.swap(PreparedChain { spec: previous.spec, stages });
        // Never bounce back to the chain that just faulted.
        self.previous = None;
        observer.last_good_revert();
        tracing::warn!(tenant = %observer.tenant(), from = report.from_version, to = report.to_version,
            reinjected = report.reinjected, "last-good: back to the previous chain after a fault");
        true
    }
}
