//! The store: where messages rest. The trait's documentation is the contract
//! every implementation keeps (checked by [`contract`]).
//!
//! # Model
//! Messages live in **folders**. A message at `feeds.breaking-news.56` is in
//! the folders `feeds`, `feeds.breaking-news`, `feeds.breaking-news.56` and
//! the root folder. Every folder is ordered by the [`Cursor`] the store
//! stamped on each message when it stored it: the order in which messages
//! were stored, not the publish time in their UUIDs (see
//! [`postmesh_schema::cursor`] for why).

pub mod contract;
pub mod cql;
pub mod embedded;
pub mod measured;

use std::time::Duration;

use async_trait::async_trait;
use postmesh_schema::{Cursor, Message, Pattern, Uuid};

pub use cql::{CqlError, CqlOptions, CqlStore};
pub use embedded::{EmbeddedOptions, EmbeddedStore};
pub use measured::{Health, Measured, StoreMetrics};

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("storage engine error: {0}")]
    Engine(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("the store is closed")]
    Closed,
    #[error("the store is overloaded: too many writes waiting")]
    Overloaded,
    /// A query the store's layout cannot serve within its bounds (a CQL
    /// category's minimum index depth): retrying will not help, a narrower
    /// pattern will.
    #[error("pattern too broad for this store: {0}")]
    TooBroad(String),
}

impl StoreError {
    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Engine(_) | StoreError::Overloaded)
    }
}

/// What `put` did with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// Stored now.
    Inserted,
    /// A message with this UUID was already stored; nothing of this put's
    /// content was. The first put's cursor comes with it.
    ///
    /// It is exact on every engine: the caller distributes only what was
    /// `Inserted`, so a wrong `Duplicate` loses a message and a wrong
    /// `Inserted` delivers one twice and indexes it twice. An engine with no
    /// read-your-write uniqueness (Cassandra) decides it with a conditional
    /// write of the UUID's row (a lightweight transaction, `IF NOT EXISTS`),
    /// never by reading before writing (two writers may both read
    /// "absent") nor on a best-effort basis.
    ///
    /// On such an engine a put that failed midway may have claimed its UUID
    /// without writing every row that indexes the message. A later put of
    /// that UUID gets `Duplicate` with the claimed cursor, and the store
    /// first writes those rows again (idempotently), so the message is
    /// readable when `Duplicate` returns.
    Duplicate,
}

/// What `put` did with one message, and where the message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Put {
    pub outcome: PutOutcome,
    /// Where it is stored: stamped now when inserted, the first put's
    /// cursor when a duplicate.
    pub cursor: Cursor,
}

/// A page of messages (each with its cursor) and whether the query stopped
/// at its limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub messages: Vec<Message>,
    /// True when more messages match beyond this page.
    pub more: bool,
    /// True when messages after the position asked for may have been
    /// deleted by retention: the page cannot be complete.
    pub gap: bool,
    /// With `more`: where the next page starts (`before` for history,
    /// `after` for `since`). Usually the last message's cursor; earlier
    /// when a query stopped at its budget of rows examined, possibly with
    /// no message at all.
    pub next: Option<Cursor>,
    /// Replicas may be on their way to the core that read this: a peer core
    /// that replicates to it has gone quiet (it, or the link between their
    /// regions, is down), so what that peer stored lately may be missing
    /// here. Set by a core serving reads over the postoffice
    /// ([`CoreServer`](crate::remote::CoreServer)); a store never sets it.
    pub stale: bool,
}

/// A history query: newest first, at most `limit`, strictly before the
/// cursor `before` when given.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub pattern: Pattern,
    pub limit: usize,
    pub before: Option<Cursor>,
}

/// Persistent message storage.
///
/// Contract (every implementation keeps it; [`contract`] checks it):
/// - **Durable `Ok`.** When `put` returns `Ok`, its messages survive a crash
///   of the process (and, for a distributed engine, of one replica).
/// - **Idempotent by UUID.** A UUID is stored once. Exactly one `put` of a
///   UUID gets [`PutOutcome::Inserted`], however many callers put it, on
///   one process or several sharing the store; every other gets
///   [`PutOutcome::Duplicate`] with the first put's cursor, and changes
///   nothing, even with other content. See [`PutOutcome::Duplicate`] for
///   what an engine without read-your-write uniqueness must do to say it.
/// - **Stamped in put order.** Every message inserted gets a [`Cursor`]
///   from the stamper of the store handle that inserted it (one per core):
///   within one `put` in the order given, and across the `put`s of one
///   caller in the order their `Ok`s returned, each later than the last,
///   and later than every cursor the store held when the handle was
///   opened. Handles sharing one store stamp with their own clocks: their
///   cursors interleave by time, within the clocks' skew (which the
///   gateway's resume overlap window covers). Messages come back with
///   their cursor set.
/// - **Visible in stamping order.** Of the messages one stamper inserted,
///   a query sees a prefix in cursor order: never a message without every
///   earlier one of the same stamper whose `put` returned `Ok`. (A resume
///   drops a live message at or below the newest cursor it replayed from
///   the same stamper: it relies on this.)
/// - **Folder order.** `history` returns messages newest first by cursor,
///   for any pattern, honouring `before` as an exclusive cursor.
/// - **Resume order.** `since` returns what is stored strictly after a
///   cursor, oldest first. Together with the stamping rule: a reader that
///   has everything up to cursor `c` and reads `since(c)` after a `put`
///   returned gets that put's messages.
/// - **Latest.** `latest` returns, for each distinct path matching, the
///   message stored last (the highest cursor) at exactly that path.
/// - **Retention.** A category with a retention never returns messages
///   stored longer ago than it, whether or not they have been deleted yet.
/// - **Visibility.** What `put` stored is visible to every later query.
/// - **Bounded.** One query examines a bounded number of rows whatever the
///   pattern; a page that stopped early says `more` with its `next`.
/// - **Shared or private.** [`Store::is_shared`] says whether other
///   processes' handles write to the same data. A private store (embedded)
///   holds only what its own core put, so cores copy each other's messages
///   (`replicate`); a shared store (CQL) holds every core's messages as
///   soon as their `put` returned, so cores do not replicate, and each
///   core tells its own messages from others' by [`Store::stamper`].
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The engine's name (`embedded`, `cql`), for health reports.
    fn kind(&self) -> &'static str;

    /// Checks that the store answers: one small read (and, for an engine
    /// with a writer of its own, that the writer runs). What `/healthz`
    /// reports.
    async fn probe(&self) -> Result<(), StoreError>;

    /// Whether handles of other processes write to the same data (see the
    /// contract). A core on a shared store neither replicates to its peers
    /// nor distributes what their stampers inserted.
    fn is_shared(&self) -> bool;

    /// The identity of this handle's stamper: [`Cursor::stamper`] of every
    /// cursor it stamps. Unique per handle (random), so on a shared store
    /// it names the core that inserted a message.
    fn stamper(&self) -> [u8; 8];

    /// Stores messages durably; one outcome per message, in order.
    async fn put(&self, messages: Vec<Message>) -> Result<Vec<Put>, StoreError>;

    /// One message by UUID.
    async fn get(&self, uuid: Uuid) -> Result<Option<Message>, StoreError>;

    /// Newest first; see [`HistoryQuery`].
    async fn history(&self, query: HistoryQuery) -> Result<Page, StoreError>;

    /// Messages matching `pattern` stored strictly after `after`, oldest
    /// first, at most `limit` (`more` says whether there were more).
    async fn since(
        &self,
        pattern: Pattern,
        after: Cursor,
        limit: usize,
    ) -> Result<Page, StoreError>;

    /// The newest cursor stored, if any.
    async fn newest(&self) -> Result<Option<Cursor>, StoreError>;

    /// A named position kept for the store's owner (the core keeps how far
    /// it has distributed), `None` when never set.
    async fn checkpoint(&self, name: &str) -> Result<Option<Cursor>, StoreError>;

    /// Sets a named position. Need not be durable before the next `put`.
    async fn set_checkpoint(&self, name: &str, cursor: Cursor) -> Result<(), StoreError>;

    /// The newest message of each distinct path matching `pattern`, newest
    /// first, at most `limit` paths.
    async fn latest(&self, pattern: Pattern, limit: usize) -> Result<Page, StoreError>;

    /// Records that `user` dismissed `uuid`. Returns `false` if it already was.
    async fn dismiss(&self, user: u64, uuid: Uuid) -> Result<bool, StoreError>;

    /// Which of `uuids` `user` has dismissed, in order.
    async fn dismissed(&self, user: u64, uuids: Vec<Uuid>) -> Result<Vec<bool>, StoreError>;

    /// Sets (or with `None` clears) the retention of a category.
    async fn set_retention(
        &self,
        category: String,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError>;

    /// Every category with a retention.
    async fn retentions(&self) -> Result<Vec<(String, Duration)>, StoreError>;

    /// Deletes messages past their category's retention. Returns how many.
    async fn sweep(&self) -> Result<usize, StoreError>;

    /// Finishes the writes already accepted and releases the store's
    /// resources (files, threads, connections). Puts after it fail with
    /// [`StoreError::Closed`]; closing twice is harmless.
    async fn close(&self);
}
