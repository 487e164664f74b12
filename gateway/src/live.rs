//! The live page at `/live`: connect, subscribe, watch messages arrive,
//! publish, read history. It is `clients/js` in a browser: the page is
//! `gateway/web/live.html`, the client its bundle `gateway/web/postmesh.js`
//! (built by `npm run build` in `clients/js`, whose tests fail when the
//! copy here is not the current build).

use axum::http::{HeaderValue, header};
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

/// `GET /live`.
pub(crate) async fn page() -> Response {
    asset(PAGE, "text/html; charset=utf-8")
}

/// `GET /live/postmesh.js`.
pub(crate) async fn bundle() -> Response {
    asset(BUNDLE, "text/javascript; charset=utf-8")
}
