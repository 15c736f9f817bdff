//! Finds and compiles the plugins a chain names (`builtin:`, `sha256:` from the store,
//! files), each compiled once per instance, and prepares whole chains: stages created
//! and checked off the event path, ready for the worker to swap in between batches.
//! Plugins another instance uploads are compiled here as soon as it announces them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::bindings::wit;
use super::chain::{PreparedChain, PreparedStage};
use super::runtime::{Plugin, PluginError, PolicyRuntime};
use super::spec::{ChainSpec, StageSpec};
use super::stage::{StageError, StageLimits};
use crate::store::{Store, StoreError, is_plugin_ref, plugin_ref};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{0}")]
    Plugin(#[from] PluginError),
    #[error("plugin {0} is not in the plugin store; upload it first (POST /admin/plugins)")]
    Missing(String),
    #[error("plugin store: {0}")]
    Store(#[from] StoreError),
    #[error("{0:?} is not a plugin reference; use builtin:NAME or sha256:HEX (from an upload)")]
    NotShared(String),
    #[error("policy {index} ({plugin}): {source}")]
    Stage { index: usize, plugin: String, source: StageError },
    #[error("policy {index} ({plugin}) failed its trial batch: {reason}")]
    Trial { index: usize, plugin: String, reason: String },
}

/// The plugins this instance knows, compiled.
pub struct Catalog {
    runtime: PolicyRuntime,
    store: Store,
    plugins_dir: Option<PathBuf>,
    compiled: Mutex<HashMap<String, Arc<Plugin>>>,
}

impl Catalog {
    pub fn new(runtime: PolicyRuntime, store: Store, plugins_dir: Option<PathBuf>) -> Self {
        Catalog { runtime, store, plugins_dir, compiled: Mutex::default() }
    }

    pub fn runtime(&self) -> &PolicyRuntime {
        &self.runtime
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn plugins_dir(&self) -> Option<&std::path::Path> {
        self.plugins_dir.as_deref()
    }

    /// Compiles `bytes` (or finds them compiled) and returns the plugin and its
    /// `sha256:` reference. Compilation runs on the blocking pool.
    pub async fn compile(&self, bytes: Bytes) -> Result<(Arc<Plugin>, String), CatalogError> {
        let reference = plugin_ref(&bytes);
        if let Some(p) = self.compiled.lock().unwrap().get(&reference) {
            return Ok((p.clone(), reference));
        }
        let runtime = self.runtime.clone();
        let plugin = tokio::task::spawn_blocking(move || runtime.load(&bytes))
            .await
            .expect("plugin compilation does not panic")?;
        self.compiled.lock().unwrap().insert(reference.clone(), plugin.clone());
        Ok((plugin, reference))
    }

    /// The compiled plugin a reference names. `shared_only` refuses file paths (a path
    /// means nothing to the other instances).
    pub async fn resolve(&self, reference: &str, shared_only: bool) -> Result<Arc<Plugin>, CatalogError> {
        if let Some(p) = self.compiled.lock().unwrap().get(reference) {
            return Ok(p.clone());
        }
        let bytes = if let Some(name) = reference.strip_prefix("builtin:") {
            Bytes::from_static(super::builtin_plugin(name).ok_or_else(|| {
                PluginError::UnknownBuiltin(name.to_string(), super::BUILTIN_PLUGINS.join(", "))
            })?)
        } else if is_plugin_ref(reference) {
            self.store.get_plugin(reference).await?.ok_or_else(|| CatalogError::Missing(reference.into()))?
        } else if shared_only {
            return Err(CatalogError::NotShared(reference.to_string()));
        } else {
            let path = match &self.plugins_dir {
                Some(dir) if std::path::Path::new(reference).is_relative() => dir.join(reference),
                _ => PathBuf::from(reference),
            };
            Bytes::from(
                tokio::fs::read(&path).await.map_err(|e| PluginError::Read(path.display().to_string(), e))?,
            )
        };
        let (plugin, sha) = self.compile(bytes).await?;
        if reference.starts_with("builtin:") || is_plugin_ref(reference) {
            self.compiled.lock().unwrap().insert(reference.to_string(), plugin.clone());
        }
        debug_assert!(!is_plugin_ref(reference) || sha == reference);
        Ok(plugin)
    }

    /// Creates every stage of `spec` under `limits` (files allowed unless
    /// `shared_only`); with `trial`, each plugin first decides a small sample batch in
    /// a throwaway stage, so one that traps on its first batch is refused here.
    pub async fn prepare(
        &self,
        spec: &ChainSpec,
        limits: StageLimits,
        shared_only: bool,
        trial: bool,
    ) -> Result<PreparedChain, CatalogError> {
        let mut plugins = Vec::with_capacity(spec.policies.len());
        for s in &spec.policies {
            plugins.push(self.resolve(&s.plugin, shared_only).await?);
        }
        let spec = spec.clone();
        tokio::task::spawn_blocking(move || create_stages(spec, plugins, limits, trial))
            .await
            .expect("stage creation does not panic")
    }
}

impl Catalog {
    /// Compiles every plugin another instance announces as uploaded, so a chain naming
    /// it switches without waiting for the compiler. Runs until `cancel`.
    pub async fn precompile_announced(self: Arc<Self>, cancel: tokio_util::sync::CancellationToken) {
        use futures::StreamExt;
        loop {
            match self.store.announcements().await {
                Ok(mut announced) => loop {
                    let reference = tokio::select! {
                        _ = cancel.cancelled() => return,
                        r = announced.next() => match r { Some(r) => r, None => break },
                    };
                    match self.resolve(&reference, true).await {
                        Ok(p) => {
                            tracing::debug!(plugin = %reference, label = %p.label(), "announced plugin compiled")
                        }
                        Err(e) => {
                            tracing::warn!(plugin = %reference, error = %e, "announced plugin not compiled")
                        }
                    }
                },
                Err(e) => tracing::warn!(error = %e, "cannot follow plugin announcements; retrying"),
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
        }
    }
}

/// Creates the stages of a prepared chain (blocking: runs plugin constructors).
pub fn create_stages(
    spec: ChainSpec,
    plugins: Vec<Arc<Plugin>>,
    limits: StageLimits,
    trial: bool,
) -> Result<PreparedChain, CatalogError> {
    let mut stages = Vec::with_capacity(plugins.len());
    for (index, (s, plugin)) in spec.policies.iter().zip(plugins).enumerate() {
        let config = s.config_string();
        let named = |source| CatalogError::Stage { index, plugin: describe(s, &plugin), source };
        if trial {
            trial_batch(&plugin, &config, limits).map_err(|reason| CatalogError::Trial {
                index,
                plugin: describe(s, &plugin),
                reason,
            })?;
        }
        let stage = plugin.stage(&config, limits).map_err(named)?;
        stages.push(PreparedStage { plugin, config, stage });
    }
    Ok(PreparedChain { spec, stages })
}

fn describe(s: &StageSpec, plugin: &Plugin) -> String {
    format!("{} = {}", s.plugin, plugin.label())
}

/// Runs a throwaway stage over a small sample: an empty batch, a batch of a few keys
/// with a duplicate and a late event, and a flush far in the future. The answers must
/// be valid (only sequence numbers it holds, each once).
pub fn trial_batch(plugin: &Plugin, config: &str, limits: StageLimits) -> Result<(), String> {
    let mut stage = plugin.stage(config, limits).map_err(|e| e.to_string())?;
    let now = 1_763_900_000_000i64;
    let ev = |seq: u64, key: &str, t: i64| wit::Event {
        seq,
        key: streamgate_plugin_sdk::hash(key),
        event_time: t,
        log_time: now,
        id: seq,
        tag: 0,
    };
    let batches = [
        (now, vec![]),
        (now, vec![ev(0, "a", now - 10), ev(1, "b", now - 5), ev(2, "a", now - 10), ev(3, "a", now - 400)]),
        (now + 3_600_000, vec![]),
    ];
    let mut held = std::collections::BTreeSet::new();
    for (at, events) in batches {
        held.extend(events.iter().map(|e| e.seq));
        let d = stage.push(at, &events).map_err(|e| e.to_string())?;
        for seq in d.released.iter().copied().chain(d.dropped.iter().map(|x| x.seq)) {
            if !held.remove(&seq) {
                return Err(format!("answered with sequence number {seq}, which it does not hold"));
            }
        }
    }
    Ok(())
}
