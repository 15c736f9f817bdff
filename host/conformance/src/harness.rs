//! Drives one plugin stage the way the chain does and judges its raw answers: every
//! released or dropped sequence number must be one the stage holds (given to it, not
//! yet decided), once. Faults (trap, fuel, memory cap) become a [`Failure`] with
//! the reason, never a crash of the kit. [`Ctx`] is what the kit knows while it runs
//! one plugin: the configs it runs the claims under ([`Setup`]) and the runs of the
//! generated logs, made once and shared by the checks that judge them.

use std::cell::{Cell, OnceCell};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamgate_plugin_sdk::{DropReason, Event};

use streamgate_runtime::decisions::{self, InvalidAnswer};
use streamgate_runtime::{Plugin, StageError, StageLimits, WasmStage, wit};

pub use crate::failure::{Failure, describe_fault};

use crate::expect::{ClaimSource, Expectations};
use crate::generate::{Batch, Generator, Log, Rng};

/// One config the claims run under, with what it promises and a generator aimed at it.
pub struct Setup {
    pub config: String,
    /// The capabilities claimed under this config, and who said so.
    pub claims: Vec<wit::Capability>,
    pub claims_from: ClaimSource,
    pub expect: Expectations,
    pub generator: Generator,
}

impl Setup {
    /// The claims of `description` (a 0.1.0 plugin's, or a fallback when no stage of
    /// `config` answers) under `config`; [`crate::claims::setup`] asks a 0.2.0 stage.
    pub fn new(description: &wit::Description, config: String) -> Self {
        Self::with_claims(description.capabilities.clone(), ClaimSource::Describe, config)
    }

    pub fn with_claims(claims: Vec<wit::Capability>, claims_from: ClaimSource, config: String) -> Self {
        let expect = Expectations::new(&claims, &config, claims_from);
        let generator = Generator::new(expect.bounds(), &expect.tag_names);
        Setup { config, claims, claims_from, expect, generator }
    }

    /// `the config {…}` or `the default config`, for messages.
    pub fn label(&self) -> String {
        if self.config.trim().is_empty() {
            "the default config".into()
        } else {
            format!("config {}", self.config)
        }
    }
}

/// One generated (or recorded) log, the config it ran under and how that run went.
pub struct CaseRun {
    pub setup: usize,
    pub log: Log,
    pub trace: Result<Trace, Failure>,
    /// The name of a recorded log ([`Ctx::with_recorded`]); `None` when generated.
    pub recorded: Option<String>,
}

/// What the kit knows while it runs one plugin.
pub struct Ctx {
    pub plugin: Arc<Plugin>,
    pub limits: StageLimits,
    /// The config under test first, then the valid variants the claims also run under.
    pub setups: Vec<Setup>,
    pub seed: u64,
    pub cases: usize,
    /// Recorded logs judged after the generated ones, by name, under the config under test.
    recorded: Vec<(String, Log)>,
    runs: OnceCell<Vec<CaseRun>>,
    memory_high_water: Cell<usize>,
}

impl Ctx {
    /// `setups[0]` is the config under test.
    pub fn new(
        plugin: Arc<Plugin>,
        setups: Vec<Setup>,
        limits: StageLimits,
        seed: u64,
        cases: usize,
    ) -> Self {
        assert!(!setups.is_empty(), "at least the config under test");
        Ctx {
            plugin,
            limits,
            setups,
            seed,
            cases,
            recorded: Vec::new(),
            runs: OnceCell::new(),
            memory_high_water: Cell::new(0),
        }
    }

    /// Also judges these (recorded) logs, each once under the config under test.
    pub fn with_recorded(mut self, logs: Vec<(String, Log)>) -> Self {
        self.recorded = logs;
        self
    }

    /// The config under test and what it promises.
    pub fn under_test(&self) -> &Setup {
        &self.setups[0]
    }

    pub fn config(&self) -> &str {
        &self.setups[0].config
    }

    pub fn expect(&self) -> &Expectations {
        &self.setups[0].expect
    }

    /// The `cases` generated logs (from the seed, taking the setups in turn), then the
    /// recorded ones, each run once through a fresh stage and the flush; made on first
    /// use, then shared.
    pub fn runs(&self) -> &[CaseRun] {
        self.runs.get_or_init(|| {
            let mut rng = Rng::new(self.seed);
            let generated = (0..self.cases).map(|case| {
                let setup = case % self.setups.len();
                let log = self.setups[setup].generator.log(&mut rng);
                let trace = run_log(self, &self.setups[setup], &log);
                CaseRun { setup, log, trace, recorded: None }
            });
            let recorded = self.recorded.iter().map(|(name, log)| CaseRun {
                setup: 0,
                log: log.clone(),
                trace: run_log(self, self.under_test(), log),
                recorded: Some(name.clone()),
            });
            generated.chain(recorded).collect()
        })
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
    /// Key hashes the stage declared expired, ascending, each once (as the chain takes
    /// them).
    pub expired: Vec<u64>,
}

impl Answer {
    pub fn released_seqs(&self) -> Vec<u64> {
        self.released.iter().map(|e| e.seq).collect()
    }
}

/// Every frame of a run (the flush included), the events left held after it and the
/// snapshot taken before it.
#[derive(Clone, Debug)]
pub struct Trace {
    pub frames: Vec<Answer>,
    pub still_held: Vec<Event>,
    /// The stage's snapshot before the flush.
    pub snapshot: Vec<u8>,
}

/// A stage under test, with the bookkeeping of what it holds.
pub struct Probe<'c> {
    ctx: &'c Ctx,
    config: &'c str,
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
        Self::with_config(ctx, ctx.config())
    }

    /// A fresh stage from `config`.
    pub fn with_config(ctx: &'c Ctx, config: &'c str) -> Result<Self, Failure> {
        let stage = ctx.plugin.stage(config, ctx.limits).map_err(|e| match e {
            StageError::Config(m) => Failure::new(format!("the config {config:?} was refused: {m}")),
            other => describe_fault("creating a stage", other),
        })?;
        Ok(Probe {
            ctx,
            config,
            stage,
            held: BTreeMap::new(),
            decided: HashSet::new(),
            pushes: 0,
            last_call: Duration::ZERO,
        })
    }

    /// The events the stage holds (given, not yet decided), by sequence number.
    pub fn held(&self) -> &BTreeMap<u64, Event> {
        &self.held
    }

    /// The stage itself, for what the probe does not wrap (fuel, memory).
    pub fn stage(&self) -> &WasmStage {
        &self.stage
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
        let mut frame = Answer {
            now,
            released: Vec::with_capacity(answer.released.len()),
            dropped: Vec::new(),
            expired: Vec::new(),
        };
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
        frame.expired = answer.expired;
        frame.expired.sort_unstable();
        frame.expired.dedup();
        Ok(frame)
    }

    pub fn snapshot(&mut self) -> Result<Vec<u8>, Failure> {
        self.stage.snapshot().map_err(|e| describe_fault("snapshot", e))
    }

    /// Restores `state` (written, the kit says, by `state_version`) into this stage.
    pub fn try_restore(&mut self, state_version: u32, state: &[u8]) -> Result<(), StageError> {
        self.stage.restore(state_version, state, self.held.len())
    }

    /// A fresh stage restored from `state`, taking over what this one holds.
    pub fn restore_into_fresh(&self, state: &[u8]) -> Result<Probe<'c>, Failure> {
        let mut fresh = Probe::with_config(self.ctx, self.config)?;
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

/// Runs a log through a fresh stage of `setup`'s config, flush included.
/// The stage's snapshot is taken before the flush (as a swap at that point would), for
/// the checks that compare snapshots.
pub fn run_log(ctx: &Ctx, setup: &Setup, log: &Log) -> Result<Trace, Failure> {
    let mut probe = Probe::with_config(ctx, &setup.config)?;
    let mut frames = Vec::with_capacity(log.batches.len() + 1);
    for b in &log.batches {
        frames.push(probe.push(b.now, &b.events)?);
    }
    let snapshot = probe.snapshot()?;
    frames.push(probe.push(log.flush_time(), &[])?);
    Ok(Trace { frames, still_held: probe.held.values().copied().collect(), snapshot })
}
