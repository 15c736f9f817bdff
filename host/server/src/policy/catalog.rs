//! Finds and compiles the plugins a chain names (`builtin:`, `sha256:` from the store,
//! files), each compiled once per instance, and prepares whole chains: stages created
//! and checked off the event path, ready for the worker to swap in between batches.
//! Plugins another instance uploads are compiled here as soon as it announces them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use streamgate_runtime::plugin::{is_plugin_ref, plugin_ref};
use streamgate_runtime::{
    ChainError, ChainSpec, Plugin, PluginError, PolicyRuntime, PreparedChain, StageLimits,
};

use super::store::{Store, StoreError};

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
    #[error(transparent)]
    Chain(#[from] ChainError),
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
            streamgate_runtime::builtin::builtin_bytes(name)?
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
        let prepared =
            tokio::task::spawn_blocking(move || PreparedChain::create(spec, plugins, limits, trial))
                .await
                .expect("stage creation does not panic")?;
        Ok(prepared)
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
