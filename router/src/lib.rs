//! The postoffice: how postmesh services reach each other.
//!
//! # Layout
//! - [`postoffice`]: the [`Postoffice`] trait, whose documentation is the
//!   contract every implementation keeps, and the types it speaks.
//! - [`memory`]: the embedded implementation, an in-process topic exchange.
//! - [`amqp`]: the distributed implementation on RabbitMQ, through `lapin`.
//! - [`contract`]: the contract test suite, run against every implementation.
//! - [`federation`]: the Rabbit Router, which joins regional brokers
//!   through a hub broker as a federation star.
//! - [`reopen`]: declare, bind and consume a queue, again after every outage.
//! - [`rpc`]: requests and their replies over the postoffice ([`rpc::RpcClient`]).
//!
//! The postoffice has two topic exchanges (see [`Exchange`]): `paths`, where
//! cores distribute messages by path to the gateways whose devices
//! subscribed, and `postoffice`, where services address each other by
//! `<action>.<from address>.<to address>`.

pub mod amqp;
pub mod backoff;
pub mod contract;
pub mod federation;
pub mod memory;
pub mod postoffice;
pub mod reopen;
pub mod rpc;

pub use amqp::AmqpPostoffice;
pub use memory::MemoryPostoffice;
pub use postoffice::{
    Consumer, Delivery, DeliverySource, Exchange, Outgoing, Overflow, Postoffice, PostofficeError,
    Properties, QueueSpec, Settle,
};
