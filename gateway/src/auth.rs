//! Tokens and what they grant.
//!
//! A token is a JWT signed with HS256. Claims: `sub` (numeric user id, as a
//! number or a decimal string), `exp` (required), `subs` (patterns the
//! bearer may subscribe to and read history of) and `pubs` (patterns of
//! paths the bearer may publish to). A user may always read its own id
//! paths, `id.*.<base62 split of sub>`.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use postmesh_schema::{Path, Pattern, idpath};
use serde::{Deserialize, Deserializer, Serialize};

/// The claims postmesh reads and writes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// User id.
    #[serde(
        default,
        deserialize_with = "user_id",
        skip_serializing_if = "Option::is_none"
    )]
    pub sub: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Not before: the token is refused until then (seconds since the
    /// Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Patterns the bearer may subscribe to and read.
    #[serde(default)]
    pub subs: Vec<String>,
    /// Patterns of paths the bearer may publish to.
    #[serde(default)]
    pub pubs: Vec<String>,
}

fn user_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        N(u64),
        S(String),
    }
    Ok(Option::<Id>::deserialize(d)?.map(|id| match id {
        Id::N(n) => n.to_string(),
        Id::S(s) => s,
    }))
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    #[error("this server has no secret configured, so tokens cannot be checked")]
    NoSecret,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet (nbf is in the future)")]
    NotYetValid,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token claim {0} is invalid: {1}")]
    Claim(&'static str, String),
}

/// What a connection or request may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    /// The authenticated user, if any.
    pub user: Option<u64>,
    /// Everything is allowed: anonymous access on a server without a secret.
    pub all: bool,
    subs: Vec<Pattern>,
    pubs: Vec<Pattern>,
    /// Token expiry (seconds since the epoch).
    pub exp: Option<u64>,
}

impl Grants {
    /// Anonymous access on a server without a secret: everything.
    pub fn open() -> Grants {
        Grants {
            user: None,
            all: true,
            subs: Vec::new(),
            pubs: Vec::new(),
            exp: None,
        }
    }

    /// Not authenticated on a server with a secret: nothing.
    pub fn none() -> Grants {
        Grants {
            all: false,
            ..Grants::open()
        }
    }

    /// True when neither anonymous-open nor authenticated.
    pub fn is_unauthenticated(&self) -> bool {
        !self.all
            && self.user.is_none()
            && self.subs.is_empty()
            && self.pubs.is_empty()
            && self.exp.is_none()
    }

    /// May subscribe to (and read history of) `pattern`: some granted
    /// pattern covers it, or it lies within the user's own id paths.
    pub fn can_read(&self, pattern: &Pattern) -> bool {
        if self.all {
            return true;
        }
        if let Some(user) = self.user
            && let Ok(own) = Pattern::parse(&idpath::user_pattern(user))
            && own.covers(pattern)
        {
            return true;
        }
        self.subs.iter().any(|g| g.covers(pattern))
    }

    /// May publish to `path`.
    pub fn can_publish(&self, path: &Path) -> bool {
        self.all || self.pubs.iter().any(|g| g.matches(path))
    }
}

/// Checks and issues tokens.
#[derive(Clone)]
pub struct Authority {
    keys: Option<(EncodingKey, DecodingKey)>,
    validation: Validation,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("secret", &self.keys.is_some())
            .finish()
    }
}

impl Authority {
    /// An authority for `secret`; `None` means anonymous access.
    pub fn new(secret: Option<&str>) -> Authority {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_nbf = true;
        Authority {
            keys: secret.map(|s| {
                (
                    EncodingKey::from_secret(s.as_bytes()),
                    DecodingKey::from_secret(s.as_bytes()),
                )
            }),
            validation,
        }
    }

    /// Whether tokens are required.
    pub fn has_secret(&self) -> bool {
        self.keys.is_some()
    }

    /// The grants of a connection or request that presented no token.
    pub fn anonymous(&self) -> Grants {
        if self.has_secret() {
            Grants::none()
        } else {
            Grants::open()
        }
    }

    /// Verifies a token and turns its claims into grants.
    pub fn verify(&self, token: &str) -> Result<Grants, AuthError> {
        let (_, key) = self.keys.as_ref().ok_or(AuthError::NoSecret)?;
        let data =
            jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(|e| {
                match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                    jsonwebtoken::errors::ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                    _ => AuthError::Invalid(e.to_string()),
                }
            })?;
        let c = data.claims;
        let user = c
            .sub
            .as_deref()
            .map(|s| idpath::parse_decimal(s).map_err(|e| AuthError::Claim("sub", e.to_string())))
            .transpose()?;
        let patterns = |name: &'static str, list: &[String]| -> Result<Vec<Pattern>, AuthError> {
            list.iter()
                .map(|p| {
                    Pattern::parse(p).map_err(|e| AuthError::Claim(name, format!("{p:?}: {e}")))
                })
                .collect()
        };
        Ok(Grants {
            user,
            all: false,
            subs: patterns("subs", &c.subs)?,
            pubs: patterns("pubs", &c.pubs)?,
            exp: Some(c.exp),
        })
    }

    /// Signs claims into a token.
    pub fn issue(&self, claims: &Claims) -> Result<String, AuthError> {
        let (key, _) = self.keys.as_ref().ok_or(AuthError::NoSecret)?;
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, key)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }
}

/// Issues a token with `secret` (the CLI's `postmesh token`).
pub fn issue_token(secret: &str, claims: &Claims) -> Result<String, AuthError> {
    Authority::new(Some(secret)).issue(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn far() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600
    }

    #[test]
    fn round_trip_and_grants() {
        let a = Authority::new(Some("s3cret"));
        let t = a
            .issue(&Claims {
                sub: Some("9067832".into()),
                exp: far(),
                nbf: None,
                subs: vec!["feeds.#".into()],
                pubs: vec!["feeds.*.56".into()],
            })
            .unwrap();
        let g = a.verify(&t).unwrap();
        assert_eq!(g.user, Some(9067832));
        assert!(g.can_read(&Pattern::parse("feeds.breaking-news.#").unwrap()));
        assert!(!g.can_read(&Pattern::parse("#").unwrap()));
        assert!(
            g.can_read(&Pattern::parse("id.prefs.c.2.x.M").unwrap()),
            "own id paths"
        );
        assert!(g.can_read(&Pattern::parse("id.*.c.2.x.M").unwrap()));
        assert!(!g.can_read(&Pattern::parse("id.*.c.2.x.N").unwrap()));
        assert!(g.can_publish(&Path::parse("feeds.x.56").unwrap()));
        assert!(!g.can_publish(&Path::parse("feeds.x.57").unwrap()));
    }

    #[test]
    fn refusals() {
        let a = Authority::new(Some("s3cret"));
        let b = Authority::new(Some("other"));
        let claims = Claims {
            sub: Some("1".into()),
            exp: far(),
            nbf: None,
            subs: vec![],
            pubs: vec![],
        };
        let t = b.issue(&claims).unwrap();
        assert!(matches!(a.verify(&t), Err(AuthError::Invalid(_))));
        let old = a
            .issue(&Claims {
                exp: 1_000,
                nbf: None,
                ..claims.clone()
            })
            .unwrap();
        assert_eq!(a.verify(&old), Err(AuthError::Expired));
        let bad = a
            .issue(&Claims {
                sub: Some("x".into()),
                ..claims.clone()
            })
            .unwrap();
        assert!(matches!(a.verify(&bad), Err(AuthError::Claim("sub", _))));
        assert_eq!(Authority::new(None).verify(&t), Err(AuthError::NoSecret));
        assert!(a.verify("garbage").is_err());
        assert!(a.anonymous().is_unauthenticated());
        assert!(Authority::new(None).anonymous().all);
    }

    #[test]
    fn numeric_sub_claim() {
        let a = Authority::new(Some("k"));
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": 42, "exp": far()}),
            &EncodingKey::from_secret(b"k"),
        )
        .unwrap();
        assert_eq!(a.verify(&token).unwrap().user, Some(42));
    }

    #[test]
    fn a_token_is_refused_before_its_nbf() {
        let a = Authority::new(Some("k"));
        let token = |nbf: u64| {
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &serde_json::json!({"exp": far(), "nbf": nbf}),
                &EncodingKey::from_secret(b"k"),
            )
            .unwrap()
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert_eq!(a.verify(&token(now + 3600)), Err(AuthError::NotYetValid));
        assert!(a.verify(&token(now - 60)).is_ok());
    }
}
