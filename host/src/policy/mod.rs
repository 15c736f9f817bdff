//! Policy plugins in wasmtime: compiling and checking components ([`runtime`]), one
//! sandboxed stage per store ([`stage`]), a tenant's chain of stages ([`chain`]), the
//! chain as data and its control message ([`spec`]), finding and preparing plugins
//! ([`catalog`]), and replacing a running chain ([`swap`]).

pub mod catalog;
pub mod chain;
pub mod runtime;
pub mod spec;
pub mod stage;
pub mod swap;

/// Host bindings for the root `wit/` package (the one `bindgen!` in the host).
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "policy-plugin",
    });
    pub use exports::streamgate::policy::policy as wit;
}

pub use catalog::{Catalog, CatalogError};
pub use chain::{Chain, ChainOutput, PendingEvent, PreparedChain};
pub use runtime::{Plugin, PluginError, PolicyRuntime};
pub use spec::{ChainSpec, Control, StageSpec};
pub use stage::{StageError, StageLimits, WasmStage};
pub use swap::{StateTransfer, SwapReport};

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
