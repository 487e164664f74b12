//! The core services: publish (persist, then distribute), history, latest,
//! resume (`since`) and dismiss.
//!
//! Gateways and the HTTP API reach them through [`CoreClient`]; in one
//! process that is the [`Core`] itself, across processes an RPC client over
//! the postoffice implements the same trait.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use postmesh_router::{Exchange, Outgoing, Postoffice, Properties};
use postmesh_schema::message::new_v1;
use postmesh_schema::protocol::dismissed_frame;
use postmesh_schema::{Class, Cursor, Message, Pattern, Uuid, idpath};

pub use crate::error::CoreError;
use crate::metrics::CoreMetrics;
use crate::pipeline::{Kind, Pipeline, priority};
use crate::store::{HistoryQuery, Page, PutOutcome, Store};

/// Most refills a filtered history query makes to fill its page.
const MAX_REFILLS: usize = 8;

/// The outcome of publishing one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub uuid: Uuid,
    /// The UUID was stored before: this publish changed nothing.
    pub duplicate: bool,
    /// Where the message is stored; `None` for a bronze publish that is
    /// queued, not yet stored.
    pub cursor: Option<Cursor>,
}

/// What gateways and the HTTP API ask of the core.
#[async_trait]
pub trait CoreClient: Send + Sync + 'static {
    /// Persists then distributes. `Ok` means every message is durably stored
    /// and handed to the postoffice.
    async fn publish(&self, messages: Vec<Message>) -> Result<Vec<Published>, CoreError>;

    /// Newest first (by cursor), skipping what `user` dismissed.
    async fn history(
        &self,
        pattern: Pattern,
        limit: usize,
        before: Option<Cursor>,
        user: Option<u64>,
    ) -> Result<Page, CoreError>;

    /// Stored strictly after the position `after`, oldest first. `gap` when
    /// retention may have deleted some of it.
    async fn since(
        &self,
        pattern: Pattern,
        after: Cursor,
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

/// Options of the core services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreOptions {
    /// The largest message accepted (body plus meta), so that every
    /// message stored can be delivered to every device.
    pub max_message_bytes: usize,
}

impl Default for CoreOptions {
    fn default() -> Self {
        CoreOptions {
            max_message_bytes: postmesh_schema::protocol::DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

/// The core service over a store and a postoffice.
pub struct Core {
    store: Arc<dyn Store>,
    postoffice: Arc<dyn Postoffice>,
    pipeline: Pipeline,
    options: CoreOptions,
}

impl Core {
    /// A core over `store`, distributing through `postoffice`. Starts the
    /// publish pipeline, which first distributes anything a previous run
    /// stored but did not hand on.
    pub async fn start(
        store: Arc<dyn Store>,
        postoffice: Arc<dyn Postoffice>,
        metrics: CoreMetrics,
        options: CoreOptions,
    ) -> Result<Core, CoreError> {
        let pipeline = Pipeline::start(store.clone(), postoffice.clone(), metrics).await?;
        Ok(Core {
            store,
            postoffice,
            pipeline,
            options,
        })
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Stores a peer's replicas (not distributed again: the peer did).
    pub async fn apply_replicas(&self, messages: Vec<Message>) -> Result<(), CoreError> {
        self.pipeline
            .submit(messages, Kind::Replica)
            .await
            .map(|_| ())
    }

    /// Finishes what was submitted and saves how far it distributed; later
    /// publishes fail with `Closed`.
    pub async fn close(&self) {
        self.pipeline.close().await;
    }

    /// Whether messages stored after `after` in `pattern`'s categories may
    /// have been deleted by retention.
    async fn retention_gap(&self, pattern: &Pattern, after: Cursor) -> Result<bool, CoreError> {
        let first = pattern.as_str().split('.').next().unwrap_or("");
        let wild = first == "*" || first == "#";
        let now = Cursor::now().ticks();
        Ok(self
            .store
            .retentions()
            .await?
            .into_iter()
            .filter(|(category, _)| wild || category == first)
            .any(|(_, ttl)| {
                let ttl_ticks = u64::try_from(ttl.as_nanos() / 100).unwrap_or(u64::MAX);
                after.ticks() < now.saturating_sub(ttl_ticks)
            }))
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
            .store
            .dismissed(user, messages.iter().map(|m| m.uuid).collect())
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
        // Every door checks this; the core checks again for the doors it
        // does not see (a service publishing straight onto the postoffice).
        let max = self.options.max_message_bytes;
        if let Some((index, size)) = messages
            .iter()
            .map(Message::size)
            .enumerate()
            .find(|(_, size)| *size > max)
        {
            return Err(CoreError::TooLarge { index, size, max });
        }
        let uuids: Vec<Uuid> = messages.iter().map(|m| m.uuid).collect();
        let puts = self.pipeline.submit(messages, Kind::Publish).await?;
        Ok(uuids
            .into_iter()
            .zip(puts)
            .map(|(uuid, p)| Published {
                uuid,
                duplicate: p.outcome == PutOutcome::Duplicate,
                cursor: Some(p.cursor),
            })
            .collect())
    }

    async fn history(
        &self,
        pattern: Pattern,
        limit: usize,
        before: Option<Cursor>,
        user: Option<u64>,
    ) -> Result<Page, CoreError> {
        let mut out = Vec::with_capacity(limit);
        let mut cursor = before;
        for _ in 0..MAX_REFILLS {
            let page = self
                .store
                .history(HistoryQuery {
                    pattern: pattern.clone(),
                    limit: limit - out.len(),
                    before: cursor,
                })
                .await?;
            cursor = page.next;
            let more = page.more;
            out.extend(self.without_dismissed(user, page.messages).await?);
            if out.len() == limit || !more {
                return Ok(Page {
                    stale: false,
                    messages: out,
                    more,
                    gap: false,
                    next: cursor.filter(|_| more),
                });
            }
        }
        Ok(Page {
            stale: false,
            messages: out,
            more: true,
            gap: false,
            next: cursor,
        })
    }

    async fn since(
        &self,
        pattern: Pattern,
        after: Cursor,
        limit: usize,
        user: Option<u64>,
    ) -> Result<Page, CoreError> {
        let gap = self.retention_gap(&pattern, after).await?;
        let page = self.store.since(pattern, after, limit).await?;
        Ok(Page {
            stale: false,
            more: page.more,
            messages: self.without_dismissed(user, page.messages).await?,
            gap,
            next: page.next,
        })
    }

    async fn latest(
        &self,
        pattern: Pattern,
        limit: usize,
        user: Option<u64>,
    ) -> Result<Page, CoreError> {
        let page = self.store.latest(pattern, limit).await?;
        Ok(Page {
            stale: false,
            more: page.more,
            messages: self.without_dismissed(user, page.messages).await?,
            gap: false,
            next: None,
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
