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
//! - [`store`]: uploaded plugins (by sha256) and chain history, in Redis or memory.
//! - [`tenant`]: runs one tenant: log reader, heartbeats, the policy worker thread.
//! - [`control`]: changing chains cluster-wide (admin API, `plugins_dir` watcher).
//! - [`hub`]: serialised SSE frames, history ring for resume, latest value per key.
//! - [`http`]: the HTTP surface (SSE, snapshot, health, metrics, web UI).
//! - [`auth`]: optional JWT authorization of subscribers, per tenant.
//! - [`metrics`]: counters rendered as Prometheus text.
//! - [`sim`]: the taxi simulator behind `streamgate demo` and `streamgate simulate`,
//!   and [`queue_sim`], the demo's waiting queue.
//! - [`watch`]: swaps tenants when a `plugins_dir` file is replaced (development).
//! - [`admin_client`]: `streamgate plugin ...`, the operators' CLI for the admin API.
//! - [`app`]: wires it all together for `run` and `demo`.
//! - [`conformance`]: the plugin conformance kit (`streamgate conformance`), and
//!   [`componentize`], which makes a plugin's core module a component.

pub mod admin_client;
pub mod app;
pub mod auth;
pub mod bus;
pub mod componentize;
pub mod config;
pub mod conformance;
pub mod control;
pub mod event;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod policy;
pub mod queue_sim;
pub mod sim;
pub mod source;
pub mod store;
pub mod tenant;
pub mod watch;
