//! Policy plugins in wasmtime: compiling and checking components ([`runtime`]), one
//! sandboxed stage per store ([`stage`]), and a tenant's chain of stages ([`chain`]).

pub mod chain;
pub mod runtime;
pub mod stage;

/// Host bindings for the root `wit/` package (the one `bindgen!` in the host).
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "policy-plugin",
    });
    pub use exports::streamgate::policy::policy as wit;
}

pub use chain::{Chain, ChainOutput, PendingEvent};
pub use runtime::{Plugin, PluginError, PolicyRuntime};
pub use stage::{StageError, StageLimits, WasmStage};

/// The plugins built from `plugins/` by `host/build.rs`, embedded in the binary.
pub fn builtin_plugin(name: &str) -> Option<&'static [u8]> {
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

/// Names accepted after `builtin:`.
pub const BUILTIN_PLUGINS: &[&str] = &["staleness", "dedupe", "ordering", "coalesce"];
