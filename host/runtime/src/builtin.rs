//! The plugins built from `plugins/` by `build.rs` (so tests, benchmarks and the binary
//! always run this checkout's plugins), embedded for `builtin:NAME`, and local files.

use bytes::Bytes;

use crate::plugin::PluginError;

/// Where `build.rs` put the components (builtins and test fixtures), for tests.
pub const COMPONENT_DIR: &str = env!("STREAMGATE_PLUGIN_DIR");

/// Names accepted after `builtin:`.
pub const NAMES: &[&str] = &["staleness", "dedupe", "ordering", "coalesce"];

/// The component of a builtin plugin.
pub fn component(name: &str) -> Option<&'static [u8]> {
    macro_rules! component {
        ($name:literal) => {
            include_bytes!(concat!(env!("STREAMGATE_PLUGIN_DIR"), "/", $name, ".wasm"))
        };
    }
    match name {
        "staleness" => Some(component!("staleness")),
        "dedupe" => Some(component!("dedupe")),
        "ordering" => Some(component!("ordering")),
        "coalesce" => Some(component!("coalesce")),
        _ => None,
    }
}

/// A test fixture's or builtin's component file, e.g. `fixture_misbehave`.
pub fn component_path(name: &str) -> String {
    format!("{COMPONENT_DIR}/{name}.wasm")
}

/// The bytes of `builtin:NAME`.
pub fn builtin_bytes(name: &str) -> Result<Bytes, PluginError> {
    component(name)
        .map(Bytes::from_static)
        .ok_or_else(|| PluginError::UnknownBuiltin(name.to_string(), NAMES.join(", ")))
}

/// The bytes of `builtin:NAME` or of a component file.
pub fn read_ref(plugin: &str) -> Result<Bytes, PluginError> {
    match plugin.strip_prefix("builtin:") {
        Some(name) => builtin_bytes(name),
        None => std::fs::read(plugin).map(Bytes::from).map_err(|e| PluginError::Read(plugin.to_string(), e)),
    }
}
