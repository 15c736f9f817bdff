//! Chain tests against the real builtins and the `misbehave` / `dedupe-next` /
//! `overclaim` / `columns` / `malformed` fixtures, in every policy world.

mod checkpoint;
mod dedupe_memory;
mod faults;
mod hoarding;
mod malformed;
mod swap;
mod worlds;

use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::builtin::component_path;
use crate::{Counts, SandboxConfig, StageSpec};

/// A stage of `plugin` with its config written as TOML, as a tenant's config would.
fn policy(plugin: &str, config: &str) -> StageSpec {
    let value: toml::Value = toml::from_str(config).unwrap();
    StageSpec { plugin: plugin.into(), config: serde_json::to_value(value).unwrap(), source: None }
}

fn chain_of(policies: Vec<StageSpec>) -> ChainSpec {
    ChainSpec { version: 0, policies }
}

fn fixture(name: &str) -> String {
    component_path(name)
}

fn build(
    runtime: &PolicyRuntime,
    policies: &[StageSpec],
    options: ChainOptions,
) -> Result<Chain, ChainError> {
    Chain::build(runtime, &chain_of(policies.to_vec()), options)
}
