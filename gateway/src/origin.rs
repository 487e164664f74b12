//! Which browser pages may open a device connection, whatever its
//! transport (`/ws`, `/sockjs`): the one `Origin` rule.
//!
//! A browser sends `Origin` with every WebSocket handshake and every
//! cross-site request, and lets any site's page open a WebSocket to any
//! address. Without a check, a page on another site could drive a device
//! connection with whatever the browser reaches (a loopback gateway
//! without a secret, say). Clients that are not browsers send no
//! `Origin` and are always served: the token is their check.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use postmesh_schema::protocol::ErrorCode;

use crate::app::error_response;

/// A page whose origin `gateway.origins` does not allow.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error(
    "origin {origin:?} may not connect here: only the gateway's own pages may, \
     and those of the origins listed in gateway.origins"
)]
pub struct ForeignOrigin {
    /// The request's `Origin`.
    pub origin: String,
}

impl ForeignOrigin {
    /// `403 forbidden`, with a JSON `{code, message}` body.
    pub fn into_response(self) -> Response {
        error_response(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            &self.to_string(),
        )
    }
}

/// The request's `Origin`, if it may be served: none (not a browser), one
/// `origins` lists, any when it holds `"*"`, or, when `origins` is empty
/// (the default), only the page's own (its host is the `Host` asked).
pub fn check(origins: &[String], headers: &HeaderMap) -> Result<Option<String>, ForeignOrigin> {
    let Some(value) = headers.get(header::ORIGIN) else {
        return Ok(None);
    };
    let origin = String::from_utf8_lossy(value.as_bytes()).into_owned();
    let any = origins.iter().any(|o| o == "*");
    let listed = origins.iter().any(|o| o.eq_ignore_ascii_case(&origin));
    let own = origins.is_empty()
        && headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|host| {
                origin
                    .split_once("://")
                    .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host))
            });
    if any || listed || own {
        Ok(Some(origin))
    } else {
        Err(ForeignOrigin { origin })
    }
}

/// Whether `entry` can be an entry of `gateway.origins`: `"*"`, or
/// `scheme://host[:port]` as browsers send it (no path, no trailing `/`).
pub fn valid_entry(entry: &str) -> bool {
    if entry == "*" {
        return true;
    }
    let Some((scheme, rest)) = entry.split_once("://") else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', ' '])
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(host: &'static str, origin: Option<&'static str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static(host));
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_static(o));
        }
        h
    }

    #[test]
    fn by_default_only_the_gateways_own_pages() {
        let none: &[String] = &[];
        assert_eq!(check(none, &headers("gw:7400", None)), Ok(None));
        assert_eq!(
            check(none, &headers("gw:7400", Some("http://gw:7400"))),
            Ok(Some("http://gw:7400".into()))
        );
        assert_eq!(
            check(none, &headers("GW:7400", Some("https://gw:7400"))),
            Ok(Some("https://gw:7400".into()))
        );
        for foreign in ["https://evil.example", "http://gw:7401", "null", "gw:7400"] {
            let h = {
                let mut h = headers("gw:7400", None);
                h.insert(header::ORIGIN, HeaderValue::from_str(foreign).unwrap());
                h
            };
            assert_eq!(
                check(none, &h),
                Err(ForeignOrigin {
                    origin: foreign.into()
                }),
                "{foreign}"
            );
        }
    }

    #[test]
    fn a_list_replaces_the_default_and_star_allows_any() {
        let listed = vec!["https://app.example".to_owned()];
        let h = headers("gw:7400", Some("https://app.example"));
        assert!(check(&listed, &h).is_ok());
        let own = headers("gw:7400", Some("http://gw:7400"));
        assert!(check(&listed, &own).is_err(), "the list is the whole rule");
        let any = vec!["*".to_owned()];
        assert!(check(&any, &headers("gw", Some("https://evil.example"))).is_ok());
        let refused = check(&listed, &headers("gw", Some("https://evil.example"))).unwrap_err();
        assert_eq!(refused.into_response().status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn entries_are_origins() {
        for ok in ["*", "https://app.example", "http://127.0.0.1:8080"] {
            assert!(valid_entry(ok), "{ok}");
        }
        for bad in [
            "",
            "app.example",
            "https://",
            "https://app.example/",
            "://x",
        ] {
            assert!(!valid_entry(bad), "{bad}");
        }
    }
}
