//! The versions of `streamgate:policy` the host runs side by side, and one dispatch over
//! them: [`WorldPre`] (a linked component of a known world) instantiates a
//! [`WorldInstance`], whose calls answer in the host's types whatever the world.
//!
//! Fuel, deadlines and memory are not handled here: [`crate::stage`] arms and classifies
//! every call the same way for every world.

use std::fmt;

use wasmtime::Store;
use wasmtime::component::{Func, InstancePre, ResourceAny};

use crate::bindings::{Decisions, v0_1, v0_2, v0_3, v0_4, wit, wit_v0_2, wit_v0_3, wit_v0_4};
use crate::columns::{self, Columns};
use crate::rows::{self, Rows};
use crate::sandbox::StageState;

/// A version of the policy world a component exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum World {
    /// `streamgate:policy@0.1.0`: capabilities only from `describe` (static).
    V0_1,
    /// `streamgate:policy@0.2.0`: each stage reports its capabilities under its config,
    /// and decisions carry `expired` keys.
    V0_2,
    /// `streamgate:policy@0.3.0`: 0.2.0 with the batch as columns of numbers and the
    /// drops as two lists, which cross the boundary as blocks.
    V0_3,
    /// `streamgate:policy@0.4.0`: 0.2.0 with the batch and the answer one list of
    /// 64-bit words each (one allocation and one copy each way).
    V0_4,
}

impl World {
    /// Every supported world, oldest first.
    pub const SUPPORTED: [World; 4] = [World::V0_1, World::V0_2, World::V0_3, World::V0_4];

    /// `0.1.0`, `0.2.0`, `0.3.0` or `0.4.0`.
    pub fn version(self) -> &'static str {
        match self {
            World::V0_1 => "0.1.0",
            World::V0_2 => "0.2.0",
            World::V0_3 => "0.3.0",
            World::V0_4 => "0.4.0",
        }
    }

    /// The interface a component of this world exports.
    pub fn interface(self) -> &'static str {
        match self {
            World::V0_1 => "streamgate:policy/policy@0.1.0",
            World::V0_2 => "streamgate:policy/policy@0.2.0",
            World::V0_3 => "streamgate:policy/policy@0.3.0",
            World::V0_4 => "streamgate:policy/policy@0.4.0",
        }
    }

    /// Whether a stage reports the capabilities it has under its config (0.2.0), rather
    /// than the plugin's static `describe` list (0.1.0).
    pub fn stage_reports_capabilities(self) -> bool {
        self != World::V0_1
    }

    /// `streamgate:policy@0.1.0 or streamgate:policy@0.2.0`, for refusals.
    pub fn supported_list() -> String {
        let names: Vec<String> = World::SUPPORTED.iter().map(|w| w.to_string()).collect();
        names.join(" or ")
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "streamgate:policy@{}", self.version())
    }
}

/// A component linked (with no imports) against the bindings of its world.
#[derive(Clone)]
pub(crate) enum WorldPre {
    V0_1(v0_1::PolicyPluginPre<StageState>),
    V0_2(v0_2::PolicyPluginPre<StageState>),
    V0_3(v0_3::PolicyPluginPre<StageState>),
    V0_4(v0_4::PolicyPluginPre<StageState>),
}

impl WorldPre {
    /// Checks `pre`'s exports against `world`'s bindings.
    pub(crate) fn new(world: World, pre: InstancePre<StageState>) -> wasmtime::Result<Self> {
        Ok(match world {
            World::V0_1 => WorldPre::V0_1(v0_1::PolicyPluginPre::new(pre)?),
            World::V0_2 => WorldPre::V0_2(v0_2::PolicyPluginPre::new(pre)?),
            World::V0_3 => WorldPre::V0_3(v0_3::PolicyPluginPre::new(pre)?),
            World::V0_4 => WorldPre::V0_4(v0_4::PolicyPluginPre::new(pre)?),
        })
    }

    pub(crate) fn world(&self) -> World {
        match self {
            WorldPre::V0_1(_) => World::V0_1,
            WorldPre::V0_2(_) => World::V0_2,
            WorldPre::V0_3(_) => World::V0_3,
            WorldPre::V0_4(_) => World::V0_4,
        }
    }

    pub(crate) fn instantiate(&self, store: &mut Store<StageState>) -> wasmtime::Result<WorldInstance> {
        match self {
            WorldPre::V0_1(pre) => Ok(WorldInstance::V0_1(pre.instantiate(&mut *store)?)),
            WorldPre::V0_3(pre) => Ok(WorldInstance::V0_3(pre.instantiate(&mut *store)?)),
            WorldPre::V0_4(pre) => Ok(WorldInstance::V0_4(pre.instantiate(&mut *store)?)),
            WorldPre::V0_2(pre) => {
                let instance = pre.instance_pre().instantiate(&mut *store)?;
                let bindings = v0_2::PolicyPlugin::new(&mut *store, &instance)?;
                let push = (|| {
                    let interface = instance.get_export_index(&mut *store, None, World::V0_2.interface())?;
                    let index =
                        instance.get_export_index(&mut *store, Some(&interface), "[method]stage.push")?;
                    instance.get_func(&mut *store, index)
                })()
                .ok_or_else(|| wasmtime::Error::msg("no `stage.push` export"))?;
                // Checked here, so a component of the wrong shape fails at instantiation.
                push.typed::<PushParams<'_>, (Decisions,)>(&*store)?;
                Ok(WorldInstance::V0_2 { bindings, push })
            }
        }
    }
}

/// `stage.push`'s parameters: the stage, `now`, the events (0.1.0's record, which has
/// the same shape in 0.2.0).
type PushParams<'a> = (ResourceAny, i64, &'a [wit::Event]);

/// One instance of a component, called in the host's types.
pub(crate) enum WorldInstance {
    V0_1(v0_1::PolicyPlugin),
    V0_2 {
        bindings: v0_2::PolicyPlugin,
        /// `stage.push`, type-checked at instantiation as taking [`PushParams`] and
        /// answering [`Decisions`]: lifted straight into the host's types.
        push: Func,
    },
    V0_3(v0_3::PolicyPlugin),
    V0_4(v0_4::PolicyPlugin),
}

/// The buffers a stage's batches are copied into before they cross (0.3.0's columns,
/// 0.4.0's rows), kept by the stage and reused by every call.
#[derive(Default)]
pub(crate) struct BatchBuffers {
    columns: Columns,
    rows: Rows,
}

impl WorldInstance {
    pub(crate) fn describe(&self, store: &mut Store<StageState>) -> wasmtime::Result<wit::Description> {
        match self {
            WorldInstance::V0_1(b) => b.streamgate_policy_policy().call_describe(store),
            WorldInstance::V0_2 { bindings, .. } => {
                Ok(bindings.streamgate_policy_policy().call_describe(store)?.into())
            }
            WorldInstance::V0_3(b) => Ok(b.streamgate_policy_policy().call_describe(store)?.into()),
            WorldInstance::V0_4(b) => Ok(b.streamgate_policy_policy().call_describe(store)?.into()),
        }
    }

    pub(crate) fn create(
        &self,
        store: &mut Store<StageState>,
        config: &str,
    ) -> wasmtime::Result<Result<ResourceAny, wit::ConfigError>> {
        match self {
            WorldInstance::V0_1(b) => b.streamgate_policy_policy().stage().call_create(store, config),
            WorldInstance::V0_2 { bindings, .. } => {
                let created = bindings.streamgate_policy_policy().stage().call_create(store, config)?;
                Ok(created.map_err(|e| match e {
                    wit_v0_2::ConfigError::Malformed(m) => wit::ConfigError::Malformed(m),
                    wit_v0_2::ConfigError::Invalid(m) => wit::ConfigError::Invalid(m),
                }))
            }
            WorldInstance::V0_3(b) => {
                let created = b.streamgate_policy_policy().stage().call_create(store, config)?;
                Ok(created.map_err(|e| match e {
                    wit_v0_3::ConfigError::Malformed(m) => wit::ConfigError::Malformed(m),
                    wit_v0_3::ConfigError::Invalid(m) => wit::ConfigError::Invalid(m),
                }))
            }
            WorldInstance::V0_4(b) => {
                let created = b.streamgate_policy_policy().stage().call_create(store, config)?;
                Ok(created.map_err(|e| match e {
                    wit_v0_4::ConfigError::Malformed(m) => wit::ConfigError::Malformed(m),
                    wit_v0_4::ConfigError::Invalid(m) => wit::ConfigError::Invalid(m),
                }))
            }
        }
    }

    /// The stage's own answer (0.2.0), or `None` for a 0.1.0 stage, which has no such call.
    pub(crate) fn capabilities(
        &self,
        store: &mut Store<StageState>,
        stage: ResourceAny,
    ) -> wasmtime::Result<Option<Vec<wit::Capability>>> {
        match self {
            WorldInstance::V0_1(_) => Ok(None),
            WorldInstance::V0_2 { bindings, .. } => {
                let answer = bindings.streamgate_policy_policy().stage().call_capabilities(store, stage)?;
                Ok(Some(answer.into_iter().map(Into::into).collect()))
            }
            WorldInstance::V0_3(b) => {
                let answer = b.streamgate_policy_policy().stage().call_capabilities(store, stage)?;
                Ok(Some(answer.into_iter().map(Into::into).collect()))
            }
            WorldInstance::V0_4(b) => {
                let answer = b.streamgate_policy_policy().stage().call_capabilities(store, stage)?;
                Ok(Some(answer.into_iter().map(Into::into).collect()))
            }
        }
    }

    /// The stage's answer, or (inner `Err`) why its shape is malformed.
    pub(crate) fn push(
        &self,
        store: &mut Store<StageState>,
        stage: ResourceAny,
        now: i64,
        events: &[wit::Event],
        buffers: &mut BatchBuffers,
    ) -> wasmtime::Result<Result<Decisions, String>> {
        match self {
            WorldInstance::V0_1(b) => {
                Ok(Ok(b.streamgate_policy_policy().stage().call_push(store, stage, now, events)?.into()))
            }
            WorldInstance::V0_2 { push, .. } => {
                // Typed per call (a check per batch, not per event: no `unsafe` to skip it).
                let push = push.typed::<PushParams<'_>, (Decisions,)>(&*store)?;
                Ok(Ok(push.call(store, (stage, now, events))?.0))
            }
            WorldInstance::V0_3(b) => {
                buffers.columns.fill(events);
                let c = &buffers.columns;
                let answer = b.streamgate_policy_policy().stage().call_push(
                    store,
                    stage,
                    now,
                    &c.seqs,
                    &c.keys,
                    &c.event_times,
                    &c.log_times,
                    &c.ids,
                    &c.tags,
                )?;
                Ok(columns::decisions(answer))
            }
            WorldInstance::V0_4(b) => {
                buffers.rows.fill(events);
                let words =
                    b.streamgate_policy_policy().stage().call_push(store, stage, now, &buffers.rows.words)?;
                Ok(rows::decisions(&words))
            }
        }
    }

    pub(crate) fn snapshot(
        &self,
        store: &mut Store<StageState>,
        stage: ResourceAny,
    ) -> wasmtime::Result<Vec<u8>> {
        match self {
            WorldInstance::V0_1(b) => b.streamgate_policy_policy().stage().call_snapshot(store, stage),
            WorldInstance::V0_2 { bindings, .. } => {
                bindings.streamgate_policy_policy().stage().call_snapshot(store, stage)
            }
            WorldInstance::V0_3(b) => b.streamgate_policy_policy().stage().call_snapshot(store, stage),
            WorldInstance::V0_4(b) => b.streamgate_policy_policy().stage().call_snapshot(store, stage),
        }
    }

    pub(crate) fn restore(
        &self,
        store: &mut Store<StageState>,
        stage: ResourceAny,
        state_version: u32,
        state: &[u8],
    ) -> wasmtime::Result<Result<(), wit::RestoreError>> {
        match self {
            WorldInstance::V0_1(b) => {
                b.streamgate_policy_policy().stage().call_restore(store, stage, state_version, state)
            }
            WorldInstance::V0_2 { bindings, .. } => {
                let restored = bindings.streamgate_policy_policy().stage().call_restore(
                    store,
                    stage,
                    state_version,
                    state,
                )?;
                Ok(restored.map_err(|e| match e {
                    wit_v0_2::RestoreError::UnsupportedVersion(v) => wit::RestoreError::UnsupportedVersion(v),
                    wit_v0_2::RestoreError::Corrupt(m) => wit::RestoreError::Corrupt(m),
                }))
            }
            WorldInstance::V0_3(b) => {
                let stage_api = b.streamgate_policy_policy().stage();
                let restored = stage_api.call_restore(store, stage, state_version, state)?;
                Ok(restored.map_err(|e| match e {
                    wit_v0_3::RestoreError::UnsupportedVersion(v) => wit::RestoreError::UnsupportedVersion(v),
                    wit_v0_3::RestoreError::Corrupt(m) => wit::RestoreError::Corrupt(m),
                }))
            }
            WorldInstance::V0_4(b) => {
                let stage_api = b.streamgate_policy_policy().stage();
                let restored = stage_api.call_restore(store, stage, state_version, state)?;
                Ok(restored.map_err(|e| match e {
                    wit_v0_4::RestoreError::UnsupportedVersion(v) => wit::RestoreError::UnsupportedVersion(v),
                    wit_v0_4::RestoreError::Corrupt(m) => wit::RestoreError::Corrupt(m),
                }))
            }
        }
    }
}
