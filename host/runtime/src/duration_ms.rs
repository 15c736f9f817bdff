//! Serde for config durations written as integer milliseconds (`heartbeat_ms = 200`):
//! the file keeps its `*_ms` keys, the code gets [`Duration`]s.
//!
//! ```ignore
//! #[serde(rename = "heartbeat_ms", with = "streamgate_runtime::duration_ms")]
//! pub heartbeat: Duration,
//! ```

use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

/// The same for an optional duration (`call_timeout_ms` of a tenant).
pub mod option {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(d).map(|ms| ms.map(Duration::from_millis))
    }
}
