//! Differential mode (`streamgate conformance NEW.wasm --against OLD.wasm`): both
//! plugins run the same generated logs in fresh stages, and every push where they
//! decide differently is reported: events released by one only, the same events in
//! another order, drops with another reason or by one only, and events one still holds
//! after the flush. The evidence an operator reads before swapping one for the other.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use streamgate_plugin_sdk::DropReason;
use streamgate_runtime::{PolicyRuntime, SandboxConfig};

use crate::generate::{Log, Rng};
use crate::harness::{Answer, Ctx, Failure, Setup, Trace, run_log};
use crate::render::{log_json, log_text};
use crate::suite::DEFAULT_CASES;

/// Differences listed in the text report (the JSON has them all).
const SHOWN: usize = 20;

/// One push (or the end of a run) where the two plugins decided differently.
#[derive(Clone, Debug)]
pub struct Difference {
    /// 1-based index of the generated log.
    pub case: usize,
    /// 1-based push; the flush is the last; 0 for the run as a whole.
    pub push: usize,
    pub now: i64,
    pub what: Vec<String>,
}

/// What the comparison found.
pub struct DiffReport {
    pub new: String,
    pub old: String,
    pub config: String,
    pub against_config: String,
    pub seed: u64,
    pub cases: usize,
    pub differing_logs: usize,
    pub differences: Vec<Difference>,
    /// The smallest log that differs (case, log, as text), for a readable reproduction.
    pub smallest_input: Option<(usize, Log, String)>,
    /// Inputs of every differing log, by case.
    pub inputs: BTreeMap<usize, Log>,
    pub elapsed: Duration,
}

/// A configured comparison of two components.
pub struct Differential<'a> {
    new: &'a [u8],
    old: &'a [u8],
    config: String,
    against_config: Option<String>,
    seed: u64,
    cases: usize,
}

impl<'a> Differential<'a> {
    pub fn new(new: &'a [u8], old: &'a [u8]) -> Self {
        Differential { new, old, config: String::new(), against_config: None, seed: 1, cases: DEFAULT_CASES }
    }

    /// The config of both (and of the generator, aimed at its bounds).
    pub fn config(mut self, json: impl Into<String>) -> Self {
        self.config = json.into();
        self
    }

    /// Another config for the old plugin.
    pub fn against_config(mut self, json: impl Into<String>) -> Self {
        self.against_config = Some(json.into());
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub fn cases(mut self, cases: usize) -> Self {
        self.cases = cases.max(1);
        self
    }

    /// Runs both on the same logs. An error when either does not load or refuses its config.
    pub fn run(self) -> Result<DiffReport, String> {
        let started = Instant::now();
        let runtime = PolicyRuntime::new(&SandboxConfig::default());
        let limits = runtime.limits(None);
        let load =
            |bytes: &[u8], which: &str| runtime.load(bytes).map_err(|e| format!("the {which} plugin: {e}"));
        let (new, old) = (load(self.new, "new")?, load(self.old, "old")?);
        let against_config = self.against_config.clone().unwrap_or_else(|| self.config.clone());
        for (plugin, config, which) in [(&new, &self.config, "new"), (&old, &against_config, "old")] {
            plugin.stage(config, limits).map_err(|e| format!("the {which} plugin {e}"))?;
        }
        let new_setup = Setup::new(new.description(), self.config.clone());
        let old_setup = Setup::new(old.description(), against_config.clone());
        let mut report = DiffReport {
            new: new.label(),
            old: old.label(),
            config: self.config.clone(),
            against_config,
            seed: self.seed,
            cases: self.cases,
            differing_logs: 0,
            differences: Vec::new(),
            smallest_input: None,
            inputs: BTreeMap::new(),
            elapsed: Duration::ZERO,
        };
        let new_ctx = Ctx::new(new, vec![new_setup], limits, self.seed, self.cases);
        let old_ctx = Ctx::new(old, vec![old_setup], limits, self.seed, self.cases);
        let mut rng = Rng::new(self.seed);
        for case in 1..=self.cases {
            let log = new_ctx.under_test().generator.log(&mut rng);
            let a = run_log(&new_ctx, new_ctx.under_test(), &log);
            let b = run_log(&old_ctx, old_ctx.under_test(), &log);
            let found = compare(case, &log, a, b);
            if !found.is_empty() {
                report.differing_logs += 1;
                if report.smallest_input.as_ref().is_none_or(|(_, small, _)| log.events() < small.events()) {
                    let text = log_text(&log, &new_ctx.under_test().generator);
                    report.smallest_input = Some((case, log.clone(), text));
                }
                report.inputs.insert(case, log);
                report.differences.extend(found);
            }
        }
        report.elapsed = started.elapsed();
        Ok(report)
    }
}

/// Every difference of one log's two runs.
fn compare(
    case: usize,
    log: &Log,
    new: Result<Trace, Failure>,
    old: Result<Trace, Failure>,
) -> Vec<Difference> {
    let whole = |what: Vec<String>| vec![Difference { case, push: 0, now: log.flush_time(), what }];
    let (new, old) = match (new, old) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => {
            let said = |r: &Result<Trace, Failure>| match r {
                Ok(_) => "ran".to_string(),
                Err(f) => format!("failed: {}", f.message),
            };
            let (a, b) = (said(&a), said(&b));
            return if a == b { Vec::new() } else { whole(vec![format!("new {a}; old {b}")]) };
        }
    };
    let mut out: Vec<Difference> = new
        .frames
        .iter()
        .zip(&old.frames)
        .enumerate()
        .filter_map(|(i, (a, b))| {
            let what = frame_differences(a, b);
            (!what.is_empty()).then_some(Difference { case, push: i + 1, now: a.now, what })
        })
        .collect();
    let held = |t: &Trace| t.still_held.iter().map(|e| e.seq).collect::<Vec<_>>();
    if held(&new) != held(&old) {
        out.extend(whole(vec![format!(
            "still held after the flush: {:?} by new, {:?} by old",
            held(&new),
            held(&old)
        )]));
    }
    out
}

fn frame_differences(new: &Answer, old: &Answer) -> Vec<String> {
    let mut what = Vec::new();
    let (a, b) = (new.released_seqs(), old.released_seqs());
    if a != b {
        let only = |x: &[u64], y: &[u64]| x.iter().filter(|s| !y.contains(s)).copied().collect::<Vec<_>>();
        let (only_new, only_old) = (only(&a, &b), only(&b, &a));
        if only_new.is_empty() && only_old.is_empty() {
            what.push(format!("released the same events in another order: {a:?} by new, {b:?} by old"));
        } else {
            what.push(format!("released {only_new:?} by new only, {only_old:?} by old only"));
        }
    }
    let reasons = |f: &Answer| f.dropped.iter().copied().collect::<BTreeMap<u64, DropReason>>();
    let (ra, rb) = (reasons(new), reasons(old));
    for (seq, reason) in &ra {
        match rb.get(seq) {
            Some(other) if other != reason => what.push(format!(
                "dropped {seq} as `{}` by new, as `{}` by old",
                reason.as_str(),
                other.as_str()
            )),
            None => what.push(format!("dropped {seq} as `{}` by new only", reason.as_str())),
            _ => {}
        }
    }
    for (seq, reason) in rb.iter().filter(|(seq, _)| !ra.contains_key(seq)) {
        what.push(format!("dropped {seq} as `{}` by old only", reason.as_str()));
    }
    what
}

impl DiffReport {
    pub fn identical(&self) -> bool {
        self.differences.is_empty()
    }

    pub fn to_json(&self) -> String {
        let differences: Vec<Value> = self
            .differences
            .iter()
            .map(|d| json!({"case": d.case, "push": d.push, "now": d.now, "what": d.what}))
            .collect();
        let inputs: BTreeMap<String, Value> =
            self.inputs.iter().map(|(c, l)| (c.to_string(), log_json(l))).collect();
        let report = json!({
            "identical": self.identical(),
            "new": self.new,
            "old": self.old,
            "config": self.config,
            "against_config": self.against_config,
            "seed": self.seed,
            "cases": self.cases,
            "differing_logs": self.differing_logs,
            "differences": differences,
            "inputs": inputs,
            "elapsed_ms": self.elapsed.as_secs_f64() * 1e3,
        });
        serde_json::to_string_pretty(&report).expect("a JSON value serialises")
    }
}

impl fmt::Display for DiffReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |c: &str| if c.trim().is_empty() { "(default)".to_string() } else { c.to_string() };
        writeln!(f, "differential: new {} against old {}", self.new, self.old)?;
        writeln!(
            f,
            "config: {} (old: {})   seed: {}   logs: {}",
            shown(&self.config),
            shown(&self.against_config),
            self.seed,
            self.cases
        )?;
        writeln!(f)?;
        for d in self.differences.iter().take(SHOWN) {
            let at =
                if d.push == 0 { "the run".to_string() } else { format!("push {} (now={})", d.push, d.now) };
            writeln!(f, "case {}, {at}:", d.case)?;
            for w in &d.what {
                writeln!(f, "  {w}")?;
            }
        }
        if self.differences.len() > SHOWN {
            writeln!(
                f,
                "... and {} more differences (--json lists them all)",
                self.differences.len() - SHOWN
            )?;
        }
        if let Some((case, _, text)) = &self.smallest_input {
            writeln!(f, "\nthe smallest differing log (case {case}):")?;
            for line in text.lines() {
                writeln!(f, "  {line}")?;
            }
        }
        writeln!(f)?;
        match self.identical() {
            true => write!(
                f,
                "IDENTICAL: {} logs decided alike in {:.1} s",
                self.cases,
                self.elapsed.as_secs_f64()
            ),
            false => write!(
                f,
                "DIFFERENT: {} of {} logs, {} pushes differ in {:.1} s (reproduce with --seed {})",
                self.differing_logs,
                self.cases,
                self.differences.len(),
                self.elapsed.as_secs_f64(),
                self.seed
            ),
        }
    }
}
