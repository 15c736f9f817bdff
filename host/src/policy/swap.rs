//! Replacing a running chain between two log entries without losing or repeating an
//! event: a stage of the same component and config carries on untouched; any other new
//! stage takes the state of the old stage of the same plugin name (snapshot → restore), events held by a stage whose state did not move re-enter the
//! new chain right after the last stage whose state they already shaped, and the old
//! chain is kept for `last-good`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::chain::{Chain, PreparedChain, PreviousChain, Slot};
use super::spec::ChainSpec;
use crate::metrics::TenantMetrics;

/// How a new stage started.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum StateTransfer {
    /// The same component with the same config: the running stage carries on as it is.
    Kept { stage: String },
    /// It continues from the old stage's snapshot.
    Restored { from: String, bytes: usize },
    /// It starts empty, and why.
    Empty { why: String },
}

/// What a swap did.
#[derive(Clone, Debug, Serialize)]
pub struct SwapReport {
    pub from_version: u64,
    pub to_version: u64,
    /// One per new stage, in order.
    pub stages: Vec<StateTransfer>,
    /// Events that re-entered the new chain at its first stage.
    pub reinjected: usize,
    /// Time the chain was unavailable (snapshot, restore, switch).
    #[serde(serialize_with = "micros")]
    pub pause: Duration,
}

fn micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_micros() as u64)
}

impl Chain {
    /// Switches to `next`, moving state over stage by stage (matched by plugin name, in
    /// order). A plugin that refuses the old state starts empty and the report says so.
    pub fn swap(&mut self, next: PreparedChain) -> SwapReport {
        let started = Instant::now();
        let from_version = self.spec.version;
        let limits = self.options.limits;
        let mut old: Vec<Option<Slot>> = self.slots.drain(..).map(Some).collect();
        let previous = PreviousChain {
            spec: std::mem::replace(&mut self.spec, next.spec),
            stages: old.iter().flatten().map(|s| (s.plugin.clone(), s.config.clone())).collect(),
        };
        // Old stage index -> new stage index, for stages whose state moved.
        let mut moved = vec![None; old.len()];
        // New stage index -> the old stage whose state it took.
        let mut origin = Vec::with_capacity(next.stages.len());
        let mut stages = Vec::with_capacity(next.stages.len());
        for (j, mut p) in next.stages.into_iter().enumerate() {
            let name = &p.plugin.description().name;
            let Some(i) =
                old.iter().position(|o| o.as_ref().is_some_and(|s| &s.plugin.description().name == name))
            else {
                stages.push(StateTransfer::Empty { why: format!("no {name} stage ran before") });
                origin.push(None);
                self.slots.push(Slot::new(p.plugin, p.config, p.stage, &self.options));
                continue;
            };
            let mut from = old[i].take().expect("found above");
            if from.stage.is_some() && from.plugin.digest() == p.plugin.digest() && from.config == p.config {
                // Nothing to move: keep the stage (and its store) running.
                moved[i] = Some(j);
                origin.push(Some(i));
                stages.push(StateTransfer::Kept { stage: from.label.clone() });
                self.slots.push(from);
                continue;
            }
            let transfer = match from.stage.as_mut().map(|s| s.snapshot()) {
                None => StateTransfer::Empty { why: format!("{} was quarantined", from.label) },
                Some(Err(e)) => {
                    StateTransfer::Empty { why: format!("{} could not snapshot: {e}", from.label) }
                }
                Some(Ok(state)) => match p.stage.restore(from.plugin.description().state_version, &state) {
                    Ok(()) => {
                        moved[i] = Some(j);
                        origin.push(Some(i));
                        StateTransfer::Restored { from: from.label.clone(), bytes: state.len() }
                    }
                    Err(e) => {
                        origin.push(None);
                        // Whatever it half-loaded goes with the store; start clean.
                        if let Ok(fresh) = p.plugin.stage(&p.config, limits) {
                            p.stage = fresh;
                        }
                        StateTransfer::Empty { why: format!("{} {e}", p.plugin.label()) }
                    }
                },
            };
            stages.push(transfer);
            self.slots.push(Slot::new(p.plugin, p.config, p.stage, &self.options));
        }
        // Left over by an earlier swap and not yet pushed: not in any stage's state.
        let waiting: HashMap<u64, usize> = self.reinject.drain(..).collect();
        let mut reinject = Vec::new();
        for (&seq, p) in self.pending.iter_mut() {
            let held = if waiting.contains_key(&seq) { None } else { moved.get(p.stage).copied().flatten() };
            let passed = waiting.get(&seq).copied().unwrap_or(p.stage);
            match held {
                Some(j) => p.stage = j,
                None => {
                    // It went through old stages 0..p.stage: skip the new stages that
                    // took their state (it already shaped it), enter the one after.
                    let entry = origin
                        .iter()
                        .rposition(|o: &Option<usize>| o.is_some_and(|i| i < passed))
                        .map_or(0, |j| j + 1);
                    reinject.push((seq, entry));
                }
            }
        }
        reinject.sort_unstable();
        let reinjected = reinject.len();
        self.reinject = reinject;
        self.previous = Some(previous);
        SwapReport {
            from_version,
            to_version: self.spec.version,
            stages,
            reinjected,
            pause: started.elapsed(),
        }
    }

    /// `last-good`: goes back to the chain before the last swap, once. `false` if
    /// there is none or it cannot be recreated (the caller then passes events on).
    pub(super) fn revert_to_last_good(&mut self, metrics: &TenantMetrics) -> bool {
        let Some(previous) = self.previous.take() else { return false };
        let mut stages = Vec::with_capacity(previous.stages.len());
        for (plugin, config) in &previous.stages {
            match plugin.stage(config, self.options.limits) {
                Ok(stage) => stages.push(super::chain::PreparedStage {
                    plugin: plugin.clone(),
                    config: config.clone(),
                    stage,
                }),
                Err(e) => {
                    tracing::error!(tenant = %metrics.tenant, plugin = %plugin.label(), error = %e,
                        "last-good: the previous chain cannot be recreated; passing events on");
                    return false;
                }
            }
        }
        let report = self.swap(PreparedChain { spec: previous.spec, stages });
        // Never bounce back to the chain that just faulted.
        self.previous = None;
        metrics.last_good_reverts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(tenant = %metrics.tenant, from = report.from_version, to = report.to_version,
            reinjected = report.reinjected, "last-good: back to the previous chain after a fault");
        true
    }

    /// The chain `last-good` would go back to.
    pub fn previous_spec(&self) -> Option<&ChainSpec> {
        self.previous.as_ref().map(|p| &p.spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FailurePolicy, PolicyRef, SandboxConfig};
    use crate::event::SourceEvent;
    use crate::policy::PolicyRuntime;
    use crate::policy::chain::ChainOptions;

    fn fixture(name: &str) -> String {
        format!("{}/{name}.wasm", env!("STREAMGATE_PLUGIN_DIR"))
    }

    fn policy(plugin: &str, config: &str) -> PolicyRef {
        PolicyRef { plugin: plugin.into(), config: Some(toml::from_str(config).unwrap()) }
    }

    fn taxi_chain(dedupe: &str) -> Vec<PolicyRef> {
        vec![
            policy("builtin:ordering", "window_ms = 1000"),
            policy("builtin:staleness", "max_age_ms = 30000"),
            policy(dedupe, "newest_per_frame = true"),
        ]
    }

    fn prepared(runtime: &PolicyRuntime, refs: &[PolicyRef], version: u64) -> PreparedChain {
        let mut p = PreparedChain::load(runtime, refs, runtime.limits(None)).unwrap();
        p.spec.version = version;
        p
    }

    fn ev(key: u64, t: i64) -> SourceEvent {
        SourceEvent {
            key: format!("k{key}"),
            event_time: t,
            payload: bytes::Bytes::from(format!("{key}:{t}")),
            ..Default::default()
        }
    }

    /// A deterministic batch: late, duplicate and backwards reports among 20 keys.
    fn batch(round: i64) -> Vec<SourceEvent> {
        (0..40u64)
            .map(|i| {
                let jitter = ((round as u64 * 7919 + i * 104_729) % 2_500) as i64;
                ev(i % 20, round * 500 - jitter)
            })
            .collect()
    }

    fn released(out: crate::policy::ChainOutput) -> Vec<(String, i64)> {
        out.released.into_iter().map(|e| (e.key, e.event_time)).collect()
    }

    #[test]
    fn swapping_back_and_forth_changes_nothing_in_the_output() {
        let runtime = PolicyRuntime::new(&SandboxConfig::default());
        let options = ChainOptions::defaults(&runtime, None);
        let (v1, v2) = (taxi_chain("builtin:dedupe"), taxi_chain(&fixture("fixture_dedupe_next")));
        let mut steady = Chain::build(&runtime, &v1, options).unwrap();
        let mut swapped = Chain::build(&runtime, &v1, options).unwrap();
        let m = TenantMetrics::new("t");
        let mut reports = Vec::new();
        for round in 1..=60 {
            let now = round * 500;
            let expected = released(steady.push(now, batch(round), &m));
            if round % 3 == 0 {
                let next = if round % 6 == 0 { &v1 } else { &v2 };
                reports.push(swapped.swap(prepared(&runtime, next, round as u64)));
            }
            assert_eq!(released(swapped.push(now, batch(round), &m)), expected, "round {round}");
        }
        assert_eq!(reports.len(), 20);
        for r in &reports {
            assert_eq!(r.reinjected, 0, "every stage's state moved: {r:?}");
            assert!(
                matches!(&r.stages[..2], [StateTransfer::Kept { .. }, StateTransfer::Kept { .. }]),
                "{r:?}"
            );
            assert!(matches!(r.stages[2], StateTransfer::Restored { .. }), "{r:?}");
        }
        assert!(
            matches!(&reports[0].stages[2], StateTransfer::Restored { from, .. } if from == "dedupe@0.1.0")
        );
        assert_eq!(swapped.labels()[2], "dedupe@0.1.0", "20 swaps: back on the first version");
        assert_eq!(swapped.spec().version, 60);
    }

    #[test]
    fn events_held_by_a_removed_stage_enter_the_new_chain() {
        let runtime = PolicyRuntime::new(&SandboxConfig::default());
        let mut chain =
            Chain::build(&runtime, &taxi_chain("builtin:dedupe"), ChainOptions::defaults(&runtime, None))
                .unwrap();
        let m = TenantMetrics::new("t");
        assert!(
            chain.push(10_000, vec![ev(1, 9_900), ev(2, 9_950)], &m).released.is_empty(),
            "held for order"
        );
        let without_ordering = [policy("builtin:dedupe", "newest_per_frame = true")];
        let report = chain.swap(prepared(&runtime, &without_ordering, 1));
        assert_eq!(report.reinjected, 2);
        assert!(
            matches!(&report.stages[0], StateTransfer::Kept { stage } if stage == "dedupe@0.1.0"),
            "the same dedupe carries on: {report:?}"
        );
        let out = released(chain.push(10_001, vec![ev(1, 9_990)], &m));
        assert_eq!(out, vec![("k2".into(), 9_950), ("k1".into(), 9_990)], "nothing lost, newest per key");
        assert_eq!(chain.held(), 0);
    }

    #[test]
    fn a_plugin_that_refuses_the_state_starts_empty_and_says_why() {
        let runtime = PolicyRuntime::new(&SandboxConfig::default());
        let misbehave = fixture("fixture_misbehave");
        let mut chain =
            Chain::build(&runtime, &[policy(&misbehave, "")], ChainOptions::defaults(&runtime, None))
                .unwrap();
        let report = chain.swap(prepared(&runtime, &[policy(&misbehave, "fault = \"refuse-state\"")], 1));
        let StateTransfer::Empty { why } = &report.stages[0] else { panic!("{report:?}") };
        assert!(why.contains("misbehave@0.1.0") && why.contains("unsupported state version 1"), "{why}");
        let m = TenantMetrics::new("t");
        assert_eq!(chain.push(1, vec![ev(1, 1)], &m).released.len(), 1, "the empty stage serves");
    }

    #[test]
    fn last_good_goes_back_to_the_previous_chain_and_loses_nothing() {
        let runtime = PolicyRuntime::new(&SandboxConfig::default());
        let options = ChainOptions {
            failure_policy: FailurePolicy::LastGood,
            ..ChainOptions::defaults(&runtime, None)
        };
        let v0 = [policy("builtin:dedupe", "")];
        let mut chain = Chain::build(&runtime, &v0, options).unwrap();
        let m = TenantMetrics::new("t");
        assert_eq!(released(chain.push(1, vec![ev(1, 100)], &m)), vec![("k1".into(), 100)]);
        let trap_on_second = policy(&fixture("fixture_misbehave"), "fault = \"trap\"\nfrom_batch = 2");
        chain.swap(prepared(&runtime, &[policy("builtin:dedupe", ""), trap_on_second], 1));
        assert_eq!(released(chain.push(2, vec![ev(2, 200)], &m)), vec![("k2".into(), 200)]);
        // The second stage traps: back to version 0, whose dedupe has the state of v1's.
        let out = released(chain.push(3, vec![ev(1, 100), ev(3, 300)], &m));
        assert_eq!(out, vec![("k3".into(), 300)], "k1@100 is still known as a duplicate");
        assert_eq!(chain.spec().version, 0);
        assert_eq!(m.last_good_reverts.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(m.plugin_count("misbehave@0.1.0", "fault"), 1);
        assert!(chain.previous_spec().is_none(), "never back to the chain that faulted");
        assert_eq!(chain.held(), 0);
    }

    #[test]
    fn every_fault_under_last_good_goes_back_and_loses_nothing() {
        let runtime = PolicyRuntime::new(&SandboxConfig {
            call_timeout_ms: 200,
            max_memory_bytes: 16 << 20,
            ..SandboxConfig::default()
        });
        let options = ChainOptions {
            failure_policy: FailurePolicy::LastGood,
            ..ChainOptions::defaults(&runtime, None)
        };
        let faults = ["loop", "memory-bomb", "trap", "panic", "unknown-seq", "duplicate-seq"];
        for fault in faults {
            let mut chain = Chain::build(&runtime, &[policy("builtin:dedupe", "")], options).unwrap();
            let m = TenantMetrics::new("t");
            chain.push(1, vec![ev(1, 100)], &m);
            let faulty =
                policy(&fixture("fixture_misbehave"), &format!("fault = \"{fault}\"\nfrom_batch = 2"));
            chain.swap(prepared(&runtime, &[policy("builtin:dedupe", ""), faulty], 1));
            assert_eq!(released(chain.push(2, vec![ev(2, 200)], &m)), vec![("k2".into(), 200)], "{fault}");
            let out = released(chain.push(3, vec![ev(1, 100), ev(3, 300), ev(4, 400)], &m));
            assert_eq!(out, vec![("k3".into(), 300), ("k4".into(), 400)], "{fault}: through version 0");
            assert_eq!(chain.spec().version, 0, "{fault}");
            assert_eq!(m.plugin_count("misbehave@0.1.0", "fault"), 1, "{fault}");
            assert_eq!(chain.held(), 0, "{fault}");
        }
    }

    #[test]
    fn last_good_without_an_earlier_chain_passes_events_on() {
        let runtime = PolicyRuntime::new(&SandboxConfig::default());
        let options = ChainOptions {
            failure_policy: FailurePolicy::LastGood,
            ..ChainOptions::defaults(&runtime, None)
        };
        let trap = policy(&fixture("fixture_misbehave"), "fault = \"trap\"");
        let mut chain = Chain::build(&runtime, &[trap], options).unwrap();
        let m = TenantMetrics::new("t");
        assert_eq!(chain.push(1, vec![ev(1, 1), ev(2, 2)], &m).released.len(), 2);
        assert_eq!(m.last_good_reverts.load(std::sync::atomic::Ordering::Relaxed), 0);
    }
}
