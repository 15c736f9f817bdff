//! What the kit found: per check an [`Outcome`], the reason, the smallest failing input,
//! its time and memory high-water; the whole [`Report`] prints as text (`Display`, in
//! [`crate::render`]) or JSON.

use std::time::Duration;

use crate::generate::Log;

/// How a check ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    /// Works, but a tenant could be surprised (e.g. unknown config fields accepted).
    Warn,
    Fail,
    /// Does not apply (e.g. a capability not claimed) or could not run.
    Skip,
}

/// What a check function found.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub outcome: Outcome,
    /// Why it failed, or what passed.
    pub reason: String,
    /// What to do, or where the input came from.
    pub note: String,
    /// The smallest failing input, when there is one.
    pub input: Option<Log>,
    /// How many inputs (generated logs, or fixed cases) the check ran.
    pub cases: usize,
}

impl Verdict {
    pub fn pass(what: impl Into<String>) -> Self {
        Verdict { outcome: Outcome::Pass, reason: what.into(), note: String::new(), input: None, cases: 0 }
    }

    pub fn warn(why: impl Into<String>) -> Self {
        Verdict { outcome: Outcome::Warn, reason: why.into(), note: String::new(), input: None, cases: 0 }
    }

    pub fn fail(why: impl Into<String>, note: String, input: Option<Log>) -> Self {
        Verdict { outcome: Outcome::Fail, reason: why.into(), note, input, cases: 0 }
    }

    /// The number of inputs the check ran.
    pub fn cases(mut self, cases: usize) -> Self {
        self.cases = cases;
        self
    }

    pub fn skip(why: impl Into<String>) -> Self {
        Verdict { outcome: Outcome::Skip, reason: why.into(), note: String::new(), input: None, cases: 0 }
    }
}

/// One check's result.
#[derive(Clone, Debug)]
pub struct CheckReport {
    /// Stable name, e.g. `claim/ordering` (documented in docs/PLUGINS.md).
    pub id: &'static str,
    pub outcome: Outcome,
    pub reason: String,
    pub note: String,
    /// The smallest failing input, readable.
    pub input: Option<String>,
    /// The same input as data (`--json`).
    pub input_log: Option<Log>,
    pub elapsed: Duration,
    /// Largest linear memory of any stage this check created, in bytes.
    pub memory_high_water: usize,
    /// How many inputs (generated logs, or fixed cases) it ran; 0 when it did not run.
    pub cases: usize,
    /// The seed its generated inputs came from (`--seed` reproduces them).
    pub seed: u64,
}

/// Who the plugin said it is.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    /// The `streamgate:policy` version the component exports (`0.1.0` ... `0.4.0`).
    pub world: String,
    /// What `describe` lists: the claims under every config for 0.1.0, every capability
    /// some config can give for 0.2.0 (each config's claims: `capabilities/stable`).
    pub capabilities: Vec<String>,
    pub state_version: u32,
}

/// The whole run.
#[derive(Clone, Debug)]
pub struct Report {
    /// `None` when the component did not load.
    pub plugin: Option<PluginInfo>,
    pub config: String,
    pub seed: u64,
    pub cases: usize,
    pub checks: Vec<CheckReport>,
    pub elapsed: Duration,
}

impl Report {
    /// True unless a check failed (warnings and skips pass).
    pub fn passed(&self) -> bool {
        self.failures().next().is_none()
    }

    pub fn failures(&self) -> impl Iterator<Item = &CheckReport> {
        self.checks.iter().filter(|c| c.outcome == Outcome::Fail)
    }

    pub fn check(&self, id: &str) -> Option<&CheckReport> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// For a plugin author's `cargo test`: panics with the readable report on failure.
    #[track_caller]
    pub fn assert_passed(&self) {
        if !self.passed() {
            panic!("the plugin failed the conformance kit:\n{self}");
        }
    }
}
