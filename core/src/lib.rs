//! postmesh core: persist each message by path and v1 UUID, then distribute
//! it by path; answer history, latest and dismiss.
//!
//! # Layout
//! - [`store`]: the [`Store`](store::Store) trait (the contract), the embedded
//!   implementation and the contract suite.

pub mod store;
