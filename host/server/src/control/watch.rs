//! Single-node development: watches `plugins_dir`, and when a `.wasm` file in it is
//! replaced, swaps every tenant whose running chain has a stage from that file (through
//! the log, like any chain change). A half-written file fails its checks and is tried
//! again when it changes next; the running chain keeps serving meanwhile.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::control::ChainControl;
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
        seen.insert(name, store(&control, bytes).await);
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
            store(&control, bytes).await;
            seen.insert(name.clone(), reference);
            tracing::info!(file = %name, "plugin file changed");
            swap_users(&control, &name, &seen).await;
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

/// Puts the file's bytes into the plugin store (checked when a chain uses them).
async fn store(control: &ChainControl, bytes: Bytes) -> String {
    let reference = plugin_ref(&bytes);
    if let Err(e) = control.catalog().store().put_plugin(&reference, &bytes).await {
        tracing::error!(error = %e, "cannot store a plugins_dir file");
    }
    reference
}

/// Sets a new chain for each tenant running a stage from `file`: every stage that came
/// from `plugins_dir` names its file's current content.
async fn swap_users(control: &ChainControl, file: &str, seen: &BTreeMap<String, String>) {
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
            Err(e) => {
                tracing::error!(tenant, file, error = %e, "plugin file refused; the running chain stays")
            }
        }
    }
}
