//! Query parameters, read strictly. axum's `Query` answers a query string
//! it cannot read (a duplicated parameter, say) in `text/plain`, and
//! decodes percent-encoding that is not UTF-8 lossily (`%FF` becomes
//! U+FFFD), so `?pattern=%FF%FE` read a pattern nobody sent. [`Params`]
//! refuses both with the documented `{"code","message"}` JSON.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::response::Response;
use percent_encoding::percent_decode_str;
use postmesh_schema::protocol::ErrorCode;
use serde::de::DeserializeOwned;

use crate::app::error_response;

/// Query parameters deserialized into `T`. A refusal is a JSON error:
/// `bad_pattern` for a `pattern` that is not UTF-8, `bad_frame` otherwise.
pub(crate) struct Params<T>(pub T);

impl<T, S> FromRequestParts<S> for Params<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        if let Err(e) = check_utf8(parts.uri.query().unwrap_or_default()) {
            return Err(e.response());
        }
        match Query::<T>::try_from_uri(&parts.uri) {
            Ok(Query(t)) => Ok(Params(t)),
            Err(e) => Err(error_response(
                e.status(),
                ErrorCode::BadFrame,
                &e.body_text(),
            )),
        }
    }
}

/// Longest part of a refused parameter quoted back in the message.
const QUOTE_BYTES: usize = 64;

/// A query parameter whose name or value does not percent-decode to UTF-8.
#[derive(Debug, PartialEq, Eq)]
struct NotUtf8 {
    /// The parameter's name (lossily decoded, if the name is the culprit).
    name: String,
    /// The name itself is not UTF-8.
    in_name: bool,
    /// What was sent, as it was sent (ASCII, as every query string is).
    raw: String,
}

impl NotUtf8 {
    fn response(&self) -> Response {
        let code = if !self.in_name && self.name == "pattern" {
            ErrorCode::BadPattern
        } else {
            ErrorCode::BadFrame
        };
        let what = if self.in_name {
            "a parameter name".to_owned()
        } else {
            self.name.clone()
        };
        error_response(
            axum::http::StatusCode::BAD_REQUEST,
            code,
            &format!(
                "{what}: {:?} is not percent-encoded UTF-8 (encode each character's UTF-8 bytes)",
                self.raw
            ),
        )
    }
}

/// Checks that every name and value of `query` percent-decodes to UTF-8.
fn check_utf8(query: &str) -> Result<(), NotUtf8> {
    let quote = |s: &str| {
        let mut end = s.len().min(QUOTE_BYTES);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s[..end].to_owned()
    };
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = percent_decode_str(name).decode_utf8();
        let Ok(decoded) = decoded else {
            return Err(NotUtf8 {
                name: percent_decode_str(name).decode_utf8_lossy().into_owned(),
                in_name: true,
                raw: quote(name),
            });
        };
        if percent_decode_str(value).decode_utf8().is_err() {
            return Err(NotUtf8 {
                name: decoded.replace('+', " "),
                in_name: false,
                raw: quote(value),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_must_decode_to_utf8() {
        for ok in [
            "",
            "pattern=feeds.%23",
            "pattern=caf%C3%A9&limit=5",
            "a=%EF%BF%BD",
            "flag&x=",
            "pattern=a+b",
            "%41=1",
        ] {
            assert_eq!(check_utf8(ok), Ok(()), "{ok}");
        }
        let e = check_utf8("limit=5&pattern=%FF%FE").unwrap_err();
        assert_eq!(
            (e.name.as_str(), e.in_name, e.raw.as_str()),
            ("pattern", false, "%FF%FE")
        );
        let e = check_utf8("pattern=feeds.%C3").unwrap_err();
        assert_eq!((e.name.as_str(), e.in_name), ("pattern", false));
        let e = check_utf8("%FF=1").unwrap_err();
        assert!(e.in_name);
        let long = format!("pattern={}", "%FF".repeat(100));
        assert_eq!(check_utf8(&long).unwrap_err().raw.len(), QUOTE_BYTES);
    }
}
