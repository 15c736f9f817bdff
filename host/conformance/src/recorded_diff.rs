//! Differential mode on recorded logs (`--log FILE`): both plugins replay what a running
//! tenant's first stage saw (or, with `--before`, what the stages before theirs passed
//! on: [`crate::upstream`]), in fresh stages, and every push where they decide differently
//! is reported with the log position of its entry, the first one leading: where, on
//! real traffic, a swap would change what subscribers get.

use std::fmt;

use serde_json::{Value, json};

use crate::compare::{Difference, compare};
use crate::harness::{Ctx, run_log};
use crate::recorded::RecordedLog;

/// Differences listed per recorded log in the text report (the JSON has them all).
const SHOWN: usize = 10;

/// How the two plugins decided one recorded log.
pub struct RecordedComparison {
    /// What the operator named the log by (its file).
    pub name: String,
    pub tenant: String,
    pub entries: usize,
    pub events: usize,
    /// In push order; the first is where they first differ.
    pub differences: Vec<Difference>,
}

impl RecordedComparison {
    pub fn identical(&self) -> bool {
        self.differences.is_empty()
    }

    /// The first difference, where a swap would first change what subscribers get.
    pub fn first(&self) -> Option<&Difference> {
        self.differences.first()
    }

    pub fn to_json(&self) -> Value {
        let first = self.first().map(|d| json!({"push": d.push, "position": d.position, "now": d.now}));
        json!({
            "log": self.name,
            "tenant": self.tenant,
            "entries": self.entries,
            "events": self.events,
            "identical": self.identical(),
            "first_difference": first,
            "differences": self.differences.iter().map(difference_json).collect::<Vec<_>>(),
        })
    }
}

/// Replays `recorded` (the `index`th recorded log, 1-based) through fresh stages of both.
pub fn compare_recorded(
    index: usize,
    name: &str,
    recorded: &RecordedLog,
    new: &Ctx,
    old: &Ctx,
) -> RecordedComparison {
    // The flush passes every window of either config, so held events come out.
    let flush_after_ms = new.expect().bounds().flush_after_ms().max(old.expect().bounds().flush_after_ms());
    let log = recorded.to_log(flush_after_ms);
    let (a, b) = (run_log(new, new.under_test(), &log), run_log(old, old.under_test(), &log));
    let mut differences = compare(index, &log, a, b);
    for d in &mut differences {
        d.position = recorded.position_of_push(d.push).map(str::to_string);
    }
    RecordedComparison {
        name: name.to_string(),
        tenant: recorded.header.tenant.clone(),
        entries: recorded.entries.len(),
        events: recorded.events(),
        differences,
    }
}

pub fn difference_json(d: &Difference) -> Value {
    json!({"case": d.case, "push": d.push, "position": d.position, "now": d.now, "what": d.what})
}

/// Where a difference is, in words.
pub fn place(d: &Difference, pushes: usize) -> String {
    match (&d.position, d.push) {
        (_, 0) => "the run".to_string(),
        (Some(position), push) => format!("push {push} (entry {position}, now={})", d.now),
        (None, push) if push == pushes + 1 => format!("the flush (now={})", d.now),
        (None, push) => format!("push {push} (now={})", d.now),
    }
}

impl fmt::Display for RecordedComparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "recorded log {} (tenant {}, {} entries, {} events): ",
            self.name, self.tenant, self.entries, self.events
        )?;
        let Some(first) = self.first() else {
            return writeln!(f, "identical");
        };
        writeln!(f, "{} pushes differ, first at {}", self.differences.len(), place(first, self.entries))?;
        for d in self.differences.iter().take(SHOWN) {
            writeln!(f, "  {}:", place(d, self.entries))?;
            for w in &d.what {
                writeln!(f, "    {w}")?;
            }
        }
        if self.differences.len() > SHOWN {
            writeln!(f, "  ... and {} more (--json lists them all)", self.differences.len() - SHOWN)?;
        }
        Ok(())
    }
}
