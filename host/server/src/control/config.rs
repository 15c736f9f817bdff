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
    /// Instead of `token`: a file of admin tokens, one per line, re-read when it changes
    /// (rotation without a restart; see SECURITY.md).
    pub token_file: Option<std::path::PathBuf>,
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
            token_file: None,
            max_plugin_bytes: 16 << 20,
            apply_timeout: Duration::from_secs(10),
            watch_interval: Duration::from_millis(500),
        }
    }
}

/// Shortest admin token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

impl AdminConfig {
    /// The admin tokens in force (`None`: the admin API is off); a token file must be
    /// readable and hold valid tokens at start.
    pub fn tokens(&self) -> Result<Option<crate::secrets::Rotating<Vec<String>>>, String> {
        use crate::secrets::{Rotating, lines};
        match (&self.token, &self.token_file) {
            (Some(t), _) => Ok(Some(Rotating::fixed(vec![t.trim().to_string()]))),
            (None, Some(path)) => Rotating::file(path, |t| lines(t, MIN_TOKEN_LEN))
                .map(Some)
                .map_err(|e| format!("admin.token_file {e}")),
            (None, None) => Ok(None),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.token.as_deref().is_some_and(|t| t.trim().len() < MIN_TOKEN_LEN) {
            return Err("admin.token must be at least 16 characters (or unset to disable /admin)".into());
        }
        if self.token.is_some() && self.token_file.is_some() {
            return Err("set admin.token or admin.token_file, not both".into());
        }
        if self.watch_interval.is_zero() {
            return Err("admin.watch_interval_ms must be > 0".into());
        }
        Ok(())
    }
}
