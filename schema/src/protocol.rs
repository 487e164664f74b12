//! The client protocol: JSON text frames between devices and gateways.
//! PROTOCOL.md is the reader's guide; this module is the definition.
//!
//! Parsing is two-step: a permissive struct first (so an error can still
//! echo the frame's `id`), then a typed [`ClientFrame`] with each field
//! validated and each failure mapped to an [`ErrorCode`].

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::cursor::Cursor;
use crate::message::{Draft, Message, MessageError, parse_v1};
use crate::path::{Limits, PathError};
use crate::pattern::Pattern;

/// Largest `limit` a history query may ask for.
pub const MAX_HISTORY_LIMIT: u32 = 1000;
/// `limit` when a history query gives none.
pub const DEFAULT_HISTORY_LIMIT: u32 = 50;
/// Largest `messages` reply (history, latest) in bytes: a reply stops
/// before the message that would cross it, and says `"more":true`; the
/// device pages on with `before`. The first message always goes in, so a
/// reply is at most this plus one message.
pub const MAX_REPLY_BYTES: usize = 1 << 20;

/// The default largest message the mesh accepts (`max_message_bytes`): its
/// body plus its meta, in bytes (a binary body before base64). Every door
/// refuses a larger one with `too_large` (HTTP 413), so that every message
/// accepted fits every write path to every device.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;

/// The refusal of a message over `max` bytes (body plus meta), if it is.
pub fn too_large(id: Option<u64>, m: &Message, max: usize) -> Option<FrameError> {
    let size = m.size();
    (size > max).then(|| {
        FrameError::new(
            id,
            ErrorCode::TooLarge,
            format!("the message is {size} bytes (body plus meta); the mesh accepts at most {max}"),
        )
    })
}

/// The most a `msg` frame adds to a message's size: the envelope (op, path,
/// uuid, cursor, class), base64 expansion of a binary body (4/3) and JSON.
pub fn max_msg_frame_bytes(max_message_bytes: usize, limits: &crate::path::Limits) -> usize {
    max_message_bytes / 3 * 4 + 4 + limits.max_bytes * 2 + 256
}

/// WebSocket close codes the gateway uses (4000-4999 are application codes).
pub mod close {
    /// The server is shutting down or restarting; reconnect elsewhere or later.
    pub const GOING_AWAY: u16 = 1001;
    /// The device broke the WebSocket protocol (RFC 6455): an unmasked
    /// frame, a reserved opcode or bit, a control frame over 125 bytes or
    /// fragmented. A client library bug; reconnecting repeats it.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text frame that is not UTF-8 (RFC 6455's "invalid frame payload
    /// data").
    pub const INVALID_DATA: u16 = 1007;
    /// A frame exceeded the configured size limit.
    pub const TOO_BIG: u16 = 1009;
    /// The connection's outbound queue overflowed: it did not read fast enough.
    /// Reconnect and resume with `since` to reread what was missed.
    pub const SLOW_CONSUMER: u16 = 4000;
    /// The token expired while connected. Reconnect with a fresh token.
    pub const TOKEN_EXPIRED: u16 = 4001;
    /// Nothing (not even a pong) came from the device for two keepalive
    /// intervals: the connection is presumed dead.
    pub const IDLE: u16 = 4002;
}

/// Error codes carried by `err` frames and HTTP error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame is not a JSON object.
    BadJson,
    /// A field is missing or has the wrong type.
    BadFrame,
    /// `op` names no known operation.
    UnknownOp,
    /// A path is invalid.
    BadPath,
    /// A pattern is invalid.
    BadPattern,
    /// A UUID is malformed or not version 1.
    BadUuid,
    /// meta or body are malformed.
    BadMessage,
    /// `limit` or `history` is out of range.
    BadLimit,
    /// The operation needs authentication.
    Unauthorized,
    /// The token does not allow this pattern or path.
    Forbidden,
    /// The connection has as many subscriptions as it may.
    TooManySubscriptions,
    /// `unsub` for a pattern the connection is not subscribed to.
    NotSubscribed,
    /// A message is larger than the mesh accepts (`max_message_bytes`).
    TooLarge,
    /// A dependency (store, postoffice) is unavailable: retry later.
    Unavailable,
    /// The request did not arrive in time (an HTTP body sent too slowly).
    Timeout,
    /// A bug. Logged server-side.
    Internal,
}

impl ErrorCode {
    /// The code's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::BadPath => "bad_path",
            ErrorCode::BadPattern => "bad_pattern",
            ErrorCode::BadUuid => "bad_uuid",
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::BadLimit => "bad_limit",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::NotSubscribed => "not_subscribed",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status the same failure gets on the HTTP API.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
            ErrorCode::TooManySubscriptions => 429,
            ErrorCode::NotSubscribed => 404,
            ErrorCode::TooLarge => 413,
            ErrorCode::Timeout => 408,
            _ => 400,
        }
    }
}

/// A refused frame: the `id` to echo (if one could be read), a code and a
/// human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub id: Option<u64>,
    pub code: ErrorCode,
    pub message: String,
}

impl FrameError {
    /// Builds an error.
    pub fn new(id: Option<u64>, code: ErrorCode, message: impl Into<String>) -> Self {
        FrameError {
            id,
            code,
            message: message.into(),
        }
    }

    /// Encodes the `err` frame.
    pub fn to_frame(&self) -> String {
        err_frame(self.id, self.code, &self.message)
    }
}

impl From<(Option<u64>, MessageError)> for FrameError {
    fn from((id, e): (Option<u64>, MessageError)) -> Self {
        let code = match &e {
            MessageError::Path(_) => ErrorCode::BadPath,
            MessageError::Uuid(_) | MessageError::UuidVersion(..) => ErrorCode::BadUuid,
            _ => ErrorCode::BadMessage,
        };
        FrameError::new(id, code, e.to_string())
    }
}

/// A frame from a device.
#[derive(Debug, PartialEq)]
pub enum ClientFrame {
    /// Authenticate with a token (when not given as `?token=`).
    Auth { id: u64, token: String },
    /// Subscribe, optionally first replaying the `history` latest stored
    /// messages, or everything stored after `since`.
    Sub {
        id: u64,
        pattern: Pattern,
        history: Option<u32>,
        since: Option<Cursor>,
    },
    /// Unsubscribe.
    Unsub { id: u64, pattern: Pattern },
    /// Publish.
    Pub { id: u64, message: Message },
    /// Read stored messages, newest first.
    History {
        id: u64,
        pattern: Pattern,
        limit: u32,
        before: Option<Cursor>,
    },
    /// The newest stored message of each path matching.
    Latest { id: u64, pattern: Pattern },
    /// Dismiss a message for the authenticated user.
    Dismiss { id: u64, uuid: Uuid },
    /// Liveness check.
    Ping { id: u64 },
}

impl ClientFrame {
    /// The client-chosen id.
    pub fn id(&self) -> u64 {
        match self {
            ClientFrame::Auth { id, .. }
            | ClientFrame::Sub { id, .. }
            | ClientFrame::Unsub { id, .. }
            | ClientFrame::Pub { id, .. }
            | ClientFrame::History { id, .. }
            | ClientFrame::Latest { id, .. }
            | ClientFrame::Dismiss { id, .. }
            | ClientFrame::Ping { id } => *id,
        }
    }
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(borrow)]
    op: Option<Cow<'a, str>>,
    id: Option<Value>,
    #[serde(borrow)]
    pattern: Option<Cow<'a, str>>,
    #[serde(borrow)]
    path: Option<Cow<'a, str>>,
    #[serde(borrow)]
    token: Option<Cow<'a, str>>,
    #[serde(borrow)]
    uuid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    before: Option<Cow<'a, str>>,
    #[serde(borrow)]
    since: Option<Cow<'a, str>>,
    history: Option<Value>,
    limit: Option<Value>,
    class: Option<Value>,
    meta: Option<Value>,
    #[serde(borrow)]
    body: Option<&'a RawValue>,
    #[serde(borrow)]
    body_base64: Option<Cow<'a, str>>,
}

/// Parses one text frame.
pub fn parse_client_frame(text: &str, limits: &Limits) -> Result<ClientFrame, FrameError> {
    let raw: RawFrame<'_> = serde_json::from_str(text).map_err(|e| {
        FrameError::new(
            None,
            ErrorCode::BadJson,
            format!("not a JSON object frame: {e}"),
        )
    })?;
    let id = match &raw.id {
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            FrameError::new(
                None,
                ErrorCode::BadFrame,
                "id must be a non-negative integer",
            )
        })?),
        None => None,
    };
    let bad = |code: ErrorCode, msg: String| FrameError::new(id, code, msg);
    let op = raw
        .op
        .as_deref()
        .ok_or_else(|| bad(ErrorCode::BadFrame, "missing op".into()))?;
    let need_id =
        || id.ok_or_else(|| bad(ErrorCode::BadFrame, format!("{op} needs an integer id")));
    let pattern = |field: &Option<Cow<'_, str>>| -> Result<Pattern, FrameError> {
        let s = field
            .as_deref()
            .ok_or_else(|| bad(ErrorCode::BadFrame, format!("{op} needs a pattern")))?;
        Pattern::parse_with(s, limits)
            .map_err(|e: PathError| bad(ErrorCode::BadPattern, format!("pattern {s:?}: {e}")))
    };
    let uuid = |field: &Option<Cow<'_, str>>, name: &str| -> Result<Option<Uuid>, FrameError> {
        field
            .as_deref()
            .map(|s| parse_v1(s).map_err(|e| bad(ErrorCode::BadUuid, format!("{name}: {e}"))))
            .transpose()
    };
    let count = |field: &Option<Value>,
                 name: &str,
                 default: Option<u32>|
     -> Result<Option<u32>, FrameError> {
        match field {
            None | Some(Value::Null) => Ok(default),
            Some(v) => match v.as_u64() {
                Some(n) if (1..=u64::from(MAX_HISTORY_LIMIT)).contains(&n) => Ok(Some(n as u32)),
                _ => Err(bad(
                    ErrorCode::BadLimit,
                    format!("{name} must be an integer from 1 to {MAX_HISTORY_LIMIT}"),
                )),
            },
        }
    };
    Ok(match op {
        "auth" => ClientFrame::Auth {
            id: need_id()?,
            token: raw
                .token
                .as_deref()
                .ok_or_else(|| bad(ErrorCode::BadFrame, "auth needs a token".into()))?
                .to_owned(),
        },
        "sub" => {
            let (history, since) = (
                count(&raw.history, "history", None)?,
                uuid(&raw.since, "since")?.map(Cursor::from_uuid),
            );
            if history.is_some() && since.is_some() {
                return Err(bad(
                    ErrorCode::BadFrame,
                    "history and since are exclusive".into(),
                ));
            }
            ClientFrame::Sub {
                id: need_id()?,
                pattern: pattern(&raw.pattern)?,
                history,
                since,
            }
        }
        "unsub" => ClientFrame::Unsub {
            id: need_id()?,
            pattern: pattern(&raw.pattern)?,
        },
        "pub" => {
            let id = need_id()?;
            let path = raw
                .path
                .ok_or_else(|| bad(ErrorCode::BadFrame, "pub needs a path".into()))?;
            let class = match raw.class {
                None | Some(Value::Null) => None,
                Some(v) => Some(serde_json::from_value(v).map_err(|_| {
                    bad(
                        ErrorCode::BadMessage,
                        "class must be gold, silver or bronze".into(),
                    )
                })?),
            };
            let draft = Draft {
                path,
                uuid: None,
                class,
                meta: raw.meta,
                body: raw.body,
                body_base64: raw.body_base64.as_deref(),
                cursor: None,
            };
            let message = draft
                .into_message(raw.uuid.as_deref(), limits)
                .map_err(|e| FrameError::from((Some(id), e)))?;
            ClientFrame::Pub { id, message }
        }
        "history" => ClientFrame::History {
            id: need_id()?,
            pattern: pattern(&raw.pattern)?,
            limit: count(&raw.limit, "limit", Some(DEFAULT_HISTORY_LIMIT))?
                .unwrap_or(DEFAULT_HISTORY_LIMIT),
            before: uuid(&raw.before, "before")?.map(Cursor::from_uuid),
        },
        "latest" => ClientFrame::Latest {
            id: need_id()?,
            pattern: pattern(&raw.pattern)?,
        },
        "dismiss" => ClientFrame::Dismiss {
            id: need_id()?,
            uuid: uuid(&raw.uuid, "uuid")?
                .ok_or_else(|| bad(ErrorCode::BadFrame, "dismiss needs a uuid".into()))?,
        },
        "ping" => ClientFrame::Ping { id: need_id()? },
        other => return Err(bad(ErrorCode::UnknownOp, format!("unknown op {other:?}"))),
    })
}

fn push_id(out: &mut String, id: Option<u64>) {
    match id {
        Some(id) => {
            out.push_str(&id.to_string());
        }
        None => out.push_str("null"),
    }
}

/// `{"op":"err","id":N|null,"code":..,"message":..}`
pub fn err_frame(id: Option<u64>, code: ErrorCode, message: &str) -> String {
    let mut out = String::with_capacity(64 + message.len());
    out.push_str(r#"{"op":"err","id":"#);
    push_id(&mut out, id);
    out.push_str(r#","code":""#);
    out.push_str(code.as_str());
    out.push_str(r#"","message":"#);
    out.push_str(&serde_json::to_string(message).expect("a str serializes"));
    out.push('}');
    out
}

/// `{"op":"ok","id":N}` plus extra fields given as a JSON object's members
/// (`extra` is either empty or starts with `,`).
pub fn ok_frame(id: u64, extra: &str) -> String {
    format!(r#"{{"op":"ok","id":{id}{extra}}}"#)
}

/// `{"op":"ok","id":N,"messages":[...],"more":bool,"next":CURSOR?}`,
/// messages in the given order, as many as fit in `max_bytes` (at least
/// one). `more` is true when `more` was given or messages were left out;
/// `next` (with `more`) is where the following page starts: the cursor of
/// the last message in this one when it was cut, else `next` as given.
pub fn ok_messages_frame<'a>(
    id: u64,
    messages: impl IntoIterator<Item = &'a Message>,
    more: bool,
    next: Option<Cursor>,
    max_bytes: usize,
) -> Vec<u8> {
    // What closes the frame: with a `next` unless it is the whole page.
    const WHOLE: &str = r#"],"more":false}"#;
    const CUT: &str = r#"],"more":true,"next":"00000000-0000-0000-0000-000000000000"}"#;
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(format!(r#"{{"op":"ok","id":{id},"messages":["#).as_bytes());
    let (mut cut, mut last) = (false, None);
    let mut messages = messages.into_iter().enumerate().peekable();
    while let Some((i, m)) = messages.next() {
        let before = out.len();
        if i > 0 {
            out.push(b',');
        }
        m.write_json_fields(&mut out);
        out.push(b'}');
        let tail = if messages.peek().is_none() && !more {
            WHOLE.len()
        } else {
            CUT.len()
        };
        if i > 0 && out.len() + tail > max_bytes {
            out.truncate(before);
            cut = true;
            break;
        }
        last = m.cursor;
    }
    let (more, next) = if cut { (true, last) } else { (more, next) };
    out.extend_from_slice(format!(r#"],"more":{more}"#).as_bytes());
    if let Some(c) = next.filter(|_| more) {
        out.extend_from_slice(format!(r#","next":"{c}""#).as_bytes());
    }
    out.push(b'}');
    out
}

/// `{"op":"msg","path":..,"uuid":..,"cursor":..,"class":..,"meta":..,"body":..}`: the frame
/// a device receives. Encoded once per message and shared by every
/// connection it is delivered to.
pub fn msg_frame(m: &Message) -> Vec<u8> {
    msg_frame_at(m, m.cursor.as_ref())
}

/// [`msg_frame`] with `cursor` in place of the message's own: the frame of
/// a message just stored at `cursor`.
pub fn msg_frame_at(m: &Message, cursor: Option<&Cursor>) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + m.path.as_str().len() + m.body.len());
    out.extend_from_slice(br#"{"op":"msg","#);
    let start = out.len();
    m.write_json_fields_at(&mut out, cursor);
    // write_json_fields starts with '{'; drop it, the frame's own brace is open.
    out.remove(start);
    out.push(b'}');
    out
}

/// `{"op":"dismissed","uuid":..}`: sent to a user's devices.
pub fn dismissed_frame(uuid: &Uuid) -> String {
    format!(r#"{{"op":"dismissed","uuid":"{uuid}"}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::Path;

    fn parse(s: &str) -> Result<ClientFrame, FrameError> {
        parse_client_frame(s, &Limits::default())
    }

    #[test]
    fn parses_every_op() {
        assert_eq!(
            parse(r#"{"op":"ping","id":1}"#).unwrap(),
            ClientFrame::Ping { id: 1 }
        );
        assert!(matches!(
            parse(r#"{"op":"sub","id":2,"pattern":"feeds.#","history":10}"#).unwrap(),
            ClientFrame::Sub {
                id: 2,
                history: Some(10),
                since: None,
                ..
            }
        ));
        assert!(matches!(
            parse(r#"{"op":"unsub","id":3,"pattern":"a.*"}"#).unwrap(),
            ClientFrame::Unsub { id: 3, .. }
        ));
        match parse(
            r#"{"op":"pub","id":4,"path":"a.b","body":{"x":1},"meta":{"k":"v"},"class":"gold"}"#,
        )
        .unwrap()
        {
            ClientFrame::Pub { id: 4, message } => {
                assert_eq!(message.path.as_str(), "a.b");
                assert_eq!(message.class, crate::Class::Gold);
                assert_eq!(message.body.as_json().unwrap()["x"], 1);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(r#"{"op":"history","id":5,"pattern":"a.#"}"#).unwrap(),
            ClientFrame::History {
                limit: DEFAULT_HISTORY_LIMIT,
                before: None,
                ..
            }
        ));
        assert!(matches!(
            parse(r#"{"op":"latest","id":6,"pattern":"a.#"}"#).unwrap(),
            ClientFrame::Latest { .. }
        ));
        let u = crate::message::new_v1();
        assert_eq!(
            parse(&format!(r#"{{"op":"dismiss","id":7,"uuid":"{u}"}}"#)).unwrap(),
            ClientFrame::Dismiss { id: 7, uuid: u }
        );
        assert!(matches!(
            parse(r#"{"op":"auth","id":8,"token":"t"}"#).unwrap(),
            ClientFrame::Auth { .. }
        ));
    }

    #[test]
    fn each_bad_input_has_its_code() {
        let cases: &[(&str, Option<u64>, ErrorCode)] = &[
            ("not json", None, ErrorCode::BadJson),
            ("[1,2]", None, ErrorCode::BadJson),
            (r#"{"id":1}"#, Some(1), ErrorCode::BadFrame),
            (
                r#"{"op":"sub","id":-1,"pattern":"a"}"#,
                None,
                ErrorCode::BadFrame,
            ),
            (r#"{"op":"fly","id":2}"#, Some(2), ErrorCode::UnknownOp),
            (r#"{"op":"sub","id":3}"#, Some(3), ErrorCode::BadFrame),
            (
                r#"{"op":"sub","id":4,"pattern":"a..b"}"#,
                Some(4),
                ErrorCode::BadPattern,
            ),
            (
                r#"{"op":"pub","id":5,"path":"a.*"}"#,
                Some(5),
                ErrorCode::BadPath,
            ),
            (
                r#"{"op":"pub","id":6,"path":"a","uuid":"x"}"#,
                Some(6),
                ErrorCode::BadUuid,
            ),
            (
                r#"{"op":"pub","id":7,"path":"a","meta":3}"#,
                Some(7),
                ErrorCode::BadMessage,
            ),
            (
                r#"{"op":"pub","id":8,"path":"a","class":"platinum"}"#,
                Some(8),
                ErrorCode::BadMessage,
            ),
            (
                r#"{"op":"history","id":9,"pattern":"a","limit":1001}"#,
                Some(9),
                ErrorCode::BadLimit,
            ),
            (
                r#"{"op":"history","id":10,"pattern":"a","limit":0}"#,
                Some(10),
                ErrorCode::BadLimit,
            ),
            (
                r#"{"op":"sub","id":11,"pattern":"a","history":5,"since":"bd1961f5-1062-11e4-a630-406c8f1838fa"}"#,
                Some(11),
                ErrorCode::BadFrame,
            ),
            (r#"{"op":"dismiss","id":12}"#, Some(12), ErrorCode::BadFrame),
            (r#"{"op":"ping"}"#, None, ErrorCode::BadFrame),
        ];
        for (text, id, code) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!((e.id, e.code), (*id, *code), "{text}: {}", e.message);
            let v: Value = serde_json::from_str(&e.to_frame()).unwrap();
            assert_eq!(v["op"], "err");
            assert_eq!(v["code"], code.as_str());
        }
    }

    #[test]
    fn frames_are_valid_json() {
        let m = Message::new(
            Path::parse("feeds.x").unwrap(),
            crate::Body::json(&serde_json::json!([1, "two"])),
        );
        let v: Value = serde_json::from_slice(&msg_frame(&m)).unwrap();
        assert_eq!(v["op"], "msg");
        assert_eq!(v["path"], "feeds.x");
        assert_eq!(v["uuid"], m.uuid.to_string());
        assert_eq!(v["body"][1], "two");
        let v: Value =
            serde_json::from_slice(&ok_messages_frame(9, [&m, &m], true, None, MAX_REPLY_BYTES))
                .unwrap();
        assert_eq!(v["messages"].as_array().unwrap().len(), 2);
        assert_eq!(v["more"], true);
        // Over the byte cap: the first message only, and `more`.
        let one = ok_messages_frame(9, [&m, &m], false, None, 0);
        let v: Value = serde_json::from_slice(&one).unwrap();
        assert_eq!(v["messages"].as_array().unwrap().len(), 1);
        assert_eq!(v["more"], true);
        let full = ok_messages_frame(9, [&m, &m], false, None, MAX_REPLY_BYTES);
        let fits = ok_messages_frame(9, [&m, &m], false, None, full.len());
        assert_eq!(fits, full, "a reply of exactly the cap is whole");
        let v: Value = serde_json::from_slice(&fits).unwrap();
        assert_eq!(v["more"], false);
        let short = ok_messages_frame(9, [&m, &m], false, None, full.len() - 1);
        assert!(short.len() < full.len());
        let v: Value =
            serde_json::from_str(&err_frame(None, ErrorCode::Forbidden, "no \"way\"")).unwrap();
        assert_eq!(v["id"], Value::Null);
        let v: Value = serde_json::from_str(&dismissed_frame(&m.uuid)).unwrap();
        assert_eq!(v["op"], "dismissed");
    }
}
