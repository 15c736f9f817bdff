//! Creating the stages of a chain before it runs: one way for every caller (a tenant's
//! start, a swap prepared off the event path, tests and benchmarks). Plugins come
//! already compiled, from wherever the caller resolves references; with `trial`, each
//! first decides a small sample in a throwaway stage, so one that traps on its first
//! batch is refused before it serves.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::bindings::wit;
use crate::decisions;
use crate::engine::PolicyRuntime;
use crate::plugin::{Plugin, PluginError};
use crate::sandbox::StageLimits;
use crate::spec::{ChainSpec, StageSpec};
use crate::stage::{StageError, WasmStage};

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("policy {index} ({plugin}): {source}")]
    Load { index: usize, plugin: String, source: PluginError },
    #[error("policy {index} ({plugin}): {source}")]
    Stage { index: usize, plugin: String, source: StageError },
    #[error("policy {index} ({plugin}) failed its trial batch: {reason}")]
    Trial { index: usize, plugin: String, reason: String },
}

/// One stage of a chain that is not running yet: created, checked, holding nothing.
pub struct PreparedStage {
    pub plugin: Arc<Plugin>,
    pub config: String,
    pub stage: WasmStage,
}

/// A chain ready to be swapped in (or to start a tenant with).
pub struct PreparedChain {
    pub spec: ChainSpec,
    pub stages: Vec<PreparedStage>,
}

impl PreparedChain {
    /// Creates every stage of `spec` from its compiled `plugins` (in order) under
    /// `limits`; blocking, as it runs the plugins' constructors.
    pub fn create(
        spec: ChainSpec,
        plugins: Vec<Arc<Plugin>>,
        limits: StageLimits,
        trial: bool,
    ) -> Result<Self, ChainError> {
        let mut stages = Vec::with_capacity(plugins.len());
        for (index, (s, plugin)) in spec.policies.iter().zip(plugins).enumerate() {
            let config = s.config_string();
            let named = || format!("{} = {}", s.plugin, plugin.label());
            if trial {
                trial_batch(&plugin, &config, limits).map_err(|reason| ChainError::Trial {
                    index,
                    plugin: named(),
                    reason,
                })?;
            }
            let stage = plugin.stage(&config, limits).map_err(|source| ChainError::Stage {
                index,
                plugin: named(),
                source,
            })?;
            stages.push(PreparedStage { plugin, config, stage });
        }
        Ok(PreparedChain { spec, stages })
    }

    /// Compiles the `builtin:` and file plugins of `spec` and creates their stages.
    pub fn load(runtime: &PolicyRuntime, spec: &ChainSpec, limits: StageLimits) -> Result<Self, ChainError> {
        let plugins = spec
            .policies
            .iter()
            .enumerate()
            .map(|(index, s): (usize, &StageSpec)| {
                runtime.load_ref(&s.plugin).map_err(|source| ChainError::Load {
                    index,
                    plugin: s.plugin.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::create(spec.clone(), plugins, limits, false)
    }
}

/// Runs a throwaway stage over a small sample: an empty batch, a batch of a few keys
/// with a duplicate and a late event, and a flush far in the future. The answers must
/// be valid (only sequence numbers it holds, each once).
pub fn trial_batch(plugin: &Plugin, config: &str, limits: StageLimits) -> Result<(), String> {
    let mut stage = plugin.stage(config, limits).map_err(|e| e.to_string())?;
    let now = 1_763_900_000_000i64;
    let ev = |seq: u64, key: &str, t: i64| wit::Event {
        seq,
        key: streamgate_plugin_sdk::hash(key),
        event_time: t,
        log_time: now,
        id: seq,
        tag: 0,
    };
    let batches = [
        (now, vec![]),
        (now, vec![ev(0, "a", now - 10), ev(1, "b", now - 5), ev(2, "a", now - 10), ev(3, "a", now - 400)]),
        (now + 3_600_000, vec![]),
    ];
    let mut held = BTreeSet::new();
    for (at, events) in batches {
        held.extend(events.iter().map(|e| e.seq));
        let answer = stage.push(at, &events).map_err(|e| e.to_string())?;
        decisions::validate(&answer, |seq| held.contains(&seq)).map_err(|e| e.to_string())?;
        for seq in answer.released.iter().copied().chain(answer.dropped.iter().map(|d| d.seq)) {
            held.remove(&seq);
        }
    }
    Ok(())
}
