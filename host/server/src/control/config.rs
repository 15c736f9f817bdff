//! `[admin]`: the operators' API under `/admin` (plugins, chains, rollback, inspection)
//! and the `plugins_dir` watcher.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Bearer token required by `/admin/...` (env `STREAMGATE_ADMIN_TOKEN`). Without
    /// one the admin API answers 403 to everything.
    pub token: Option<String>,
    /// Largest plugin upload accepted.
    pub max_plugin_bytes: usize,
    /// How long a chain change waits for this instance to apply it before answering.
    #[serde(rename = "apply_timeout_ms", with = "streamgate_runtime::duration_ms")]
    pub apply_timeout: Duration,
    /// How often `plugins_dir` is scanned for replaced files.
    #[serde(rename = "watch_interval_ms", with = "streamgate_runtime::duration_ms")]
    pub watch_interval: Duration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            token: None,
            max_plugin_bytes: 16 << 20,
            apply_timeout: Duration::from_secs(10),
            watch_interval: Duration::from_millis(500),
        }
    }
}

impl AdminConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.token.as_deref().is_some_and(|t| t.trim().len() < 16) {
            return Err("admin.token must be at least 16 characters (or unset to disable /admin)".into());
        }
        if self.watch_interval.is_zero() {
            return Err("admin.watch_interval_ms must be > 0".into());
        }
        Ok(())
    }
}
