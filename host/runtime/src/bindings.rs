//! Host bindings for the root `wit/` package: the one `bindgen!` in streamgate. The
//! boundary types ([`wit::Event`], [`wit::Decisions`], ...) carry metadata only; payloads
//! stay in the host.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "policy-plugin",
});

/// The `streamgate:policy/policy` interface's types, as the host sees them.
pub use exports::streamgate::policy::policy as wit;

/// The SDK's name of a drop reason's WIT twin (one mapping, used by the chain's metrics
/// and the kit).
impl From<wit::DropReason> for streamgate_plugin_sdk::DropReason {
    fn from(r: wit::DropReason) -> Self {
        use streamgate_plugin_sdk::DropReason as D;
        match r {
            wit::DropReason::Stale => D::Stale,
            wit::DropReason::Duplicate => D::Duplicate,
            wit::DropReason::OutOfDate => D::OutOfDate,
            wit::DropReason::Superseded => D::Superseded,
            wit::DropReason::Filtered => D::Filtered,
            wit::DropReason::Overflow => D::Overflow,
        }
    }
}

impl From<&streamgate_plugin_sdk::Event> for wit::Event {
    fn from(e: &streamgate_plugin_sdk::Event) -> Self {
        wit::Event {
            seq: e.seq,
            key: e.key,
            event_time: e.event_time,
            log_time: e.log_time,
            id: e.id,
            tag: e.tag,
        }
    }
}

impl From<&wit::Event> for streamgate_plugin_sdk::Event {
    fn from(e: &wit::Event) -> Self {
        streamgate_plugin_sdk::Event {
            seq: e.seq,
            key: e.key,
            event_time: e.event_time,
            log_time: e.log_time,
            id: e.id,
            tag: e.tag,
        }
    }
}
