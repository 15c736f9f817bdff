//! What confines a plugin: the `[sandbox]` config section and the limits every stage's
//! store and every call into it run under.

use std::time::Duration;

use serde::Deserialize;

/// How often the engine's epoch ticks; a call's wall-clock budget is counted in ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Fuel of a call before its events: tens of milliseconds of a plugin's own work.
pub const DEFAULT_FUEL_PER_CALL: u64 = 50_000_000;
/// Fuel per event: hundreds of times what the builtins use.
pub const DEFAULT_FUEL_PER_EVENT: u64 = 1_000_000;
/// Events one stage may hold undecided: ten times the builtin ordering's default buffer.
pub const DEFAULT_MAX_HELD_EVENTS: usize = 1_000_000;
/// Calls that move state or set a stage up (describe, create, snapshot, restore) get
/// this many calls' worth of fuel.
pub const STATE_CALL_FACTOR: u64 = 10;

/// `[sandbox]`: limits of every policy stage (a tenant may set its own call timeout).
/// A call's budget is counted in work (wasmtime fuel: the same for the same component
/// and input on every instance), so whether a call faults never depends on how fast the
/// machine is. The wall-clock timeout does not stop a call (fuel bounds it): a call that
/// overruns it on one instance is reported through the tenant's log, and every instance
/// faults that stage at the report's position.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// Fuel (about one unit per Wasm instruction) every call gets...
    pub fuel_per_call: u64,
    /// ...plus this much per event in the batch.
    pub fuel_per_event: u64,
    /// Wall time one plugin call may take on any instance before the stage is faulted
    /// cluster-wide (through the log); fuel, not this, stops the call itself.
    #[serde(rename = "call_timeout_ms", with = "crate::duration_ms")]
    pub call_timeout: Duration,
    /// Linear memory cap per stage.
    pub max_memory_bytes: usize,
    /// Table elements cap per stage.
    pub max_table_elements: usize,
    /// Events one stage may hold undecided (their payloads wait in the host's memory,
    /// outside the stage's linear memory cap); a stage that holds more is faulted.
    pub max_held_events: usize,
    /// A faulted stage is quarantined this long before its first restart...
    #[serde(rename = "restart_backoff_ms", with = "crate::duration_ms")]
    pub restart_backoff: Duration,
    /// ...doubling on each fault in a row, up to this.
    #[serde(rename = "restart_backoff_max_ms", with = "crate::duration_ms")]
    pub restart_backoff_max: Duration,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            fuel_per_call: DEFAULT_FUEL_PER_CALL,
            fuel_per_event: DEFAULT_FUEL_PER_EVENT,
            call_timeout: Duration::from_secs(1),
            max_memory_bytes: 64 << 20,
            max_table_elements: 10_000,
            max_held_events: DEFAULT_MAX_HELD_EVENTS,
            restart_backoff: Duration::from_millis(100),
            restart_backoff_max: Duration::from_secs(30),
        }
    }
}

impl SandboxConfig {
    /// The limits of one stage, with a tenant's own call budget if it has one.
    pub fn limits(&self, call_timeout: Option<Duration>) -> StageLimits {
        StageLimits {
            fuel_per_call: self.fuel_per_call,
            fuel_per_event: self.fuel_per_event,
            call_timeout: call_timeout.unwrap_or(self.call_timeout),
            max_memory_bytes: self.max_memory_bytes,
            max_table_elements: self.max_table_elements,
            max_held_events: self.max_held_events,
        }
    }
}

/// Limits applied to one stage's store and to each call into it.
#[derive(Clone, Copy, Debug)]
pub struct StageLimits {
    pub fuel_per_call: u64,
    pub fuel_per_event: u64,
    pub call_timeout: Duration,
    pub max_memory_bytes: usize,
    pub max_table_elements: usize,
    pub max_held_events: usize,
}

impl StageLimits {
    /// The fuel of a call deciding `events` events.
    pub fn fuel_for(&self, events: usize) -> u64 {
        self.fuel_per_call.saturating_add(self.fuel_per_event.saturating_mul(events as u64))
    }

    /// The fuel of a state or set-up call.
    pub fn state_fuel(&self) -> u64 {
        self.fuel_per_call.saturating_mul(STATE_CALL_FACTOR)
    }

    /// The call timeout in epoch ticks (at least one).
    pub(crate) fn deadline_ticks(&self) -> u64 {
        (self.call_timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
    }
}

/// Per-store data of a stage: the resource limiter and whether the current call overran
/// its wall-clock deadline (plugins get no host state). Every store of either policy
/// world has exactly this.
pub struct StageState {
    pub(crate) limits: MeteredLimits,
    pub(crate) overran: bool,
}

/// A store's resource limiter: wasmtime's [`StoreLimits`] under [`StageLimits`], also
/// recording how large linear memory grew and the growth it refused, so a fault can
/// say it hit the cap and a report how close a plugin runs to it.
pub(crate) struct MeteredLimits {
    inner: wasmtime::StoreLimits,
    pub(crate) memory_high_water: usize,
    pub(crate) refused_memory_growth: Option<usize>,
}

impl MeteredLimits {
    pub(crate) fn new(limits: &StageLimits) -> Self {
        MeteredLimits {
            inner: wasmtime::StoreLimitsBuilder::new()
                .memory_size(limits.max_memory_bytes)
                .table_elements(limits.max_table_elements)
                .instances(16)
                .build(),
            memory_high_water: 0,
            refused_memory_growth: None,
        }
    }
}

impl wasmtime::ResourceLimiter for MeteredLimits {
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
