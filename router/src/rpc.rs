//! Asynchronous RPC over the postoffice: a request carries a correlation
//! id and the requester's address in `reply_to`; the reply comes back to
//! the requester's unique address with the same correlation id. [`Replies`]
//! matches them up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::oneshot;

/// Most requests waiting for a reply at once; more are refused rather than
/// queued without bound.
pub const MAX_PENDING: usize = 100_000;

/// Requests waiting for their replies.
#[derive(Default)]
pub struct Replies {
    pending: Mutex<HashMap<String, oneshot::Sender<Bytes>>>,
    next: AtomicU64,
    prefix: String,
}

impl Replies {
    /// A registry whose correlation ids start with `prefix` (the owner's
    /// address keeps them unique across processes).
    pub fn new(prefix: &str) -> Replies {
        Replies {
            prefix: prefix.to_owned(),
            ..Replies::default()
        }
    }

    /// A fresh correlation id and where its reply will arrive; `None` when
    /// [`MAX_PENDING`] requests are waiting already.
    pub fn register(&self) -> Option<(String, oneshot::Receiver<Bytes>)> {
        let mut pending = self.pending.lock();
        if pending.len() >= MAX_PENDING {
            return None;
        }
        let id = format!(
            "{}-{}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let (tx, rx) = oneshot::channel();
        pending.insert(id.clone(), tx);
        Some((id, rx))
    }

    /// Hands a reply to its waiter. Returns `false` for an unknown (late or
    /// duplicate) correlation id.
    pub fn resolve(&self, correlation_id: &str, payload: Bytes) -> bool {
        match self.pending.lock().remove(correlation_id) {
            Some(tx) => tx.send(payload).is_ok(),
            None => false,
        }
    }

    /// Stops waiting (a time-out).
    pub fn forget(&self, correlation_id: &str) {
        self.pending.lock().remove(correlation_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replies_meet_their_requests_once() {
        let r = Replies::new("gw");
        let (id, rx) = r.register().unwrap();
        assert!(id.starts_with("gw-"));
        assert!(r.resolve(&id, Bytes::from_static(b"x")));
        assert!(
            !r.resolve(&id, Bytes::from_static(b"y")),
            "a duplicate reply is dropped"
        );
        assert_eq!(rx.await.unwrap(), "x");
        let (id, _rx) = r.register().unwrap();
        r.forget(&id);
        assert!(!r.resolve(&id, Bytes::new()));
    }
}
