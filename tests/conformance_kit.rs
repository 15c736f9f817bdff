//! The conformance kit from outside: streamgate's own plugins pass it with their
//! default configs and the demo tenants' configs; every broken fixture fails it with the
//! check and the reason asserted here; the CLI's exit codes and JSON report.

use std::process::Command;

use streamgate::demo;
use streamgate_conformance::{Differential, Outcome, Report, Suite};
use streamgate_runtime::SandboxConfig;

/// Fixed so every run of this file is reproducible; set STREAMGATE_CONFORMANCE_SEED to
/// run the builtins on other generated inputs.
const SEED: u64 = 20_260_223;

use streamgate_runtime::builtin::component_path;

fn component(name: &str) -> Vec<u8> {
    std::fs::read(component_path(name)).unwrap()
}

fn failed(report: &Report) -> Vec<&str> {
    report.failures().map(|c| c.id).collect()
}

#[test]
fn every_builtin_passes_with_its_default_config_the_demo_tenants_configs_and_a_tight_buffer() {
    let mut runs: Vec<(String, String)> =
        streamgate_runtime::builtin::NAMES.iter().map(|name| (name.to_string(), String::new())).collect();
    for tenant in [demo::taxi_tenant(), demo::queue_tenant()] {
        for p in &tenant.policies {
            let name = p.plugin.strip_prefix("builtin:").expect("demo tenants use builtins");
            runs.push((name.to_string(), p.config_json()));
        }
    }
    assert_eq!(runs.len(), 9);
    // A tight buffer makes ordering's output depend on its calls if it ever holds an event
    // behind one that arrived later (log times need not rise with seq): a regression.
    runs.push(("ordering".into(), r#"{"max_buffered":5}"#.into()));
    for (name, config) in runs {
        let seed =
            std::env::var("STREAMGATE_CONFORMANCE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(SEED);
        let report = Suite::new(&component(&name)).config(config.clone()).seed(seed).run();
        println!("{name} {config:?}: seed {}, {:.2} s", report.seed, report.elapsed.as_secs_f64());
        assert!(report.passed(), "builtin {name} with config {config:?}:\n{report}");
        let ran = report.checks.iter().filter(|c| c.outcome == Outcome::Pass).count();
        assert!(ran >= 19, "{name}: only {ran} checks passed, the rest skipped:\n{report}");
        assert!(report.checks.iter().all(|c| c.outcome != Outcome::Warn), "{name}:\n{report}");
        if name == "dedupe" && config.is_empty() {
            let given = &report.check("config/given").unwrap().reason;
            assert!(given.contains(r#"{"by":"id"}"#), "the claims also run under other configs: {given}");
        }
    }
}

/// Each lie of the liar fixture, the one check it must fail, and words of the reason.
/// `newest_per_frame` is off where per-frame coalescing would hide the lie.
const LIES: &[(&str, bool, &str, &str)] = &[
    ("ordering", true, "claim/ordering", "in the same frame"),
    ("no-window", true, "claim/ordering", "before its reorder window passed"),
    ("window-boundary", true, "claim/ordering", "though its reorder window had passed"),
    ("staleness", true, "claim/staleness", "older than max_age_ms"),
    ("staleness-boundary", true, "claim/staleness", "as stale, but its event time"),
    ("dedupe", true, "claim/dedupe", "a key's time must strictly increase"),
    ("short-keys", false, "claim/dedupe", "no other event of that key"),
    ("coalesce", true, "claim/coalesce", "of the same key and tag in one frame"),
    ("coalesce-first", true, "claim/coalesce", "no newer event of its key was released"),
    ("batch-cut", false, "determinism/boundaries", "however it is cut into pushes"),
    ("hold", true, "decisions/all-decided", "was still held after the flush"),
    ("nondeterministic", true, "determinism/heartbeats", "the released sequence differs"),
    ("snapshot", true, "snapshot/restore", "restored into a fresh stage"),
    ("restore-garbage", true, "snapshot/refuses-garbage", "as a valid snapshot"),
    ("config-trap", true, "config/invalid", "instead of returning a config-error"),
    ("leak", true, "resources/memory", "bytes per call"),
    ("quadratic", true, "resources/time", "fuel per event per window"),
    ("expire-fresh", true, "claim/staleness", "may be expired only once its newest release is older"),
    ("overflow", true, "decisions/drop-reasons", "overflow is for a buffer that is full"),
];

#[test]
fn each_lie_of_the_liar_fixture_fails_exactly_its_check() {
    let liar = component("fixture_liar");
    for newest_per_frame in [true, false] {
        let config = format!(r#"{{"lie":"none","newest_per_frame":{newest_per_frame}}}"#);
        let honest = Suite::new(&liar).config(config).seed(SEED).run();
        assert!(honest.passed(), "the honest liar passes:\n{honest}");
        assert_eq!(honest.check("claim/coalesce").unwrap().outcome, Outcome::Pass, "{honest}");
        assert!(honest.checks.iter().all(|c| c.outcome != Outcome::Warn), "{honest}");
    }
    for &(lie, newest_per_frame, check, reason) in LIES {
        let config = format!(r#"{{"lie":"{lie}","newest_per_frame":{newest_per_frame}}}"#);
        let report = Suite::new(&liar).config(config).seed(SEED).run();
        assert_eq!(failed(&report), vec![check], "lie {lie}:\n{report}");
        let c = report.check(check).unwrap();
        assert!(c.reason.contains(reason), "lie {lie}: {}", c.reason);
        assert!(c.cases >= 1 && c.seed == SEED, "lie {lie}: {} cases, seed {}", c.cases, c.seed);
        assert!(report.to_string().contains(&format!("reproduce with --seed {SEED}")));
        if check.starts_with("claim/") || check.starts_with("determinism/") || check.starts_with("decisions/")
        {
            let input = c.input_log.as_ref().expect("a generated failure shows its input");
            assert!(input.events() <= 3, "lie {lie}: shrunk to {} events:\n{report}", input.events());
            assert!(c.input.as_ref().unwrap().contains("(the flush)"), "{report}");
            assert!(c.note.contains("shrunk from"), "lie {lie}: {}", c.note);
        }
    }
}

#[test]
fn a_failure_on_a_boundary_shows_the_boundary_in_its_smallest_input() {
    let liar = component("fixture_liar");
    let report = Suite::new(&liar).config(r#"{"lie":"staleness-boundary"}"#).seed(SEED).run();
    let c = report.check("claim/staleness").unwrap();
    let input = c.input_log.as_ref().unwrap();
    let (batch, event) =
        input.batches.iter().find_map(|b| b.events.first().map(|e| (b, e))).expect("one event");
    let max_age = if c.note.contains(r#""max_age_ms":0"#) {
        0
    } else if c.note.contains(r#""max_age_ms":1000"#) {
        1_000
    } else {
        30_000
    };
    assert_eq!(batch.now - event.event_time, max_age, "exactly max_age_ms old:\n{report}");
}

#[test]
fn the_same_seed_gives_the_same_smallest_failing_input() {
    let liar = component("fixture_liar");
    let run = || Suite::new(&liar).config(r#"{"lie":"dedupe"}"#).seed(7).cases(16).run();
    let (a, b) = (run(), run());
    let input = |r: &Report| r.check("claim/dedupe").unwrap().input.clone();
    assert!(input(&a).is_some(), "{a}");
    assert_eq!(input(&a), input(&b));
}

#[test]
fn every_misbehaving_fixture_fails_with_the_fault_named() {
    // A small fuel budget keeps the spinning fixture quick; the bomb gets all the fuel it
    // wants, so the memory cap is what stops it; the others get production's limits.
    let sandbox = |fault: &str| match fault {
        "loop" => SandboxConfig { fuel_per_call: 1_000_000, ..SandboxConfig::default() },
        "memory-bomb" => SandboxConfig { fuel_per_call: u64::MAX / 4, ..SandboxConfig::default() },
        _ => SandboxConfig::default(),
    };
    let cases = [
        ("loop", "batch/empty", "ran out of its fuel budget (1000000 units"),
        ("memory-bomb", "batch/empty", "hit the sandbox memory cap"),
        ("trap", "batch/empty", "trapped: wasm `unreachable` instruction executed"),
        ("panic", "batch/empty", "how a Rust panic or abort ends in Wasm"),
        ("unknown-seq", "batch/empty", "released seq 18446744073709551615, which it was never given"),
        ("duplicate-seq", "decisions/valid", "twice in one answer"),
    ];
    let misbehave = component("fixture_misbehave");
    for (fault, check, reason) in cases {
        let report = Suite::new(&misbehave)
            .config(format!(r#"{{"fault":"{fault}"}}"#))
            .seed(SEED)
            .cases(8)
            .sandbox(sandbox(fault))
            .run();
        let c = report.check(check).unwrap();
        assert_eq!(c.outcome, Outcome::Fail, "{fault}:\n{report}");
        assert!(c.reason.contains(reason), "{fault}: {}", c.reason);
        assert_eq!(report.check("config/given").unwrap().outcome, Outcome::Pass, "the kit did not crash");
        if fault == "memory-bomb" {
            assert!(c.memory_high_water > 60 << 20, "the high-water shows the bomb: {}", c.memory_high_water);
        }
    }
    let slow = Suite::new(&misbehave).config(r#"{"fault":"slow","spin":100000}"#).seed(SEED).run();
    assert!(slow.passed(), "slow but within budget is no failure:\n{slow}");
    assert_eq!(slow.check("claim/filter").unwrap().outcome, Outcome::Pass, "{slow}");
}

#[test]
fn a_run_that_faults_is_the_failure_of_decisions_valid_not_of_the_claims_judging_runs() {
    let misbehave = component("fixture_misbehave");
    let report = Suite::new(&misbehave).config(r#"{"fault":"trap","from_batch":4}"#).seed(SEED).run();
    let failed = failed(&report);
    assert!(failed.contains(&"decisions/valid"), "{report}");
    for id in ["decisions/all-decided", "decisions/drop-reasons", "determinism/replay", "claim/filter"] {
        let c = report.check(id).unwrap();
        assert_eq!(c.outcome, Outcome::Pass, "{id}:\n{report}");
        assert!(c.reason.contains("whose run failed were not judged (see decisions/valid)"), "{}", c.reason);
        assert!(c.cases < report.cases, "{id} judged only the runs that ended: {}", c.cases);
    }
}

#[test]
fn a_filter_that_depends_on_history_fails_the_filter_claim_only() {
    let misbehave = component("fixture_misbehave");
    let report = Suite::new(&misbehave).config(r#"{"fault":"filter-seen"}"#).seed(SEED).run();
    assert_eq!(failed(&report), vec!["claim/filter"], "{report}");
    let c = report.check("claim/filter").unwrap();
    assert!(c.reason.contains("filtered in the run but not filtered when pushed alone"), "{}", c.reason);
    assert!(c.input_log.as_ref().unwrap().events() <= 3, "{report}");
}

#[test]
fn what_is_not_a_policy_component_fails_the_world_check_and_skips_the_rest() {
    let report = Suite::new(b"\0asm\x01\0\0\0").run();
    assert_eq!(failed(&report), vec!["component/world"]);
    assert!(report.check("component/world").unwrap().reason.contains("core Wasm module"));
    assert!(report.checks.iter().skip(1).all(|c| c.outcome == Outcome::Skip));
}

fn cli(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_streamgate")).args(args).output().unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn the_cli_reports_json_and_exits_non_zero_on_failure() {
    let (code, stdout, stderr) = cli(&["conformance", &component_path("dedupe"), "--json", "--seed", "5"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["passed"], true);
    assert_eq!(json["seed"], 5);
    assert_eq!(json["plugin"]["name"], "dedupe");
    let checks = json["checks"].as_array().unwrap();
    assert_eq!(json["plugin"]["world"], "0.4.0");
    assert_eq!(checks.len(), 26);
    assert!(checks.iter().all(|c| c["outcome"] == "pass" || c["outcome"] == "skip"), "{stdout}");
    assert!(checks.iter().all(|c| c["elapsed_ms"].is_number() && c["memory_high_water_bytes"].is_u64()));
    assert!(checks.iter().all(|c| c["seed"] == 5 && c["cases"].is_u64()), "{stdout}");
    let dedupe = checks.iter().find(|c| c["id"] == "claim/dedupe").unwrap();
    assert_eq!(dedupe["cases"], streamgate_conformance::DEFAULT_CASES, "{dedupe}");
    assert!(stderr.contains("[26/26] claim/filter ... skip"), "progress on stderr: {stderr}");

    let config = r#"{"lie":"ordering","newest_per_frame":true}"#;
    let (code, stdout, _) =
        cli(&["conformance", &component_path("fixture_liar"), "--config", config, "--json", "--seed", "5"]);
    assert_eq!(code, Some(1), "{stdout}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["passed"], false);
    let failed: Vec<&serde_json::Value> =
        json["checks"].as_array().unwrap().iter().filter(|c| c["outcome"] == "fail").collect();
    assert_eq!(failed.len(), 1, "{stdout}");
    assert_eq!(failed[0]["id"], "claim/ordering");
    assert!(failed[0]["input_log"]["batches"][0]["events"].is_array(), "{stdout}");

    let (code, stdout, _) =
        cli(&["conformance", &component_path("fixture_liar"), "--config", config, "--seed", "5"]);
    assert_eq!(code, Some(1));
    assert!(
        stdout.contains("FAIL  claim/ordering") && stdout.contains("smallest failing input:"),
        "{stdout}"
    );

    let (code, _, stderr) = cli(&["conformance", "/nonexistent/plugin.wasm"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("cannot read plugin file /nonexistent/plugin.wasm"), "{stderr}");
}

#[test]
fn differential_mode_finds_no_difference_between_equal_logic_and_every_one_otherwise() {
    let (next, dedupe) = (component("fixture_dedupe_next"), component("dedupe"));
    let same = Differential::new(&next, &dedupe).seed(SEED).cases(64).run().unwrap();
    assert!(same.identical(), "{same}");
    assert_eq!((same.new.as_str(), same.old.as_str()), ("dedupe@0.2.0", "dedupe@0.1.0"));

    let liar = component("fixture_liar");
    let report = Differential::new(&liar, &liar)
        .config(r#"{"lie":"coalesce-first","newest_per_frame":true}"#)
        .against_config(r#"{"newest_per_frame":true}"#)
        .seed(SEED)
        .cases(64)
        .run()
        .unwrap();
    assert!(!report.identical() && report.differing_logs > 0, "{report}");
    let d = &report.differences[0];
    assert!(d.what.iter().any(|w| w.contains("by new only")), "{report}");
    assert!(report.inputs.contains_key(&d.case), "the input of every differing log is kept");
    assert!(report.to_string().contains("the smallest differing log"), "{report}");

    // Keys expired by one side only are a difference: a candidate that makes live keys
    // vanish from the map must never compare as identical.
    let expiring = Differential::new(&liar, &liar)
        .config(r#"{"lie":"expire-fresh"}"#)
        .against_config(r#"{"lie":"none"}"#)
        .seed(SEED)
        .cases(16)
        .run()
        .unwrap();
    assert!(!expiring.identical(), "{expiring}");
    let first = &expiring.differences[0].what;
    assert!(
        first.iter().any(|w| w.starts_with("expired keys [#") && w.ends_with("by old only")),
        "{first:?}"
    );

    let Err(refused) = Differential::new(&liar, &dedupe).config(r#"{"lie":"none"}"#).run() else {
        panic!("dedupe refuses the liar's config");
    };
    assert!(refused.contains("the old plugin rejected its config"), "{refused}");
}

#[test]
fn the_cli_compares_two_plugins_with_against() {
    let (code, stdout, _) = cli(&[
        "conformance",
        &component_path("fixture_dedupe_next"),
        "--against",
        "builtin:dedupe",
        "--seed",
        "5",
    ]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("IDENTICAL: 640 logs decided alike"), "{stdout}");
    let liar = component_path("fixture_liar");
    let args = ["conformance", &liar, "--config", r#"{"lie":"ordering"}"#, "--against", &liar];
    let (code, stdout, _) = cli(&[&args[..], &["--against-config", "", "--json", "--seed", "5"]].concat());
    assert_eq!(code, Some(1), "{stdout}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["identical"], false);
    let first = &json["differences"][0];
    assert!(first["what"][0].as_str().unwrap().contains("another order"), "{first}");
    assert!(json["inputs"][first["case"].to_string()]["batches"].is_array(), "{stdout}");
}
