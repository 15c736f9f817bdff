//! Builds the policy plugins as Wasm components, so tests, benchmarks and the demo
//! binary always run the plugins of this very checkout (no hand-built artifacts).
//!
//! Each plugin crate is compiled for `wasm32-unknown-unknown` (no WASI: a plugin gets no
//! files, env, clock or randomness) by a nested cargo into `<target>/plugins`, then
//! wrapped into a component with `wit-component`. The directory holding the components
//! is exported to this crate as `STREAMGATE_PLUGIN_DIR` (see `builtin::COMPONENT_DIR`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// (crate name suffix, component file name): the builtins, then test fixtures.
const PLUGINS: &[(&str, &str)] = &[
    ("staleness", "staleness"),
    ("dedupe", "dedupe"),
    ("ordering", "ordering"),
    ("coalesce", "coalesce"),
    ("fixture-misbehave", "fixture_misbehave"),
    ("fixture-liar", "fixture_liar"),
    ("fixture-badname", "fixture_badname"),
    ("fixture-passthrough", "fixture_passthrough"),
    ("fixture-malformed", "fixture_malformed"),
];
/// Plugins that wrap another plugin's crate with its export turned off: built by a
/// cargo of their own, since one build unifies features (and would export both).
const WRAPPERS: &[(&str, &str)] = &[
    ("fixture-dedupe-next", "fixture_dedupe_next"),
    ("fixture-overclaim", "fixture_overclaim"),
    ("fixture-columns", "fixture_columns"),
];
const WASM_TARGET: &str = "wasm32-unknown-unknown";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().and_then(Path::parent).unwrap().to_path_buf();
    // Relative to this package: cargo shares build-script state between checkouts of
    // the same workspace in one target dir, and each must watch its own sources.
    for watched in ["../../plugins", "../../wit", "../../Cargo.toml", "../../Cargo.lock"] {
        println!("cargo:rerun-if-changed={watched}");
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| if d.is_absolute() { d } else { workspace.join(d) })
        .unwrap_or_else(|| workspace.join("target"));
    let plugin_target = target_dir.join("plugins");
    // Wrappers get a target dir of their own: their build of the wrapped crate (export
    // off) must never overwrite the wrapped plugin's own module.
    let wrapper_target = plugin_target.join("wrappers");
    build_core_modules(&workspace, &plugin_target, PLUGINS);
    build_core_modules(&workspace, &wrapper_target, WRAPPERS);

    let out = plugin_target.join("components");
    std::fs::create_dir_all(&out).unwrap();
    let all =
        PLUGINS.iter().map(|p| (p, &plugin_target)).chain(WRAPPERS.iter().map(|p| (p, &wrapper_target)));
    for ((_, name), target) in all {
        let module = target.join(WASM_TARGET).join("plugin").join(format!("streamgate_{name}.wasm"));
        componentize(&module, &out.join(format!("{name}.wasm")));
    }
    println!("cargo:rustc-env=STREAMGATE_PLUGIN_DIR={}", out.display());
}

fn build_core_modules(workspace: &Path, plugin_target: &Path, plugins: &[(&str, &str)]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--profile", "plugin", "--target", WASM_TARGET])
        .arg("--target-dir")
        .arg(plugin_target);
    for (name, _) in plugins {
        cmd.args(["-p", &format!("streamgate-{name}")]);
    }
    // The outer build's flags and wrappers (clippy, coverage) are not the plugins' business.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("running cargo to build the plugins");
    if !status.success() {
        panic!(
            "building the policy plugins failed ({status}); \
             is the target installed? run `rustup target add {WASM_TARGET}`"
        );
    }
}

fn componentize(module: &Path, component: &Path) {
    let bytes =
        std::fs::read(module).unwrap_or_else(|e| panic!("reading plugin module {}: {e}", module.display()));
    let encoded = wit_component::ComponentEncoder::default()
        .module(&bytes)
        .and_then(|enc| enc.validate(true).encode())
        .unwrap_or_else(|e| panic!("making a component of {}: {e:#}", module.display()));
    std::fs::write(component, encoded).unwrap();
}
