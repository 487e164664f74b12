//! What the harness speaks to. Each system under test is an adapter behind
//! [`Peer`]; postmesh's is [`Postmesh`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Unix time in nanoseconds: the timestamp carried in bodies.
pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A body of about `size` bytes carrying the send time.
pub fn body(size: usize) -> serde_json::Value {
    let pad = size.saturating_sub(40);
    json!({"t": now_nanos(), "pad": "x".repeat(pad)})
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
    /// A device subscribed to the scenario's topic.
    async fn subscriber(&self) -> anyhow::Result<Box<dyn Subscriber>>;
    /// A publisher to the scenario's topic.
    async fn publisher(&self) -> anyhow::Result<Box<dyn Publisher>>;
}

/// Receives messages.
#[async_trait]
pub trait Subscriber: Send {
    /// The next message's send timestamp (unix nanos), `None` when the
    /// connection ended. Waits at most `idle`; `Some(None)`... see impls.
    async fn next(&mut self, idle: Duration) -> anyhow::Result<Option<u64>>;
}

/// Sends messages.
#[async_trait]
pub trait Publisher: Send {
    /// Sends one message of about `size` bytes; may return before the
    /// server acknowledged it.
    async fn send(&mut self, size: usize) -> anyhow::Result<()>;
    /// Waits until every message sent was acknowledged; returns how many
    /// were refused.
    async fn finish(&mut self) -> anyhow::Result<u64>;
}

/// postmesh over its WebSocket protocol.
pub struct Postmesh {
    /// `ws://host:port/ws`
    pub url: String,
    /// The class of published messages.
    pub class: String,
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect(url: &str) -> anyhow::Result<Ws> {
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    Ok(ws)
}

async fn reply(ws: &mut Ws) -> anyhow::Result<serde_json::Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: serde_json::Value = serde_json::from_str(&t)?;
                if v["op"] == "ok" || v["op"] == "err" {
                    return Ok(v);
                }
            }
            Ok(Some(Ok(_))) => {}
            other => bail!("no reply: {other:?}"),
        }
    }
}

#[async_trait]
impl Peer for Postmesh {
    fn name(&self) -> &str {
        "postmesh"
    }

    async fn subscriber(&self) -> anyhow::Result<Box<dyn Subscriber>> {
        let mut ws = connect(&self.url).await?;
        ws.send(Message::text(
            json!({"op": "sub", "id": 1, "pattern": "bench.#"}).to_string(),
        ))
        .await?;
        let r = reply(&mut ws).await?;
        if r["op"] != "ok" {
            bail!("subscribe refused: {r}");
        }
        Ok(Box::new(PostmeshSubscriber { ws }))
    }

    async fn publisher(&self) -> anyhow::Result<Box<dyn Publisher>> {
        let ws = connect(&self.url).await?;
        let (sink, mut stream) = ws.split();
        let (done_tx, done_rx) = tokio::sync::watch::channel((0u64, 0u64));
        // Replies arrive in order; count them so `finish` can wait for all.
        tokio::spawn(async move {
            let (mut ok, mut refused) = (0u64, 0u64);
            while let Some(Ok(m)) = stream.next().await {
                if let Message::Text(t) = m {
                    if t.contains("\"op\":\"ok\"") {
                        ok += 1;
                    } else if t.contains("\"op\":\"err\"") {
                        refused += 1;
                    }
                    let _ = done_tx.send((ok, refused));
                }
            }
        });
        Ok(Box::new(PostmeshPublisher {
            sink,
            sent: 0,
            replies: done_rx,
            class: self.class.clone(),
        }))
    }
}

struct PostmeshSubscriber {
    ws: Ws,
}

#[async_trait]
impl Subscriber for PostmeshSubscriber {
    async fn next(&mut self, idle: Duration) -> anyhow::Result<Option<u64>> {
        loop {
            match tokio::time::timeout(idle, self.ws.next()).await {
                Err(_) => return Ok(None),
                Ok(Some(Ok(Message::Text(t)))) => {
                    if t.starts_with("{\"op\":\"msg\"")
                        && let Some(sent) = sent_at(t.as_bytes())
                    {
                        return Ok(Some(sent));
                    }
                }
                Ok(Some(Ok(Message::Close(f)))) => bail!("closed by the server: {f:?}"),
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => return Err(e.into()),
                Ok(None) => return Ok(None),
            }
        }
    }
}

struct PostmeshPublisher {
    sink: futures_util::stream::SplitSink<Ws, Message>,
    sent: u64,
    replies: tokio::sync::watch::Receiver<(u64, u64)>,
    class: String,
}

#[async_trait]
impl Publisher for PostmeshPublisher {
    async fn send(&mut self, size: usize) -> anyhow::Result<()> {
        self.sent += 1;
        let frame = json!({"op": "pub", "id": self.sent, "path": format!("bench.{}", self.sent % 16),
                           "class": self.class, "body": body(size)});
        self.sink.send(Message::text(frame.to_string())).await?;
        Ok(())
    }

    async fn finish(&mut self) -> anyhow::Result<u64> {
        let sent = self.sent;
        let r = tokio::time::timeout(
            Duration::from_secs(120),
            self.replies.wait_for(|(ok, refused)| ok + refused >= sent),
        )
        .await
        .context("waiting for publish acknowledgements")??;
        Ok(r.1)
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
}
