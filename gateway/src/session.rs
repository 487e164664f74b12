//! One device connection: the protocol loop, written once over any
//! transport that yields [`Inbound`] frames and accepts [`Outbound`] ones.
//! WebSocket (and later SockJS) are adapters; tests drive it over channels.
//!
//! # The loop
//! One task per connection waits on: shutdown, its [`Outbox`](crate::outbox)
//! (live frames from fan-out), the one operation in flight (a core call or
//! an upstream bind), the batch of publishes at the core, the token's
//! expiry, and the next client frame. While an operation is in flight no
//! further client frame is read, so a client cannot queue unbounded work;
//! live frames keep flowing.
//!
//! Publishes are pipelined: while one batch is being stored, publishes read
//! meanwhile (up to `publish_window`) form the next batch, so a publisher's
//! rate is not one message per store round trip. Batches keep the order of
//! the connection's publishes, and any other request waits until the
//! publishes before it are answered: requests take effect in order.
//!
//! # No gap, no duplicate
//! A `sub` with `history` or `since` first makes the subscription live (the
//! hub returns once the pattern is bound upstream), then reads the store.
//! Live frames that arrive meanwhile and match no other active
//! subscription are held in a bounded buffer; after the replay they are
//! sent unless the replay already contained them. Since every message is
//! stored before it is distributed, anything distributed before the
//! subscription was live is in the store read after it: no gap. Replayed
//! UUIDs are remembered for [`REPLAY_MEMORY`] to drop a live copy that was
//! still on its way: no duplicate.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use postmesh_core::{CoreClient, CoreError, Page, Published};
use postmesh_schema::message::time_key;
use postmesh_schema::protocol::{
    ClientFrame, ErrorCode, FrameError, MAX_HISTORY_LIMIT, MAX_REPLY_BYTES, close, err_frame,
    msg_frame, ok_frame, ok_messages_frame, parse_client_frame,
};
use postmesh_schema::{Message, Pattern, Uuid, idpath};
use serde_json::json;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use crate::auth::{Authority, Grants};
use crate::config::GatewayConfig;
use crate::hub::{ConnRef, Hub};
use crate::metrics::GatewayMetrics;
use crate::outbox::{Live, LiveKind};

/// How long replayed UUIDs are remembered to drop live copies that were
/// still in flight when the replay was read. Distribution follows
/// persistence within milliseconds; ten seconds is a wide margin.
pub const REPLAY_MEMORY: Duration = Duration::from_secs(10);

/// How long the device has to answer a close frame before its socket is
/// dropped anyway.
pub const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);

/// How long a close frame may wait behind data the device has not read yet.
/// A device that resumes reading within this time learns why it was closed.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// A frame from the device, as the transport adapter reports it.
#[derive(Debug)]
pub enum Inbound {
    /// A text frame.
    Text(Utf8Bytes),
    /// A binary frame: not part of the protocol.
    Binary,
    /// A frame over the size limit. The session closes with 1009.
    TooBig,
    /// A control frame (ping or pong): the device is alive.
    Alive,
}

/// A frame to the device.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// A text frame.
    Text(Utf8Bytes),
    /// Close with a code and a reason.
    Close(u16, String),
    /// A keepalive ping; the device answers with a pong.
    Ping,
}

/// What the device asked for when it connected.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Several `msg` frames may share one WebSocket frame, one JSON object
    /// per line (`/ws?batch=true`). Fewer, larger frames cost the device and
    /// the gateway less per message under load.
    pub batch: bool,
}

/// Largest joined frame under `batch`; more messages start another frame.
pub const MAX_JOINED_BYTES: usize = 64 * 1024;

/// What every session shares.
pub struct Ctx {
    pub hub: Arc<Hub>,
    pub core: Arc<dyn CoreClient>,
    pub authority: Authority,
    pub config: GatewayConfig,
    pub metrics: GatewayMetrics,
}

type Op = Pin<Box<dyn Future<Output = Done> + Send>>;

/// A batch of publishes at the core: their request ids and the outcome.
type PublishOp =
    Pin<Box<dyn Future<Output = (Vec<u64>, Result<Vec<Published>, CoreError>)> + Send>>;

/// A finished operation, applied to the session's state by the loop.
enum Done {
    Subscribed {
        id: u64,
        pattern: Pattern,
        result: Result<(), FrameError>,
    },
    Replayed {
        id: u64,
        pattern: Pattern,
        result: Result<Page, FrameError>,
    },
    Unsubscribed {
        id: u64,
        result: Result<(), FrameError>,
    },
    Messages {
        id: u64,
        result: Result<Page, FrameError>,
    },
    Dismissed {
        id: u64,
        result: Result<(), FrameError>,
    },
    /// Login sync, step 1: the user's own paths are live and their latest
    /// messages read.
    SyncedOwn {
        user: u64,
        result: Result<Page, FrameError>,
    },
    /// After a postoffice outage: what was stored meanwhile.
    Reread {
        patterns: Vec<Pattern>,
        result: Result<Page, FrameError>,
    },
    /// Login sync, step 2 (and every later preferences change): the
    /// preference patterns are live and their latest messages read.
    SyncedPrefs {
        user: u64,
        pages: Vec<Page>,
        rejected: Vec<(String, FrameError)>,
    },
}

#[derive(Default)]
struct Pending {
    /// Patterns registered but not yet active.
    patterns: Vec<Pattern>,
    /// Live frames that matched no active pattern, in arrival order.
    buffer: Vec<Arc<Live>>,
    /// UUIDs delivered live while pending (through an active pattern).
    delivered: HashSet<Uuid>,
}

/// The patterns a connection holds in the hub. Dropping it releases them,
/// however the session ends (return, error, panic, cancellation).
struct Subscriptions {
    hub: Arc<Hub>,
    conn: ConnRef,
    patterns: Vec<Pattern>,
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        self.conn.outbox.close(close::GOING_AWAY);
        self.hub
            .disconnect(&self.conn, std::mem::take(&mut self.patterns));
    }
}

struct Session<T> {
    transport: T,
    ctx: Arc<Ctx>,
    subs: Subscriptions,
    grants: Grants,
    pending: Option<Pending>,
    replayed: Option<(HashSet<Uuid>, Instant)>,
    /// Patterns that came from the user's stored preferences.
    prefs: Vec<Pattern>,
    /// A preferences message arrived: re-sync when no operation is in flight.
    resync: Option<Vec<u8>>,
    batch: std::collections::VecDeque<Arc<Live>>,
    /// An operation to start as soon as the current one is applied.
    next_op: Option<Op>,
    /// The hub reconnected to the postoffice: reread these patterns from
    /// this UUID when no operation is in flight. They are pending already.
    reread: Option<(Uuid, Vec<Pattern>)>,
    options: Options,
    /// Publishes read while a batch was at the core: the next batch.
    publishes: Vec<(u64, Message)>,
    /// A request read while publishes were in flight. Requests take effect
    /// in the order sent, so it waits until they are stored.
    deferred: Option<ClientFrame>,
}

/// Why the loop stops.
struct Stop;

fn core_error(id: Option<u64>, e: CoreError) -> FrameError {
    let code = if e.is_retryable() {
        ErrorCode::Unavailable
    } else {
        ErrorCode::Internal
    };
    tracing::warn!(error = %e, "core call failed");
    FrameError::new(id, code, e.to_string())
}

fn postoffice_error(id: Option<u64>, e: postmesh_router::PostofficeError) -> FrameError {
    tracing::warn!(error = %e, "postoffice call failed");
    FrameError::new(id, ErrorCode::Unavailable, e.to_string())
}

fn close_reason(code: u16) -> &'static str {
    match code {
        close::SLOW_CONSUMER => {
            "slow consumer: outbound queue overflow; reconnect and resume with since"
        }
        close::TOKEN_EXPIRED => "token expired",
        close::IDLE => "no sign of life from the device",
        close::TOO_BIG => "frame too big",
        _ => "going away",
    }
}

/// Runs one connection until it closes, the device leaves, or `cancel`.
pub async fn run<T>(
    transport: T,
    ctx: Arc<Ctx>,
    grants: Grants,
    options: Options,
    cancel: CancellationToken,
) where
    T: Stream<Item = Inbound> + Sink<Outbound> + Unpin + Send,
{
    let conn = ctx.hub.connect(ctx.config.outbound_queue);
    let mut s = Session {
        transport,
        subs: Subscriptions {
            hub: ctx.hub.clone(),
            conn,
            patterns: Vec::new(),
        },
        ctx,
        grants,
        pending: None,
        replayed: None,
        prefs: Vec::new(),
        resync: None,
        batch: std::collections::VecDeque::new(),
        next_op: None,
        reread: None,
        publishes: Vec::new(),
        deferred: None,
        options,
    };
    let mut publishing: Option<PublishOp> = None;
    let window = s.ctx.config.publish_window.max(1);
    let mut inflight: Option<Op> = s.grants.user.map(|u| s.start_login_sync(u));
    let outbox = s.subs.conn.outbox.clone();
    loop {
        let expiry = s.grants.exp.map(|exp| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            Duration::from_secs(exp.saturating_sub(now))
        });
        let step = tokio::select! {
            biased;
            _ = cancel.cancelled() => s.close(close::GOING_AWAY).await,
            _ = outbox.ready() => match outbox.closed() {
                Some(code) => {
                    if code == close::SLOW_CONSUMER {
                        tracing::info!(conn = s.subs.conn.id, "closing a slow consumer");
                    }
                    s.close(code).await
                }
                None => s.flush_outbox().await,
            },
            done = async { inflight.as_mut().expect("guarded").await }, if inflight.is_some() => {
                let r = s.apply(done).await;
                inflight = s.next_op.take();
                r
            }
            (ids, result) = async { publishing.as_mut().expect("guarded").await }, if publishing.is_some() => {
                publishing = None;
                s.acknowledge(ids, result).await
            }
            _ = tokio::time::sleep(expiry.unwrap_or(Duration::MAX)), if expiry.is_some() => {
                s.close(close::TOKEN_EXPIRED).await
            }
            frame = s.transport.next(),
                if inflight.is_none() && s.deferred.is_none() && s.publishes.len() < window => match frame {
                None => Err(Stop),
                Some(Inbound::Alive) => {
                    outbox.touch();
                    Ok(())
                }
                Some(Inbound::Text(text)) => {
                    outbox.touch();
                    let busy = publishing.is_some() || !s.publishes.is_empty();
                    s.on_text(&text, &mut inflight, busy).await
                }
                Some(Inbound::Binary) => {
                    s.send_err(FrameError::new(None, ErrorCode::BadJson, "binary frames are not part of the protocol; send JSON text frames")).await
                }
                Some(Inbound::TooBig) => s.close(close::TOO_BIG).await,
            },
        };
        if step.is_err() {
            break;
        }
        if publishing.is_none() && !s.publishes.is_empty() {
            publishing = Some(s.start_publish());
        }
        if publishing.is_none()
            && inflight.is_none()
            && let Some(frame) = s.deferred.take()
            && s.on_request(frame, &mut inflight).await.is_err()
        {
            break;
        }
        if inflight.is_none()
            && let Some((from, patterns)) = s.reread.take()
        {
            inflight = Some(s.start_reread(from, patterns));
        }
        if inflight.is_none()
            && let Some(frame) = s.resync.take()
        {
            inflight = s.start_prefs_resync(&frame);
        }
    }
}

impl<T> Session<T>
where
    T: Stream<Item = Inbound> + Sink<Outbound> + Unpin + Send,
{
    /// The deadline of a write (or of a batch of writes) started now.
    fn write_deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(self.ctx.config.write_timeout_secs.max(1))
    }

    async fn send(&mut self, text: impl Into<Utf8Bytes>) -> Result<(), Stop> {
        let deadline = self.write_deadline();
        self.write_by(deadline, Some(Outbound::Text(text.into())))
            .await?;
        self.write_by(deadline, None).await
    }

    async fn send_err(&mut self, e: FrameError) -> Result<(), Stop> {
        self.ctx.metrics.errors.inc();
        self.send(e.to_frame()).await
    }

    async fn close(&mut self, code: u16) -> Result<(), Stop> {
        if code == close::SLOW_CONSUMER {
            self.ctx.metrics.slow_consumers.inc();
        }
        let sent = tokio::time::timeout(
            CLOSE_TIMEOUT,
            self.transport
                .send(Outbound::Close(code, close_reason(code).to_owned())),
        )
        .await;
        if matches!(sent, Ok(Ok(()))) {
            // Wait briefly for the device's close reply: dropping the socket
            // with its frames unread would reset the connection, and a reset
            // can discard the close frame before the device reads it.
            let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
                while self.transport.next().await.is_some() {}
            })
            .await;
        }
        Err(Stop)
    }

    /// Whether a live frame for `path` goes out now (it matches an active
    /// subscription) rather than waiting for a pending replay.
    fn is_active(&self, path: &str) -> bool {
        let pending = self
            .pending
            .as_ref()
            .map(|p| p.patterns.as_slice())
            .unwrap_or(&[]);
        self.subs
            .patterns
            .iter()
            .any(|p| !pending.contains(p) && p.matches_str(path))
    }

    fn was_replayed(&mut self, uuid: &Uuid) -> bool {
        match &self.replayed {
            Some((_, until)) if *until < Instant::now() => {
                self.replayed = None;
                false
            }
            Some((set, _)) => set.contains(uuid),
            None => false,
        }
    }

    fn note_prefs(&mut self, live: &Live) {
        if let Some(user) = self.grants.user
            && live.path == idpath::prefs_path(user).as_str()
        {
            self.resync = Some(live.frame.as_bytes().to_vec());
        }
    }

    /// Sends everything the fan-out queued, as one batch and one flush.
    async fn flush_outbox(&mut self) -> Result<(), Stop> {
        self.subs.conn.outbox.drain_into(&mut self.batch);
        if self.batch.is_empty() {
            return Ok(());
        }
        let deadline = self.write_deadline();
        let mut batch = std::mem::take(&mut self.batch);
        // With `batch` on: the message frames of this wake-up, one per line.
        let mut joined = String::new();
        let mut sent_any = false;
        let mut result = Ok(());
        for live in batch.drain(..) {
            if live.kind == LiveKind::Reread {
                self.note_reread(live.uuid);
                continue;
            }
            if live.kind == LiveKind::Keepalive {
                let interval = self.ctx.config.keepalive_secs.max(1);
                if self.subs.conn.outbox.idle_secs() > 2 * interval {
                    result = self.close(close::IDLE).await;
                    break;
                }
                result = self.write_by(deadline, Some(Outbound::Ping)).await;
                if result.is_err() {
                    break;
                }
                sent_any = true;
                continue;
            }
            if self.was_replayed(&live.uuid) {
                continue;
            }
            if self.pending.is_some() && !self.is_active(&live.path) {
                let cap = self.ctx.config.outbound_queue;
                let p = self.pending.as_mut().expect("checked");
                p.buffer.push(live);
                if p.buffer.len() > cap {
                    result = self.close(close::SLOW_CONSUMER).await;
                    break;
                }
                continue;
            }
            if let Some(p) = self.pending.as_mut() {
                p.delivered.insert(live.uuid);
            }
            self.note_prefs(&live);
            let frame = if self.options.batch {
                if !joined.is_empty() {
                    joined.push('\n');
                }
                joined.push_str(live.frame.as_str());
                if joined.len() < MAX_JOINED_BYTES {
                    continue;
                }
                std::mem::take(&mut joined).into()
            } else {
                live.frame.clone()
            };
            result = self.write_by(deadline, Some(Outbound::Text(frame))).await;
            if result.is_err() {
                break;
            }
            sent_any = true;
        }
        self.batch = batch;
        self.batch.clear();
        if result.is_ok() && !joined.is_empty() {
            result = self
                .write_by(deadline, Some(Outbound::Text(joined.into())))
                .await;
            sent_any = true;
        }
        if result.is_ok() && sent_any {
            result = self.write_by(deadline, None).await;
        }
        result
    }

    /// Feeds `frame` (or flushes, for `None`) by `deadline`. A device that
    /// cannot take it in time is closed as a slow consumer; a broken
    /// transport stops the loop.
    async fn write_by(
        &mut self,
        deadline: tokio::time::Instant,
        frame: Option<Outbound>,
    ) -> Result<(), Stop> {
        let write = async {
            match frame {
                Some(f) => self.transport.feed(f).await,
                None => self.transport.flush().await,
            }
        };
        match tokio::time::timeout_at(deadline, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Stop),
            Err(_) => self.close(close::SLOW_CONSUMER).await,
        }
    }

    /// The hub is back on the postoffice: every active pattern goes pending
    /// at once (live frames from now on are held), and a reread is queued.
    fn note_reread(&mut self, from: Uuid) {
        let pending: Vec<Pattern> = self
            .pending
            .as_ref()
            .map(|p| p.patterns.clone())
            .unwrap_or_default();
        let active: Vec<Pattern> = self
            .subs
            .patterns
            .iter()
            .filter(|p| !pending.contains(p))
            .cloned()
            .collect();
        if active.is_empty() {
            return;
        }
        self.pending
            .get_or_insert_with(Pending::default)
            .patterns
            .extend(active.iter().cloned());
        match &mut self.reread {
            Some((earliest, patterns)) => {
                if time_key(&from) < time_key(earliest) {
                    *earliest = from;
                }
                patterns.extend(active);
            }
            None => self.reread = Some((from, active)),
        }
    }

    /// Reads what the patterns stored after `from`, to replay it.
    fn start_reread(&mut self, from: Uuid, patterns: Vec<Pattern>) -> Op {
        let core = self.ctx.core.clone();
        let (limit, user) = (self.ctx.config.resume_limit, self.grants.user);
        Box::pin(async move {
            let mut page = Page::default();
            let mut failed = None;
            for p in &patterns {
                match core.since(p.clone(), from, limit, user).await {
                    Ok(got) => {
                        page.more |= got.more;
                        page.messages.extend(got.messages);
                    }
                    Err(e) => failed = Some(core_error(None, e)),
                }
            }
            let result = match failed {
                Some(e) => Err(e),
                None => {
                    page.messages.sort_by_key(|m| (time_key(&m.uuid), m.uuid));
                    page.messages.dedup_by_key(|m| m.uuid);
                    Ok(page)
                }
            };
            Done::Reread { patterns, result }
        })
    }

    /// Handles a client frame. `busy`: publishes are waiting for the core,
    /// so any other request is deferred until they are done.
    async fn on_text(
        &mut self,
        text: &str,
        inflight: &mut Option<Op>,
        busy: bool,
    ) -> Result<(), Stop> {
        self.ctx.metrics.frames_in.inc();
        let frame = match parse_client_frame(text, &self.ctx.config.limits) {
            Ok(f) => f,
            Err(e) => return self.send_err(e).await,
        };
        let id = frame.id();
        match frame {
            ClientFrame::Ping { id } => return self.send(ok_frame(id, r#","pong":true"#)).await,
            ClientFrame::Auth { id, token } => return self.on_auth(id, &token, inflight).await,
            _ if self.grants.is_unauthenticated() => {
                return self
                    .send_err(FrameError::new(
                        Some(id),
                        ErrorCode::Unauthorized,
                        "authenticate first: send an auth frame or connect with ?token=",
                    ))
                    .await;
            }
            _ => {}
        }
        if busy && !matches!(frame, ClientFrame::Pub { .. }) {
            self.deferred = Some(frame);
            return Ok(());
        }
        self.on_request(frame, inflight).await
    }

    /// Starts a request: a publish joins the next batch; anything else
    /// becomes the operation in flight.
    async fn on_request(
        &mut self,
        frame: ClientFrame,
        inflight: &mut Option<Op>,
    ) -> Result<(), Stop> {
        let user = self.grants.user;
        let core = self.ctx.core.clone();
        let op: Op = match frame {
            ClientFrame::Ping { .. } | ClientFrame::Auth { .. } => unreachable!("handled above"),
            ClientFrame::Sub {
                id,
                pattern,
                history,
                since,
            } => {
                if !self.grants.can_read(&pattern) {
                    return self.forbidden(id, &pattern).await;
                }
                if self.subs.patterns.contains(&pattern) {
                    return self.send(ok_frame(id, r#","already":true"#)).await;
                }
                if self.subs.patterns.len() >= self.ctx.config.max_subscriptions {
                    let max = self.ctx.config.max_subscriptions;
                    return self
                        .send_err(FrameError::new(
                            Some(id),
                            ErrorCode::TooManySubscriptions,
                            format!("at most {max} subscriptions per connection"),
                        ))
                        .await;
                }
                self.subs.patterns.push(pattern.clone());
                let (hub, conn) = (self.ctx.hub.clone(), self.subs.conn.clone());
                if history.is_none() && since.is_none() {
                    Box::pin(async move {
                        let result = hub
                            .subscribe(&conn, &pattern)
                            .await
                            .map_err(|e| postoffice_error(Some(id), e));
                        Done::Subscribed {
                            id,
                            pattern,
                            result,
                        }
                    })
                } else {
                    self.pending
                        .get_or_insert_with(Pending::default)
                        .patterns
                        .push(pattern.clone());
                    let resume_limit = self.ctx.config.resume_limit;
                    Box::pin(async move {
                        let result = async {
                            hub.subscribe(&conn, &pattern)
                                .await
                                .map_err(|e| postoffice_error(Some(id), e))?;
                            let read = match (history, since) {
                                (Some(k), _) => core
                                    .history(pattern.clone(), k as usize, None, user)
                                    .await
                                    .map(|mut p| {
                                        p.messages.reverse();
                                        p
                                    }),
                                (None, Some(after)) => {
                                    core.since(pattern.clone(), after, resume_limit, user).await
                                }
                                (None, None) => unreachable!("checked above"),
                            };
                            match read {
                                Ok(page) => Ok(page),
                                Err(e) => {
                                    let _ = hub.unsubscribe(&conn, &pattern).await;
                                    Err(core_error(Some(id), e))
                                }
                            }
                        }
                        .await;
                        Done::Replayed {
                            id,
                            pattern,
                            result,
                        }
                    })
                }
            }
            ClientFrame::Unsub { id, pattern } => {
                let Some(pos) = self.subs.patterns.iter().position(|p| *p == pattern) else {
                    return self
                        .send_err(FrameError::new(
                            Some(id),
                            ErrorCode::NotSubscribed,
                            format!("not subscribed to {pattern}"),
                        ))
                        .await;
                };
                if self
                    .pending
                    .as_ref()
                    .is_some_and(|p| p.patterns.contains(&pattern))
                {
                    return self
                        .send_err(FrameError::new(
                            Some(id),
                            ErrorCode::NotSubscribed,
                            format!("{pattern} is still being subscribed"),
                        ))
                        .await;
                }
                self.subs.patterns.remove(pos);
                self.prefs.retain(|p| *p != pattern);
                let (hub, conn) = (self.ctx.hub.clone(), self.subs.conn.clone());
                Box::pin(async move {
                    let result = hub
                        .unsubscribe(&conn, &pattern)
                        .await
                        .map_err(|e| postoffice_error(Some(id), e));
                    Done::Unsubscribed { id, result }
                })
            }
            ClientFrame::Pub { id, message } => {
                if !self.grants.can_publish(&message.path) {
                    let path = message.path.clone();
                    return self
                        .send_err(FrameError::new(
                            Some(id),
                            ErrorCode::Forbidden,
                            format!("the token does not allow publishing to {path}"),
                        ))
                        .await;
                }
                self.ctx.metrics.messages_published.inc();
                self.publishes.push((id, message));
                return Ok(());
            }
            ClientFrame::History {
                id,
                pattern,
                limit,
                before,
            } => {
                if !self.grants.can_read(&pattern) {
                    return self.forbidden(id, &pattern).await;
                }
                Box::pin(async move {
                    let result = core
                        .history(pattern, limit as usize, before, user)
                        .await
                        .map_err(|e| core_error(Some(id), e));
                    Done::Messages { id, result }
                })
            }
            ClientFrame::Latest { id, pattern } => {
                if !self.grants.can_read(&pattern) {
                    return self.forbidden(id, &pattern).await;
                }
                Box::pin(async move {
                    let result = core
                        .latest(pattern, MAX_HISTORY_LIMIT as usize, user)
                        .await
                        .map_err(|e| core_error(Some(id), e));
                    Done::Messages { id, result }
                })
            }
            ClientFrame::Dismiss { id, uuid } => {
                let Some(user) = user else {
                    return self
                        .send_err(FrameError::new(
                            Some(id),
                            ErrorCode::Unauthorized,
                            "dismiss needs a token with a user (sub claim)",
                        ))
                        .await;
                };
                Box::pin(async move {
                    let result = core
                        .dismiss(user, uuid)
                        .await
                        .map_err(|e| core_error(Some(id), e));
                    Done::Dismissed { id, result }
                })
            }
        };
        *inflight = Some(op);
        Ok(())
    }

    /// Sends the publishes read so far to the core as one batch: stored in
    /// order, distributed in order, answered in order.
    fn start_publish(&mut self) -> PublishOp {
        let (ids, messages): (Vec<u64>, Vec<Message>) =
            std::mem::take(&mut self.publishes).into_iter().unzip();
        let core = self.ctx.core.clone();
        Box::pin(async move { (ids, core.publish(messages).await) })
    }

    /// Answers every publish of a batch, with one flush.
    async fn acknowledge(
        &mut self,
        ids: Vec<u64>,
        result: Result<Vec<Published>, CoreError>,
    ) -> Result<(), Stop> {
        let frames: Vec<String> = match result {
            Ok(published) => ids
                .iter()
                .zip(published)
                .map(|(id, p)| {
                    ok_frame(
                        *id,
                        &format!(r#","uuid":"{}","duplicate":{}"#, p.uuid, p.duplicate),
                    )
                })
                .collect(),
            Err(e) => {
                let e = core_error(None, e);
                self.ctx.metrics.errors.inc_by(ids.len() as u64);
                ids.iter()
                    .map(|id| FrameError::new(Some(*id), e.code, e.message.clone()).to_frame())
                    .collect()
            }
        };
        let deadline = self.write_deadline();
        for f in frames {
            self.write_by(deadline, Some(Outbound::Text(f.into())))
                .await?;
        }
        self.write_by(deadline, None).await
    }

    async fn forbidden(&mut self, id: u64, pattern: &Pattern) -> Result<(), Stop> {
        self.send_err(FrameError::new(
            Some(id),
            ErrorCode::Forbidden,
            format!("the token does not allow reading {pattern}"),
        ))
        .await
    }

    async fn on_auth(
        &mut self,
        id: u64,
        token: &str,
        inflight: &mut Option<Op>,
    ) -> Result<(), Stop> {
        let grants = match self.ctx.authority.verify(token) {
            Ok(g) => g,
            Err(e) => {
                return self
                    .send_err(FrameError::new(
                        Some(id),
                        ErrorCode::Unauthorized,
                        e.to_string(),
                    ))
                    .await;
            }
        };
        if self.grants.user.is_some() && grants.user != self.grants.user {
            return self
                .send_err(FrameError::new(
                    Some(id),
                    ErrorCode::Forbidden,
                    "this connection is authenticated as another user",
                ))
                .await;
        }
        let first_login = self.grants.user.is_none() && grants.user.is_some();
        self.grants = grants;
        let user = self
            .grants
            .user
            .map(|u| format!(r#","user":"{u}""#))
            .unwrap_or_default();
        self.send(ok_frame(id, &user)).await?;
        if first_login && let Some(u) = self.grants.user {
            *inflight = Some(self.start_login_sync(u));
        }
        Ok(())
    }

    /// Login sync, step 1: subscribe the user's own id paths and read their
    /// latest messages (among them the stored preferences).
    fn start_login_sync(&mut self, user: u64) -> Op {
        let own = Pattern::parse(&idpath::user_pattern(user)).expect("user patterns are valid");
        self.subs.patterns.push(own.clone());
        self.pending
            .get_or_insert_with(Pending::default)
            .patterns
            .push(own.clone());
        let (hub, conn, core) = (
            self.ctx.hub.clone(),
            self.subs.conn.clone(),
            self.ctx.core.clone(),
        );
        let limit = self.ctx.config.sync_latest_limit;
        Box::pin(async move {
            let result = async {
                hub.subscribe(&conn, &own)
                    .await
                    .map_err(|e| postoffice_error(None, e))?;
                core.latest(own, limit, Some(user))
                    .await
                    .map_err(|e| core_error(None, e))
            }
            .await;
            Done::SyncedOwn { user, result }
        })
    }

    /// Reads `{"subscribe": [patterns]}` from a preferences message.
    fn prefs_patterns(message: &Message) -> Vec<String> {
        message
            .body
            .as_json()
            .and_then(|b| b.get("subscribe").cloned())
            .and_then(|s| serde_json::from_value::<Vec<String>>(s).ok())
            .unwrap_or_default()
    }

    /// Makes the preference patterns `wanted` the live set: unsubscribes the
    /// ones dropped, subscribes the new ones and reads their latest messages.
    fn start_prefs_sync(&mut self, user: u64, wanted: Vec<String>) -> Op {
        let mut rejected = Vec::new();
        let mut want = Vec::new();
        for raw in wanted {
            match Pattern::parse_with(&raw, &self.ctx.config.limits) {
                Err(e) => rejected.push((
                    raw,
                    FrameError::new(None, ErrorCode::BadPattern, e.to_string()),
                )),
                Ok(p) if !self.grants.can_read(&p) => rejected.push((
                    raw,
                    FrameError::new(
                        None,
                        ErrorCode::Forbidden,
                        "the token does not allow reading this pattern",
                    ),
                )),
                Ok(p) if !want.contains(&p) => want.push(p),
                Ok(_) => {}
            }
        }
        let dropped: Vec<Pattern> = self
            .prefs
            .iter()
            .filter(|p| !want.contains(p))
            .cloned()
            .collect();
        let mut added = Vec::new();
        for p in &want {
            if self.subs.patterns.contains(p) {
                continue;
            }
            if self.subs.patterns.len() >= self.ctx.config.max_subscriptions {
                rejected.push((
                    p.to_string(),
                    FrameError::new(
                        None,
                        ErrorCode::TooManySubscriptions,
                        "subscription limit reached",
                    ),
                ));
                continue;
            }
            self.subs.patterns.push(p.clone());
            added.push(p.clone());
        }
        self.subs.patterns.retain(|p| !dropped.contains(p));
        self.prefs = want;
        if !added.is_empty() {
            self.pending
                .get_or_insert_with(Pending::default)
                .patterns
                .extend(added.iter().cloned());
        }
        let (hub, conn, core) = (
            self.ctx.hub.clone(),
            self.subs.conn.clone(),
            self.ctx.core.clone(),
        );
        let limit = self.ctx.config.sync_latest_limit;
        Box::pin(async move {
            for p in &dropped {
                if let Err(e) = hub.unsubscribe(&conn, p).await {
                    tracing::warn!(pattern = %p, error = %e, "unsubscribe failed");
                }
            }
            let mut pages = Vec::new();
            for p in added {
                let r = async {
                    hub.subscribe(&conn, &p)
                        .await
                        .map_err(|e| postoffice_error(None, e))?;
                    core.latest(p.clone(), limit, Some(user))
                        .await
                        .map_err(|e| core_error(None, e))
                }
                .await;
                match r {
                    Ok(page) => pages.push(page),
                    Err(e) => rejected.push((p.to_string(), e)),
                }
            }
            Done::SyncedPrefs {
                user,
                pages,
                rejected,
            }
        })
    }

    fn start_prefs_resync(&mut self, frame: &[u8]) -> Option<Op> {
        let user = self.grants.user?;
        let message = Message::from_json(frame, &self.ctx.config.limits).ok()?;
        let wanted = Self::prefs_patterns(&message);
        Some(self.start_prefs_sync(user, wanted))
    }

    /// Sends replayed messages (oldest first) not already delivered, then
    /// remembers them against late live copies.
    async fn send_replay(&mut self, messages: &[Message]) -> Result<usize, Stop> {
        let delivered = self.pending.as_ref().map(|p| &p.delivered);
        let fresh: Vec<&Message> = messages
            .iter()
            .filter(|m| !delivered.is_some_and(|d| d.contains(&m.uuid)))
            .filter(|m| {
                !self
                    .replayed
                    .as_ref()
                    .is_some_and(|(s, _)| s.contains(&m.uuid))
            })
            .collect();
        let deadline = self.write_deadline();
        let mut sent = 0;
        for m in &fresh {
            let frame = Utf8Bytes::try_from(msg_frame(m)).map_err(|_| Stop)?;
            self.write_by(deadline, Some(Outbound::Text(frame))).await?;
            sent += 1;
        }
        if sent > 0 {
            let until = Instant::now() + REPLAY_MEMORY;
            let set = &mut self
                .replayed
                .get_or_insert_with(|| (HashSet::new(), until))
                .0;
            set.extend(fresh.iter().map(|m| m.uuid));
            self.replayed.as_mut().expect("just set").1 = until;
        }
        Ok(sent)
    }

    /// Ends the pending state for `patterns` (all of them when the pending
    /// set empties): buffered live frames that match an active pattern and
    /// were not replayed go out, in arrival order.
    async fn settle(&mut self, patterns: &[Pattern]) -> Result<(), Stop> {
        let Some(p) = self.pending.as_mut() else {
            return Ok(());
        };
        p.patterns.retain(|x| !patterns.contains(x));
        if !p.patterns.is_empty() {
            return Ok(());
        }
        let p = self.pending.take().expect("checked");
        let deadline = self.write_deadline();
        let mut any = false;
        for live in p.buffer {
            if p.delivered.contains(&live.uuid)
                || self.was_replayed(&live.uuid)
                || !self.is_active(&live.path)
            {
                continue;
            }
            self.note_prefs(&live);
            self.write_by(deadline, Some(Outbound::Text(live.frame.clone())))
                .await?;
            any = true;
        }
        if any {
            self.write_by(deadline, None).await?;
        }
        Ok(())
    }

    async fn apply(&mut self, done: Done) -> Result<(), Stop> {
        match done {
            Done::Subscribed {
                id,
                pattern,
                result,
            } => match result {
                Ok(()) => self.send(ok_frame(id, "")).await,
                Err(e) => {
                    self.subs.patterns.retain(|p| *p != pattern);
                    self.send_err(e).await
                }
            },
            Done::Replayed {
                id,
                pattern,
                result,
            } => match result {
                Ok(page) => {
                    let n = self.send_replay(&page.messages).await?;
                    self.send(ok_frame(
                        id,
                        &format!(r#","replayed":{n},"more":{}"#, page.more),
                    ))
                    .await?;
                    self.settle(std::slice::from_ref(&pattern)).await
                }
                Err(e) => {
                    self.subs.patterns.retain(|p| *p != pattern);
                    self.settle(std::slice::from_ref(&pattern)).await?;
                    self.send_err(e).await
                }
            },
            Done::Unsubscribed { id, result } | Done::Dismissed { id, result } => match result {
                Ok(()) => self.send(ok_frame(id, "")).await,
                Err(e) => self.send_err(e).await,
            },
            Done::Messages { id, result } => match result {
                Ok(page) => {
                    let frame = ok_messages_frame(id, &page.messages, page.more, MAX_REPLY_BYTES);
                    self.send(Utf8Bytes::try_from(frame).map_err(|_| Stop)?)
                        .await
                }
                Err(e) => self.send_err(e).await,
            },
            Done::Reread { patterns, result } => match result {
                Ok(page) => {
                    let n = self.send_replay(&page.messages).await?;
                    let frame = format!(r#"{{"op":"reread","replayed":{n},"more":{}}}"#, page.more);
                    self.send(frame).await?;
                    self.settle(&patterns).await
                }
                Err(e) => {
                    self.settle(&patterns).await?;
                    let mut e = e;
                    e.message = format!(
                        "rereading after a postoffice outage failed ({}); resubscribe with since",
                        e.message
                    );
                    self.send_err(e).await
                }
            },
            Done::SyncedOwn { user, result } => {
                let own =
                    Pattern::parse(&idpath::user_pattern(user)).expect("user patterns are valid");
                match result {
                    Ok(page) => {
                        let mut oldest_first = page.messages;
                        oldest_first.reverse();
                        self.send_replay(&oldest_first).await?;
                        let prefs_path = idpath::prefs_path(user);
                        let wanted = oldest_first
                            .iter()
                            .find(|m| m.path == prefs_path)
                            .map(Self::prefs_patterns)
                            .unwrap_or_default();
                        // The preference patterns are read next, as the
                        // following operation; the own pattern is live now.
                        self.next_op = Some(self.start_prefs_sync(user, wanted));
                        self.settle(std::slice::from_ref(&own)).await
                    }
                    Err(e) => {
                        self.subs.patterns.retain(|p| *p != own);
                        self.settle(std::slice::from_ref(&own)).await?;
                        self.send_err(e).await
                    }
                }
            }
            Done::SyncedPrefs {
                user,
                pages,
                rejected,
            } => {
                let mut all: Vec<Message> = pages.into_iter().flat_map(|p| p.messages).collect();
                all.sort_by_key(|m| time_key(&m.uuid));
                all.dedup_by_key(|m| m.uuid);
                self.send_replay(&all).await?;
                for (raw, _) in &rejected {
                    if let Ok(p) = Pattern::parse(raw) {
                        self.subs.patterns.retain(|x| *x != p);
                        self.prefs.retain(|x| *x != p);
                    }
                }
                let frame = json!({
                    "op": "synced",
                    "user": user.to_string(),
                    "patterns": self.prefs.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
                    "rejected": rejected.iter().map(|(p, e)| json!({"pattern": p, "code": e.code.as_str(), "message": e.message})).collect::<Vec<_>>(),
                });
                self.send(frame.to_string()).await?;
                let settled: Vec<Pattern> = self
                    .pending
                    .as_ref()
                    .map(|p| p.patterns.clone())
                    .unwrap_or_default();
                self.settle(&settled).await
            }
        }
    }
}

/// Encodes an `err` frame for callers outside a session (the WebSocket
/// adapter refusing an upgrade-time token, for example).
pub fn refusal(code: ErrorCode, message: &str) -> String {
    err_frame(None, code, message)
}

/// The grants a new connection starts with: from its `?token=` if any.
pub fn initial_grants(
    authority: &Authority,
    token: Option<&str>,
) -> Result<Grants, crate::auth::AuthError> {
    match token {
        Some(t) => authority.verify(t),
        None => Ok(authority.anonymous()),
    }
}

#[cfg(test)]
mod tests {
    //! The loop over channels: no sockets, full control over timing.

    use std::pin::Pin;
    use std::task::{Context, Poll};

    use futures_channel::mpsc;
    use postmesh_core::{Page, Published};
    use postmesh_router::MemoryPostoffice;
    use postmesh_schema::{Body, Path};
    use serde_json::Value;
    use tokio::sync::Notify;

    use super::*;
    use crate::metrics::GatewayMetrics;

    /// A transport made of two channels.
    struct Pipe {
        rx: mpsc::UnboundedReceiver<Inbound>,
        tx: mpsc::UnboundedSender<Outbound>,
    }

    impl Stream for Pipe {
        type Item = Inbound;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
            Pin::new(&mut self.rx).poll_next(cx)
        }
    }

    impl Sink<Outbound> for Pipe {
        type Error = mpsc::SendError;
        fn poll_ready(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            Pin::new(&mut self.tx).poll_ready(cx)
        }
        fn start_send(mut self: Pin<&mut Self>, item: Outbound) -> Result<(), Self::Error> {
            Pin::new(&mut self.tx).start_send(item)
        }
        fn poll_flush(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            Pin::new(&mut self.tx).poll_flush(cx)
        }
        fn poll_close(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            Pin::new(&mut self.tx).poll_close(cx)
        }
    }

    /// A core whose history answer the test releases when it wants.
    struct HeldCore {
        page: parking_lot::Mutex<Option<Page>>,
        release: Notify,
        asked: Notify,
    }

    #[async_trait::async_trait]
    impl CoreClient for HeldCore {
        async fn publish(&self, _: Vec<Message>) -> Result<Vec<Published>, CoreError> {
            unimplemented!("not used")
        }
        async fn history(
            &self,
            _: Pattern,
            _: usize,
            _: Option<Uuid>,
            _: Option<u64>,
        ) -> Result<Page, CoreError> {
            self.asked.notify_one();
            self.release.notified().await;
            Ok(self.page.lock().take().unwrap_or_default())
        }
        async fn since(
            &self,
            _: Pattern,
            _: Uuid,
            _: usize,
            _: Option<u64>,
        ) -> Result<Page, CoreError> {
            Ok(Page::default())
        }
        async fn latest(&self, _: Pattern, _: usize, _: Option<u64>) -> Result<Page, CoreError> {
            Ok(Page::default())
        }
        async fn dismiss(&self, _: u64, _: Uuid) -> Result<(), CoreError> {
            Ok(())
        }
    }

    fn message(path: &str) -> Message {
        Message::new(Path::parse(path).unwrap(), Body::None)
    }

    fn live(m: &Message) -> Arc<Live> {
        Arc::new(Live {
            uuid: m.uuid,
            path: m.path.to_string(),
            frame: Utf8Bytes::try_from(msg_frame(m)).unwrap(),
            kind: LiveKind::Message,
        })
    }

    async fn next(out: &mut mpsc::UnboundedReceiver<Outbound>) -> Value {
        match tokio::time::timeout(Duration::from_secs(5), out.next()).await {
            Ok(Some(Outbound::Text(t))) => serde_json::from_str(&t).unwrap(),
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// A message that arrives live while a replay is pending, through another
    /// active subscription, is not replayed again; one that is in the replay
    /// and also buffered goes out once; one whose live copy arrives after the
    /// replay is dropped.
    #[tokio::test]
    async fn replay_and_live_merge_without_duplicates() {
        let cancel = CancellationToken::new();
        let metrics = GatewayMetrics::default();
        let hub = Hub::start(
            Arc::new(MemoryPostoffice::new()),
            "gw".into(),
            1024,
            metrics.clone(),
            cancel.clone(),
            None,
            None,
        )
        .await
        .unwrap();
        let core = Arc::new(HeldCore {
            page: parking_lot::Mutex::new(None),
            release: Notify::new(),
            asked: Notify::new(),
        });
        let ctx = Arc::new(Ctx {
            hub: hub.clone(),
            core: core.clone(),
            authority: Authority::new(None),
            config: GatewayConfig::default(),
            metrics,
        });
        let (in_tx, in_rx) = mpsc::unbounded();
        let (out_tx, mut out) = mpsc::unbounded();
        let session = tokio::spawn(run(
            Pipe {
                rx: in_rx,
                tx: out_tx,
            },
            ctx,
            Grants::open(),
            Options::default(),
            cancel.clone(),
        ));
        let send = |s: &str| {
            in_tx
                .unbounded_send(Inbound::Text(Utf8Bytes::from(s)))
                .unwrap()
        };

        send(r#"{"op":"sub","id":1,"pattern":"b.y"}"#);
        assert_eq!(next(&mut out).await["op"], "ok");
        send(r#"{"op":"sub","id":2,"pattern":"b.#","history":10}"#);
        core.asked.notified().await;

        let (m0, m2, m3) = (message("b.old"), message("b.x"), message("b.y"));
        // m3 matches the active `b.y`: delivered at once.
        hub.fan_out(&live(&m3));
        assert_eq!(next(&mut out).await["uuid"], m3.uuid.to_string());
        // m2 matches only the pending `b.#`: held back.
        hub.fan_out(&live(&m2));
        // The store read saw m0, m2 and m3 (newest first).
        *core.page.lock() = Some(Page {
            messages: vec![m3.clone(), m2.clone(), m0.clone()],
            more: false,
        });
        core.release.notify_one();
        assert_eq!(next(&mut out).await["uuid"], m0.uuid.to_string());
        assert_eq!(next(&mut out).await["uuid"], m2.uuid.to_string());
        let ok = next(&mut out).await;
        assert_eq!(
            (
                ok["op"].as_str(),
                ok["id"].as_u64(),
                ok["replayed"].as_u64()
            ),
            (Some("ok"), Some(2), Some(2))
        );
        // m0's live copy was still on its way: dropped.
        hub.fan_out(&live(&m0));
        let m4 = message("b.z");
        hub.fan_out(&live(&m4));
        assert_eq!(
            next(&mut out).await["uuid"],
            m4.uuid.to_string(),
            "nothing in between"
        );

        cancel.cancel();
        session.await.unwrap();
        match out.next().await {
            Some(Outbound::Close(code, _)) => assert_eq!(code, close::GOING_AWAY),
            other => panic!("expected a close, got {other:?}"),
        }
    }
}
