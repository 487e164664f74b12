//! The load harness. It speaks to a system under test through a [`peer`]
//! adapter, runs a [`scenario`], samples the server's memory and CPU from
//! `/proc` ([`proc`]), and writes JSON lines and a Markdown table
//! ([`report`]). [`store`] measures the message stores themselves, through
//! the `Store` trait, without a server in between.
//!
//! Latency is measured from a send timestamp carried in each message body
//! (`{"t": <unix nanos>, "pad": ...}`) to its arrival at each subscriber, so
//! the harness and the server must share a clock: one machine.

pub mod peer;
pub mod proc;
pub mod report;
pub mod scenario;
pub mod store;
pub mod summary;
