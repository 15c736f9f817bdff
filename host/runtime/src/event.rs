//! The host's event: what a source decoded, the bus carried, the chain holds while its
//! stages decide, and the hub sends. Plugins never see it whole: they get its metadata
//! ([`crate::wit::Event`]) with the key hashed by [`key_hash`].

use bytes::Bytes;

/// One event on its way from a source to the browsers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub key: String,
    /// ms since the Unix epoch, from the payload.
    pub event_time: i64,
    /// [`key_hash`] of the idempotency id, 0 when the tenant declares none.
    pub id: u64,
    /// [`key_hash`] of the tag, 0 when the tenant declares none.
    pub tag: u64,
    /// The original JSON object, one line.
    pub payload: Bytes,
}

/// Stable 64-bit hash (xxh3, seed 0) of keys, ids and tags: identical on every
/// instance and version, and the same function plugins get from the SDK.
pub fn key_hash(key: &str) -> u64 {
    streamgate_plugin_sdk::hash(key)
}
