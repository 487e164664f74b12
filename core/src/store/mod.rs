//! The store: where messages rest. The trait's documentation is the contract
//! every implementation keeps (checked by [`contract`]).
//!
//! # Model
//! Messages live in **folders**. A message at `feeds.breaking-news.56` is in
//! the folders `feeds`, `feeds.breaking-news`, `feeds.breaking-news.56` and
//! the root folder, each ordered newest first by the time of its v1 UUID. A
//! history query for `feeds.breaking-news.#` is therefore one ordered range
//! read of one folder; a pattern with a wildcard in the middle reads the
//! folder of its literal prefix and filters by the pattern.

pub mod contract;
pub mod embedded;

use std::time::Duration;

use async_trait::async_trait;
use postmesh_schema::{Message, Pattern, Uuid};

pub use embedded::EmbeddedStore;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
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
    /// A message with this UUID was already stored; nothing changed.
    Duplicate,
}

/// A page of messages and whether the query stopped at its limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub messages: Vec<Message>,
    /// True when more messages match beyond this page.
    pub more: bool,
}

/// A history query: newest first, at most `limit`, strictly older than
/// `before` when given.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub pattern: Pattern,
    pub limit: usize,
    pub before: Option<Uuid>,
}

/// Persistent message storage.
///
/// Contract:
/// - **Durable `Ok`.** When `put` returns `Ok`, its messages survive a crash
///   of the process (and, for a distributed engine, of one replica).
/// - **Idempotent by UUID.** A UUID is stored once. Putting it again returns
///   [`PutOutcome::Duplicate`] and changes nothing, even with other content.
/// - **Folder order.** `history` returns messages newest first by UUID time
///   (ties broken by the rest of the UUID, so the order is total and stable),
///   for any pattern, honouring `before` as an exclusive cursor.
/// - **Resume order.** `since` returns what is stored strictly after a UUID,
///   oldest first.
/// - **Latest.** `latest` returns, for each distinct path matching, the newest
///   message at exactly that path.
/// - **Retention.** A category with a retention never returns messages older
///   than it, whether or not they have been swept yet.
/// - **Visibility.** What `put` stored is visible to every later query.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores messages durably; one outcome per message, in order.
    async fn put(&self, messages: Vec<Message>) -> Result<Vec<PutOutcome>, StoreError>;

    /// One message by UUID.
    async fn get(&self, uuid: Uuid) -> Result<Option<Message>, StoreError>;

    /// Newest first; see [`HistoryQuery`].
    async fn history(&self, query: HistoryQuery) -> Result<Page, StoreError>;

    /// Messages matching `pattern` stored strictly after `after`, oldest
    /// first, at most `limit` (`more` says whether there were more).
    async fn since(&self, pattern: Pattern, after: Uuid, limit: usize) -> Result<Page, StoreError>;

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

    /// Deletes messages past their category's retention. Returns how many.
    async fn sweep(&self) -> Result<usize, StoreError>;
}
