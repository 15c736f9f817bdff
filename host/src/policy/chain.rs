//! A tenant's policy chain: events enter the first stage, each stage's releases feed
//! the next, the last stage's releases become the frame. Payloads never leave the host;
//! stages see metadata and answer with sequence numbers.
//!
//! The host checks every answer: a stage may release or drop only events it holds
//! (given to it and not yet decided). A faulted stage is replaced by a fresh one, and
//! the events it held pass through (fail-open), so a broken plugin loses no data.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::bindings::wit;
use super::runtime::{Plugin, PluginError, PolicyRuntime};
use super::stage::{StageError, WasmStage};
use crate::config::PolicyRef;
use crate::event::{SourceEvent, key_hash};
use crate::metrics::TenantMetrics;

/// An event inside the chain; its payload waits here while stages decide.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub key: String,
    pub event_time: i64,
    pub log_time: i64,
    pub payload: Bytes,
    key_hash: u64,
    /// Index of the stage holding it (`stages.len()` once released by the last).
    stage: usize,
}

impl PendingEvent {
    /// A released event outside any chain (hub and SSE tests).
    pub fn for_test(e: SourceEvent) -> Self {
        PendingEvent {
            key_hash: key_hash(&e.key),
            key: e.key,
            event_time: e.event_time,
            log_time: 0,
            payload: e.payload,
            stage: 0,
        }
    }

    fn meta(&self, seq: u64) -> wit::Event {
        wit::Event { seq, key: self.key_hash, event_time: self.event_time, log_time: self.log_time }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("policy {index} ({plugin}): {source}")]
    Load { index: usize, plugin: String, source: PluginError },
    #[error("policy {index} ({plugin}): {source}")]
    Stage { index: usize, plugin: String, source: StageError },
}

struct Slot {
    plugin: Arc<Plugin>,
    config: String,
    stage: WasmStage,
    label: String,
}

/// What one `push` produced.
#[derive(Default)]
pub struct ChainOutput {
    /// Released by the last stage, in emission order.
    pub released: Vec<PendingEvent>,
}

pub struct Chain {
    slots: Vec<Slot>,
    pending: HashMap<u64, PendingEvent>,
    next_seq: u64,
}

impl Chain {
    /// Loads every plugin and creates its stage; any failure names the policy.
    pub fn build(runtime: &PolicyRuntime, refs: &[PolicyRef]) -> Result<Chain, ChainError> {
        let mut slots = Vec::with_capacity(refs.len());
        for (index, r) in refs.iter().enumerate() {
            let plugin = runtime.load_ref(&r.plugin).map_err(|source| ChainError::Load {
                index,
                plugin: r.plugin.clone(),
                source,
            })?;
            let config = r.config_json();
            let stage = plugin.stage(&config).map_err(|source| ChainError::Stage {
                index,
                plugin: r.plugin.clone(),
                source,
            })?;
            let label = plugin.label();
            slots.push(Slot { plugin, config, stage, label });
        }
        Ok(Chain { slots, pending: HashMap::new(), next_seq: 0 })
    }

    /// `name@version` of each stage, in order.
    pub fn labels(&self) -> Vec<String> {
        self.slots.iter().map(|s| s.label.clone()).collect()
    }

    /// Events held inside the chain.
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    /// Runs one log entry's events (possibly none: time still moves) through the chain.
    pub fn push(&mut self, now: i64, events: Vec<SourceEvent>, metrics: &TenantMetrics) -> ChainOutput {
        let mut input = Vec::with_capacity(events.len());
        for e in events {
            let seq = self.next_seq;
            self.next_seq += 1;
            let p = PendingEvent {
                key_hash: key_hash(&e.key),
                key: e.key,
                event_time: e.event_time,
                log_time: now,
                payload: e.payload,
                stage: 0,
            };
            input.push(p.meta(seq));
            self.pending.insert(seq, p);
        }
        for index in 0..self.slots.len() {
            let decisions = match self.slots[index].stage.push(now, &input) {
                Ok(d) => d,
                Err(e) => self.fault(index, e, metrics),
            };
            input.clear();
            let label = &self.slots[index].label;
            for d in &decisions.dropped {
                if self.pending.get(&d.seq).is_some_and(|p| p.stage == index) {
                    self.pending.remove(&d.seq);
                    metrics.count_drop(label, drop_reason(d.reason));
                } else {
                    metrics.count_invalid_decision(label);
                }
            }
            for &seq in &decisions.released {
                match self.pending.get_mut(&seq) {
                    Some(p) if p.stage == index => {
                        p.stage = index + 1;
                        input.push(p.meta(seq));
                    }
                    _ => metrics.count_invalid_decision(label),
                }
            }
        }
        let released =
            input.iter().map(|e| self.pending.remove(&e.seq).expect("released events are pending")).collect();
        ChainOutput { released }
    }

    /// Replaces a faulted stage with a fresh one and passes its held events through.
    fn fault(&mut self, index: usize, error: StageError, metrics: &TenantMetrics) -> wit::Decisions {
        let slot = &mut self.slots[index];
        metrics.count_fault(&slot.label);
        tracing::error!(tenant = %metrics.tenant, plugin = %slot.label, stage = index, %error,
            "policy stage faulted; passing its events through and starting a fresh stage");
        match slot.plugin.stage(&slot.config) {
            Ok(fresh) => slot.stage = fresh,
            Err(e) => tracing::error!(tenant = %metrics.tenant, plugin = %slot.label, error = %e,
                "could not restart the stage; it will be retried on its next fault"),
        }
        let mut held: Vec<u64> =
            self.pending.iter().filter(|(_, p)| p.stage == index).map(|(&seq, _)| seq).collect();
        held.sort_unstable();
        wit::Decisions { released: held, dropped: Vec::new() }
    }
}

fn drop_reason(r: wit::DropReason) -> &'static str {
    match r {
        wit::DropReason::Stale => "stale",
        wit::DropReason::Duplicate => "duplicate",
        wit::DropReason::OutOfDate => "out_of_date",
        wit::DropReason::Superseded => "superseded",
        wit::DropReason::Filtered => "filtered",
        wit::DropReason::Overflow => "overflow",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SandboxConfig;

    fn policy(plugin: &str, config: &str) -> PolicyRef {
        PolicyRef { plugin: plugin.into(), config: Some(toml::from_str(config).unwrap()) }
    }

    fn ev(key: &str, t: i64) -> SourceEvent {
        SourceEvent {
            key: key.into(),
            event_time: t,
            payload: Bytes::from(format!("{{\"k\":\"{key}\",\"t\":{t}}}")),
        }
    }

    fn times(out: &ChainOutput) -> Vec<(String, i64)> {
        out.released.iter().map(|e| (e.key.clone(), e.event_time)).collect()
    }

    #[test]
    fn taxi_chain_orders_drops_stale_and_keeps_newest_per_key() {
        let runtime = PolicyRuntime::new(&SandboxConfig::default());
        let refs = crate::app::taxi_tenant().policies;
        let mut chain = Chain::build(&runtime, &refs).unwrap();
        assert_eq!(chain.labels(), vec!["ordering@0.1.0", "staleness@0.1.0", "dedupe@0.1.0"]);
        let m = TenantMetrics::new("t");
        let now = 100_000;
        let batch = vec![ev("a", 99_500), ev("b", 99_200), ev("a", 99_400), ev("a", 60_000), ev("b", 99_200)];
        assert!(chain.push(now, batch, &m).released.is_empty(), "held for the reorder window");
        assert_eq!(m.plugin_count("staleness@0.1.0", "stale"), 1, "60 000 was due at once, and stale");
        assert_eq!(chain.held(), 4);
        let out = chain.push(now + 1_000, vec![], &m);
        assert_eq!(times(&out), vec![("b".into(), 99_200), ("a".into(), 99_500)]);
        assert_eq!(m.plugin_count("staleness@0.1.0", "stale"), 1);
        assert_eq!(m.plugin_count("dedupe@0.1.0", "duplicate"), 1);
        assert_eq!(m.plugin_count("dedupe@0.1.0", "superseded"), 1);
        assert_eq!(chain.held(), 0, "every event was decided");
        let out = chain.push(now + 2_000, vec![ev("a", 99_450), ev("a", 101_000)], &m);
        assert_eq!(times(&out), vec![("a".into(), 101_000)], "a never goes back in time");
    }

    #[test]
    fn bad_plugins_and_configs_are_named_errors() {
        let runtime = PolicyRuntime::new(&SandboxConfig::default());
        let err = |refs: &[PolicyRef]| Chain::build(&runtime, refs).err().expect("must fail").to_string();
        let e = err(&[policy("builtin:nope", "")]);
        assert!(e.contains("unknown builtin") && e.contains("dedupe"), "{e}");
        let e = err(&[policy("builtin:staleness", "max_age_ms = -5")]);
        assert!(e.contains("policy 0") && e.contains("max_age_ms"), "{e}");
        let e = err(&[policy("/nonexistent/plugin.wasm", "")]);
        assert!(e.contains("cannot read plugin file"), "{e}");

        let dir = std::env::temp_dir().join(format!("streamgate-chain-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let core = dir.join("core.wasm");
        std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
        let e = err(&[policy(core.to_str().unwrap(), "")]);
        assert!(e.contains("core Wasm module"), "{e}");
        let junk = dir.join("junk.wasm");
        std::fs::write(&junk, b"hello").unwrap();
        assert!(err(&[policy(junk.to_str().unwrap(), "")]).contains("magic"));
    }
}
