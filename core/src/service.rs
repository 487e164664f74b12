//! The core services: publish (persist, then distribute), history, latest,
//! resume (`since`) and dismiss.
//!
//! Gateways and the HTTP API reach them through [`CoreClient`]; in one
//! process that is the [`Core`] itself, across processes an RPC client over
//! the postoffice implements the same trait.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use postmesh_router::{Exchange, Outgoing, Postoffice, PostofficeError, Properties};
use postmesh_schema::message::new_v1;
use postmesh_schema::protocol::{dismissed_frame, msg_frame};
use postmesh_schema::{Class, Message, Pattern, RecentSet, Uuid, idpath};

use crate::metrics::CoreMetrics;
use crate::store::{HistoryQuery, Page, PutOutcome, Store, StoreError};

/// How many recently distributed UUIDs a core remembers, so that a resend
/// of an already distributed message is not distributed again. A resend
/// after this window (or after a restart) is distributed again and
/// deduplicated by the gateways' own windows and by clients.
pub const DISTRIBUTED_WINDOW: usize = 100_000;

/// Most refills a filtered history query makes to fill its page.
const MAX_REFILLS: usize = 8;

/// Why a core call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Postoffice(#[from] PostofficeError),
    #[error("no core answered in time")]
    Timeout,
    #[error("core: {message}")]
    Remote { message: String, retryable: bool },
}

impl CoreError {
    /// Whether retrying later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            CoreError::Store(e) => e.is_retryable(),
            CoreError::Postoffice(e) => e.is_retryable(),
            CoreError::Timeout => true,
            CoreError::Remote { retryable, .. } => *retryable,
        }
    }
}

/// The outcome of publishing one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub uuid: Uuid,
    /// The UUID was stored before: this publish changed nothing.
    pub duplicate: bool,
}

/// What gateways and the HTTP API ask of the core.
#[async_trait]
pub trait CoreClient: Send + Sync + 'static {
    /// Persists then distributes. `Ok` means every message is durably stored
    /// and handed to the postoffice.
    async fn publish(&self, messages: Vec<Message>) -> Result<Vec<Published>, CoreError>;

    /// Newest first, skipping what `user` dismissed.
    async fn history(
        &self,
        pattern: Pattern,
        limit: usize,
        before: Option<Uuid>,
        user: Option<u64>,
    ) -> Result<Page, CoreError>;

    /// Stored strictly after `after`, oldest first.
    async fn since(
        &self,
        pattern: Pattern,
        after: Uuid,
        limit: usize,
        user: Option<u64>,
    ) -> Result<Page, CoreError>;

    /// Newest message per path.
    async fn latest(
        &self,
        pattern: Pattern,
        limit: usize,
        user: Option<u64>,
    ) -> Result<Page, CoreError>;

    /// Records a dismissal and tells the user's devices.
    async fn dismiss(&self, user: u64, uuid: Uuid) -> Result<(), CoreError>;
}

/// The core service over a store and a postoffice.
pub struct Core {
    store: Arc<dyn Store>,
    postoffice: Arc<dyn Postoffice>,
    distributed: Mutex<RecentSet<Uuid>>,
    metrics: CoreMetrics,
}

/// The AMQP priority of a class: gold and silver overtake bronze.
pub fn priority(class: Class) -> u8 {
    match class {
        Class::Gold => 2,
        Class::Silver => 1,
        Class::Bronze => 0,
    }
}

impl Core {
    /// A core over `store`, distributing through `postoffice`.
    pub fn new(
        store: Arc<dyn Store>,
        postoffice: Arc<dyn Postoffice>,
        metrics: CoreMetrics,
    ) -> Core {
        Core {
            store,
            postoffice,
            distributed: Mutex::new(RecentSet::new(DISTRIBUTED_WINDOW)),
            metrics,
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    async fn distribute(&self, m: &Message) -> Result<(), CoreError> {
        let out = Outgoing {
            routing_key: m.path.as_str().to_owned(),
            payload: Bytes::from(msg_frame(m)),
            props: Properties {
                message_id: Some(m.uuid.to_string()),
                kind: Some("msg".into()),
                priority: Some(priority(m.class)),
                persistent: m.class != Class::Bronze,
                ..Properties::default()
            },
        };
        self.postoffice.publish(Exchange::Paths, out).await?;
        self.metrics.distributed.inc();
        Ok(())
    }

    async fn timed_read<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, CoreError> {
        let start = Instant::now();
        let r = f.await;
        self.metrics
            .store_read_seconds
            .observe(start.elapsed().as_secs_f64());
        Ok(r?)
    }

    async fn without_dismissed(
        &self,
        user: Option<u64>,
        messages: Vec<Message>,
    ) -> Result<Vec<Message>, CoreError> {
        let Some(user) = user else {
            return Ok(messages);
        };
        if messages.is_empty() {
            return Ok(messages);
        }
        let flags = self
            .timed_read(
                self.store
                    .dismissed(user, messages.iter().map(|m| m.uuid).collect()),
            )
            .await?;
        Ok(messages
            .into_iter()
            .zip(flags)
            .filter_map(|(m, dismissed)| (!dismissed).then_some(m))
            .collect())
    }
}

#[async_trait]
impl CoreClient for Core {
    async fn publish(&self, messages: Vec<Message>) -> Result<Vec<Published>, CoreError> {
        let start = Instant::now();
        let outcomes = self.store.put(messages.clone()).await?;
        self.metrics
            .store_write_seconds
            .observe(start.elapsed().as_secs_f64());
        let mut result = Vec::with_capacity(messages.len());
        for (m, outcome) in messages.iter().zip(outcomes) {
            let duplicate = outcome == PutOutcome::Duplicate;
            if duplicate {
                self.metrics.duplicates.inc();
            } else {
                self.metrics.persisted.inc();
            }
            // A duplicate is distributed again unless this core knows it
            // already did: the first attempt may have been stored and then
            // lost before distribution (a crash), and its publisher resent.
            let fresh = self.distributed.lock().insert(m.uuid);
            if fresh && let Err(e) = self.distribute(m).await {
                // Forget it, so the publisher's resend distributes it.
                self.distributed.lock().remove(&m.uuid);
                return Err(e);
            }
            result.push(Published {
                uuid: m.uuid,
                duplicate,
            });
        }
        Ok(result)
    }

    async fn history(
        &self,
        pattern: Pattern,
        limit: usize,
        before: Option<Uuid>,
        user: Option<u64>,
    ) -> Result<Page, CoreError> {
        let mut out = Vec::with_capacity(limit);
        let mut cursor = before;
        for _ in 0..MAX_REFILLS {
            let page = self
                .timed_read(self.store.history(HistoryQuery {
                    pattern: pattern.clone(),
                    limit: limit - out.len(),
                    before: cursor,
                }))
                .await?;
            cursor = page.messages.last().map(|m| m.uuid);
            let more = page.more;
            out.extend(self.without_dismissed(user, page.messages).await?);
            if out.len() == limit || !more {
                return Ok(Page {
                    messages: out,
                    more,
                });
            }
        }
        Ok(Page {
            messages: out,
            more: true,
        })
    }

    async fn since(
        &self,
        pattern: Pattern,
        after: Uuid,
        limit: usize,
        user: Option<u64>,
    ) -> Result<Page, CoreError> {
        let page = self
            .timed_read(self.store.since(pattern, after, limit))
            .await?;
        Ok(Page {
            more: page.more,
            messages: self.without_dismissed(user, page.messages).await?,
        })
    }

    async fn latest(
        &self,
        pattern: Pattern,
        limit: usize,
        user: Option<u64>,
    ) -> Result<Page, CoreError> {
        let page = self.timed_read(self.store.latest(pattern, limit)).await?;
        Ok(Page {
            more: page.more,
            messages: self.without_dismissed(user, page.messages).await?,
        })
    }

    async fn dismiss(&self, user: u64, uuid: Uuid) -> Result<(), CoreError> {
        self.store.dismiss(user, uuid).await?;
        // Tell every device of the user, on every gateway: they are all
        // subscribed to the user's id paths.
        let out = Outgoing {
            routing_key: format!("id.dismissed.{}", idpath::split_id(user)),
            payload: Bytes::from(dismissed_frame(&uuid)),
            props: Properties {
                message_id: Some(new_v1().to_string()),
                kind: Some("dismissed".into()),
                priority: Some(priority(Class::Silver)),
                persistent: true,
                ..Properties::default()
            },
        };
        self.postoffice.publish(Exchange::Paths, out).await?;
        Ok(())
    }
}
