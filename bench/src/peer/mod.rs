//! What the harness speaks to. Each system under test is an adapter behind
//! [`Peer`]: postmesh ([`postmesh`]), postmesh's subscribers over SockJS
//! xhr-streaming ([`sockjs`]), NATS over WebSocket ([`nats`]), MQTT 3.1.1
//! over WebSocket ([`mqtt`]) and Socket.IO 4 ([`socketio`]).
//!
//! Every WebSocket adapter speaks its protocol over the same client
//! (tokio-tungstenite) and finds each message's send timestamp the same way
//! ([`sent_at`]), so differences in the figures come from the servers, not
//! from the harness. The SockJS one reads HTTP responses (reqwest) and
//! finds the timestamps the same way inside SockJS's escaped frames.

pub mod mqtt;
pub mod nats;
pub mod postmesh;
pub mod socketio;
pub mod sockjs;

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

pub use postmesh::Postmesh;

/// Unix time in nanoseconds: the timestamp carried in bodies.
pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A JSON body of about `size` bytes carrying the send time.
pub fn body(size: usize) -> String {
    let pad = size.saturating_sub(40);
    json!({"t": now_nanos(), "pad": "x".repeat(pad)}).to_string()
}

/// Finds `"t":<digits>` in a frame without parsing all of it: the harness
/// must not be the bottleneck.
pub fn sent_at(frame: &[u8]) -> Option<u64> {
    let key = b"\"t\":";
    let at = frame.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = frame[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&frame[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// A system under test.
#[async_trait]
pub trait Peer: Send + Sync {
    /// The name in reports.
    fn name(&self) -> &str;
    /// A device subscribed to every scenario topic (`bench` and below).
    async fn subscriber(&self) -> anyhow::Result<Box<dyn Subscriber>>;
    /// A publisher to the scenario's topics.
    async fn publisher(&self) -> anyhow::Result<Box<dyn Publisher>>;
}

/// Receives messages.
#[async_trait]
pub trait Subscriber: Send {
    /// The next message's send timestamp (unix nanos); `None` when the
    /// connection ended or nothing came for `idle`.
    async fn next(&mut self, idle: Duration) -> anyhow::Result<Option<u64>>;
    /// Closes the connection cleanly (the protocol's close handshake).
    async fn close(self: Box<Self>) -> anyhow::Result<()>;
}

/// Sends messages.
#[async_trait]
pub trait Publisher: Send {
    /// Sends one message of about `size` bytes; may return before the
    /// server acknowledged it.
    async fn send(&mut self, size: usize) -> anyhow::Result<()>;
    /// Waits until the server has taken every message sent (acknowledged
    /// them, or answered a ping sent after them); returns how many it
    /// refused.
    async fn finish(&mut self) -> anyhow::Result<u64>;
}

/// A client WebSocket over plain TCP.
pub type Ws = WebSocketStream<TcpStream>;

/// How many loopback source addresses client connections are spread over
/// (127.0.0.2, 127.0.0.3, ...); 0 uses the kernel's choice. One source
/// address has about 28 000 ephemeral ports, and closed connections hold
/// theirs in TIME_WAIT, so churn and repeated runs need several.
static SOURCES: AtomicUsize = AtomicUsize::new(0);
static NEXT_SOURCE: AtomicUsize = AtomicUsize::new(0);

/// Spreads later connections over `n` loopback source addresses.
pub fn spread_sources(n: usize) {
    SOURCES.store(n.min(250), Ordering::Relaxed);
}

fn source() -> Option<SocketAddr> {
    let n = SOURCES.load(Ordering::Relaxed);
    if n == 0 {
        return None;
    }
    let k = NEXT_SOURCE.fetch_add(1, Ordering::Relaxed) % n;
    Some(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + k as u8)),
        0,
    ))
}

/// Opens a WebSocket to `url` (a `ws://` URL with a numeric host),
/// offering `subprotocol` if given, from the next source address.
pub async fn connect(url: &str, subprotocol: Option<&str>) -> anyhow::Result<Ws> {
    let mut request = url
        .into_client_request()
        .with_context(|| format!("bad URL {url}"))?;
    if let Some(p) = subprotocol {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(p)?);
    }
    let uri = request.uri();
    let host = uri.host().context("URL without a host")?;
    let port = uri.port_u16().unwrap_or(80);
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .with_context(|| format!("{url}: the harness needs a numeric host"))?;
    let socket = TcpSocket::new_v4()?;
    if let Some(from) = source() {
        socket
            .bind(from)
            .with_context(|| format!("binding {from}"))?;
    }
    let stream = socket
        .connect(addr)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    stream.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .with_context(|| format!("WebSocket handshake with {url}"))?;
    Ok(ws)
}

/// The next data frame (text or binary), answering nothing; fails after
/// `wait` or on close.
pub async fn next_data(ws: &mut Ws, wait: Duration) -> anyhow::Result<Message> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(m @ (Message::Text(_) | Message::Binary(_))))) => return Ok(m),
            Ok(Some(Ok(Message::Close(f)))) => bail!("closed by the server: {f:?}"),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(None) => bail!("the server closed the connection"),
            Err(_) => bail!("no frame within {wait:?}"),
        }
    }
}

/// What one protocol makes of the frames a subscriber receives.
pub trait Decode: Send + 'static {
    /// Pushes the send timestamps of the messages `frame` carries onto
    /// `out` (a frame may carry several, or part of one); returns a frame
    /// to answer with, such as a pong.
    fn decode(
        &mut self,
        frame: Message,
        out: &mut VecDeque<u64>,
    ) -> anyhow::Result<Option<Message>>;
}

/// A subscriber over any protocol: a WebSocket and its [`Decode`].
pub struct WsSubscriber<D> {
    ws: Ws,
    decoder: D,
    ready: VecDeque<u64>,
}

impl<D: Decode> WsSubscriber<D> {
    pub fn new(ws: Ws, decoder: D) -> Self {
        WsSubscriber {
            ws,
            decoder,
            ready: VecDeque::new(),
        }
    }
}

#[async_trait]
impl<D: Decode> Subscriber for WsSubscriber<D> {
    async fn next(&mut self, idle: Duration) -> anyhow::Result<Option<u64>> {
        loop {
            if let Some(t) = self.ready.pop_front() {
                return Ok(Some(t));
            }
            match tokio::time::timeout(idle, self.ws.next()).await {
                Err(_) | Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => return Err(e.into()),
                Ok(Some(Ok(Message::Close(f)))) => bail!("closed by the server: {f:?}"),
                Ok(Some(Ok(frame))) => {
                    if let Some(answer) = self.decoder.decode(frame, &mut self.ready)? {
                        self.ws.send(answer).await?;
                    }
                }
            }
        }
    }

    async fn close(mut self: Box<Self>) -> anyhow::Result<()> {
        self.ws.close(None).await?;
        // Read to the server's close frame, as a polite client does.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_timestamp() {
        let f = format!(
            r#"{{"op":"msg","path":"a","body":{{"t":{},"pad":"xx"}}}}"#,
            123456789u64
        );
        assert_eq!(sent_at(f.as_bytes()), Some(123456789));
        assert_eq!(sent_at(b"{}"), None);
    }

    #[test]
    fn bodies_have_about_the_size_asked_for() {
        let b = body(256);
        assert!((250..=262).contains(&b.len()), "{}", b.len());
        assert!(sent_at(b.as_bytes()).is_some());
    }
}
