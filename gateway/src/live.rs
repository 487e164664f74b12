//! The live page at `/`: connect, subscribe, watch messages arrive,
//! publish, read history. It is `clients/js` in a browser: the page is
//! `gateway/web/live.html`, the client its bundle `gateway/web/postmesh.js`
//! at `/postmesh.js` (built by `npm run build` in `clients/js`, whose tests
//! fail when the copy here is not the current build). The page's first
//! address, `/live`, and its bundle's, `/live/postmesh.js`, redirect here,
//! so links to them keep working.

use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("../web/live.html");
const BUNDLE: &str = include_str!("../web/postmesh.js");

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// `GET /`.
pub(crate) async fn page() -> Response {
    asset(PAGE, "text/html; charset=utf-8")
}

/// `GET /postmesh.js`.
pub(crate) async fn bundle() -> Response {
    asset(BUNDLE, "text/javascript; charset=utf-8")
}

/// `GET /live` and `GET /live/postmesh.js`: a permanent redirect to `/`
/// or `/postmesh.js`, with the query string kept (the page reads
/// `?transport=&pattern=&token=` from it).
pub(crate) async fn moved(uri: Uri) -> Response {
    let to = match uri.path() {
        "/live/postmesh.js" => "/postmesh.js",
        _ => "/",
    };
    let location = match uri.query() {
        Some(q) => format!("{to}?{q}"),
        None => to.to_owned(),
    };
    let mut r = StatusCode::PERMANENT_REDIRECT.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}
