//! Opening the store a core is configured with (`[core.store]`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use postmesh_core::store::cql::{CategoryLayout, Consistency, CqlOptions, CqlStore, Speculative};
use postmesh_core::store::embedded::{EmbeddedOptions, EmbeddedStore};
use postmesh_core::store::{Measured, StoreMetrics};
use postmesh_core::{Store, retention};
use prometheus_client::registry::Registry;

use crate::config::{CoreConfig, StoreKind};

/// Opens the store of `config.store` (the embedded one in `data/store`)
/// and applies the configured retentions to it.
///
/// The store is measured ([`Measured`]): every operation's latency and
/// errors go to `registry` as `postmesh_store_*`, whatever the engine.
pub async fn open_store(
    config: &CoreConfig,
    data: &Path,
    registry: &mut Registry,
) -> anyhow::Result<Arc<dyn Store>> {
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
                CqlStore::open(cql_options(config)?)
                    .await
                    .context("opening the CQL store")?,
            )
        }
    };
    let store: Arc<dyn Store> = Arc::new(Measured::new(store, StoreMetrics::register(registry)));
    if let Err(e) = retention::apply(store.as_ref(), &config.retention()).await {
        store.close().await;
        return Err(e).context("applying retention");
    }
    Ok(store)
}

/// The CQL store's options from `[core.store]`.
pub fn cql_options(config: &CoreConfig) -> anyhow::Result<CqlOptions> {
    let c = &config.store;
    let level = |key: &str, v: &Option<String>| {
        consistency(v.as_deref().unwrap_or(&c.consistency))
            .with_context(|| format!("[core.store] {key}"))
    };
    let mut categories = HashMap::new();
    for name in c
        .category_bucket_secs
        .keys()
        .chain(c.min_index_depth.keys())
    {
        if name.is_empty() || name.contains(['.', '*', '#']) {
            bail!("[core.store] category {name:?}: not a category (one path element)");
        }
        let secs = c
            .category_bucket_secs
            .get(name)
            .copied()
            .unwrap_or(c.bucket_secs);
        if secs == 0 {
            bail!("[core.store] category_bucket_secs.{name}: must be at least 1");
        }
        categories.insert(
            name.clone(),
            CategoryLayout {
                bucket: Duration::from_secs(secs),
                min_index_depth: c.min_index_depth.get(name).copied().unwrap_or(0),
            },
        );
    }
    if c.bucket_secs == 0 {
        bail!("[core.store] bucket_secs: must be at least 1");
    }
    Ok(CqlOptions {
        hosts: c.hosts.iter().map(|h| with_port(h)).collect(),
        keyspace: c.keyspace.clone(),
        read_consistency: level("read_consistency", &c.read_consistency)?,
        write_consistency: level("write_consistency", &c.write_consistency)?,
        speculative_read: (c.speculative_reads > 0).then(|| Speculative {
            max_extra: c.speculative_reads,
            delay: Duration::from_millis(c.speculative_delay_ms),
        }),
        local_datacenter: c.local_datacenter.clone().filter(|d| !d.is_empty()),
        bucket: Duration::from_secs(c.bucket_secs),
        categories,
        clock_offset_ms: config.clock_offset_ms,
        ..CqlOptions::default()
    })
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
        "TWO" => Consistency::Two,
        "THREE" => Consistency::Three,
        "ALL" => Consistency::All,
        other => bail!(
            "{other:?}: expected LOCAL_QUORUM, QUORUM, EACH_QUORUM, LOCAL_ONE, ONE, TWO, THREE or ALL"
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

#[cfg(test)]
mod tests {
    use super::*;

    fn core(toml: &str) -> CoreConfig {
        let file = std::env::temp_dir().join(format!(
            "postmesh-store-config-{}-{:x}.toml",
            std::process::id(),
            toml.len() * 31 + toml.bytes().map(usize::from).sum::<usize>()
        ));
        std::fs::write(&file, toml).unwrap();
        let core = crate::config::load(Some(&file), serde_json::json!({}))
            .unwrap()
            .core;
        let _ = std::fs::remove_file(&file);
        core
    }

    #[test]
    fn cql_options_from_the_store_section() {
        let c = core(
            "[core.store]\nkind = \"cql\"\nhosts = [\"h\"]\nconsistency = \"quorum\"\n\
             write_consistency = \"ALL\"\nspeculative_reads = 2\nspeculative_delay_ms = 30\n\
             local_datacenter = \"eu\"\nbucket_secs = 60\n\
             category_bucket_secs = { feeds = 600 }\nmin_index_depth = { id = 2 }\n",
        );
        let o = cql_options(&c).unwrap();
        assert_eq!(o.hosts, ["h:9042"]);
        assert_eq!(o.read_consistency, Consistency::Quorum);
        assert_eq!(o.write_consistency, Consistency::All);
        assert_eq!(
            o.speculative_read,
            Some(Speculative {
                max_extra: 2,
                delay: Duration::from_millis(30)
            })
        );
        assert_eq!(o.local_datacenter.as_deref(), Some("eu"));
        assert_eq!(o.bucket, Duration::from_secs(60));
        assert_eq!(
            o.categories["feeds"],
            CategoryLayout {
                bucket: Duration::from_secs(600),
                min_index_depth: 0
            }
        );
        assert_eq!(
            o.categories["id"],
            CategoryLayout {
                bucket: Duration::from_secs(60),
                min_index_depth: 2
            },
            "the default window where none is named"
        );
        let defaults = cql_options(&core("[core.store]\nkind = \"cql\"\n")).unwrap();
        assert_eq!(defaults.read_consistency, Consistency::LocalQuorum);
        assert_eq!(defaults.write_consistency, Consistency::LocalQuorum);
        assert!(defaults.speculative_read.is_some());
        assert_eq!(defaults.local_datacenter, None);
        let off = cql_options(&core("[core.store]\nspeculative_reads = 0\n")).unwrap();
        assert_eq!(off.speculative_read, None);
        for bad in [
            "[core.store]\nread_consistency = \"SOME\"\n",
            "[core.store]\ncategory_bucket_secs = { feeds = 0 }\n",
            "[core.store]\nmin_index_depth = { \"a.b\" = 1 }\n",
        ] {
            let e = cql_options(&core(bad)).unwrap_err();
            assert!(format!("{e:#}").contains("[core.store]"), "{bad}: {e:#}");
        }
    }
}
