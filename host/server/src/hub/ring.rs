//! The history ring: the last frames of a tenant, for `Last-Event-ID` resume.

use std::collections::VecDeque;
use std::sync::Arc;

use super::frame::Frame;
use crate::bus::LogPosition;

pub(super) struct Ring {
    frames: VecDeque<Arc<Frame>>,
    capacity: usize,
}

impl Ring {
    pub(super) fn new(capacity: usize) -> Self {
        Ring { frames: VecDeque::with_capacity(capacity.min(4096)), capacity }
    }

    pub(super) fn push(&mut self, frame: Arc<Frame>) {
        self.frames.push_back(frame);
        if self.frames.len() > self.capacity {
            self.frames.pop_front();
        }
    }

    /// Frames after `after`, oldest first (shared, not copied).
    pub(super) fn after(&self, after: LogPosition) -> Vec<Arc<Frame>> {
        self.frames.iter().filter(|f| f.position > after).cloned().collect()
    }

    /// Whether frames after `after` fell out of the ring (the resume point is older
    /// than its oldest frame while newer frames exist).
    pub(super) fn missed_since(&self, after: LogPosition, last: Option<LogPosition>) -> bool {
        self.frames.front().is_some_and(|f| f.position > after) && last.is_some_and(|p| p > after)
    }
}
