//! The plugin authors' commands: `streamgate conformance` (the kit, with progress on
//! stderr and the report on stdout), its differential mode (`--against`) and
//! `streamgate componentize`.

use std::path::PathBuf;
use std::process::ExitCode;

use streamgate_conformance::RecordedLog;

/// Exit status when the kit or componentize could not run at all.
const CANNOT_RUN: u8 = 2;

/// `streamgate conformance PLUGIN [--log FILE]...`: every check, the generated-run ones
/// on the recorded logs too.
pub(super) fn conformance(plugin: &str, recorded: &Recorded, run: Run) -> ExitCode {
    use streamgate_conformance::{Outcome, Progress, Suite};
    let read = streamgate_runtime::builtin::read_ref(plugin).map_err(|e| e.to_string());
    let (bytes, logs) = match read.and_then(|bytes| Ok((bytes, read_logs(recorded)?))) {
        Ok(both) => both,
        Err(e) => {
            eprintln!("streamgate: {e}");
            return ExitCode::from(CANNOT_RUN);
        }
    };
    let Run { config, json, seed, cases } = run;
    let mut suite = Suite::new(&bytes).config(config).cases(cases).on_progress(|p| match p {
        Progress::Started { index, total, id } => eprint!("[{index:>2}/{total}] {id} ... "),
        Progress::Finished(c) => {
            let outcome = match c.outcome {
                Outcome::Pass => "pass",
                Outcome::Warn => "WARN",
                Outcome::Fail => "FAIL",
                Outcome::Skip => "skip",
            };
            eprintln!("{outcome} ({:.0} ms)", c.elapsed.as_secs_f64() * 1e3);
        }
    });
    if let Some(seed) = seed {
        suite = suite.seed(seed);
    }
    for (name, log) in &logs {
        suite = suite.recorded(name.clone(), log);
    }
    let report = suite.run();
    if json {
        println!("{}", report.to_json());
    } else {
        println!("{report}");
    }
    if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// The options a kit run shares with a differential one.
pub(super) struct Run {
    pub config: String,
    pub json: bool,
    pub seed: Option<u64>,
    pub cases: usize,
}

/// The recorded logs a run replays, and how.
#[derive(clap::Args)]
pub(super) struct Recorded {
    /// A recorded log (from `streamgate record`; repeatable). Differential mode replays
    /// it through both plugins and reports differences with the log position of the
    /// entry where they first differ; otherwise the checks that judge generated runs
    /// judge it too, under --config.
    #[arg(long = "log")]
    pub logs: Vec<PathBuf>,
    /// Differential mode with --log: replay the recorded logs only, no generated ones.
    #[arg(long = "recorded-only", requires_all = ["logs", "against"])]
    pub only: bool,
    /// A stage before the plugin in the tenant's chain, `REF` or `REF=CONFIG_JSON`
    /// (repeatable, in chain order): the recorded logs are what the chain's first stage
    /// sees, so they are first replayed through these, and the plugin gets what they pass
    /// on, when they pass it on.
    #[arg(long = "before", requires = "logs", value_parser = before_stage)]
    pub before: Vec<(String, String)>,
}

/// `--before REF[=CONFIG_JSON]`: the plugin ref and its config as a stage gets it.
fn before_stage(s: &str) -> Result<(String, String), String> {
    let spec = super::admin_client::parse_policy(s).map_err(|e| e.to_string())?;
    let config = if spec.config.is_null() { String::new() } else { spec.config.to_string() };
    Ok((spec.plugin, config))
}

/// `streamgate conformance NEW --against OLD [--log FILE]...`: both plugins on the same
/// generated and recorded logs.
pub(super) fn differential(
    new: &str,
    old: &str,
    against_config: Option<String>,
    recorded: Recorded,
    run: Run,
) -> ExitCode {
    let read = |r: &str| streamgate_runtime::builtin::read_ref(r).map_err(|e| e.to_string());
    let loaded =
        read(new).and_then(|n| read(old).map(|o| (n, o))).and_then(|both| Ok((both, read_logs(&recorded)?)));
    let ((new_bytes, old_bytes), logs) = match loaded {
        Ok(all) => all,
        Err(e) => {
            eprintln!("streamgate: {e}");
            return ExitCode::from(CANNOT_RUN);
        }
    };
    let seed = run.seed.unwrap_or_else(|| {
        let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        (clock.as_nanos() as u64) % 1_000_000_007
    });
    let mut diff = streamgate_conformance::Differential::new(&new_bytes, &old_bytes)
        .config(run.config)
        .seed(seed)
        .cases(run.cases);
    if let Some(c) = against_config {
        diff = diff.against_config(c);
    }
    for (name, log) in &logs {
        diff = diff.recorded(name.clone(), log);
    }
    let generated = if recorded.only { 0 } else { run.cases };
    diff = diff.generated(!recorded.only);
    eprintln!(
        "comparing {new} against {old} on {generated} generated logs (seed {seed}) and {} recorded ...",
        logs.len()
    );
    match diff.run() {
        Ok(report) => {
            println!("{}", if run.json { report.to_json() } else { report.to_string() });
            if report.identical() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            eprintln!("streamgate: {e}");
            ExitCode::from(CANNOT_RUN)
        }
    }
}

/// The recorded logs of `--log`, each named by its path, as the plugin would see them
/// after the `--before` stages.
fn read_logs(recorded: &Recorded) -> Result<Vec<(String, RecordedLog)>, String> {
    let sandbox = streamgate_runtime::SandboxConfig::default();
    recorded
        .logs
        .iter()
        .map(|path| {
            let name = path.display().to_string();
            let log = RecordedLog::read(path).map_err(|e| format!("{name}: {e}"))?;
            if recorded.before.is_empty() {
                return Ok((name, log));
            }
            let (log, p) = streamgate_conformance::upstream::through(&log, &recorded.before, &sandbox)
                .map_err(|e| format!("{name}: {e}"))?;
            eprintln!(
                "{name}: the stages before passed on {} of its {} events ({} dropped, {} still held at its end)",
                p.passed_on, p.given, p.dropped, p.held
            );
            Ok((name, log))
        })
        .collect()
}

pub(super) fn componentize(module: &std::path::Path, output: &std::path::Path) -> ExitCode {
    let shown = module.display().to_string();
    let result = std::fs::read(module)
        .map_err(|e| format!("cannot read {shown}: {e}"))
        .and_then(|bytes| {
            streamgate_conformance::componentize::componentize(&shown, &bytes).map_err(|e| e.to_string())
        })
        .and_then(|component| {
            std::fs::write(output, &component)
                .map(|()| component.len())
                .map_err(|e| format!("cannot write {}: {e}", output.display()))
        });
    match result {
        Ok(len) => {
            eprintln!(
                "wrote {} ({len} bytes); check it with `streamgate conformance {}`",
                output.display(),
                output.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("streamgate: {e}");
            ExitCode::from(CANNOT_RUN)
        }
    }
}
