//! Chain-state checkpoints in Redis, so an instance that starts late begins from the
//! newest trusted checkpoint and the log after it instead of replaying the whole
//! retained log.
//!
//! A [`Checkpoint`] is everything a tenant's policy worker and hub hold between two log
//! entries that a client can notice: the chain in force and its fault state, every
//! stage's snapshot, the events held inside the chain, log time, and the hub's latest
//! values and last frame position. Not the history ring: a `Last-Event-ID` older than
//! the restored instance's first frame is treated like one older than the ring.
//!
//! - [`config`]: the `[checkpoint]` section.
//! - [`codec`]: the versioned binary form and its digest.
//! - [`store`]: the Redis keys and scripts (write once per position, compare after).
//! - [`tap`]: taken by the policy worker at the first entry of each interval of log
//!   time (every instance at the same entries), written or compared off its thread.
//! - [`resume`]: at start, the newest checkpoint that is intact, verified, still in the
//!   log and of components this instance runs; else a full replay.

pub mod codec;
pub mod config;
pub mod resume;
pub mod store;
pub mod tap;

pub use config::CheckpointConfig;
pub use resume::{Resumed, resume};
pub use store::{CheckpointStore, Offer, Retention};
pub use tap::{CheckpointTap, write_checkpoints};

use streamgate_runtime::ChainState;

use crate::bus::LogPosition;
use crate::hub::HubState;

/// A tenant's state right after the entry at `position`.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub tenant: String,
    pub position: LogPosition,
    /// The worker's log time after that entry (it never goes back).
    pub now: i64,
    pub chain: ChainState,
    pub hub: HubState,
}
