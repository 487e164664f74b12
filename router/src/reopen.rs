//! Opening a queue that must outlive broker outages: declare it, bind it,
//! consume it, and start over with backoff when any step fails. Gateways
//! (their hub queue) and cores (their service queues) both do this after
//! every lost connection, so it is written once, here.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::postoffice::{Consumer, Exchange, Postoffice, PostofficeError, QueueSpec};

/// Declares `spec`, runs `setup` (its bindings, and whatever must happen
/// between binding and the first delivery), then consumes it with
/// `prefetch`. Any failure starts over after a backoff of at most
/// `max_delay`, until it works or `cancel` (then `None`). Every step is
/// idempotent, so starting over is safe.
pub async fn open<F, Fut>(
    postoffice: &dyn Postoffice,
    spec: &QueueSpec,
    prefetch: u16,
    max_delay: Duration,
    cancel: &CancellationToken,
    mut setup: F,
) -> Option<Consumer>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), PostofficeError>>,
{
    let mut backoff = Backoff::new(max_delay);
    loop {
        if cancel.is_cancelled() {
            return None;
        }
        let attempt = async {
            postoffice.declare_queue(spec).await?;
            setup().await?;
            postoffice.consume(&spec.name, prefetch).await
        };
        match attempt.await {
            Ok(consumer) => return Some(consumer),
            Err(e) => tracing::debug!(queue = %spec.name, error = %e, "queue not ready"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// A `setup` for [`open`] that binds `patterns` on `exchange`.
pub async fn bind_all(
    postoffice: &dyn Postoffice,
    exchange: Exchange,
    queue: &str,
    patterns: &[String],
) -> Result<(), PostofficeError> {
    for p in patterns {
        postoffice.bind(exchange, queue, p).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::memory::MemoryPostoffice;
    use crate::postoffice::{Outgoing, Properties};

    /// A setup that fails twice is retried until it works; the queue then
    /// receives what its bindings route.
    #[tokio::test]
    async fn retries_until_setup_succeeds() {
        let po = MemoryPostoffice::new();
        let spec = QueueSpec::transient("q");
        let tries = Arc::new(AtomicUsize::new(0));
        let cancel = CancellationToken::new();
        let patterns = vec!["a.#".to_owned()];
        let mut consumer = open(&po, &spec, 8, Duration::from_millis(20), &cancel, || {
            let tries = tries.clone();
            let po = &po;
            let patterns = &patterns;
            async move {
                if tries.fetch_add(1, Ordering::Relaxed) < 2 {
                    return Err(PostofficeError::Connection("not yet".into()));
                }
                bind_all(po, Exchange::Paths, "q", patterns).await
            }
        })
        .await
        .expect("opened");
        assert_eq!(tries.load(Ordering::Relaxed), 3);
        po.publish(
            Exchange::Paths,
            Outgoing {
                routing_key: "a.b".into(),
                payload: bytes::Bytes::from_static(b"x"),
                props: Properties::default(),
            },
        )
        .await
        .unwrap();
        let d = consumer.next().await.unwrap();
        assert_eq!(d.payload, "x");
    }

    /// Cancelled while failing: gives up with `None` instead of retrying
    /// for ever.
    #[tokio::test]
    async fn cancel_ends_the_retries() {
        let po = MemoryPostoffice::new();
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        let opened = open(
            &po,
            &QueueSpec::transient("q"),
            8,
            Duration::from_millis(20),
            &cancel,
            move || {
                c.cancel();
                async { Err(PostofficeError::Connection("down".into())) }
            },
        )
        .await;
        assert!(opened.is_none());
    }
}
