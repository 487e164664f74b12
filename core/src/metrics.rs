//! Core metrics, registered in the process's Prometheus registry.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Counters and histograms of the core services.
#[derive(Clone)]
pub struct CoreMetrics {
    /// Messages stored for the first time.
    pub persisted: Counter,
    /// Publishes of a UUID that was already stored.
    pub duplicates: Counter,
    /// Messages handed to the postoffice for distribution.
    pub distributed: Counter,
    /// Store write latency (seconds).
    pub store_write_seconds: Histogram,
    /// Store read latency (seconds).
    pub store_read_seconds: Histogram,
}

impl Default for CoreMetrics {
    fn default() -> Self {
        let hist = || Histogram::new(exponential_buckets(0.000_05, 2.0, 18));
        CoreMetrics {
            persisted: Counter::default(),
            duplicates: Counter::default(),
            distributed: Counter::default(),
            store_write_seconds: hist(),
            store_read_seconds: hist(),
        }
    }
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
        r.register(
            "store_write_seconds",
            "Store write latency",
            m.store_write_seconds.clone(),
        );
        r.register(
            "store_read_seconds",
            "Store read latency",
            m.store_read_seconds.clone(),
        );
        m
    }
}
