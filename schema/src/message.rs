//! The message: an envelope (path, v1 UUID, class of service, meta headers)
//! around an opaque body.
//!
//! The UUID is the message's identity. It is a version-1 (time-based) UUID,
//! so its timestamp orders a folder newest first, and publishing the same
//! UUID twice is the same message (idempotence: "if in doubt, resend").
//!
//! # Wire and stored form
//! One JSON object: `{"path":..,"uuid":..,"class":..,"meta":{..},"body":..}`,
//! with `"cursor"` after the UUID once a store has put it (see [`Cursor`]).
//! A binary body travels as `"body_base64":".."` instead of `"body"`; an
//! absent body has neither field. `"body": null` is read as no body.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::cursor::Cursor;
use crate::path::{Limits, Path, PathError};
pub use crate::v1::{
    new_v1, now_ticks, time_key, uuid_from_time_key, v1_from_parts, v1_ticks, v1_unix_millis,
};

/// Class of service, from the design: gold messages are replicated and
/// raced, silver ones are prioritised, bronze ones may queue under load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Gold,
    #[default]
    Silver,
    Bronze,
}

impl Class {
    /// The lowercase name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Gold => "gold",
            Class::Silver => "silver",
            Class::Bronze => "bronze",
        }
    }
}

/// The opaque body. The mesh never looks inside it.
#[derive(Debug, Clone, Default)]
pub enum Body {
    /// No body: the event itself is the information.
    #[default]
    None,
    /// Any JSON value, kept as the exact text the publisher sent.
    Json(Box<RawValue>),
    /// Arbitrary bytes.
    Binary(Bytes),
}

impl PartialEq for Body {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Body::None, Body::None) => true,
            (Body::Json(a), Body::Json(b)) => a.get() == b.get(),
            (Body::Binary(a), Body::Binary(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Body {}

impl Body {
    /// A JSON body from a value. JSON `null` is no body, as on the wire.
    pub fn json(value: &Value) -> Body {
        if value.is_null() {
            return Body::None;
        }
        Body::Json(
            RawValue::from_string(value.to_string()).expect("a Value serializes to valid JSON"),
        )
    }

    /// The body as a JSON value, if it is JSON.
    pub fn as_json(&self) -> Option<Value> {
        match self {
            Body::Json(raw) => serde_json::from_str(raw.get()).ok(),
            _ => None,
        }
    }

    /// Size in bytes as stored.
    pub fn len(&self) -> usize {
        match self {
            Body::None => 0,
            Body::Json(raw) => raw.get().len(),
            Body::Binary(b) => b.len(),
        }
    }

    /// True when there is no body or it is zero bytes long.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a message could not be built or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    #[error("bad path: {0}")]
    Path(#[from] PathError),
    #[error("'{0}' is not a UUID")]
    Uuid(String),
    #[error("uuid {0} is version {1}, but message ids are version 1 (time-based)")]
    UuidVersion(Uuid, usize),
    #[error("meta must be a JSON object")]
    Meta,
    #[error("body and body_base64 are exclusive")]
    TwoBodies,
    #[error("body_base64 is not valid base64")]
    Base64,
    #[error("malformed message: {0}")]
    Json(#[from] serde_json::Error),
}

/// A message in the mesh. Two messages are equal when their contents are:
/// the cursor says where a store put one, not what it is.
#[derive(Debug, Clone)]
pub struct Message {
    pub path: Path,
    pub uuid: Uuid,
    pub class: Class,
    pub meta: Map<String, Value>,
    pub body: Body,
    /// Where a store put it ([`Cursor`]); `None` until it is stored. Not
    /// part of the message's identity: another store (another core or
    /// region) puts the same message at its own position.
    pub cursor: Option<Cursor>,
}

impl PartialEq for Message {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
            && self.uuid == other.uuid
            && self.class == other.class
            && self.meta == other.meta
            && self.body == other.body
    }
}

impl Eq for Message {}

impl Message {
    /// A new message with a fresh v1 UUID, silver class, no meta.
    pub fn new(path: Path, body: Body) -> Message {
        Message {
            path,
            uuid: new_v1(),
            class: Class::default(),
            meta: Map::new(),
            body,
            cursor: None,
        }
    }

    /// The stored and wire JSON form.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96 + self.path.as_str().len() + self.body.len());
        self.write_json_fields(&mut out);
        out.push(b'}');
        out
    }

    /// Writes `{"path":..,...` without the closing brace, so frames can
    /// append their own fields or prefix an `op` without re-encoding.
    pub fn write_json_fields(&self, out: &mut Vec<u8>) {
        self.write_json_fields_at(out, self.cursor.as_ref());
    }

    /// [`write_json_fields`](Message::write_json_fields) with `cursor` in
    /// place of the message's own.
    pub fn write_json_fields_at(&self, out: &mut Vec<u8>, cursor: Option<&Cursor>) {
        out.extend_from_slice(b"{\"path\":");
        serde_json::to_writer(&mut *out, self.path.as_str()).expect("writing to a Vec cannot fail");
        out.extend_from_slice(b",\"uuid\":\"");
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        out.extend_from_slice(self.uuid.hyphenated().encode_lower(&mut buf).as_bytes());
        if let Some(c) = cursor {
            out.extend_from_slice(b"\",\"cursor\":\"");
            out.extend_from_slice(c.as_uuid().hyphenated().encode_lower(&mut buf).as_bytes());
        }
        out.extend_from_slice(b"\",\"class\":\"");
        out.extend_from_slice(self.class.as_str().as_bytes());
        out.extend_from_slice(b"\",\"meta\":");
        serde_json::to_writer(&mut *out, &self.meta).expect("writing to a Vec cannot fail");
        match &self.body {
            Body::None => {}
            Body::Json(raw) => {
                out.extend_from_slice(b",\"body\":");
                out.extend_from_slice(raw.get().as_bytes());
            }
            Body::Binary(bytes) => {
                out.extend_from_slice(b",\"body_base64\":\"");
                out.extend_from_slice(BASE64.encode(bytes).as_bytes());
                out.push(b'"');
            }
        }
    }

    /// Reads the stored / wire JSON form (extra fields such as `op` are
    /// ignored), validating the path with `limits`.
    pub fn from_json(bytes: &[u8], limits: &Limits) -> Result<Message, MessageError> {
        let draft: Draft<'_> = serde_json::from_slice(bytes)?;
        let uuid = draft
            .uuid
            .ok_or_else(|| MessageError::Uuid(String::new()))?;
        let cursor = draft
            .cursor
            .map(|c| {
                c.parse::<Cursor>()
                    .map_err(|_| MessageError::Uuid(c.to_owned()))
            })
            .transpose()?;
        let mut m = draft.into_message(Some(uuid), limits)?;
        m.cursor = cursor;
        Ok(m)
    }

    /// What counts against `max_message_bytes`: the body's bytes (a binary
    /// body before base64) plus the meta's JSON.
    pub fn size(&self) -> usize {
        let meta = if self.meta.is_empty() {
            0
        } else {
            serde_json::to_vec(&self.meta).map(|v| v.len()).unwrap_or(0)
        };
        self.body.len() + meta
    }

    /// The UUID's timestamp ordering key, see [`time_key`].
    pub fn time_key(&self) -> [u8; 16] {
        time_key(&self.uuid)
    }
}

/// A message as a publisher describes it: everything optional except the
/// path. Shared by the WebSocket `pub` frame, the HTTP API and the CLI.
#[derive(Debug, Deserialize)]
pub struct Draft<'a> {
    #[serde(borrow)]
    pub path: std::borrow::Cow<'a, str>,
    #[serde(default)]
    pub uuid: Option<&'a str>,
    #[serde(default)]
    pub class: Option<Class>,
    #[serde(default)]
    pub meta: Option<Value>,
    #[serde(default, borrow)]
    pub body: Option<&'a RawValue>,
    #[serde(default)]
    pub body_base64: Option<&'a str>,
    /// Read from the wire form of a stored message; a publisher's is
    /// ignored (the store assigns it).
    #[serde(default)]
    pub cursor: Option<&'a str>,
}

impl Draft<'_> {
    /// Validates and builds the message. `uuid` overrides the draft's own
    /// (pass `self.uuid`); when both are absent a fresh v1 UUID is assigned.
    pub fn into_message(
        self,
        uuid: Option<&str>,
        limits: &Limits,
    ) -> Result<Message, MessageError> {
        let path = Path::parse_with(&self.path, limits)?;
        let uuid = match uuid.or(self.uuid) {
            Some(s) => parse_v1(s)?,
            None => new_v1(),
        };
        let meta = match self.meta {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(_) => return Err(MessageError::Meta),
        };
        let body = match (self.body, self.body_base64) {
            (Some(_), Some(_)) => return Err(MessageError::TwoBodies),
            (Some(raw), None) if raw.get() == "null" => Body::None,
            (Some(raw), None) => Body::Json(raw.to_owned()),
            (None, Some(b64)) => {
                Body::Binary(BASE64.decode(b64).map_err(|_| MessageError::Base64)?.into())
            }
            (None, None) => Body::None,
        };
        Ok(Message {
            path,
            uuid,
            class: self.class.unwrap_or_default(),
            meta,
            body,
            cursor: None,
        })
    }
}

/// Parses a UUID and insists on version 1.
pub fn parse_v1(s: &str) -> Result<Uuid, MessageError> {
    let uuid = Uuid::parse_str(s).map_err(|_| MessageError::Uuid(s.to_owned()))?;
    match uuid.get_version_num() {
        1 => Ok(uuid),
        v => Err(MessageError::UuidVersion(uuid, v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    #[test]
    fn v1_ids_are_unique_ordered_and_version_1() {
        let ids: Vec<Uuid> = (0..10_000).map(|_| new_v1()).collect();
        for w in ids.windows(2) {
            assert!(time_key(&w[0]) < time_key(&w[1]));
        }
        assert!(ids.iter().all(|u| u.get_version_num() == 1));
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(v1_unix_millis(&ids[0]).abs_diff(now_ms) < 5_000);
    }

    #[test]
    fn time_key_round_trips() {
        for _ in 0..100 {
            let u = new_v1();
            assert_eq!(uuid_from_time_key(&time_key(&u)), u);
        }
        let design = Uuid::parse_str("bd1961f5-1062-11e4-a630-406c8f1838fa").unwrap();
        assert_eq!(uuid_from_time_key(&time_key(&design)), design);
        let older = Uuid::parse_str("b94e8b45-1062-11e4-900d-406c8f1838fa").unwrap();
        assert!(time_key(&older) < time_key(&design));
    }

    #[test]
    fn json_round_trip_every_body_kind() {
        let limits = Limits::default();
        let path = Path::parse("feeds.breaking-news.56").unwrap();
        let bodies = [
            Body::None,
            Body::json(&serde_json::json!({"headline": "x", "n": [1, 2.5, null]})),
            Body::json(&serde_json::json!("just a string")),
            Body::Binary(Bytes::from_static(&[0, 159, 146, 150, 255])),
        ];
        for body in bodies {
            let mut m = Message::new(path.clone(), body);
            m.class = Class::Gold;
            m.meta.insert("source".into(), "wire".into());
            let back = Message::from_json(&m.to_json(), &limits).unwrap();
            assert_eq!(back, m);
        }
    }

    #[test]
    fn drafts_validate() {
        let limits = Limits::default();
        let d = |s: &str| {
            serde_json::from_str::<Draft<'_>>(s)
                .unwrap()
                .into_message(None, &limits)
        };
        assert!(matches!(
            d(r#"{"path":"a..b"}"#),
            Err(MessageError::Path(_))
        ));
        assert!(matches!(
            d(r#"{"path":"a","uuid":"nope"}"#),
            Err(MessageError::Uuid(_))
        ));
        assert!(matches!(
            d(r#"{"path":"a","uuid":"67e55044-10b1-426f-9247-bb680e5fe0c8"}"#),
            Err(MessageError::UuidVersion(_, 4))
        ));
        assert!(matches!(
            d(r#"{"path":"a","meta":[1]}"#),
            Err(MessageError::Meta)
        ));
        assert!(matches!(
            d(r#"{"path":"a","body":1,"body_base64":"AA=="}"#),
            Err(MessageError::TwoBodies)
        ));
        assert!(matches!(
            d(r#"{"path":"a","body_base64":"!!"}"#),
            Err(MessageError::Base64)
        ));
        let m = d(r#"{"path":"a","body":null}"#).unwrap();
        assert_eq!(m.body, Body::None);
        assert_eq!(m.class, Class::Silver);
    }
}
