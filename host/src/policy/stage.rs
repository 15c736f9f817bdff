//! One policy stage: a plugin instance in its own [`Store`], living exactly as long as
//! the stage. Every call runs under an epoch deadline; the store caps memory and tables.

use wasmtime::component::ResourceAny;
use wasmtime::{Engine, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder};

use super::bindings::{PolicyPlugin, PolicyPluginPre, wit};

/// Per-store data: only the resource limiter (plugins get no host state).
pub struct StageState {
    limits: MeteredLimits,
}

/// The store's [`StoreLimits`], also recording how large linear memory grew and the
/// growth it refused, so a report can say how close a plugin runs to the cap.
struct MeteredLimits {
    inner: StoreLimits,
    memory_high_water: usize,
    refused_memory_growth: Option<usize>,
}

impl ResourceLimiter for MeteredLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum)?;
        if allowed {
            self.memory_high_water = self.memory_high_water.max(desired);
        } else {
            self.refused_memory_growth = Some(desired);
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
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
        limits: MeteredLimits {
            inner: StoreLimitsBuilder::new()
                .memory_size(limits.max_memory_bytes)
                .table_elements(limits.max_table_elements)
                .instances(16)
                .build(),
            memory_high_water: 0,
            refused_memory_growth: None,
        },
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

    /// The largest linear memory (bytes) this stage's store has grown to so far.
    pub fn memory_high_water(&self) -> usize {
        self.store.data().limits.memory_high_water
    }

    /// The last memory growth (to this many bytes) the sandbox cap refused, if any.
    pub fn refused_memory_growth(&self) -> Option<usize> {
        self.store.data().limits.refused_memory_growth
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
