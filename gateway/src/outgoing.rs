//! The write side of a device's WebSocket: text frames are written to the
//! socket here, straight from the shared frames, instead of being copied
//! into tungstenite's write buffer. Their headers are tungstenite's
//! (`FrameHeader::format`); everything else about the protocol (reading,
//! control frames, the close handshake) stays with tungstenite.
//!
//! # Why
//! tungstenite copies every outgoing frame into one `Vec` per connection
//! and never shrinks it. After a fan-out burst each connection kept what
//! its largest write had needed: with `?batch=true` a 64 KiB joined frame,
//! so about 64 KiB per connection, for as long as the connection lived
//! (10 000 devices: 12 MB before, 674 MB after a burst of 200 messages;
//! bench/RESULTS.md). Here a queued text frame is its header (at most 10
//! bytes) and the frame's reference-counted bytes; they go out with
//! vectored writes and nothing is kept once written, so a connection falls
//! back to its idle size when a burst is written. It also saves one copy
//! of every frame.
//!
//! # Order with tungstenite
//! Control frames (ping, close) still go through tungstenite, which keeps
//! the close handshake's state and answers the device's pings itself. The
//! two never interleave on the socket: [`Outgoing`] queues control frames
//! in line with text frames and hands each to tungstenite only once
//! everything before it is written; before writing text frames it flushes
//! whatever tungstenite holds (a pong it queued while reading); and the
//! transport reads only when nothing of ours is half-written (tungstenite
//! may write a pong while reading).

use std::collections::VecDeque;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::Sink;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// The longest header of a frame the server sends (unmasked, 64-bit length).
const MAX_HEADER: usize = 10;

/// Most buffers handed to one vectored write.
const MAX_SLICES: usize = 64;

/// A frame on its way.
enum Item {
    /// A text frame: its header, its payload, and how much of both is
    /// written.
    Text {
        header: [u8; MAX_HEADER],
        header_len: u8,
        payload: Bytes,
        written: usize,
    },
    /// A control frame, handed to tungstenite in its turn.
    Control(Message),
}

/// The header of an unmasked (server to client), final text frame whose
/// payload is `len` bytes, formatted by tungstenite (the framing stays
/// tungstenite's; only the write is the gateway's).
fn text_header(len: usize) -> ([u8; MAX_HEADER], u8) {
    let header = FrameHeader {
        opcode: OpCode::Data(Data::Text),
        ..FrameHeader::default()
    };
    let mut h = [0u8; MAX_HEADER];
    let mut out = std::io::Cursor::new(&mut h[..]);
    header
        .format(len as u64, &mut out)
        .expect("an unmasked header fits in 10 bytes");
    let n = out.position() as u8;
    (h, n)
}

/// Frames queued for one WebSocket, in order.
#[derive(Default)]
pub struct Outgoing {
    queue: VecDeque<Item>,
    /// Bytes of text frames queued and not yet written.
    bytes: usize,
    /// tungstenite may hold bytes of its own: a control frame we handed it,
    /// or a pong it queued while reading. They go out before our next text
    /// frame.
    inner_dirty: bool,
}

impl Outgoing {
    /// Nothing queued.
    pub fn new() -> Outgoing {
        Outgoing::default()
    }

    /// Bytes of text frames not yet written.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether anything waits to be written.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Slots the queue holds (for tests of what a burst leaves behind).
    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    /// Queues a text frame; `payload` is shared, not copied.
    pub fn text(&mut self, payload: Bytes) {
        let (header, header_len) = text_header(payload.len());
        self.bytes += usize::from(header_len) + payload.len();
        self.queue.push_back(Item::Text {
            header,
            header_len,
            payload,
            written: 0,
        });
    }

    /// Queues a control frame for tungstenite.
    pub fn control(&mut self, message: Message) {
        self.queue.push_back(Item::Control(message));
    }

    /// tungstenite was read from: it may have queued a pong.
    pub fn note_read(&mut self) {
        self.inner_dirty = true;
    }

    /// Writes everything queued, in order. Ready once all of it is with
    /// the socket or tungstenite (not necessarily flushed by tungstenite:
    /// see [`Outgoing::poll_flush`]).
    pub fn poll_write<S>(
        &mut self,
        ws: &mut WebSocketStream<S>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), WsError>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        loop {
            match self.queue.front() {
                None => {
                    // Written out: an idle connection holds no queue (a
                    // wake-up's flush allocates one again).
                    if self.queue.capacity() > 0 {
                        self.queue = VecDeque::new();
                    }
                    return Poll::Ready(Ok(()));
                }
                Some(Item::Control(_)) => {
                    ready!(Pin::new(&mut *ws).poll_ready(cx))?;
                    if let Some(Item::Control(message)) = self.queue.pop_front() {
                        self.inner_dirty = true;
                        Pin::new(&mut *ws).start_send(message)?;
                    }
                }
                Some(Item::Text { .. }) => {
                    if self.inner_dirty {
                        ready!(Pin::new(&mut *ws).poll_flush(cx))?;
                        self.inner_dirty = false;
                    }
                    let n = ready!(self.poll_write_texts(ws.get_mut(), cx))?;
                    self.advance(n);
                }
            }
        }
    }

    /// One vectored write of the text frames at the front of the queue.
    fn poll_write_texts<S>(&self, io: &mut S, cx: &mut Context<'_>) -> Poll<Result<usize, WsError>>
    where
        S: AsyncWrite + Unpin,
    {
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let mut n = 0;
        for item in &self.queue {
            let Item::Text {
                header,
                header_len,
                payload,
                written,
            } = item
            else {
                break;
            };
            if n + 2 > MAX_SLICES {
                break;
            }
            let header = &header[..usize::from(*header_len)];
            if *written < header.len() {
                slices[n] = IoSlice::new(&header[*written..]);
                n += 1;
                if !payload.is_empty() {
                    slices[n] = IoSlice::new(payload);
                    n += 1;
                }
            } else {
                slices[n] = IoSlice::new(&payload[*written - header.len()..]);
                n += 1;
            }
        }
        match ready!(Pin::new(io).poll_write_vectored(cx, &slices[..n])) {
            Ok(0) => Poll::Ready(Err(WsError::Io(std::io::ErrorKind::WriteZero.into()))),
            Ok(written) => Poll::Ready(Ok(written)),
            Err(e) => Poll::Ready(Err(WsError::Io(e))),
        }
    }

    /// `n` bytes of the text frames at the front were written.
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(Item::Text {
                header_len,
                payload,
                written,
                ..
            }) = self.queue.front_mut()
            else {
                return;
            };
            let left = usize::from(*header_len) + payload.len() - *written;
            if n < left {
                *written += n;
                self.bytes -= n;
                return;
            }
            n -= left;
            self.bytes -= left;
            self.queue.pop_front();
        }
    }

    /// Writes everything queued, then flushes tungstenite and the socket.
    pub fn poll_flush<S>(
        &mut self,
        ws: &mut WebSocketStream<S>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), WsError>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        ready!(self.poll_write(ws, cx))?;
        if self.inner_dirty {
            ready!(Pin::new(&mut *ws).poll_flush(cx))?;
            self.inner_dirty = false;
        }
        Pin::new(ws.get_mut()).poll_flush(cx).map_err(WsError::Io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_by_length() {
        for (len, expect) in [
            (0usize, vec![0x81, 0]),
            (125, vec![0x81, 125]),
            (126, vec![0x81, 126, 0, 126]),
            (65_535, vec![0x81, 126, 0xff, 0xff]),
            (65_536, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let (h, n) = text_header(len);
            assert_eq!(&h[..usize::from(n)], &expect[..], "length {len}");
        }
    }

    #[test]
    fn partial_writes_advance_through_frames() {
        let mut o = Outgoing::new();
        o.text(Bytes::from_static(b"abc"));
        o.text(Bytes::from_static(b""));
        o.text(Bytes::from(vec![b'x'; 200]));
        assert_eq!(o.bytes(), 5 + 2 + 204);
        o.advance(1);
        assert_eq!(o.bytes(), 210);
        o.advance(4);
        assert_eq!(o.queue.len(), 2, "the first frame is written");
        o.advance(2 + 100);
        assert_eq!(o.queue.len(), 1);
        assert_eq!(o.bytes(), 104);
        o.advance(104);
        assert!(o.is_empty());
        assert_eq!(o.bytes(), 0);
    }

    use futures_util::{SinkExt, StreamExt};
    use tokio::io::DuplexStream;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    use crate::session::{Inbound, Outbound};
    use crate::ws::WsTransport;

    /// A server transport and a client WebSocket joined by a pipe that
    /// buffers `pipe` bytes, so writes are cut short.
    async fn pair(pipe: usize) -> (WsTransport<DuplexStream>, WebSocketStream<DuplexStream>) {
        let (a, b) = tokio::io::duplex(pipe);
        let config = crate::ws::ws_config(&crate::GatewayConfig::default());
        let server = WebSocketStream::from_raw_socket(a, Role::Server, Some(config)).await;
        let client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        (WsTransport::new(server), client)
    }

    fn text(n: usize, fill: u8) -> String {
        String::from_utf8(vec![fill; n]).unwrap()
    }

    /// Frames of every header length, pings and a close arrive whole and
    /// in order through short writes.
    #[tokio::test]
    async fn frames_arrive_whole_and_in_order() {
        let (mut server, mut client) = pair(257).await;
        let sizes = [0usize, 1, 125, 126, 1000, 65_535, 65_536, 200_000];
        let expected: Vec<String> = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| text(*n, b'a' + i as u8))
            .collect();
        let sent = expected.clone();
        let writer = tokio::spawn(async move {
            for (i, t) in sent.into_iter().enumerate() {
                server.feed(Outbound::Text(t.into())).await.unwrap();
                if i == 3 {
                    server.feed(Outbound::Ping).await.unwrap();
                }
            }
            server
                .send(Outbound::Close(4000, "slow consumer".into()))
                .await
                .unwrap();
            server
        });
        let mut got = Vec::new();
        let mut pings = 0;
        let close = loop {
            match client.next().await.unwrap().unwrap() {
                Message::Text(t) => got.push(t.to_string()),
                Message::Ping(_) => {
                    assert_eq!(got.len(), 4, "the ping in its place");
                    pings += 1;
                }
                Message::Close(f) => break f.unwrap().code,
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(got, expected);
        assert_eq!(pings, 1);
        assert_eq!(close, CloseCode::from(4000));
        let server = writer.await.unwrap();
        assert!(server_idle(&server));
    }

    fn server_idle(server: &WsTransport<DuplexStream>) -> bool {
        let out = server.outgoing();
        out.is_empty() && out.bytes() == 0 && out.capacity() == 0
    }

    /// The device's pings are answered by tungstenite while text frames
    /// flow, and its pongs never land inside one of our frames: frames
    /// flushed before the next read, and frames still queued when the
    /// transport is read (written first).
    #[tokio::test]
    async fn pongs_and_text_frames_do_not_interleave() {
        let (mut server, mut client) = pair(64).await;
        let reader = tokio::spawn(async move {
            let (mut texts, mut pongs) = (0, 0);
            for round in 0..20u8 {
                while texts < (usize::from(round) + 1) * 50 {
                    match client.next().await.unwrap().unwrap() {
                        Message::Text(t) => {
                            assert_eq!(t.len(), 300);
                            texts += 1;
                        }
                        Message::Pong(p) => {
                            assert_eq!(p[..], [pongs], "pongs in order");
                            pongs += 1;
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
                client
                    .send(Message::Ping(vec![round].into()))
                    .await
                    .unwrap();
            }
            match client.next().await.unwrap().unwrap() {
                Message::Pong(p) => assert_eq!(p[..], [19]),
                other => panic!("expected the last pong, got {other:?}"),
            }
            (texts, pongs + 1)
        });
        for round in 0..20 {
            for _ in 0..50 {
                server
                    .feed(Outbound::Text(text(300, b'z').into()))
                    .await
                    .unwrap();
            }
            if round % 2 == 0 {
                server.flush().await.unwrap();
            }
            assert!(matches!(server.next().await, Some(Inbound::Alive)));
        }
        server.flush().await.unwrap();
        assert_eq!(reader.await.unwrap(), (1000, 20));
        assert!(server_idle(&server));
    }
}
