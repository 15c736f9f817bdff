//! Drives one plugin stage the way the chain does and judges its raw answers: every
//! released or dropped sequence number must be one the stage holds (given to it, not
//! yet decided), once. Faults (trap, timeout, memory cap) become a [`Failure`] with
//! the reason, never a crash of the kit.

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamgate_plugin_sdk::{DropReason, Event};

use streamgate_runtime::decisions::{self, InvalidAnswer};
use streamgate_runtime::{Fault, Plugin, StageError, StageLimits, WasmStage, wit};

use crate::expect::Expectations;
use crate::generate::{Batch, Generator, Log};

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

/// What the kit knows while it runs one plugin.
pub struct Ctx {
    pub plugin: Arc<Plugin>,
    pub config: String,
    pub limits: StageLimits,
    pub expect: Expectations,
    pub generator: Generator,
    pub seed: u64,
    pub cases: usize,
    memory_high_water: Cell<usize>,
}

impl Ctx {
    /// Reads the plugin's claims from its description and `config`, and sets up the
    /// generator to match them.
    pub fn new(plugin: Arc<Plugin>, config: String, limits: StageLimits, seed: u64, cases: usize) -> Self {
        let expect = Expectations::new(&plugin.description().capabilities, &config);
        let generator = Generator::new(expect.max_age_ms, &expect.tag_names);
        Ctx { plugin, config, limits, expect, generator, seed, cases, memory_high_water: Cell::new(0) }
    }

    /// The largest linear memory of any stage since the last call, then resets.
    pub fn take_memory_high_water(&self) -> usize {
        self.memory_high_water.replace(0)
    }

    fn note_memory(&self, bytes: usize) {
        self.memory_high_water.set(self.memory_high_water.get().max(bytes));
    }
}

/// One push's answer (a frame, for the chain), with the released events' metadata in
/// emission order.
#[derive(Clone, Debug)]
pub struct Answer {
    pub now: i64,
    pub released: Vec<Event>,
    pub dropped: Vec<(u64, DropReason)>,
}

impl Answer {
    pub fn released_seqs(&self) -> Vec<u64> {
        self.released.iter().map(|e| e.seq).collect()
    }
}

/// Every frame of a run (the flush included) and how many events were left held.
pub struct Trace {
    pub frames: Vec<Answer>,
    pub still_held: usize,
}

/// A stage under test, with the bookkeeping of what it holds.
pub struct Probe<'c> {
    ctx: &'c Ctx,
    stage: WasmStage,
    held: BTreeMap<u64, Event>,
    decided: HashSet<u64>,
    pushes: usize,
    /// Wall time of the last `push` call into the plugin (the budgeted part).
    pub last_call: Duration,
}

impl<'c> Probe<'c> {
    /// A fresh stage from the config under test.
    pub fn create(ctx: &'c Ctx) -> Result<Self, Failure> {
        let stage = ctx.plugin.stage(&ctx.config, ctx.limits).map_err(|e| match e {
            StageError::Config(m) => Failure::new(format!("the config under test was refused: {m}")),
            other => describe_fault("creating a stage", other),
        })?;
        Ok(Probe {
            ctx,
            stage,
            held: BTreeMap::new(),
            decided: HashSet::new(),
            pushes: 0,
            last_call: Duration::ZERO,
        })
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Pushes one batch and checks the answer against what the stage holds.
    pub fn push(&mut self, now: i64, events: &[Event]) -> Result<Answer, Failure> {
        self.pushes += 1;
        let what = format!("push {} (now={now}, {} events)", self.pushes, events.len());
        for e in events {
            self.held.insert(e.seq, *e);
        }
        let batch: Vec<wit::Event> = events.iter().map(wit::Event::from).collect();
        let called = Instant::now();
        let answer = self.stage.push(now, &batch);
        self.last_call = called.elapsed();
        let answer = answer.map_err(|e| describe_fault(&what, e))?;
        if self.stage.overran() {
            // In production the instance reports it and every instance faults the stage.
            return Err(Failure {
                message: format!("{what}: ran past the call timeout ({:?} of wall time)", self.last_call),
                costly: true,
            });
        }
        let mut frame =
            Answer { now, released: Vec::with_capacity(answer.released.len()), dropped: Vec::new() };
        decisions::validate(&answer, |seq| self.held.contains_key(&seq)).map_err(|e| {
            let (seq, released) = match e {
                InvalidAnswer::NotHeld { seq, released } | InvalidAnswer::Twice { seq, released } => {
                    (seq, released)
                }
            };
            let verb = if released { "released" } else { "dropped" };
            Failure::new(match e {
                InvalidAnswer::Twice { .. } => {
                    format!("{what}: answered seq {seq} twice in one answer ({verb} again)")
                }
                _ if self.decided.contains(&seq) => {
                    format!("{what}: {verb} seq {seq}, which an earlier answer had already decided")
                }
                _ => format!("{what}: {verb} seq {seq}, which it was never given"),
            })
        })?;
        for &seq in &answer.released {
            frame.released.push(self.held.remove(&seq).expect("validated"));
        }
        for d in &answer.dropped {
            self.held.remove(&d.seq);
        }
        self.decided.extend(answer.released.iter().copied().chain(answer.dropped.iter().map(|d| d.seq)));
        frame.dropped = answer.dropped.iter().map(|d| (d.seq, d.reason.into())).collect();
        Ok(frame)
    }

    pub fn snapshot(&mut self) -> Result<Vec<u8>, Failure> {
        self.stage.snapshot().map_err(|e| describe_fault("snapshot", e))
    }

    /// A fresh stage restored from `state`, taking over what this one holds.
    pub fn restore_into_fresh(&self, state: &[u8]) -> Result<Probe<'c>, Failure> {
        let mut fresh = Probe::create(self.ctx)?;
        let version = self.ctx.plugin.description().state_version;
        fresh.stage.restore(version, state, self.held.len()).map_err(|e| match e {
            StageError::Restore(m) => Failure::new(format!(
                "a fresh stage refused the snapshot ({} bytes, state version {version}) that another wrote: {m}",
                state.len()
            )),
            other => describe_fault("restore", other),
        })?;
        fresh.held = self.held.clone();
        fresh.decided = self.decided.clone();
        fresh.pushes = self.pushes;
        Ok(fresh)
    }

    /// Pushes each batch, then the flush.
    pub fn run(&mut self, batches: &[Batch], flush_time: i64) -> Result<Vec<Answer>, Failure> {
        let mut frames = Vec::with_capacity(batches.len() + 1);
        for b in batches {
            frames.push(self.push(b.now, &b.events)?);
        }
        frames.push(self.push(flush_time, &[])?);
        Ok(frames)
    }
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        self.ctx.note_memory(self.stage.memory_high_water());
    }
}

/// Runs a log through a fresh stage, flush included.
pub fn run_log(ctx: &Ctx, log: &Log) -> Result<Trace, Failure> {
    let mut probe = Probe::create(ctx)?;
    let frames = probe.run(&log.batches, log.flush_time())?;
    Ok(Trace { frames, still_held: probe.held() })
}

/// Says what a fault was, in the sandbox's terms.
fn describe_fault(what: &str, e: StageError) -> Failure {
    match e {
        StageError::Fault(fault @ Fault::OutOfFuel { .. }) => {
            // Reproducing costs a full budget per try: not shrunk.
            Failure { message: format!("{what}: {fault}"), costly: true }
        }
        StageError::Fault(fault) => Failure::new(format!("{what}: {fault}")),
        other => Failure::new(format!("{what}: {other}")),
    }
}
