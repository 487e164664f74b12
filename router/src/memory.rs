//! The embedded postoffice: an in-process topic exchange with the same
//! contract as a RabbitMQ broker (see [`crate::Postoffice`]). It is what
//! `postmesh up` runs on when no broker is configured.
//!
//! Each exchange is a [`Trie`] from binding patterns to queue names; each
//! queue is a bounded MPMC channel, so competing consumers share it. Unacked
//! deliveries hold a prefetch permit and are requeued when dropped.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::RwLock;
use postmesh_schema::Trie;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::postoffice::{
    Consumer, Delivery, DeliverySource, Exchange, Outgoing, Overflow, Postoffice, PostofficeError,
    Properties, QueueSpec, Settle,
};

/// Capacity of a queue declared without `max_len`. Publishers wait when it
/// is full, which is RabbitMQ's flow control in miniature: 64 Ki messages
/// is far more than a healthy consumer ever lags, and bounds memory.
pub const DEFAULT_QUEUE_CAPACITY: usize = 65_536;

#[derive(Clone)]
struct Envelope {
    shared: Arc<Shared>,
    redelivered: bool,
}

struct Shared {
    routing_key: String,
    payload: Bytes,
    props: Properties,
    expires_at: Option<Instant>,
}

struct Queue {
    spec: QueueSpec,
    tx: async_channel::Sender<Envelope>,
    rx: async_channel::Receiver<Envelope>,
}

impl Queue {
    /// Puts a message on the queue according to its overflow policy.
    async fn push(&self, env: Envelope) -> Result<(), PostofficeError> {
        match (self.spec.max_len, self.spec.overflow) {
            (None, _) => self.tx.send(env).await.map_err(|_| PostofficeError::Closed),
            (Some(_), Overflow::RejectPublish) => self.tx.try_send(env).map_err(|e| match e {
                async_channel::TrySendError::Full(_) => {
                    PostofficeError::Rejected(self.spec.name.clone())
                }
                async_channel::TrySendError::Closed(_) => PostofficeError::Closed,
            }),
            (Some(_), Overflow::DropHead) => {
                let mut env = env;
                loop {
                    match self.tx.try_send(env) {
                        Ok(()) => return Ok(()),
                        Err(async_channel::TrySendError::Full(back)) => {
                            // Make room by discarding the oldest ready message.
                            let _ = self.rx.try_recv();
                            env = back;
                        }
                        Err(async_channel::TrySendError::Closed(_)) => {
                            return Err(PostofficeError::Closed);
                        }
                    }
                }
            }
        }
    }

    /// Puts an unacked delivery back. Never waits: requeues happen in `Drop`.
    fn requeue(&self, mut env: Envelope) {
        env.redelivered = true;
        match self.tx.try_send(env) {
            Ok(()) | Err(async_channel::TrySendError::Closed(_)) => {}
            Err(async_channel::TrySendError::Full(env)) => {
                // The queue filled up meanwhile. Wait for room off this
                // thread rather than lose an unacked message.
                if let Ok(handle) = tokio::runtime::Handle::try_current() {
                    let tx = self.tx.clone();
                    handle.spawn(async move {
                        let _ = tx.send(env).await;
                    });
                } else {
                    let _ = self.tx.force_send(env);
                }
            }
        }
    }
}

#[derive(Default)]
struct State {
    queues: HashMap<String, Arc<Queue>>,
    /// Every binding, so deleting a queue can remove its bindings.
    bindings: HashMap<String, HashSet<(Exchange, String)>>,
    paths: Trie<String>,
    postoffice: Trie<String>,
}

impl State {
    fn trie(&mut self, exchange: Exchange) -> &mut Trie<String> {
        match exchange {
            Exchange::Paths => &mut self.paths,
            Exchange::Postoffice => &mut self.postoffice,
        }
    }
}

/// The in-process postoffice. Cloning shares the same exchanges and queues.
#[derive(Clone, Default)]
pub struct MemoryPostoffice {
    state: Arc<RwLock<State>>,
}

impl MemoryPostoffice {
    /// An empty postoffice with both exchanges.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of bindings on `exchange`, for metrics and tests.
    pub fn binding_count(&self, exchange: Exchange) -> usize {
        let state = self.state.read();
        state
            .bindings
            .values()
            .map(|b| b.iter().filter(|(e, _)| *e == exchange).count())
            .sum()
    }

    /// Ready (unconsumed) messages in a queue.
    pub fn queue_len(&self, name: &str) -> Option<usize> {
        self.state.read().queues.get(name).map(|q| q.rx.len())
    }
}

#[async_trait]
impl Postoffice for MemoryPostoffice {
    async fn declare_queue(&self, spec: &QueueSpec) -> Result<(), PostofficeError> {
        let mut state = self.state.write();
        if let Some(existing) = state.queues.get(&spec.name) {
            return if existing.spec == *spec {
                Ok(())
            } else {
                Err(PostofficeError::SpecMismatch(spec.name.clone()))
            };
        }
        let (tx, rx) =
            async_channel::bounded(spec.max_len.unwrap_or(DEFAULT_QUEUE_CAPACITY).max(1));
        state.queues.insert(
            spec.name.clone(),
            Arc::new(Queue {
                spec: spec.clone(),
                tx,
                rx,
            }),
        );
        Ok(())
    }

    async fn delete_queue(&self, name: &str) -> Result<(), PostofficeError> {
        let mut state = self.state.write();
        let Some(queue) = state.queues.remove(name) else {
            return Ok(());
        };
        for (exchange, pattern) in state.bindings.remove(name).unwrap_or_default() {
            state.trie(exchange).remove(&pattern, &name.to_owned());
        }
        queue.tx.close();
        Ok(())
    }

    async fn bind(
        &self,
        exchange: Exchange,
        queue: &str,
        pattern: &str,
    ) -> Result<(), PostofficeError> {
        let mut state = self.state.write();
        if !state.queues.contains_key(queue) {
            return Err(PostofficeError::NoSuchQueue(queue.to_owned()));
        }
        let fresh = state
            .bindings
            .entry(queue.to_owned())
            .or_default()
            .insert((exchange, pattern.to_owned()));
        if fresh {
            state.trie(exchange).insert(pattern, queue.to_owned());
        }
        Ok(())
    }

    async fn unbind(
        &self,
        exchange: Exchange,
        queue: &str,
        pattern: &str,
    ) -> Result<(), PostofficeError> {
        let mut state = self.state.write();
        let removed = state
            .bindings
            .get_mut(queue)
            .is_some_and(|b| b.remove(&(exchange, pattern.to_owned())));
        if removed {
            state.trie(exchange).remove(pattern, &queue.to_owned());
        }
        Ok(())
    }

    async fn publish(&self, exchange: Exchange, message: Outgoing) -> Result<(), PostofficeError> {
        // Resolve targets under the read lock, push after releasing it: a
        // publisher waiting for room must not block bind/unbind.
        let targets: Vec<Arc<Queue>> = {
            let state = self.state.read();
            let trie = match exchange {
                Exchange::Paths => &state.paths,
                Exchange::Postoffice => &state.postoffice,
            };
            let mut names: Vec<&String> = Vec::new();
            trie.for_each_match(&message.routing_key, |q| names.push(q));
            names.sort_unstable();
            names.dedup();
            names
                .into_iter()
                .filter_map(|n| state.queues.get(n).cloned())
                .collect()
        };
        if targets.is_empty() {
            return Ok(());
        }
        let Outgoing {
            routing_key,
            payload,
            props,
        } = message;
        let now = Instant::now();
        let mut first_error = None;
        for queue in targets {
            let env = Envelope {
                shared: Arc::new(Shared {
                    routing_key: routing_key.clone(),
                    payload: payload.clone(),
                    props: props.clone(),
                    expires_at: match (queue.spec.message_ttl, props.expiration) {
                        (Some(a), Some(b)) => Some(now + a.min(b)),
                        (a, b) => a.or(b).map(|ttl| now + ttl),
                    },
                }),
                redelivered: false,
            };
            if let Err(e) = queue.push(env).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn consume(&self, queue: &str, prefetch: u16) -> Result<Consumer, PostofficeError> {
        let q = self
            .state
            .read()
            .queues
            .get(queue)
            .cloned()
            .ok_or_else(|| PostofficeError::NoSuchQueue(queue.to_owned()))?;
        Ok(Consumer::new(MemoryConsumer {
            rx: q.rx.clone(),
            queue: q,
            permits: Arc::new(Semaphore::new(usize::from(prefetch.max(1)))),
        }))
    }
}

struct MemoryConsumer {
    queue: Arc<Queue>,
    rx: async_channel::Receiver<Envelope>,
    permits: Arc<Semaphore>,
}

#[async_trait]
impl DeliverySource for MemoryConsumer {
    async fn next(&mut self) -> Option<Delivery> {
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        loop {
            let env = self.rx.recv().await.ok()?;
            if env.shared.expires_at.is_some_and(|t| t <= Instant::now()) {
                continue;
            }
            return Some(Delivery::new(
                env.shared.routing_key.clone(),
                env.shared.payload.clone(),
                env.shared.props.clone(),
                env.redelivered,
                MemoryAcker {
                    env: Some(env),
                    queue: Arc::downgrade(&self.queue),
                    _permit: permit,
                },
            ));
        }
    }
}

struct MemoryAcker {
    env: Option<Envelope>,
    queue: Weak<Queue>,
    _permit: OwnedSemaphorePermit,
}

#[async_trait]
impl Settle for MemoryAcker {
    async fn ack(mut self: Box<Self>) -> Result<(), PostofficeError> {
        self.env = None;
        Ok(())
    }

    async fn nack(mut self: Box<Self>, requeue: bool) -> Result<(), PostofficeError> {
        if !requeue {
            self.env = None;
        }
        // Dropping with `env` set requeues.
        Ok(())
    }
}

impl Drop for MemoryAcker {
    fn drop(&mut self) {
        if let (Some(env), Some(queue)) = (self.env.take(), self.queue.upgrade()) {
            queue.requeue(env);
        }
    }
}
