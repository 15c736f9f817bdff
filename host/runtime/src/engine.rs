//! The one wasmtime [`Engine`] of a process, with its epoch ticker and the empty
//! linker: compiling and checking a component happens here, once; stages are then
//! stamped out of the resulting [`Plugin`].

use std::sync::Arc;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use crate::plugin::{Plugin, PluginError, check_world, wasm_kind};
use crate::sandbox::StageState;
use crate::sandbox::{EPOCH_TICK, SandboxConfig, StageLimits};
use crate::stage::WasmStage;
use crate::world::WorldPre;

/// Shared compilation engine and sandbox limits (cheap to clone).
#[derive(Clone)]
pub struct PolicyRuntime {
    engine: Engine,
    linker: Arc<Linker<StageState>>,
    sandbox: SandboxConfig,
}

impl PolicyRuntime {
    /// Creates the engine and starts its epoch ticker (stops when the engine is gone).
    pub fn new(sandbox: &SandboxConfig) -> Self {
        let mut config = Config::new();
        config.wasm_component_model(true).epoch_interruption(true).consume_fuel(true);
        // Every instance must decide alike, whatever CPU it runs on: the few Wasm results
        // the spec leaves to the platform (a NaN's bits, relaxed SIMD) are fixed too.
        config.cranelift_nan_canonicalization(true).relaxed_simd_deterministic(true);
        let engine = Engine::new(&config).expect("static engine config is valid");
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .expect("spawning the epoch thread");
        // Empty on purpose: a plugin gets no imports at all.
        let linker = Arc::new(Linker::new(&engine));
        PolicyRuntime { engine, linker, sandbox: sandbox.clone() }
    }

    pub fn sandbox(&self) -> &SandboxConfig {
        &self.sandbox
    }

    /// The sandbox limits, with a tenant's own call timeout if it has one.
    pub fn limits(&self, call_timeout: Option<std::time::Duration>) -> StageLimits {
        self.sandbox.limits(call_timeout)
    }

    /// Compiles and checks a component (a component, importing nothing, exporting the
    /// policy interface of a supported world, describing itself); the result instantiates
    /// stages cheaply.
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<Plugin>, PluginError> {
        wasm_kind(bytes).map_err(PluginError::NotAComponent)?;
        let component =
            Component::new(&self.engine, bytes).map_err(|e| PluginError::NotAComponent(format!("{e:#}")))?;
        let world = check_world(&self.engine, &component)?;
        let pre =
            self.linker.instantiate_pre(&component).map_err(|e| PluginError::WrongWorld(format!("{e:#}")))?;
        let pre = WorldPre::new(world, pre).map_err(|e| PluginError::WrongWorld(format!("{e:#}")))?;
        let limits = self.sandbox.limits(None);
        let description = WasmStage::describe(&pre, &self.engine, limits).map_err(PluginError::Describe)?;
        crate::plugin::check_description(&description.name, &description.version)?;
        Ok(Arc::new(Plugin::new(pre, self.engine.clone(), description, bytes)))
    }

    /// Loads `builtin:NAME` or a component file path.
    pub fn load_ref(&self, plugin: &str) -> Result<Arc<Plugin>, PluginError> {
        self.load(&crate::builtin::read_ref(plugin)?)
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::{Instance, Module, Store};

    use super::*;

    /// Calls `name` (no parameters, one result) of the core module `wat`, compiled by
    /// the runtime's engine.
    fn call<R: wasmtime::WasmResults>(wat: &str, name: &str) -> R {
        let runtime = PolicyRuntime::new(&SandboxConfig::default());
        let module = Module::new(&runtime.engine, wat::parse_str(wat).unwrap()).unwrap();
        let mut store = Store::new(&runtime.engine, ());
        store.set_fuel(1_000).unwrap();
        store.set_epoch_deadline(1 << 30);
        let instance = Instance::new(&mut store, &module, &[]).unwrap();
        instance.get_typed_func::<(), R>(&mut store, name).unwrap().call(&mut store, ()).unwrap()
    }

    #[test]
    fn a_nan_has_the_same_bits_on_every_cpu() {
        // 0/0 is a negative NaN on x86-64 and a positive one on AArch64, unless canonical.
        let wat = r#"(module (func (export "nan") (result i64)
            f64.const 0 f64.const 0 f64.div i64.reinterpret_f64))"#;
        assert_eq!(call::<i64>(wat, "nan") as u64, 0x7ff8_0000_0000_0000);
    }

    #[test]
    fn relaxed_simd_gives_its_deterministic_answer() {
        // Lane index 17 is out of range: 0 deterministically, lane 1 with x86-64's pshufb.
        let wat = r#"(module (func (export "lane") (result i32)
            v128.const i8x16 0 7 0 0 0 0 0 0 0 0 0 0 0 0 0 0
            v128.const i8x16 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
            i8x16.relaxed_swizzle
            i8x16.extract_lane_u 0))"#;
        assert_eq!(call::<i32>(wat, "lane"), 0);
    }
}
