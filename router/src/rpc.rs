//! Asynchronous RPC over the postoffice. A request is published to
//! `<action>.<requester>.<service address>` with a correlation id and the
//! requester's address in `reply_to`; the reply comes back to
//! `reply.<replier>.<requester>` with the same correlation id, on the
//! requester's own queue (bound with [`Address::unique_binding`]).
//! [`RpcClient`] sends requests and matches replies to them; [`Replies`]
//! is its table of requests in flight.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use postmesh_schema::{Address, AddressError, RoutingKey};
use tokio::sync::oneshot;

use crate::postoffice::{Delivery, Exchange, Outgoing, Postoffice, PostofficeError, Properties};

/// Most requests waiting for a reply at once; more are refused rather than
/// queued without bound.
pub const MAX_PENDING: usize = 100_000;

/// The action of every reply, and the `kind` property that marks one.
pub const REPLY: &str = "reply";

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

/// Why a request got no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    #[error("too many requests waiting for replies")]
    Busy,
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Postoffice(#[from] PostofficeError),
    #[error("bad request address: {0}")]
    Address(#[from] AddressError),
}

impl RpcError {
    /// Whether sending the request again later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            RpcError::Busy | RpcError::Timeout(_) => true,
            RpcError::Postoffice(e) => e.is_retryable(),
            RpcError::Address(_) => false,
        }
    }
}

/// How a request travels.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestOptions {
    /// 0..=9, on queues with priorities.
    pub priority: Option<u8>,
    /// Written to disk by a broker.
    pub persistent: bool,
}

/// Sends requests from one service instance and matches the replies that
/// reach its queue. The queue's consumer hands every delivery to
/// [`RpcClient::take_reply`] first.
pub struct RpcClient {
    postoffice: Arc<dyn Postoffice>,
    me: Address,
    replies: Replies,
}

impl RpcClient {
    /// A client whose replies come to `me`; its queue must be bound with
    /// [`RpcClient::binding`] on the postoffice exchange.
    pub fn new(postoffice: Arc<dyn Postoffice>, me: Address) -> RpcClient {
        RpcClient {
            replies: Replies::new(&me.to_string()),
            postoffice,
            me,
        }
    }

    /// The requester's address.
    pub fn address(&self) -> &Address {
        &self.me
    }

    /// The binding on the postoffice exchange that brings replies to `me`.
    pub fn binding(&self) -> String {
        self.me.unique_binding()
    }

    /// Resolves `delivery` if it is a reply (then the caller acks it, and
    /// delivers it nowhere else): `true`. A late or duplicate reply is
    /// taken and dropped too.
    pub fn take_reply(&self, delivery: &Delivery) -> bool {
        if delivery.props.kind.as_deref() != Some(REPLY) {
            return false;
        }
        if let Some(id) = &delivery.props.correlation_id {
            self.replies.resolve(id, delivery.payload.clone());
        }
        true
    }

    /// Publishes `action` to `to` and waits up to `timeout` for the first
    /// reply (a request several services answer, such as one to every core,
    /// resolves with the fastest; later replies are dropped).
    pub async fn call(
        &self,
        action: &str,
        to: &Address,
        payload: Bytes,
        options: RequestOptions,
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        let key = RoutingKey::new(action, self.me.clone(), to.clone())?.to_string();
        let (id, rx) = self.replies.register().ok_or(RpcError::Busy)?;
        let out = Outgoing {
            routing_key: key,
            payload,
            props: Properties {
                correlation_id: Some(id.clone()),
                reply_to: Some(self.me.to_string()),
                kind: Some(action.to_owned()),
                priority: options.priority,
                persistent: options.persistent,
                ..Properties::default()
            },
        };
        if let Err(e) = self.postoffice.publish(Exchange::Postoffice, out).await {
            self.replies.forget(&id);
            return Err(e.into());
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            _ => {
                self.replies.forget(&id);
                Err(RpcError::Timeout(timeout))
            }
        }
    }
}

/// The reply to `request`, from `replier`: `None` when the request asked
/// for none (no `reply_to` or correlation id) or its `reply_to` is not an
/// address.
pub fn reply_to(request: &Delivery, replier: &Address, payload: Bytes) -> Option<Outgoing> {
    let (Some(to), Some(id)) = (&request.props.reply_to, &request.props.correlation_id) else {
        return None;
    };
    let to = Address::parse(to).ok()?;
    let key = RoutingKey {
        action: REPLY.into(),
        from: replier.clone(),
        to,
    };
    Some(Outgoing {
        routing_key: key.to_string(),
        payload,
        props: Properties {
            correlation_id: Some(id.clone()),
            kind: Some(REPLY.into()),
            ..Properties::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryPostoffice;
    use crate::postoffice::QueueSpec;

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

    /// A request to a service address reaches the service's queue; its
    /// reply, routed back to the requester's address, resolves the call.
    /// A request nobody answers times out.
    #[tokio::test]
    async fn a_call_gets_its_reply_over_the_postoffice() {
        let po: Arc<dyn Postoffice> = Arc::new(MemoryPostoffice::new());
        let me = Address::parse("east.postmesh.gateway.g1.1").unwrap();
        let client = Arc::new(RpcClient::new(po.clone(), me));
        po.declare_queue(&QueueSpec::transient("gw")).await.unwrap();
        po.bind(Exchange::Postoffice, "gw", &client.binding())
            .await
            .unwrap();
        let service = Address::parse("east.postmesh.echo.e1.1").unwrap();
        po.declare_queue(&QueueSpec::transient("echo"))
            .await
            .unwrap();
        po.bind(
            Exchange::Postoffice,
            "echo",
            &service.service_binding("shout"),
        )
        .await
        .unwrap();
        let mut requests = po.consume("echo", 8).await.unwrap();
        let mut replies = po.consume("gw", 8).await.unwrap();
        let c = client.clone();
        tokio::spawn(async move {
            while let Some(d) = replies.next().await {
                assert!(c.take_reply(&d));
                d.ack().await.unwrap();
            }
        });
        let (po2, svc) = (po.clone(), service.clone());
        tokio::spawn(async move {
            let d = requests.next().await.unwrap();
            let answer = reply_to(&d, &svc, Bytes::from(d.payload.to_ascii_uppercase())).unwrap();
            po2.publish(Exchange::Postoffice, answer).await.unwrap();
            d.ack().await.unwrap();
        });
        let any = Address::any_of("east", "postmesh", "echo").unwrap();
        let reply = client
            .call(
                "shout",
                &any,
                Bytes::from_static(b"hi"),
                RequestOptions::default(),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(reply, "HI");
        let nobody = Address::any_of("west", "postmesh", "echo").unwrap();
        let err = client
            .call(
                "shout",
                &nobody,
                Bytes::new(),
                RequestOptions::default(),
                Duration::from_millis(100),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, RpcError::Timeout(_)) && err.is_retryable());
    }
}
