//! Single-node development: watches `plugins_dir`, and when a `.wasm` file in it is
//! replaced, swaps every tenant whose running chain has a stage from that file (through
//! the log, like any chain change). A half-written file fails its checks and is tried
//! again when it changes next; a file the plugin store or the bus could not take is
//! tried again at the next poll. The running chain keeps serving meanwhile.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::control::{ChainControl, ControlError};
use crate::policy::CatalogError;
use streamgate_runtime::plugin::plugin_ref;

/// Polls `dir` every `every` until `cancel`.
pub async fn watch_plugins_dir(
    dir: PathBuf,
    every: Duration,
    control: Arc<ChainControl>,
    cancel: CancellationToken,
) {
    // File name -> sha256 reference of its content, as last seen.
    let mut seen = BTreeMap::new();
    for (name, bytes) in scan(&dir).await {
        if store(&control, &bytes).await {
            seen.insert(name, plugin_ref(&bytes));
        }
    }
    tracing::info!(dir = %dir.display(), files = seen.len(), "watching plugins_dir");
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        for (name, bytes) in scan(&dir).await {
            let reference = plugin_ref(&bytes);
            if seen.get(&name) == Some(&reference) {
                continue;
            }
            if !store(&control, &bytes).await {
                continue;
            }
            let before = seen.insert(name.clone(), reference);
            tracing::info!(file = %name, "plugin file changed");
            if !swap_users(&control, &name, &seen).await {
                // Not seen yet: the next poll tries again.
                match before {
                    Some(reference) => seen.insert(name, reference),
                    None => seen.remove(&name),
                };
            }
        }
    }
}

/// Every `.wasm` file directly in `dir`, with its bytes.
async fn scan(dir: &Path) -> Vec<(String, Bytes)> {
    let mut files = Vec::new();
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        tracing::warn!(dir = %dir.display(), "plugins_dir is not readable");
        return files;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "wasm")
            && let Some(name) = path.file_name().and_then(|n| n.to_str())
            && let Ok(bytes) = tokio::fs::read(&path).await
        {
            files.push((name.to_string(), Bytes::from(bytes)));
        }
    }
    files
}

/// Puts the file's bytes into the plugin store (checked when a chain uses them); false
/// if the store could not take them.
async fn store(control: &ChainControl, bytes: &Bytes) -> bool {
    let reference = plugin_ref(bytes);
    match control.catalog().store().put_plugin(&reference, bytes).await {
        Ok(_) => true,
        Err(e) => {
            tracing::error!(error = %e, "cannot store a plugins_dir file; trying again at the next poll");
            false
        }
    }
}

/// Sets a new chain for each tenant running a stage from `file`: every stage that came
/// from `plugins_dir` names its file's current content. False if a tenant could not be
/// swapped for a passing reason (the store or the bus out of reach).
async fn swap_users(control: &ChainControl, file: &str, seen: &BTreeMap<String, String>) -> bool {
    let mut done = true;
    for (tenant, handle) in control.tenants() {
        let mut policies = handle.chain.borrow().policies.clone();
        if !policies.iter().any(|s| s.source.as_deref() == Some(file)) {
            continue;
        }
        for stage in &mut policies {
            if let Some(reference) = stage.source.as_ref().and_then(|f| seen.get(f)) {
                stage.plugin = reference.clone();
            }
        }
        match control.set_chain(tenant, policies, &format!("plugins_dir: {file} replaced")).await {
            Ok(a) => tracing::info!(
                tenant,
                file,
                version = a.version,
                applied = a.applied,
                "plugin file swapped in"
            ),
            Err(
                e @ (ControlError::Store(_)
                | ControlError::Bus(_)
                | ControlError::Rejected(CatalogError::Store(_))),
            ) => {
                tracing::error!(tenant, file, error = %e, "cannot swap the plugin file in yet; trying again");
                done = false;
            }
            Err(e) => {
                tracing::error!(tenant, file, error = %e, "plugin file refused; the running chain stays")
            }
        }
    }
    done
}
