//! Sources put events on the bus, in data-path order: a raw message is decoded into an
//! [`Event`](crate::event::Event) ([`decode`]), batched and published to the tenant's
//! log ([`publisher`]). Messages come from Kafka ([`kafka`]: one consumer group per
//! tenant, offsets stored only once a batch is on the bus) or from the built-in
//! simulators ([`simulate`]) for the embedded demo.

pub mod decode;
pub mod json_pick;
pub mod kafka;
pub mod publisher;
pub mod simulate;

pub use decode::Extractor;
pub use publisher::{Cancelled, LogPublisher};
