//! `[checkpoint]`: whether instances keep chain-state checkpoints in Redis, how often,
//! how many, how large, and how many other instances must agree before one is used.

use std::time::Duration;

use serde::Deserialize;

/// `[checkpoint]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Off by default: every instance then pauses its tenants' chains to snapshot them
    /// once per interval, and Redis holds `keep` states per tenant (one more while none is
    /// trusted); worth it when the retained log takes long to replay (see the README's
    /// "Fast start").
    pub enabled: bool,
    /// Log time between checkpoints: one is taken at the first entry of each interval.
    #[serde(rename = "interval_ms", with = "streamgate_runtime::duration_ms")]
    pub interval: Duration,
    /// Newest checkpoints kept per tenant (older ones are deleted as new ones come, but
    /// for the newest trusted one while none of the newest is).
    pub keep: usize,
    /// A checkpoint larger than this (encoded) is not written, and counted.
    pub max_bytes: usize,
    /// Instances other than the writer that must have computed the same state at the
    /// same position before a starting instance trusts it (0: trust the writer alone).
    pub min_verifications: u64,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            enabled: false,
            interval: Duration::from_secs(10),
            keep: 3,
            max_bytes: 64 << 20,
            min_verifications: 1,
        }
    }
}

impl CheckpointConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.enabled && (self.interval.as_millis() == 0 || self.keep == 0 || self.max_bytes == 0) {
            return Err("checkpoint.interval_ms, checkpoint.keep and checkpoint.max_bytes must be > 0".into());
        }
        Ok(())
    }
}
