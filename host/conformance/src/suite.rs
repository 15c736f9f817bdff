//! A configured run of the kit over one component ([`Suite`]): loads it as production
//! does, then runs every check in [`CHECKS`] on fresh stages under the production
//! sandbox limits, so a trap, timeout or memory overrun fails only that check.

use std::time::{Duration, Instant};

use streamgate_plugin_sdk::Capability;
use streamgate_runtime::{PolicyRuntime, SandboxConfig};

use crate::harness::{Ctx, Setup};
use crate::recorded::RecordedLog;
use crate::report::{CheckReport, Outcome, PluginInfo, Report, Verdict};
use crate::{checks, claims, configs, determinism, expect, properties, render, resources, restore, variants};

/// Generated logs unless [`Suite::cases`] says otherwise.
pub const DEFAULT_CASES: usize = 640;

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
    ("config/malformed", configs::malformed),
    ("config/invalid", configs::invalid),
    ("config/unknown-field", configs::unknown_field),
    ("batch/empty", checks::empty_batch),
    ("batch/large", checks::large_batch),
    ("keys/extreme", checks::extreme_keys),
    ("time/extreme", checks::extreme_times),
    ("decisions/valid", checks::valid_decisions),
    ("decisions/all-decided", properties::all_decided),
    ("decisions/drop-reasons", properties::drop_reasons),
    ("determinism/replay", determinism::replay),
    ("determinism/heartbeats", determinism::heartbeats),
    ("determinism/boundaries", determinism::boundaries),
    ("snapshot/restore", determinism::snapshot_restore),
    ("snapshot/refuses-garbage", restore::refuses_garbage),
    ("resources/memory", resources::memory),
    ("resources/time", resources::time),
    ("capabilities/stable", claims::stable),
    ("claim/ordering", |ctx| properties::check(ctx, Capability::Ordering)),
    ("claim/staleness", |ctx| properties::check(ctx, Capability::Staleness)),
    ("claim/dedupe", |ctx| properties::check(ctx, Capability::Dedupe)),
    ("claim/coalesce", |ctx| properties::check(ctx, Capability::Coalesce)),
    ("claim/filter", |ctx| properties::check(ctx, Capability::Filter)),
];

/// Checks that need a stage from the config under test.
fn needs_stage(id: &str) -> bool {
    !matches!(
        id,
        "component/describe"
            | "config/given"
            | "config/malformed"
            | "config/invalid"
            | "config/unknown-field"
    )
}

/// A configured run of the kit over one component.
pub struct Suite<'a> {
    bytes: &'a [u8],
    config: String,
    seed: u64,
    cases: usize,
    sandbox: SandboxConfig,
    progress: Option<ProgressFn<'a>>,
    recorded: Vec<(String, &'a RecordedLog)>,
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
            recorded: Vec::new(),
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

    /// Generated logs, run once each and judged by every check on generated runs (spread
    /// over the configs the claims run under).
    pub fn cases(mut self, cases: usize) -> Self {
        self.cases = cases.max(1);
        self
    }

    /// Also judge a log recorded from a running tenant (`name` is what failures call
    /// it), under the config under test, by every check on generated runs.
    pub fn recorded(mut self, name: impl Into<String>, log: &'a RecordedLog) -> Self {
        self.recorded.push((name.into(), log));
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
            Ok(plugin) => Verdict::pass(format!(
                "a component of {} (world policy-plugin) that imports nothing; the claims checked come from {}",
                plugin.world(),
                if plugin.world().stage_reports_capabilities() {
                    "each stage's capabilities under its config (stage.capabilities)"
                } else {
                    "describe, the same under every config"
                }
            )),
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
            world: plugin.world().version().to_string(),
            capabilities: d.capabilities.iter().map(|c| expect::capability_name(*c).to_string()).collect(),
            state_version: d.state_version,
        });
        let limits = runtime.limits(None);
        let setups = match plugin.stage(&self.config, limits) {
            Ok(_) => variants::setups(&plugin, &self.config, limits),
            Err(_) => vec![Setup::new(plugin.description(), self.config.clone())],
        };
        let flush_after_ms = setups[0].expect.bounds().flush_after_ms();
        let recorded = self.recorded.iter().map(|(name, log)| (name.clone(), log.to_log(flush_after_ms)));
        let ctx = Ctx::new(plugin, setups, limits, self.seed, self.cases).with_recorded(recorded.collect());
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
            (Some(log), Some(ctx)) => Some(render::log_text(log, &ctx.under_test().generator)),
            _ => None,
        };
        let cases = if v.cases == 0 && matches!(v.outcome, Outcome::Pass | Outcome::Warn | Outcome::Fail) {
            1
        } else {
            v.cases
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
            cases,
            seed: self.seed,
        });
        let last = report.checks.last().expect("just pushed");
        self.notify(Progress::Finished(last));
    }
}
