//! The plugin conformance kit: runs a policy component through generic checks and the
//! properties of the capabilities it claims, and reports each check with its reason,
//! the smallest failing input, its time and its memory high-water.
//!
//! ```no_run
//! let bytes = std::fs::read("my_plugin.wasm").unwrap();
//! let report = streamgate::conformance::Suite::new(&bytes).config(r#"{"max_age_ms":5000}"#).seed(7).run();
//! report.assert_passed(); // panics with the readable report
//! ```
//!
//! Layout: [`generate`] (seeded inputs), [`harness`] (stages and answer validation),
//! [`cases`] (property runs and shrinking), [`checks`] (generic checks), [`properties`]
//! (capability claims), [`render`] (text and JSON).

pub mod cases;
pub mod checks;
pub mod generate;
pub mod harness;
pub mod properties;
pub mod render;

use std::time::{Duration, Instant};

use streamgate_plugin_sdk::Capability;

use crate::config::SandboxConfig;
use crate::policy::PolicyRuntime;
use generate::Log;
use harness::Ctx;

/// Generated logs per property check unless [`Suite::cases`] says otherwise.
pub const DEFAULT_CASES: usize = 64;

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
}

impl Verdict {
    pub fn pass(what: impl Into<String>) -> Self {
        Verdict { outcome: Outcome::Pass, reason: what.into(), note: String::new(), input: None }
    }

    pub fn warn(why: impl Into<String>) -> Self {
        Verdict { outcome: Outcome::Warn, reason: why.into(), note: String::new(), input: None }
    }

    pub fn fail(why: impl Into<String>, note: String, input: Option<Log>) -> Self {
        Verdict { outcome: Outcome::Fail, reason: why.into(), note, input }
    }

    pub fn skip(why: impl Into<String>) -> Self {
        Verdict { outcome: Outcome::Skip, reason: why.into(), note: String::new(), input: None }
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
}

/// Who the plugin said it is.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
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

/// Progress of a running suite, for long runs.
pub enum Progress<'a> {
    Started { index: usize, total: usize, id: &'static str },
    Finished(&'a CheckReport),
}

type CheckFn = fn(&Ctx) -> Verdict;
type ProgressFn<'a> = Box<dyn FnMut(Progress<'_>) + 'a>;

/// Every check after `component/world`, in order.
pub const CHECKS: &[(&str, CheckFn)] = &[
    ("component/describe", |ctx| checks::describe(ctx.plugin.description())),
    ("config/given", checks::given_config),
    ("config/malformed", checks::malformed_config),
    ("config/unknown-field", checks::unknown_field),
    ("batch/empty", checks::empty_batch),
    ("batch/large", checks::large_batch),
    ("keys/extreme", checks::extreme_keys),
    ("time/extreme", checks::extreme_times),
    ("decisions/valid", checks::valid_decisions),
    ("determinism/replay", checks::replay),
    ("determinism/heartbeats", checks::heartbeats),
    ("determinism/boundaries", checks::boundaries),
    ("snapshot/restore", checks::snapshot_restore),
    ("claim/ordering", |ctx| properties::check(ctx, Capability::Ordering)),
    ("claim/staleness", |ctx| properties::check(ctx, Capability::Staleness)),
    ("claim/dedupe", |ctx| properties::check(ctx, Capability::Dedupe)),
    ("claim/coalesce", |ctx| properties::check(ctx, Capability::Coalesce)),
    ("claim/filter", |ctx| properties::check(ctx, Capability::Filter)),
];

/// Checks that need a stage from the config under test.
fn needs_stage(id: &str) -> bool {
    !matches!(id, "component/describe" | "config/given" | "config/malformed" | "config/unknown-field")
}

/// A configured run of the kit over one component.
pub struct Suite<'a> {
    bytes: &'a [u8],
    config: String,
    seed: u64,
    cases: usize,
    sandbox: SandboxConfig,
    progress: Option<ProgressFn<'a>>,
}

impl<'a> Suite<'a> {
    /// The kit for a component's bytes, with the default config (empty string), a seed
    /// from the clock, [`DEFAULT_CASES`] and the production sandbox limits.
    pub fn new(bytes: &'a [u8]) -> Self {
        let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Suite {
            bytes,
            config: String::new(),
            seed: (clock.as_nanos() as u64) % 1_000_000_007,
            cases: DEFAULT_CASES,
            sandbox: SandboxConfig::default(),
            progress: None,
        }
    }

    /// The config JSON stages are created from (as a tenant would give it).
    pub fn config(mut self, json: impl Into<String>) -> Self {
        self.config = json.into();
        self
    }

    /// The seed of the generated inputs; a report names it, so a failure reproduces.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Generated logs per property check.
    pub fn cases(mut self, cases: usize) -> Self {
        self.cases = cases.max(1);
        self
    }

    /// Other sandbox limits than production's (e.g. a short call budget in tests).
    pub fn sandbox(mut self, sandbox: SandboxConfig) -> Self {
        self.sandbox = sandbox;
        self
    }

    /// Called as each check starts and finishes.
    pub fn on_progress(mut self, f: impl FnMut(Progress<'_>) + 'a) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    pub fn run(mut self) -> Report {
        let started = Instant::now();
        let total = CHECKS.len() + 1;
        let mut report = Report {
            plugin: None,
            config: self.config.clone(),
            seed: self.seed,
            cases: self.cases,
            checks: Vec::with_capacity(total),
            elapsed: Duration::ZERO,
        };
        self.notify(Progress::Started { index: 1, total, id: "component/world" });
        let runtime = PolicyRuntime::new(&self.sandbox);
        let loaded = runtime.load(self.bytes);
        let world = match &loaded {
            Ok(_) => Verdict::pass(
                "a component of streamgate:policy@0.1.0 (world policy-plugin) that imports nothing",
            ),
            Err(e) => Verdict::fail(e.to_string(), String::new(), None),
        };
        self.record(&mut report, "component/world", world, started.elapsed(), 0, None);
        let plugin = match loaded {
            Ok(p) => p,
            Err(_) => {
                for (id, _) in CHECKS {
                    let skip = Verdict::skip("not run: the component did not load");
                    self.record(&mut report, id, skip, Duration::ZERO, 0, None);
                }
                report.elapsed = started.elapsed();
                return report;
            }
        };
        let d = plugin.description();
        report.plugin = Some(PluginInfo {
            name: d.name.clone(),
            version: d.version.clone(),
            capabilities: d
                .capabilities
                .iter()
                .map(|c| properties::capability_name(*c).to_string())
                .collect(),
            state_version: d.state_version,
        });
        let ctx = Ctx::new(
            plugin,
            self.config.clone(),
            runtime.limits(None),
            self.sandbox.call_timeout_ms,
            self.seed,
            self.cases,
        );
        let mut config_refused = false;
        for (i, (id, check)) in CHECKS.iter().enumerate() {
            self.notify(Progress::Started { index: i + 2, total, id });
            let check_started = Instant::now();
            let verdict = if config_refused && needs_stage(id) {
                Verdict::skip("not run: the config under test was refused (see config/given)")
            } else {
                check(&ctx)
            };
            if *id == "config/given" && verdict.outcome == Outcome::Fail {
                config_refused = true;
            }
            let memory = ctx.take_memory_high_water();
            self.record(&mut report, id, verdict, check_started.elapsed(), memory, Some(&ctx));
        }
        report.elapsed = started.elapsed();
        report
    }

    fn notify(&mut self, p: Progress<'_>) {
        if let Some(f) = &mut self.progress {
            f(p);
        }
    }

    fn record(
        &mut self,
        report: &mut Report,
        id: &'static str,
        v: Verdict,
        elapsed: Duration,
        memory_high_water: usize,
        ctx: Option<&Ctx>,
    ) {
        let input = match (&v.input, ctx) {
            (Some(log), Some(ctx)) => Some(render::log_text(log, &ctx.generator)),
            _ => None,
        };
        report.checks.push(CheckReport {
            id,
            outcome: v.outcome,
            reason: v.reason,
            note: v.note,
            input,
            input_log: v.input,
            elapsed,
            memory_high_water,
        });
        let last = report.checks.last().expect("just pushed");
        self.notify(Progress::Finished(last));
    }
}
