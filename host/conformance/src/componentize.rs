//! Turns a plugin's core Wasm module (what `cargo build --target wasm32-unknown-unknown`
//! writes) into the component streamgate loads, using the component-type section that
//! `wit-bindgen` embeds in the module (`streamgate componentize`).

use streamgate_runtime::{PluginError, PolicyRuntime, SandboxConfig};

#[derive(Debug, thiserror::Error)]
pub enum ComponentizeError {
    #[error("{0} is already a component: give it to `streamgate conformance` as it is")]
    AlreadyComponent(String),
    #[error("{0} is not a Wasm module (no Wasm magic bytes); pass the .wasm file cargo built")]
    NotWasm(String),
    #[error(
        "cannot make a component of {path}: {reason}\n\
         (build the plugin with the SDK's export_policy! or export_policy_v2! for wasm32-unknown-unknown, which embeds \
         the streamgate:policy world and needs no WASI imports)"
    )]
    Encode { path: String, reason: String },
    #[error(
        "the component made of {path} is not a streamgate policy plugin: {source}\n\
         (call streamgate_plugin_sdk::export_policy! or export_policy_v2! once at the crate root)"
    )]
    NotAPolicy { path: String, source: PluginError },
}

/// The component for a core module's bytes, checked to load as a policy plugin (as
/// production loads it); `path` names the module in errors.
pub fn componentize(path: &str, module: &[u8]) -> Result<Vec<u8>, ComponentizeError> {
    match (module.get(..4), module.get(4..8)) {
        (Some(b"\0asm"), Some([1, 0, 0, 0])) => {}
        (Some(b"\0asm"), Some(_)) => return Err(ComponentizeError::AlreadyComponent(path.into())),
        _ => return Err(ComponentizeError::NotWasm(path.into())),
    }
    let component = wit_component::ComponentEncoder::default()
        .module(module)
        .and_then(|encoder| encoder.validate(true).encode())
        .map_err(|e| ComponentizeError::Encode { path: path.into(), reason: format!("{e:#}") })?;
    PolicyRuntime::new(&SandboxConfig::default())
        .load(&component)
        .map_err(|source| ComponentizeError::NotAPolicy { path: path.into(), source })?;
    Ok(component)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_core_module_saying_what_it_is() {
        let component = streamgate_runtime::builtin::component("staleness").unwrap();
        let e = componentize("p.wasm", component).unwrap_err().to_string();
        assert!(e.contains("already a component"), "{e}");
        let e = componentize("p.wasm", b"hello").unwrap_err().to_string();
        assert!(e.contains("not a Wasm module"), "{e}");
        let bare = wat::parse_str("(module)").unwrap();
        let e = componentize("p.wasm", &bare).unwrap_err().to_string();
        assert!(e.contains("not a streamgate policy plugin") && e.contains("export_policy!"), "{e}");
        assert!(e.contains("does not export a supported policy world"), "{e}");
        let wasi = wat::parse_str(r#"(module (import "wasi_snapshot_preview1" "fd_write" (func)))"#).unwrap();
        let e = componentize("p.wasm", &wasi).unwrap_err().to_string();
        assert!(
            e.contains("cannot make a component of p.wasm") && e.contains("wasm32-unknown-unknown"),
            "{e}"
        );
    }
}
