//! streamgate's policy runtime: untrusted policy plugins (Wasm components of
//! `streamgate:policy`) in a wasmtime sandbox, and a tenant's chain of them. No Kafka,
//! Redis or HTTP here: the server and the conformance kit both build on this crate.
//!
//! Layout, from the boundary inwards:
//!
//! - [`bindings`]: one `bindgen!` per supported `streamgate:policy` version (0.1.0 in
//!   `wit/`, 0.2.0 ... 0.4.0 in `wit/v0.N.0/`); [`wit`] the host's boundary types,
//!   [`Decisions`] a stage's answer in any world (0.3.0's columns and 0.4.0's rows are
//!   converted in `columns` and `rows`).
//! - [`world`]: the supported worlds ([`World`]) and the one dispatch over their bindings.
//! - [`event`]: the host's [`Event`] (payload included) and the key hash plugins see.
//! - [`sandbox`]: the sandbox config and the limits every store and call runs under.
//! - [`engine`]: the one wasmtime `Engine`; compiling and checking components.
//! - [`plugin`]: a compiled, checked component that stamps out stages.
//! - [`stage`]: one stage in its own store; typed [`Fault`]s.
//! - [`decisions`]: the one check of a stage's answer (only events it holds, once).
//! - [`builtin`]: the plugins of `plugins/`, built by `build.rs` and embedded.
//! - [`spec`]: a chain as data ([`ChainSpec`]).
//! - [`chain`]: a tenant's running chain: push, faults, swaps, preparation.
//! - [`diff`]: comparing what two chains decided, entry by entry (shadow deploys).
//! - [`observer`]: what a chain reports (calls, drops, faults) to whoever counts.
//! - [`duration_ms`]: config durations written as integer milliseconds.

pub mod bindings;
pub mod builtin;
pub mod chain;
mod columns;
pub mod decisions;
pub mod diff;
pub mod duration_ms;
pub mod engine;
pub mod event;
pub mod observer;
pub mod plugin;
mod rows;
pub mod sandbox;
pub mod spec;
pub mod stage;
pub mod world;

pub use bindings::{Decisions, wit};
pub use chain::{Chain, ChainError, ChainOptions, ChainOutput, FailurePolicy, PreparedChain, PreparedStage};
pub use chain::{ChainState, HeldState, RestoreError, StageState};
pub use chain::{Dropped, ForkError, Overrun, StateTransfer, SwapReport};
pub use engine::PolicyRuntime;
pub use event::{Event, key_hash};
pub use observer::{ChainObserver, Counts};
pub use plugin::{Plugin, PluginError};
pub use sandbox::{SandboxConfig, StageLimits};
pub use spec::{ChainSpec, StageSpec};
pub use stage::{Fault, StageError, WasmStage};
pub use world::World;
