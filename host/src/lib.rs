//! streamgate: Kafka → Redis log → Wasm policies → Server-Sent Events.
//!
//! Layout, in the order data flows:
//!
//! - [`config`]: the TOML config and its env overrides.
//! - [`event`]: a source event, the bus batch encoding, key hashing.
//! - [`source`]: reading Kafka (or the built-in simulator), decoding JSON payloads,
//!   batching them onto the bus; Kafka offsets are stored only once a batch is on it.
//! - [`bus`]: one totally ordered log per tenant (Redis Streams, Redis pub/sub or
//!   in memory) that every instance reads whole, in the same order.
//! - [`policy`]: the wasmtime runtime and the per-tenant chain of policy stages.
//! - [`tenant`]: runs one tenant: log reader, heartbeats, the policy worker thread.
//! - [`hub`]: serialised SSE frames, history ring for resume, latest value per key.
//! - [`http`]: the HTTP surface (SSE, snapshot, health, metrics, web UI).
//! - [`auth`]: optional JWT authorization of subscribers, per tenant.
//! - [`metrics`]: counters rendered as Prometheus text.
//! - [`sim`]: the taxi simulator behind `streamgate demo` and `streamgate simulate`,
//!   and [`queue_sim`], the demo's waiting queue.
//! - [`app`]: wires it all together for `run` and `demo`.
//! - [`conformance`]: the plugin conformance kit (`streamgate conformance`), and
//!   [`componentize`], which makes a plugin's core module a component.

pub mod app;
pub mod auth;
pub mod bus;
pub mod componentize;
pub mod config;
pub mod conformance;
pub mod event;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod policy;
pub mod queue_sim;
pub mod sim;
pub mod source;
pub mod tenant;
