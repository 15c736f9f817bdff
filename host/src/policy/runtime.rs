//! The one wasmtime [`Engine`] and component loading: compile once, check the
//! component's imports and world, `instantiate_pre` once, then stamp out stages.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, Linker, types::ComponentItem};
use wasmtime::{Config, Engine};

use super::bindings::{PolicyPluginPre, wit};
use super::stage::{StageError, StageLimits, StageState, WasmStage};
use crate::config::SandboxConfig;

/// How often the epoch ticks; call budgets are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("not a Wasm component ({0}); build the plugin as a component of streamgate:policy@0.1.0")]
    NotAComponent(String),
    #[error(
        "the component imports {0}, which streamgate does not provide: plugins get no WASI \
         (no files, env, clock, random, network); build for wasm32-unknown-unknown"
    )]
    ForbiddenImports(String),
    #[error("the component does not export streamgate:policy/policy@0.1.0 as expected: {0}")]
    WrongWorld(String),
    #[error("the plugin failed while describing itself: {0}")]
    Describe(#[source] StageError),
    #[error("unknown builtin plugin {0:?}; builtins are: {1}")]
    UnknownBuiltin(String, String),
    #[error("cannot read plugin file {0}: {1}")]
    Read(String, std::io::Error),
}

/// Shared compilation engine and sandbox limits.
#[derive(Clone)]
pub struct PolicyRuntime {
    engine: Engine,
    linker: Arc<Linker<StageState>>,
    limits: StageLimits,
    sandbox: SandboxConfig,
}

impl PolicyRuntime {
    /// Creates the engine and starts its epoch ticker (stops when the engine is gone).
    pub fn new(sandbox: &SandboxConfig) -> Self {
        let mut config = Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
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
        let limits = StageLimits {
            deadline_ticks: deadline_ticks(sandbox.call_timeout_ms),
            max_memory_bytes: sandbox.max_memory_bytes,
            max_table_elements: sandbox.max_table_elements,
        };
        PolicyRuntime { engine, linker, limits, sandbox: sandbox.clone() }
    }

    pub fn sandbox(&self) -> &SandboxConfig {
        &self.sandbox
    }

    /// The sandbox limits, with a tenant's own call budget if it has one.
    pub fn limits(&self, call_timeout_ms: Option<u64>) -> StageLimits {
        match call_timeout_ms {
            Some(ms) => StageLimits { deadline_ticks: deadline_ticks(ms), ..self.limits },
            None => self.limits,
        }
    }

    /// Compiles and checks a component; the result instantiates stages cheaply.
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<Plugin>, PluginError> {
        wasm_kind(bytes).map_err(PluginError::NotAComponent)?;
        let component =
            Component::new(&self.engine, bytes).map_err(|e| PluginError::NotAComponent(format!("{e:#}")))?;
        let ty = component.component_type();
        let imports: Vec<String> = ty.imports(&self.engine).map(|(name, _)| name.to_string()).collect();
        if !imports.is_empty() {
            return Err(PluginError::ForbiddenImports(imports.join(", ")));
        }
        let exports_policy = ty.exports(&self.engine).any(|(name, item)| {
            name == "streamgate:policy/policy@0.1.0" && matches!(item.ty, ComponentItem::ComponentInstance(_))
        });
        if !exports_policy {
            let names: Vec<String> = ty.exports(&self.engine).map(|(n, _)| n.to_string()).collect();
            return Err(PluginError::WrongWorld(format!("it exports [{}]", names.join(", "))));
        }
        let pre =
            self.linker.instantiate_pre(&component).map_err(|e| PluginError::WrongWorld(format!("{e:#}")))?;
        let pre = PolicyPluginPre::new(pre).map_err(|e| PluginError::WrongWorld(format!("{e:#}")))?;
        let description =
            WasmStage::describe(&pre, &self.engine, self.limits).map_err(PluginError::Describe)?;
        let digest = crate::store::plugin_ref(bytes);
        Ok(Arc::new(Plugin { pre, engine: self.engine.clone(), description, digest }))
    }

    /// Loads `builtin:NAME` or a component file path.
    pub fn load_ref(&self, plugin: &str) -> Result<Arc<Plugin>, PluginError> {
        if let Some(name) = plugin.strip_prefix("builtin:") {
            let bytes = super::builtin_plugin(name).ok_or_else(|| {
                PluginError::UnknownBuiltin(name.to_string(), super::BUILTIN_PLUGINS.join(", "))
            })?;
            return self.load(bytes);
        }
        let bytes = std::fs::read(plugin).map_err(|e| PluginError::Read(plugin.to_string(), e))?;
        self.load(&bytes)
    }
}

fn deadline_ticks(call_timeout_ms: u64) -> u64 {
    (call_timeout_ms / EPOCH_TICK.as_millis() as u64).max(1)
}

/// What the first eight bytes say a binary is.
fn wasm_kind(bytes: &[u8]) -> Result<(), String> {
    const MAGIC: &[u8] = b"\0asm";
    const COMPONENT_VERSION: &[u8] = &[0x0d, 0x00, 0x01, 0x00];
    match (bytes.get(..4), bytes.get(4..8)) {
        (Some(MAGIC), Some(COMPONENT_VERSION)) => Ok(()),
        (Some(MAGIC), Some(_)) => Err("it is a core Wasm module, not a component".into()),
        _ => Err("it does not start with the Wasm magic bytes".into()),
    }
}

/// A compiled, checked plugin: instantiates stages without recompiling.
pub struct Plugin {
    pre: PolicyPluginPre<StageState>,
    engine: Engine,
    description: wit::Description,
    /// `sha256:HEX` of the component's bytes.
    digest: String,
}

impl Plugin {
    pub fn description(&self) -> &wit::Description {
        &self.description
    }

    /// `sha256:HEX` of the component: two plugins with the same digest are the same code.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// `name@version`, for logs and metrics.
    pub fn label(&self) -> String {
        format!("{}@{}", self.description.name, self.description.version)
    }

    /// A new stage in its own store under `limits`, created from `config`.
    pub fn stage(&self, config: &str, limits: StageLimits) -> Result<WasmStage, StageError> {
        WasmStage::create(&self.pre, &self.engine, limits, config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_err(wat_text: &str) -> String {
        let runtime = PolicyRuntime::new(&SandboxConfig::default());
        let bytes = wat::parse_str(wat_text).expect("valid component text");
        match runtime.load(&bytes) {
            Ok(_) => panic!("loading must fail"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn imports_are_refused_at_load_naming_them() {
        let err = load_err(
            r#"(component
                (import "wasi:cli/environment@0.2.6" (instance))
                (import "wasi:random/random@0.2.6" (instance)))"#,
        );
        assert!(err.contains("wasi:cli/environment@0.2.6"), "{err}");
        assert!(err.contains("wasi:random/random@0.2.6"), "{err}");
        assert!(err.contains("no WASI"), "{err}");
    }

    #[test]
    fn a_component_of_another_world_is_refused() {
        let err = load_err("(component)");
        assert!(err.contains("does not export streamgate:policy/policy@0.1.0"), "{err}");
    }

    #[test]
    fn builtins_describe_themselves() {
        let runtime = PolicyRuntime::new(&SandboxConfig::default());
        for name in crate::policy::BUILTIN_PLUGINS {
            let plugin = runtime.load_ref(&format!("builtin:{name}")).unwrap();
            assert_eq!(plugin.description().name, *name);
            assert_eq!(plugin.label(), format!("{name}@0.1.0"));
        }
    }
}
