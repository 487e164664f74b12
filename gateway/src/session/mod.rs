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
//! A `sub` with `history` or `since`, the reread after a postoffice outage
//! and login sync all make their patterns live first (the hub returns once
//! they are bound upstream), then read the store, and merge the two
//! through the connection's [`Merge`](merge::Merge), whose documentation
//! says why nothing is missed and nothing sent twice.
//!
//! # Modules
//! - this one: the loop, writing to the device, and applying finished
//!   operations;
//! - [`requests`]: client frames, publishes and authentication;
//! - [`replay`]: replays and rereads;
//! - [`login`]: login sync;
//! - [`merge`]: the merge of replays with live frames.

mod login;
pub mod merge;
mod replay;
mod requests;

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::frame::Frame;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use postmesh_core::{CoreClient, CoreError, Page, Published};
use postmesh_schema::protocol::{
    ClientFrame, ErrorCode, FrameError, MAX_HISTORY_LIMIT, MAX_REPLY_BYTES, close, err_frame,
    msg_frame, ok_frame, ok_messages_frame, parse_client_frame,
};
use postmesh_schema::{Cursor, Message, Pattern, idpath};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::auth::{Authority, Grants};
use crate::config::GatewayConfig;
use crate::hub::{ConnRef, Hub};
use crate::metrics::GatewayMetrics;
use crate::outbox::{Live, LiveKind};

pub use merge::REPLAY_MEMORY;
use merge::{Merge, Verdict};
use replay::Progress;

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
    Text(Frame),
    /// A binary frame: not part of the protocol.
    Binary,
    /// A frame over the size limit. The session closes with 1009.
    TooBig,
    /// The device broke the WebSocket protocol; the session closes with
    /// this code (1002, or 1007 for a text frame that is not UTF-8). The
    /// transport reads nothing more.
    ProtocolError(u16),
    /// A control frame (ping or pong): the device is alive.
    Alive,
}

/// A frame to the device.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// A text frame.
    Text(Frame),
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
    /// One page of a `sub` replay. `next`: where the following page starts
    /// (the page was full). `progress`: `None` for `history`, which is one
    /// page.
    Replayed {
        id: u64,
        pattern: Pattern,
        result: Result<Page, FrameError>,
        next: Option<Cursor>,
        progress: Option<Progress>,
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
    /// After a postoffice outage: one page of what was stored meanwhile.
    Reread {
        patterns: Vec<Pattern>,
        result: Result<Page, FrameError>,
        next: Option<Cursor>,
        progress: Progress,
    },
    /// Login sync, step 2 (and every later preferences change): the
    /// preference patterns are live and their latest messages read.
    SyncedPrefs {
        user: u64,
        pages: Vec<Page>,
        rejected: Vec<(String, FrameError)>,
    },
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
    /// Replays in progress merged with live frames.
    merge: Merge,
    /// Patterns that came from the user's stored preferences.
    prefs: Vec<Pattern>,
    /// A preferences message arrived: re-sync when no operation is in flight.
    resync: Option<Vec<u8>>,
    batch: std::collections::VecDeque<Arc<Live>>,
    /// An operation to start as soon as the current one is applied.
    next_op: Option<Op>,
    /// The hub reconnected to the postoffice: reread these patterns from
    /// this cursor when no operation is in flight. They are pending already.
    reread: Option<(Cursor, Vec<Pattern>)>,
    /// A resume's second read, once replicas on their way have landed.
    late: Option<replay::LateRead>,
    options: Options,
    /// Publishes read while a batch was at the core: the next batch.
    publishes: Vec<(u64, Message)>,
    /// A request read while publishes were in flight. Requests take effect
    /// in the order sent, so it waits until they are stored.
    deferred: Option<ClientFrame>,
    /// Subscriptions were revoked: the next flush drops queued frames that
    /// no remaining subscription matches (frames queued later cannot).
    revoking: bool,
}

/// Why the loop stops.
struct Stop;

fn core_error(id: Option<u64>, e: CoreError) -> FrameError {
    tracing::warn!(error = %e, "core call failed");
    FrameError::new(id, e.code(), e.to_string())
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
        close::PROTOCOL_ERROR => "WebSocket protocol error",
        close::INVALID_DATA => "a text frame that is not UTF-8",
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
    let conn = ctx
        .hub
        .connect(ctx.config.outbound_queue, ctx.config.outbound_bytes);
    let mut s = Session {
        transport,
        subs: Subscriptions {
            hub: ctx.hub.clone(),
            conn,
            patterns: Vec::new(),
        },
        merge: Merge::new(ctx.config.outbound_queue).with_max_bytes(ctx.config.outbound_bytes),
        ctx,
        grants,
        prefs: Vec::new(),
        resync: None,
        batch: std::collections::VecDeque::new(),
        next_op: None,
        reread: None,
        late: None,
        publishes: Vec::new(),
        deferred: None,
        revoking: false,
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
        let late_due = s.late.as_ref().map(|l| l.due);
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
            // Only wakes the loop: the late read starts below, once no
            // operation is in flight.
            _ = tokio::time::sleep_until(late_due.unwrap_or_else(tokio::time::Instant::now)),
                if late_due.is_some() && inflight.is_none() => Ok(()),
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
                    s.on_text(text.as_str(), &mut inflight, busy).await
                }
                Some(Inbound::Binary) => {
                    s.send_err(FrameError::new(None, ErrorCode::BadJson, "binary frames are not part of the protocol; send JSON text frames")).await
                }
                Some(Inbound::TooBig) => s.close(close::TOO_BIG).await,
                Some(Inbound::ProtocolError(code)) => s.close(code).await,
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
        if inflight.is_none()
            && s.late
                .as_ref()
                .is_some_and(|l| l.due <= tokio::time::Instant::now())
            && let Some(late) = s.late.take()
        {
            inflight = s.start_late_read(late);
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

    async fn send(&mut self, text: impl Into<Frame>) -> Result<(), Stop> {
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

    /// Sends everything the fan-out queued, as one batch and one flush.
    async fn flush_outbox(&mut self) -> Result<(), Stop> {
        let outbox = self.subs.conn.outbox.clone();
        outbox.drain_into(&mut self.batch);
        if self.batch.is_empty() {
            return Ok(());
        }
        let deadline = self.write_deadline();
        // Everything queued before a revocation is in this batch.
        let revoking = std::mem::take(&mut self.revoking);
        let mut batch = std::mem::take(&mut self.batch);
        // With `batch` on: the message frames of this wake-up, one per line.
        let mut joined = String::new();
        let mut sent_any = false;
        let mut result = Ok(());
        for live in batch.drain(..) {
            // Its bytes count against the outbox's bound until this
            // iteration is done with it (written, copied, held or dropped).
            let _release = outbox.releasing(live.frame.len());
            if live.kind == LiveKind::Reread {
                if let Some(from) = live.cursor {
                    self.note_reread(from);
                }
                continue;
            }
            if live.kind == LiveKind::Keepalive {
                self.merge.tidy(Instant::now());
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
            if revoking && !self.subs.patterns.iter().any(|p| p.matches_str(&live.path)) {
                continue;
            }
            match self.merge.live(&live, &self.subs.patterns, Instant::now()) {
                Verdict::Send => {}
                Verdict::Held | Verdict::Drop => continue,
                Verdict::Overflow => {
                    result = self.close(close::SLOW_CONSUMER).await;
                    break;
                }
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
        crate::outbox::recycle(&mut self.batch);
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
                next,
                progress,
            } => {
                self.apply_replayed(id, pattern, result, next, progress)
                    .await
            }
            Done::Unsubscribed { id, result } | Done::Dismissed { id, result } => match result {
                Ok(()) => self.send(ok_frame(id, "")).await,
                Err(e) => self.send_err(e).await,
            },
            Done::Messages { id, result } => match result {
                Ok(page) => {
                    let frame = ok_messages_frame(
                        id,
                        &page.messages,
                        page.more,
                        page.next,
                        MAX_REPLY_BYTES,
                    );
                    self.send(Frame::try_from(frame).map_err(|_| Stop)?).await
                }
                Err(e) => self.send_err(e).await,
            },
            Done::Reread {
                patterns,
                result,
                next,
                progress,
            } => self.apply_reread(patterns, result, next, progress).await,
            Done::SyncedOwn { user, result } => self.apply_synced_own(user, result).await,
            Done::SyncedPrefs {
                user,
                pages,
                rejected,
            } => self.apply_synced_prefs(user, pages, rejected).await,
        }
    }
}

/// Encodes an `err` frame for callers outside a session (the WebSocket
/// adapter refusing an upgrade-time token, for example).
pub fn refusal(code: ErrorCode, message: &str) -> String {
    err_frame(None, code, message)
}

#[cfg(test)]
mod tests;
