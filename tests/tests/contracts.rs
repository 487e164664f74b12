//! The engine contracts, run from here against the embedded engines and
//! the CQL store on a real Cassandra node (the RabbitMQ postoffice runs the
//! postoffice suite in `rabbitmq.rs`).

#[tokio::test]
async fn embedded_postoffice_keeps_the_postoffice_contract() {
    let po = postmesh_router::MemoryPostoffice::new();
    postmesh_router::contract::run_all(&po, "it").await;
}

#[tokio::test]
async fn embedded_store_keeps_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = postmesh_core::EmbeddedStore::open(dir.path(), Default::default()).unwrap();
    postmesh_core::store::contract::run_all(&store, "it").await;
}

#[tokio::test]
async fn cql_store_keeps_the_store_contract() {
    let keyspace = postmesh_tests::cql::Keyspace::fresh("contracts").await;
    let store = keyspace.store().await;
    postmesh_core::store::contract::run_all(store.as_ref(), "it").await;
    postmesh_core::Store::close(store.as_ref()).await;
    keyspace.drop_now().await;
}

/// `schema apply` is idempotent, and a keyspace at a newer schema version
/// than this build knows is refused, by `apply` and by the store.
#[tokio::test]
async fn cql_schema_is_versioned() {
    use postmesh_core::store::cql::{self, CqlError, CqlOptions, CqlStore, schema};
    let keyspace = postmesh_tests::cql::Keyspace::fresh("schema").await;
    let session = cql::connect(&keyspace.hosts).await.unwrap();
    let simple = "{'class': 'SimpleStrategy', 'replication_factor': 1}";
    assert_eq!(
        schema::apply(&session, &keyspace.name, simple)
            .await
            .unwrap(),
        schema::VERSION,
        "applied again: nothing to do"
    );
    session
        .query_unpaged(
            format!(
                "UPDATE {}.schema_version SET version = 99 WHERE id = 'postmesh'",
                keyspace.name
            ),
            (),
        )
        .await
        .unwrap();
    let refused = schema::apply(&session, &keyspace.name, simple).await;
    assert!(
        matches!(refused, Err(CqlError::NewerSchema { found: 99, .. })),
        "{refused:?}"
    );
    let opened = CqlStore::open(CqlOptions {
        hosts: keyspace.hosts.clone(),
        keyspace: keyspace.name.clone(),
        ..CqlOptions::default()
    })
    .await;
    assert!(matches!(opened, Err(CqlError::NewerSchema { .. })));
    keyspace.drop_now().await;
}
