//! Core metrics, registered in the process's Prometheus registry. The
//! store's latency is not here: the store measures every operation itself
//! (`store::measured`, `postmesh_store_operation_seconds{op}`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// Counters of the core services.
#[derive(Clone, Default)]
pub struct CoreMetrics {
    /// Messages stored for the first time.
    pub persisted: Counter,
    /// Publishes of a UUID that was already stored.
    pub duplicates: Counter,
    /// Messages handed to the postoffice for distribution.
    pub distributed: Counter,
}

impl CoreMetrics {
    /// Creates the metrics and registers them under `postmesh_core_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = CoreMetrics::default();
        let r = registry.sub_registry_with_prefix("postmesh_core");
        r.register(
            "messages_persisted",
            "Messages stored for the first time",
            m.persisted.clone(),
        );
        r.register(
            "messages_duplicate",
            "Publishes of an already stored UUID",
            m.duplicates.clone(),
        );
        r.register(
            "messages_distributed",
            "Messages handed to the postoffice",
            m.distributed.clone(),
        );
        m
    }
}
