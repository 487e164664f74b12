//! SockJS 0.3 under `/sockjs`: the protocol `sockjs-client` 1.x speaks, for
//! devices whose network blocks WebSocket.
//!
//! It is a transport, not a second protocol: each SockJS message is one
//! client-protocol frame, and every session runs the one session loop
//! (`crate::session::run`) over a [`session::SockjsTransport`]. Admission
//! (token, connection limit) and the `Origin` rule are the `/ws` ones. No maintained crate serves
//! SockJS on hyper, so the transports are written here over axum, hyper's
//! upgrades, tokio-tungstenite and serde_json.
//!
//! Transports: `websocket`, `xhr`/`xhr_send`, `xhr_streaming`,
//! `eventsource`, `htmlfile`, `jsonp`/`jsonp_send`, the iframe page, `info`,
//! and raw `/sockjs/websocket`. With `gateway.sockjs.test_services`, the
//! protocol suite's services are mounted under `/sockjs-test`.

// Checks return early with a ready `Response`; boxing it would only add an
// allocation on the refusal path.
#![allow(clippy::result_large_err)]

pub mod session;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::any;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use postmesh_schema::protocol::ErrorCode;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

use crate::admission::Admitted;
use crate::app::{App, error_response};
use crate::config::SockjsConfig;
use crate::frame::Frame;
use crate::session::{self as loop_, Inbound, Outbound};
use session::{Shared, SockjsTransport, Taken};

/// What runs over a SockJS session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// The postmesh client protocol.
    Postmesh,
    /// The protocol suite's `echo`.
    Echo,
    /// `echo` with WebSocket turned off.
    EchoNoWebsocket,
    /// `echo` with the `JSESSIONID` cookie.
    EchoCookie,
    /// Closes every session at once with `c[3000,"Go away!"]`.
    Close,
}

impl Service {
    fn websocket(self) -> bool {
        self != Service::EchoNoWebsocket
    }
    fn cookie(self) -> bool {
        self == Service::EchoCookie
    }
}

/// One mounted service and its HTTP sessions.
struct Mount {
    prefix: String,
    service: Service,
    config: SockjsConfig,
    sessions: Mutex<HashMap<String, Arc<Shared>>>,
}

/// Adds `/sockjs` (and the test services when configured) to `router`.
pub(crate) fn mount(mut router: Router<Arc<App>>, app: &Arc<App>) -> Router<Arc<App>> {
    let config = app.ctx.config.sockjs.clone();
    if !config.enabled {
        return router;
    }
    let mut mounts = vec![("/sockjs".to_owned(), Service::Postmesh)];
    if config.test_services {
        for (name, s) in [
            ("echo", Service::Echo),
            ("close", Service::Close),
            ("disabled_websocket_echo", Service::EchoNoWebsocket),
            ("cookie_needed_echo", Service::EchoCookie),
        ] {
            mounts.push((format!("/sockjs-test/{name}"), s));
        }
    }
    for (prefix, service) in mounts {
        let m = Arc::new(Mount {
            prefix: prefix.clone(),
            service,
            config: config.clone(),
            sessions: Mutex::new(HashMap::new()),
        });
        spawn_sweeper(app, m.clone());
        let (a, b, c) = (m.clone(), m.clone(), m);
        router = router
            .route(
                &prefix,
                any(move |State(app): State<Arc<App>>, req: Request| handle(app, a.clone(), req)),
            )
            .route(
                &format!("{prefix}/"),
                any(move |State(app): State<Arc<App>>, req: Request| handle(app, c.clone(), req)),
            )
            .route(
                &format!("{prefix}/{{*rest}}"),
                any(move |State(app): State<Arc<App>>, req: Request| handle(app, b.clone(), req)),
            );
    }
    router
}

/// Forgets HTTP sessions no request came for within the disconnect delay,
/// which ends their loops (and releases their subscriptions). At shutdown
/// it leaves them to their loops, which close them with 1001 so that a
/// waiting request carries the close frame to the device.
fn spawn_sweeper(app: &Arc<App>, m: Arc<Mount>) {
    let delay = Duration::from_secs(m.config.disconnect_delay_secs.max(1));
    let shutdown = app.shutdown.clone();
    app.tracker.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            m.sessions.lock().retain(|_, s| !s.expired(delay));
        }
    });
}

/// The kinds of receiving request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Receiver {
    Xhr,
    XhrStreaming,
    EventSource,
    HtmlFile,
    Jsonp,
}

impl Receiver {
    fn streaming(self) -> bool {
        matches!(
            self,
            Receiver::XhrStreaming | Receiver::EventSource | Receiver::HtmlFile
        )
    }
}

async fn handle(app: Arc<App>, m: Arc<Mount>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let rest = path.strip_prefix(&m.prefix).unwrap_or("");
    let origin = match crate::origin::check(&app.ctx.config.origins, req.headers()) {
        Ok(o) => o,
        Err(foreign) => return foreign.into_response(),
    };
    let method = req.method().clone();
    let parts: Vec<&str> = rest.split('/').collect();
    let mut res = match (parts.as_slice(), &method) {
        ([""] | ["", ""], &Method::GET) => text(
            StatusCode::OK,
            "text/plain; charset=UTF-8",
            "Welcome to SockJS!\n",
        ),
        (["", "info"], &Method::GET) => info(&m),
        (["", "info"], &Method::OPTIONS) => preflight(&req, "OPTIONS, GET"),
        (["", "websocket"], _) => {
            if !m.service.websocket() {
                return not_found();
            }
            return websocket(app, m, req, None).await;
        }
        (["", page], &Method::GET) if is_iframe(page) => iframe(&m, req.headers()),
        (["", server, session, transport], _) if valid_id(server) && valid_id(session) => {
            let id = (*session).to_owned();
            let transport = (*transport).to_owned();
            return match transport_route(&transport, &method) {
                Route::NotFound => not_found(),
                Route::Method(allow) => method_not_allowed(allow),
                Route::Preflight(methods) => {
                    let mut r = preflight(&req, methods);
                    cors(&mut r, origin.as_deref(), m.service.cookie(), &req);
                    r
                }
                Route::Websocket => {
                    if !m.service.websocket() {
                        return not_found();
                    }
                    websocket(app, m, req, Some(id)).await
                }
                Route::Send { jsonp } => {
                    let (parts, body) = req.into_parts();
                    let head = Request::from_parts(parts.clone(), Body::empty());
                    let mut r = send(&app, &m, &id, jsonp, Request::from_parts(parts, body)).await;
                    no_cache(&mut r);
                    cors(&mut r, origin.as_deref(), m.service.cookie(), &head);
                    r
                }
                Route::Receive(kind) => {
                    let mut r = receive(&app, &m, id, kind, &req);
                    no_cache(&mut r);
                    cors(&mut r, origin.as_deref(), m.service.cookie(), &req);
                    r
                }
            };
        }
        (["", "info"] | [""] | ["", ""], _) => {
            return method_not_allowed(if rest.ends_with("info") {
                "OPTIONS, GET"
            } else {
                "GET"
            });
        }
        _ => return not_found(),
    };
    if rest == "/info" {
        if method == Method::GET {
            no_cache(&mut res);
        }
        // `info` never sets the cookie: the client reads `cookie_needed`.
        cors(&mut res, origin.as_deref(), false, &req);
    }
    res
}

enum Route {
    NotFound,
    Method(&'static str),
    Preflight(&'static str),
    Websocket,
    Send { jsonp: bool },
    Receive(Receiver),
}

fn transport_route(transport: &str, method: &Method) -> Route {
    let (allowed, route) = match transport {
        "websocket" => {
            return if method == Method::GET {
                Route::Websocket
            } else {
                Route::Method("GET")
            };
        }
        "xhr" => ("POST", Route::Receive(Receiver::Xhr)),
        "xhr_streaming" => ("POST", Route::Receive(Receiver::XhrStreaming)),
        "xhr_send" => ("POST", Route::Send { jsonp: false }),
        "eventsource" => ("GET", Route::Receive(Receiver::EventSource)),
        "htmlfile" => ("GET", Route::Receive(Receiver::HtmlFile)),
        "jsonp" => ("GET", Route::Receive(Receiver::Jsonp)),
        "jsonp_send" => ("POST", Route::Send { jsonp: true }),
        _ => return Route::NotFound,
    };
    if method.as_str() == allowed {
        route
    } else if method == Method::OPTIONS && allowed == "POST" {
        Route::Preflight("OPTIONS, POST")
    } else {
        Route::Method(if allowed == "POST" {
            "OPTIONS, POST"
        } else {
            "GET"
        })
    }
}

/// Server and session ids: not empty, and no dot.
fn valid_id(s: &str) -> bool {
    !s.is_empty() && !s.contains('.')
}

/// `iframe.html` or `iframe-<version>.html`.
fn is_iframe(page: &str) -> bool {
    page == "iframe.html"
        || page
            .strip_prefix("iframe-")
            .and_then(|p| p.strip_suffix(".html"))
            .is_some()
}

fn not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        ErrorCode::UnknownOp,
        "no SockJS endpoint here",
    )
}

/// 405 as the protocol has it: `Allow`, and neither a type nor a body.
fn method_not_allowed(allow: &'static str) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

fn text(status: StatusCode, content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A refusal the protocol words itself (`Payload expected.`, `Broken JSON
/// encoding.`): SockJS clients and the suite read the text, so it is plain.
fn protocol_error(status: StatusCode, message: &'static str) -> Response {
    text(status, "text/plain; charset=UTF-8", message)
}

fn no_cache(r: &mut Response) {
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache, must-revalidate, max-age=0"),
    );
}

const YEAR: &str = "31536000";

fn cache_for_a_year(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000"),
    );
    let expires = httpdate(std::time::SystemTime::now() + Duration::from_secs(31_536_000));
    if let Ok(v) = HeaderValue::from_str(&expires) {
        h.insert(header::EXPIRES, v);
    }
}

/// An HTTP date (RFC 7231, IMF-fixdate).
fn httpdate(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let days = secs / 86_400;
    let (h, mi, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MO: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {d:02} {} {y} {h:02}:{mi:02}:{s:02} GMT",
        WD[(days % 7) as usize],
        MO[(mo - 1) as usize]
    )
}

/// CORS answer headers, and the cookie of a service that needs one.
fn cors(r: &mut Response, origin: Option<&str>, cookie: bool, req: &Request) {
    let h = r.headers_mut();
    match origin.filter(|o| *o != "null") {
        Some(o) => {
            if let Ok(v) = HeaderValue::from_str(o) {
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
            }
        }
        None => {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
    }
    if let Some(asked) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    if cookie {
        let id = req
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix("JSESSIONID="))
            .unwrap_or("dummy")
            .to_owned();
        if let Ok(v) = HeaderValue::from_str(&format!("JSESSIONID={id}; path=/")) {
            h.insert(header::SET_COOKIE, v);
        }
    }
}

fn preflight(req: &Request, methods: &'static str) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    cache_for_a_year(&mut r);
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(methods),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(YEAR),
    );
    let _ = req;
    r
}

fn info(m: &Mount) -> Response {
    let body = serde_json::json!({
        "websocket": m.service.websocket(),
        "cookie_needed": m.service.cookie(),
        "origins": ["*:*"],
        "entropy": entropy(),
    });
    text(
        StatusCode::OK,
        "application/json; charset=UTF-8",
        body.to_string(),
    )
}

/// A fresh number per `/info`, as the protocol asks (clients seed with it).
fn entropy() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish() as u32
}

fn iframe_page(client_url: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script>
    document.domain = document.domain;
    _sockjs_onload = function(){{SockJS.bootstrap_iframe();}};
  </script>
  <script src="{client_url}"></script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>"#
    )
}

fn iframe(m: &Mount, headers: &HeaderMap) -> Response {
    let page = iframe_page(&m.config.client_url);
    let etag = format!("\"{:016x}\"", {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        page.hash(&mut h);
        h.finish()
    });
    let mut r = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        text(StatusCode::OK, "text/html; charset=UTF-8", page)
    };
    cache_for_a_year(&mut r);
    if let Ok(v) = HeaderValue::from_str(&etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

/// The query's `token`, and `c` (the callback of `htmlfile` and `jsonp`).
fn query_param(req: &Request, name: &str) -> Option<String> {
    let q = req.uri().query()?;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// Starts a session of `m`'s service on a task of its own.
fn start(app: &Arc<App>, m: &Mount, admitted: Admitted) -> Arc<Shared> {
    let (shared, transport) = Shared::new(
        m.config.buffer_bytes,
        app.ctx.metrics.sockjs_sessions.clone(),
    );
    let ctx = app.ctx.clone();
    let cancel = app.shutdown.child_token();
    let cut = app.cut.clone();
    let service = m.service;
    app.tracker.spawn(async move {
        let Admitted { grants, permit } = admitted;
        let run = async move {
            match service {
                Service::Postmesh => {
                    loop_::run(transport, ctx, grants, loop_::Options::default(), cancel).await
                }
                Service::Close => {
                    let mut t = transport;
                    let _ = t.send(Outbound::Close(3000, "Go away!".into())).await;
                }
                _ => echo(transport, cancel).await,
            }
        };
        tokio::select! {
            _ = run => {}
            _ = cut.cancelled() => {}
        }
        drop(permit);
    });
    shared
}

/// The suite's `echo`: every message back as it came.
async fn echo(mut t: SockjsTransport, cancel: tokio_util::sync::CancellationToken) {
    loop {
        let next = tokio::select! {
            _ = cancel.cancelled() => {
                let _ = t.send(Outbound::Close(1001, "going away".into())).await;
                return;
            }
            n = t.next() => n,
        };
        match next {
            None => return,
            Some(Inbound::Text(f)) => {
                if t.send(Outbound::Text(f)).await.is_err() {
                    return;
                }
            }
            Some(_) => {}
        }
    }
}

/// Encodes a JSON string as SockJS sends it: besides what JSON escapes, the
/// characters some browsers mangle are written as `\uXXXX`.
fn quote(s: &str, out: &mut String) {
    let json = serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    for c in json.chars() {
        let u = c as u32;
        if matches!(u, 0x200c..=0x200f | 0x2028..=0x202f | 0x2060..=0x206f | 0xfff0..=0xffff) {
            out.push_str(&format!("\\u{u:04x}"));
        } else {
            out.push(c);
        }
    }
}

/// `a["..",".."]`.
fn array_frame(messages: &[Frame]) -> String {
    let mut out = String::with_capacity(messages.iter().map(|m| m.len() + 3).sum::<usize>() + 3);
    out.push_str("a[");
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        quote(m.as_str(), &mut out);
    }
    out.push(']');
    out
}

fn close_frame(code: u16, reason: &str) -> String {
    let mut out = format!("c[{code},");
    quote(reason, &mut out);
    out.push(']');
    out
}

/// Reads a client's messages: a JSON array of strings (or one string).
/// Each becomes a frame for the session; one over `max` bytes is refused
/// in its place.
fn parse_messages(body: &[u8], max: usize) -> Result<Vec<Inbound>, ()> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Messages {
        Many(Vec<String>),
        One(String),
    }
    let list = match serde_json::from_slice::<Messages>(body).map_err(|_| ())? {
        Messages::Many(v) => v,
        Messages::One(s) => vec![s],
    };
    Ok(list
        .into_iter()
        .map(|s| {
            if s.len() > max {
                Inbound::TooBig
            } else {
                Inbound::Text(Frame::from(s))
            }
        })
        .collect())
}

async fn send(app: &Arc<App>, m: &Mount, id: &str, jsonp: bool, req: Request) -> Response {
    let Some(shared) = m.sessions.lock().get(id).cloned() else {
        return not_found();
    };
    let form = req.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes()
            .starts_with(b"application/x-www-form-urlencoded")
    });
    let within = Duration::from_secs(app.ctx.config.body_timeout_secs);
    let read = axum::body::to_bytes(req.into_body(), app.max_body_bytes);
    let body: Bytes = match tokio::time::timeout(within, read).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::TooLarge,
                "request body too large",
            );
        }
        Err(_) => {
            return error_response(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::Timeout,
                "request body not received in time",
            );
        }
    };
    let payload: Vec<u8> = if jsonp && form {
        let d = body
            .split(|b| *b == b'&')
            .find_map(|kv| kv.strip_prefix(b"d="));
        match d {
            Some(v) => {
                let v: Vec<u8> = v
                    .iter()
                    .map(|b| if *b == b'+' { b' ' } else { *b })
                    .collect();
                percent_encoding::percent_decode(&v).collect()
            }
            None => Vec::new(),
        }
    } else {
        body.to_vec()
    };
    if payload.is_empty() {
        return protocol_error(StatusCode::INTERNAL_SERVER_ERROR, "Payload expected.");
    }
    let Ok(frames) = parse_messages(&payload, app.ctx.config.max_frame_bytes) else {
        return protocol_error(StatusCode::INTERNAL_SERVER_ERROR, "Broken JSON encoding.");
    };
    if !shared.deliver(frames).await {
        return not_found();
    }
    if jsonp {
        text(StatusCode::OK, "text/plain; charset=UTF-8", "ok")
    } else {
        text(
            StatusCode::NO_CONTENT,
            "text/plain; charset=UTF-8",
            Body::empty(),
        )
    }
}

/// How a receiving request writes frames.
#[derive(Clone)]
struct Writer {
    kind: Receiver,
    callback: String,
}

impl Writer {
    fn content_type(&self) -> &'static str {
        match self.kind {
            Receiver::Xhr | Receiver::XhrStreaming | Receiver::Jsonp => {
                "application/javascript; charset=UTF-8"
            }
            Receiver::EventSource => "text/event-stream; charset=UTF-8",
            Receiver::HtmlFile => "text/html; charset=UTF-8",
        }
    }

    fn prelude(&self) -> Option<String> {
        match self.kind {
            Receiver::XhrStreaming => Some(format!("{}\n", "h".repeat(2048))),
            Receiver::EventSource => Some("\r\n".into()),
            Receiver::HtmlFile => {
                let mut p = format!(
                    "<!doctype html>\n<html><head>\n  <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n  <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n</head><body><h2>Don't panic!</h2>\n  <script>\n    document.domain = document.domain;\n    var c = parent.{};\n    c.start();\n    function p(d) {{c.message(d);}};\n    window.onload = function() {{c.stop();}};\n  </script>",
                    self.callback
                );
                let pad = 1024usize.saturating_sub(p.len());
                p.push_str(&" ".repeat(pad));
                p.push_str("\r\n\r\n");
                Some(p)
            }
            Receiver::Xhr | Receiver::Jsonp => None,
        }
    }

    fn frame(&self, f: &str) -> String {
        match self.kind {
            Receiver::Xhr | Receiver::XhrStreaming => format!("{f}\n"),
            Receiver::EventSource => format!("data: {f}\r\n\r\n"),
            Receiver::HtmlFile => {
                let mut out = String::from("<script>\np(");
                quote(f, &mut out);
                out.push_str(");\n</script>\r\n");
                out
            }
            Receiver::Jsonp => {
                let mut out = format!("{}(", self.callback);
                quote(f, &mut out);
                out.push_str(");\r\n");
                out
            }
        }
    }
}

/// A callback name a page may give (`c=`): letters, digits, `_` and `.`.
fn valid_callback(c: &str) -> bool {
    !c.is_empty()
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

fn receive(app: &Arc<App>, m: &Mount, id: String, kind: Receiver, req: &Request) -> Response {
    let callback = if matches!(kind, Receiver::HtmlFile | Receiver::Jsonp) {
        match query_param(req, "c") {
            None => {
                return protocol_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "\"callback\" parameter required",
                );
            }
            Some(c) if !valid_callback(&c) => {
                return protocol_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "invalid \"callback\" parameter",
                );
            }
            Some(c) => c,
        }
    } else {
        String::new()
    };
    let existing = m.sessions.lock().get(&id).cloned();
    let (shared, opened) = match existing {
        Some(s) => (s, false),
        None => {
            let token = query_param(req, "token");
            let admitted = match app.admission.admit(&app.ctx.authority, token.as_deref()) {
                Ok(a) => a,
                Err(refused) => return refused.into_response(),
            };
            let s = start(app, m, admitted);
            m.sessions.lock().insert(id, s.clone());
            (s, true)
        }
    };
    let writer = Writer { kind, callback };
    let limit = if kind.streaming() {
        m.config.response_limit
    } else {
        0
    };
    let heartbeat = Duration::from_secs(m.config.heartbeat_secs.max(1));
    let content_type = writer.content_type();
    let body = stream_body(shared, writer, opened, limit, heartbeat);
    text(StatusCode::OK, content_type, Body::from_stream(body))
}

/// The receiving request's side: detaches when dropped; dropped before it
/// was done, it interrupts the session.
struct Attached {
    shared: Arc<Shared>,
    attached: bool,
    done: bool,
}

impl Drop for Attached {
    fn drop(&mut self) {
        if self.attached {
            self.shared.detach(!self.done);
        }
    }
}

/// 25 ms steps a receiving request waits for the one before it to be
/// found gone (the server learns of an abandoned request only when the
/// connection's end is read) before it is refused with 2010.
const ABANDONED_GRACE_STEPS: usize = 12;

/// How long a poll waits, once it has something, for more to join it.
const POLL_COALESCE: Duration = Duration::from_millis(5);

enum Step {
    Prelude,
    Open,
    Attach,
    Loop,
    Finished,
}

fn stream_body(
    shared: Arc<Shared>,
    writer: Writer,
    opened: bool,
    limit: usize,
    heartbeat: Duration,
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
    let state = (
        Attached {
            shared,
            attached: false,
            done: false,
        },
        writer,
        Step::Prelude,
        0usize,
        opened,
    );
    futures_util::stream::unfold(
        state,
        move |(mut a, w, step, mut written, opened)| async move {
            let mut out = String::new();
            let next = match step {
                Step::Finished => return None,
                Step::Prelude => {
                    if let Some(p) = w.prelude() {
                        out.push_str(&p);
                    }
                    if opened { Step::Open } else { Step::Attach }
                }
                Step::Open => {
                    out.push_str(&w.frame("o"));
                    if w.kind.streaming() {
                        Step::Attach
                    } else {
                        Step::Finished
                    }
                }
                Step::Attach => {
                    // A request the device just abandoned may not have been
                    // noticed yet: give it a moment before refusing this one.
                    let mut attached = a.shared.attach();
                    for _ in 0..ABANDONED_GRACE_STEPS {
                        if attached || a.shared.is_closed() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(25)).await;
                        attached = a.shared.attach();
                    }
                    if !attached && !a.shared.is_closed() {
                        out.push_str(&w.frame(&close_frame(2010, "Another connection still open")));
                        Step::Finished
                    } else {
                        a.attached = true;
                        Step::Loop
                    }
                }
                Step::Loop => loop {
                    if !w.kind.streaming() {
                        // A poll answers once: let frames the session is
                        // writing at this moment join the answer.
                        tokio::time::sleep(POLL_COALESCE).await;
                    }
                    match a.shared.take() {
                        Taken::Messages(frames) => {
                            out.push_str(&w.frame(&array_frame(&frames)));
                            written += out.len();
                            if !w.kind.streaming() || written >= limit {
                                a.done = true;
                                break Step::Finished;
                            }
                            break Step::Loop;
                        }
                        Taken::Closed(code, reason) => {
                            out.push_str(&w.frame(&close_frame(code, &reason)));
                            a.done = true;
                            break Step::Finished;
                        }
                        Taken::Empty => {
                            tokio::select! {
                                _ = a.shared.changed() => continue,
                                _ = tokio::time::sleep(heartbeat) => {
                                    out.push_str(&w.frame("h"));
                                    if w.kind.streaming() {
                                        break Step::Loop;
                                    }
                                    a.done = true;
                                    break Step::Finished;
                                }
                            }
                        }
                    }
                },
            };
            if matches!(next, Step::Finished) && a.attached {
                a.done = true;
            }
            Some((Ok(Bytes::from(out)), (a, w, next, written, opened)))
        },
    )
}

/// `/<server>/<session>/websocket` (SockJS framing) or `/websocket` (raw:
/// each WebSocket message is one message).
async fn websocket(
    app: Arc<App>,
    m: Arc<Mount>,
    mut req: Request,
    framed: Option<String>,
) -> Response {
    if req.method() != Method::GET {
        return method_not_allowed("GET");
    }
    let h = req.headers();
    let has = |name: header::HeaderName, token: &str| {
        h.get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|v| v.trim().eq_ignore_ascii_case(token))
    };
    if !has(header::UPGRADE, "websocket") {
        return protocol_error(
            StatusCode::BAD_REQUEST,
            "Can \"Upgrade\" only to \"WebSocket\".",
        );
    }
    if !has(header::CONNECTION, "upgrade") {
        return protocol_error(
            StatusCode::BAD_REQUEST,
            "\"Connection\" must be \"Upgrade\".",
        );
    }
    let Some(key) = h.get(header::SEC_WEBSOCKET_KEY) else {
        return protocol_error(StatusCode::BAD_REQUEST, "Missing Sec-WebSocket-Key.");
    };
    let accept = derive_accept_key(key.as_bytes());
    let token = query_param(&req, "token");
    let admitted = match app.admission.admit(&app.ctx.authority, token.as_deref()) {
        Ok(a) => a,
        Err(refused) => return refused.into_response(),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let config = crate::ws::ws_config(&app.ctx.config);
    let shared = start(&app, &m, admitted);
    let heartbeat = Duration::from_secs(m.config.heartbeat_secs.max(1));
    let max = app.ctx.config.max_frame_bytes;
    let cut = app.cut.clone();
    app.tracker.spawn(async move {
        let pump = async {
            let Ok(upgraded) = on_upgrade.await else {
                shared.end();
                return;
            };
            let ws = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(config),
            )
            .await;
            pump(ws, &shared, framed.is_some(), heartbeat, max).await;
            shared.end();
        };
        tokio::select! {
            _ = pump => {}
            _ = cut.cancelled() => {}
        }
    });
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    res
}

/// Carries a session over one WebSocket until either side ends it.
async fn pump<S>(
    mut ws: WebSocketStream<S>,
    shared: &Shared,
    framed: bool,
    heartbeat: Duration,
    max: usize,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    shared.attach();
    if framed && ws.send(Message::text("o")).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Text(t))) => {
                    let frames = if !framed {
                        vec![if t.len() > max { Inbound::TooBig } else { Inbound::Text(Frame::from(t.as_str())) }]
                    } else if t.is_empty() {
                        continue;
                    } else {
                        match parse_messages(t.as_bytes(), max) {
                            Ok(f) => f,
                            // Broken JSON: the protocol drops the connection.
                            Err(()) => return,
                        }
                    };
                    if !shared.deliver(frames).await {
                        return;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    if !shared.deliver(vec![Inbound::Binary]).await {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            },
            _ = shared.changed() => match shared.take() {
                Taken::Messages(frames) => {
                    let sent = if framed {
                        ws.send(Message::text(array_frame(&frames))).await
                    } else {
                        let mut r = Ok(());
                        for f in frames {
                            r = ws.feed(Message::text(f.as_str())).await;
                            if r.is_err() { break; }
                        }
                        if r.is_ok() { ws.flush().await } else { r }
                    };
                    if sent.is_err() {
                        return;
                    }
                }
                Taken::Closed(code, reason) => {
                    if framed {
                        let _ = ws.send(Message::text(close_frame(code, &reason))).await;
                    }
                    let _ = ws.send(Message::Close(Some(CloseFrame {
                        code: CloseCode::from(code),
                        reason: reason.into(),
                    }))).await;
                    let _ = tokio::time::timeout(loop_::CLOSE_HANDSHAKE, async {
                        while let Some(Ok(_)) = ws.next().await {}
                    }).await;
                    return;
                }
                Taken::Empty => {}
            },
            _ = tokio::time::sleep(heartbeat), if framed => {
                if ws.send(Message::text("h")).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_encoded_as_the_protocol_has_them() {
        assert_eq!(
            array_frame(&[Frame::from("a"), Frame::from("{\"op\":\"ok\"}")]),
            r#"a["a","{\"op\":\"ok\"}"]"#
        );
        assert_eq!(close_frame(3000, "Go away!"), r#"c[3000,"Go away!"]"#);
        let mut s = String::new();
        quote("\u{2028}x\u{fff0}", &mut s);
        assert_eq!(s, r#""\u2028x\ufff0""#);
    }

    #[test]
    fn paths_and_names() {
        assert!(is_iframe("iframe.html") && is_iframe("iframe-0.1.2.html"));
        assert!(!is_iframe("iframe.htm") && !is_iframe("IFRAME.HTML"));
        assert!(valid_id("abc") && !valid_id("") && !valid_id("a."));
        assert!(valid_callback("x.y_1") && !valid_callback("x(1)") && !valid_callback(""));
        assert_eq!(
            httpdate(std::time::UNIX_EPOCH),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
        assert_eq!(
            httpdate(std::time::UNIX_EPOCH + Duration::from_secs(1_709_251_200)),
            "Fri, 01 Mar 2024 00:00:00 GMT"
        );
    }

    #[test]
    fn messages_are_a_json_array_of_strings() {
        let got = parse_messages(br#"["a","bb"]"#, 1).unwrap();
        assert!(matches!(&got[0], Inbound::Text(f) if f.as_str() == "a"));
        assert!(matches!(got[1], Inbound::TooBig));
        assert!(parse_messages(b"[\"x", 10).is_err());
        assert!(parse_messages(b"[1]", 10).is_err());
        assert_eq!(parse_messages(br#""one""#, 10).unwrap().len(), 1);
    }
}
