//! Host bindings for the supported versions of `streamgate:policy`, one `bindgen!`
//! each: [`v0_1`] from the root `wit/` package (0.1.0), [`v0_2`] from `wit/v0.2.0/`,
//! [`v0_3`] from `wit/v0.3.0/`, [`v0_4`] from `wit/v0.4.0/`.
//! The boundary types ([`wit::Event`], [`Decisions`], ...) carry metadata only; payloads
//! stay in the host.
//!
//! The host speaks in 0.1.0's types ([`wit`]) for both worlds: 0.2.0's records and enums
//! with the same names are the same shapes, so a 0.2.0 stage's `push` is called with
//! 0.1.0's [`wit::Event`] and answers straight into [`Decisions`] (see
//! [`crate::stage`]): no copy or conversion on the hot path. What 0.2.0 adds
//! (`stage.capabilities`, `decisions.expired`) is converted where it is read. 0.3.0
//! passes the batch as columns of numbers and the drops as two lists
//! ([`columns`](crate::world)), which cross the boundary as blocks; 0.4.0 passes the
//! batch and the answer as one list of words each ([`crate::rows`]).

/// Bindings of `streamgate:policy@0.1.0` (world `policy-plugin`).
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "streamgate:policy/policy-plugin@0.1.0",
    });
}

/// Bindings of `streamgate:policy@0.2.0` (world `policy-plugin`).
pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.2.0",
        world: "streamgate:policy/policy-plugin@0.2.0",
    });
}

/// Bindings of `streamgate:policy@0.3.0` (world `policy-plugin`).
pub mod v0_3 {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.3.0",
        world: "streamgate:policy/policy-plugin@0.3.0",
    });
}

/// Bindings of `streamgate:policy@0.4.0` (world `policy-plugin`).
pub mod v0_4 {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.4.0",
        world: "streamgate:policy/policy-plugin@0.4.0",
    });
}

/// The `streamgate:policy/policy@0.1.0` interface's types: the host's boundary types
/// for every world.
pub use v0_1::exports::streamgate::policy::policy as wit;
/// The `streamgate:policy/policy@0.2.0` interface, for what only 0.2.0 has.
pub use v0_2::exports::streamgate::policy::policy as wit_v0_2;
/// The `streamgate:policy/policy@0.3.0` interface: its columns and drop lists.
pub use v0_3::exports::streamgate::policy::policy as wit_v0_3;
/// The `streamgate:policy/policy@0.4.0` interface: its batch and answer are words.
pub use v0_4::exports::streamgate::policy::policy as wit_v0_4;

/// A stage's answer to one `push`, in any world: `released` in emission order,
/// `dropped` with reasons, and `expired`, the key hashes the stage declares expired at
/// this push (always empty from a 0.1.0 stage). The chain unions `expired` over its
/// stages and the server removes those keys' latest values at that log position.
///
/// Lifted directly from a 0.2.0 stage's `decisions` record (same field names and types);
/// a 0.3.0 answer is converted ([`crate::columns`]), a 0.4.0 one read from its words
/// ([`crate::rows`]).
#[derive(Clone, Debug, Default, wasmtime::component::ComponentType, wasmtime::component::Lift)]
#[component(record)]
pub struct Decisions {
    pub released: Vec<u64>,
    pub dropped: Vec<wit::Dropped>,
    pub expired: Vec<u64>,
}

impl From<wit::Decisions> for Decisions {
    /// A 0.1.0 answer: nothing expired (`Vec::new` does not allocate).
    fn from(d: wit::Decisions) -> Self {
        Decisions { released: d.released, dropped: d.dropped, expired: Vec::new() }
    }
}

/// The capability and description types of a later world into 0.1.0's (same shapes).
macro_rules! from_later_world {
    ($world:ident) => {
        impl From<$world::Capability> for wit::Capability {
            fn from(c: $world::Capability) -> Self {
                use $world::Capability as C;
                match c {
                    C::Ordering => wit::Capability::Ordering,
                    C::Staleness => wit::Capability::Staleness,
                    C::Dedupe => wit::Capability::Dedupe,
                    C::Filter => wit::Capability::Filter,
                    C::Coalesce => wit::Capability::Coalesce,
                }
            }
        }

        impl From<$world::Description> for wit::Description {
            fn from(d: $world::Description) -> Self {
                wit::Description {
                    name: d.name,
                    version: d.version,
                    capabilities: d.capabilities.into_iter().map(Into::into).collect(),
                    state_version: d.state_version,
                }
            }
        }
    };
}

from_later_world!(wit_v0_2);
from_later_world!(wit_v0_3);
from_later_world!(wit_v0_4);

/// A drop reason from its 0.3.0 or 0.4.0 code (its position in the enum); `None` if unknown.
pub fn drop_reason_of_code(code: u8) -> Option<wit::DropReason> {
    use wit::DropReason as R;
    [R::Stale, R::Duplicate, R::OutOfDate, R::Superseded, R::Filtered, R::Overflow]
        .get(code as usize)
        .copied()
}

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
