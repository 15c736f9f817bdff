//! The plugin authors' commands: `streamgate conformance` (the kit, with progress on
//! stderr and the report on stdout) and `streamgate componentize`.

use std::process::ExitCode;

/// Exit status when the kit or componentize could not run at all.
const CANNOT_RUN: u8 = 2;

pub(super) fn conformance(
    plugin: &str,
    config: String,
    json: bool,
    seed: Option<u64>,
    cases: usize,
) -> ExitCode {
    use streamgate_conformance::{Outcome, Progress, Suite};
    let bytes = match streamgate_runtime::builtin::read_ref(plugin) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("streamgate: {e}");
            return ExitCode::from(CANNOT_RUN);
        }
    };
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
    let report = suite.run();
    if json {
        println!("{}", report.to_json());
    } else {
        println!("{report}");
    }
    if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
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
