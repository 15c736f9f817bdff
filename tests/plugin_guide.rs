//! docs/PLUGINS.md, section "Build it, make it a component, run the kit", followed
//! literally: the template plugin builds with the guide's cargo command, becomes a
//! component with `streamgate componentize`, and passes `streamgate conformance`.
//! Keep this test and that section in sync.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The build output of the outer cargo, derived from where build.rs put the plugins
/// (`<target>/plugins/components`), so the template's build is cached next to it.
fn target_dir() -> PathBuf {
    Path::new(streamgate_runtime::builtin::COMPONENT_DIR).parent().unwrap().parent().unwrap().to_path_buf()
}

fn streamgate(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_streamgate")).args(args).output().unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn the_template_plugin_builds_from_the_guide_and_passes_the_kit() {
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/template");
    let template_target = target_dir().join("template");

    let cargo = |args: &[&str]| {
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.current_dir(&template).args(args).env("CARGO_TARGET_DIR", &template_target);
        // The outer cargo's flags and wrappers are not the guide reader's.
        for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER"] {
            cmd.env_remove(var);
        }
        let status = cmd.status().unwrap();
        assert!(
            status.success(),
            "`cargo {}` in plugins/template, as the guide says, failed: {status}",
            args.join(" ")
        );
    };
    // Guide: `cd plugins/template`, `cargo test`, then
    // `cargo build --profile plugin --target wasm32-unknown-unknown`.
    cargo(&["test"]);
    cargo(&["build", "--profile", "plugin", "--target", "wasm32-unknown-unknown"]);

    // Guide: `streamgate componentize target/wasm32-unknown-unknown/plugin/streamgate_template.wasm -o latest_per_key.wasm`
    let module = template_target.join("wasm32-unknown-unknown/plugin/streamgate_template.wasm");
    let component = template_target.join("latest_per_key.wasm");
    let (code, _, stderr) =
        streamgate(&["componentize", module.to_str().unwrap(), "-o", component.to_str().unwrap()]);
    assert_eq!(code, Some(0), "componentize: {stderr}");
    assert!(stderr.contains("wrote"), "{stderr}");

    // Guide: `streamgate conformance latest_per_key.wasm` (here with --json to read it).
    let (code, stdout, stderr) = streamgate(&["conformance", component.to_str().unwrap(), "--json"]);
    assert_eq!(code, Some(0), "the template fails the kit:\n{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["passed"], true);
    assert_eq!(report["plugin"]["name"], "latest-per-key");
    assert_eq!(report["plugin"]["world"], "0.4.0", "the template exports the cheapest world");
    let dedupe = report["checks"].as_array().unwrap().iter().find(|c| c["id"] == "claim/dedupe").unwrap();
    assert_eq!(dedupe["outcome"], "pass", "the template's claim is checked: {dedupe}");

    // Guide, "When the kit fails": a config the template refuses is reported, exit 1.
    let (code, stdout, _) =
        streamgate(&["conformance", component.to_str().unwrap(), "--config", r#"{"min_step_ms":-1}"#]);
    assert_eq!(code, Some(1));
    assert!(stdout.contains("FAIL  config/given") && stdout.contains("min_step_ms must be >= 0"), "{stdout}");
}
