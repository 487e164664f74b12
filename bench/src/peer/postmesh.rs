//! postmesh over its WebSocket protocol (PROTOCOL.md).

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{Context as _, bail};
use async_trait::async_trait;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::{
    Decode, Peer, Publisher, Subscriber, Ws, WsSubscriber, body, connect, next_data, sent_at,
};

/// postmesh: devices subscribe to `bench.#`; publishers publish to
/// `bench.<k mod 16>` with `class`.
pub struct Postmesh {
    /// `ws://host:port/ws`
    pub url: String,
    /// The class of published messages.
    pub class: String,
    /// The name in reports.
    pub label: String,
    /// Subscribers connect with `?batch=true` (several messages per
    /// WebSocket frame), as the JavaScript client does.
    pub batch: bool,
}

impl Postmesh {
    /// A silver-publishing peer named "postmesh".
    pub fn new(url: impl Into<String>) -> Postmesh {
        Postmesh {
            url: url.into(),
            class: "silver".into(),
            label: "postmesh".into(),
            batch: true,
        }
    }
}

/// Waits for the `ok` or `err` answering a request.
async fn reply(ws: &mut Ws) -> anyhow::Result<serde_json::Value> {
    loop {
        if let Message::Text(t) = next_data(ws, Duration::from_secs(30)).await? {
            let v: serde_json::Value = serde_json::from_str(&t)?;
            if v["op"] == "ok" || v["op"] == "err" {
                return Ok(v);
            }
        }
    }
}

struct Frames;

impl Decode for Frames {
    fn decode(
        &mut self,
        frame: Message,
        out: &mut VecDeque<u64>,
    ) -> anyhow::Result<Option<Message>> {
        if let Message::Text(t) = frame {
            for line in t.as_str().split('\n') {
                if line.starts_with("{\"op\":\"msg\"")
                    && let Some(sent) = sent_at(line.as_bytes())
                {
                    out.push_back(sent);
                }
            }
        }
        Ok(None)
    }
}

#[async_trait]
impl Peer for Postmesh {
    fn name(&self) -> &str {
        &self.label
    }

    async fn subscriber(&self) -> anyhow::Result<Box<dyn Subscriber>> {
        let url = if self.batch {
            let sep = if self.url.contains('?') { '&' } else { '?' };
            format!("{}{sep}batch=true", self.url)
        } else {
            self.url.clone()
        };
        let mut ws = connect(&url, None).await?;
        ws.send(Message::text(r#"{"op":"sub","id":1,"pattern":"bench.#"}"#))
            .await?;
        let r = reply(&mut ws).await?;
        if r["op"] != "ok" {
            bail!("subscribe refused: {r}");
        }
        Ok(Box::new(WsSubscriber::new(ws, Frames)))
    }

    async fn publisher(&self) -> anyhow::Result<Box<dyn Publisher>> {
        let ws = connect(&self.url, None).await?;
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

struct PostmeshPublisher {
    sink: SplitSink<Ws, Message>,
    sent: u64,
    replies: tokio::sync::watch::Receiver<(u64, u64)>,
    class: String,
}

#[async_trait]
impl Publisher for PostmeshPublisher {
    async fn send(&mut self, size: usize) -> anyhow::Result<()> {
        self.sent += 1;
        let frame = format!(
            r#"{{"op":"pub","id":{},"path":"bench.{}","class":"{}","body":{}}}"#,
            self.sent,
            self.sent % 16,
            self.class,
            body(size)
        );
        self.sink.send(Message::text(frame)).await?;
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
