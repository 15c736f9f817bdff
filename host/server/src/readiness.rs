//! Whether a tenant can be served by this instance right now: its log reader connected
//! and caught up, and its source reaching its broker. The reader and the source set
//! and reset it as they connect and fail; `/readyz` reads it, with the reasons.

use std::sync::Mutex;

use tokio::sync::watch;

/// One part's current state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Not connected yet since the start.
    Starting,
    Up,
    /// Lost, with what failed (retrying meanwhile).
    Down(String),
}

impl Status {
    fn describe(&self) -> Option<String> {
        match self {
            Status::Up => None,
            Status::Starting => Some("starting".into()),
            Status::Down(reason) => Some(reason.clone()),
        }
    }
}

/// A Kafka partition whose committed offset stays behind its high watermark without
/// moving: nobody consumes it (or its consumer cannot publish).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StalledPartition {
    pub partition: i32,
    pub committed: i64,
    pub high_watermark: i64,
    pub stalled_secs: u64,
    /// Whether this instance holds it in its own assignment.
    pub assigned_here: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct State {
    log: Status,
    source: Status,
    stalled: Vec<StalledPartition>,
    /// Times the log was found to have lost entries already read, and the last one.
    gaps: u64,
    last_gap: Option<String>,
}

/// A tenant's readiness, shared by the tasks that know and the handlers that ask.
pub struct Readiness {
    state: watch::Sender<State>,
    /// Serialises writers, so a state is never lost between read and send.
    write: Mutex<()>,
}

impl Default for Readiness {
    fn default() -> Self {
        let state = State {
            log: Status::Starting,
            source: Status::Starting,
            stalled: Vec::new(),
            gaps: 0,
            last_gap: None,
        };
        Readiness { state: watch::Sender::new(state), write: Mutex::new(()) }
    }
}

impl Readiness {
    /// A tenant whose source needs no connection (simulators, tests): only the log counts.
    pub fn without_source() -> Self {
        let r = Readiness::default();
        r.source_up();
        r
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        let _guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        self.state.send_if_modified(|s| {
            let before = s.clone();
            f(s);
            *s != before
        });
    }

    /// The log reader is connected and has read everything the log held.
    pub fn log_up(&self) {
        self.update(|s| s.log = Status::Up);
    }

    /// The log reader lost its connection (it retries).
    pub fn log_down(&self, reason: impl std::fmt::Display) {
        let reason = reason.to_string();
        self.update(|s| s.log = Status::Down(reason));
    }

    pub fn source_up(&self) {
        self.update(|s| s.source = Status::Up);
    }

    pub fn source_down(&self, reason: impl std::fmt::Display) {
        let reason = reason.to_string();
        self.update(|s| s.source = Status::Down(reason));
    }

    /// The partitions the source sees stalled now (replaces the previous list).
    pub fn set_stalled(&self, stalled: Vec<StalledPartition>) {
        self.update(|s| s.stalled = stalled);
    }

    /// The log lost entries this reader had already read (reported by `/readyz` and
    /// counted, but not a reason to leave the pool: every instance reads the same log).
    pub fn log_gap(&self, detail: impl std::fmt::Display) {
        let detail = detail.to_string();
        self.update(|s| {
            s.gaps += 1;
            s.last_gap = Some(detail);
        });
    }

    /// How many log gaps were seen, and the last one's description.
    pub fn log_gaps(&self) -> (u64, Option<String>) {
        let s = self.state.borrow();
        (s.gaps, s.last_gap.clone())
    }

    pub fn stalled(&self) -> Vec<StalledPartition> {
        self.state.borrow().stalled.clone()
    }

    /// Why the tenant is not ready; empty when it is.
    pub fn reasons(&self) -> Vec<String> {
        let s = self.state.borrow();
        let log = s.log.describe().map(|r| format!("log: {r}"));
        let source = s.source.describe().map(|r| format!("source: {r}"));
        log.into_iter().chain(source).collect()
    }

    pub fn is_ready(&self) -> bool {
        let s = self.state.borrow();
        s.log == Status::Up && s.source == Status::Up
    }

    /// Waits until the log reader is up (e.g. after a start or a reconnect).
    pub async fn log_ready(&self) {
        let mut rx = self.state.subscribe();
        let _ = rx.wait_for(|s| s.log == Status::Up).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_the_latest_state_of_each_part() {
        let r = Readiness::default();
        assert_eq!(r.reasons(), vec!["log: starting", "source: starting"]);
        r.log_up();
        r.source_up();
        assert!(r.is_ready());
        r.log_down("redis unreachable: connection refused");
        assert!(!r.is_ready());
        assert_eq!(r.reasons(), vec!["log: redis unreachable: connection refused"]);
        r.log_up();
        assert!(r.is_ready(), "a reconnect makes it ready again");
        r.set_stalled(vec![StalledPartition {
            partition: 2,
            committed: 10,
            high_watermark: 90,
            stalled_secs: 31,
            assigned_here: false,
        }]);
        assert!(r.is_ready(), "a stalled partition is reported, not a reason to leave the pool");
        assert_eq!(r.stalled().len(), 1);
        r.log_gap("last entry read 5-0, newest entry now 3-0");
        assert!(r.is_ready(), "a gap is reported, not a reason to leave the pool");
        assert_eq!(r.log_gaps(), (1, Some("last entry read 5-0, newest entry now 3-0".into())));
    }
}
