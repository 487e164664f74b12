//! The Rabbit Router: joins regional brokers through a hub broker as a
//! federation star ("the bus becomes a star"), using RabbitMQ's own
//! federation plugin, configured over each broker's management API.
//!
//! # Layout
//! - [`config`]: the `[router]` section and its validation.
//! - [`plan`]: what every broker must hold, computed from the
//!   configuration alone (pure, unit-tested).
//! - [`management`]: a typed client of the management HTTP API.
//! - [`apply`]: reads each broker's definitions, diffs them against the
//!   plan and changes only what differs (idempotent).
//! - [`status`]: the state and backlog of every planned link.
//! - [`supervise`]: `postmesh router run`, re-applying on drift and
//!   exporting metrics.
//!
//! # Invariants
//! - **Star**: regions link only to the hub, never to each other: 2N
//!   upstreams for N regions where a full mesh needs N(N-1).
//! - **Exactly once, no loop**: a region's upstream (the hub) has
//!   `max-hops` 2, the hub's upstreams (the regions) 1, and every broker
//!   has its own cluster name (checked before anything is applied), so a
//!   message crosses region → hub → region once and never returns to the
//!   region it was published in.
//! - **Only what is bound travels**: federation forwards only what
//!   matches a binding downstream, so a region with no binding for a
//!   routing key receives nothing for it.
//! - **The router is not on the message path**: the links are the
//!   brokers' own. With the router down they keep flowing; only repairs
//!   stop.

pub mod apply;
pub mod config;
pub mod management;
pub mod plan;
pub mod status;
pub mod supervise;

pub use apply::{ApplyError, Change, Outcome, apply};
pub use config::{BrokerConfig, RouterConfig, RouterConfigError, Star};
pub use management::{Management, ManagementError};
pub use plan::{Link, Plan, plan};
pub use status::{LinkState, LinkStatus, status, table};

/// One management client per broker of `plan`, in the plan's order.
pub fn clients(plan: &Plan, timeout: std::time::Duration) -> Vec<Management> {
    plan.brokers
        .iter()
        .map(|b| Management::new(&b.broker, timeout))
        .collect()
}
