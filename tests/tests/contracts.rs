//! The engine contracts, run from here against the embedded engines (the
//! RabbitMQ postoffice runs the postoffice suite in `rabbitmq.rs`; a
//! Cassandra store, planned, would join the store suite).

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
