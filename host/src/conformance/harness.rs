//! Drives one plugin stage the way the chain does and judges its raw answers: every
//! released or dropped sequence number must be one the stage holds (given to it, not
//! yet decided), once. Faults (trap, timeout, memory cap) become a [`Failure`] with
//! the reason, never a crash of the kit.

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamgate_plugin_sdk::{DropReason, Event};

use super::generate::{Batch, Generator, Log};
use super::properties::Claims;
use crate::policy::bindings::wit;
use crate::policy::{Plugin, StageError, StageLimits, WasmStage};

/// Why a run failed, in words for the report.
#[derive(Clone, Debug)]
pub struct Failure {
    pub message: String,
    /// The stage ran past its call budget: reproducing costs a full budget per try,
    /// so such failures are not shrunk.
    pub timed_out: bool,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Self {
        Failure { message: message.into(), timed_out: false }
    }
}

/// What the kit knows while it runs one plugin.
pub struct Ctx {
    pub plugin: Arc<Plugin>,
    pub config: String,
    pub limits: StageLimits,
    pub call_timeout_ms: u64,
    pub claims: Claims,
    pub generator: Generator,
    pub seed: u64,
    pub cases: usize,
    memory_high_water: Cell<usize>,
}

impl Ctx {
    /// Reads the plugin's claims from its description and `config`, and sets up the
    /// generator to match them.
    pub fn new(
        plugin: Arc<Plugin>,
        config: String,
        limits: StageLimits,
        call_timeout_ms: u64,
        seed: u64,
        cases: usize,
    ) -> Self {
        let claims = Claims::new(&plugin.description().capabilities, &config);
        let generator = Generator::new(claims.max_age_ms, &claims.tag_names);
        Ctx {
            plugin,
            config,
            limits,
            call_timeout_ms,
            claims,
            generator,
            seed,
            cases,
            memory_high_water: Cell::new(0),
        }
    }

    /// The largest linear memory of any stage since the last call, then resets.
    pub fn take_memory_high_water(&self) -> usize {
        self.memory_high_water.replace(0)
    }

    fn note_memory(&self, bytes: usize) {
        self.memory_high_water.set(self.memory_high_water.get().max(bytes));
    }
}

/// One push's answer, with the released events' metadata in emission order.
#[derive(Clone, Debug)]
pub struct Frame {
    pub now: i64,
    pub released: Vec<Event>,
    pub dropped: Vec<(u64, DropReason)>,
}

impl Frame {
    pub fn released_seqs(&self) -> Vec<u64> {
        self.released.iter().map(|e| e.seq).collect()
    }
}

/// Every frame of a run (the flush included) and how many events were left held.
pub struct Trace {
    pub frames: Vec<Frame>,
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
            other => describe_fault(ctx, None, "creating a stage", other),
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
    pub fn push(&mut self, now: i64, events: &[Event]) -> Result<Frame, Failure> {
        self.pushes += 1;
        let what = format!("push {} (now={now}, {} events)", self.pushes, events.len());
        for e in events {
            self.held.insert(e.seq, *e);
        }
        let batch: Vec<wit::Event> = events.iter().map(to_wit).collect();
        let called = Instant::now();
        let answer = self.stage.push(now, &batch);
        self.last_call = called.elapsed();
        let answer = answer.map_err(|e| describe_fault(self.ctx, Some(&self.stage), &what, e))?;
        let mut frame =
            Frame { now, released: Vec::with_capacity(answer.released.len()), dropped: Vec::new() };
        let mut answered = HashSet::with_capacity(answer.released.len() + answer.dropped.len());
        let decided = answer
            .released
            .iter()
            .map(|&s| (s, "released"))
            .chain(answer.dropped.iter().map(|d| (d.seq, "dropped")));
        for (seq, verb) in decided {
            if !answered.insert(seq) {
                return Err(Failure::new(format!(
                    "{what}: answered seq {seq} twice in one answer ({verb} again)"
                )));
            }
            match self.held.remove(&seq) {
                Some(e) if verb == "released" => frame.released.push(e),
                Some(_) => {}
                None if self.decided.contains(&seq) => {
                    return Err(Failure::new(format!(
                        "{what}: {verb} seq {seq}, which an earlier answer had already decided"
                    )));
                }
                None => {
                    return Err(Failure::new(format!("{what}: {verb} seq {seq}, which it was never given")));
                }
            }
            self.decided.insert(seq);
        }
        frame.dropped = answer.dropped.iter().map(|d| (d.seq, drop_reason(d.reason))).collect();
        Ok(frame)
    }

    pub fn snapshot(&mut self) -> Result<Vec<u8>, Failure> {
        self.stage.snapshot().map_err(|e| describe_fault(self.ctx, Some(&self.stage), "snapshot", e))
    }

    /// A fresh stage restored from `state`, taking over what this one holds.
    pub fn restore_into_fresh(&self, state: &[u8]) -> Result<Probe<'c>, Failure> {
        let mut fresh = Probe::create(self.ctx)?;
        let version = self.ctx.plugin.description().state_version;
        fresh.stage.restore(version, state).map_err(|e| match e {
            StageError::Restore(m) => Failure::new(format!(
                "a fresh stage refused the snapshot ({} bytes, state version {version}) that another wrote: {m}",
                state.len()
            )),
            other => describe_fault(self.ctx, Some(&fresh.stage), "restore", other),
        })?;
        fresh.held = self.held.clone();
        fresh.decided = self.decided.clone();
        fresh.pushes = self.pushes;
        Ok(fresh)
    }

    /// Pushes each batch, then the flush.
    pub fn run(&mut self, batches: &[Batch], flush_time: i64) -> Result<Vec<Frame>, Failure> {
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
fn describe_fault(ctx: &Ctx, stage: Option<&WasmStage>, what: &str, e: StageError) -> Failure {
    let detail = match &e {
        StageError::Fault(m) => m.clone(),
        other => other.to_string(),
    };
    if let Some(bytes) = stage.and_then(WasmStage::refused_memory_growth) {
        return Failure::new(format!(
            "{what}: hit the sandbox memory cap: growing linear memory to {} was refused (cap {}), \
             and then it faulted: {detail}",
            mib(bytes),
            mib(ctx.limits.max_memory_bytes)
        ));
    }
    // wasmtime reports an epoch deadline as the `interrupt` trap.
    if detail.contains("interrupt") {
        return Failure {
            message: format!(
                "{what}: ran past the call budget of {} ms and was interrupted",
                ctx.call_timeout_ms
            ),
            timed_out: true,
        };
    }
    // The wasm backtrace names no functions in a stripped plugin: keep the cause.
    let cause = detail.rsplit_once(": wasm trap: ").map_or(detail.as_str(), |(_, cause)| cause);
    let hint = if cause.contains("unreachable") { " (how a Rust panic or abort ends in Wasm)" } else { "" };
    Failure::new(format!("{what}: trapped: {}{hint}", cause.trim()))
}

pub fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

fn to_wit(e: &Event) -> wit::Event {
    wit::Event {
        seq: e.seq,
        key: e.key,
        event_time: e.event_time,
        log_time: e.log_time,
        id: e.id,
        tag: e.tag,
    }
}

fn drop_reason(r: wit::DropReason) -> DropReason {
    match r {
        wit::DropReason::Stale => DropReason::Stale,
        wit::DropReason::Duplicate => DropReason::Duplicate,
        wit::DropReason::OutOfDate => DropReason::OutOfDate,
        wit::DropReason::Superseded => DropReason::Superseded,
        wit::DropReason::Filtered => DropReason::Filtered,
        wit::DropReason::Overflow => DropReason::Overflow,
    }
}
