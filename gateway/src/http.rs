//! The HTTP API on the gateway's listener: publish, history, latest,
//! health and metrics. Errors are 4xx/5xx with a JSON body
//! `{"code": .., "message": ..}` using the protocol's error codes: the
//! handlers', the query parser's ([`Params`]) and the router's (an unknown
//! path, a method an endpoint does not take) alike.

// Handlers return early with a ready `Response`; boxing it would only add
// an allocation on the error path.
#![allow(clippy::result_large_err)]

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use postmesh_core::Page;
use postmesh_schema::message::Draft;
use postmesh_schema::protocol::{
    DEFAULT_HISTORY_LIMIT, ErrorCode, FrameError, MAX_HISTORY_LIMIT, too_large,
};
use postmesh_schema::{Cursor, Message, Pattern};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use crate::app::{App, error_response};
use crate::auth::Grants;
use crate::params::Params;

/// The router: the live page at `/`, `/ws`, `/sockjs`, `/v1/*`,
/// `/healthz`, `/metrics`.
pub fn router(app: Arc<App>) -> Router {
    let routes = Router::new()
        .route("/", get(crate::live::page))
        .route("/postmesh.js", get(crate::live::bundle))
        .route("/live", get(crate::live::moved))
        .route("/live/postmesh.js", get(crate::live::moved))
        .route("/ws", get(crate::ws::upgrade))
        .route("/v1/publish", post(publish))
        .route("/v1/history", get(history))
        .route("/v1/latest", get(latest))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics));
    crate::sockjs::mount(routes, &app)
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .with_state(app)
}

/// A path the router does not know.
async fn not_found(uri: Uri) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        ErrorCode::UnknownOp,
        &format!("no endpoint at {}; the page at / lists them", uri.path()),
    )
}

/// A known path with a method it does not take (the router adds `Allow`).
async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::UnknownOp,
        &format!("{} does not take {method}", uri.path()),
    )
}

fn frame_error(e: FrameError) -> Response {
    let status = StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    error_response(status, e.code, &e.message)
}

fn json_response(body: Vec<u8>) -> Response {
    let mut res = Response::new(Body::from(body));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// The token from `Authorization: Bearer ..` or `?token=`.
fn grants(app: &App, headers: &HeaderMap, query_token: Option<&str>) -> Result<Grants, Response> {
    // The scheme is case-insensitive (RFC 7235).
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match bearer.or(query_token) {
        Some(t) => app.ctx.authority.verify(t.trim()).map_err(|e| {
            error_response(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                &e.to_string(),
            )
        }),
        None => {
            let g = app.ctx.authority.anonymous();
            if g.is_unauthenticated() {
                Err(error_response(
                    StatusCode::UNAUTHORIZED,
                    ErrorCode::Unauthorized,
                    "a token is required: Authorization: Bearer <token>",
                ))
            } else {
                Ok(g)
            }
        }
    }
}

fn core_failure(e: postmesh_core::CoreError) -> Response {
    tracing::warn!(error = %e, "core call failed");
    let code = e.code();
    let status =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error_response(status, code, &e.to_string())
}

fn page_json(page: &Page) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"messages\":[");
    for (i, m) in page.messages.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        m.write_json_fields(&mut out);
        out.push(b'}');
    }
    out.extend_from_slice(format!("],\"more\":{}", page.more).as_bytes());
    if let Some(c) = page.next.filter(|_| page.more) {
        out.extend_from_slice(format!(",\"next\":\"{c}\"").as_bytes());
    }
    out.push(b'}');
    out
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// `POST /v1/publish`: one message `{path, meta?, body?, uuid?, class?}` or
/// `{"messages": [...]}`. Answers once every message is durably stored and
/// handed to the postoffice.
async fn publish(
    State(app): State<Arc<App>>,
    Params(q): Params<TokenQuery>,
    req: Request,
) -> Response {
    let grants = match grants(&app, req.headers(), q.token.as_deref()) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let within = std::time::Duration::from_secs(app.ctx.config.body_timeout_secs);
    let read = axum::body::to_bytes(req.into_body(), app.max_body_bytes);
    let body = match tokio::time::timeout(within, read).await {
        Ok(Ok(b)) => b,
        Err(_) => {
            return error_response(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::Timeout,
                &format!("request body not received within {} s", within.as_secs()),
            );
        }
        Ok(Err(_)) => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::BadFrame,
                &format!("request body over {} bytes", app.max_body_bytes),
            );
        }
    };
    let top: BTreeMap<Cow<'_, str>, &RawValue> = match serde_json::from_slice(&body) {
        Ok(t) => t,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadJson,
                &format!("body is not a JSON object: {e}"),
            );
        }
    };
    let batch = top.contains_key("messages");
    let drafts: Vec<Draft<'_>> = if let Some(raw) = top.get("messages") {
        match serde_json::from_str(raw.get()) {
            Ok(d) => d,
            Err(e) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::BadFrame,
                    &format!("messages: {e}"),
                );
            }
        }
    } else {
        match serde_json::from_slice(&body) {
            Ok(d) => vec![d],
            Err(e) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::BadFrame,
                    &e.to_string(),
                );
            }
        }
    };
    let max = app.ctx.config.max_publish_batch;
    if drafts.is_empty() || drafts.len() > max {
        return error_response(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadFrame,
            &format!("a batch holds 1 to {max} messages"),
        );
    }
    let mut messages: Vec<Message> = Vec::with_capacity(drafts.len());
    for (i, d) in drafts.into_iter().enumerate() {
        let m = match d.into_message(None, &app.ctx.config.limits) {
            Ok(m) => m,
            Err(e) => {
                let mut fe = FrameError::from((None, e));
                if batch {
                    fe.message = format!("messages[{i}]: {}", fe.message);
                }
                return frame_error(fe);
            }
        };
        if !grants.can_publish(&m.path) {
            return error_response(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                &format!("the token does not allow publishing to {}", m.path),
            );
        }
        if let Some(mut fe) = too_large(None, &m, app.ctx.config.max_message_bytes) {
            if batch {
                fe.message = format!("messages[{i}]: {}", fe.message);
            }
            return frame_error(fe);
        }
        messages.push(m);
    }
    app.ctx
        .metrics
        .messages_published
        .inc_by(messages.len() as u64);
    match app.ctx.core.publish(messages).await {
        Ok(published) if !batch => json_response(
            json!({
                "uuid": published[0].uuid,
                "duplicate": published[0].duplicate,
                "cursor": published[0].cursor,
            })
            .to_string()
            .into_bytes(),
        ),
        Ok(published) => json_response(
            json!({
                "uuids": published.iter().map(|p| p.uuid).collect::<Vec<_>>(),
                "duplicates": published.iter().filter(|p| p.duplicate).count(),
                "cursors": published.iter().map(|p| p.cursor).collect::<Vec<_>>(),
            })
            .to_string()
            .into_bytes(),
        ),
        Err(e) => core_failure(e),
    }
}

#[derive(Deserialize)]
struct ReadQuery {
    pattern: Option<String>,
    limit: Option<String>,
    before: Option<String>,
    token: Option<String>,
}

fn read_params(
    app: &App,
    headers: &HeaderMap,
    q: &ReadQuery,
) -> Result<(Grants, Pattern, usize), Response> {
    let grants = grants(app, headers, q.token.as_deref())?;
    let raw = q.pattern.as_deref().ok_or_else(|| {
        error_response(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadFrame,
            "missing ?pattern=",
        )
    })?;
    let pattern = Pattern::parse_with(raw, &app.ctx.config.limits).map_err(|e| {
        error_response(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadPattern,
            &format!("pattern {raw:?}: {e}"),
        )
    })?;
    if !grants.can_read(&pattern) {
        return Err(error_response(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            &format!("the token does not allow reading {pattern}"),
        ));
    }
    let limit = match q.limit.as_deref() {
        None => DEFAULT_HISTORY_LIMIT as usize,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_HISTORY_LIMIT as usize).contains(&n) => n,
            _ => {
                return Err(error_response(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::BadLimit,
                    &format!("limit must be an integer from 1 to {MAX_HISTORY_LIMIT}"),
                ));
            }
        },
    };
    Ok((grants, pattern, limit))
}

/// `GET /v1/history?pattern=&limit=&before=`: newest first.
async fn history(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Params(q): Params<ReadQuery>,
) -> Response {
    let (grants, pattern, limit) = match read_params(&app, &headers, &q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let before = match q.before.as_deref().map(str::parse::<Cursor>).transpose() {
        Ok(b) => b,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadUuid,
                &format!("before: {e}"),
            );
        }
    };
    match app
        .ctx
        .core
        .history(pattern, limit, before, grants.user)
        .await
    {
        Ok(page) => json_response(page_json(&page)),
        Err(e) => core_failure(e),
    }
}

/// `GET /v1/latest?pattern=&limit=`: the newest message of each path.
async fn latest(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Params(q): Params<ReadQuery>,
) -> Response {
    let (grants, pattern, limit) = match read_params(&app, &headers, &q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    match app.ctx.core.latest(pattern, limit, grants.user).await {
        Ok(page) => json_response(page_json(&page)),
        Err(e) => core_failure(e),
    }
}

/// `{"status", "connections"}`, and with a core in this process
/// `"store": {"kind", "status", "latency_ms", "error"?}` from a probe of its
/// store. A store that does not answer makes the whole `unavailable`, with
/// 503: this process cannot serve publishes or history.
async fn healthz(State(app): State<Arc<App>>) -> Response {
    let mut body = json!({
        "status": "ok",
        "connections": app.ctx.metrics.connections.get(),
    });
    let mut healthy = true;
    if let Some(store) = &app.store {
        let h = postmesh_core::store::measured::health(store.as_ref()).await;
        healthy = h.ok;
        let mut s = json!({
            "kind": h.kind,
            "status": if h.ok { "ok" } else { "unavailable" },
            "latency_ms": h.latency.as_secs_f64() * 1000.0,
        });
        if let Some(e) = h.error {
            s["error"] = json!(e);
        }
        body["store"] = s;
    }
    if !healthy {
        body["status"] = json!("unavailable");
    }
    let mut res = json_response(body.to_string().into_bytes());
    if !healthy {
        *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    }
    res
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &app.registry) {
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            &e.to_string(),
        );
    }
    let mut res = text.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    res
}
