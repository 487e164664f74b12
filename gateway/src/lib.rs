//! postmesh gateway: where devices connect.
//!
//! # Layout
//! - [`server`]: binding and serving a [`Gateway`](server::Gateway); the
//!   accept loop (`accept`) serves each HTTP connection with a header
//!   timeout and cuts connections at the shutdown deadline.
//! - [`tls`]: TLS on the listener (rustls) and the certificate reload.
//! - [`http`]: the HTTP API and router (query strings are read strictly by
//!   `params`); [`ws`]: the `/ws` upgrade and the WebSocket adapter, whose
//!   text frames [`outgoing`] writes.
//! - [`session`]: one connection's protocol loop, over any transport.
//! - [`hub`]: subscriptions, upstream bindings and the local fan-out.
//! - [`outbox`]: each connection's bounded outbound queue.
//! - [`auth`]: tokens and grants. [`config`]: settings. [`metrics`].

mod accept;
pub mod auth;
pub mod config;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod outbox;
pub mod outgoing;
mod params;
pub mod server;
pub mod session;
pub mod tls;
pub mod ws;

pub use config::GatewayConfig;
pub use server::{Gateway, StartError};
pub use tls::{TlsError, TlsReloader};
