//! One connection's bounded outbound queue.
//!
//! Fan-out pushes shared frames here without waiting; the connection's task
//! drains everything waiting in one go and writes it as one batch. When the
//! queue is full the connection is marked closed as a slow consumer: the
//! pusher never waits, so one slow device cannot slow the others.
//!
//! # Two bounds
//! The queue holds at most `capacity` frames, and at most `max_bytes` of
//! frames that were pushed and not yet *released*: the session releases a
//! frame's bytes once it has written it to the transport (or held it in
//! its merge, which has its own bound, or dropped it). So the byte bound
//! covers what waits here and the batch being written, which is what a
//! connection pins. A frame shared by many connections counts fully for
//! each, since each keeps it alive. A frame larger than the bound on its
//! own is taken when nothing else is held, so one large message never
//! closes a device that keeps up.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};

use crate::frame::Frame;
use parking_lot::Mutex;
use postmesh_schema::protocol::close;
use postmesh_schema::{Cursor, Uuid};
use tokio::sync::Notify;

/// A message on its way to devices, shared by every connection it goes to.
#[derive(Debug)]
pub struct Live {
    pub uuid: Uuid,
    /// Where the core that distributed it stored it; for a reread marker,
    /// the position to reread from.
    pub cursor: Option<Cursor>,
    pub path: String,
    /// The encoded frame, shared (reference-counted) across connections.
    pub frame: Frame,
    pub kind: LiveKind,
}

/// What an outbox item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveKind {
    /// A frame for the device.
    Message,
    /// Not a frame: the hub lost and regained the postoffice, and the
    /// connection must reread what was stored after `cursor` (the newest
    /// the hub saw before). Queued ahead of anything newer.
    Reread,
    /// Not a frame: time to ping the device, or to give up on it.
    Keepalive,
}

/// What [`Outbox::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Queued for the connection.
    Queued,
    /// The queue was full (in frames or in bytes): the connection is now
    /// closed as a slow consumer.
    Overflow,
    /// The connection was already closed; the frame was dropped.
    Closed,
}

/// The queue. Shared between the hub (pushers) and the connection's task.
#[derive(Debug)]
pub struct Outbox {
    queue: Mutex<VecDeque<Arc<Live>>>,
    notify: Notify,
    closed: AtomicU16,
    capacity: usize,
    /// Most bytes pushed and not yet released.
    max_bytes: usize,
    /// Bytes pushed and not yet released (queued, or drained and not yet
    /// written). Grown under the queue's lock; released without it.
    bytes: AtomicUsize,
    /// When the device last sent anything, in seconds since the epoch.
    last_inbound: std::sync::atomic::AtomicU64,
}

fn epoch_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Outbox {
    /// An empty outbox holding at most `capacity` frames, without a bound
    /// in bytes. Nothing is allocated until the first push.
    pub fn new(capacity: usize) -> Outbox {
        Outbox::bounded(capacity, usize::MAX)
    }

    /// An empty outbox holding at most `capacity` frames and `max_bytes` of
    /// frames not yet released (see the module's documentation).
    pub fn bounded(capacity: usize, max_bytes: usize) -> Outbox {
        Outbox {
            queue: Mutex::new(VecDeque::new()),
            notify: Notify::new(),
            closed: AtomicU16::new(0),
            capacity,
            max_bytes,
            bytes: AtomicUsize::new(0),
            last_inbound: std::sync::atomic::AtomicU64::new(epoch_secs()),
        }
    }

    /// Notes that the device sent something.
    pub fn touch(&self) {
        self.last_inbound.store(epoch_secs(), Ordering::Relaxed);
    }

    /// Seconds since the device last sent anything.
    pub fn idle_secs(&self) -> u64 {
        epoch_secs().saturating_sub(self.last_inbound.load(Ordering::Relaxed))
    }

    /// Queues a frame without waiting. Its bytes count against the bound
    /// until [`Outbox::release`].
    pub fn push(&self, item: Arc<Live>) -> Push {
        if self.closed.load(Ordering::Relaxed) != 0 {
            return Push::Closed;
        }
        let size = item.frame.len();
        let mut q = self.queue.lock();
        let held = self.bytes.load(Ordering::Acquire);
        if q.len() >= self.capacity || (held > 0 && held.saturating_add(size) > self.max_bytes) {
            drop(q);
            self.close(close::SLOW_CONSUMER);
            return Push::Overflow;
        }
        self.bytes.fetch_add(size, Ordering::AcqRel);
        let was_empty = q.is_empty();
        q.push_back(item);
        drop(q);
        if was_empty {
            self.notify.notify_one();
        }
        Push::Queued
    }

    /// Marks the connection closed with `code` and wakes its task. The
    /// first code wins.
    pub fn close(&self, code: u16) {
        if self
            .closed
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.notify.notify_one();
        }
    }

    /// The close code, if closed.
    pub fn closed(&self) -> Option<u16> {
        match self.closed.load(Ordering::Acquire) {
            0 => None,
            c => Some(c),
        }
    }

    /// Waits until something was pushed or the outbox was closed.
    pub async fn ready(&self) {
        self.notify.notified().await;
    }

    /// Moves everything waiting into `into` (which should be empty); swaps
    /// buffers so that neither side allocates in the steady state. The
    /// frames' bytes stay counted until [`Outbox::release`].
    pub fn drain_into(&self, into: &mut VecDeque<Arc<Live>>) {
        let mut q = self.queue.lock();
        std::mem::swap(&mut *q, into);
    }

    /// The session is done with `bytes` of drained frames (written, held
    /// elsewhere, or dropped): they no longer count against the bound.
    pub fn release(&self, bytes: usize) {
        let _ = self
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some(b.saturating_sub(bytes))
            });
    }

    /// Releases `bytes` when the guard is dropped.
    pub fn releasing(&self, bytes: usize) -> Release<'_> {
        Release {
            outbox: self,
            bytes,
        }
    }

    /// Bytes pushed and not yet released.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.queue.lock().len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Releases a drained frame's bytes when dropped ([`Outbox::releasing`]).
#[derive(Debug)]
pub struct Release<'a> {
    outbox: &'a Outbox,
    bytes: usize,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.outbox.release(self.bytes);
    }
}

/// A drained batch's buffer keeps at most this many slots once it is
/// written: a burst's peak is not kept for a quiet connection.
pub const KEEP_SLOTS: usize = 8;

/// Empties a drained batch's buffer and gives back what a burst grew it to
/// beyond [`KEEP_SLOTS`].
pub fn recycle(batch: &mut VecDeque<Arc<Live>>) {
    batch.clear();
    if batch.capacity() > KEEP_SLOTS {
        batch.shrink_to(KEEP_SLOTS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> Arc<Live> {
        sized(2)
    }

    /// A message frame of `n` bytes.
    fn sized(n: usize) -> Arc<Live> {
        Arc::new(Live {
            uuid: postmesh_schema::message::new_v1(),
            cursor: None,
            path: "a".into(),
            frame: Frame::from("x".repeat(n)),
            kind: LiveKind::Message,
        })
    }

    #[test]
    fn bytes_past_the_bound_close_as_slow_consumer() {
        let o = Outbox::bounded(100, 10_000);
        for _ in 0..9 {
            assert_eq!(o.push(sized(1000)), Push::Queued);
        }
        assert_eq!(o.bytes(), 9000);
        // 10 000 bytes exactly still fit; one more byte does not.
        assert_eq!(o.push(sized(1000)), Push::Queued);
        assert_eq!(o.push(sized(1)), Push::Overflow);
        assert_eq!(o.closed(), Some(close::SLOW_CONSUMER));
        assert_eq!(o.push(sized(1)), Push::Closed);
    }

    #[test]
    fn drained_frames_count_until_released() {
        let o = Outbox::bounded(100, 10_000);
        for _ in 0..8 {
            assert_eq!(o.push(sized(1000)), Push::Queued);
        }
        let mut batch = VecDeque::new();
        o.drain_into(&mut batch);
        assert!(o.is_empty());
        // The drained batch is still being written: it counts.
        assert_eq!(o.bytes(), 8000);
        assert_eq!(o.push(sized(1000)), Push::Queued);
        assert_eq!(o.push(sized(1000)), Push::Queued);
        // Half of the batch is written.
        o.release(4000);
        assert_eq!(o.bytes(), 6000);
        for _ in 0..4 {
            assert_eq!(o.push(sized(1000)), Push::Queued);
        }
        assert_eq!(o.push(sized(1000)), Push::Overflow);
        // Releasing more than is held (a session closing) never wraps.
        o.release(1_000_000);
        assert_eq!(o.bytes(), 0);
    }

    #[test]
    fn one_frame_over_the_bound_passes_alone() {
        let o = Outbox::bounded(100, 1000);
        assert_eq!(o.push(sized(5000)), Push::Queued, "nothing else held");
        assert_eq!(o.push(sized(1)), Push::Overflow, "but nothing beside it");

        let o = Outbox::bounded(100, 1000);
        assert_eq!(o.push(sized(5000)), Push::Queued);
        let mut batch = VecDeque::new();
        o.drain_into(&mut batch);
        o.release(5000);
        assert_eq!(o.push(sized(5000)), Push::Queued, "once it was written");
    }

    #[test]
    fn markers_take_no_bytes() {
        let o = Outbox::bounded(100, 1000);
        assert_eq!(o.push(sized(1000)), Push::Queued);
        let marker = Arc::new(Live {
            uuid: Uuid::nil(),
            cursor: None,
            path: String::new(),
            frame: Frame::from_static(""),
            kind: LiveKind::Keepalive,
        });
        assert_eq!(o.push(marker), Push::Queued);
        assert_eq!(o.bytes(), 1000);
    }

    #[test]
    fn a_burst_buffer_is_given_back() {
        let o = Outbox::new(10_000);
        for _ in 0..5000 {
            o.push(live());
        }
        let mut batch = VecDeque::new();
        o.drain_into(&mut batch);
        assert!(batch.capacity() >= 5000);
        recycle(&mut batch);
        assert!(batch.is_empty() && batch.capacity() <= KEEP_SLOTS);
        // The small buffer goes back to the queue on the next drain; the
        // queue grows again only for the next burst.
        o.push(live());
        o.drain_into(&mut batch);
        assert_eq!(batch.len(), 1);
        o.push(live());
        assert!(o.len() == 1);
    }

    #[test]
    fn overflow_closes_as_slow_consumer() {
        let o = Outbox::new(2);
        assert_eq!(o.push(live()), Push::Queued);
        assert_eq!(o.push(live()), Push::Queued);
        assert_eq!(o.push(live()), Push::Overflow);
        assert_eq!(o.closed(), Some(close::SLOW_CONSUMER));
        assert_eq!(o.push(live()), Push::Closed, "closed stays closed");
        let mut buf = VecDeque::new();
        o.drain_into(&mut buf);
        assert_eq!(buf.len(), 2);
        assert!(o.is_empty());
    }
}
