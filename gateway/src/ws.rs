//! The WebSocket adapter: the `/ws` upgrade on the shared HTTP listener and
//! the translation between tungstenite messages and session frames.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{Sink, Stream};
use hyper_util::rt::TokioIo;
use postmesh_schema::protocol::{ErrorCode, MAX_REPLY_BYTES, close, max_msg_frame_bytes};
use serde::Deserialize;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::app::{App, error_response};
use crate::config::GatewayConfig;
use crate::frame::Frame;
use crate::outgoing::Outgoing;
use crate::params::Params;
use crate::session::{self, Inbound, MAX_JOINED_BYTES, Outbound};

/// A WebSocket connection as a session transport. Text frames are written
/// by [`Outgoing`], not copied into tungstenite's write buffer (which never
/// shrinks); tungstenite reads, and writes control frames.
pub struct WsTransport<S> {
    inner: WebSocketStream<S>,
    out: Outgoing,
    /// Text frames are written once this many bytes wait, or on flush.
    write_buffer: usize,
}

impl<S> WsTransport<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    /// What waits to be written.
    pub fn outgoing(&self) -> &Outgoing {
        &self.out
    }

    /// Wraps an established WebSocket.
    pub fn new(inner: WebSocketStream<S>) -> Self {
        let write_buffer = inner.get_config().write_buffer_size;
        WsTransport {
            inner,
            out: Outgoing::new(),
            write_buffer,
        }
    }
}

impl<S> Stream for WsTransport<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    type Item = Inbound;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
        // tungstenite may write a pong while reading: not in the middle of
        // one of our frames.
        let this = &mut *self;
        if !this.out.is_empty() && ready!(this.out.poll_write(&mut this.inner, cx)).is_err() {
            return Poll::Ready(None);
        }
        self.out.note_read();
        loop {
            return match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Ready(Some(Ok(Message::Text(t)))) => {
                    // tungstenite checked the UTF-8; the frame checks again
                    // rather than trust it blindly.
                    Poll::Ready(Some(match Frame::try_from(bytes::Bytes::from(t)) {
                        Ok(f) => Inbound::Text(f),
                        Err(_) => Inbound::ProtocolError(close::INVALID_DATA),
                    }))
                }
                Poll::Ready(Some(Ok(Message::Binary(_)))) => Poll::Ready(Some(Inbound::Binary)),
                // Pings are answered by tungstenite itself; both are signs of life.
                Poll::Ready(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {
                    Poll::Ready(Some(Inbound::Alive))
                }
                Poll::Ready(Some(Ok(Message::Frame(_)))) => continue,
                Poll::Ready(Some(Ok(Message::Close(_)))) => Poll::Ready(None),
                Poll::Ready(Some(Err(WsError::Capacity(_)))) => Poll::Ready(Some(Inbound::TooBig)),
                Poll::Ready(Some(Err(e))) => match violation(&e) {
                    Some(code) => {
                        tracing::debug!(error = %e, code, "closing a device that broke the protocol");
                        Poll::Ready(Some(Inbound::ProtocolError(code)))
                    }
                    None => Poll::Ready(None),
                },
            };
        }
    }
}

/// The close code RFC 6455 gives a device's breach of the protocol, or
/// `None` when the connection merely failed (an I/O error, a reset) and
/// there is no one left to tell.
fn violation(e: &WsError) -> Option<u16> {
    match e {
        WsError::Utf8(_) => Some(close::INVALID_DATA),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        WsError::Protocol(_) => Some(close::PROTOCOL_ERROR),
        _ => None,
    }
}

impl<S> Sink<Outbound> for WsTransport<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    type Error = WsError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let this = &mut *self;
        if this.out.bytes() >= this.write_buffer {
            ready!(this.out.poll_write(&mut this.inner, cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(mut self: Pin<&mut Self>, item: Outbound) -> Result<(), WsError> {
        match item {
            Outbound::Text(t) => self.out.text(t.into_bytes()),
            Outbound::Close(code, reason) => self.out.control(Message::Close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: reason.into(),
            }))),
            Outbound::Ping => self.out.control(Message::Ping(bytes::Bytes::new())),
        }
        Ok(())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let this = &mut *self;
        match ready!(this.out.poll_flush(&mut this.inner, cx)) {
            // Flushing after the close handshake completed: nothing to do.
            Err(WsError::ConnectionClosed) => Poll::Ready(Ok(())),
            other => Poll::Ready(other),
        }
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let this = &mut *self;
        ready!(this.out.poll_write(&mut this.inner, cx))?;
        Pin::new(&mut this.inner).poll_close(cx)
    }
}

/// The tungstenite limits and buffers for one connection. Text frames do
/// not go through tungstenite's write buffer ([`Outgoing`] writes them
/// once `write_buffer_size` bytes wait); control frames do. Its bound
/// still admits the largest frame the gateway sends, a reply
/// ([`MAX_REPLY_BYTES`] plus one message), a batched frame (64 KiB plus
/// one message) or one message of the largest size the mesh accepts
/// (`max_message_bytes`, in its frame).
pub fn ws_config(c: &GatewayConfig) -> WebSocketConfig {
    let message = max_msg_frame_bytes(c.max_message_bytes, &c.limits);
    WebSocketConfig::default()
        .read_buffer_size(c.read_buffer_bytes)
        .write_buffer_size(c.write_buffer_bytes)
        .max_write_buffer_size(
            c.write_buffer_bytes * 4
                + MAX_REPLY_BYTES.max(MAX_JOINED_BYTES)
                + message
                + 2 * c.max_frame_bytes,
        )
        .max_message_size(Some(c.max_frame_bytes))
        .max_frame_size(Some(c.max_frame_bytes))
}

#[derive(Deserialize)]
pub(crate) struct WsQuery {
    token: Option<String>,
    /// `batch=true`: several messages per WebSocket frame, one per line.
    #[serde(default)]
    batch: bool,
}

fn header_has(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case(token))
}

/// `GET /ws`: checks the handshake, the page's `Origin` (the rule SockJS
/// uses too) and the token, answers 101, and runs the session on the
/// upgraded connection.
pub(crate) async fn upgrade(
    State(app): State<Arc<App>>,
    Params(q): Params<WsQuery>,
    mut req: Request,
) -> Response {
    let headers = req.headers();
    if !header_has(headers, header::CONNECTION, "upgrade")
        || !header_has(headers, header::UPGRADE, "websocket")
    {
        return error_response(
            StatusCode::UPGRADE_REQUIRED,
            ErrorCode::BadFrame,
            "this endpoint speaks WebSocket",
        );
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return error_response(
            StatusCode::UPGRADE_REQUIRED,
            ErrorCode::BadFrame,
            "WebSocket version 13 is required",
        );
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadFrame,
            "missing Sec-WebSocket-Key",
        );
    };
    if let Err(foreign) = crate::origin::check(&app.ctx.config.origins, headers) {
        return foreign.into_response();
    }
    let accept = derive_accept_key(key.as_bytes());
    let ctx = app.ctx.clone();
    let admitted = match app.admission.admit(&ctx.authority, q.token.as_deref()) {
        Ok(a) => a,
        Err(refused) => return refused.into_response(),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let cancel = app.shutdown.child_token();
    let options = session::Options { batch: q.batch };
    let config = ws_config(&ctx.config);
    let cut = app.cut.clone();
    app.tracker.spawn(async move {
        let session = async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let ws = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        Some(config),
                    )
                    .await;
                    session::run(WsTransport::new(ws), ctx, admitted.grants, options, cancel).await;
                }
                Err(e) => tracing::debug!(error = %e, "upgrade failed"),
            }
            // The connection's place is given back when its session ends.
            drop(admitted.permit);
        };
        // At the shutdown deadline a session still closing is dropped: its
        // socket closes and its subscriptions are released.
        tokio::select! {
            _ = session => {}
            _ = cut.cancelled() => {}
        }
    });
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    res.into_response()
}
