//! postmesh core: persist each message by path and v1 UUID, then distribute
//! it by path; answer history, latest, resume and dismiss.
//!
//! # Layout
//! - [`store`]: the [`Store`](store::Store) trait (the contract), the embedded
//!   implementation and the contract suite.
//! - [`error`]: [`CoreError`], why a core call failed.
//! - [`service`]: [`Core`], the services over a store and a postoffice, and
//!   [`CoreClient`], the interface gateways call.
//! - [`pipeline`]: the one way a core stores and distributes: in cursor
//!   order, and never leaving a stored message undistributed.
//! - [`remote`]: the core services across processes: [`remote::CoreServer`]
//!   serves a core over the postoffice, [`remote::RemoteCore`] asks one.
//! - [`retention`]: applying per-category retention and sweeping.
//! - [`metrics`]: Prometheus metrics.

pub mod error;
pub mod metrics;
pub mod pipeline;
pub mod remote;
pub mod retention;
pub mod service;
pub mod store;

pub use metrics::CoreMetrics;
pub use service::{Core, CoreClient, CoreError, CoreOptions, Published};
pub use store::{EmbeddedOptions, EmbeddedStore, Page, Put, PutOutcome, Store, StoreError};
