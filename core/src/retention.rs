//! Per-category retention: configured TTLs are written to the store at
//! start-up, and a sweeper deletes expired messages periodically. Queries
//! never return expired messages, swept or not (the store's contract), so
//! the sweep interval only bounds disk use, not correctness.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::{Store, StoreError};

/// Writes the configured retentions to the store.
pub async fn apply(
    store: &dyn Store,
    retention: &HashMap<String, Duration>,
) -> Result<(), StoreError> {
    for (category, ttl) in retention {
        store.set_retention(category.clone(), Some(*ttl)).await?;
    }
    Ok(())
}

/// Sweeps every `interval` until `cancel`. Run it on a task shutdown waits
/// for before it closes the store. Cancelled mid-sweep, it returns at once;
/// the sweep already handed to the store's writer finishes there, and
/// closing the store waits for it.
pub async fn sweeper(store: Arc<dyn Store>, interval: Duration, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {
                match store.sweep().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "retention sweep"),
                    Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
                }
            }
        }
    }
}
