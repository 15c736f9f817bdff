//! The server's side of policy plugins (the plugins themselves run in the
//! `streamgate-runtime` crate): the cluster's plugin store and chain history in Redis
//! ([`store`]), and the catalog that resolves `builtin:`, `sha256:` and file references
//! to compiled plugins and prepares chains off the event path ([`catalog`]).

pub mod catalog;
pub mod store;

pub use catalog::{Catalog, CatalogError};
pub use store::{ChainRecord, Store, StoreError, in_log_order};
