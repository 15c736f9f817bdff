//! The report as text for people (`Display`) and as JSON for CI ([`Report::to_json`]).

use std::fmt;

use serde_json::{Value, json};

use crate::generate::{BASE_TIME, Generator, Log};
use crate::report::{CheckReport, Outcome, Report};
use streamgate_runtime::stage::mib;

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.plugin {
            Some(p) => writeln!(
                f,
                "conformance of {}@{} (streamgate:policy@{}; {}: {}; state version {})",
                p.name,
                p.version,
                p.world,
                if p.world == "0.1.0" { "claims" } else { "describe lists" },
                if p.capabilities.is_empty() { "nothing".into() } else { p.capabilities.join(", ") },
                p.state_version
            )?,
            None => writeln!(f, "conformance of a component that did not load")?,
        }
        let config = if self.config.trim().is_empty() { "(default)" } else { &self.config };
        writeln!(f, "config: {config}   seed: {}   cases per property: {}", self.seed, self.cases)?;
        writeln!(f)?;
        for c in &self.checks {
            write_check(f, c)?;
        }
        let count = |o: Outcome| self.checks.iter().filter(|c| c.outcome == o).count();
        writeln!(f)?;
        write!(
            f,
            "{}: {} passed, {} warned, {} failed, {} skipped in {:.1} s",
            if self.passed() { "PASSED" } else { "FAILED" },
            count(Outcome::Pass),
            count(Outcome::Warn),
            count(Outcome::Fail),
            count(Outcome::Skip),
            self.elapsed.as_secs_f64()
        )?;
        if !self.passed() {
            write!(f, "\nreproduce with --seed {}", self.seed)?;
        }
        Ok(())
    }
}

fn write_check(f: &mut fmt::Formatter<'_>, c: &CheckReport) -> fmt::Result {
    let label = match c.outcome {
        Outcome::Pass => "pass",
        Outcome::Warn => "WARN",
        Outcome::Fail => "FAIL",
        Outcome::Skip => "skip",
    };
    let memory = if c.memory_high_water == 0 { "-".to_string() } else { mib(c.memory_high_water) };
    writeln!(
        f,
        "{label}  {:<24} {:>8.1} ms  {:>9}  {}",
        c.id,
        c.elapsed.as_secs_f64() * 1e3,
        memory,
        c.reason
    )?;
    if c.cases > 0 {
        writeln!(f, "      ({} case{}, seed {})", c.cases, if c.cases == 1 { "" } else { "s" }, c.seed)?;
    }
    if !c.note.is_empty() && c.outcome != Outcome::Pass {
        writeln!(f, "      ({})", c.note)?;
    }
    if let Some(input) = &c.input {
        writeln!(f, "      smallest failing input:")?;
        for line in input.lines() {
            writeln!(f, "        {line}")?;
        }
    }
    Ok(())
}

/// A log as lines of pushes, with key and tag names where the generator knows them, log
/// times relative to the generator's usual base (`T+100ms`) or, for a log far from it, to
/// its first push's (`T` printed) and event times relative to their push (`now-250`).
pub fn log_text(log: &Log, generator: &Generator) -> String {
    let name = |h: u64| generator.name_of(h).map_or_else(|| format!("{h:#x}"), |n| format!("{n:?}"));
    let first = log.batches.first().map_or(BASE_TIME, |b| b.now);
    let base = if (0..1 << 40).contains(&first.wrapping_sub(BASE_TIME)) { BASE_TIME } else { first };
    let time = |t: i64| match t.checked_sub(base) {
        Some(d) if (0..1 << 40).contains(&d) => format!("T+{d}ms"),
        _ => t.to_string(),
    };
    let mut out = String::new();
    if base != BASE_TIME {
        out.push_str(&format!("(T = {base})\n"));
    }
    for b in &log.batches {
        out.push_str(&format!("push(now={}, [", time(b.now)));
        for (i, e) in b.events.iter().enumerate() {
            let age = e.event_time.checked_sub(b.now).filter(|d| d.unsigned_abs() < 1 << 40);
            let when = match age {
                Some(0) => "now".to_string(),
                Some(d) if d < 0 => format!("now{d}"),
                Some(d) => format!("now+{d}"),
                None => e.event_time.to_string(),
            };
            let sep = if i == 0 { "\n  " } else { ",\n  " };
            out.push_str(&format!(
                "{sep}seq {} key {} time {when} id {:#x} tag {}",
                e.seq,
                name(e.key),
                e.id,
                if e.tag == 0 { "-".into() } else { name(e.tag) }
            ));
        }
        out.push_str(if b.events.is_empty() { "])\n" } else { "\n])\n" });
    }
    out.push_str(&format!("push(now={}, [])   (the flush)", time(log.flush_time())));
    out
}

pub fn log_json(log: &Log) -> Value {
    let batches: Vec<Value> = log
        .batches
        .iter()
        .map(|b| {
            let events: Vec<Value> = b
                .events
                .iter()
                .map(|e| {
                    json!({"seq": e.seq, "key": e.key, "event_time": e.event_time,
                           "log_time": e.log_time, "id": e.id, "tag": e.tag})
                })
                .collect();
            json!({"now": b.now, "events": events})
        })
        .collect();
    json!({"batches": batches, "flush_now": log.flush_time()})
}

impl Report {
    /// The machine-readable report (`streamgate conformance --json`).
    pub fn to_json(&self) -> String {
        let checks: Vec<Value> = self
            .checks
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "outcome": c.outcome,
                    "reason": c.reason,
                    "note": c.note,
                    "input": c.input,
                    "input_log": c.input_log.as_ref().map(log_json),
                    "elapsed_ms": c.elapsed.as_secs_f64() * 1e3,
                    "memory_high_water_bytes": c.memory_high_water,
                    "cases": c.cases,
                    "seed": c.seed,
                })
            })
            .collect();
        let report = json!({
            "passed": self.passed(),
            "plugin": self.plugin,
            "config": self.config,
            "seed": self.seed,
            "cases": self.cases,
            "elapsed_ms": self.elapsed.as_secs_f64() * 1e3,
            "checks": checks,
        });
        serde_json::to_string_pretty(&report).expect("a JSON value serialises")
    }
}
