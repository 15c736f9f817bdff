//! One policy stage: a plugin instance in its own [`Store`], living exactly as long as
//! the stage (its memory is freed when the stage drops). Every call runs on a fuel
//! budget (deterministic: running out is a [`Fault`] on every instance alike); the store
//! caps memory and tables. The wall clock never stops a call: a call still running at
//! its epoch deadline (`call_timeout`) goes on to the end of its fuel and is marked
//! [`WasmStage::overran`], for the chain to report to the whole cluster. A stage of
//! either world ([`World`]) runs under exactly the same fuel, deadline and memory rules:
//! the world only decides which bindings a call goes through ([`crate::world`]).

use std::fmt;

use wasmtime::component::ResourceAny;
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

use crate::bindings::{Decisions, wit};
use crate::sandbox::{MeteredLimits, StageLimits};
use crate::world::{BatchBuffers, World, WorldInstance, WorldPre};

pub use crate::sandbox::StageState;

/// Epoch ticks a call that overran gets before the deadline callback runs again: the
/// callback only marks the call, so once is enough.
const AFTER_OVERRUN_TICKS: u64 = 1 << 40;

/// Why a call into a stage did not return: the stage is unusable afterwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Used up the call's fuel: the same on every instance, for the same input.
    OutOfFuel { budget: u64 },
    /// Asked for more linear memory than the cap, then trapped.
    MemoryCap { refused_bytes: usize, cap_bytes: usize, trap: String },
    /// Any other trap (`unreachable` is how a Rust panic ends in Wasm).
    Trap(String),
    /// Answered `push` in a shape its world does not allow (0.3.0's drop lists of
    /// unequal length, a 0.4.0 answer whose length does not match its counts, an
    /// unknown reason code): the same on every instance, for the same input.
    Malformed(String),
    /// Held more events undecided than the sandbox allows (`max_held_events`): their
    /// payloads wait in the host's memory, which no linear memory cap bounds. The count
    /// follows from the answers alone, so this is the same on every instance.
    HoldsTooMany { held: usize, cap: usize },
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::OutOfFuel { budget } => write!(
                f,
                "ran out of its fuel budget ({budget} units: fuel_per_call + fuel_per_event × events) and was stopped"
            ),
            Fault::MemoryCap { refused_bytes, cap_bytes, trap } => write!(
                f,
                "hit the sandbox memory cap: growing linear memory to {} was refused (cap {}), \
                 and then it faulted: {trap}",
                mib(*refused_bytes),
                mib(*cap_bytes)
            ),
            Fault::Trap(cause) => {
                let hint = if cause.contains("unreachable") {
                    " (how a Rust panic or abort ends in Wasm)"
                } else {
                    ""
                };
                write!(f, "trapped: {cause}{hint}")
            }
            Fault::Malformed(what) => write!(f, "answered in a malformed shape: {what}"),
            Fault::HoldsTooMany { held, cap } => write!(
                f,
                "held {held} events undecided, more than the sandbox allows (max_held_events = {cap}); \
                 a stage must release or drop what it takes"
            ),
        }
    }
}

/// `12.5 MiB`.
pub fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The plugin refused its config (an expected, typed failure).
    #[error("rejected its config: {0}")]
    Config(String),
    /// The plugin refused a snapshot (typed failure).
    #[error("refused the snapshot: {0}")]
    Restore(String),
    /// A trap, fuel or memory limit hit: the stage is unusable.
    #[error("faulted: {0}")]
    Fault(Fault),
}

fn new_store(engine: &Engine, limits: StageLimits) -> Store<StageState> {
    let mut store = Store::new(engine, StageState { limits: MeteredLimits::new(&limits), overran: false });
    store.limiter(|s| &mut s.limits);
    store.epoch_deadline_callback(|mut ctx| {
        ctx.data_mut().overran = true;
        Ok(UpdateDeadline::Continue(AFTER_OVERRUN_TICKS))
    });
    arm(&mut store, &limits, limits.state_fuel());
    store
}

/// Gives the next call `fuel` and a fresh wall-clock deadline.
fn arm(store: &mut Store<StageState>, limits: &StageLimits, fuel: u64) {
    store.set_fuel(fuel).expect("the engine meters fuel");
    store.set_epoch_deadline(limits.deadline_ticks());
    store.data_mut().overran = false;
}

/// Tells running out of fuel and a memory overrun from other traps.
fn classify(store: &Store<StageState>, limits: &StageLimits, fuel: u64, e: wasmtime::Error) -> StageError {
    if let Some(Trap::OutOfFuel) = e.downcast_ref::<Trap>() {
        return StageError::Fault(Fault::OutOfFuel { budget: fuel });
    }
    let detail = format!("{e:#}");
    // The wasm backtrace names no functions in a stripped plugin: keep the cause.
    let trap =
        detail.rsplit_once("wasm trap: ").map_or(detail.as_str(), |(_, cause)| cause).trim().to_string();
    match store.data().limits.refused_memory_growth {
        Some(refused_bytes) => {
            StageError::Fault(Fault::MemoryCap { refused_bytes, cap_bytes: limits.max_memory_bytes, trap })
        }
        None => StageError::Fault(Fault::Trap(trap)),
    }
}

pub struct WasmStage {
    limits: StageLimits,
    store: Store<StageState>,
    bindings: WorldInstance,
    stage: ResourceAny,
    /// A 0.1.0 stage's capabilities: its plugin's `describe` list (a 0.2.0 stage is asked).
    described_capabilities: Vec<wit::Capability>,
    /// Events given to the stage and not yet decided: a call may work on all of them
    /// (a flush releasing a window), so its fuel counts them with the new batch.
    held: usize,
    /// Fuel the last `push` consumed (deterministic work, unlike its wall time).
    last_push_fuel: u64,
    /// What a 0.3.0 or 0.4.0 batch is copied into, reused by every call.
    buffers: BatchBuffers,
}

impl WasmStage {
    /// Calls `describe` in a throwaway store.
    pub(crate) fn describe(
        pre: &WorldPre,
        engine: &Engine,
        limits: StageLimits,
    ) -> Result<wit::Description, StageError> {
        let mut store = new_store(engine, limits);
        let fuel = limits.state_fuel();
        let bindings = pre.instantiate(&mut store).map_err(|e| classify(&store, &limits, fuel, e))?;
        arm(&mut store, &limits, fuel);
        bindings.describe(&mut store).map_err(|e| classify(&store, &limits, fuel, e))
    }

    pub(crate) fn create(
        pre: &WorldPre,
        engine: &Engine,
        limits: StageLimits,
        config: &str,
        described_capabilities: &[wit::Capability],
    ) -> Result<Self, StageError> {
        let mut store = new_store(engine, limits);
        let fuel = limits.state_fuel();
        let bindings = pre.instantiate(&mut store).map_err(|e| classify(&store, &limits, fuel, e))?;
        arm(&mut store, &limits, fuel);
        let created = bindings.create(&mut store, config).map_err(|e| classify(&store, &limits, fuel, e))?;
        let stage = created.map_err(|e| {
            StageError::Config(match e {
                wit::ConfigError::Malformed(m) => format!("malformed config: {m}"),
                wit::ConfigError::Invalid(m) => format!("invalid config: {m}"),
            })
        })?;
        let described_capabilities = described_capabilities.to_vec();
        Ok(WasmStage {
            limits,
            store,
            bindings,
            stage,
            described_capabilities,
            held: 0,
            last_push_fuel: 0,
            buffers: BatchBuffers::default(),
        })
    }

    /// The world this stage's component exports.
    pub fn world(&self) -> World {
        match self.bindings {
            WorldInstance::V0_1(_) => World::V0_1,
            WorldInstance::V0_2 { .. } => World::V0_2,
            WorldInstance::V0_3(_) => World::V0_3,
            WorldInstance::V0_4(_) => World::V0_4,
        }
    }

    /// The capabilities this stage has under its config: a 0.2.0 stage's own answer (a
    /// call, on the state fuel budget), or a 0.1.0 plugin's `describe` list.
    pub fn capabilities(&mut self) -> Result<Vec<wit::Capability>, StageError> {
        let fuel = self.limits.state_fuel();
        arm(&mut self.store, &self.limits, fuel);
        let result = self.bindings.capabilities(&mut self.store, self.stage);
        let answer = result.map_err(|e| classify(&self.store, &self.limits, fuel, e))?;
        Ok(answer.unwrap_or_else(|| self.described_capabilities.clone()))
    }

    /// Decides a batch at log time `now` (`expired` is always empty from a 0.1.0 stage).
    pub fn push(&mut self, now: i64, events: &[wit::Event]) -> Result<Decisions, StageError> {
        let fuel = self.limits.fuel_for(self.held.saturating_add(events.len()));
        arm(&mut self.store, &self.limits, fuel);
        let result = self.bindings.push(&mut self.store, self.stage, now, events, &mut self.buffers);
        self.last_push_fuel = fuel.saturating_sub(self.store.get_fuel().unwrap_or(0));
        let answer = result.map_err(|e| classify(&self.store, &self.limits, fuel, e))?;
        let answer = answer.map_err(|what| StageError::Fault(Fault::Malformed(what)))?;
        self.held = (self.held + events.len()).saturating_sub(answer.released.len() + answer.dropped.len());
        if self.held > self.limits.max_held_events {
            return Err(StageError::Fault(Fault::HoldsTooMany {
                held: self.held,
                cap: self.limits.max_held_events,
            }));
        }
        Ok(answer)
    }

    pub fn snapshot(&mut self) -> Result<Vec<u8>, StageError> {
        let fuel = self.limits.state_fuel();
        arm(&mut self.store, &self.limits, fuel);
        let result = self.bindings.snapshot(&mut self.store, self.stage);
        result.map_err(|e| classify(&self.store, &self.limits, fuel, e))
    }

    /// Loads another stage's snapshot; `held` is how many undecided events come with it
    /// (they count towards the next calls' fuel).
    pub fn restore(&mut self, state_version: u32, state: &[u8], held: usize) -> Result<(), StageError> {
        self.held = held;
        let fuel = self.limits.state_fuel();
        arm(&mut self.store, &self.limits, fuel);
        let result = self.bindings.restore(&mut self.store, self.stage, state_version, state);
        result.map_err(|e| classify(&self.store, &self.limits, fuel, e))?.map_err(|e| {
            StageError::Restore(match e {
                wit::RestoreError::UnsupportedVersion(v) => format!("unsupported state version {v}"),
                wit::RestoreError::Corrupt(m) => format!("corrupt state: {m}"),
            })
        })
    }

    /// Whether the last call was still running at its wall-clock deadline
    /// (`call_timeout`): a fact about this machine, not the plugin's answer.
    pub fn overran(&self) -> bool {
        self.store.data().overran
    }

    /// Events given to this stage and not yet decided.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Fuel (about one unit per Wasm instruction) the last `push` consumed: the same for
    /// the same component and input on every machine, so a measure of work without noise.
    pub fn last_push_fuel(&self) -> u64 {
        self.last_push_fuel
    }

    /// The largest linear memory (bytes) this stage's store has grown to so far.
    pub fn memory_high_water(&self) -> usize {
        self.store.data().limits.memory_high_water
    }
}
