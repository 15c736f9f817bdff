//! Changing tenants' policy chains across the cluster, for the admin API and the
//! `plugins_dir` watcher ([`watch`]): check a plugin or chain off the event path, number
//! the chain, put a control entry into the tenant's log (every instance switches
//! there), record it for instances that start later, and wait until this instance has
//! switched. Shadow deploys: [`shadow`]. Settings: [`config`].

pub mod auto_promote;
pub mod config;
pub mod shadow;
pub mod watch;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use streamgate_runtime::chain::trial_batch;
use streamgate_runtime::{ChainError, ChainSpec, FailurePolicy, StageSpec};

pub use config::AdminConfig;

use crate::bus::{Bus, BusError, Control, EntryBody, LogPosition, wall_clock_ms};
use crate::policy::{Catalog, CatalogError, ChainRecord, StoreError, in_log_order};
use crate::tenant::{ChainStatus, TenantHandle, chain_options};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("unknown tenant {0:?}")]
    UnknownTenant(String),
    #[error("{0}")]
    Rejected(#[from] CatalogError),
    #[error("plugin store: {0}")]
    Store(#[from] StoreError),
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    #[error("tenant {0:?} runs its configured chain; there is no earlier chain to roll back to")]
    NothingToRollBack(String),
    #[error("{0}")]
    InvalidGuard(String),
    #[error("tenant {tenant:?} has no running shadow on this instance to promote ({why}); start one first")]
    NoShadow { tenant: String, why: String },
}

/// A stored plugin, as the upload answer and `GET` describe it.
#[derive(Clone, Debug, Serialize)]
pub struct Uploaded {
    /// `sha256:HEX`: what a chain names.
    pub plugin: String,
    pub name: String,
    pub version: String,
    pub capabilities: Vec<String>,
    pub state_version: u32,
    pub bytes: usize,
    /// `false` if the store already had it.
    pub created: bool,
}

/// The answer to a chain change.
#[derive(Clone, Debug, Serialize)]
pub struct Applied {
    pub tenant: String,
    pub version: u64,
    /// Log position of the control entry: every instance switches there.
    pub position: String,
    /// Whether this instance switched within `admin.apply_timeout_ms`.
    pub applied: bool,
    pub status: ChainStatus,
}

/// A tenant's chain as the admin API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    pub tenant: String,
    pub failure_policy: FailurePolicy,
    pub active: ChainStatus,
    pub configured: Vec<StageSpec>,
    /// Chains set through the admin API, oldest first.
    pub history: Vec<ChainRecord>,
    pub calls: BTreeMap<String, u64>,
    /// Per plugin: drops by reason, faults, invalid decisions.
    pub outcomes: BTreeMap<String, BTreeMap<String, u64>>,
    pub swaps: u64,
    pub swap_failures: u64,
    pub last_good_reverts: u64,
}

pub struct ChainControl {
    catalog: Arc<Catalog>,
    bus: Bus,
    tenants: Arc<BTreeMap<String, Arc<TenantHandle>>>,
    apply_timeout: Duration,
}

impl ChainControl {
    pub fn new(
        catalog: Arc<Catalog>,
        bus: Bus,
        tenants: Arc<BTreeMap<String, Arc<TenantHandle>>>,
        apply_timeout: Duration,
    ) -> Self {
        ChainControl { catalog, bus, tenants, apply_timeout }
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    pub fn tenants(&self) -> &BTreeMap<String, Arc<TenantHandle>> {
        &self.tenants
    }

    fn tenant(&self, name: &str) -> Result<&Arc<TenantHandle>, ControlError> {
        self.tenants.get(name).ok_or_else(|| ControlError::UnknownTenant(name.to_string()))
    }

    /// Checks a component (a component of `streamgate:policy@0.1.0` with no imports, a
    /// readable description, a stage that accepts `config` and decides a sample batch)
    /// and stores it by sha256.
    pub async fn upload(&self, bytes: Bytes, config: &str) -> Result<Uploaded, ControlError> {
        let size = bytes.len();
        let (plugin, reference) = self.catalog.compile(bytes.clone()).await?;
        let limits = self.catalog.runtime().limits(None);
        let (trial_plugin, trial_config) = (plugin.clone(), config.to_string());
        tokio::task::spawn_blocking(move || trial_batch(&trial_plugin, &trial_config, limits))
            .await
            .expect("the trial does not panic")
            .map_err(|reason| {
                CatalogError::Chain(ChainError::Trial { index: 0, plugin: plugin.label(), reason })
            })?;
        let created = self.catalog.store().put_plugin(&reference, &bytes).await?;
        if let Err(e) = self.catalog.store().announce_plugin(&reference).await {
            tracing::warn!(plugin = %reference, error = %e, "other instances will compile the plugin on first use");
        }
        let d = plugin.description();
        tracing::info!(plugin = %reference, label = %plugin.label(), created, "plugin uploaded");
        Ok(Uploaded {
            plugin: reference,
            name: d.name.clone(),
            version: d.version.clone(),
            capabilities: d.capabilities.iter().map(|c| format!("{c:?}").to_lowercase()).collect(),
            state_version: d.state_version,
            bytes: size,
            created,
        })
    }

    /// Sets `tenant`'s chain everywhere: every stage must resolve to a shared plugin,
    /// accept its config and decide a sample batch before anything is published.
    pub async fn set_chain(
        &self,
        tenant: &str,
        policies: Vec<StageSpec>,
        reason: &str,
    ) -> Result<Applied, ControlError> {
        self.publish_chain(tenant, policies, reason, true, false).await
    }

    /// `shared_only`: refuse file paths (anything but the configured chain, whose files
    /// every instance's config names alike). `promote`: the chain is the shadow's.
    async fn publish_chain(
        &self,
        tenant: &str,
        policies: Vec<StageSpec>,
        reason: &str,
        shared_only: bool,
        promote: bool,
    ) -> Result<Applied, ControlError> {
        let handle = self.tenant(tenant)?;
        let limits = chain_options(&self.catalog, &handle.config).limits;
        let mut chain = ChainSpec { version: 0, policies };
        self.catalog.prepare(&chain, limits, shared_only, true).await?;
        chain.version = self.catalog.store().next_version(tenant).await?;
        let (chain_, reason_) = (chain.clone(), reason.to_string());
        let control = if promote {
            Control::PromoteShadow { chain: chain_, reason: reason_ }
        } else {
            Control::SetChain { chain: chain_, reason: reason_ }
        };
        let mut record = ChainRecord {
            chain: chain.clone(),
            reason: reason.to_string(),
            position: String::new(),
            published_ms: wall_clock_ms(),
            last_good: false,
        };
        // The control entry and its history record in one step where the bus can.
        let together = self.catalog.store().history_entry(tenant, &record);
        let (position, recorded) =
            self.bus.publish_recorded(tenant, &EntryBody::control(&control), together.as_ref()).await?;
        record.position = position.to_string();
        if !recorded {
            self.catalog.store().record_chain(tenant, &record).await?;
        }
        tracing::info!(tenant, version = chain.version, %position, reason, "policy chain change published");
        Ok(self.wait_applied(handle, chain.version, position).await)
    }

    /// Sets the chain that was active before the current one (the configured chain
    /// when only one was ever set). After a `last-good` revert, that is the chain before
    /// the one it went back to, never the chain that faulted.
    pub async fn rollback(&self, tenant: &str) -> Result<Applied, ControlError> {
        let handle = self.tenant(tenant)?;
        let history = self.catalog.store().chain_history(tenant).await?;
        let configured = handle.configured_chain(self.catalog.plugins_dir().is_some());
        let Some((current, previous)) = rollback_target(history, &configured) else {
            return Err(ControlError::NothingToRollBack(tenant.to_string()));
        };
        let reason =
            format!("rollback from version {} to version {}", current.chain.version, previous.version);
        // The configured chain may name files: every instance's config names them alike.
        let shared_only = previous.policies != configured.policies;
        self.publish_chain(tenant, previous.policies, &reason, shared_only, false).await
    }

    /// Waits (bounded) until this instance's worker has passed `position`.
    async fn wait_applied(&self, handle: &TenantHandle, version: u64, position: LogPosition) -> Applied {
        let mut status = handle.chain.clone();
        let reached = tokio::time::timeout(self.apply_timeout, status.wait_for(|s| s.position >= position))
            .await
            .is_ok_and(|r| r.is_ok());
        let status = status.borrow().clone();
        Applied {
            tenant: handle.config.name.clone(),
            version,
            position: position.to_string(),
            applied: reached && status.version == version,
            status,
        }
    }

    pub async fn inspect(&self, tenant: &str) -> Result<Inspection, ControlError> {
        let handle = self.tenant(tenant)?;
        let history = self.catalog.store().chain_history(tenant).await?;
        let m = &handle.metrics;
        let mut outcomes: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for ((plugin, what), n) in m.policy.outcomes() {
            outcomes.entry(plugin).or_default().insert(what.to_string(), n);
        }
        use std::sync::atomic::Ordering::Relaxed;
        Ok(Inspection {
            tenant: tenant.to_string(),
            failure_policy: handle.config.failure_policy,
            active: handle.chain.borrow().clone(),
            configured: handle.configured_chain(self.catalog.plugins_dir().is_some()).policies,
            history,
            calls: m.policy.calls(),
            outcomes,
            swaps: m.swaps.load(Relaxed),
            swap_failures: m.swap_failures.load(Relaxed),
            last_good_reverts: m.policy.last_good_reverts.load(Relaxed),
        })
    }
}

/// The chain in force (the newest record) and the one a rollback sets: the newest
/// earlier chain of other policies, never the one a `last-good` record left because it
/// faulted; the configured chain if there is none. `None` when nothing was ever set.
fn rollback_target(history: Vec<ChainRecord>, configured: &ChainSpec) -> Option<(ChainRecord, ChainSpec)> {
    let mut history: Vec<ChainRecord> = in_log_order(history).into_iter().map(|(_, r)| r).collect();
    let current = history.pop()?;
    let mut after_last_good = current.last_good;
    let previous = history
        .iter()
        .rev()
        .find(|r| {
            let left_by_fault = std::mem::replace(&mut after_last_good, r.last_good);
            !left_by_fault && r.chain.policies != current.chain.policies
        })
        .map_or(configured.clone(), |r| r.chain.clone());
    Some((current, previous))
}

#[cfg(test)]
mod rollback_tests {
    use super::*;

    fn chain(version: u64, plugin: &str) -> ChainSpec {
        ChainSpec { version, policies: vec![StageSpec::new(plugin, "{}")] }
    }

    fn record(position: &str, chain: ChainSpec, last_good: bool) -> ChainRecord {
        ChainRecord { chain, reason: String::new(), position: position.into(), published_ms: 0, last_good }
    }

    fn target(history: Vec<ChainRecord>) -> Option<u64> {
        rollback_target(history, &chain(0, "builtin:dedupe")).map(|(_, previous)| previous.version)
    }

    #[test]
    fn a_rollback_goes_to_the_chain_before_and_undoes_itself() {
        assert_eq!(target(vec![]), None);
        assert_eq!(target(vec![record("1-0", chain(1, "a"), false)]), Some(0));
        let two = vec![record("1-0", chain(1, "a"), false), record("2-0", chain(2, "b"), false)];
        assert_eq!(target(two.clone()), Some(1));
        let mut undone = two;
        undone.push(record("3-0", chain(3, "a"), false));
        assert_eq!(target(undone), Some(2), "rolling back a rollback");
    }

    #[test]
    fn after_last_good_the_faulted_chain_is_never_the_target() {
        // 1, 2, 3 set; 3 faulted and last-good went back to 2 (recorded, maybe late).
        let history = vec![
            record("1-0", chain(1, "a"), false),
            record("2-0", chain(2, "b"), false),
            record("4-0", chain(2, "b"), true),
            record("3-0", chain(3, "c"), false),
        ];
        assert_eq!(target(history), Some(1), "back to the chain before 2, not to 3 which faulted");
    }
}
