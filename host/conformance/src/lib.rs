//! The plugin conformance kit: runs a policy component through generic checks and the
//! properties of the capabilities it claims, and reports each check with its reason,
//! the smallest failing input, its time and its memory high-water. It depends on the
//! policy runtime only (no Kafka, Redis or HTTP), so a plugin author's `cargo test`
//! builds quickly:
//!
//! ```no_run
//! let bytes = std::fs::read("my_plugin.wasm").unwrap();
//! let report = streamgate_conformance::Suite::new(&bytes).config(r#"{"max_age_ms":5000}"#).seed(7).run();
//! report.assert_passed(); // panics with the readable report
//! ```
//!
//! Layout: [`suite`] (the run and its list of checks), [`report`] (what it found),
//! [`expect`] (what the plugin's claims and config promise), [`claims`] (where the claims
//! come from in each policy world, and their stability), [`variants`] (the other valid
//! configs the claims run under), [`shapes`] and [`generate`] (seeded inputs),
//! [`harness`] (stages driven as the chain drives them, answers validated, runs shared by
//! the checks) and [`failure`] (what a failed run says), [`cases`] (property runs and
//! shrinking), [`checks`], [`configs`], [`determinism`], [`restore`] and [`resources`]
//! (generic checks), [`properties`], [`dedupe`], [`expiry`], [`overflow`] and [`window`]
//! (capability claims), [`render`] (text and JSON), and [`componentize`], which makes a plugin's core
//! module a component; [`differential`] compares two plugins on the same logs
//! ([`compare`] says how two runs differ), generated and [`recorded`] from a running
//! tenant ([`recorded_diff`]; [`upstream`] replays them through the stages before the
//! plugin).

pub mod cases;
pub mod checks;
pub mod claims;
pub mod compare;
pub mod componentize;
pub mod configs;
pub mod dedupe;
pub mod determinism;
pub mod differential;
pub mod expect;
pub mod expiry;
pub mod failure;
pub mod generate;
pub mod harness;
pub mod overflow;
pub mod properties;
pub mod recorded;
pub mod recorded_diff;
pub mod render;
pub mod report;
pub mod resources;
pub mod restore;
pub mod shapes;
pub mod suite;
pub mod upstream;
pub mod variants;
pub mod window;

pub use differential::{DiffReport, Differential};
pub use recorded::{RecordedLog, RecordedLogError};
pub use report::{CheckReport, Outcome, PluginInfo, Report, Verdict};
pub use suite::{CHECKS, DEFAULT_CASES, Progress, Suite};
