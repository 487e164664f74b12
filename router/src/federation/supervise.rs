//! `postmesh router run`: keeps the star as planned.
//!
//! Every check interval it applies the plan to every broker (a broker
//! that restarted without its definitions gets them back; one that is
//! already right costs a few GETs and no change), then reads every link's
//! state and backlog into the metrics. A broker that is down is logged
//! once per new error, counted, and tried again with backoff (from 100 ms,
//! never slower than the check interval), so it is repaired within an
//! interval of answering again. Nothing here stops the loop but the
//! shutdown token.
//!
//! The router is not on the message path: the links are RabbitMQ's own.
//! While it is down, messages keep flowing on the links it set up; only
//! the repair stops.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use super::apply::{ApplyError, apply};
use super::config::Star;
use super::management::{Management, ManagementError};
use super::plan::{Link, Plan, plan};
use super::status::{ClusterNames, LinkState, LinkStatus, status};
use crate::backoff::Backoff;

/// Labels of a link's series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LinkLabels {
    pub upstream: String,
    pub downstream: String,
    pub exchange: String,
    pub direction: String,
}

impl From<&Link> for LinkLabels {
    fn from(l: &Link) -> Self {
        LinkLabels {
            upstream: l.upstream.clone(),
            downstream: l.downstream.clone(),
            exchange: l.exchange.clone(),
            direction: l.direction.as_str().to_owned(),
        }
    }
}

/// A link's labels plus one state.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LinkStateLabels {
    pub upstream: String,
    pub downstream: String,
    pub exchange: String,
    pub direction: String,
    pub state: String,
}

/// Labels of a broker's series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BrokerLabels {
    pub broker: String,
}

/// The router's metrics, under `postmesh_router_*`.
#[derive(Clone, Default)]
pub struct RouterMetrics {
    /// 1 while the link runs, else 0.
    pub link_running: Family<LinkLabels, Gauge>,
    /// 1 for the link's current state, 0 for the others.
    pub link_state: Family<LinkStateLabels, Gauge>,
    /// Messages in the link's queue on its upstream broker.
    pub link_messages_waiting: Family<LinkLabels, Gauge>,
    /// 1 while the broker's management API answers.
    pub broker_up: Family<BrokerLabels, Gauge>,
    /// Applies, after the first, that had to change something: repairs.
    pub reapplies: Family<BrokerLabels, Counter>,
    /// Definitions changed, in all.
    pub changes: Family<BrokerLabels, Counter>,
    /// Applies that failed.
    pub apply_errors: Family<BrokerLabels, Counter>,
    /// 1 while the broker's last apply failed.
    pub apply_failing: Family<BrokerLabels, Gauge>,
    /// Check rounds done.
    pub checks: Counter,
}

impl RouterMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let m = RouterMetrics::default();
        let r = registry.sub_registry_with_prefix("postmesh_router");
        r.register(
            "link_running",
            "1 while the federation link runs",
            m.link_running.clone(),
        );
        r.register(
            "link_state",
            "1 for the federation link's current state",
            m.link_state.clone(),
        );
        r.register(
            "link_messages_waiting",
            "Messages waiting in the link's queue on its upstream broker",
            m.link_messages_waiting.clone(),
        );
        r.register(
            "broker_up",
            "1 while the broker's management API answers",
            m.broker_up.clone(),
        );
        r.register(
            "reapplies",
            "Applies after the first that changed definitions (repairs)",
            m.reapplies.clone(),
        );
        r.register(
            "changes",
            "Definitions changed on the broker",
            m.changes.clone(),
        );
        r.register(
            "apply_errors",
            "Applies that failed",
            m.apply_errors.clone(),
        );
        r.register(
            "apply_failing",
            "1 while the broker's last apply failed",
            m.apply_failing.clone(),
        );
        r.register("checks", "Check rounds done", m.checks.clone());
        m
    }

    fn record_links(&self, statuses: &[LinkStatus]) {
        for s in statuses {
            let labels = LinkLabels::from(&s.link);
            self.link_running
                .get_or_create(&labels)
                .set(i64::from(s.state == LinkState::Running));
            for state in LinkState::ALL {
                let l = LinkStateLabels {
                    upstream: labels.upstream.clone(),
                    downstream: labels.downstream.clone(),
                    exchange: labels.exchange.clone(),
                    direction: labels.direction.clone(),
                    state: state.as_str().to_owned(),
                };
                self.link_state
                    .get_or_create(&l)
                    .set(i64::from(s.state == state));
            }
            match s.waiting {
                Some(n) => {
                    self.link_messages_waiting
                        .get_or_create(&labels)
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
                None => {
                    self.link_messages_waiting.remove(&labels);
                }
            }
        }
    }
}

/// Why the router could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SuperviseError {
    #[error("cannot listen on {addr} for metrics: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A started router.
pub struct Running {
    /// Where `/metrics` is served.
    pub metrics_addr: SocketAddr,
    /// Ends after the shutdown token is cancelled.
    pub task: tokio::task::JoinHandle<()>,
}

/// Binds the metrics listener, then supervises the star until `shutdown`.
pub async fn start(star: Star, shutdown: CancellationToken) -> Result<Running, SuperviseError> {
    let mut registry = Registry::default();
    let metrics = RouterMetrics::register(&mut registry);
    let listener = tokio::net::TcpListener::bind(star.metrics_listen)
        .await
        .map_err(|source| SuperviseError::Listen {
            addr: star.metrics_listen,
            source,
        })?;
    let metrics_addr = listener
        .local_addr()
        .map_err(|source| SuperviseError::Listen {
            addr: star.metrics_listen,
            source,
        })?;
    let app = Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(Arc::new(registry));
    let server_shutdown = shutdown.clone();
    let server = tokio::spawn(async move {
        let serve = axum::serve(listener, app)
            .with_graceful_shutdown(async move { server_shutdown.cancelled().await });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "metrics server failed");
        }
    });
    let task = tokio::spawn(async move {
        supervise(&star, &metrics, &shutdown).await;
        let _ = server.await;
    });
    Ok(Running { metrics_addr, task })
}

async fn serve_metrics(State(registry): State<Arc<Registry>>) -> Response {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

/// What the loop remembers between rounds, to log changes once.
#[derive(Default)]
struct Memory {
    applied_once: BTreeSet<String>,
    last_error: BTreeMap<String, String>,
    link_states: BTreeMap<Link, LinkState>,
    clusters: ClusterNames,
}

async fn supervise(star: &Star, metrics: &RouterMetrics, shutdown: &CancellationToken) {
    let plan = plan(star);
    let clients = super::clients(&plan, star.http_timeout);
    let mut memory = Memory::default();
    let mut backoff = Backoff::new(star.check_interval);
    loop {
        let failed = tokio::select! {
            _ = shutdown.cancelled() => return,
            failed = round(&plan, &clients, metrics, &mut memory) => failed,
        };
        metrics.checks.inc();
        let wait = if failed {
            backoff.next_delay().min(star.check_interval)
        } else {
            backoff = Backoff::new(star.check_interval);
            star.check_interval
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One check: apply, then read the links. True when a broker failed.
async fn round(
    plan: &Plan,
    clients: &[Management],
    metrics: &RouterMetrics,
    memory: &mut Memory,
) -> bool {
    let mut failed = false;
    for o in apply(plan, clients, false).await {
        let labels = BrokerLabels {
            broker: o.broker.clone(),
        };
        let reachable = !matches!(
            &o.result,
            Err(ApplyError::Management(
                ManagementError::Unreachable { .. } | ManagementError::Timeout { .. }
            ))
        );
        metrics
            .broker_up
            .get_or_create(&labels)
            .set(i64::from(reachable));
        match o.result {
            Ok(diff) => {
                metrics.apply_failing.get_or_create(&labels).set(0);
                if memory.last_error.remove(&o.broker).is_some() {
                    tracing::info!(broker = %o.broker, "broker answers again");
                }
                if !diff.changes.is_empty() {
                    if memory.applied_once.contains(&o.broker) {
                        metrics.reapplies.get_or_create(&labels).inc();
                        tracing::warn!(broker = %o.broker, changes = diff.changes.len(), "definitions drifted: repairing");
                    }
                    metrics
                        .changes
                        .get_or_create(&labels)
                        .inc_by(diff.changes.len() as u64);
                    for c in &diff.changes {
                        tracing::info!(broker = %o.broker, "{c}");
                    }
                }
                for w in &diff.warnings {
                    tracing::warn!(broker = %o.broker, "{w}");
                }
                memory.applied_once.insert(o.broker);
            }
            Err(e) => {
                failed = true;
                metrics.apply_errors.get_or_create(&labels).inc();
                metrics.apply_failing.get_or_create(&labels).set(1);
                let text = e.to_string();
                if memory.last_error.get(&o.broker) != Some(&text) {
                    tracing::warn!(broker = %o.broker, error = %text, retry = e.is_retryable(), "cannot apply the plan");
                    memory.last_error.insert(o.broker, text);
                }
            }
        }
    }
    let statuses = status(plan, clients, &mut memory.clusters).await;
    metrics.record_links(&statuses);
    for s in &statuses {
        let before = memory.link_states.insert(s.link.clone(), s.state);
        if before != Some(s.state) {
            tracing::info!(
                link = %s.link.label(),
                state = s.state.as_str(),
                error = s.error.as_deref().unwrap_or(""),
                "link state"
            );
        }
    }
    failed
}
