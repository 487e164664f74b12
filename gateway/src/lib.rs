//! postmesh gateway: where devices connect.
//!
//! # Layout
//! - [`server`]: binding and serving a [`Gateway`](server::Gateway); the
//!   accept loop (`accept`) serves each HTTP connection with a header
//!   timeout and cuts connections at the shutdown deadline.
//! - [`tls`]: TLS on the listener (rustls) and the certificate reload.
//! - [`app`]: the state handlers and transports share;
//!   [`admission`]: every transport's token check and connection limit;
//!   [`origin`]: every transport's `Origin` rule.
//! - [`http`]: the HTTP API and router (query strings are read strictly by
//!   `params`); [`ws`]: the `/ws` upgrade and the WebSocket adapter, whose
//!   text frames [`outgoing`] writes.
//! - [`sockjs`]: SockJS 0.3 under `/sockjs`, another transport.
//! - [`session`]: one connection's protocol loop, over any transport;
//!   [`frame`]: the text frames it reads and writes.
//! - `live`: the live page at `/`, built on `clients/js`.
//! - [`hub`]: subscriptions, upstream bindings and the local fan-out.
//! - [`outbox`]: each connection's bounded outbound queue.
//! - [`auth`]: tokens and grants. [`config`]: settings. [`metrics`].

mod accept;
pub mod admission;
pub mod app;
pub mod auth;
pub mod config;
pub mod frame;
pub mod http;
pub mod hub;
mod live;
pub mod metrics;
pub mod origin;
pub mod outbox;
pub mod outgoing;
mod params;
mod parse_errors;
pub mod server;
pub mod session;
pub mod sockjs;
pub mod tls;
pub mod ws;

pub use config::GatewayConfig;
pub use server::{Gateway, StartError};
pub use tls::{TlsError, TlsReloader};
