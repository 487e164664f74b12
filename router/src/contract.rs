//! The postoffice contract suite. Every [`Postoffice`] implementation runs
//! [`run_all`]; a failing check panics with what broke. Queue names start
//! with a caller-chosen prefix so that suites can share one broker.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::timeout;

use crate::postoffice::{
    Consumer, Delivery, Exchange, Outgoing, Overflow, Postoffice, PostofficeError, Properties,
    QueueSpec,
};

/// How long a delivery that should arrive may take.
const ARRIVE: Duration = Duration::from_secs(5);
/// How long to wait before concluding that nothing more will arrive.
const QUIET: Duration = Duration::from_millis(300);

fn out(key: &str, body: &str) -> Outgoing {
    Outgoing {
        routing_key: key.to_owned(),
        payload: Bytes::copy_from_slice(body.as_bytes()),
        props: Properties {
            message_id: Some(body.to_owned()),
            cursor: Some(format!("at-{body}")),
            ..Properties::default()
        },
    }
}

async fn recv(c: &mut Consumer) -> Delivery {
    timeout(ARRIVE, c.next())
        .await
        .expect("a delivery should have arrived")
        .expect("consumer ended unexpectedly")
}

async fn quiet(c: &mut Consumer) {
    if let Ok(Some(d)) = timeout(QUIET, c.next()).await {
        panic!("unexpected delivery {:?} {:?}", d.routing_key, d.payload);
    }
}

async fn queue<P: Postoffice + ?Sized>(po: &P, name: &str, patterns: &[&str]) -> Consumer {
    po.declare_queue(&QueueSpec::transient(name)).await.unwrap();
    for p in patterns {
        po.bind(Exchange::Paths, name, p).await.unwrap();
    }
    po.consume(name, 100).await.unwrap()
}

/// Runs every check.
pub async fn run_all<P: Postoffice + ?Sized>(po: &P, prefix: &str) {
    topic_routing(po, prefix).await;
    one_copy_per_queue(po, prefix).await;
    exchanges_are_separate(po, prefix).await;
    unbind_stops_delivery(po, prefix).await;
    unacked_is_redelivered(po, prefix).await;
    nack(po, prefix).await;
    competing_consumers(po, prefix).await;
    prefetch_limits_unacked(po, prefix).await;
    ordering(po, prefix).await;
    drop_head(po, prefix).await;
    reject_publish(po, prefix).await;
    topology_is_idempotent(po, prefix).await;
    delete_ends_consumers(po, prefix).await;
    message_ttl(po, prefix).await;
    message_expiration(po, prefix).await;
}

/// `#` matches zero words, `*` exactly one.
pub async fn topic_routing<P: Postoffice + ?Sized>(po: &P, prefix: &str) {
    let mut hash = queue(
        po,
        &format!("{prefix}.routing.hash"),
        &[&format!("{prefix}.feeds.#")],
    )
    .await;
    let mut star = queue(
        po,
        &format!("{prefix}.routing.star"),
        &[&format!("{prefix}.feeds.*")],
    )
    .await;
    po.publish(Exchange::Paths, out(&format!("{prefix}.feeds"), "1"))
        .await
        .unwrap();
    po.publish(Exchange::Paths, out(&format!("{prefix}.feeds.a"), "2"))
        .await
        .unwrap();
    po.publish(Exchange::Paths, out(&format!("{prefix}.feeds.a.b"), "3"))
        .await
        .unwrap();
    po.publish(Exchange::Paths, out(&format!("{prefix}.other"), "4"))
        .await
        .unwrap();
    for want in ["1", "2", "3"] {
        let d = recv(&mut hash).await;
        assert_eq!(d.payload, want.as_bytes());
        d.ack().await.unwrap();
    }
    let d = recv(&mut star).await;
    assert_eq!(d.payload, "2".as_bytes());
    assert_eq!(d.routing_key, format!("{prefix}.feeds.a"));
    assert_eq!(d.props.message_id.as_deref(), Some("2"));
    assert_eq!(
        d.props.cursor.as_deref(),
        Some("at-2"),
        "the cursor travels"
    );
    assert!(!d.redelivered);
    d.ack().await.unwrap();
    quiet(&mut hash).await;
    quiet(&mut star).await;
    cleanup(
        po,
        &[
            &format!("{prefix}.routing.hash"),
            &format!("{prefix}.routing.star"),
        ],
    )
    .await;
}

/// Several matching bindings on one queue still deliver one copy.
pub async fn one_copy_per_queue<P: Postoffice + ?Sized>(po: &P, prefix: &str) {
    let name = format!("{prefix}.onecopy");
    let mut c = queue(
        po,
        &name,
        &[&format!("{prefix}.a.#"), &format!("{prefix}.*.b"), "#"],
    )
    .await;
    po.publish(Exchange::Paths, out(&format!("{prefix}.a.b"), "x"))
        .await
        .unwrap();
    recv(&mut c).await.ack().await.unwrap();
    quiet(&mut c).await;
    cleanup(po, &[&name]).await;
}

/// A binding on one exchange does not see the other's messages.
pub async fn exchanges_are_separate<P: Postoffice + ?Sized>(po: &P, prefix: &str) {
    let name = format!("{prefix}.exchanges");
    po.declare_queue(&QueueSpec::transient(&name))
        .await
        .unwrap();
    po.bind(Exchange::Postoffice, &name, &format!("{prefix}.#"))
        .await
        .unwrap();
    let mut c = po.consume(&name, 10).await.unwrap();
    po.publish(Exchange::Paths, out(&format!("{prefix}.x"), "paths"))
        .await
        .unwrap();
    po.publish(Exchange::Postoffice, out(&format!("{prefix}.x"), "po"))
        .await
        .unwrap();
    let d = recv(&mut c).await;
    assert_eq!(d.payload, "po".as_bytes());
    d.ack().await.unwrap();
    quiet(&mut c).await;
    cleanup(po, &[&name]).await;
}

/// After unbind, nothing more arrives; the unroutable publish is `Ok`.
pub async fn unbind_stops_delivery<P: Postoffice + ?Sized>(po: &P, prefix: &str) {
    let name = format!("{prefix}.unbind");
    let pattern = format!("{prefix}.u.#");
    let mut c = queue(po, &name, &[&pattern]).await;
    po.publish(Exchange::Paths, out(&format!("{prefix}.u.1"), "1"))
        .await
        .unwrap();
    recv(&mut c).await.ack().await.unwrap();
    po.unbind(Exchange::Paths, &name, &pattern).await.unwrap();
    po.publish(Exchange::Paths, out(&format!("{prefix}.u.2"), "2"))
        .await
        .unwrap();
    quiet(&mut c).await;
    cleanup(po, &[&name]).await;
}

/// Dropping a delivery unacked puts it back, marked redelivered.
pub async fn unacked_is_redelivered<P: Postoffice + ?Sized>(po: &P, prefix: &str) {
    let name = format!("{prefix}.redeliver");
    let mut c = queue(po, &name, &[&format!("{prefix}.r")]).await;
    po.publish(Exchange::Paths, out(&format!("{prefix}.r"), "once"))
        .await
        .unwrap();
    let d = recv(&mut c).await;
    assert!(!d.redelivered);
    drop(d);
    let d = recv(&mut c).await;
    assert_eq!(d.payload, "once".as_bytes());
    assert!(d.redelivered);
    d.ack().await.unwrap();
    quiet(&mut c).await;
    // A consumer that goes away returns its unacked deliveries too.
    po.publish(Exchange::Paths, out(&format!("{prefix}.r"), "twice"))
        .await
        .unwrap();
    let d = recv(&mut c).await;
    drop(c);
    drop(d);
    let mut c2 = po.consume(&name, 10).await.unwrap();
    let d = recv(&mut c2).await;
    assert_eq!(d.payload, "twice".as_bytes());
    assert!(d.redelivered);
    d.ack().await.unwrap();
    cleanup(po, &[&name]).await;
}

/// nack with requeue redelivers; without, discards.
pub async fn nack<P: Postoffice + ?Sized>(po: &P, prefix: &str) {
    let name = format!("{prefix}.nack");
    let mut c = queue(po, &name, &[&format!("{prefix}.n")]).await;
    po.publish(Exchange::Paths, out(&format!("{prefix}.n"), "n"))
        .await
        .unwrap();
    recv(&mut c).await.nack(true).await.unwrap();
    let d = recv(&mut c).await;
    assert!(d.redelivered);
    d.nack(false).await.unwrap();
    quiet(&mut c).await;
    cleanup(po, &[&name]).await;
}

/// Two consumers of one queue split its messages, each delivered once.
pub async fn competing_consumers<P: Postoffice + ?Sized>(po: &P, prefix: &str) {
    let name = format!("{prefix}.compete");
    let mut a = queue(po, &name, &[&format!("{prefix}.c")]).await;
    let mut b = po.consume(&name, 1).await.unwrap();
    let n = 20;
    for i in 0..n {
        po.publish(Exchange::Paths, out(&format!("{prefix}.c"), &i.to_string()))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    // `b` has prefetch 1, so it takes at most one at a time; `a` the rest.
    while seen.len() < n {
        tokio::select! {
            Some(d) = a.next() => { seen.push(d.payload.clone()); d.ack().await.unwrap(); }
            Some(d) = b.next() => { seen.push(d.payload.clone()); d.ack().await.unwrap(); }
            _ = tokio::time::sleep(ARRIVE) => panic!("only {} of {n} arrived", seen.len()),
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), n, "each message exactly once");
    quiet(&mut a).await;
    cleanup(po, &[&name]).await;
}

/// A consumer with prefetch 2 holds at most 2 unacked deliveries.
pub async fn prefetch_limits_unacked<P: Postoffice + ?Sized>(po: &P, prefix: &str) {
    let name = format!("{prefix}.prefetch");
    po.declare_queue(&QueueSpec::transient(&name))
        .await
        .unwrap();
    po.bind(Exchange::Paths, &name, &format!("{prefix}.p"))
        .await
        .unwrap();
    let mut c = po.consume(&name, 2).await.unwrap();
    for i in 0..3 {
        po.publish(Exchange::Paths, out(&format!("{prefix}.p"), &i.to_string()))
            .await
            .unwrap();
    }
    let d0 = recv(&mut c).await;
    let d1 = recv(&mut c).await;
    assert!(
        timeout(QUIET, c.next()).await.is_err(),
        "a third unacked delivery exceeds prefetch"
    );
    d0.ack().await.unwrap();
    let d2 = recv(&mut c).await;
    assert_eq!(d2.payload, "2".as_bytes());
    d1.ack().await.unwrap();
    d2.ack().await.unwrap();
    cleanup(po, &[&name]).await;
}

/// One publisher's messages arrive in order.
pub async fn ordering<P: Postoffice + ?Sized>(po: &P, prefix: &str) {
    let name = format!("{prefix}.order");
    let mut c = queue(po, &name, &[&format!("{prefix}.o.#")]).await;
    for i in 0..200 {
        po.publish(
            Exchange::Paths,
            out(&format!("{prefix}.o.{}", i % 7), &i.to_string()),
        )
        .await
        .unwrap();
    }
    // publish_all keeps the order among its messages and after the ones
    // published before.
    let batch = (200..400)
        .map(|i| out(&format!("{prefix}.o.{}", i % 7), &i.to_string()))
        .collect();
    po.publish_all(Exchange::Paths, batch).await.unwrap();
    for i in 0..400 {
        let d = recv(&mut c).await;
        assert_eq!(d.payload, i.to_string().as_bytes());
        d.ack().await.unwrap();
    }
    cleanup(po, &[&name]).await;
}

/// `max_len` with drop-head keeps the newest messages.
pub async fn drop_head<P: Postoffice + ?Sized>(po: &P, prefix: &str) {
    let name = format!("{prefix}.drophead");
    let spec = QueueSpec {
        max_len: Some(3),
        overflow: Overflow::DropHead,
        ..QueueSpec::transient(&name)
    };
    po.declare_queue(&spec).await.unwrap();
    po.bind(Exchange::Paths, &name, &format!("{prefix}.d"))
        .await
        .unwrap();
    for i in 0..5 {
        po.publish(Exchange::Paths, out(&format!("{prefix}.d"), &i.to_string()))
            .await
            .unwrap();
    }
    let mut c = po.consume(&name, 10).await.unwrap();
    for want in ["2", "3", "4"] {
        let d = recv(&mut c).await;
        assert_eq!(d.payload, want.as_bytes());
        d.ack().await.unwrap();
    }
    quiet(&mut c).await;
    cleanup(po, &[&name]).await;
}

/// `max_len` with reject-publish refuses the publish.
pub async fn reject_publish<P: Postoffice + ?Sized>(po: &P, prefix: &str) {
    let name = format!("{prefix}.reject");
    let spec = QueueSpec {
        max_len: Some(2),
        overflow: Overflow::RejectPublish,
        ..QueueSpec::transient(&name)
    };
    po.declare_queue(&spec).await.unwrap();
    po.bind(Exchange::Paths, &name, &format!("{prefix}.j"))
        .await
        .unwrap();
    po.publish(Exchange::Paths, out(&format!("{prefix}.j"), "0"))
        .await
        .unwrap();
    po.publish(Exchange::Paths, out(&format!("{prefix}.j"), "1"))
        .await
        .unwrap();
    let e = po
        .publish(Exchange::Paths, out(&format!("{prefix}.j"), "2"))
        .await
        .unwrap_err();
    assert!(matches!(e, PostofficeError::Rejected(_)), "{e:?}");
    assert!(e.is_retryable());
    cleanup(po, &[&name]).await;
}

/// Declaring and binding twice is harmless; unbinding nothing is `Ok`;
/// a different spec for an existing queue and a binding to a missing queue
/// are refused.
pub async fn topology_is_idempotent<P: Postoffice + ?Sized>(po: &P, prefix: &str) {
    let name = format!("{prefix}.idem");
    let spec = QueueSpec::transient(&name);
    po.declare_queue(&spec).await.unwrap();
    po.declare_queue(&spec).await.unwrap();
    let pattern = format!("{prefix}.i");
    po.bind(Exchange::Paths, &name, &pattern).await.unwrap();
    po.bind(Exchange::Paths, &name, &pattern).await.unwrap();
    po.unbind(Exchange::Paths, &name, &format!("{prefix}.never"))
        .await
        .unwrap();
    let mut c = po.consume(&name, 10).await.unwrap();
    po.publish(Exchange::Paths, out(&pattern, "i"))
        .await
        .unwrap();
    recv(&mut c).await.ack().await.unwrap();
    quiet(&mut c).await;
    let other = QueueSpec {
        max_len: Some(7),
        ..spec.clone()
    };
    assert!(matches!(
        po.declare_queue(&other).await,
        Err(PostofficeError::SpecMismatch(_))
    ));
    assert!(matches!(
        po.bind(Exchange::Paths, &format!("{prefix}.missing"), "x")
            .await,
        Err(PostofficeError::NoSuchQueue(_))
    ));
    drop(c);
    cleanup(po, &[&name]).await;
    po.delete_queue(&name).await.unwrap();
}

/// Deleting a queue ends its consumers.
pub async fn delete_ends_consumers<P: Postoffice + ?Sized>(po: &P, prefix: &str) {
    let name = format!("{prefix}.delete");
    let mut c = queue(po, &name, &[&format!("{prefix}.x")]).await;
    po.delete_queue(&name).await.unwrap();
    let ended = timeout(ARRIVE, c.next())
        .await
        .expect("consumer should end");
    assert!(ended.is_none());
}

/// Messages older than the queue's TTL are not delivered.
pub async fn message_ttl<P: Postoffice + ?Sized>(po: &P, prefix: &str) {
    let name = format!("{prefix}.ttl");
    let spec = QueueSpec {
        message_ttl: Some(Duration::from_millis(100)),
        ..QueueSpec::transient(&name)
    };
    po.declare_queue(&spec).await.unwrap();
    po.bind(Exchange::Paths, &name, &format!("{prefix}.t"))
        .await
        .unwrap();
    po.publish(Exchange::Paths, out(&format!("{prefix}.t"), "old"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    po.publish(Exchange::Paths, out(&format!("{prefix}.t"), "new"))
        .await
        .unwrap();
    let mut c = po.consume(&name, 10).await.unwrap();
    let d = recv(&mut c).await;
    assert_eq!(d.payload, "new".as_bytes());
    d.ack().await.unwrap();
    cleanup(po, &[&name]).await;
}

/// A message whose own expiration has passed is not delivered, on a queue
/// without a TTL; one without an expiration waits; the expiration is
/// delivered with the message.
pub async fn message_expiration<P: Postoffice + ?Sized>(po: &P, prefix: &str) {
    let name = format!("{prefix}.expiration");
    po.declare_queue(&QueueSpec::transient(&name))
        .await
        .unwrap();
    po.bind(Exchange::Paths, &name, &format!("{prefix}.e"))
        .await
        .unwrap();
    let expiring = |payload: &str, ttl: Duration| {
        let mut o = out(&format!("{prefix}.e"), payload);
        o.props.expiration = Some(ttl);
        o
    };
    po.publish(
        Exchange::Paths,
        expiring("stale", Duration::from_millis(100)),
    )
    .await
    .unwrap();
    po.publish(Exchange::Paths, out(&format!("{prefix}.e"), "kept"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    po.publish(Exchange::Paths, expiring("fresh", Duration::from_secs(60)))
        .await
        .unwrap();
    let mut c = po.consume(&name, 10).await.unwrap();
    let kept = recv(&mut c).await;
    assert_eq!(kept.payload, "kept".as_bytes());
    kept.ack().await.unwrap();
    let fresh = recv(&mut c).await;
    assert_eq!(fresh.payload, "fresh".as_bytes());
    assert_eq!(fresh.props.expiration, Some(Duration::from_secs(60)));
    fresh.ack().await.unwrap();
    cleanup(po, &[&name]).await;
}

async fn cleanup<P: Postoffice + ?Sized>(po: &P, names: &[&str]) {
    for n in names {
        po.delete_queue(n).await.unwrap();
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_postoffice_keeps_the_contract() {
        let po = crate::MemoryPostoffice::new();
        super::run_all(&po, "contract").await;
        assert_eq!(
            po.binding_count(crate::Exchange::Paths),
            0,
            "cleanup removed every binding"
        );
    }
}
