//! The conformance kit in every policy world: a 0.2.0 or later component is checked on
//! exactly the claims its stages make under each config (`stage.capabilities`), which
//! must be stable; a 0.1.0 component on its `describe` list, and the report says so; a
//! 0.2.0 stage claiming what it does not do under its config fails exactly that claim.

use streamgate_conformance::{Outcome, Report, Suite};
use streamgate_runtime::builtin::component_path;

const SEED: u64 = 20_261_130;

fn run(component: &str, config: &str) -> Report {
    let bytes = std::fs::read(component_path(component)).unwrap();
    Suite::new(&bytes).config(config).seed(SEED).cases(128).run()
}

fn reason<'r>(report: &'r Report, id: &str) -> &'r str {
    &report.check(id).unwrap_or_else(|| panic!("no check {id}")).reason
}

#[test]
fn a_builtin_is_checked_on_what_its_stages_claim_under_each_config() {
    let report = run("dedupe", "");
    assert!(report.passed(), "{report}");
    assert_eq!(report.plugin.as_ref().unwrap().world, "0.4.0");
    assert!(reason(&report, "component/world").contains("streamgate:policy@0.4.0"), "{report}");
    assert!(reason(&report, "component/world").contains("stage.capabilities"), "{report}");
    let stable = report.check("capabilities/stable").unwrap();
    assert_eq!(stable.outcome, Outcome::Pass, "{report}");
    // The default config claims dedupe only; the newest_per_frame variant adds coalesce.
    assert!(stable.reason.contains("the default config: [dedupe]"), "{}", stable.reason);
    assert!(stable.reason.contains(r#""newest_per_frame":true}: [dedupe, coalesce]"#), "{}", stable.reason);
    assert_eq!(report.check("claim/coalesce").unwrap().outcome, Outcome::Pass, "{report}");
    // Coalescing claimed by the stage is checked, with no config special case.
    let newest = run("dedupe", r#"{"newest_per_frame":true}"#);
    assert!(newest.passed(), "{newest}");
    assert_eq!(newest.check("claim/coalesce").unwrap().outcome, Outcome::Pass, "{newest}");
    let by_id = run("dedupe", r#"{"by":"id"}"#);
    assert!(by_id.passed(), "{by_id}");
    assert!(reason(&by_id, "capabilities/stable").contains(r#"{"by":"id"}: [dedupe]"#), "{by_id}");
}

#[test]
fn builtins_pass_with_batches_as_rows_or_columns() {
    for (component, world, claims) in [
        ("staleness", "0.4.0", "[staleness]"),
        ("ordering", "0.4.0", "[ordering]"),
        ("fixture_columns", "0.3.0", "[dedupe]"),
    ] {
        let report = run(component, "");
        assert!(report.passed(), "{report}");
        assert_eq!(report.plugin.as_ref().unwrap().world, world);
        let exported = format!("streamgate:policy@{world}");
        assert!(reason(&report, "component/world").contains(&exported), "{report}");
        assert!(reason(&report, "capabilities/stable").contains(claims), "{report}");
    }
}

#[test]
fn a_0_1_0_component_is_checked_on_its_description_and_the_report_says_so() {
    let report = run("coalesce", "");
    assert!(report.passed(), "{report}");
    assert_eq!(report.plugin.as_ref().unwrap().world, "0.1.0");
    assert!(reason(&report, "component/world").contains("streamgate:policy@0.1.0"), "{report}");
    assert!(reason(&report, "component/world").contains("come from describe"), "{report}");
    let stable = report.check("capabilities/stable").unwrap();
    assert_eq!(stable.outcome, Outcome::Skip, "{report}");
    assert!(stable.reason.contains("claims checked are describe's [coalesce]"), "{}", stable.reason);
    assert!(report.to_string().contains("(streamgate:policy@0.1.0; claims: coalesce;"), "{report}");
}

#[test]
fn a_0_2_0_stage_claiming_what_it_does_not_do_fails_exactly_that_claim() {
    // Claims coalesce under the default config, where (like dedupe) it does not coalesce.
    let report = run("fixture_overclaim", "");
    let failed: Vec<&str> = report.failures().map(|c| c.id).collect();
    assert_eq!(failed, vec!["claim/coalesce"], "{report}");
    assert!(report.check("claim/coalesce").unwrap().input.is_some(), "the smallest failing input is shown");
    assert_eq!(report.check("capabilities/stable").unwrap().outcome, Outcome::Pass, "a stable lie is a lie");
    // Under newest_per_frame the same claim is true.
    let honest = run("fixture_overclaim", r#"{"newest_per_frame":true}"#);
    assert!(honest.passed(), "{honest}");
}

#[test]
fn a_0_2_0_stage_whose_claims_change_between_calls_fails_capabilities_stable() {
    let report = run("fixture_overclaim", r#"{"unstable":true,"newest_per_frame":true}"#);
    let failed: Vec<&str> = report.failures().map(|c| c.id).collect();
    assert_eq!(failed, vec!["capabilities/stable"], "{report}");
    let why = reason(&report, "capabilities/stable");
    assert!(why.contains("answered [dedupe] when asked again, but [dedupe, coalesce] before"), "{why}");
}
