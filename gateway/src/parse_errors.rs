//! Gives hyper's own answers to requests it cannot parse the documented
//! `{"code","message"}` body.
//!
//! A request that is not HTTP/1.1 hyper can read (a malformed request
//! line or header, headers past its buffer, a URI past its limit) never
//! reaches the router: hyper answers it itself with `400`, `414` or `431`,
//! `connection: close` and an empty body, and offers no hook to say more.
//! Every other error of the gateway is JSON with a code, so a client
//! would have to handle these three apart. This wrapper around a
//! connection's stream recognises exactly those heads as hyper writes them
//! and writes, in their place, the same head with a JSON body.
//!
//! What it relies on: hyper writes such a head in one write, as the whole
//! response (there is no body), and nothing the gateway itself answers
//! has one of those statuses with an empty body. Anything else passes
//! through untouched, so if hyper ever wrote these differently the
//! client would get hyper's bare answer again, not a broken one; the
//! error surface test would say so.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use postmesh_schema::protocol::ErrorCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection's stream, with hyper's bare error answers given a body.
pub(crate) struct JsonParseErrors<I> {
    inner: I,
    /// A replacement under way: its bytes, how many are written, and how
    /// many of hyper's bytes it stands for (claimed once all are written).
    pending: Option<Replacement>,
}

struct Replacement {
    bytes: Vec<u8>,
    written: usize,
    stands_for: usize,
}

impl<I> JsonParseErrors<I> {
    pub(crate) fn new(inner: I) -> Self {
        JsonParseErrors {
            inner,
            pending: None,
        }
    }
}

/// The code and message for each status hyper answers by itself.
fn explain(status: &[u8]) -> Option<(ErrorCode, &'static str)> {
    match status {
        b"400" => Some((
            ErrorCode::BadFrame,
            "the request is not HTTP/1.1 the gateway can read (request line or header malformed)",
        )),
        b"414" => Some((ErrorCode::TooLarge, "the request's URI is too long")),
        b"431" => Some((ErrorCode::TooLarge, "the request's headers are too large")),
        _ => None,
    }
}

/// hyper's bare answer, rewritten with a JSON body; `None` for any other
/// write.
fn replacement(head: &[u8]) -> Option<Vec<u8>> {
    const EMPTY: &[u8] = b"\r\ncontent-length: 0\r\n";
    let status = head.strip_prefix(b"HTTP/1.1 ")?.get(..3)?;
    let (code, message) = explain(status)?;
    if !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let at = head.windows(EMPTY.len()).position(|w| w == EMPTY)?;
    let body = serde_json::json!({ "code": code.as_str(), "message": message }).to_string();
    let mut out = Vec::with_capacity(head.len() + body.len() + 48);
    out.extend_from_slice(&head[..at]);
    out.extend_from_slice(
        format!(
            "\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&head[at + EMPTY.len()..]);
    out.extend_from_slice(body.as_bytes());
    Some(out)
}

impl<I: AsyncRead + Unpin> AsyncRead for JsonParseErrors<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for JsonParseErrors<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.pending.is_none() {
            match replacement(buf) {
                Some(bytes) => {
                    this.pending = Some(Replacement {
                        bytes,
                        written: 0,
                        stands_for: buf.len(),
                    })
                }
                None => return Pin::new(&mut this.inner).poll_write(cx, buf),
            }
        }
        let Some(r) = this.pending.as_mut() else {
            unreachable!("set above")
        };
        while r.written < r.bytes.len() {
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &r.bytes[r.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            r.written += n;
        }
        let stands_for = r.stands_for;
        this.pending = None;
        Poll::Ready(Ok(stands_for))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // A replacement is always a whole first slice; writing only it is
        // a short vectored write, which every caller handles.
        let first = bufs.iter().find(|b| !b.is_empty());
        if self.pending.is_some() || first.is_some_and(|b| replacement(b).is_some()) {
            let first = first.map_or(&[][..], |b| &b[..]);
            return self.poll_write(cx, first);
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYPER_400: &[u8] = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 03:08:27 GMT\r\n\r\n";

    #[test]
    fn a_bare_400_gets_a_json_body() {
        let out = String::from_utf8(replacement(HYPER_400).unwrap()).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
        assert!(head.contains("\r\ndate: "), "{head}");
        assert!(head.contains("\r\ncontent-type: application/json\r\n"));
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["code"], "bad_frame");
    }

    #[test]
    fn other_writes_pass_through() {
        // A response of the gateway's own, with a body.
        assert!(replacement(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n").is_none());
        // An empty answer of a status hyper does not produce by itself.
        assert!(
            replacement(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n").is_none()
        );
        // A WebSocket frame, a chunk of a streaming body.
        assert!(replacement(&[0x81, 0x02, b'h', b'i']).is_none());
        assert!(replacement(b"4\r\nHTTP\r\n").is_none());
    }

    /// A stream that takes at most `step` bytes a write, to show a
    /// replacement written across several writes claims hyper's bytes
    /// only once, at the end.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_replacement_is_written_whole_through_short_writes() {
        use tokio::io::AsyncWriteExt;
        let mut w = JsonParseErrors::new(Trickle {
            out: Vec::new(),
            step: 7,
        });
        let n = w.write(HYPER_400).await.unwrap();
        assert_eq!(n, HYPER_400.len());
        w.write_all(b"next").await.unwrap();
        let out = String::from_utf8(w.inner.out).unwrap();
        assert!(out.ends_with("}next"), "{out}");
        assert!(out.contains("\"code\":\"bad_frame\""), "{out}");
    }
}
