//! The postoffice interface and its contract.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

/// The two topic exchanges of the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exchange {
    /// Messages by path (`feeds.breaking-news.56`): core → gateways.
    Paths,
    /// Internal requests by `<action>.<from>.<to>`: service → service.
    Postoffice,
}

impl Exchange {
    /// The exchange's name on a broker.
    pub fn name(self) -> &'static str {
        match self {
            Exchange::Paths => "postmesh.paths",
            Exchange::Postoffice => "postmesh.postoffice",
        }
    }

    /// Both exchanges.
    pub const ALL: [Exchange; 2] = [Exchange::Paths, Exchange::Postoffice];
}

/// What a full queue does with one more message, as RabbitMQ's
/// `x-overflow`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Overflow {
    /// Discard the oldest message to make room (`drop-head`).
    #[default]
    DropHead,
    /// Refuse the new message: `publish` returns [`PostofficeError::Rejected`]
    /// (`reject-publish`, surfaced through publisher confirms).
    RejectPublish,
}

/// A queue declaration. Declaring is idempotent: declaring an existing
/// queue with the same spec changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    /// Queue name, unique per broker.
    pub name: String,
    /// Survives a broker restart, with its bindings and persistent
    /// messages (core service queues, gateway queues).
    pub durable: bool,
    /// Belongs to one process: deleted once no one has used it for a while
    /// (RabbitMQ's `x-expires`, [`TRANSIENT_QUEUE_EXPIRY`]), so the queue of
    /// a process that died goes away on its own, while a process that
    /// reconnects within that time finds its queue and bindings intact.
    ///
    /// [`TRANSIENT_QUEUE_EXPIRY`]: crate::amqp::TRANSIENT_QUEUE_EXPIRY
    pub expires: bool,
    /// Maximum number of ready messages (`x-max-length`). `None` means the
    /// queue is bounded only by the implementation's capacity, and publishers
    /// wait when it is reached (flow control).
    pub max_len: Option<usize>,
    /// What happens at `max_len`.
    pub overflow: Overflow,
    /// Messages older than this are discarded unread (`x-message-ttl`).
    pub message_ttl: Option<Duration>,
    /// Enables priorities 0..=max (`x-max-priority`).
    pub max_priority: Option<u8>,
}

impl QueueSpec {
    /// A non-durable queue of one process (it [expires](Self::expires)),
    /// with no limits beyond the implementation's.
    pub fn transient(name: impl Into<String>) -> Self {
        QueueSpec {
            name: name.into(),
            durable: false,
            expires: true,
            max_len: None,
            overflow: Overflow::default(),
            message_ttl: None,
            max_priority: None,
        }
    }

    /// A durable queue with no limits beyond the implementation's.
    pub fn durable(name: impl Into<String>) -> Self {
        QueueSpec {
            durable: true,
            expires: false,
            ..QueueSpec::transient(name)
        }
    }

    /// A durable queue of one process (it [expires](Self::expires)): a
    /// gateway's. Durable so that a broker that crashed comes back with
    /// the queue and its bindings before the process reconnects: federation
    /// links then go on carrying what other regions publish for it, and the
    /// broker confirms what a link hands over only once it is on disk,
    /// where a transient queue and its bindings would be gone.
    pub fn of_process(name: impl Into<String>) -> Self {
        QueueSpec {
            expires: true,
            ..QueueSpec::durable(name)
        }
    }
}

/// Message properties carried beside the payload (AMQP basic properties).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    /// The message's identity: the v1 UUID for path messages. Consumers
    /// dedupe on it.
    pub message_id: Option<String>,
    /// What the payload is (`msg`, `dismissed`, an RPC action).
    pub kind: Option<String>,
    /// Ties an RPC reply to its request.
    pub correlation_id: Option<String>,
    /// Where an RPC reply goes: a routing key on the postoffice exchange.
    pub reply_to: Option<String>,
    /// 0..=9; only meaningful on queues with `max_priority`.
    pub priority: Option<u8>,
    /// Written to disk by a broker (`delivery_mode = 2`).
    pub persistent: bool,
    /// Where the store put a path message (its resume position), so a
    /// gateway knows it without decoding the payload.
    pub cursor: Option<String>,
    /// How long the message may wait in a queue before it is discarded
    /// (AMQP's per-message `expiration`): for notices that are worthless
    /// once old, so they never fill a queue meant for what must be kept.
    /// The earlier of it and the queue's `message_ttl` applies.
    pub expiration: Option<std::time::Duration>,
}

/// A message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub routing_key: String,
    pub payload: Bytes,
    pub props: Properties,
}

/// Why a postoffice operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PostofficeError {
    #[error("queue '{0}' does not exist")]
    NoSuchQueue(String),
    #[error("queue '{0}' is full and rejects publishes")]
    Rejected(String),
    #[error("queue '{0}' was declared with different arguments")]
    SpecMismatch(String),
    #[error("the postoffice is closed")]
    Closed,
    #[error("broker connection failed: {0}")]
    Connection(String),
}

impl PostofficeError {
    /// Whether retrying the same operation later can succeed ("if in doubt:
    /// resend, reconnect").
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            PostofficeError::Rejected(_) | PostofficeError::Connection(_)
        )
    }
}

/// The message bus between services. Every implementation keeps this
/// contract, checked by [`crate::contract`]:
///
/// - **Topic routing.** `publish` to an exchange delivers one copy to every
///   queue with at least one binding whose pattern matches the routing key,
///   with RabbitMQ topic semantics (`*` one word, `#` zero or more; empty
///   words are words). A queue bound by several matching patterns gets one
///   copy. A message that matches no binding is dropped, and that is `Ok`.
/// - **What `Ok` from `publish` promises.** Every matching queue has accepted
///   the message (on a broker: the publisher confirm arrived). A message
///   refused by a `RejectPublish` queue at its limit gives
///   [`PostofficeError::Rejected`].
/// - **Ordering.** Messages from one publisher to one queue are delivered in
///   publish order, except redeliveries and priorities.
/// - **At-least-once.** A delivery that is neither acked nor nacked when its
///   [`Delivery`] is dropped, or when its consumer goes away, is requeued and
///   delivered again with `redelivered = true`. Consumers therefore dedupe
///   by `message_id`.
/// - **Competing consumers.** Several consumers of one queue share its
///   messages (each message goes to one of them): this is how core services
///   balance load.
/// - **Prefetch.** A consumer holds at most `prefetch` unacknowledged
///   deliveries.
/// - **Bounded.** Every queue is bounded: by `max_len` with its overflow
///   policy, or by the implementation's capacity, at which `publish` waits.
/// - **Idempotent topology.** Declaring a queue or a binding twice is the same
///   as once; unbinding a binding that does not exist is `Ok`.
#[async_trait]
pub trait Postoffice: Send + Sync + 'static {
    /// Declares a queue (idempotent).
    async fn declare_queue(&self, spec: &QueueSpec) -> Result<(), PostofficeError>;

    /// Deletes a queue with its bindings and ready messages. Its consumers
    /// end. Deleting a missing queue is `Ok`.
    async fn delete_queue(&self, name: &str) -> Result<(), PostofficeError>;

    /// Binds `queue` to `exchange` with a topic pattern (idempotent).
    async fn bind(
        &self,
        exchange: Exchange,
        queue: &str,
        pattern: &str,
    ) -> Result<(), PostofficeError>;

    /// Removes a binding (idempotent).
    async fn unbind(
        &self,
        exchange: Exchange,
        queue: &str,
        pattern: &str,
    ) -> Result<(), PostofficeError>;

    /// Publishes one message; see the contract above for what `Ok` means.
    async fn publish(&self, exchange: Exchange, message: Outgoing) -> Result<(), PostofficeError>;

    /// Publishes messages in the order given (the ordering rule holds among
    /// them); `Ok` when every one is accepted. On an error, a prefix of them
    /// may have been published. A broker implementation pipelines them and
    /// waits for all confirms once.
    async fn publish_all(
        &self,
        exchange: Exchange,
        messages: Vec<Outgoing>,
    ) -> Result<(), PostofficeError> {
        for m in messages {
            self.publish(exchange, m).await?;
        }
        Ok(())
    }

    /// Starts consuming a queue with at most `prefetch` unacked deliveries.
    async fn consume(&self, queue: &str, prefetch: u16) -> Result<Consumer, PostofficeError>;
}

/// Where one consumer's deliveries come from: each postoffice engine
/// implements it. Behind a trait so that this file, the contract, names no
/// engine.
#[async_trait]
pub trait DeliverySource: Send {
    /// The next delivery, or `None` when the queue was deleted or the
    /// postoffice closed.
    async fn next(&mut self) -> Option<Delivery>;
}

/// A stream of deliveries from one queue.
pub struct Consumer {
    source: Box<dyn DeliverySource>,
}

impl Consumer {
    /// A consumer over an engine's source.
    pub fn new(source: impl DeliverySource + 'static) -> Consumer {
        Consumer {
            source: Box::new(source),
        }
    }

    /// The next delivery, or `None` when the queue was deleted or the
    /// postoffice closed.
    pub async fn next(&mut self) -> Option<Delivery> {
        self.source.next().await
    }
}

/// Settles one delivery with the engine it came from. Dropping it
/// unsettled must requeue the delivery (the at-least-once rule).
#[async_trait]
pub trait Settle: Send + Sync {
    /// The message is done and will not come back.
    async fn ack(self: Box<Self>) -> Result<(), PostofficeError>;
    /// Back to the queue with `requeue`, otherwise discarded.
    async fn nack(self: Box<Self>, requeue: bool) -> Result<(), PostofficeError>;
}

/// One delivered message. Ack it once handled; dropping it unacked
/// requeues it.
pub struct Delivery {
    pub routing_key: String,
    pub payload: Bytes,
    pub props: Properties,
    /// True when this message was delivered before and not acked.
    pub redelivered: bool,
    settle: Box<dyn Settle>,
}

impl Delivery {
    /// A delivery an engine hands out, settled through `settle`.
    pub fn new(
        routing_key: String,
        payload: Bytes,
        props: Properties,
        redelivered: bool,
        settle: impl Settle + 'static,
    ) -> Delivery {
        Delivery {
            routing_key,
            payload,
            props,
            redelivered,
            settle: Box::new(settle),
        }
    }

    /// Acknowledges: the message is done and will not come back.
    pub async fn ack(self) -> Result<(), PostofficeError> {
        self.settle.ack().await
    }

    /// Refuses: with `requeue` the message goes back to the queue,
    /// otherwise it is discarded.
    pub async fn nack(self, requeue: bool) -> Result<(), PostofficeError> {
        self.settle.nack(requeue).await
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("routing_key", &self.routing_key)
            .field("payload_len", &self.payload.len())
            .field("props", &self.props)
            .field("redelivered", &self.redelivered)
            .finish()
    }
}
