//! Gateway metrics, registered in the process's Prometheus registry.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Counters and gauges of one gateway.
#[derive(Clone, Default)]
pub struct GatewayMetrics {
    /// Open device connections, over every transport (a SockJS session
    /// is one).
    pub connections: Gauge,
    /// SockJS sessions the gateway holds, open or closed and not yet
    /// forgotten (a closed HTTP session is kept for the disconnect delay,
    /// so its device can read the close frame).
    pub sockjs_sessions: Gauge,
    /// Subscriptions held by connections.
    pub subscriptions: Gauge,
    /// Distinct patterns bound upstream on the postoffice.
    pub bindings: Gauge,
    /// Frames received from devices.
    pub frames_in: Counter,
    /// Messages published by devices and HTTP clients through this gateway.
    pub messages_published: Counter,
    /// Messages received from the postoffice for fan-out.
    pub messages_in: Counter,
    /// Duplicate messages dropped by the dedupe window.
    pub messages_duplicate: Counter,
    /// Frames queued to connections by fan-out.
    pub deliveries: Counter,
    /// Connections closed because they did not keep up.
    pub slow_consumers: Counter,
    /// `err` frames sent.
    pub errors: Counter,
    /// TLS handshakes that failed or did not finish within the header
    /// timeout (plain HTTP on a TLS port, scanners, clients that stall).
    pub tls_handshake_failures: Counter,
    /// Certificate reloads that took effect.
    pub tls_reloads: Counter,
    /// Certificate reloads refused (the previous certificate kept serving).
    pub tls_reload_failures: Counter,
}

impl GatewayMetrics {
    /// Creates the metrics and registers them under `postmesh_gateway_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = GatewayMetrics::default();
        let r = registry.sub_registry_with_prefix("postmesh_gateway");
        r.register(
            "connections",
            "Open device connections, over every transport",
            m.connections.clone(),
        );
        r.register(
            "sockjs_sessions",
            "SockJS sessions held, open or closed and not yet forgotten",
            m.sockjs_sessions.clone(),
        );
        r.register(
            "subscriptions",
            "Subscriptions held by connections",
            m.subscriptions.clone(),
        );
        r.register(
            "bindings",
            "Distinct patterns bound on the postoffice",
            m.bindings.clone(),
        );
        r.register(
            "frames_in",
            "Frames received from devices",
            m.frames_in.clone(),
        );
        r.register(
            "messages_published",
            "Messages published through this gateway",
            m.messages_published.clone(),
        );
        r.register(
            "messages_in",
            "Messages received from the postoffice",
            m.messages_in.clone(),
        );
        r.register(
            "messages_duplicate",
            "Duplicate deliveries dropped",
            m.messages_duplicate.clone(),
        );
        r.register(
            "deliveries",
            "Frames queued to connections by fan-out",
            m.deliveries.clone(),
        );
        r.register(
            "slow_consumers",
            "Connections closed for not keeping up",
            m.slow_consumers.clone(),
        );
        r.register("errors", "err frames sent", m.errors.clone());
        r.register(
            "tls_handshake_failures",
            "TLS handshakes failed or not completed within the header timeout",
            m.tls_handshake_failures.clone(),
        );
        r.register(
            "tls_reloads",
            "TLS certificate reloads that took effect",
            m.tls_reloads.clone(),
        );
        r.register(
            "tls_reload_failures",
            "TLS certificate reloads refused; the previous certificate kept serving",
            m.tls_reload_failures.clone(),
        );
        m
    }
}
