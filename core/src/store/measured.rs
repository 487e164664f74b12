//! A [`Store`] that measures another: the latency of every operation, by
//! operation, and its errors, in the process's Prometheus registry. Any
//! engine is wrapped the same way when it is opened, so every store
//! reports the same series.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use postmesh_schema::{Cursor, Message, Pattern, Uuid};

use super::{HistoryQuery, Page, Put, Store, StoreError};

/// The operation a measurement is of: the trait method's name.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Op {
    pub op: &'static str,
}

/// The store's series, `postmesh_store_*`.
#[derive(Clone)]
pub struct StoreMetrics {
    /// Latency of each operation that returned, seconds, by `op`.
    pub seconds: Family<Op, Histogram>,
    /// Operations that failed, by `op`.
    pub errors: Family<Op, Counter>,
}

impl StoreMetrics {
    /// Creates the series and registers them under `postmesh_store_*`.
    pub fn register(registry: &mut Registry) -> StoreMetrics {
        // 50 µs to about 6.5 s.
        let m = StoreMetrics {
            seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
            }),
            errors: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("postmesh_store");
        r.register(
            "operation_seconds",
            "Store operation latency, by operation (put: writes; history, since, latest, get: reads)",
            m.seconds.clone(),
        );
        r.register(
            "operation_errors",
            "Store operations that failed, by operation",
            m.errors.clone(),
        );
        m
    }
}

/// The store's health, as `/healthz` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// The engine (`embedded`, `cql`).
    pub kind: &'static str,
    /// Whether the probe answered in time.
    pub ok: bool,
    /// How long the probe took.
    pub latency: Duration,
    /// Why it failed.
    pub error: Option<String>,
}

/// How long a health probe may take before the store counts as down.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Measures `inner`.
pub struct Measured {
    inner: Arc<dyn Store>,
    metrics: StoreMetrics,
}

impl Measured {
    pub fn new(inner: Arc<dyn Store>, metrics: StoreMetrics) -> Measured {
        Measured { inner, metrics }
    }

    async fn timed<T>(
        &self,
        op: &'static str,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let start = Instant::now();
        let r = f.await;
        match &r {
            Ok(_) => self
                .metrics
                .seconds
                .get_or_create(&Op { op })
                .observe(start.elapsed().as_secs_f64()),
            Err(_) => {
                self.metrics.errors.get_or_create(&Op { op }).inc();
            }
        }
        r
    }
}

/// Probes `store` (with [`PROBE_TIMEOUT`]) and says how it went.
pub async fn health(store: &dyn Store) -> Health {
    let start = Instant::now();
    let r = tokio::time::timeout(PROBE_TIMEOUT, store.probe()).await;
    let latency = start.elapsed();
    let error = match r {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer in {PROBE_TIMEOUT:?}")),
    };
    Health {
        kind: store.kind(),
        ok: error.is_none(),
        latency,
        error,
    }
}

#[async_trait]
impl Store for Measured {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn is_shared(&self) -> bool {
        self.inner.is_shared()
    }

    fn stamper(&self) -> [u8; 8] {
        self.inner.stamper()
    }

    async fn probe(&self) -> Result<(), StoreError> {
        self.timed("probe", self.inner.probe()).await
    }

    async fn put(&self, messages: Vec<Message>) -> Result<Vec<Put>, StoreError> {
        self.timed("put", self.inner.put(messages)).await
    }

    async fn get(&self, uuid: Uuid) -> Result<Option<Message>, StoreError> {
        self.timed("get", self.inner.get(uuid)).await
    }

    async fn history(&self, query: HistoryQuery) -> Result<Page, StoreError> {
        self.timed("history", self.inner.history(query)).await
    }

    async fn since(
        &self,
        pattern: Pattern,
        after: Cursor,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.timed("since", self.inner.since(pattern, after, limit))
            .await
    }

    async fn newest(&self) -> Result<Option<Cursor>, StoreError> {
        self.timed("newest", self.inner.newest()).await
    }

    async fn checkpoint(&self, name: &str) -> Result<Option<Cursor>, StoreError> {
        self.timed("checkpoint", self.inner.checkpoint(name)).await
    }

    async fn set_checkpoint(&self, name: &str, cursor: Cursor) -> Result<(), StoreError> {
        self.timed("set_checkpoint", self.inner.set_checkpoint(name, cursor))
            .await
    }

    async fn latest(&self, pattern: Pattern, limit: usize) -> Result<Page, StoreError> {
        self.timed("latest", self.inner.latest(pattern, limit))
            .await
    }

    async fn dismiss(&self, user: u64, uuid: Uuid) -> Result<bool, StoreError> {
        self.timed("dismiss", self.inner.dismiss(user, uuid)).await
    }

    async fn dismissed(&self, user: u64, uuids: Vec<Uuid>) -> Result<Vec<bool>, StoreError> {
        self.timed("dismissed", self.inner.dismissed(user, uuids))
            .await
    }

    async fn set_retention(
        &self,
        category: String,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        self.timed("set_retention", self.inner.set_retention(category, ttl))
            .await
    }

    async fn retentions(&self) -> Result<Vec<(String, Duration)>, StoreError> {
        self.timed("retentions", self.inner.retentions()).await
    }

    async fn sweep(&self) -> Result<usize, StoreError> {
        self.timed("sweep", self.inner.sweep()).await
    }

    async fn close(&self) {
        self.inner.close().await
    }
}
