//! The language of postmesh. Everything here is pure data and pure functions:
//! no sockets, no files, no clocks except the v1 UUID generator.
//!
//! # Layout
//! - [`path`]: a published message's hierarchical address, `feeds.breaking-news.56`.
//! - [`pattern`]: subscription and history patterns with AMQP topic wildcards
//!   (`*` one element, `#` zero or more), and pattern containment for authorization.
//! - [`idpath`]: base62 splitting of numeric user ids into path elements.
//! - [`address`]: postoffice addresses `region.product.service.instance.pid` and
//!   routing keys `<action>.<from>.<to>`.
//! - [`cursor`]: the resume order a store stamps on what it stores.
//! - [`message`]: the envelope (path, v1 UUID, class, meta) and its opaque body.
//! - [`trie`]: the one pattern matcher, shared by the embedded postoffice and the
//!   gateway's local fan-out.
//! - [`v1`]: version-1 UUIDs: the generator and their timestamps.
//! - [`protocol`]: the JSON frames spoken between devices and gateways.

pub mod address;
pub mod cursor;
pub mod idpath;
pub mod message;
pub mod path;
pub mod pattern;
pub mod protocol;
pub mod recent;
pub mod trie;
pub mod v1;

pub use address::{Address, AddressError, RegionTarget, RoutingKey};
pub use cursor::{Cursor, Stamper};
pub use message::{Body, Class, Message, MessageError};
pub use path::{Limits, Path, PathError};
pub use pattern::{Pattern, PatternElem};
pub use recent::RecentSet;
pub use trie::Trie;
pub use uuid::Uuid;
