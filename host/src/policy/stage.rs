//! One policy stage: a plugin instance in its own [`Store`], living exactly as long as
//! the stage. Every call runs under an epoch deadline; the store caps memory and tables.

use wasmtime::component::ResourceAny;
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};

use super::bindings::{PolicyPlugin, PolicyPluginPre, wit};

/// Per-store data: only the resource limiter (plugins get no host state).
pub struct StageState {
    limits: StoreLimits,
}

/// Sandbox limits applied to every stage's store and call.
#[derive(Clone, Copy, Debug)]
pub struct StageLimits {
    pub deadline_ticks: u64,
    pub max_memory_bytes: usize,
    pub max_table_elements: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The plugin refused its config (an expected, typed failure).
    #[error("rejected its config: {0}")]
    Config(String),
    /// The plugin refused a snapshot (typed failure).
    #[error("refused the snapshot: {0}")]
    Restore(String),
    /// A trap, timeout or limit hit: the stage is unusable.
    #[error("faulted: {0}")]
    Fault(String),
}

fn fault(e: wasmtime::Error) -> StageError {
    StageError::Fault(format!("{e:#}"))
}

fn new_store(engine: &Engine, limits: StageLimits) -> Store<StageState> {
    let state = StageState {
        limits: StoreLimitsBuilder::new()
            .memory_size(limits.max_memory_bytes)
            .table_elements(limits.max_table_elements)
            .instances(16)
            .build(),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    store.set_epoch_deadline(limits.deadline_ticks);
    store
}

pub struct WasmStage {
    limits: StageLimits,
    store: Store<StageState>,
    bindings: PolicyPlugin,
    stage: ResourceAny,
}

impl WasmStage {
    /// Calls `describe` in a throwaway store.
    pub(super) fn describe(
        pre: &PolicyPluginPre<StageState>,
        engine: &Engine,
        limits: StageLimits,
    ) -> Result<wit::Description, StageError> {
        let mut store = new_store(engine, limits);
        let bindings = pre.instantiate(&mut store).map_err(fault)?;
        bindings.streamgate_policy_policy().call_describe(&mut store).map_err(fault)
    }

    pub(super) fn create(
        pre: &PolicyPluginPre<StageState>,
        engine: &Engine,
        limits: StageLimits,
        config: &str,
    ) -> Result<Self, StageError> {
        let mut store = new_store(engine, limits);
        let bindings = pre.instantiate(&mut store).map_err(fault)?;
        let created =
            bindings.streamgate_policy_policy().stage().call_create(&mut store, config).map_err(fault)?;
        let stage = created.map_err(|e| {
            StageError::Config(match e {
                wit::ConfigError::Malformed(m) => format!("malformed config: {m}"),
                wit::ConfigError::Invalid(m) => format!("invalid config: {m}"),
            })
        })?;
        Ok(WasmStage { limits, store, bindings, stage })
    }

    /// Decides a batch at log time `now`.
    pub fn push(&mut self, now: i64, events: &[wit::Event]) -> Result<wit::Decisions, StageError> {
        self.store.set_epoch_deadline(self.limits.deadline_ticks);
        self.bindings
            .streamgate_policy_policy()
            .stage()
            .call_push(&mut self.store, self.stage, now, events)
            .map_err(fault)
    }

    pub fn snapshot(&mut self) -> Result<Vec<u8>, StageError> {
        self.store.set_epoch_deadline(self.limits.deadline_ticks);
        self.bindings
            .streamgate_policy_policy()
            .stage()
            .call_snapshot(&mut self.store, self.stage)
            .map_err(fault)
    }

    pub fn restore(&mut self, state_version: u32, state: &[u8]) -> Result<(), StageError> {
        self.store.set_epoch_deadline(self.limits.deadline_ticks);
        self.bindings
            .streamgate_policy_policy()
            .stage()
            .call_restore(&mut self.store, self.stage, state_version, state)
            .map_err(fault)?
            .map_err(|e| {
                StageError::Restore(match e {
                    wit::RestoreError::UnsupportedVersion(v) => format!("unsupported state version {v}"),
                    wit::RestoreError::Corrupt(m) => format!("corrupt state: {m}"),
                })
            })
    }
}
