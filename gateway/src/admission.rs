//! Admitting a device connection, whatever its transport: its token is
//! checked, then it takes one of a bounded number of permits.
//!
//! Every transport (`/ws`, SockJS) calls [`Admission::admit`] before it
//! starts a session, so the rules are written once. The limit is a
//! semaphore rather than a look at the connection gauge: two upgrades
//! racing past a gauge could both see room for one, while a permit is
//! taken atomically and given back when the session's task drops it.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use postmesh_schema::protocol::ErrorCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::app::error_response;
use crate::auth::{AuthError, Authority, Grants};

/// The connection limit, shared by every transport.
#[derive(Debug, Clone)]
pub struct Admission {
    permits: Arc<Semaphore>,
}

/// A connection let in: what its token grants, and its place, held for as
/// long as the session runs.
#[derive(Debug)]
pub struct Admitted {
    pub grants: Grants,
    pub permit: OwnedSemaphorePermit,
}

/// Why a connection was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refused {
    /// The token was invalid, expired or not yet valid (HTTP 401).
    #[error("{0}")]
    Token(#[from] AuthError),
    /// Every permit is taken (HTTP 503).
    #[error("connection limit reached")]
    Full,
}

impl Refused {
    /// The HTTP answer: 401 `unauthorized` or 503 `unavailable`, with a
    /// JSON `{code, message}` body.
    pub fn into_response(self) -> Response {
        let (status, code) = match self {
            Refused::Token(_) => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized),
            Refused::Full => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable),
        };
        error_response(status, code, &self.to_string())
    }
}

impl Admission {
    /// Admits at most `max` connections at once.
    pub fn new(max: usize) -> Admission {
        Admission {
            permits: Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// Checks `token` (none: anonymous, which a server with a secret lets
    /// in with no grants, so the device can `auth` later), then takes a
    /// permit.
    pub fn admit(&self, authority: &Authority, token: Option<&str>) -> Result<Admitted, Refused> {
        let grants = connection_grants(authority, token)?;
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => {
                return Err(Refused::Full);
            }
        };
        Ok(Admitted { grants, permit })
    }

    /// Connections that could still be admitted.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

/// The grants a new connection starts with: from its token if it has one.
pub fn connection_grants(authority: &Authority, token: Option<&str>) -> Result<Grants, AuthError> {
    match token {
        Some(t) => authority.verify(t),
        None => Ok(authority.anonymous()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_bound_connections_and_come_back() {
        let a = Admission::new(2);
        let open = Authority::new(None);
        let one = a.admit(&open, None).unwrap();
        let two = a.admit(&open, None).unwrap();
        assert!(one.grants.all);
        assert_eq!(a.admit(&open, None).unwrap_err(), Refused::Full);
        drop(two);
        let three = a.admit(&open, None).unwrap();
        assert_eq!(a.available(), 0);
        drop((one, three));
        assert_eq!(a.available(), 2);
    }

    #[test]
    fn a_bad_token_is_refused_before_a_permit_is_taken() {
        let a = Admission::new(1);
        let secret = Authority::new(Some("k"));
        assert!(matches!(
            a.admit(&secret, Some("garbage")),
            Err(Refused::Token(AuthError::Invalid(_)))
        ));
        assert_eq!(a.available(), 1);
        let anon = a.admit(&secret, None).unwrap();
        assert!(anon.grants.is_unauthenticated());
    }
}
