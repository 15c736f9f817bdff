//! A running chain's whole state as plain data ([`ChainState`]), and a chain rebuilt
//! from it: the spec in force, each stage's snapshot (or its quarantine), restart
//! back-off in log time, the events held inside the chain (payloads included, by the
//! sequence numbers stages know them by) and the chain `last-good` would go back to. A
//! chain rebuilt from the state of another at some log position decides the rest of the
//! log as that one does: how a late instance starts from a checkpoint instead of the
//! whole log.

use std::time::Duration;

use super::faults::Slot;
use super::held::HeldEvents;
use super::prepare::PreparedChain;
use super::{Chain, ChainOptions, PreviousChain};
use crate::event::Event;
use crate::spec::ChainSpec;
use crate::stage::StageError;

/// Everything a chain holds between two log entries.
#[derive(Clone, Debug, PartialEq)]
pub struct ChainState {
    pub spec: ChainSpec,
    pub stages: Vec<StageState>,
    /// Events inside the chain, by sequence number (ascending).
    pub held: Vec<HeldState>,
    /// The next sequence number the chain hands out.
    pub next_seq: u64,
    /// Events left over by a swap, with the stage they enter on the next push.
    pub reinject: Vec<(u64, usize)>,
    /// The chain `last-good` would go back to, if any.
    pub previous: Option<ChainSpec>,
}

/// One stage's state.
#[derive(Clone, Debug, PartialEq)]
pub struct StageState {
    /// The component that made the snapshot (`sha256:...`): a stage is only restored
    /// into the same one.
    pub plugin_digest: String,
    pub state_version: u32,
    /// `None` while quarantined.
    pub snapshot: Option<Vec<u8>>,
    /// Undecided events the stage counts as its own (they size its calls' fuel).
    pub held: u64,
    /// A fault the cluster reported, not yet applied.
    pub reported: Option<String>,
    /// Log time from which a quarantined stage restarts.
    pub restart_at: i64,
    /// Quarantine length after its next fault.
    pub backoff_ms: u64,
}

/// An event inside the chain.
#[derive(Clone, Debug, PartialEq)]
pub struct HeldState {
    pub seq: u64,
    /// Index of the stage holding it.
    pub stage: usize,
    /// Log time at which it entered the chain.
    pub log_time: i64,
    pub event: Event,
}

/// Why a chain could not be rebuilt from a state.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("the state is of chain {state:?}, the stages given are of {given:?}")]
    OtherChain { state: Box<ChainSpec>, given: Box<ChainSpec> },
    #[error("stage {index}: the state was made by {state}, this instance runs {given}")]
    OtherComponent { index: usize, state: String, given: String },
    #[error("stage {index} ({plugin}) refused its state: {source}")]
    Refused { index: usize, plugin: String, source: StageError },
    #[error("an event held by stage {stage} of a {stages}-stage chain")]
    BadHeld { stage: usize, stages: usize },
    #[error("the previous chain given is not {0:?}")]
    OtherPrevious(Box<ChainSpec>),
}

impl Chain {
    /// The chain's state now (between two pushes). Every running stage is asked for its
    /// snapshot; one that cannot give it fails the whole state (nothing is half-recorded).
    pub fn state(&mut self) -> Result<ChainState, (usize, StageError)> {
        let mut stages = Vec::with_capacity(self.slots.len());
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let (snapshot, held) = match slot.stage.as_mut() {
                Some(stage) => (Some(stage.snapshot().map_err(|e| (index, e))?), stage.held() as u64),
                None => (None, 0),
            };
            stages.push(StageState {
                plugin_digest: slot.plugin.digest().to_string(),
                state_version: slot.plugin.description().state_version,
                snapshot,
                held,
                reported: slot.reported.clone(),
                restart_at: slot.restart_at,
                backoff_ms: slot.backoff.as_millis().min(u64::MAX as u128) as u64,
            });
        }
        let held = self
            .held
            .sorted()
            .into_iter()
            .map(|(seq, h)| HeldState { seq, stage: h.stage, log_time: h.log_time, event: h.event.clone() })
            .collect();
        Ok(ChainState {
            spec: self.spec.clone(),
            stages,
            held,
            next_seq: self.held.next_number(),
            reinject: self.held.waiting().to_vec(),
            previous: self.previous.as_ref().map(|p| p.spec.clone()),
        })
    }

    /// Rebuilds a chain from `state` with freshly `prepared` stages of the same spec and
    /// components (and, when the state has one, `previous`: the `last-good` chain,
    /// whose stages are only kept as recipes).
    pub fn restore(
        prepared: PreparedChain,
        previous: Option<PreparedChain>,
        state: ChainState,
        options: ChainOptions,
    ) -> Result<Chain, RestoreError> {
        if prepared.spec != state.spec || prepared.stages.len() != state.stages.len() {
            return Err(RestoreError::OtherChain {
                state: Box::new(state.spec),
                given: Box::new(prepared.spec),
            });
        }
        let stages = state.stages.len();
        if let Some(h) = state.held.iter().find(|h| h.stage > stages) {
            return Err(RestoreError::BadHeld { stage: h.stage, stages });
        }
        let previous = match (state.previous, previous) {
            (None, _) => None,
            (Some(spec), Some(p)) if p.spec == spec => Some(PreviousChain {
                spec,
                stages: p.stages.into_iter().map(|s| (s.plugin, s.config)).collect(),
            }),
            (Some(spec), _) => return Err(RestoreError::OtherPrevious(Box::new(spec))),
        };
        let mut slots = Vec::with_capacity(stages);
        for (index, (mut p, s)) in prepared.stages.into_iter().zip(state.stages).enumerate() {
            if p.plugin.digest() != s.plugin_digest {
                let given = p.plugin.digest().to_string();
                return Err(RestoreError::OtherComponent { index, state: s.plugin_digest, given });
            }
            let quarantined = match &s.snapshot {
                Some(snapshot) => {
                    p.stage.restore(s.state_version, snapshot, s.held as usize).map_err(|source| {
                        RestoreError::Refused { index, plugin: p.plugin.label(), source }
                    })?;
                    false
                }
                None => true,
            };
            let mut slot = Slot::new(p, &options);
            if quarantined {
                slot.stage = None;
            }
            slot.reported = s.reported;
            slot.restart_at = s.restart_at;
            slot.backoff = Duration::from_millis(s.backoff_ms);
            slots.push(slot);
        }
        let held = HeldEvents::rebuilt(
            state.held.into_iter().map(|h| (h.seq, h.event, h.log_time, h.stage)),
            state.next_seq,
            state.reinject,
        );
        Ok(Chain {
            slots,
            options,
            held,
            spec: state.spec,
            previous,
            overran: Vec::new(),
            expired: Vec::new(),
            // Recording drops is the live worker's choice while a shadow runs, not state.
            record_drops: false,
            dropped: Vec::new(),
        })
    }
}
