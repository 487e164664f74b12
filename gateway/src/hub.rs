//! The hub: one gateway's subscriptions and its local fan-out.
//!
//! Connections subscribe patterns here. The hub keeps a [`Trie`] from
//! patterns to connections, and binds the gateway's one postoffice queue to
//! the **union** of those patterns: the broker holds one binding per
//! distinct pattern, made when the first connection subscribes it and
//! removed when the last one leaves. Each message arrives once from the
//! postoffice, is matched once against the trie, and its already-encoded
//! frame is pushed to every matching connection's [`Outbox`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::frame::Frame;
use parking_lot::RwLock;
use postmesh_router::rpc::RpcClient;
use postmesh_router::{Exchange, Postoffice, PostofficeError, QueueSpec, reopen};
use postmesh_schema::{Cursor, Pattern, RecentSet, Trie, Uuid};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::GatewayMetrics;
use crate::outbox::{Live, LiveKind, Outbox, Push};

/// Unacknowledged deliveries the hub takes from its queue at a time.
pub const HUB_PREFETCH: u16 = 512;

/// Identifies a connection within one gateway.
pub type ConnId = u64;

/// A connection as the hub sees it: an id and where its frames go.
#[derive(Debug, Clone)]
pub struct ConnRef {
    pub id: ConnId,
    pub outbox: Arc<Outbox>,
}

impl PartialEq for ConnRef {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

/// One gateway's subscription registry and fan-out.
pub struct Hub {
    trie: RwLock<Trie<ConnRef>>,
    /// Connections per pattern, for the upstream bindings. An async mutex
    /// held across bind/unbind, so that binding operations reach the
    /// postoffice in the order their counts changed.
    upstream: tokio::sync::Mutex<HashMap<String, usize>>,
    postoffice: Arc<dyn Postoffice>,
    queue: String,
    metrics: GatewayMetrics,
    next_id: AtomicU64,
    /// RPC replies arrive on the hub's queue too (bound with the client's
    /// binding), and go to the client's waiting requests.
    rpc: Option<Arc<RpcClient>>,
    /// Every connection, for keepalive markers (weak: a closed connection
    /// goes away with its session).
    conns: parking_lot::Mutex<HashMap<ConnId, std::sync::Weak<Outbox>>>,
    /// The newest cursor this hub received (or the hub's start time):
    /// after an outage, everything stored after it may have been missed.
    last_seen: parking_lot::Mutex<Cursor>,
    /// UUIDs recently fanned out: a second copy (gold from two cores, a
    /// core catching up, a redelivery) is dropped, and a reread skips
    /// what went out live.
    seen: parking_lot::Mutex<RecentSet<Uuid>>,
    /// The hub's own tasks (its consumer, keepalive, upstream unbinds), so
    /// that shutdown can wait until the queue is deleted.
    tasks: TaskTracker,
}

/// The longest wait between two reconnection attempts.
pub const MAX_RECONNECT_DELAY: std::time::Duration = std::time::Duration::from_secs(5);

impl Hub {
    /// Declares the gateway's queue `queue` and starts consuming it until
    /// `cancel`. The queue is deleted on shutdown; [`Hub::stopped`] says
    /// when.
    pub async fn start(
        postoffice: Arc<dyn Postoffice>,
        queue: String,
        dedupe_window: usize,
        metrics: GatewayMetrics,
        cancel: CancellationToken,
        rpc: Option<Arc<RpcClient>>,
        keepalive: Option<std::time::Duration>,
    ) -> Result<Arc<Hub>, PostofficeError> {
        postoffice
            .declare_queue(&QueueSpec::of_process(&queue))
            .await?;
        if let Some(rpc) = &rpc {
            postoffice
                .bind(Exchange::Postoffice, &queue, &rpc.binding())
                .await?;
        }
        let mut consumer = postoffice.consume(&queue, HUB_PREFETCH).await?;
        let start = Cursor::now();
        let hub = Arc::new(Hub {
            trie: RwLock::new(Trie::new()),
            upstream: tokio::sync::Mutex::new(HashMap::new()),
            postoffice,
            queue,
            metrics,
            next_id: AtomicU64::new(1),
            last_seen: parking_lot::Mutex::new(start),
            seen: parking_lot::Mutex::new(RecentSet::new(dedupe_window)),
            conns: parking_lot::Mutex::new(HashMap::new()),
            rpc,
            tasks: TaskTracker::new(),
        });
        if let Some(interval) = keepalive {
            hub.tasks
                .spawn(hub.clone().keepalive(interval, cancel.clone()));
        }
        let h = hub.clone();
        hub.tasks.spawn(async move {
            loop {
                let delivery = tokio::select! {
                    _ = cancel.cancelled() => break,
                    d = consumer.next() => d,
                };
                let Some(delivery) = delivery else {
                    // The postoffice connection (or the queue) is gone.
                    let baseline = *h.last_seen.lock();
                    tracing::warn!(queue = %h.queue, "lost the postoffice; reconnecting");
                    match h.reestablish(&cancel, baseline).await {
                        Some(c) => consumer = c,
                        None => break,
                    }
                    tracing::info!(queue = %h.queue, "postoffice back; devices reread");
                    continue;
                };
                if h.rpc.as_ref().is_some_and(|rpc| rpc.take_reply(&delivery)) {
                    let _ = delivery.ack().await;
                    continue;
                }
                h.metrics.messages_in.inc();
                let uuid = delivery
                    .props
                    .message_id
                    .as_deref()
                    .and_then(|s| Uuid::parse_str(s).ok());
                let cursor = delivery
                    .props
                    .cursor
                    .as_deref()
                    .and_then(|s| s.parse::<Cursor>().ok());
                if let Some(c) = cursor {
                    let mut last = h.last_seen.lock();
                    *last = (*last).max(c);
                }
                let fresh = uuid.is_none_or(|u| h.seen.lock().insert(u));
                if !fresh {
                    h.metrics.messages_duplicate.inc();
                } else {
                    match Frame::try_from(delivery.payload.clone()) {
                        Ok(frame) => {
                            let live = Arc::new(Live {
                                uuid: uuid.unwrap_or_default(),
                                cursor,
                                path: delivery.routing_key.clone(),
                                frame,
                                kind: LiveKind::Message,
                            });
                            h.fan_out(&live);
                        }
                        Err(_) => {
                            tracing::warn!(key = %delivery.routing_key, "dropping a non-UTF-8 frame")
                        }
                    }
                }
                if let Err(e) = delivery.ack().await {
                    tracing::warn!(error = %e, "ack failed");
                }
            }
            if let Err(e) = h.postoffice.delete_queue(&h.queue).await {
                tracing::warn!(error = %e, "deleting the gateway queue failed");
            }
        });
        Ok(hub)
    }

    /// Redeclares the queue, rebinds every pattern in use and consumes
    /// again, retrying with backoff until it works or `cancel`. Once bound,
    /// and before the first new delivery, every connection is told to reread
    /// from `baseline`: the marker sits in its outbox ahead of anything
    /// newer, so the session can merge the reread with live messages.
    async fn reestablish(
        &self,
        cancel: &CancellationToken,
        baseline: Cursor,
    ) -> Option<postmesh_router::Consumer> {
        let spec = QueueSpec::of_process(&self.queue);
        reopen::open(
            &*self.postoffice,
            &spec,
            HUB_PREFETCH,
            MAX_RECONNECT_DELAY,
            cancel,
            || async move {
                // Held across the rebind: no subscribe or unsubscribe may
                // change the set of patterns halfway.
                let upstream = self.upstream.lock().await;
                for pattern in upstream.keys() {
                    self.postoffice
                        .bind(Exchange::Paths, &self.queue, pattern)
                        .await?;
                }
                if let Some(rpc) = &self.rpc {
                    self.postoffice
                        .bind(Exchange::Postoffice, &self.queue, &rpc.binding())
                        .await?;
                }
                drop(upstream);
                self.reread_all(baseline);
                Ok(())
            },
        )
        .await
    }

    /// Waits until the hub's tasks have ended: after `cancel`, once the
    /// consumer has stopped and the queue is deleted. Tasks started later
    /// (the unbinds of sessions still closing) are waited for too.
    pub async fn stopped(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Queues a reread marker for every connection.
    pub(crate) fn reread_all(&self, baseline: Cursor) {
        self.broadcast(LiveKind::Reread, Some(baseline));
    }

    /// Whether a message with this UUID went out live recently.
    pub fn has_seen(&self, uuid: &Uuid) -> bool {
        self.seen.lock().contains(uuid)
    }

    /// Queues a marker (not a frame) in every connection's outbox.
    fn broadcast(&self, kind: LiveKind, cursor: Option<Cursor>) {
        let marker = Arc::new(Live {
            uuid: Uuid::nil(),
            cursor,
            path: String::new(),
            frame: Frame::from_static(""),
            kind,
        });
        let outboxes: Vec<Arc<Outbox>> = self
            .conns
            .lock()
            .values()
            .filter_map(|w| w.upgrade())
            .collect();
        for o in outboxes {
            o.push(marker.clone());
        }
    }

    /// Registers a new connection with an outbox of `capacity` frames and
    /// `max_bytes` (see [`Outbox::bounded`]).
    pub fn connect(&self, capacity: usize, max_bytes: usize) -> ConnRef {
        self.metrics.connections.inc();
        let conn = ConnRef {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            outbox: Arc::new(Outbox::bounded(capacity, max_bytes)),
        };
        self.conns
            .lock()
            .insert(conn.id, Arc::downgrade(&conn.outbox));
        conn
    }

    /// Queues a keepalive marker for every connection, every `interval`.
    async fn keepalive(self: Arc<Self>, interval: std::time::Duration, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => self.broadcast(LiveKind::Keepalive, None),
            }
        }
    }

    /// Subscribes `conn` to `pattern`. Returns once the pattern is bound
    /// upstream, so everything distributed from then on will arrive: the
    /// base of subscribe-with-history's no-gap guarantee.
    pub async fn subscribe(
        &self,
        conn: &ConnRef,
        pattern: &Pattern,
    ) -> Result<(), PostofficeError> {
        self.trie.write().insert(pattern.as_str(), conn.clone());
        self.metrics.subscriptions.inc();
        let mut upstream = self.upstream.lock().await;
        let count = upstream.entry(pattern.as_str().to_owned()).or_insert(0);
        *count += 1;
        if *count == 1 {
            if let Err(e) = self
                .postoffice
                .bind(Exchange::Paths, &self.queue, pattern.as_str())
                .await
            {
                upstream.remove(pattern.as_str());
                drop(upstream);
                self.trie.write().remove(pattern.as_str(), conn);
                self.metrics.subscriptions.dec();
                return Err(e);
            }
            self.metrics.bindings.inc();
        }
        Ok(())
    }

    /// Unsubscribes `conn` from `pattern`; the last one out unbinds upstream.
    pub async fn unsubscribe(
        &self,
        conn: &ConnRef,
        pattern: &Pattern,
    ) -> Result<(), PostofficeError> {
        if self.trie.write().remove(pattern.as_str(), conn).is_none() {
            return Ok(());
        }
        self.metrics.subscriptions.dec();
        self.release_upstream(pattern.as_str()).await
    }

    async fn release_upstream(&self, pattern: &str) -> Result<(), PostofficeError> {
        let mut upstream = self.upstream.lock().await;
        let Some(count) = upstream.get_mut(pattern) else {
            return Ok(());
        };
        *count -= 1;
        if *count == 0 {
            upstream.remove(pattern);
            self.metrics.bindings.dec();
            self.postoffice
                .unbind(Exchange::Paths, &self.queue, pattern)
                .await?;
        }
        Ok(())
    }

    /// Forgets a connection and all its patterns. Synchronous, so it can run
    /// from `Drop`; the upstream unbinds run on a spawned task.
    pub fn disconnect(self: &Arc<Self>, conn: &ConnRef, patterns: Vec<Pattern>) {
        self.metrics.connections.dec();
        self.conns.lock().remove(&conn.id);
        self.release(conn, patterns);
    }

    /// Takes `patterns` from `conn` at once: no frame is fanned out to it
    /// for them from this call on. The upstream unbinds run on a spawned
    /// task.
    pub fn release(self: &Arc<Self>, conn: &ConnRef, patterns: Vec<Pattern>) {
        let mut released = Vec::with_capacity(patterns.len());
        {
            let mut trie = self.trie.write();
            for p in patterns {
                if trie.remove(p.as_str(), conn).is_some() {
                    released.push(p);
                }
            }
        }
        self.metrics.subscriptions.dec_by(released.len() as i64);
        if released.is_empty() {
            return;
        }
        let hub = self.clone();
        let cleanup = async move {
            for p in released {
                if let Err(e) = hub.release_upstream(p.as_str()).await {
                    tracing::warn!(pattern = %p, error = %e, "unbind failed");
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                self.tasks.spawn_on(cleanup, &handle);
            }
            Err(_) => tracing::warn!("no runtime to release upstream bindings"),
        }
    }

    /// Pushes `live` to every connection subscribed to a matching pattern,
    /// once per connection. Returns the number of frames queued.
    pub fn fan_out(&self, live: &Arc<Live>) -> usize {
        let trie = self.trie.read();
        let mut groups: Vec<&[ConnRef]> = Vec::new();
        trie.for_each_matching_pattern(&live.path, |conns| groups.push(conns));
        let mut queued = 0;
        // An overflowing connection is counted when its session closes it.
        let mut push = |c: &ConnRef| {
            if c.outbox.push(live.clone()) == Push::Queued {
                queued += 1;
            }
        };
        match groups.as_slice() {
            [] => {}
            [one] => one.iter().for_each(&mut push),
            many => {
                // A connection under several matching patterns gets one copy.
                let mut all: Vec<&ConnRef> = many.iter().flat_map(|g| g.iter()).collect();
                all.sort_unstable_by_key(|c| c.id);
                all.dedup_by_key(|c| c.id);
                all.into_iter().for_each(&mut push);
            }
        }
        self.metrics.deliveries.inc_by(queued as u64);
        queued
    }

    /// Distinct patterns currently bound upstream.
    pub async fn binding_count(&self) -> usize {
        self.upstream.lock().await.len()
    }
}
