//! The history ring: the last frames of a tenant, for `Last-Event-ID` resume.

use std::collections::VecDeque;
use std::sync::Arc;

use super::frame::Frame;
use crate::bus::LogPosition;

pub(super) struct Ring {
    frames: VecDeque<Arc<Frame>>,
    capacity: usize,
    /// Position of the newest frame that fell out.
    evicted: Option<LogPosition>,
}

impl Ring {
    pub(super) fn new(capacity: usize) -> Self {
        Ring { frames: VecDeque::with_capacity(capacity.min(4096)), capacity, evicted: None }
    }

    pub(super) fn push(&mut self, frame: Arc<Frame>) {
        self.frames.push_back(frame);
        if self.frames.len() > self.capacity {
            self.evicted = self.frames.pop_front().map(|f| f.position);
        }
    }

    /// Starts empty as if every frame up to `position` had fallen out (an instance that
    /// started from a checkpoint never had them).
    pub(super) fn start_after(&mut self, position: LogPosition) {
        self.frames.clear();
        self.evicted = Some(position);
    }

    /// Frames after `after`, oldest first (shared, not copied).
    pub(super) fn after(&self, after: LogPosition) -> Vec<Arc<Frame>> {
        self.frames.iter().filter(|f| f.position > after).cloned().collect()
    }

    /// Whether frames after `after` fell out of the ring (so a resume from there cannot
    /// be replayed whole).
    pub(super) fn missed_since(&self, after: LogPosition) -> bool {
        self.evicted.is_some_and(|e| e > after)
    }
}
