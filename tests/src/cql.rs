//! The Cassandra node the CQL tests use: one per test run, started by
//! `deploy/test.sh` (through `deploy/cassandra.sh start`), which exports
//! its address as `POSTMESH_CQL`. Each test binary works in a fresh
//! keyspace of its own, dropped at the end.
//!
//! A CQL test without a node fails: it is never skipped.

use std::sync::Arc;

use postmesh_core::store::cql::{self, CqlOptions, CqlStore};

/// The node's address, `host:port`, from `POSTMESH_CQL`.
pub fn node() -> String {
    match std::env::var("POSTMESH_CQL") {
        Ok(a) if !a.is_empty() => a,
        _ => panic!(
            "POSTMESH_CQL is not set: the CQL tests need a Cassandra node. \
             Run them through deploy/test.sh, or start one with \
             `deploy/cassandra.sh start` and export the POSTMESH_CQL=host:port it prints"
        ),
    }
}

/// A fresh keyspace on the node, with the schema applied; dropped by
/// [`Keyspace::drop_now`].
pub struct Keyspace {
    pub name: String,
    pub hosts: Vec<String>,
}

impl Keyspace {
    /// `prefix` names the test binary; the process id makes it fresh.
    pub async fn fresh(prefix: &str) -> Keyspace {
        let hosts = vec![node()];
        let name = format!("t_{prefix}_{}", std::process::id());
        let session = cql::connect(&hosts).await.expect("the CQL node answers");
        session
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {name}"), ())
            .await
            .expect("dropping an old keyspace");
        cql::schema::apply(
            &session,
            &name,
            "{'class': 'SimpleStrategy', 'replication_factor': 1}",
        )
        .await
        .expect("applying the schema");
        Keyspace { name, hosts }
    }

    /// A store on this keyspace.
    pub async fn store(&self) -> Arc<CqlStore> {
        Arc::new(
            CqlStore::open(CqlOptions {
                hosts: self.hosts.clone(),
                keyspace: self.name.clone(),
                ..CqlOptions::default()
            })
            .await
            .expect("opening the CQL store"),
        )
    }

    /// Drops the keyspace.
    pub async fn drop_now(self) {
        let session = cql::connect(&self.hosts)
            .await
            .expect("the CQL node answers");
        session
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", self.name), ())
            .await
            .expect("dropping the keyspace");
    }
}
