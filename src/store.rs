//! Opening the store a core is configured with (`[core.store]`).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use postmesh_core::store::embedded::{EmbeddedOptions, EmbeddedStore};
use postmesh_core::{Store, retention};

use crate::config::{CoreConfig, StoreKind};

/// Opens the store of `config.store` (the embedded one in `data/store`)
/// and applies the configured retentions to it.
pub async fn open_store(config: &CoreConfig, data: &Path) -> anyhow::Result<Arc<dyn Store>> {
    let store: Arc<dyn Store> = match config.store.kind {
        StoreKind::Embedded => {
            let dir = data.join("store");
            Arc::new(
                EmbeddedStore::open(
                    &dir,
                    EmbeddedOptions {
                        sync: config.sync,
                        cache_bytes: config.cache_mb << 20,
                        clock_offset_ms: config.clock_offset_ms,
                        ..EmbeddedOptions::default()
                    },
                )
                .with_context(|| format!("opening the store in {}", dir.display()))?,
            )
        }
        StoreKind::Cql => bail!("the CQL store (`[core.store] kind = \"cql\"`) is not built yet"),
    };
    if let Err(e) = retention::apply(store.as_ref(), &config.retention()).await {
        store.close().await;
        return Err(e).context("applying retention");
    }
    Ok(store)
}
