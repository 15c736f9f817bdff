//! Differential mode (`streamgate conformance NEW.wasm --against OLD.wasm`): both
//! plugins run the same generated logs in fresh stages, and every push where they
//! decide differently is reported: events released by one only, the same events in
//! another order, drops with another reason or by one only, and events one still holds
//! after the flush. The evidence an operator reads before swapping one for the other.
//! With [`Differential::recorded`] both also replay logs recorded from a running tenant
//! ([`crate::recorded_diff`]); [`Differential::generated`] can leave the generated ones out.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use streamgate_runtime::{PolicyRuntime, SandboxConfig};

pub use crate::compare::Difference;
use crate::compare::compare;
use crate::generate::{Log, Rng};
use crate::harness::{Ctx, Setup, run_log};
use crate::recorded::RecordedLog;
use crate::recorded_diff::{RecordedComparison, compare_recorded, difference_json, place};
use crate::render::{log_json, log_text};
use crate::suite::DEFAULT_CASES;

/// Differences listed in the text report (the JSON has them all).
const SHOWN: usize = 20;

/// What the comparison found.
pub struct DiffReport {
    pub new: String,
    pub old: String,
    pub config: String,
    pub against_config: String,
    pub seed: u64,
    /// Generated logs run (0 when only recorded ones were).
    pub cases: usize,
    pub differing_logs: usize,
    pub differences: Vec<Difference>,
    /// The smallest log that differs (case, log, as text), for a readable reproduction.
    pub smallest_input: Option<(usize, Log, String)>,
    /// Inputs of every differing log, by case.
    pub inputs: BTreeMap<usize, Log>,
    /// Each recorded log, in the order given.
    pub recorded: Vec<RecordedComparison>,
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
    generated: bool,
    recorded: Vec<(String, &'a RecordedLog)>,
}

impl<'a> Differential<'a> {
    pub fn new(new: &'a [u8], old: &'a [u8]) -> Self {
        Differential {
            new,
            old,
            config: String::new(),
            against_config: None,
            seed: 1,
            cases: DEFAULT_CASES,
            generated: true,
            recorded: Vec::new(),
        }
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

    /// Also replay a recorded log (`name` is what the report calls it, e.g. its file).
    pub fn recorded(mut self, name: impl Into<String>, log: &'a RecordedLog) -> Self {
        self.recorded.push((name.into(), log));
        self
    }

    /// Whether to run generated logs too (default yes); without, only recorded ones.
    pub fn generated(mut self, yes: bool) -> Self {
        self.generated = yes;
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
            cases: if self.generated { self.cases } else { 0 },
            differing_logs: 0,
            differences: Vec::new(),
            smallest_input: None,
            inputs: BTreeMap::new(),
            recorded: Vec::new(),
            elapsed: Duration::ZERO,
        };
        let new_ctx = Ctx::new(new, vec![new_setup], limits, self.seed, self.cases);
        let old_ctx = Ctx::new(old, vec![old_setup], limits, self.seed, self.cases);
        let mut rng = Rng::new(self.seed);
        for case in 1..=report.cases {
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
        for (index, (name, log)) in self.recorded.iter().enumerate() {
            report.recorded.push(compare_recorded(index + 1, name, log, &new_ctx, &old_ctx));
        }
        report.elapsed = started.elapsed();
        Ok(report)
    }
}

impl DiffReport {
    pub fn identical(&self) -> bool {
        self.differences.is_empty() && self.recorded.iter().all(RecordedComparison::identical)
    }

    /// Recorded logs on which the two differ.
    pub fn differing_recorded(&self) -> usize {
        self.recorded.iter().filter(|r| !r.identical()).count()
    }

    pub fn to_json(&self) -> String {
        let differences: Vec<Value> = self.differences.iter().map(difference_json).collect();
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
            "recorded": self.recorded.iter().map(RecordedComparison::to_json).collect::<Vec<_>>(),
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
            "config: {} (old: {})   seed: {}   logs: {}{}",
            shown(&self.config),
            shown(&self.against_config),
            self.seed,
            self.cases,
            if self.recorded.is_empty() {
                String::new()
            } else {
                format!(" + {} recorded", self.recorded.len())
            }
        )?;
        writeln!(f)?;
        for d in self.differences.iter().take(SHOWN) {
            let pushes = self.inputs.get(&d.case).map_or(usize::MAX - 1, |l| l.batches.len());
            writeln!(f, "case {}, {}:", d.case, place(d, pushes))?;
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
        for recorded in &self.recorded {
            writeln!(f, "\n{recorded}")?;
        }
        writeln!(f)?;
        let elapsed = self.elapsed.as_secs_f64();
        let (cases, recorded) = (self.cases, self.recorded.len());
        let logs = if recorded == 0 {
            format!("{cases} logs")
        } else {
            format!("{cases} generated and {recorded} recorded logs")
        };
        match self.identical() {
            true => write!(f, "IDENTICAL: {logs} decided alike in {elapsed:.1} s"),
            false if recorded == 0 => write!(
                f,
                "DIFFERENT: {} of {cases} logs, {} pushes differ in {elapsed:.1} s (reproduce with --seed {})",
                self.differing_logs,
                self.differences.len(),
                self.seed
            ),
            false => write!(
                f,
                "DIFFERENT: {} of {cases} generated logs ({} pushes) and {} of {recorded} recorded logs \
                 differ in {elapsed:.1} s (reproduce with --seed {})",
                self.differing_logs,
                self.differences.len(),
                self.differing_recorded(),
                self.seed
            ),
        }
    }
}
