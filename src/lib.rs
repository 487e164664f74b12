//! The `postmesh` binary's library: command-line parsing, configuration
//! loading, and the wiring that runs roles (all of them, for `postmesh up`).
//!
//! # Layout
//! - [`cli`]: the commands and their flags; `main` calls [`cli::main`].
//! - [`config`]: the configuration tree, loaded from defaults, a TOML file,
//!   `POSTMESH_*` environment variables and flags, in that order.
//! - [`store`]: opening the store the configuration names.
//! - [`up`]: the whole mesh in one process on the embedded engines.
//! - [`client`]: the client commands (`publish`, `tail`, `history`).
//! - [`router`]: the Rabbit Router's commands (`postmesh router`).

pub mod cli;
pub mod client;
pub mod config;
pub mod router;
pub mod store;
pub mod up;
