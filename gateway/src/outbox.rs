//! One connection's bounded outbound queue.
//!
//! Fan-out pushes shared frames here without waiting; the connection's task
//! drains everything waiting in one go and writes it as one batch. When the
//! queue is full the connection is marked closed as a slow consumer: the
//! pusher never waits, so one slow device cannot slow the others.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use parking_lot::Mutex;
use postmesh_schema::protocol::close;
use postmesh_schema::{Cursor, Uuid};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// A message on its way to devices, shared by every connection it goes to.
#[derive(Debug)]
pub struct Live {
    pub uuid: Uuid,
    /// Where the core that distributed it stored it; for a reread marker,
    /// the position to reread from.
    pub cursor: Option<Cursor>,
    pub path: String,
    /// The encoded frame, shared (reference-counted) across connections.
    pub frame: Utf8Bytes,
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
    /// The queue was full: the connection is now closed as a slow consumer.
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
    /// An empty outbox holding at most `capacity` frames. Nothing is
    /// allocated until the first push.
    pub fn new(capacity: usize) -> Outbox {
        Outbox {
            queue: Mutex::new(VecDeque::new()),
            notify: Notify::new(),
            closed: AtomicU16::new(0),
            capacity,
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

    /// Queues a frame without waiting.
    pub fn push(&self, item: Arc<Live>) -> Push {
        if self.closed.load(Ordering::Relaxed) != 0 {
            return Push::Closed;
        }
        let mut q = self.queue.lock();
        if q.len() >= self.capacity {
            drop(q);
            self.close(close::SLOW_CONSUMER);
            return Push::Overflow;
        }
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
    /// buffers so that neither side allocates in the steady state.
    pub fn drain_into(&self, into: &mut VecDeque<Arc<Live>>) {
        let mut q = self.queue.lock();
        std::mem::swap(&mut *q, into);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> Arc<Live> {
        Arc::new(Live {
            uuid: postmesh_schema::message::new_v1(),
            cursor: None,
            path: "a".into(),
            frame: Utf8Bytes::from_static("{}"),
            kind: LiveKind::Message,
        })
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
