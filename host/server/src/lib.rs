//! streamgate's server: Kafka → Redis log → Wasm policies → Server-Sent Events. The
//! policies themselves run in the `streamgate-runtime` crate; plugin authors' tools
//! live in `streamgate-conformance`. ARCHITECTURE.md follows one message end to end.
//!
//! Layout, in the order data flows:
//!
//! - [`config`]: the TOML config, put together from each part's own section.
//! - [`event`]: the event every stage carries, and why a message is not one.
//! - [`source`]: Kafka and the built-in simulators: decode, batch, publish to the bus.
//! - [`bus`]: one totally ordered log per tenant (Redis Streams, Redis pub/sub or in
//!   memory) that every instance reads whole, in the same order.
//! - [`policy`]: the plugin store and chain history (Redis), and the catalog that
//!   resolves plugin references and prepares chains.
//! - [`checkpoint`]: chain-state checkpoints in Redis, so a late instance starts from
//!   the newest verified one and the log after it.
//! - [`tenant`]: runs one tenant: log reader, dispatcher, heartbeats, policy worker, and
//!   a shadow (candidate) chain beside the live one.
//! - [`hub`]: frames serialised once, history ring, latest values, keyed routing.
//! - [`http`]: the HTTP surface (SSE, snapshot, health, metrics, web UI, admin API, the
//!   demo queue's join).
//! - [`readiness`]: whether each tenant's log reader and source are connected now.
//! - [`auth`]: optional JWT authorization of subscribers, per tenant.
//! - [`secrets`]: admin tokens and token keys that rotate from a file without a restart.
//!
//! Around the path: [`control`] (changing chains cluster-wide: admin API, `plugins_dir`
//! watcher, shadow deploys), [`metrics`] (counters as Prometheus text), [`app`] (wires it all for `run`
//! and `demo`), [`demo`] (the embedded default), [`cli`] (the `streamgate` command).

pub mod app;
pub mod auth;
pub mod bus;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod control;
pub mod demo;
pub mod event;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod policy;
pub mod readiness;
pub mod secrets;
pub mod source;
pub mod tenant;
