//! What a chain tells whoever counts: each call into a stage, each drop with its
//! reason, each fault, each `last-good` revert. The server's per-tenant metrics
//! implement [`ChainObserver`]; [`Counts`] is a plain in-memory one for tests and
//! benchmarks.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Receives a chain's outcomes; called per stage per batch (drops once per reason),
/// never per event.
pub trait ChainObserver {
    /// The tenant, for log lines.
    fn tenant(&self) -> &str;
    /// One batch call into the stage of `plugin` (`name@version`).
    fn call(&self, plugin: &str);
    /// `plugin` dropped `count` events of one batch for `reason` (`stale`, ..., or
    /// `dropped_on_fault`).
    fn dropped(&self, plugin: &str, reason: &'static str, count: u64);
    /// `plugin`'s stage faulted (trap, timeout, memory cap, invalid answer).
    fn fault(&self, plugin: &str);
    /// `last-good` went back to the previous chain.
    fn last_good_revert(&self);
}

/// Counts in memory: outcomes per (plugin, outcome), calls per plugin, reverts.
#[derive(Default)]
pub struct Counts {
    pub tenant: String,
    outcomes: Mutex<BTreeMap<(String, &'static str), u64>>,
    calls: Mutex<BTreeMap<String, u64>>,
    pub last_good_reverts: AtomicU64,
}

impl Counts {
    pub fn new(tenant: &str) -> Self {
        Counts { tenant: tenant.to_string(), ..Default::default() }
    }

    /// Count of one plugin outcome (a drop reason or `fault`).
    pub fn plugin_count(&self, plugin: &str, what: &str) -> u64 {
        let outcomes = self.outcomes.lock().unwrap();
        outcomes.iter().filter(|((p, w), _)| p == plugin && *w == what).map(|(_, n)| *n).sum()
    }

    /// Every outcome counted: (plugin, outcome) -> count.
    pub fn outcomes(&self) -> BTreeMap<(String, &'static str), u64> {
        self.outcomes.lock().unwrap().clone()
    }

    /// Batch calls per plugin.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.calls.lock().unwrap().clone()
    }

    fn bump(&self, plugin: &str, what: &'static str, count: u64) {
        *self.outcomes.lock().unwrap().entry((plugin.to_string(), what)).or_default() += count;
    }
}

impl ChainObserver for Counts {
    fn tenant(&self) -> &str {
        &self.tenant
    }

    fn call(&self, plugin: &str) {
        let mut calls = self.calls.lock().unwrap();
        match calls.get_mut(plugin) {
            Some(n) => *n += 1,
            None => {
                calls.insert(plugin.to_string(), 1);
            }
        }
    }

    fn dropped(&self, plugin: &str, reason: &'static str, count: u64) {
        self.bump(plugin, reason, count);
    }

    fn fault(&self, plugin: &str) {
        self.bump(plugin, "fault", 1);
    }

    fn last_good_revert(&self) {
        self.last_good_reverts.fetch_add(1, Relaxed);
    }
}
