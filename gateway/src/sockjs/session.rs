//! One SockJS session: the state its requests share, and its side as a
//! session transport.
//!
//! A SockJS session outlives the HTTP requests that carry it: a polling
//! device sends each message in a request of its own and receives in
//! another. So the session loop (`crate::session::run`, or a test service)
//! runs on a task of its own over a [`SockjsTransport`], and requests meet
//! it here: senders push into a bounded inbound queue, and one receiving
//! request at a time takes what the session wrote.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use futures_util::{Sink, Stream};
use parking_lot::Mutex;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::frame::Frame;
use crate::session::{Inbound, Outbound};

/// Messages a session's inbound queue holds (each at most
/// `max_frame_bytes`, larger ones are refused before): a sender waits
/// while it is full.
pub const INBOUND_FRAMES: usize = 64;

/// What a receiving request takes from the session.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    /// Messages, each the text of one frame.
    Messages(Vec<Frame>),
    /// The session closed with this code and reason.
    Closed(u16, String),
    /// Nothing yet.
    Empty,
}

#[derive(Debug, Default)]
struct State {
    pending: VecDeque<Frame>,
    pending_bytes: usize,
    closed: Option<(u16, String)>,
    /// A receiving request is attached.
    receiving: bool,
    /// When the last receiving request left (or the session began).
    left_at: Option<Instant>,
    /// The session loop waits for room in `pending`.
    writer: Option<Waker>,
    /// A keepalive came while the device was present: tell the loop.
    alive: bool,
}

/// The state shared by a session's requests and its loop.
#[derive(Debug)]
pub struct Shared {
    state: Mutex<State>,
    /// Wakes the receiving request: something to send, or the close.
    changed: Notify,
    inbound: mpsc::Sender<Inbound>,
    /// Cancelled when the session is over for the device (timed out,
    /// interrupted): the loop's transport ends.
    gone: CancellationToken,
    buffer_bytes: usize,
    /// Counts the session while it is held anywhere: by the registry, its
    /// loop or a request.
    _held: Held,
}

/// One on a gauge for as long as it lives.
#[derive(Debug)]
struct Held(Gauge);

impl Held {
    fn new(gauge: Gauge) -> Held {
        gauge.inc();
        Held(gauge)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Shared {
    /// A session, and its transport for the session loop. `sessions`
    /// counts it until the last of them is dropped.
    pub fn new(buffer_bytes: usize, sessions: Gauge) -> (Arc<Shared>, SockjsTransport) {
        let (tx, rx) = mpsc::channel(INBOUND_FRAMES);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                left_at: Some(Instant::now()),
                ..State::default()
            }),
            changed: Notify::new(),
            inbound: tx,
            gone: CancellationToken::new(),
            buffer_bytes: buffer_bytes.max(1),
            _held: Held::new(sessions),
        });
        let transport = SockjsTransport {
            gone: Box::pin(shared.gone.clone().cancelled_owned()),
            shared: shared.clone(),
            inbound: rx,
        };
        (shared, transport)
    }

    /// Hands messages from the device to the loop, waiting while its queue
    /// is full. False once the session is over.
    pub async fn deliver(&self, frames: Vec<Inbound>) -> bool {
        for f in frames {
            if self.gone.is_cancelled() || self.inbound.send(f).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Attaches a receiving request. False when one is attached already
    /// (the protocol answers `c[2010,..]`).
    pub fn attach(&self) -> bool {
        let mut s = self.state.lock();
        if s.receiving {
            return false;
        }
        s.receiving = true;
        true
    }

    /// The receiving request left. `interrupted`: it went before it was
    /// done (the device closed it), which ends the session (1002).
    pub fn detach(&self, interrupted: bool) {
        let mut s = self.state.lock();
        s.receiving = false;
        s.left_at = Some(Instant::now());
        if interrupted && s.closed.is_none() {
            s.closed = Some((1002, "Connection interrupted".into()));
            drop(s);
            self.gone.cancel();
        }
    }

    /// Takes what waits for the device.
    pub fn take(&self) -> Taken {
        let mut s = self.state.lock();
        if !s.pending.is_empty() {
            s.pending_bytes = 0;
            let frames = s.pending.drain(..).collect();
            if let Some(w) = s.writer.take() {
                w.wake();
            }
            return Taken::Messages(frames);
        }
        match &s.closed {
            Some((code, reason)) => Taken::Closed(*code, reason.clone()),
            None => Taken::Empty,
        }
    }

    /// Waits until the session has something for the device.
    pub async fn changed(&self) {
        let notified = self.changed.notified();
        {
            let s = self.state.lock();
            if !s.pending.is_empty() || s.closed.is_some() {
                return;
            }
        }
        notified.await;
    }

    /// The session is over (closed, or its device gone) and no request has
    /// come for `delay`: it can be forgotten. A session that is over for
    /// its device is also ended for its loop.
    pub fn expired(&self, delay: std::time::Duration) -> bool {
        let s = self.state.lock();
        let away = !s.receiving && s.left_at.is_some_and(|t| t.elapsed() >= delay);
        drop(s);
        if away {
            self.gone.cancel();
        }
        away
    }

    /// Ends the session for its loop (its WebSocket closed).
    pub fn end(&self) {
        self.gone.cancel();
    }

    /// Whether the session is still open.
    pub fn is_closed(&self) -> bool {
        self.state.lock().closed.is_some()
    }
}

/// The session loop's side of a SockJS session.
pub struct SockjsTransport {
    shared: Arc<Shared>,
    inbound: mpsc::Receiver<Inbound>,
    gone: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Stream for SockjsTransport {
    type Item = Inbound;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
        if self.gone.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        {
            let mut s = self.shared.state.lock();
            // After its close frame a SockJS session reads nothing more, so
            // a loop waiting for the device's answer to it stops at once.
            if s.closed.is_some() {
                return Poll::Ready(None);
            }
            if std::mem::take(&mut s.alive) {
                return Poll::Ready(Some(Inbound::Alive));
            }
        }
        self.inbound.poll_recv(cx)
    }
}

/// Why a write to a SockJS session failed: the device is gone.
#[derive(Debug, thiserror::Error)]
#[error("the SockJS session is over")]
pub struct Gone;

impl Sink<Outbound> for SockjsTransport {
    type Error = Gone;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Gone>> {
        if self.shared.gone.is_cancelled() {
            return Poll::Ready(Err(Gone));
        }
        let mut s = self.shared.state.lock();
        // One frame larger than the bound passes when nothing else waits.
        if s.pending_bytes >= self.shared.buffer_bytes {
            s.writer = Some(cx.waker().clone());
            drop(s);
            // The loop is between flushes: tell the receiving request what
            // is already there, or neither would move until a timeout.
            self.shared.changed.notify_waiters();
            self.shared.changed.notify_one();
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, item: Outbound) -> Result<(), Gone> {
        let mut s = self.shared.state.lock();
        match item {
            Outbound::Text(f) => {
                if s.closed.is_none() {
                    s.pending_bytes += f.len();
                    s.pending.push_back(f);
                }
            }
            Outbound::Close(code, reason) => {
                if s.closed.is_none() {
                    s.closed = Some((code, reason));
                }
            }
            // Receiving requests send heartbeats on their own; a keepalive
            // only asks whether the device is still there: it is while a
            // request is attached, or one left less than a delay ago (the
            // registry ends the session after that).
            Outbound::Ping => s.alive = true,
        }
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Gone>> {
        self.shared.changed.notify_waiters();
        self.shared.changed.notify_one();
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Gone>> {
        self.poll_flush(cx)
    }
}

#[cfg(test)]
mod tests {
    use futures_util::{SinkExt, StreamExt};

    use super::*;

    #[tokio::test]
    async fn frames_meet_between_requests_and_the_loop() {
        let (shared, mut t) = Shared::new(1024, Gauge::default());
        assert!(shared.deliver(vec![Inbound::Text(Frame::from("a"))]).await);
        assert!(matches!(t.next().await, Some(Inbound::Text(f)) if f.as_str() == "a"));
        t.send(Outbound::Text(Frame::from("b"))).await.unwrap();
        assert_eq!(shared.take(), Taken::Messages(vec![Frame::from("b")]));
        assert_eq!(shared.take(), Taken::Empty);
        assert!(shared.attach());
        assert!(!shared.attach(), "one receiving request at a time");
        t.send(Outbound::Close(3000, "Go away!".into()))
            .await
            .unwrap();
        assert_eq!(shared.take(), Taken::Closed(3000, "Go away!".into()));
    }

    #[tokio::test]
    async fn writes_wait_for_room_in_bytes() {
        let (shared, mut t) = Shared::new(4, Gauge::default());
        t.send(Outbound::Text(Frame::from("12345"))).await.unwrap();
        let blocked = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            t.send(Outbound::Text(Frame::from("6"))),
        )
        .await;
        assert!(blocked.is_err(), "over the bound, a write waits");
        assert!(matches!(shared.take(), Taken::Messages(m) if m.len() == 1));
        t.send(Outbound::Text(Frame::from("6"))).await.unwrap();
    }

    /// A loop that fills the buffer between two flushes wakes the
    /// receiving request, which takes the frames and makes room.
    #[tokio::test]
    async fn a_full_buffer_wakes_the_receiver_without_a_flush() {
        let (shared, mut t) = Shared::new(4, Gauge::default());
        let receiver = tokio::spawn({
            let shared = shared.clone();
            async move {
                shared.changed().await;
                shared.take()
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        t.feed(Outbound::Text(Frame::from("12345"))).await.unwrap();
        let more = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            t.feed(Outbound::Text(Frame::from("6"))),
        );
        assert!(more.await.is_ok(), "the receiver made room");
        let taken = tokio::time::timeout(std::time::Duration::from_secs(5), receiver)
            .await
            .expect("the receiver was woken")
            .unwrap();
        assert_eq!(taken, Taken::Messages(vec![Frame::from("12345")]));
    }

    #[tokio::test]
    async fn an_interrupted_receiver_ends_the_session() {
        let (shared, mut t) = Shared::new(1024, Gauge::default());
        assert!(shared.attach());
        shared.detach(true);
        assert!(t.next().await.is_none());
        assert_eq!(
            shared.take(),
            Taken::Closed(1002, "Connection interrupted".into())
        );
        assert!(shared.expired(std::time::Duration::ZERO));
    }

    #[tokio::test]
    async fn a_session_is_counted_until_nothing_holds_it() {
        let sessions = Gauge::default();
        let (shared, t) = Shared::new(1024, sessions.clone());
        let (other, _t2) = Shared::new(1024, sessions.clone());
        assert_eq!(sessions.get(), 2);
        drop(shared);
        assert_eq!(sessions.get(), 2, "its loop still holds it");
        drop(t);
        assert_eq!(sessions.get(), 1);
        drop(other);
        assert_eq!(sessions.get(), 1, "its transport still holds it");
    }
}
