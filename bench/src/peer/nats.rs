//! NATS over WebSocket: the NATS text protocol (`CONNECT`, `SUB`, `PUB`,
//! `MSG`, `PING`/`PONG`) in WebSocket frames. The server may put several
//! protocol messages in one frame, or split one across frames.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{Context as _, bail};
use async_trait::async_trait;
use bytes::{Buf, BytesMut};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use super::{
    Decode, Peer, Publisher, Subscriber, Ws, WsSubscriber, body, connect, next_data, sent_at,
};

const CONNECT: &str =
    "CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1,\"echo\":false}\r\n";

/// A NATS server's WebSocket listener: devices subscribe to `bench.>`;
/// publishers publish to `bench.<k mod 16>`.
pub struct Nats {
    /// `ws://host:port`
    pub url: String,
}

/// Parses the NATS protocol out of a byte stream.
#[derive(Default)]
struct Parser {
    buf: BytesMut,
    pongs: u64,
}

impl Parser {
    /// Consumes whole protocol messages; returns whether a `PING` came.
    fn feed(&mut self, data: &[u8], out: &mut VecDeque<u64>) -> anyhow::Result<bool> {
        self.buf.extend_from_slice(data);
        let mut ping = false;
        loop {
            let Some(eol) = self.buf.windows(2).position(|w| w == b"\r\n") else {
                return Ok(ping);
            };
            let line = &self.buf[..eol];
            if line.starts_with(b"MSG ") {
                // MSG <subject> <sid> [reply-to] <#bytes>
                let size: usize = std::str::from_utf8(line)?
                    .rsplit(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .context("bad MSG line")?;
                let end = eol + 2 + size + 2;
                if self.buf.len() < end {
                    return Ok(ping);
                }
                if let Some(t) = sent_at(&self.buf[eol + 2..eol + 2 + size]) {
                    out.push_back(t);
                }
                self.buf.advance(end);
                continue;
            }
            if line.starts_with(b"PING") {
                ping = true;
            } else if line.starts_with(b"PONG") {
                self.pongs += 1;
            } else if line.starts_with(b"-ERR") {
                bail!("NATS error: {}", String::from_utf8_lossy(line));
            }
            self.buf.advance(eol + 2);
        }
    }
}

fn payload(frame: &Message) -> &[u8] {
    match frame {
        Message::Text(t) => t.as_bytes(),
        Message::Binary(b) => b,
        _ => &[],
    }
}

impl Decode for Parser {
    fn decode(
        &mut self,
        frame: Message,
        out: &mut VecDeque<u64>,
    ) -> anyhow::Result<Option<Message>> {
        let ping = self.feed(payload(&frame), out)?;
        Ok(ping.then(|| Message::binary("PONG\r\n")))
    }
}

/// Connects, reads `INFO`, sends `CONNECT` and `extra`, and waits for the
/// `PONG` answering a `PING` after them: the server has then applied them.
async fn handshake(url: &str, extra: &str) -> anyhow::Result<(Ws, Parser)> {
    let mut ws = connect(url, None).await?;
    let info = next_data(&mut ws, Duration::from_secs(30)).await?;
    if !payload(&info).starts_with(b"INFO") {
        bail!("expected INFO from NATS");
    }
    ws.send(Message::binary(format!("{CONNECT}{extra}PING\r\n")))
        .await?;
    let mut parser = Parser::default();
    let mut ignored = VecDeque::new();
    while parser.pongs == 0 {
        let frame = next_data(&mut ws, Duration::from_secs(30)).await?;
        parser.feed(payload(&frame), &mut ignored)?;
    }
    parser.pongs = 0;
    Ok((ws, parser))
}

#[async_trait]
impl Peer for Nats {
    fn name(&self) -> &str {
        "NATS"
    }

    async fn subscriber(&self) -> anyhow::Result<Box<dyn Subscriber>> {
        let (ws, parser) = handshake(&self.url, "SUB bench.> 1\r\n").await?;
        Ok(Box::new(WsSubscriber::new(ws, parser)))
    }

    async fn publisher(&self) -> anyhow::Result<Box<dyn Publisher>> {
        let (ws, parser) = handshake(&self.url, "").await?;
        Ok(Box::new(NatsPublisher {
            ws,
            parser,
            sent: 0,
        }))
    }
}

struct NatsPublisher {
    ws: Ws,
    parser: Parser,
    sent: u64,
}

#[async_trait]
impl Publisher for NatsPublisher {
    async fn send(&mut self, size: usize) -> anyhow::Result<()> {
        self.sent += 1;
        let b = body(size);
        let frame = format!("PUB bench.{} {}\r\n{b}\r\n", self.sent % 16, b.len());
        self.ws.send(Message::binary(frame)).await?;
        Ok(())
    }

    /// NATS does not acknowledge core publishes; a `PONG` answers a `PING`
    /// only after everything before it was processed.
    async fn finish(&mut self) -> anyhow::Result<u64> {
        self.ws.send(Message::binary("PING\r\n")).await?;
        let mut ignored = VecDeque::new();
        while self.parser.pongs == 0 {
            let frame = next_data(&mut self.ws, Duration::from_secs(120)).await?;
            if self.parser.feed(payload(&frame), &mut ignored)? {
                self.ws.send(Message::binary("PONG\r\n")).await?;
            }
        }
        self.parser.pongs = 0;
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_messages_split_and_joined_across_frames() {
        let mut p = Parser::default();
        let mut out = VecDeque::new();
        let one = "MSG bench.1 1 12\r\n{\"t\":42,\"p\"}\r\n";
        let two = format!("{one}PING\r\n{one}");
        assert!(p.feed(two.as_bytes(), &mut out).unwrap());
        assert_eq!(out, [42, 42]);
        let (a, b) = one.split_at(20);
        assert!(!p.feed(a.as_bytes(), &mut out).unwrap());
        assert_eq!(out.len(), 2);
        p.feed(b.as_bytes(), &mut out).unwrap();
        assert_eq!(out, [42, 42, 42]);
        assert!(p.feed(b"-ERR 'nope'\r\n", &mut out).is_err());
    }
}
