//! The postoffice on a RabbitMQ broker, through `lapin`.
//!
//! # Topology
//! Two durable topic exchanges, `postmesh.paths` and `postmesh.postoffice`,
//! declared idempotently on every (re)connection. Queues map their
//! [`QueueSpec`] to arguments: `x-max-length` and `x-overflow` (`drop-head`
//! or `reject-publish`), `x-message-ttl`, `x-max-priority`; the queue of
//! one process ([`QueueSpec::expires`]) also gets `x-expires`
//! ([`TRANSIENT_QUEUE_EXPIRY`]) so that the queue of a process that died
//! goes away on its own, while a process that reconnects within that time
//! finds its queue and bindings intact.
//!
//! # Keeping the contract
//! - `publish` runs on a confirm channel and returns after the broker's
//!   confirm; a nack (a `reject-publish` queue at its limit) is
//!   [`PostofficeError::Rejected`]. Messages marked persistent are written
//!   with `delivery_mode = 2`.
//! - Each consumer has its own channel with `basic.qos(prefetch)` and manual
//!   acks. An unacked delivery that is dropped is nacked with requeue; a
//!   consumer that is dropped closes its channel, which requeues the rest.
//! - Topology operations run on a short-lived channel each, because a
//!   refused operation (404, 406) closes the channel it ran on.
//! - Every operation that waits for the broker (connecting, opening a
//!   channel, declaring, binding, a publish until its confirm, an ack) is
//!   bounded by [`OPERATION_TIMEOUT`]. A broker that stops answering
//!   without closing the socket would otherwise hold every caller, and the
//!   lock on the connection, for ever. When an operation times out, the
//!   connection is given up and closed, so that its consumers end and are
//!   reopened, and the next operation connects afresh.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use tokio::sync::Mutex;

use crate::postoffice::{
    Consumer, Delivery, DeliverySource, Exchange, Outgoing, Overflow, Postoffice, PostofficeError,
    Properties, QueueSpec, Settle,
};

/// How long a non-durable queue outlives its last consumer: long enough
/// for a reconnect, short enough not to collect messages for a dead process.
pub const TRANSIENT_QUEUE_EXPIRY: Duration = Duration::from_secs(60);

/// The longest one broker operation may wait for the broker's answer. A
/// healthy broker answers in milliseconds, and a publish confirm of a
/// persistent message within one disk sync; ten seconds without an answer
/// means the broker or the path to it is gone, and the caller is better
/// served by an error it can retry ("if in doubt: resend, reconnect").
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// A postoffice on a RabbitMQ broker. Cloning shares the connection.
#[derive(Clone)]
pub struct AmqpPostoffice {
    inner: Arc<Inner>,
}

struct Inner {
    uri: String,
    link: Mutex<LinkState>,
}

/// The current link, and how the last attempt to open one failed.
#[derive(Default)]
struct LinkState {
    link: Option<Link>,
    /// When an attempt to connect failed, and why: callers that waited for
    /// that attempt share its outcome instead of each making one more, so
    /// while the broker is away the k-th caller waits for one attempt, not
    /// k of them.
    failed: Option<(tokio::time::Instant, PostofficeError)>,
}

/// One connection and its confirm channel for publishing.
#[derive(Clone)]
struct Link {
    connection: Arc<Connection>,
    publish: Channel,
}

fn error(e: lapin::Error) -> PostofficeError {
    if let lapin::ErrorKind::ProtocolError(amqp) = e.kind() {
        match amqp.get_id() {
            404 => return PostofficeError::NoSuchQueue(amqp.get_message().to_string()),
            406 => return PostofficeError::SpecMismatch(amqp.get_message().to_string()),
            _ => {}
        }
    }
    PostofficeError::Connection(e.to_string())
}

/// The error of an operation the broker did not answer in time.
fn silent(what: &str) -> PostofficeError {
    PostofficeError::Connection(format!(
        "the broker did not answer {what} within {OPERATION_TIMEOUT:?}"
    ))
}

/// `op` within [`OPERATION_TIMEOUT`].
async fn bounded<T>(
    what: &str,
    op: impl std::future::Future<Output = Result<T, PostofficeError>>,
) -> Result<T, PostofficeError> {
    tokio::time::timeout(OPERATION_TIMEOUT, op)
        .await
        .unwrap_or_else(|_| Err(silent(what)))
}

fn short(s: &str) -> ShortString {
    s.into()
}

/// The queue arguments a spec stands for.
fn arguments(spec: &QueueSpec) -> FieldTable {
    let mut args = FieldTable::default();
    if let Some(n) = spec.max_len {
        args.insert(short("x-max-length"), AMQPValue::LongLongInt(n as i64));
        let overflow = match spec.overflow {
            Overflow::DropHead => "drop-head",
            Overflow::RejectPublish => "reject-publish",
        };
        args.insert(short("x-overflow"), AMQPValue::LongString(overflow.into()));
    }
    if let Some(ttl) = spec.message_ttl {
        args.insert(
            short("x-message-ttl"),
            AMQPValue::LongLongInt(ttl.as_millis() as i64),
        );
    }
    if let Some(p) = spec.max_priority {
        args.insert(short("x-max-priority"), AMQPValue::ShortShortUInt(p));
    }
    if spec.expires {
        args.insert(
            short("x-expires"),
            AMQPValue::LongLongInt(TRANSIENT_QUEUE_EXPIRY.as_millis() as i64),
        );
    }
    args
}

fn properties(p: &Properties) -> BasicProperties {
    let mut b = BasicProperties::default();
    if let Some(id) = &p.message_id {
        b = b.with_message_id(short(id));
    }
    if let Some(kind) = &p.kind {
        b = b.with_type(short(kind));
    }
    if let Some(c) = &p.correlation_id {
        b = b.with_correlation_id(short(c));
    }
    if let Some(r) = &p.reply_to {
        b = b.with_reply_to(short(r));
    }
    if let Some(prio) = p.priority {
        b = b.with_priority(prio);
    }
    if p.persistent {
        b = b.with_delivery_mode(2);
    }
    if let Some(ttl) = p.expiration {
        b = b.with_expiration(short(&ttl.as_millis().to_string()));
    }
    if let Some(c) = &p.cursor {
        let mut headers = FieldTable::default();
        headers.insert(
            short(CURSOR_HEADER),
            AMQPValue::LongString(c.as_str().into()),
        );
        b = b.with_headers(headers);
    }
    b
}

/// The header that carries [`Properties::cursor`].
const CURSOR_HEADER: &str = "cursor";

fn from_properties(b: &BasicProperties) -> Properties {
    Properties {
        message_id: b.message_id().as_ref().map(|s| s.to_string()),
        kind: b.kind().as_ref().map(|s| s.to_string()),
        correlation_id: b.correlation_id().as_ref().map(|s| s.to_string()),
        reply_to: b.reply_to().as_ref().map(|s| s.to_string()),
        priority: *b.priority(),
        persistent: *b.delivery_mode() == Some(2),
        expiration: b
            .expiration()
            .as_ref()
            .and_then(|ms| ms.as_str().parse().ok())
            .map(std::time::Duration::from_millis),
        cursor: b
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get(CURSOR_HEADER))
            .and_then(|v| match v {
                AMQPValue::LongString(s) => Some(s.to_string()),
                _ => None,
            }),
    }
}

impl AmqpPostoffice {
    /// Connects to `uri` (`amqp://user:pass@host:port/vhost`) and declares
    /// the exchanges.
    pub async fn connect(uri: &str) -> Result<AmqpPostoffice, PostofficeError> {
        let po = AmqpPostoffice {
            inner: Arc::new(Inner {
                uri: uri.to_owned(),
                link: Mutex::new(LinkState::default()),
            }),
        };
        po.link().await?;
        Ok(po)
    }

    /// The current link, reconnecting (and redeclaring the exchanges) when
    /// the connection or the publish channel is gone.
    async fn link(&self) -> Result<Link, PostofficeError> {
        let asked = tokio::time::Instant::now();
        let mut guard = self.inner.link.lock().await;
        if let Some(l) = guard.link.as_ref()
            && l.connection.status().connected()
            && l.publish.status().connected()
        {
            return Ok(l.clone());
        }
        if let Some((at, e)) = &guard.failed
            && *at >= asked
        {
            // An attempt made while this caller waited has just failed.
            return Err(e.clone());
        }
        let old = guard.link.take();
        match bounded("connecting", Self::open_link(&self.inner.uri, old)).await {
            Ok(link) => {
                guard.link = Some(link.clone());
                guard.failed = None;
                Ok(link)
            }
            Err(e) => {
                guard.failed = Some((tokio::time::Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    /// Opens the publishing channel, on `old`'s connection while it still
    /// stands, and declares the exchanges.
    async fn open_link(uri: &str, old: Option<Link>) -> Result<Link, PostofficeError> {
        let connection = match old {
            Some(l) if l.connection.status().connected() => l.connection,
            _ => Arc::new(
                Connection::connect(uri, ConnectionProperties::default())
                    .await
                    .map_err(error)?,
            ),
        };
        let publish = connection.create_channel().await.map_err(error)?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(error)?;
        for exchange in Exchange::ALL {
            publish
                .exchange_declare(
                    short(exchange.name()),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(error)?;
        }
        Ok(Link {
            connection,
            publish,
        })
    }

    /// Runs `op` on the current link within [`OPERATION_TIMEOUT`]; when the
    /// broker does not answer in time, gives the link up (see the module's
    /// doc) and fails with a retryable error.
    async fn within<T, F, Fut>(&self, what: &'static str, op: F) -> Result<T, PostofficeError>
    where
        F: FnOnce(Link) -> Fut,
        Fut: std::future::Future<Output = Result<T, PostofficeError>>,
    {
        let link = self.link().await?;
        match tokio::time::timeout(OPERATION_TIMEOUT, op(link.clone())).await {
            Ok(r) => r,
            Err(_) => {
                self.give_up(&link).await;
                Err(silent(what))
            }
        }
    }

    /// Drops `link` if it is still the current one, and closes its
    /// connection in the background (itself bounded: a broker that does
    /// not answer does not answer a close either).
    async fn give_up(&self, link: &Link) {
        let mut guard = self.inner.link.lock().await;
        if guard
            .link
            .as_ref()
            .is_some_and(|l| Arc::ptr_eq(&l.connection, &link.connection))
        {
            guard.link = None;
        }
        drop(guard);
        tracing::warn!(
            timeout = ?OPERATION_TIMEOUT,
            "the broker stopped answering: reconnecting"
        );
        let connection = link.connection.clone();
        tokio::spawn(async move {
            let close = connection.close(320, short("broker stopped answering"));
            let _ = tokio::time::timeout(OPERATION_TIMEOUT, close).await;
        });
    }

    /// Runs one topology operation on a channel of its own.
    async fn on_channel<T, F, Fut>(&self, op: F) -> Result<T, PostofficeError>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<T, lapin::Error>>,
    {
        self.within("a topology operation", |link| async move {
            let channel = link.connection.create_channel().await.map_err(error)?;
            let result = op(channel.clone()).await.map_err(error);
            if channel.status().connected() {
                let _ = channel.close(200, short("done")).await;
            }
            result
        })
        .await
    }

    /// Closes the connection.
    pub async fn close(&self) {
        if let Some(l) = self.inner.link.lock().await.link.take() {
            let _ = l.connection.close(200, short("closing")).await;
        }
    }
}

#[async_trait::async_trait]
impl Postoffice for AmqpPostoffice {
    async fn declare_queue(&self, spec: &QueueSpec) -> Result<(), PostofficeError> {
        let (name, args) = (spec.name.clone(), arguments(spec));
        let durable = spec.durable;
        self.on_channel(|ch| async move {
            ch.queue_declare(
                short(&name),
                QueueDeclareOptions {
                    durable,
                    ..QueueDeclareOptions::default()
                },
                args,
            )
            .await
            .map(|_| ())
        })
        .await
        .map_err(|e| match e {
            PostofficeError::SpecMismatch(_) => PostofficeError::SpecMismatch(spec.name.clone()),
            e => e,
        })
    }

    async fn delete_queue(&self, name: &str) -> Result<(), PostofficeError> {
        let name = name.to_owned();
        match self
            .on_channel(|ch| async move {
                ch.queue_delete(short(&name), QueueDeleteOptions::default())
                    .await
                    .map(|_| ())
            })
            .await
        {
            Err(PostofficeError::NoSuchQueue(_)) => Ok(()),
            r => r,
        }
    }

    async fn bind(
        &self,
        exchange: Exchange,
        queue: &str,
        pattern: &str,
    ) -> Result<(), PostofficeError> {
        let (q, p) = (queue.to_owned(), pattern.to_owned());
        self.on_channel(|ch| async move {
            ch.queue_bind(
                short(&q),
                short(exchange.name()),
                short(&p),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
        })
        .await
        .map_err(|e| match e {
            PostofficeError::NoSuchQueue(_) => PostofficeError::NoSuchQueue(queue.to_owned()),
            e => e,
        })
    }

    async fn unbind(
        &self,
        exchange: Exchange,
        queue: &str,
        pattern: &str,
    ) -> Result<(), PostofficeError> {
        let (q, p) = (queue.to_owned(), pattern.to_owned());
        match self
            .on_channel(|ch| async move {
                ch.queue_unbind(
                    short(&q),
                    short(exchange.name()),
                    short(&p),
                    FieldTable::default(),
                )
                .await
            })
            .await
        {
            Err(PostofficeError::NoSuchQueue(_)) => Ok(()),
            r => r,
        }
    }

    async fn publish(&self, exchange: Exchange, message: Outgoing) -> Result<(), PostofficeError> {
        self.publish_all(exchange, vec![message]).await
    }

    async fn publish_all(
        &self,
        exchange: Exchange,
        messages: Vec<Outgoing>,
    ) -> Result<(), PostofficeError> {
        if messages.is_empty() {
            return Ok(());
        }
        let messages = &messages;
        self.within("a publish", |link| async move {
            // Sent in order on the one publishing channel, then every
            // confirm awaited: one round trip for the lot.
            let mut confirms = Vec::with_capacity(messages.len());
            for m in messages {
                let confirm = link
                    .publish
                    .basic_publish(
                        short(exchange.name()),
                        short(&m.routing_key),
                        BasicPublishOptions::default(),
                        &m.payload,
                        properties(&m.props),
                    )
                    .await
                    .map_err(error)?;
                confirms.push((confirm, &m.routing_key));
            }
            for (confirm, key) in confirms {
                match confirm.await.map_err(error)? {
                    Confirmation::Ack(_) | Confirmation::NotRequested => {}
                    Confirmation::Nack(_) => return Err(PostofficeError::Rejected(key.clone())),
                }
            }
            Ok(())
        })
        .await
    }

    async fn consume(&self, queue: &str, prefetch: u16) -> Result<Consumer, PostofficeError> {
        self.within("opening a consumer", |link| async move {
            let channel = link.connection.create_channel().await.map_err(error)?;
            channel
                .basic_qos(prefetch.max(1), BasicQosOptions::default())
                .await
                .map_err(error)?;
            let consumer = channel
                .basic_consume(
                    short(queue),
                    short(""),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| match error(e) {
                    PostofficeError::NoSuchQueue(_) => {
                        PostofficeError::NoSuchQueue(queue.to_owned())
                    }
                    e => e,
                })?;
            Ok(Consumer::new(AmqpConsumer { channel, consumer }))
        })
        .await
    }
}

struct AmqpConsumer {
    channel: Channel,
    consumer: lapin::Consumer,
}

#[async_trait::async_trait]
impl DeliverySource for AmqpConsumer {
    async fn next(&mut self) -> Option<Delivery> {
        use futures_lite::StreamExt as _;
        match self.consumer.next().await {
            Some(Ok(d)) => Some(Delivery::new(
                d.routing_key.to_string(),
                Bytes::from(d.data),
                from_properties(&d.properties),
                d.redelivered,
                AmqpAcker {
                    acker: Some(d.acker),
                },
            )),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "consumer failed");
                None
            }
            None => None,
        }
    }
}

impl Drop for AmqpConsumer {
    fn drop(&mut self) {
        // Closing the channel returns its unacked deliveries to the queue.
        let channel = self.channel.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = channel.close(200, short("consumer dropped")).await;
            });
        }
    }
}

struct AmqpAcker {
    acker: Option<lapin::Acker>,
}

#[async_trait::async_trait]
impl Settle for AmqpAcker {
    async fn ack(mut self: Box<Self>) -> Result<(), PostofficeError> {
        let acker = self.acker.take().expect("acked once");
        bounded("an ack", async {
            acker
                .ack(BasicAckOptions::default())
                .await
                .map(|_| ())
                .map_err(error)
        })
        .await
    }

    async fn nack(mut self: Box<Self>, requeue: bool) -> Result<(), PostofficeError> {
        let acker = self.acker.take().expect("acked once");
        bounded("a nack", async {
            acker
                .nack(BasicNackOptions {
                    requeue,
                    ..BasicNackOptions::default()
                })
                .await
                .map(|_| ())
                .map_err(error)
        })
        .await
    }
}

impl Drop for AmqpAcker {
    fn drop(&mut self) {
        if let Some(acker) = self.acker.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(async move {
                let _ = acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    })
                    .await;
            });
        }
    }
}
