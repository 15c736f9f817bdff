//! What a shadow deploy shows on this instance (`GET /admin/tenants/{tenant}/shadow`):
//! its state, candidate, start, the diff so far and the candidate's counters, written by
//! the live worker and the candidate's thread ([`super::shadow`]).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use streamgate_runtime::diff::{Diff, DiffReport};
use streamgate_runtime::{StageSpec, SwapReport};

use crate::bus::LogPosition;

/// Where a shadow is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShadowState {
    /// None was started since this instance started.
    #[default]
    None,
    Running,
    /// Stopped through the admin API (a `stop-shadow` entry).
    Stopped,
    /// Became the live chain.
    Promoted,
    /// The candidate faulted; the diff is kept as it was.
    Faulted,
    /// The candidate fell behind the live chain by the whole queue on this instance.
    FellBehind,
}

/// What `GET /admin/tenants/{tenant}/shadow` shows: the last shadow on this instance.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ShadowStatus {
    pub state: ShadowState,
    /// Why it is in that state (a fault, how far behind, who stopped it).
    pub reason: Option<String>,
    pub candidate: Vec<StageSpec>,
    /// `name@version` of the candidate's stages.
    pub labels: Vec<String>,
    /// The log position where it started from the live chain's state.
    pub started_at: Option<String>,
    /// How the live state moved into it (as a swap reports it; `pause` is the fork's).
    pub fork: Option<SwapReport>,
    /// The last entry both chains decided.
    pub position: Option<String>,
    /// Entries handed over and not yet decided by the candidate.
    pub queued: u64,
    /// Wall time the candidate spent deciding entries, ms (its thread's, not the live
    /// worker's).
    pub busy_ms: u64,
    pub diff: Option<DiffReport>,
}

/// The shadow's status, shared between the worker, the candidate's thread and the API:
/// the current run's. Each shadow writes only its own [`Run`], so a replaced candidate
/// finishing its last call never touches its successor's diff.
#[derive(Default)]
pub struct ShadowBoard {
    current: Mutex<Arc<Run>>,
}

/// One shadow's status, diff and counters.
#[derive(Default)]
pub(super) struct Run {
    pub(super) status: Mutex<ShadowStatus>,
    pub(super) diff: Mutex<Diff>,
    pub(super) queued: AtomicU64,
    pub(super) busy_us: AtomicU64,
}

impl Run {
    pub(super) fn set(&self, state: ShadowState, reason: Option<String>) {
        let mut status = self.status.lock().unwrap();
        status.state = state;
        status.reason = reason;
    }
}

impl ShadowBoard {
    pub(super) fn run(&self) -> Arc<Run> {
        self.current.lock().unwrap().clone()
    }

    pub(super) fn begin(&self, status: ShadowStatus) -> Arc<Run> {
        let run = Arc::new(Run { status: Mutex::new(status), ..Default::default() });
        *self.current.lock().unwrap() = run.clone();
        run
    }

    /// The status with the diff's report as of now.
    pub fn status(&self) -> ShadowStatus {
        let run = self.run();
        let mut status = run.status.lock().unwrap().clone();
        status.queued = run.queued.load(Relaxed);
        status.busy_ms = run.busy_us.load(Relaxed) / 1000;
        if status.state != ShadowState::None {
            status.diff = Some(run.diff.lock().unwrap().report());
        }
        status
    }

    /// A shadow ordered at `position` that could not start here.
    pub fn refused(&self, position: LogPosition, reason: String) {
        self.begin(ShadowStatus {
            state: ShadowState::Faulted,
            reason: Some(format!("could not start at {position}: {reason}")),
            started_at: Some(position.to_string()),
            ..Default::default()
        });
    }

    /// Replaces the reason shown (the state stays).
    pub fn note(&self, reason: String) {
        self.run().status.lock().unwrap().reason = Some(reason);
    }
}
