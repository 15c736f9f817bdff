//! A compiled, checked policy component: refused at load if it is not a component,
//! imports anything, or exports no supported version of `streamgate:policy/policy`
//! ([`World::SUPPORTED`]: 0.1.0, 0.2.0 and 0.3.0); once loaded it instantiates stages without
//! recompiling. Identified by the sha256 of its bytes.

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::{Component, types::ComponentItem};

use crate::bindings::wit;
use crate::sandbox::StageLimits;
use crate::stage::{StageError, WasmStage};
use crate::world::{World, WorldPre};

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error(
        "not a Wasm component ({0}); build the plugin as a component of {supported}",
        supported = World::supported_list()
    )]
    NotAComponent(String),
    #[error(
        "the component imports {0}, which streamgate does not provide: plugins get no WASI \
         (no files, env, clock, random, network); build for wasm32-unknown-unknown"
    )]
    ForbiddenImports(String),
    #[error(
        "the component does not export a supported policy world ({supported}) as expected: {0}",
        supported = World::supported_list()
    )]
    WrongWorld(String),
    #[error("the plugin failed while describing itself: {0}")]
    Describe(#[source] StageError),
    #[error("the plugin's description is refused: {0}")]
    BadDescription(String),
    #[error("unknown builtin plugin {0:?}; builtins are: {1}")]
    UnknownBuiltin(String, String),
    #[error("cannot read plugin file {0}: {1}")]
    Read(String, std::io::Error),
}

/// Longest plugin name or version accepted.
const MAX_LABEL_PART: usize = 64;

/// A plugin names itself in metrics labels, log lines and the admin API, so its name and
/// version must be short and plain: ASCII letters, digits, `.`, `_`, `-` (and `+` in a
/// version). Anything else (quotes, newlines, braces) is refused at load, not escaped
/// later.
pub(crate) fn check_description(name: &str, version: &str) -> Result<(), PluginError> {
    let plain = |s: &str, extra: &[u8]| {
        !s.is_empty()
            && s.len() <= MAX_LABEL_PART
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b) || extra.contains(&b))
    };
    if !plain(name, b"") {
        return Err(PluginError::BadDescription(format!(
            "name {name:?} must be 1 to {MAX_LABEL_PART} ASCII letters, digits, '.', '_' or '-'"
        )));
    }
    if !plain(version, b"+") {
        return Err(PluginError::BadDescription(format!(
            "version {version:?} must be 1 to {MAX_LABEL_PART} ASCII letters, digits, '.', '_', '-' or '+'"
        )));
    }
    Ok(())
}

/// What the first eight bytes say a binary is.
pub(crate) fn wasm_kind(bytes: &[u8]) -> Result<(), String> {
    const MAGIC: &[u8] = b"\0asm";
    const COMPONENT_VERSION: &[u8] = &[0x0d, 0x00, 0x01, 0x00];
    match (bytes.get(..4), bytes.get(4..8)) {
        (Some(MAGIC), Some(COMPONENT_VERSION)) => Ok(()),
        (Some(MAGIC), Some(_)) => Err("it is a core Wasm module, not a component".into()),
        _ => Err("it does not start with the Wasm magic bytes".into()),
    }
}

/// No imports at all, and the policy interface of a supported world exported: the
/// newest one if a component exports several.
pub(crate) fn check_world(engine: &Engine, component: &Component) -> Result<World, PluginError> {
    let ty = component.component_type();
    let imports: Vec<String> = ty.imports(engine).map(|(name, _)| name.to_string()).collect();
    if !imports.is_empty() {
        return Err(PluginError::ForbiddenImports(imports.join(", ")));
    }
    let exports = |world: World| {
        ty.exports(engine).any(|(name, item)| {
            name == world.interface() && matches!(item.ty, ComponentItem::ComponentInstance(_))
        })
    };
    match World::SUPPORTED.into_iter().rev().find(|&w| exports(w)) {
        Some(world) => Ok(world),
        None => {
            let names: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
            Err(PluginError::WrongWorld(format!("it exports [{}]", names.join(", "))))
        }
    }
}

/// `sha256:` followed by the lowercase hex digest of `bytes`: a plugin's reference.
pub fn plugin_ref(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Whether `r` is a well-formed `sha256:HEX` reference.
pub fn is_plugin_ref(r: &str) -> bool {
    r.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// A compiled, checked plugin: instantiates stages without recompiling.
pub struct Plugin {
    pre: WorldPre,
    engine: Engine,
    description: wit::Description,
    /// `sha256:HEX` of the component's bytes.
    digest: String,
}

impl Plugin {
    pub(crate) fn new(pre: WorldPre, engine: Engine, description: wit::Description, bytes: &[u8]) -> Self {
        Plugin { pre, engine, description, digest: plugin_ref(bytes) }
    }

    pub fn description(&self) -> &wit::Description {
        &self.description
    }

    /// The policy world the component exports.
    pub fn world(&self) -> World {
        self.pre.world()
    }

    /// What the plugin's `describe` lists: for 0.1.0 the claims of every stage, for 0.2.0
    /// every capability some config can give (ask a stage, [`WasmStage::capabilities`]).
    pub fn described_capabilities(&self) -> &[wit::Capability] {
        &self.description.capabilities
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
        WasmStage::create(&self.pre, &self.engine, limits, config, &self.description.capabilities)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PolicyRuntime, SandboxConfig};

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

    const SUPPORTED: &str = "streamgate:policy@0.1.0 or streamgate:policy@0.2.0 or streamgate:policy@0.3.0 \
                             or streamgate:policy@0.4.0";

    #[test]
    fn a_component_of_another_world_is_refused() {
        let err = load_err("(component)");
        assert!(err.contains("does not export a supported policy world"), "{err}");
        assert!(err.contains(SUPPORTED), "{err}");
    }

    #[test]
    fn a_component_of_an_unsupported_version_is_refused_naming_the_supported_ones() {
        let err =
            load_err(r#"(component (instance $i) (export "streamgate:policy/policy@0.5.0" (instance $i)))"#);
        assert!(err.contains("it exports [streamgate:policy/policy@0.5.0]"), "{err}");
        assert!(err.contains(SUPPORTED), "{err}");
        // The right name is not enough: the interface must have 0.2.0's functions.
        let err =
            load_err(r#"(component (instance $i) (export "streamgate:policy/policy@0.2.0" (instance $i)))"#);
        assert!(
            err.contains("does not export a supported policy world") && err.contains("describe"),
            "{err}"
        );
    }

    #[test]
    fn builtins_describe_themselves() {
        let runtime = PolicyRuntime::new(&SandboxConfig::default());
        for name in crate::builtin::NAMES {
            let plugin = runtime.load_ref(&format!("builtin:{name}")).unwrap();
            assert_eq!(plugin.description().name, *name);
            assert_eq!(plugin.label(), format!("{name}@0.1.0"));
            let world = plugin.world();
            assert!(World::SUPPORTED.contains(&world), "{name}: {world}");
        }
    }

    #[test]
    fn descriptions_that_would_break_labels_or_logs_are_refused() {
        assert!(check_description("dedupe", "0.1.0").is_ok());
        assert!(check_description("my_plugin-2", "1.0.0-rc.1+build.5").is_ok());
        let long = "x".repeat(65);
        for (name, version) in [
            ("", "1.0.0"),
            ("a\"b", "1.0.0"),
            ("evil\nstreamgate_up 0", "1.0.0"),
            ("a}b", "1.0.0"),
            ("naïve", "1.0.0"),
            (long.as_str(), "1.0.0"),
            ("ok", ""),
            ("ok", "1.0.0\"} 9"),
            ("ok", "1 0"),
        ] {
            let e = check_description(name, version).expect_err(name);
            assert!(e.to_string().contains("description is refused"), "{e}");
        }
    }

    #[test]
    fn a_component_naming_itself_with_a_fake_metric_line_is_refused_at_load() {
        let runtime = PolicyRuntime::new(&SandboxConfig::default());
        let path = crate::builtin::component_path("fixture_badname");
        let e = runtime.load_ref(&path).err().expect("refused").to_string();
        assert!(e.contains("description is refused") && e.contains("must be 1 to 64"), "{e}");
    }

    #[test]
    fn plugin_refs_are_sha256_hex() {
        let r = plugin_ref(b"abc");
        assert_eq!(r, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(is_plugin_ref(&r));
        assert!(!is_plugin_ref("sha256:BA78"));
        assert!(!is_plugin_ref("builtin:dedupe"));
    }
}
