//! What the gateway's HTTP handlers and transports share: the [`App`]
//! state and the JSON error response. It sits below both `http` (the API
//! and router) and the transports (`ws`, SockJS), so neither imports the
//! other.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use postmesh_schema::protocol::ErrorCode;
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Admission;
use crate::session::Ctx;

/// What the HTTP handlers share.
pub struct App {
    pub ctx: Arc<Ctx>,
    /// The store of the core in this process, if any: `/healthz` probes it.
    pub store: Option<Arc<dyn postmesh_core::Store>>,
    pub registry: Arc<Registry>,
    /// Cancelled on shutdown; sessions get child tokens.
    pub shutdown: CancellationToken,
    /// Cancelled at the shutdown deadline: sessions still open are dropped.
    pub cut: CancellationToken,
    /// Tracks connections and sessions, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Every transport's token check and connection limit.
    pub admission: Admission,
    /// Largest HTTP request body.
    pub max_body_bytes: usize,
}

/// A JSON error response.
pub fn error_response(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    let body = json!({ "code": code.as_str(), "message": message }).to_string();
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}
