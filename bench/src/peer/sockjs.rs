//! postmesh over SockJS xhr-streaming (PROTOCOL.md, "SockJS"), the way
//! `sockjs-client` falls back when WebSocket is blocked: each subscriber
//! is one SockJS session. Its frames arrive on a streaming
//! `POST <base>/<server>/<session>/xhr_streaming`, which the gateway ends
//! after `gateway.sockjs.response_limit` bytes and the subscriber opens
//! again; its requests go in `POST .../xhr_send`.
//!
//! Publishers are postmesh's WebSocket ones ([`Postmesh`]), so a run
//! compares the two transports on the delivery side only.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use async_trait::async_trait;

use super::{Peer, Postmesh, Publisher, Subscriber};

/// The longest line (one SockJS frame) a subscriber takes: a batch of
/// frames the gateway wrote at once is far below it.
const MAX_LINE: usize = 16 * 1024 * 1024;

/// Session ids: unique within a harness process.
static NEXT_SESSION: AtomicU64 = AtomicU64::new(0);

/// SockJS xhr-streaming subscribers to `bench.#`; WebSocket publishers.
pub struct SockjsXhrStreaming {
    /// `http://host:port/sockjs`
    pub base: String,
    /// Publishes (over `/ws`).
    pub publish: Postmesh,
    /// The name in reports.
    pub label: String,
    http: reqwest::Client,
}

impl SockjsXhrStreaming {
    /// Subscribers under `base` (`http://host:port/sockjs`), publishers on
    /// `publish`.
    pub fn new(base: impl Into<String>, publish: Postmesh, label: impl Into<String>) -> Self {
        SockjsXhrStreaming {
            base: base.into().trim_end_matches('/').to_owned(),
            publish,
            label: label.into(),
            // No idle connections kept: a session holds exactly its one
            // receiving request's connection, as a browser's does.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("an HTTP client"),
        }
    }
}

/// One session: its receiving request's body, and the lines read from it.
struct Session {
    http: reqwest::Client,
    url: String,
    body: Option<reqwest::Response>,
    buf: Vec<u8>,
    ready: VecDeque<u64>,
}

/// What one SockJS frame (one line of an xhr-streaming body) says.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// `o`: a session opened. After the first, the gateway forgot this
    /// session (no receiving request came within its disconnect delay)
    /// and began a new one under the same id, without the subscription.
    Open,
    /// `h`, and the prelude of `h`s.
    Other,
    /// `a[...]`: client frames.
    Messages,
    /// `c[code,"reason"]`.
    Close(String),
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn classify(line: &[u8]) -> Line {
    match line.first() {
        Some(b'a') => Line::Messages,
        Some(b'c') => Line::Close(String::from_utf8_lossy(line).into_owned()),
        Some(b'o') if line.len() == 1 => Line::Open,
        _ => Line::Other,
    }
}

/// The send timestamps in an `a[...]` line: each `msg` frame is a JSON
/// string inside it, so its body's `"t":` is written `\"t\":`. Found
/// without parsing the whole line, so that the harness is not the
/// bottleneck.
fn escaped_sent_ats(line: &[u8], out: &mut VecDeque<u64>) {
    let key = br#"\"t\":"#;
    let mut rest = line;
    while let Some(at) = rest.windows(key.len()).position(|w| w == key) {
        rest = &rest[at + key.len()..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if let Some(t) = std::str::from_utf8(&rest[..digits])
            .ok()
            .and_then(|d| d.parse().ok())
        {
            out.push_back(t);
        }
    }
}

impl Session {
    /// Opens a receiving request (the first one opens the session).
    async fn receive(&mut self) -> anyhow::Result<()> {
        let res = self
            .http
            .post(format!("{}/xhr_streaming", self.url))
            .send()
            .await
            .with_context(|| format!("POST {}/xhr_streaming", self.url))?;
        if !res.status().is_success() {
            bail!("xhr_streaming answered {}", res.status());
        }
        self.body = Some(res);
        Ok(())
    }

    /// Sends client frames over `xhr_send`.
    async fn send(&self, frames: &[&str]) -> anyhow::Result<()> {
        let res = self
            .http
            .post(format!("{}/xhr_send", self.url))
            .body(serde_json::to_string(frames)?)
            .send()
            .await
            .context("xhr_send")?;
        if res.status().as_u16() != 204 {
            bail!("xhr_send answered {}: {}", res.status(), res.text().await?);
        }
        Ok(())
    }

    /// The next whole line, opening the next receiving request when the
    /// gateway ended this one; `None` after `idle` with nothing.
    async fn line(&mut self, idle: Duration) -> anyhow::Result<Option<Vec<u8>>> {
        loop {
            if let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
                let line = self.buf[..end].to_vec();
                self.buf.drain(..=end);
                return Ok(Some(line));
            }
            if self.buf.len() > MAX_LINE {
                bail!("a SockJS frame over {MAX_LINE} bytes");
            }
            if self.body.is_none() {
                self.receive().await?;
            }
            let body = self.body.as_mut().expect("opened above");
            match tokio::time::timeout(idle, body.chunk()).await {
                Err(_) => return Ok(None),
                Ok(Ok(Some(chunk))) => self.buf.extend_from_slice(&chunk),
                // The gateway ended this response at its size limit.
                Ok(Ok(None)) => self.body = None,
                Ok(Err(e)) => return Err(e).context("reading xhr_streaming"),
            }
        }
    }
}

#[async_trait]
impl Peer for SockjsXhrStreaming {
    fn name(&self) -> &str {
        &self.label
    }

    async fn subscriber(&self) -> anyhow::Result<Box<dyn Subscriber>> {
        let n = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
        let mut s = Session {
            http: self.http.clone(),
            url: format!("{}/{:03}/b{}x{n}", self.base, n % 1000, std::process::id()),
            body: None,
            buf: Vec::new(),
            ready: VecDeque::new(),
        };
        let wait = Duration::from_secs(30);
        loop {
            match s.line(wait).await?.as_deref() {
                Some(b"o") => break,
                Some(l) if l.first() == Some(&b'c') => {
                    bail!("session refused: {}", String::from_utf8_lossy(l))
                }
                Some(_) => {}
                None => bail!("no open frame within {wait:?}"),
            }
        }
        s.send(&[r#"{"op":"sub","id":1,"pattern":"bench.#"}"#])
            .await?;
        loop {
            let Some(l) = s.line(wait).await? else {
                bail!("no answer to sub within {wait:?}");
            };
            match classify(&l) {
                Line::Messages if contains(&l, br#"\"op\":\"ok\""#) => break,
                Line::Messages if contains(&l, br#"\"op\":\"err\""#) => {
                    bail!("subscribe refused: {}", String::from_utf8_lossy(&l))
                }
                Line::Close(c) => bail!("session closed: {c}"),
                _ => {}
            }
        }
        Ok(Box::new(s))
    }

    async fn publisher(&self) -> anyhow::Result<Box<dyn Publisher>> {
        self.publish.publisher().await
    }
}

#[async_trait]
impl Subscriber for Session {
    async fn next(&mut self, idle: Duration) -> anyhow::Result<Option<u64>> {
        loop {
            if let Some(t) = self.ready.pop_front() {
                return Ok(Some(t));
            }
            let line = match self.line(idle).await {
                Ok(Some(line)) => line,
                Ok(None) => return Ok(None),
                Err(e) => {
                    eprintln!("sockjs subscriber failed: {e:#}");
                    return Err(e);
                }
            };
            match classify(&line) {
                Line::Messages => escaped_sent_ats(&line, &mut self.ready),
                Line::Close(c) => {
                    // The scenario stops counting this subscriber: say why.
                    eprintln!("sockjs subscriber closed by the server: {c}");
                    bail!("closed by the server: {c}")
                }
                Line::Open => {
                    eprintln!("sockjs subscriber's session was forgotten and opened anew");
                    bail!("the gateway forgot the session and opened a new one")
                }
                Line::Other => {}
            }
        }
    }

    /// Leaves as a browser tab that closes does: the receiving request is
    /// dropped, which ends the session on the gateway.
    async fn close(mut self: Box<Self>) -> anyhow::Result<()> {
        self.body = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_found_inside_the_escaped_frames() {
        let frame =
            |t: u64| format!(r#"{{"op":"msg","path":"bench.1","body":{{"t":{t},"pad":"x"}}}}"#);
        let line = serde_json::to_string(&[frame(11), frame(22)]).unwrap();
        let line = format!("a{line}");
        let mut out = VecDeque::new();
        escaped_sent_ats(line.as_bytes(), &mut out);
        assert_eq!(out, [11, 22]);
        assert_eq!(classify(line.as_bytes()), Line::Messages);
        assert_eq!(classify(b"h"), Line::Other);
        assert_eq!(classify(b"o"), Line::Open);
        assert!(matches!(classify(b"c[4000,\"slow\"]"), Line::Close(_)));
    }
}
