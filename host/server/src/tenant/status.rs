//! What the admin API shows of a tenant's running chain on this instance.

use serde::Serialize;

use crate::bus::LogPosition;
use streamgate_runtime::{Chain, StageSpec, SwapReport};

/// The chain this instance runs for a tenant, and how far its worker has read.
#[derive(Clone, Debug, Serialize)]
pub struct ChainStatus {
    /// Version 0 is the configured chain; the admin API numbers the ones it sets.
    pub version: u64,
    pub policies: Vec<StageSpec>,
    /// `name@version` of each stage.
    pub labels: Vec<String>,
    /// Position of the last log entry the worker finished (a swap included).
    #[serde(serialize_with = "display")]
    pub position: LogPosition,
    pub swaps: u64,
    pub last_swap: Option<SwapStatus>,
    /// The last swap that could not be applied, or a `last-good` revert.
    pub last_error: Option<String>,
}

/// Where and how the chain last changed.
#[derive(Clone, Debug, Serialize)]
pub struct SwapStatus {
    #[serde(serialize_with = "display")]
    pub position: LogPosition,
    /// Log time of the control entry, ms.
    pub log_time: i64,
    pub reason: String,
    #[serde(flatten)]
    pub report: SwapReport,
}

fn display<S: serde::Serializer>(p: &LogPosition, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(p)
}

impl ChainStatus {
    pub fn new(chain: &Chain) -> Self {
        let mut status = Self::empty();
        status.refresh(chain);
        status
    }

    /// A status with no chain yet.
    pub(crate) fn empty() -> Self {
        ChainStatus {
            version: 0,
            policies: Vec::new(),
            labels: Vec::new(),
            position: LogPosition::default(),
            swaps: 0,
            last_swap: None,
            last_error: None,
        }
    }

    /// Takes the chain's current spec and labels (after a swap or a revert).
    pub fn refresh(&mut self, chain: &Chain) {
        self.version = chain.spec().version;
        self.policies = chain.spec().policies.clone();
        self.labels = chain.labels();
    }
}
