//! Why a kit run failed, in words for the report, and how a sandbox fault reads there.

use streamgate_runtime::{Fault, StageError};

/// Why a run failed, in words for the report.
#[derive(Clone, Debug)]
pub struct Failure {
    pub message: String,
    /// The stage used up its fuel or overran the call timeout: reproducing costs a full budget per try,
    /// so such failures are not shrunk.
    pub costly: bool,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Self {
        Failure { message: message.into(), costly: false }
    }
}

/// Says what a fault was, in the sandbox's terms.
pub fn describe_fault(what: &str, e: StageError) -> Failure {
    match e {
        StageError::Fault(fault @ Fault::OutOfFuel { .. }) => {
            // Reproducing costs a full budget per try: not shrunk.
            Failure { message: format!("{what}: {fault}"), costly: true }
        }
        StageError::Fault(fault) => Failure::new(format!("{what}: {fault}")),
        other => Failure::new(format!("{what}: {other}")),
    }
}
