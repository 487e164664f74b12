//! Opening the store a core is configured with (`[core.store]`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use postmesh_core::store::cql::{Consistency, CqlOptions, CqlStore};
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
        StoreKind::Cql => {
            let c = &config.store;
            if c.hosts.is_empty() {
                bail!(
                    "[core.store] kind = \"cql\" needs hosts (or --store cql://host:port/keyspace)"
                );
            }
            Arc::new(
                CqlStore::open(CqlOptions {
                    hosts: c.hosts.iter().map(|h| with_port(h)).collect(),
                    keyspace: c.keyspace.clone(),
                    consistency: consistency(&c.consistency)?,
                    bucket: Duration::from_secs(c.bucket_secs.max(1)),
                    clock_offset_ms: config.clock_offset_ms,
                    ..CqlOptions::default()
                })
                .await
                .context("opening the CQL store")?,
            )
        }
    };
    if let Err(e) = retention::apply(store.as_ref(), &config.retention()).await {
        store.close().await;
        return Err(e).context("applying retention");
    }
    Ok(store)
}

/// `host` with CQL's default port when it has none.
pub fn with_port(host: &str) -> String {
    if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host.to_owned()
    } else {
        format!("{host}:9042")
    }
}

/// A consistency level by its CQL name.
pub fn consistency(name: &str) -> anyhow::Result<Consistency> {
    Ok(match name.to_ascii_uppercase().as_str() {
        "LOCAL_QUORUM" => Consistency::LocalQuorum,
        "QUORUM" => Consistency::Quorum,
        "EACH_QUORUM" => Consistency::EachQuorum,
        "LOCAL_ONE" => Consistency::LocalOne,
        "ONE" => Consistency::One,
        "ALL" => Consistency::All,
        other => bail!(
            "[core.store] consistency {other:?}: expected LOCAL_QUORUM, QUORUM, EACH_QUORUM, LOCAL_ONE, ONE or ALL"
        ),
    })
}

/// `postmesh schema apply`: creates the keyspace if needed and applies the
/// schema versions it lacks; returns the version it is at.
pub async fn schema_apply(
    hosts: &[String],
    keyspace: &str,
    replication: &str,
) -> anyhow::Result<i32> {
    let session = postmesh_core::store::cql::connect(hosts).await?;
    Ok(postmesh_core::store::cql::schema::apply(&session, keyspace, replication).await?)
}
