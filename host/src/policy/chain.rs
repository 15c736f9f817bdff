//! A tenant's policy chain: events enter the first stage, each stage's releases feed
//! the next, the last stage's releases become the frame. Payloads never leave the host;
//! stages see metadata and answer with sequence numbers.
//!
//! The host checks every answer: a stage may release or drop only events it holds
//! (given to it and not yet decided), each once. A trap, timeout, memory overrun or
//! invalid answer is a fault: the stage's store is dropped (quarantine), what it held
//! is passed on or dropped by the tenant's failure policy, and a fresh stage is tried
//! after a backoff that doubles while faults continue. Other tenants never notice.
//!
//! A chain is replaced between two log entries by [`Chain::swap`] (see [`super::swap`]):
//! its state moves into the new stages, so nothing held is lost or released twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::bindings::wit;
use super::runtime::{Plugin, PluginError, PolicyRuntime};
use super::spec::ChainSpec;
use super::stage::{StageError, StageLimits, WasmStage};
use crate::config::{FailurePolicy, PolicyRef, TenantConfig};
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
    id: u64,
    tag: u64,
    /// Index of the stage holding it (`stages.len()` once released by the last).
    pub(super) stage: usize,
}

impl PendingEvent {
    /// A released event outside any chain (hub and SSE tests).
    pub fn for_test(e: SourceEvent) -> Self {
        PendingEvent {
            key_hash: key_hash(&e.key),
            id: e.id,
            tag: e.tag,
            key: e.key,
            event_time: e.event_time,
            log_time: 0,
            payload: e.payload,
            stage: 0,
        }
    }

    pub(super) fn meta(&self, seq: u64) -> wit::Event {
        wit::Event {
            seq,
            key: self.key_hash,
            event_time: self.event_time,
            log_time: self.log_time,
            id: self.id,
            tag: self.tag,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("policy {index} ({plugin}): {source}")]
    Load { index: usize, plugin: String, source: PluginError },
    #[error("policy {index} ({plugin}): {source}")]
    Stage { index: usize, plugin: String, source: StageError },
}

/// How a chain runs its stages and treats their faults.
#[derive(Clone, Copy, Debug)]
pub struct ChainOptions {
    pub failure_policy: FailurePolicy,
    pub limits: StageLimits,
    pub restart_backoff: Duration,
    pub restart_backoff_max: Duration,
}

impl ChainOptions {
    pub fn for_tenant(runtime: &PolicyRuntime, tenant: &TenantConfig) -> Self {
        ChainOptions {
            failure_policy: tenant.failure_policy,
            ..Self::defaults(runtime, tenant.call_timeout_ms)
        }
    }

    pub fn defaults(runtime: &PolicyRuntime, call_timeout_ms: Option<u64>) -> Self {
        let sandbox = runtime.sandbox();
        ChainOptions {
            failure_policy: FailurePolicy::default(),
            limits: runtime.limits(call_timeout_ms),
            restart_backoff: Duration::from_millis(sandbox.restart_backoff_ms),
            restart_backoff_max: Duration::from_millis(sandbox.restart_backoff_max_ms),
        }
    }
}

pub(super) struct Slot {
    pub(super) plugin: Arc<Plugin>,
    pub(super) config: String,
    pub(super) label: String,
    /// `None` while quarantined after a fault.
    pub(super) stage: Option<WasmStage>,
    /// When a quarantined stage is next restarted.
    restart_at: Instant,
    /// Quarantine length after the next fault; doubles on faults in a row.
    backoff: Duration,
}

impl Slot {
    pub(super) fn new(plugin: Arc<Plugin>, config: String, stage: WasmStage, options: &ChainOptions) -> Self {
        Slot {
            label: plugin.label(),
            plugin,
            config,
            stage: Some(stage),
            restart_at: Instant::now(),
            backoff: options.restart_backoff,
        }
    }
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
    /// Loads `builtin:` and file plugins and creates their stages (tests, benchmarks).
    pub fn load(
        runtime: &PolicyRuntime,
        refs: &[PolicyRef],
        limits: StageLimits,
    ) -> Result<Self, ChainError> {
        let mut stages = Vec::with_capacity(refs.len());
        for (index, r) in refs.iter().enumerate() {
            let plugin = runtime.load_ref(&r.plugin).map_err(|source| ChainError::Load {
                index,
                plugin: r.plugin.clone(),
                source,
            })?;
            let config = r.config_json();
            let stage = plugin.stage(&config, limits).map_err(|source| ChainError::Stage {
                index,
                plugin: r.plugin.clone(),
                source,
            })?;
            stages.push(PreparedStage { plugin, config, stage });
        }
        Ok(PreparedChain { spec: ChainSpec::from_config(refs, false), stages })
    }
}

/// The chain that ran before the last swap, kept for `last-good`.
pub(super) struct PreviousChain {
    pub(super) spec: ChainSpec,
    pub(super) stages: Vec<(Arc<Plugin>, String)>,
}

/// Why a stage's answer was not used.
#[derive(Debug, thiserror::Error)]
enum Fault {
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error("answered with sequence number {0}, which it does not hold (unknown, or already decided)")]
    InvalidSeq(u64),
    #[error("quarantined")]
    Quarantined,
}

/// What one `push` produced.
#[derive(Default)]
pub struct ChainOutput {
    /// Released by the last stage, in emission order.
    pub released: Vec<PendingEvent>,
}

pub struct Chain {
    pub(super) slots: Vec<Slot>,
    pub(super) options: ChainOptions,
    pub(super) pending: HashMap<u64, PendingEvent>,
    pub(super) next_seq: u64,
    pub(super) spec: ChainSpec,
    pub(super) previous: Option<PreviousChain>,
    /// Events whose stage did not survive a swap, with the stage of the new chain they
    /// enter on the next push (after every stage that inherited state they shaped).
    pub(super) reinject: Vec<(u64, usize)>,
}

impl Chain {
    /// Loads every plugin and creates its stage; any failure names the policy.
    pub fn build(
        runtime: &PolicyRuntime,
        refs: &[PolicyRef],
        options: ChainOptions,
    ) -> Result<Chain, ChainError> {
        Ok(Chain::new(PreparedChain::load(runtime, refs, options.limits)?, options))
    }

    /// Starts a chain from prepared stages.
    pub fn new(prepared: PreparedChain, options: ChainOptions) -> Chain {
        let slots =
            prepared.stages.into_iter().map(|p| Slot::new(p.plugin, p.config, p.stage, &options)).collect();
        Chain {
            slots,
            options,
            pending: HashMap::new(),
            next_seq: 0,
            spec: prepared.spec,
            previous: None,
            reinject: Vec::new(),
        }
    }

    /// What this chain runs (version 0: the configured chain).
    pub fn spec(&self) -> &ChainSpec {
        &self.spec
    }

    pub fn options(&self) -> &ChainOptions {
        &self.options
    }

    /// `name@version` of each stage, in order.
    pub fn labels(&self) -> Vec<String> {
        self.slots.iter().map(|s| s.label.clone()).collect()
    }

    /// Events held inside the chain.
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    /// Whether stage `index` is quarantined.
    pub fn quarantined(&self, index: usize) -> bool {
        self.slots[index].stage.is_none()
    }

    /// Runs one log entry's events (possibly none: time still moves) through the chain.
    pub fn push(&mut self, now: i64, events: Vec<SourceEvent>, metrics: &TenantMetrics) -> ChainOutput {
        let mut injected = self.take_reinjected();
        let mut input = Vec::with_capacity(events.len());
        for e in events {
            let seq = self.next_seq;
            self.next_seq += 1;
            let p = PendingEvent {
                key_hash: key_hash(&e.key),
                id: e.id,
                tag: e.tag,
                key: e.key,
                event_time: e.event_time,
                log_time: now,
                payload: e.payload,
                stage: 0,
            };
            input.push(p.meta(seq));
            self.pending.insert(seq, p);
        }
        loop {
            match self.run_stages(now, input, injected, metrics) {
                Some(released) => return ChainOutput { released },
                // `last-good` replaced the chain: what the faulted chain held goes on
                // through the restored one.
                None => (input, injected) = (Vec::new(), self.take_reinjected()),
            }
        }
    }

    /// Events left over by a swap, by the stage they enter next. They get new sequence
    /// numbers (older than this push's events), so each stage sees them increase.
    fn take_reinjected(&mut self) -> BTreeMap<usize, Vec<wit::Event>> {
        let mut injected: BTreeMap<usize, Vec<wit::Event>> = BTreeMap::new();
        for (old, stage) in std::mem::take(&mut self.reinject) {
            let mut p = self.pending.remove(&old).expect("reinjected events are pending");
            let seq = self.next_seq;
            self.next_seq += 1;
            p.stage = stage;
            injected.entry(stage).or_default().push(p.meta(seq));
            self.pending.insert(seq, p);
        }
        injected
    }

    /// Passes `input` through every stage, adding `injected` events before the stage
    /// they enter; `None` if `last-good` replaced the chain.
    fn run_stages(
        &mut self,
        now: i64,
        mut input: Vec<wit::Event>,
        mut injected: BTreeMap<usize, Vec<wit::Event>>,
        metrics: &TenantMetrics,
    ) -> Option<Vec<PendingEvent>> {
        for index in 0..self.slots.len() {
            if let Some(mut older) = injected.remove(&index) {
                older.append(&mut input);
                input = older;
            }
            self.restart_if_due(index, metrics);
            let label = self.slots[index].label.clone();
            let answer = match &mut self.slots[index].stage {
                Some(stage) => {
                    metrics.count_call(&label);
                    stage.push(now, &input).map_err(Fault::from)
                }
                None => Err(Fault::Quarantined),
            };
            let decisions = answer.and_then(|d| self.validate(index, d));
            input.clear();
            match decisions {
                Ok(d) => {
                    self.slots[index].backoff = self.options.restart_backoff;
                    for x in &d.dropped {
                        self.pending.remove(&x.seq);
                        metrics.count_drop(&label, drop_reason(x.reason));
                    }
                    for &seq in &d.released {
                        let p = self.pending.get_mut(&seq).expect("validated");
                        p.stage = index + 1;
                        input.push(p.meta(seq));
                    }
                }
                Err(fault) => {
                    let new_fault = !matches!(fault, Fault::Quarantined);
                    if new_fault {
                        self.quarantine(index, &fault, metrics);
                    }
                    if self.options.failure_policy == FailurePolicy::LastGood
                        && new_fault
                        && self.revert_to_last_good(metrics)
                    {
                        return None;
                    }
                    input = self.apply_failure_policy(index, &label, metrics);
                }
            }
        }
        // Events that re-entered after the last stage are released first (older).
        let done = injected.remove(&self.slots.len()).unwrap_or_default();
        let released = done.iter().chain(&input);
        Some(released.map(|e| self.pending.remove(&e.seq).expect("released events are pending")).collect())
    }

    /// Accepts an answer only if every number in it is held by stage `index`, once.
    fn validate(&self, index: usize, d: wit::Decisions) -> Result<wit::Decisions, Fault> {
        let mut seen = std::collections::HashSet::with_capacity(d.released.len() + d.dropped.len());
        for seq in d.released.iter().copied().chain(d.dropped.iter().map(|x| x.seq)) {
            let held = self.pending.get(&seq).is_some_and(|p| p.stage == index);
            if !held || !seen.insert(seq) {
                return Err(Fault::InvalidSeq(seq));
            }
        }
        Ok(d)
    }

    /// Drops the faulted stage's store (freeing its memory) until its backoff ends.
    fn quarantine(&mut self, index: usize, fault: &Fault, metrics: &TenantMetrics) {
        let slot = &mut self.slots[index];
        slot.stage = None;
        slot.restart_at = Instant::now() + slot.backoff;
        metrics.count_fault(&slot.label);
        tracing::error!(tenant = %metrics.tenant, plugin = %slot.label, stage = index, %fault,
            quarantine = ?slot.backoff, policy = ?self.options.failure_policy, "policy stage faulted");
        slot.backoff = (slot.backoff * 2).min(self.options.restart_backoff_max);
    }

    fn restart_if_due(&mut self, index: usize, metrics: &TenantMetrics) {
        let limits = self.options.limits;
        let slot = &mut self.slots[index];
        if slot.stage.is_some() || Instant::now() < slot.restart_at {
            return;
        }
        match slot.plugin.stage(&slot.config, limits) {
            Ok(fresh) => {
                tracing::info!(tenant = %metrics.tenant, plugin = %slot.label, stage = index, "policy stage restarted");
                slot.stage = Some(fresh);
            }
            Err(e) => {
                metrics.count_fault(&slot.label);
                slot.restart_at = Instant::now() + slot.backoff;
                slot.backoff = (slot.backoff * 2).min(self.options.restart_backoff_max);
                tracing::error!(tenant = %metrics.tenant, plugin = %slot.label, error = %e, "policy stage restart failed");
            }
        }
    }

    /// Everything stage `index` holds, passed on (fail-open) or dropped (fail-closed).
    fn apply_failure_policy(
        &mut self,
        index: usize,
        label: &str,
        metrics: &TenantMetrics,
    ) -> Vec<wit::Event> {
        let mut held: Vec<u64> =
            self.pending.iter().filter(|(_, p)| p.stage == index).map(|(&seq, _)| seq).collect();
        held.sort_unstable();
        match self.options.failure_policy {
            // `last-good` with nothing to go back to passes events on, like fail-open.
            FailurePolicy::FailOpen | FailurePolicy::LastGood => held
                .into_iter()
                .map(|seq| {
                    let p = self.pending.get_mut(&seq).expect("held");
                    p.stage = index + 1;
                    p.meta(seq)
                })
                .collect(),
            FailurePolicy::FailClosed => {
                for seq in held {
                    self.pending.remove(&seq);
                    metrics.count_drop(label, "dropped_on_fault");
                }
                Vec::new()
            }
        }
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
            ..Default::default()
        }
    }

    fn times(out: &ChainOutput) -> Vec<(String, i64)> {
        out.released.iter().map(|e| (e.key.clone(), e.event_time)).collect()
    }

    #[test]
    fn taxi_chain_orders_drops_stale_and_keeps_newest_per_key() {
        let runtime = PolicyRuntime::new(&SandboxConfig::default());
        let tenant = crate::app::taxi_tenant();
        let options = ChainOptions::for_tenant(&runtime, &tenant);
        let mut chain = Chain::build(&runtime, &tenant.policies, options).unwrap();
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
        let options = ChainOptions::defaults(&runtime, None);
        let err =
            |refs: &[PolicyRef]| Chain::build(&runtime, refs, options).err().expect("must fail").to_string();
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
    /// A chain of one fixture stage that starts misbehaving on its second batch.
    fn fixture_chain(fault: &str, policy: FailurePolicy, backoff: Duration) -> Chain {
        let runtime = PolicyRuntime::new(&SandboxConfig {
            call_timeout_ms: 200,
            max_memory_bytes: 16 << 20,
            ..SandboxConfig::default()
        });
        let refs = [PolicyRef {
            plugin: format!("{}/fixture_misbehave.wasm", env!("STREAMGATE_PLUGIN_DIR")),
            config: Some(
                toml::from_str(&format!("fault = \"{fault}\"\nfrom_batch = 2\nspin = 1000000")).unwrap(),
            ),
        }];
        let options = ChainOptions {
            failure_policy: policy,
            restart_backoff: backoff,
            restart_backoff_max: backoff,
            ..ChainOptions::defaults(&runtime, None)
        };
        Chain::build(&runtime, &refs, options).unwrap()
    }

    fn three(t: i64) -> Vec<SourceEvent> {
        vec![ev("a", t), ev("b", t), ev("c", t)]
    }

    const FAULTS: [&str; 6] = ["loop", "memory-bomb", "trap", "panic", "unknown-seq", "duplicate-seq"];
    const FIXTURE: &str = "misbehave@0.1.0";

    #[test]
    fn every_fault_is_quarantined_and_fail_open_passes_events_on() {
        for fault in FAULTS {
            let mut chain = fixture_chain(fault, FailurePolicy::FailOpen, Duration::from_secs(3600));
            let m = TenantMetrics::new("t");
            assert_eq!(chain.push(1, three(1), &m).released.len(), 3, "{fault}: healthy first batch");
            assert_eq!(chain.push(2, three(2), &m).released.len(), 3, "{fault}: fail-open passes the batch");
            assert!(chain.quarantined(0), "{fault}: the stage is quarantined");
            assert_eq!(m.plugin_count(FIXTURE, "fault"), 1, "{fault}: one fault counted");
            assert_eq!(
                chain.push(3, three(3), &m).released.len(),
                3,
                "{fault}: still passing while quarantined"
            );
            assert_eq!(m.plugin_count(FIXTURE, "fault"), 1, "{fault}: quarantine is not a new fault");
            assert_eq!(chain.held(), 0, "{fault}: nothing stuck in the chain");
        }
    }

    #[test]
    fn every_fault_under_fail_closed_drops_and_counts() {
        for fault in FAULTS {
            let mut chain = fixture_chain(fault, FailurePolicy::FailClosed, Duration::from_secs(3600));
            let m = TenantMetrics::new("t");
            assert_eq!(chain.push(1, three(1), &m).released.len(), 3, "{fault}: healthy first batch");
            assert!(chain.push(2, three(2), &m).released.is_empty(), "{fault}: fail-closed drops the batch");
            assert!(chain.push(3, three(3), &m).released.is_empty(), "{fault}: and drops while quarantined");
            assert_eq!(m.plugin_count(FIXTURE, "fault"), 1, "{fault}: one fault counted");
            assert_eq!(
                m.plugin_count(FIXTURE, "dropped_on_fault"),
                6,
                "{fault}: both batches dropped, counted"
            );
            assert_eq!(chain.held(), 0, "{fault}: nothing stuck in the chain");
        }
    }

    #[test]
    fn a_quarantined_stage_restarts_after_its_backoff() {
        let mut chain = fixture_chain("trap", FailurePolicy::FailClosed, Duration::ZERO);
        let m = TenantMetrics::new("t");
        chain.push(1, three(1), &m);
        assert!(chain.push(2, three(2), &m).released.is_empty());
        assert!(chain.quarantined(0));
        // The fresh stage starts counting batches again: its first batch is healthy.
        assert_eq!(chain.push(3, three(3), &m).released.len(), 3);
        assert!(!chain.quarantined(0));
    }

    #[test]
    fn a_slow_plugin_within_budget_is_no_fault() {
        let mut chain = fixture_chain("slow", FailurePolicy::FailClosed, Duration::from_secs(3600));
        let m = TenantMetrics::new("t");
        for t in 1..=3 {
            assert_eq!(chain.push(t, three(t), &m).released.len(), 3);
        }
        assert_eq!(m.plugin_count(FIXTURE, "fault"), 0);
    }
}
