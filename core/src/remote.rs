//! The core services across processes, over the postoffice.
//!
//! # Addressing
//! A gateway asks *any* core of a region: the routing key is
//! `<action>.<gateway address>.<region>.<product>.core.-.-`, where the
//! region is the gateway's own by default, another region by name, or `-`
//! for any region ([`RegionTarget`]). Cores bind on the destination: their
//! region (or `-`), their product and their service, whoever sends, so a
//! request from another region reaches them through federation. Cores
//! share one durable queue per region, bound with the design's *my service*
//! pattern for each action, so requests are balanced across them (the
//! "or"). Each core also has a queue of its own, bound to its unique
//! address, to `gold` requests and to `replicate` notices from its peers
//! (the "and").
//!
//! # Classes of service
//! - **Gold** publishes go to every core of the region (each core's own
//!   queue is bound to `gold`). Each persists (idempotent by UUID) and
//!   distributes; the gateway takes the first reply, and gateways drop the
//!   second copy by UUID. One core may die; the other still delivers.
//! - **Silver** and **bronze** publishes go to the shared queue, which has
//!   `x-max-priority`: gold 2, silver 1, bronze 0, so silver overtakes
//!   bronze when the queue is backed up.
//!
//! # Replication
//! With the embedded store every core keeps its own copy of the folders. A
//! core that handled a publish or a dismissal tells its peers (`replicate`,
//! addressed to the cores of any region, so federated regions receive it
//! too), and they persist it, so any core can answer history. A core
//! answers the publish only once the replica is with the postoffice (a
//! failure is a retryable error: the resend is a duplicate here and is
//! replicated again), and a peer acks a replica only once it is stored.
//! This is eventually consistent (a read right after a write may reach a
//! peer that has not applied it yet).
//!
//! Each such core also sends its peers a *mark* every [`MARK_INTERVAL`]
//! on the same stream (a `replicate` of kind `mark`, expiring after
//! [`STALE_AFTER`]), so a core knows whom it hears from. A peer silent for
//! longer (it, or the link between their regions, is down) may have
//! replicas on their way: a `since` read answered meanwhile says `stale`,
//! and a gateway's late read of a resume tries again later (see
//! `gateway/src/session/replay.rs`). A mark counts only once the replicas
//! of its peer delivered before it are stored (`Peers`). A peer that stops
//! cleanly says so in a last mark; one silent for [`FORGET_AFTER`] is
//! forgotten. A core on a
//! shared store
//! ([`Store::is_shared`](crate::Store::is_shared), the CQL store) does not
//! replicate: every core reads what any core stored as soon as its `put`
//! returned, and a replica would only be the same write again.
//!
//! # Requests and replies
//! A request carries a correlation id and the gateway's address in
//! `reply_to`; the reply (`{"ok": ..}` or `{"err": {"message", "retryable"}}`)
//! goes to `reply.<core address>.<gateway address>`. Requests time out after
//! [`RPC_TIMEOUT`] and are retried up to [`RPC_ATTEMPTS`] times, which is
//! safe: every operation is idempotent (publishes by UUID).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use postmesh_router::backoff::Backoff;
use postmesh_router::rpc::{RequestOptions, RpcClient, RpcError};
use postmesh_router::{
    Delivery, Exchange, Outgoing, Postoffice, PostofficeError, Properties, QueueSpec,
};
use postmesh_schema::address::ANY;
use postmesh_schema::{
    Address, Class, Cursor, Limits, Message, Pattern, RegionTarget, RoutingKey, Uuid,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use postmesh_router::{reopen, rpc};

use crate::pipeline::priority;
use crate::service::{Core, CoreClient, CoreError, Published};
use crate::store::Page;

/// The service name of cores in addresses.
pub const SERVICE: &str = "core";
/// How long a gateway waits for one reply.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per request (the first and the retries).
pub const RPC_ATTEMPTS: usize = 3;
/// Core queue settings (`[core.queues]` in the configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueOptions {
    /// Unacknowledged requests a core works on at once from the shared
    /// queue (silver publishes and reads) and from its own queue (gold and
    /// replication).
    pub prefetch: u16,
    /// The same for the bronze queue. Lower, so that under load a core
    /// spends most of its capacity on silver: silver overtakes bronze.
    pub bronze_prefetch: u16,
    /// Bronze publishes waiting at most: beyond it the broker refuses new
    /// ones (`reject-publish`) and publishers get 503, retry later.
    pub bronze_max_len: usize,
    /// Seconds a bronze publish may wait before it is discarded unprocessed.
    pub bronze_ttl_secs: u64,
    /// A core's own queue holds at most this many messages while the core
    /// is away; the oldest go first (`drop-head`).
    pub own_max_len: usize,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            prefetch: 64,
            bronze_prefetch: 8,
            bronze_max_len: 100_000,
            bronze_ttl_secs: 24 * 3600,
            own_max_len: 1_000_000,
        }
    }
}

const SHARED_ACTIONS: [&str; 5] = ["publish", "history", "since", "latest", "dismiss"];
const GOLD: &str = "gold";
const BRONZE: &str = "bronze";
const REPLICATE: &str = "replicate";
/// The kind of a replication notice that carries nothing but "I am here".
const MARK: &str = "mark";
/// How often a core that replicates marks its replication stream.
pub const MARK_INTERVAL: Duration = Duration::from_secs(1);
/// A peer not heard from for this long may have replicas on their way
/// (three marks missed); its marks expire in queues after it too.
pub const STALE_AFTER: Duration = Duration::from_secs(3);
/// A peer silent for this long is forgotten (gone for good, or renamed);
/// until then reads say `stale`.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);

/// A peer core: its region and instance (a restart changes the pid, not
/// the peer).
type PeerKey = (String, String);

fn peer_key(a: &Address) -> PeerKey {
    (a.region.clone(), a.instance.clone())
}

/// The peers a core hears on its replication stream, with when each was
/// last heard.
///
/// A peer counts as heard when one of its marks is taken, and only once
/// every replica of it delivered before that mark has been stored: each
/// replica holds its peer's [`order`](Peers::order) lock for reading
/// (taken in delivery order, before it is handed to a task), and a mark
/// takes it for writing, so it waits for them. A replica that failed (and
/// went back to its queue) makes the next mark not count.
#[derive(Default)]
struct Peers {
    heard: parking_lot::Mutex<std::collections::HashMap<PeerKey, std::time::Instant>>,
    order: parking_lot::Mutex<std::collections::HashMap<PeerKey, Arc<tokio::sync::RwLock<()>>>>,
    failed: parking_lot::Mutex<std::collections::HashSet<PeerKey>>,
}

impl Peers {
    fn heard(&self, from: &Address, now: std::time::Instant) {
        self.heard.lock().insert(peer_key(from), now);
    }

    fn left(&self, from: &Address) {
        let key = peer_key(from);
        self.heard.lock().remove(&key);
        self.order.lock().remove(&key);
        self.failed.lock().remove(&key);
    }

    /// The lock that orders `from`'s marks after its replicas.
    fn order(&self, from: &Address) -> Arc<tokio::sync::RwLock<()>> {
        self.order.lock().entry(peer_key(from)).or_default().clone()
    }

    /// A replica of `from` failed and went back to its queue.
    fn failed(&self, from: &Address) {
        self.failed.lock().insert(peer_key(from));
    }

    /// Whether a replica of `from` failed since this was last asked.
    fn take_failed(&self, from: &Address) -> bool {
        self.failed.lock().remove(&peer_key(from))
    }

    /// Takes a mark of `from`: once the replicas delivered before it are
    /// stored (its order lock), the peer counts as heard, unless one of
    /// them failed; a last mark (`leaving`) forgets the peer.
    async fn take_mark(&self, from: &Address, leaving: bool) {
        if leaving {
            self.left(from);
            return;
        }
        let order = self.order(from);
        let _after = order.write().await;
        if !self.take_failed(from) {
            self.heard(from, std::time::Instant::now());
        }
    }

    /// Whether a peer has been silent past [`STALE_AFTER`] (and is not yet
    /// forgotten); forgets those past [`FORGET_AFTER`].
    fn stale(&self, now: std::time::Instant) -> bool {
        let mut heard = self.heard.lock();
        heard.retain(|_, at| now.saturating_duration_since(*at) < FORGET_AFTER);
        heard
            .values()
            .any(|at| now.saturating_duration_since(*at) > STALE_AFTER)
    }
}

#[derive(Serialize, Deserialize)]
struct Mark {
    /// The last mark of a core that stops: forget it now.
    #[serde(default)]
    leaving: bool,
}

#[derive(Serialize, Deserialize)]
struct ReadRequest {
    pattern: String,
    limit: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cursor: Option<Cursor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct DismissRequest {
    user: u64,
    uuid: Uuid,
}

#[derive(Deserialize)]
struct Batch<'a> {
    #[serde(borrow)]
    messages: Vec<&'a RawValue>,
    #[serde(default)]
    more: bool,
    #[serde(default)]
    gap: bool,
    #[serde(default)]
    stale: bool,
    #[serde(default)]
    next: Option<Cursor>,
}

#[derive(Serialize, Deserialize)]
struct RemoteError {
    message: String,
    retryable: bool,
}

#[derive(Deserialize)]
struct Reply<'a> {
    #[serde(borrow)]
    ok: Option<&'a RawValue>,
    err: Option<RemoteError>,
}

/// A request or reply that cannot be served as it is: retrying won't help.
fn malformed(e: impl std::fmt::Display) -> CoreError {
    CoreError::Remote {
        message: e.to_string(),
        retryable: false,
    }
}

/// Most bytes of messages in one read reply: a page of large messages is
/// cut short (with `more`) so that a reply stays well under a broker's
/// message size limit (RabbitMQ's default is 16 MiB). At least one message
/// always goes in.
pub const MAX_READ_REPLY_BYTES: usize = 4 << 20;

/// `{"messages":[...]}`: the messages of a publish or replica request.
fn encode_messages<'a>(messages: impl IntoIterator<Item = &'a Message>) -> Vec<u8> {
    let mut out = b"{\"messages\":[".to_vec();
    for (i, m) in messages.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&m.to_json());
    }
    out.extend_from_slice(b"]}");
    out
}

/// A read reply: `{"messages":[...],"more","gap","next"}` with at most
/// `cap` bytes of messages (at least one, each with its cursor). A page
/// cut short says `more`, and goes on after its last message.
fn encode_page(page: &Page, cap: usize) -> Vec<u8> {
    let mut out = b"{\"messages\":[".to_vec();
    let mut next = page.next;
    let mut more = page.more;
    for (i, m) in page.messages.iter().enumerate() {
        let json = m.to_json();
        if i > 0 && out.len() + json.len() > cap {
            more = true;
            next = page.messages[i - 1].cursor;
            break;
        }
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&json);
    }
    out.extend_from_slice(format!("],\"more\":{more},\"gap\":{}", page.gap).as_bytes());
    if page.stale {
        out.extend_from_slice(b",\"stale\":true");
    }
    if let Some(c) = next.filter(|_| more) {
        out.extend_from_slice(format!(",\"next\":\"{c}\"").as_bytes());
    }
    out.push(b'}');
    out
}

fn decode_messages(bytes: &[u8]) -> Result<Page, String> {
    let batch: Batch<'_> = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let limits = Limits {
        max_elements: usize::MAX,
        max_bytes: usize::MAX,
    };
    let messages = batch
        .messages
        .iter()
        .map(|raw| Message::from_json(raw.get().as_bytes(), &limits).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    Ok(Page {
        messages,
        more: batch.more,
        gap: batch.gap,
        stale: batch.stale,
        next: batch.next,
    })
}

fn ok_reply(value: &[u8]) -> Bytes {
    let mut out = b"{\"ok\":".to_vec();
    out.extend_from_slice(value);
    out.push(b'}');
    Bytes::from(out)
}

fn err_reply(e: &CoreError) -> Bytes {
    let body =
        serde_json::json!({"err": {"message": e.to_string(), "retryable": e.is_retryable()}});
    Bytes::from(body.to_string())
}

/// Asks the cores of a region, over the postoffice. This is what a gateway
/// that runs without a core of its own uses as its [`CoreClient`].
pub struct RemoteCore {
    postoffice: Arc<dyn Postoffice>,
    rpc: Arc<RpcClient>,
    cores: Address,
}

impl RemoteCore {
    /// Asks the cores of `target` through `rpc`, whose queue must receive
    /// its replies (see [`RpcClient::take_reply`]). For the local region,
    /// declares the region's bronze queue (with the same `options` the
    /// cores use), so that a bronze publish accepted before any core ran is
    /// kept, not dropped as unroutable; another region's bronze queue lives
    /// on that region's broker, declared by its cores.
    pub async fn connect(
        postoffice: Arc<dyn Postoffice>,
        rpc: Arc<RpcClient>,
        target: RegionTarget,
        options: &QueueOptions,
    ) -> Result<RemoteCore, CoreError> {
        if target == RegionTarget::Local {
            let (spec, binding) = bronze_queue(rpc.address(), options);
            postoffice.declare_queue(&spec).await?;
            postoffice
                .bind(Exchange::Postoffice, &spec.name, &binding)
                .await?;
        }
        Self::new(postoffice, rpc, target)
    }

    /// Like [`connect`](Self::connect) without declaring anything.
    pub fn new(
        postoffice: Arc<dyn Postoffice>,
        rpc: Arc<RpcClient>,
        target: RegionTarget,
    ) -> Result<RemoteCore, CoreError> {
        let me = rpc.address();
        let cores =
            Address::any_of(target.region(&me.region), &me.product, SERVICE).map_err(malformed)?;
        Ok(RemoteCore {
            postoffice,
            rpc,
            cores,
        })
    }

    /// Where requests go: `<region>.<product>.core.-.-`.
    pub fn cores(&self) -> &Address {
        &self.cores
    }

    async fn call(
        &self,
        action: &str,
        payload: Bytes,
        prio: u8,
        persistent: bool,
    ) -> Result<Bytes, CoreError> {
        let options = RequestOptions {
            priority: Some(prio),
            persistent,
        };
        let mut backoff = Backoff::new(Duration::from_secs(1));
        let mut last = CoreError::Timeout;
        for _ in 0..RPC_ATTEMPTS {
            match self
                .rpc
                .call(action, &self.cores, payload.clone(), options, RPC_TIMEOUT)
                .await
            {
                Ok(reply) => return decode_reply(&reply),
                Err(RpcError::Timeout(_)) => last = CoreError::Timeout,
                Err(RpcError::Postoffice(e)) => {
                    last = CoreError::Postoffice(e);
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(e) => {
                    return Err(CoreError::Remote {
                        message: e.to_string(),
                        retryable: e.is_retryable(),
                    });
                }
            }
        }
        Err(last)
    }

    /// Sends a request that needs no reply: `Ok` once the broker confirmed it.
    async fn enqueue(&self, action: &str, payload: Bytes) -> Result<(), CoreError> {
        let key = RoutingKey::new(action, self.rpc.address().clone(), self.cores.clone())
            .map_err(malformed)?
            .to_string();
        let out = Outgoing {
            routing_key: key,
            payload,
            props: Properties {
                kind: Some(action.to_owned()),
                priority: Some(priority(Class::Bronze)),
                persistent: true,
                ..Properties::default()
            },
        };
        Ok(self.postoffice.publish(Exchange::Postoffice, out).await?)
    }

    async fn read(&self, action: &str, req: ReadRequest) -> Result<Page, CoreError> {
        let payload = Bytes::from(serde_json::to_vec(&req).expect("requests serialize"));
        let ok = self
            .call(action, payload, priority(Class::Silver), false)
            .await?;
        decode_messages(&ok).map_err(malformed)
    }
}

fn decode_reply(bytes: &[u8]) -> Result<Bytes, CoreError> {
    let reply: Reply<'_> =
        serde_json::from_slice(bytes).map_err(|e| malformed(format!("malformed reply: {e}")))?;
    match (reply.ok, reply.err) {
        (Some(ok), _) => Ok(Bytes::copy_from_slice(ok.get().as_bytes())),
        (None, Some(e)) => Err(CoreError::Remote {
            message: e.message,
            retryable: e.retryable,
        }),
        (None, None) => Err(malformed("empty reply")),
    }
}

#[async_trait]
impl CoreClient for RemoteCore {
    async fn publish(&self, messages: Vec<Message>) -> Result<Vec<Published>, CoreError> {
        // Gold goes to every core, the rest to any one; results keep order.
        let (gold, rest): (Vec<(usize, Message)>, Vec<(usize, Message)>) = messages
            .into_iter()
            .enumerate()
            .partition(|(_, m)| m.class == Class::Gold);
        let mut results: Vec<Option<Published>> = vec![None; gold.len() + rest.len()];
        let (bronze, rest): (Vec<(usize, Message)>, Vec<(usize, Message)>) = rest
            .into_iter()
            .partition(|(_, m)| m.class == Class::Bronze);
        if !bronze.is_empty() {
            // Queueable: accepted once the broker has the request durably.
            let payload = Bytes::from(encode_messages(bronze.iter().map(|(_, m)| m)));
            self.enqueue(BRONZE, payload).await?;
            for (i, m) in &bronze {
                results[*i] = Some(Published {
                    uuid: m.uuid,
                    duplicate: false,
                    cursor: None,
                });
            }
        }
        for (action, group) in [(GOLD, gold), ("publish", rest)] {
            if group.is_empty() {
                continue;
            }
            let prio = group
                .iter()
                .map(|(_, m)| priority(m.class))
                .max()
                .unwrap_or(1);
            let payload = Bytes::from(encode_messages(group.iter().map(|(_, m)| m)));
            let ok = self.call(action, payload, prio, true).await?;
            let published: Vec<(Uuid, bool, Option<Cursor>)> = serde_json::from_slice(&ok)
                .map_err(|e| malformed(format!("malformed publish reply: {e}")))?;
            for ((i, _), (uuid, duplicate, cursor)) in group.iter().zip(published) {
                results[*i] = Some(Published {
                    uuid,
                    duplicate,
                    cursor,
                });
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.ok_or(CoreError::Remote {
                    message: "a publish reply missed a message".into(),
                    retryable: true,
                })
            })
            .collect()
    }

    async fn history(
        &self,
        pattern: Pattern,
        limit: usize,
        before: Option<Cursor>,
        user: Option<u64>,
    ) -> Result<Page, CoreError> {
        self.read(
            "history",
            ReadRequest {
                pattern: pattern.to_string(),
                limit,
                cursor: before,
                user,
            },
        )
        .await
    }

    async fn since(
        &self,
        pattern: Pattern,
        after: Cursor,
        limit: usize,
        user: Option<u64>,
    ) -> Result<Page, CoreError> {
        self.read(
            "since",
            ReadRequest {
                pattern: pattern.to_string(),
                limit,
                cursor: Some(after),
                user,
            },
        )
        .await
    }

    async fn latest(
        &self,
        pattern: Pattern,
        limit: usize,
        user: Option<u64>,
    ) -> Result<Page, CoreError> {
        self.read(
            "latest",
            ReadRequest {
                pattern: pattern.to_string(),
                limit,
                cursor: None,
                user,
            },
        )
        .await
    }

    async fn dismiss(&self, user: u64, uuid: Uuid) -> Result<(), CoreError> {
        let payload =
            Bytes::from(serde_json::to_vec(&DismissRequest { user, uuid }).expect("serializes"));
        self.call("dismiss", payload, priority(Class::Silver), true)
            .await
            .map(|_| ())
    }
}

/// Serves a [`Core`] to the region over the postoffice until `cancel`.
pub struct CoreServer {
    core: Arc<Core>,
    postoffice: Arc<dyn Postoffice>,
    me: Address,
    /// The consumers and every request in progress: shutdown waits for
    /// them before it closes the core, so a request taken is answered (or
    /// left unacknowledged for another core) rather than cut halfway.
    tasks: TaskTracker,
    /// Whom this core hears on its replication stream.
    peers: Peers,
}

/// The region's bronze queue and its binding.
fn bronze_queue(me: &Address, options: &QueueOptions) -> (QueueSpec, String) {
    let spec = QueueSpec {
        max_len: Some(options.bronze_max_len),
        overflow: postmesh_router::Overflow::RejectPublish,
        message_ttl: Some(Duration::from_secs(options.bronze_ttl_secs)),
        ..QueueSpec::durable(format!("postmesh.core.{}.bronze", me.region))
    };
    // Bronze requests to the cores of `me`'s region, from anywhere
    // (whoever `me` is).
    let binding = format!(
        "{BRONZE}.*.*.*.*.*.{}.{}.{SERVICE}.*.*",
        me.region, me.product
    );
    (spec, binding)
}

/// How long a failed bronze publish waits before it goes back to its queue.
const BRONZE_RETRY: Duration = Duration::from_secs(1);

impl CoreServer {
    /// Declares the core queues and starts consuming them until `cancel`,
    /// on tasks of `tasks` (wait for it after `cancel` to know they ended).
    pub async fn start(
        core: Arc<Core>,
        postoffice: Arc<dyn Postoffice>,
        me: Address,
        options: QueueOptions,
        cancel: CancellationToken,
        tasks: &TaskTracker,
    ) -> Result<(), PostofficeError> {
        let server = Arc::new(CoreServer {
            core,
            postoffice,
            me,
            tasks: tasks.clone(),
            peers: Peers::default(),
        });
        let shared = QueueSpec {
            max_priority: Some(2),
            ..QueueSpec::durable(format!("postmesh.core.{}", server.me.region))
        };
        // Requests for this region's cores, and for any region's.
        let shared_bindings: Vec<String> = SHARED_ACTIONS
            .iter()
            .flat_map(|a| {
                [
                    server.me.service_binding(a),
                    server.me.any_region_binding(a),
                ]
            })
            .collect();
        let (bronze, bronze_binding) = bronze_queue(&server.me, &options);
        let bronze_bindings = vec![bronze_binding];
        let own = QueueSpec {
            max_len: Some(options.own_max_len),
            max_priority: Some(2),
            ..QueueSpec::durable(format!(
                "postmesh.core.{}.{}",
                server.me.region, server.me.instance
            ))
        };
        let own_bindings = vec![
            server.me.unique_binding(),
            server.me.service_binding(GOLD),
            server.me.any_region_binding(GOLD),
            // Replicas are addressed to the cores of any region.
            server.me.any_region_binding(REPLICATE),
        ];
        // Declare once up front so that start-up errors surface here.
        let queues = [
            (shared, shared_bindings, options.prefetch),
            (bronze, bronze_bindings, options.bronze_prefetch),
            (own, own_bindings, options.prefetch),
        ];
        for (spec, bindings, _) in &queues {
            server.postoffice.declare_queue(spec).await?;
            for b in bindings {
                server
                    .postoffice
                    .bind(Exchange::Postoffice, &spec.name, b)
                    .await?;
            }
        }
        for (spec, bindings, prefetch) in queues {
            tasks.spawn(
                server
                    .clone()
                    .serve(spec, bindings, prefetch, cancel.clone()),
            );
        }
        if !server.core.store().is_shared() {
            tasks.spawn(server.clone().mark(cancel));
        }
        Ok(())
    }

    /// Marks the replication stream every [`MARK_INTERVAL`] until
    /// `cancel`, then says this core is leaving. A mark that cannot be sent
    /// is skipped: peers then see this core as quiet, which it is.
    async fn mark(self: Arc<Self>, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(MARK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let leaving = tokio::select! {
                _ = cancel.cancelled() => true,
                _ = tick.tick() => false,
            };
            let payload =
                Bytes::from(serde_json::to_vec(&Mark { leaving }).expect("marks serialize"));
            let sent = tokio::time::timeout(
                STALE_AFTER,
                self.send_replication(payload, MARK, Some(STALE_AFTER)),
            )
            .await;
            if !matches!(sent, Ok(Ok(()))) {
                tracing::debug!("a replication mark was not sent");
            }
            if leaving {
                return;
            }
        }
    }

    /// Consumes one queue; reconnects with backoff when the consumer ends.
    async fn serve(
        self: Arc<Self>,
        spec: QueueSpec,
        bindings: Vec<String>,
        prefetch: u16,
        cancel: CancellationToken,
    ) {
        while !cancel.is_cancelled() {
            let po = &*self.postoffice;
            let opened = reopen::open(po, &spec, prefetch, Duration::from_secs(5), &cancel, || {
                reopen::bind_all(po, Exchange::Postoffice, &spec.name, &bindings)
            })
            .await;
            let Some(mut consumer) = opened else { return };
            loop {
                let delivery = tokio::select! {
                    _ = cancel.cancelled() => return,
                    d = consumer.next() => d,
                };
                let Some(delivery) = delivery else {
                    tracing::warn!(queue = %spec.name, "lost the postoffice; reconnecting");
                    break;
                };
                // Prefetch bounds how many run at once. A peer's replica
                // takes its order lock here, in delivery order (see
                // `Peers`); a mark takes it in its task.
                let order = self.replica_order(&delivery).await;
                self.tasks.spawn(self.clone().handle(delivery, order));
            }
        }
    }

    async fn reply(&self, request: &Delivery, payload: Bytes) -> Result<(), PostofficeError> {
        match rpc::reply_to(request, &self.me, payload) {
            Some(out) => self.postoffice.publish(Exchange::Postoffice, out).await,
            None => Ok(()),
        }
    }

    /// Hands a stored publish or dismissal to the cores of every region
    /// (they skip their own). `Ok` once the postoffice has it; on an error
    /// the caller has the request resent, which replicates again. Nothing
    /// to do on a shared store: the peers read the same data.
    async fn replicate(&self, payload: Bytes, kind: &str) -> Result<(), CoreError> {
        if self.core.store().is_shared() {
            return Ok(());
        }
        self.send_replication(payload, kind, None)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "replication to peer cores failed");
                CoreError::Remote {
                    message: format!("stored, but not yet replicated to peer cores: {e}"),
                    retryable: true,
                }
            })
    }

    /// Publishes on the replication stream, to the cores of every region:
    /// persistent, unless it expires (a mark).
    async fn send_replication(
        &self,
        payload: Bytes,
        kind: &str,
        expiration: Option<Duration>,
    ) -> Result<(), PostofficeError> {
        // `me` is valid, so the cores of its product anywhere are too.
        let cores =
            Address::any_of(ANY, &self.me.product, SERVICE).expect("a valid product's cores");
        let out = Outgoing {
            routing_key: RoutingKey {
                action: REPLICATE.into(),
                from: self.me.clone(),
                to: cores,
            }
            .to_string(),
            payload,
            props: Properties {
                kind: Some(kind.to_owned()),
                persistent: expiration.is_none(),
                expiration,
                ..Properties::default()
            },
        };
        self.postoffice.publish(Exchange::Postoffice, out).await
    }

    /// For a peer's replica (not a mark), its hold on the peer's order
    /// lock; it waits only while a mark of that peer waits for the
    /// replicas before it.
    async fn replica_order(&self, d: &Delivery) -> Option<tokio::sync::OwnedRwLockReadGuard<()>> {
        if d.props.kind.as_deref() == Some(MARK) {
            return None;
        }
        let key = RoutingKey::parse(&d.routing_key).ok()?;
        if key.action != REPLICATE || key.from == self.me {
            return None;
        }
        Some(self.peers.order(&key.from).read_owned().await)
    }

    async fn handle(
        self: Arc<Self>,
        d: Delivery,
        _order: Option<tokio::sync::OwnedRwLockReadGuard<()>>,
    ) {
        let key = RoutingKey::parse(&d.routing_key);
        let action = key.as_ref().map(|k| k.action.as_str()).unwrap_or("");
        let outcome: Option<Result<Vec<u8>, CoreError>> = match action {
            "publish" | GOLD => Some(match decode_messages(&d.payload) {
                Ok(Page { messages, .. }) => {
                    let mut r = self.core.publish(messages).await;
                    // Gold went to every core of the region already.
                    if r.is_ok() && action == "publish" {
                        r = match self.replicate(d.payload.clone(), "messages").await {
                            Ok(()) => r,
                            Err(e) => Err(e),
                        };
                    }
                    r.map(|p| {
                        serde_json::to_vec(
                            &p.iter()
                                .map(|x| (x.uuid, x.duplicate, x.cursor))
                                .collect::<Vec<_>>(),
                        )
                        .expect("serializes")
                    })
                }
                Err(e) => Err(malformed(e)),
            }),
            "history" | "since" | "latest" => {
                Some(match serde_json::from_slice::<ReadRequest>(&d.payload) {
                    Ok(req) => match Pattern::parse(&req.pattern) {
                        Ok(pattern) => {
                            let page = match action {
                                "history" => {
                                    self.core
                                        .history(pattern, req.limit, req.cursor, req.user)
                                        .await
                                }
                                "since" => match req.cursor {
                                    Some(after) => {
                                        // Judged before the read: a peer
                                        // heard only after it may have had
                                        // replicas on their way during it.
                                        let stale = self.peers.stale(std::time::Instant::now());
                                        self.core
                                            .since(pattern, after, req.limit, req.user)
                                            .await
                                            .map(|p| Page { stale, ..p })
                                    }
                                    None => Err(malformed("since needs a cursor")),
                                },
                                _ => self.core.latest(pattern, req.limit, req.user).await,
                            };
                            page.map(|p| encode_page(&p, MAX_READ_REPLY_BYTES))
                        }
                        Err(e) => Err(malformed(e)),
                    },
                    Err(e) => Err(malformed(e)),
                })
            }
            "dismiss" => Some(match serde_json::from_slice::<DismissRequest>(&d.payload) {
                Ok(req) => {
                    let mut r = self.core.dismiss(req.user, req.uuid).await;
                    if r.is_ok() {
                        r = self.replicate(d.payload.clone(), "dismiss").await;
                    }
                    r.map(|()| b"true".to_vec())
                }
                Err(e) => Err(malformed(e)),
            }),
            BRONZE => {
                // No one waits for a reply: on failure the request goes back
                // to its queue and is tried again.
                let r = match decode_messages(&d.payload) {
                    Ok(Page { messages, .. }) => match self.core.publish(messages).await {
                        Ok(_) => self.replicate(d.payload.clone(), "messages").await,
                        Err(e) => Err(e),
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "dropping a malformed bronze publish");
                        Ok(())
                    }
                };
                match r {
                    Ok(()) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "bronze publish failed; requeued");
                        tokio::time::sleep(BRONZE_RETRY).await;
                        let _ = d.nack(true).await;
                        return;
                    }
                }
                None
            }
            REPLICATE => {
                let from = key.as_ref().ok().map(|k| &k.from);
                let peer = from.filter(|f| **f != self.me);
                match peer {
                    Some(from) if d.props.kind.as_deref() == Some(MARK) => {
                        let leaving =
                            serde_json::from_slice::<Mark>(&d.payload).is_ok_and(|m| m.leaving);
                        self.peers.take_mark(from, leaving).await;
                    }
                    Some(from) => {
                        if let Err(e) = self.apply_replica(&d).await {
                            // Acked only once stored: back to the queue,
                            // tried again; the peer's next mark does not
                            // count.
                            self.peers.failed(from);
                            tracing::warn!(error = %e, "applying a replica failed; requeued");
                            tokio::time::sleep(BRONZE_RETRY).await;
                            let _ = d.nack(true).await;
                            return;
                        }
                    }
                    None => {}
                }
                None
            }
            _ => {
                tracing::warn!(key = %d.routing_key, "unknown core action");
                None
            }
        };
        if let Some(outcome) = outcome {
            let payload = match &outcome {
                Ok(v) => ok_reply(v),
                Err(e) => err_reply(e),
            };
            if let Err(e) = self.reply(&d, payload).await {
                // The requester retries; let another core (or this one) redo it.
                tracing::warn!(error = %e, "reply failed");
                let _ = d.nack(true).await;
                return;
            }
        }
        let _ = d.ack().await;
    }

    /// Stores a peer's replica. A malformed one is dropped (retrying cannot
    /// help); a store failure is returned, so the replica is requeued.
    async fn apply_replica(&self, d: &Delivery) -> Result<(), CoreError> {
        match d.props.kind.as_deref() {
            Some("messages") => match decode_messages(&d.payload) {
                Ok(page) => self.core.apply_replicas(page.messages).await,
                Err(e) => {
                    tracing::warn!(error = %e, "dropping a malformed replica");
                    Ok(())
                }
            },
            Some("dismiss") => match serde_json::from_slice::<DismissRequest>(&d.payload) {
                Ok(req) => self
                    .core
                    .store()
                    .dismiss(req.user, req.uuid)
                    .await
                    .map(|_| ())
                    .map_err(CoreError::from),
                Err(e) => {
                    tracing::warn!(error = %e, "dropping a malformed dismissal replica");
                    Ok(())
                }
            },
            other => {
                tracing::warn!(kind = ?other, "unknown replica");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn core_in(region: &str, instance: &str, pid: &str) -> Address {
        Address::new(region, "p", SERVICE, instance, pid).unwrap()
    }

    /// A peer is stale once silent past `STALE_AFTER`, fresh again when
    /// heard (under a new pid too: a restart is the same peer), forgotten
    /// past `FORGET_AFTER` or when it says it leaves.
    #[test]
    fn peers_go_stale_when_silent_and_are_forgotten() {
        let peers = Peers::default();
        let t0 = Instant::now();
        assert!(!peers.stale(t0), "no peer, nothing on its way");
        peers.heard(&core_in("west", "core-1", "1"), t0);
        peers.heard(&core_in("east", "core-1", "2"), t0);
        assert!(!peers.stale(t0 + STALE_AFTER / 2));
        assert!(peers.stale(t0 + STALE_AFTER + Duration::from_millis(1)));
        // Both heard again, west after a restart.
        let t1 = t0 + STALE_AFTER * 2;
        peers.heard(&core_in("west", "core-1", "99"), t1);
        assert!(peers.stale(t1), "east is still silent");
        peers.heard(&core_in("east", "core-1", "2"), t1);
        assert!(!peers.stale(t1));
        // East leaves cleanly; west goes silent for good.
        peers.left(&core_in("east", "core-1", "2"));
        assert!(peers.stale(t1 + STALE_AFTER * 2));
        assert!(!peers.stale(t1 + FORGET_AFTER), "west forgotten");
        assert!(peers.heard.lock().is_empty());
    }

    /// A mark counts only once the replicas of its peer delivered before
    /// it are stored, and not at all if one of them failed.
    #[tokio::test]
    async fn a_mark_waits_for_the_replicas_before_it() {
        let peers = Arc::new(Peers::default());
        let west = core_in("west", "core-1", "1");
        let replica = peers.order(&west).read_owned().await;
        let marking = {
            let (peers, west) = (peers.clone(), west.clone());
            tokio::spawn(async move { peers.take_mark(&west, false).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            peers.heard.lock().is_empty(),
            "not while a replica is applied"
        );
        drop(replica);
        marking.await.unwrap();
        assert_eq!(peers.heard.lock().len(), 1);

        // A replica that fails: the next mark does not count, the one
        // after does.
        let east = core_in("east", "core-1", "2");
        peers.failed(&east);
        peers.take_mark(&east, false).await;
        assert!(!peers.heard.lock().contains_key(&peer_key(&east)));
        peers.take_mark(&east, false).await;
        assert!(peers.heard.lock().contains_key(&peer_key(&east)));
        // A last mark forgets it.
        peers.take_mark(&east, true).await;
        assert!(!peers.heard.lock().contains_key(&peer_key(&east)));
    }

    /// `stale` crosses the postoffice in a read reply, and only when set.
    #[test]
    fn a_read_reply_carries_stale() {
        let page = Page {
            stale: true,
            ..Page::default()
        };
        let bytes = encode_page(&page, MAX_READ_REPLY_BYTES);
        assert!(decode_messages(&bytes).unwrap().stale);
        let fresh = encode_page(&Page::default(), MAX_READ_REPLY_BYTES);
        assert!(!String::from_utf8(fresh.clone()).unwrap().contains("stale"));
        assert!(!decode_messages(&fresh).unwrap().stale);
    }
}
