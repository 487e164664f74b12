//! Socket.IO 4 (Engine.IO v4 over a plain WebSocket, no polling): the
//! room broadcast server in `bench/socketio/server.js`. Events are text
//! frames: `42["name",data]`, with an ack id after `42` when an answer is
//! wanted (`421[...]` is answered by `431[...]`); the server pings (`2`)
//! and expects a pong (`3`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use async_trait::async_trait;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::{
    Decode, Peer, Publisher, Subscriber, Ws, WsSubscriber, body, connect, next_data, sent_at,
};

/// A Socket.IO server: devices emit `sub` to join room `bench`;
/// publishers emit `pub`, which the server broadcasts to the room as `msg`.
pub struct SocketIo {
    /// `ws://host:port/socket.io/?EIO=4&transport=websocket`
    pub url: String,
}

struct Events;

impl Decode for Events {
    fn decode(
        &mut self,
        frame: Message,
        out: &mut VecDeque<u64>,
    ) -> anyhow::Result<Option<Message>> {
        let Message::Text(t) = frame else {
            return Ok(None);
        };
        if t.as_str() == "2" {
            return Ok(Some(Message::text("3")));
        }
        if t.starts_with("42[\"msg\"")
            && let Some(sent) = sent_at(t.as_bytes())
        {
            out.push_back(sent);
        }
        Ok(None)
    }
}

async fn text(ws: &mut Ws) -> anyhow::Result<String> {
    match next_data(ws, Duration::from_secs(30)).await? {
        Message::Text(t) => Ok(t.as_str().to_owned()),
        _ => bail!("Socket.IO sent a binary frame"),
    }
}

/// Engine.IO open (`0{...}`), then the Socket.IO connect (`40` → `40{...}`).
async fn handshake(url: &str) -> anyhow::Result<Ws> {
    let mut ws = connect(url, None).await?;
    let open = text(&mut ws).await?;
    if !open.starts_with('0') {
        bail!("expected the Engine.IO open packet, got {open:?}");
    }
    ws.send(Message::text("40")).await?;
    loop {
        let t = text(&mut ws).await?;
        if t.starts_with("40") {
            return Ok(ws);
        }
        if t.starts_with("44") {
            bail!("Socket.IO refused the connection: {t}");
        }
    }
}

#[async_trait]
impl Peer for SocketIo {
    fn name(&self) -> &str {
        "Socket.IO"
    }

    async fn subscriber(&self) -> anyhow::Result<Box<dyn Subscriber>> {
        let mut ws = handshake(&self.url).await?;
        ws.send(Message::text("421[\"sub\"]")).await?;
        loop {
            let t = text(&mut ws).await.context("waiting for the sub ack")?;
            if t.starts_with("431") {
                break;
            }
            if t == "2" {
                ws.send(Message::text("3")).await?;
            }
        }
        Ok(Box::new(WsSubscriber::new(ws, Events)))
    }

    async fn publisher(&self) -> anyhow::Result<Box<dyn Publisher>> {
        let ws = handshake(&self.url).await?;
        let (sink, mut stream) = ws.split();
        let (acks_tx, acks) = tokio::sync::watch::channel(0u64);
        let pings = Arc::new(AtomicU64::new(0));
        let seen = pings.clone();
        // Acks (`43<id>[...]`) arrive in order; pings are answered by `send`.
        tokio::spawn(async move {
            let mut n = 0;
            while let Some(Ok(m)) = stream.next().await {
                if let Message::Text(t) = m {
                    if t.starts_with("43") {
                        n += 1;
                        let _ = acks_tx.send(n);
                    } else if t.as_str() == "2" {
                        seen.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        Ok(Box::new(SocketIoPublisher {
            sink,
            sent: 0,
            acks,
            pings,
        }))
    }
}

struct SocketIoPublisher {
    sink: SplitSink<Ws, Message>,
    sent: u64,
    acks: tokio::sync::watch::Receiver<u64>,
    pings: Arc<AtomicU64>,
}

impl SocketIoPublisher {
    async fn pong(&mut self) -> anyhow::Result<()> {
        while self.pings.load(Ordering::Relaxed) > 0 {
            self.pings.fetch_sub(1, Ordering::Relaxed);
            self.sink.send(Message::text("3")).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Publisher for SocketIoPublisher {
    async fn send(&mut self, size: usize) -> anyhow::Result<()> {
        self.pong().await?;
        self.sent += 1;
        let frame = format!("42{}[\"pub\",{}]", self.sent, body(size));
        self.sink.send(Message::text(frame)).await?;
        Ok(())
    }

    async fn finish(&mut self) -> anyhow::Result<u64> {
        self.pong().await?;
        let sent = self.sent;
        tokio::time::timeout(Duration::from_secs(120), self.acks.wait_for(|n| *n >= sent))
            .await
            .context("waiting for Socket.IO acks")??;
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_events_and_answers_pings() {
        let mut out = VecDeque::new();
        let pong = Events.decode(Message::text("2"), &mut out).unwrap();
        assert_eq!(pong, Some(Message::text("3")));
        Events
            .decode(Message::text(r#"42["msg",{"t":9,"pad":"x"}]"#), &mut out)
            .unwrap();
        Events
            .decode(Message::text(r#"42["other",{"t":8}]"#), &mut out)
            .unwrap();
        assert_eq!(out, [9]);
    }
}
