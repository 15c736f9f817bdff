//! A candidate chain that starts from a running chain's state without disturbing it
//! (a shadow deploy), and promoting that candidate to be the running chain.
//!
//! The fork is a swap onto a twin: each running stage's snapshot is restored into a
//! fresh stage of the same plugin and config (the twin, holding copies of the same
//! events), and the twin is swapped to the candidate exactly as a live swap would move
//! state. So the candidate starts where a swap at that position would have started it,
//! and the running chain carries on as if nothing happened (a snapshot does not change
//! a stage's state).

use std::time::Instant;

use super::Chain;
use super::faults::Slot;
use super::prepare::{PreparedChain, PreparedStage};
use super::swap::SwapReport;
use crate::stage::StageError;

/// A running stage whose state could not be copied into a twin.
#[derive(Debug, thiserror::Error)]
#[error("cannot copy the state of the running stage {plugin}: {source}")]
pub struct ForkError {
    pub plugin: String,
    pub source: StageError,
}

impl Chain {
    /// A new chain running `candidate`, with this chain's state moved into it as
    /// [`Chain::swap`] would move it; this chain is left as it was. The report's `pause`
    /// is the whole fork (snapshots, twin, restores). Fails, changing nothing here, if a
    /// running stage's state cannot be copied.
    pub fn fork(&mut self, candidate: PreparedChain) -> Result<(Chain, SwapReport), ForkError> {
        let started = Instant::now();
        let limits = self.options.limits;
        let mut slots = Vec::with_capacity(self.slots.len());
        for slot in &mut self.slots {
            let failed = |source| ForkError { plugin: slot.label.clone(), source };
            let mut copy = slot.plugin.stage(&slot.config, limits).map_err(failed)?;
            let running = match slot.stage.as_mut() {
                Some(running) => {
                    let held = running.held();
                    let state = running.snapshot().map_err(failed)?;
                    copy.restore(slot.plugin.description().state_version, &state, held).map_err(failed)?;
                    true
                }
                None => false,
            };
            let prepared =
                PreparedStage { plugin: slot.plugin.clone(), config: slot.config.clone(), stage: copy };
            let mut twin = Slot::new(prepared, &self.options);
            twin.restart_at = slot.restart_at;
            twin.backoff = slot.backoff;
            if !running {
                // Quarantined here, quarantined in the twin: the candidate's stage of
                // that plugin starts empty, as after a swap.
                twin.stage = None;
            }
            slots.push(twin);
        }
        let mut twin =
            Chain::new(PreparedChain { spec: self.spec.clone(), stages: Vec::new() }, self.options);
        twin.slots = slots;
        twin.held = self.held.clone();
        twin.record_drops = self.record_drops;
        let mut report = twin.swap(candidate);
        report.pause = started.elapsed();
        Ok((twin, report))
    }

    /// Makes `candidate` (a chain forked from this one and run beside it since) the
    /// running chain, as chain `version`; this chain becomes the one `last-good` goes
    /// back to.
    pub fn promote(&mut self, mut candidate: Chain, version: u64) {
        candidate.spec.version = version;
        candidate.record_drops = false;
        let previous = std::mem::replace(self, candidate);
        self.previous = Some(super::PreviousChain {
            spec: previous.spec,
            stages: previous.slots.iter().map(|s| (s.plugin.clone(), s.config.clone())).collect(),
        });
    }
}
