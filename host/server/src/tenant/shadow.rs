//! A shadow deploy on this instance: a candidate chain forked from the live one at a log
//! position runs on its own thread, fed every later entry through a bounded queue, and
//! its decisions are compared with the live chain's, entry by entry
//! ([`streamgate_runtime::diff`]). Its output never reaches subscribers.
//!
//! The live worker never waits for it: it hands each entry over with `try_send`, and a
//! candidate that falls [`QUEUE`] entries behind is stopped, counted and reported
//! (`fell_behind`). A candidate fault (trap, exhausted fuel, memory cap, invalid answer,
//! or a call past the wall-clock timeout) stops it too, reported (`candidate_fault`).
//! Only a promotion waits: it takes the candidate once it has decided every entry
//! before the promotion's position (at most [`QUEUE`] entries of work). On Linux the
//! candidate's thread runs at the lowest priority (nice 19), so on busy cores the live
//! path goes first.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::shadow_board::Run;
pub use super::shadow_board::{ShadowBoard, ShadowState, ShadowStatus};
use streamgate_runtime::diff::{Decided, DiffCounts};
use streamgate_runtime::{Chain, ChainObserver, ChainOutput, Event, StageSpec, SwapReport};

use crate::bus::LogPosition;
use crate::metrics::{SHADOW_KINDS, ShadowMetrics, TenantMetrics};

/// Entries the candidate may lag behind the live chain before it is stopped.
pub const QUEUE: usize = 4096;

/// One entry for the candidate: what the live chain got and decided.
struct Item {
    position: LogPosition,
    now: i64,
    events: Vec<Event>,
    live: Decided,
}

/// A running shadow, owned by the live worker.
pub struct Shadow {
    queue: Option<SyncSender<Item>>,
    capacity: usize,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Option<Chain>>>,
    run: Arc<Run>,
    metrics: Arc<TenantMetrics>,
    /// Why it stopped, when only this instance could see it (fell behind, a call past
    /// the wall-clock timeout): the worker publishes it so every instance stops alike.
    local_stop: Arc<Mutex<Option<String>>>,
    pub policies: Vec<StageSpec>,
    /// The log position it was forked at (names it in a published stop).
    pub started_at: LogPosition,
}

impl Shadow {
    /// Starts `candidate` (just forked at `position`) on its own thread, `capacity`
    /// entries ([`QUEUE`]) behind the live chain at most.
    pub fn start(
        candidate: Chain,
        fork: SwapReport,
        position: LogPosition,
        board: Arc<ShadowBoard>,
        metrics: Arc<TenantMetrics>,
        capacity: usize,
    ) -> std::io::Result<Shadow> {
        let policies = candidate.spec().policies.clone();
        let run = board.begin(ShadowStatus {
            state: ShadowState::Running,
            reason: None,
            candidate: policies.clone(),
            labels: candidate.labels(),
            started_at: Some(position.to_string()),
            fork: Some(fork),
            ..Default::default()
        });
        let (tx, rx) = sync_channel(capacity);
        let stop = Arc::new(AtomicBool::new(false));
        let local_stop = Arc::new(Mutex::new(None));
        let runner = Runner {
            run: run.clone(),
            metrics: metrics.clone(),
            stop: stop.clone(),
            local_stop: local_stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("shadow-{}", metrics.tenant))
            .spawn(move || runner.run(candidate, rx))?;
        metrics.shadow.running.store(1, Relaxed);
        Ok(Shadow {
            queue: Some(tx),
            capacity,
            stop,
            thread: Some(thread),
            run,
            metrics,
            local_stop,
            policies,
            started_at: position,
        })
    }

    /// Whether the candidate still runs (it stops itself on a fault).
    pub fn running(&self) -> bool {
        !self.stop.load(Relaxed)
    }

    /// Hands the candidate the entry the live chain just decided; never waits.
    pub fn feed(&mut self, position: LogPosition, now: i64, events: Vec<Event>, live: &ChainOutput) {
        let Some(queue) = &self.queue else { return };
        if !self.running() {
            return;
        }
        let item = Item { position, now, events, live: Decided::of(live) };
        match queue.try_send(item) {
            Ok(()) => {
                self.run.queued.fetch_add(1, Relaxed);
            }
            Err(TrySendError::Full(_)) => {
                let reason = format!(
                    "the candidate fell the whole queue ({} entries) behind the live chain at {position}; \
                     stopped on this instance",
                    self.capacity
                );
                tracing::warn!(tenant = %self.metrics.tenant, %position, "shadow fell behind; stopped");
                self.local_stop.lock().unwrap().get_or_insert_with(|| reason.clone());
                self.end(ShadowState::FellBehind, reason, "fell_behind");
            }
            Err(TrySendError::Disconnected(_)) => self.stop.store(true, Relaxed),
        }
    }

    /// Why it stopped, if only this instance could have seen it.
    pub fn local_stop(&self) -> Option<String> {
        self.local_stop.lock().unwrap().clone()
    }

    /// Stops the candidate (it finishes at most the call it is in, on its thread).
    pub fn stop(mut self, reason: String) {
        self.end(ShadowState::Stopped, reason, "stopped");
    }

    fn end(&mut self, state: ShadowState, reason: String, why: &'static str) {
        if !self.stop.swap(true, Relaxed) {
            self.run.set(state, Some(reason));
            self.metrics.shadow.stopped(why);
        }
        self.queue = None;
    }

    /// The candidate, once it has decided every entry handed over; `None` (and why) if
    /// it stopped.
    pub fn finish(mut self) -> Result<Chain, String> {
        self.queue = None;
        let chain = self.thread.take().and_then(|t| t.join().ok().flatten());
        match chain {
            Some(chain) if self.running() => {
                self.stop.store(true, Relaxed);
                Ok(chain)
            }
            _ => Err(self
                .run
                .status
                .lock()
                .unwrap()
                .reason
                .clone()
                .unwrap_or_else(|| "the candidate stopped".into())),
        }
    }

    /// Marks the shadow promoted at `position`.
    pub fn promoted(board: &ShadowBoard, metrics: &ShadowMetrics, position: LogPosition) {
        board.run().set(ShadowState::Promoted, Some(format!("promoted to the live chain at {position}")));
        metrics.stopped("promoted");
    }
}

impl Drop for Shadow {
    fn drop(&mut self) {
        // The worker stopped (shutdown): the thread ends once the queue is closed.
        self.stop.store(true, Relaxed);
    }
}

/// The candidate's side, on its own thread.
struct Runner {
    run: Arc<Run>,
    metrics: Arc<TenantMetrics>,
    stop: Arc<AtomicBool>,
    local_stop: Arc<Mutex<Option<String>>>,
}

impl Runner {
    /// Decides each entry until the queue closes (the chain is returned, for a
    /// promotion) or it is stopped or faults (`None`).
    fn run(self, mut chain: Chain, queue: Receiver<Item>) -> Option<Chain> {
        yield_to_live(&self.metrics.tenant);
        let observer =
            CandidateObserver { tenant: format!("{} (shadow)", self.metrics.tenant), ..Default::default() };
        chain.record_drops(true);
        while let Ok(item) = queue.recv() {
            self.run.queued.fetch_sub(1, Relaxed);
            if self.stop.load(Relaxed) {
                return None;
            }
            let started = std::time::Instant::now();
            let out = chain.push(item.now, item.events, &observer);
            self.run.busy_us.fetch_add(started.elapsed().as_micros() as u64, Relaxed);
            // A trap, fuel or memory fault happens at this entry on every instance; a
            // call past the wall-clock timeout only here (published by the worker).
            let fault = observer
                .fault
                .lock()
                .unwrap()
                .take()
                .map(|plugin| (format!("stage {plugin} faulted"), false));
            let fault = fault.or_else(|| {
                out.overran
                    .first()
                    .map(|o| (format!("a call of {} ran past the call timeout", o.plugin), true))
            });
            if let Some((fault, only_here)) = fault {
                let reason = format!(
                    "{fault} at {}; the candidate is stopped (the live chain is untouched)",
                    item.position
                );
                if only_here {
                    self.local_stop.lock().unwrap().get_or_insert_with(|| reason.clone());
                }
                tracing::error!(tenant = %self.metrics.tenant, position = %item.position, reason, "shadow stopped");
                if !self.stop.swap(true, Relaxed) {
                    self.run.set(ShadowState::Faulted, Some(reason));
                    self.metrics.shadow.stopped("candidate_fault");
                }
                return None;
            }
            let position = item.position.to_string();
            let mut diff = self.run.diff.lock().unwrap();
            let before = diff.counts().clone();
            diff.compare(&position, item.now, &item.live, &Decided::of(&out));
            add(&self.metrics.shadow, &before, diff.counts());
            drop(diff);
            self.run.status.lock().unwrap().position = Some(position);
        }
        (!self.stop.load(Relaxed)).then_some(chain)
    }
}

/// Lets everything else of the instance go first when the cores are busy: on Linux the
/// candidate's thread (only it) takes the lowest priority, nice 19, so a slow candidate
/// costs idle CPU rather than the live worker's, the log reader's or the hub's.
fn yield_to_live(tenant: &str) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: both calls take and return plain integers and touch no memory.
        let done = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19) };
        if done != 0 {
            tracing::debug!(tenant, error = %std::io::Error::last_os_error(), "the shadow keeps its priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = tenant;
}

/// Adds what one entry added to the diff to the instance's counters.
fn add(m: &ShadowMetrics, before: &DiffCounts, after: &DiffCounts) {
    m.entries.fetch_add(after.entries - before.entries, Relaxed);
    let kinds = |c: &DiffCounts| {
        [
            c.released_only_live,
            c.released_only_candidate,
            c.drop_reasons_differ,
            c.dropped_only_live,
            c.dropped_only_candidate,
            c.reordered_entries,
            c.expired_only_live,
            c.expired_only_candidate,
        ]
    };
    let (b, a) = (kinds(before), kinds(after));
    for i in 0..SHADOW_KINDS.len() {
        m.differences[i].fetch_add(a[i] - b[i], Relaxed);
    }
}

/// Notes the candidate's first fault; its calls and drops are not the tenant's.
#[derive(Default)]
struct CandidateObserver {
    tenant: String,
    fault: Mutex<Option<String>>,
}

impl ChainObserver for CandidateObserver {
    fn tenant(&self) -> &str {
        &self.tenant
    }
    fn call(&self, _plugin: &str) {}
    fn dropped(&self, _plugin: &str, _reason: &'static str, _count: u64) {}
    fn fault(&self, plugin: &str) {
        self.fault.lock().unwrap().get_or_insert_with(|| plugin.to_string());
    }
    fn last_good_revert(&self) {}
}
