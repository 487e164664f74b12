//! The test harness: starts real servers on loopback and speaks to them
//! over real sockets.
//!
//! - [`Mesh`]: a `postmesh up` in this process, on a free port and a
//!   temporary data directory (kept across restarts).
//! - [`Client`]: a WebSocket device speaking the JSON protocol, over plain
//!   TCP or TLS.
//! - [`binary`]: the `postmesh` executable, for CLI tests.
//! - [`rabbit`]: a private RabbitMQ node per test binary.
//! - [`cql`]: the run's Cassandra node and a fresh keyspace per test binary.
//! - [`star`]: three private RabbitMQ nodes (hub, east, west) per test
//!   binary, for the Rabbit Router.

pub mod cql;
pub mod rabbit;
pub mod star;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use postmesh::config::Config;
use postmesh::up::{self, Running};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// How long a frame that should arrive may take.
pub const ARRIVE: Duration = Duration::from_secs(10);

/// The longest a test binary that starts servers may run, unless
/// `POSTMESH_TEST_BINARY_SECS` says otherwise. The slowest takes about a
/// minute on a loaded 2-core machine.
const BINARY_LIMIT: Duration = Duration::from_secs(600);

/// Arms, once per test binary, a watchdog that ends the process with a
/// message when the binary runs past its limit. Every test has deadlines of
/// its own; this one catches a wait that has none, so that a hang fails in
/// minutes, names its binary, and the rest of the run goes on, instead of
/// holding the whole run until CI gives up on it. The servers' own
/// watchdogs stop them when this process ends.
///
/// Arming also logs the servers' own events to the test's output when
/// `RUST_LOG` is set (`RUST_LOG=warn` is where a failure's story starts).
pub fn arm_watchdog() {
    static ARMED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    ARMED.get_or_init(|| {
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .try_init();
        }
        let limit = std::env::var("POSTMESH_TEST_BINARY_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(BINARY_LIMIT);
        let started = std::time::Instant::now();
        std::thread::spawn(move || {
            std::thread::sleep(limit);
            let binary = std::env::args().next().unwrap_or_default();
            eprintln!(
                "{binary} still running after {:?} (limit {limit:?}): a test hangs; stopping the binary",
                started.elapsed()
            );
            std::process::exit(124);
        });
    });
}

/// A running `postmesh up`.
pub struct Mesh {
    pub addr: SocketAddr,
    pub config: Config,
    running: Option<Running>,
    dir: tempfile::TempDir,
}

impl Mesh {
    /// Starts with defaults (anonymous access, loopback, port 0).
    pub async fn start() -> Mesh {
        Mesh::start_with(|_| {}).await
    }

    /// Starts after `tune` adjusted the configuration.
    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> Mesh {
        arm_watchdog();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            data: dir.path().to_path_buf(),
            ..Config::default()
        };
        config.gateway.listen = "127.0.0.1:0".parse().unwrap();
        // Tests need durability semantics, not fsync latency.
        config.core.sync = false;
        tune(&mut config);
        let running = up::start(config.clone()).await.expect("mesh starts");
        Mesh {
            addr: running.addr(),
            config,
            running: Some(running),
            dir,
        }
    }

    /// Stops and starts again on the same data directory (a new port).
    pub async fn restart(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.expect("clean stop");
        }
        let running = up::start(self.config.clone()).await.expect("mesh restarts");
        self.addr = running.addr();
        self.running = Some(running);
    }

    /// Stops.
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.expect("clean stop");
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A device connection.
    pub async fn ws(&self) -> Client {
        Client::connect(&format!("ws://{}/ws", self.addr)).await
    }

    /// A device connection with `?token=`.
    pub async fn ws_token(&self, token: &str) -> Client {
        Client::connect(&format!("ws://{}/ws?token={token}", self.addr)).await
    }

    /// `POST /v1/publish` of one message; returns the UUID.
    pub async fn publish(&self, path: &str, body: Value) -> String {
        let res = self
            .post("/v1/publish", &json!({"path": path, "body": body}), None)
            .await;
        assert_eq!(res.0, 200, "publish failed: {}", res.1);
        res.1["uuid"].as_str().expect("uuid").to_owned()
    }

    /// POST with an optional bearer token: (status, JSON body).
    pub async fn post(&self, path: &str, body: &Value, token: Option<&str>) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .post(format!("{}{path}", self.url()))
            .json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.expect("http request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// GET: (status, JSON body).
    pub async fn get(&self, path_and_query: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = reqwest::Client::new().get(format!("{}{path_and_query}", self.url()));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.expect("http request");
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// The byte stream beneath a device's WebSocket: plain TCP, or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A device: one WebSocket connection speaking JSON frames.
pub struct Client {
    ws: WebSocketStream<Box<dyn Io>>,
    /// The certificate the server presented, over TLS.
    peer_certificate: Option<CertificateDer<'static>>,
    /// Frames received but not yet taken.
    backlog: VecDeque<Value>,
    next_id: u64,
}

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// A close frame with this code.
    Code(u16),
    /// The stream ended without a close frame.
    Eof,
}

impl Client {
    /// Connects to a `ws://` URL.
    pub async fn connect(url: &str) -> Client {
        let (request, host, port) = request(url);
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .expect("connects");
        Client::over(Box::new(tcp), request, None).await
    }

    /// Connects to a `wss://` URL with `tls` (which says what the client
    /// trusts); panics if the handshake fails.
    pub async fn connect_tls(url: &str, tls: Arc<rustls::ClientConfig>) -> Client {
        Client::try_connect_tls(url, tls)
            .await
            .expect("TLS handshake")
    }

    /// Connects to a `wss://` URL with `tls`; the TLS handshake's error if
    /// it fails.
    pub async fn try_connect_tls(
        url: &str,
        tls: Arc<rustls::ClientConfig>,
    ) -> std::io::Result<Client> {
        let (request, host, port) = request(url);
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .expect("connects");
        let name = ServerName::try_from(host).expect("a server name");
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await?;
        let certificate = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|c| c.clone().into_owned());
        Ok(Client::over(Box::new(stream), request, certificate).await)
    }

    async fn over(
        stream: Box<dyn Io>,
        request: Request,
        peer_certificate: Option<CertificateDer<'static>>,
    ) -> Client {
        let (ws, _) = tokio_tungstenite::client_async(request, stream)
            .await
            .expect("websocket connects");
        Client {
            ws,
            peer_certificate,
            backlog: VecDeque::new(),
            next_id: 1,
        }
    }

    /// The certificate the server presented (the first of its chain), over
    /// TLS.
    pub fn peer_certificate(&self) -> Option<&CertificateDer<'static>> {
        self.peer_certificate.as_ref()
    }

    /// Sends a frame as text.
    pub async fn send(&mut self, frame: &Value) {
        self.send_text(&frame.to_string()).await;
    }

    /// Sends raw text.
    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// Sends raw binary.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::binary(bytes)).await.expect("send");
    }

    /// Writes `bytes` to the socket as they are, beneath the WebSocket
    /// library: frames a conforming client never sends.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let socket = self.ws.get_mut();
        socket.write_all(bytes).await.expect("raw write");
        socket.flush().await.expect("raw flush");
    }

    async fn read(&mut self) -> Result<Value, Closed> {
        loop {
            match tokio::time::timeout(ARRIVE, self.ws.next()).await {
                Err(_) => panic!("no frame within {ARRIVE:?}"),
                Ok(None) => return Err(Closed::Eof),
                Ok(Some(Err(_))) => return Err(Closed::Eof),
                Ok(Some(Ok(Message::Text(t)))) => {
                    return Ok(serde_json::from_str(&t).expect("server frames are JSON"));
                }
                Ok(Some(Ok(Message::Close(f)))) => {
                    return Err(Closed::Code(
                        f.map(|f: CloseFrame| u16::from(f.code)).unwrap_or(1005),
                    ));
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// The next frame, waiting at most `wait`; `None` on time-out.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Value> {
        if let Some(v) = self.backlog.pop_front() {
            return Some(v);
        }
        loop {
            match tokio::time::timeout(wait, self.ws.next()).await {
                Err(_) => return None,
                Ok(Some(Ok(Message::Text(t)))) => {
                    return Some(serde_json::from_str(&t).expect("server frames are JSON"));
                }
                Ok(Some(Ok(Message::Close(f)))) => panic!("connection closed: {f:?}"),
                Ok(None) | Ok(Some(Err(_))) => panic!("connection lost"),
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// The next frame, whatever it is.
    pub async fn next(&mut self) -> Value {
        if let Some(v) = self.backlog.pop_front() {
            return v;
        }
        match self.read().await {
            Ok(v) => v,
            Err(c) => panic!("connection closed: {c:?}"),
        }
    }

    /// Waits for the frame with `op` (and `id`, if given), keeping the
    /// others in order for later.
    pub async fn expect(&mut self, op: &str, id: Option<u64>) -> Value {
        if let Some(pos) = self
            .backlog
            .iter()
            .position(|v| v["op"] == op && id.is_none_or(|i| v["id"] == i))
        {
            return self.backlog.remove(pos).expect("position is valid");
        }
        loop {
            match self.read().await {
                Ok(v) if v["op"] == op && id.is_none_or(|i| v["id"] == i) => return v,
                Ok(v) => self.backlog.push_back(v),
                Err(c) => panic!(
                    "connection closed while waiting for {op}: {c:?}; backlog {:?}",
                    self.backlog
                ),
            }
        }
    }

    /// Sends `frame` with a fresh `id` and waits for its reply (`ok` or
    /// `err`), keeping other frames for later.
    pub async fn request(&mut self, mut frame: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        frame["id"] = json!(id);
        self.send(&frame).await;
        loop {
            if let Some(pos) = self
                .backlog
                .iter()
                .position(|v| v["id"] == id && (v["op"] == "ok" || v["op"] == "err"))
            {
                return self.backlog.remove(pos).expect("position is valid");
            }
            match self.read().await {
                Ok(v) => self.backlog.push_back(v),
                Err(c) => panic!("connection closed while waiting for reply {id}: {c:?}"),
            }
        }
    }

    /// Subscribes and asserts success.
    pub async fn sub(&mut self, pattern: &str) -> Value {
        let r = self.request(json!({"op": "sub", "pattern": pattern})).await;
        assert_eq!(r["op"], "ok", "sub {pattern}: {r}");
        r
    }

    /// Takes the next `msg` frame.
    pub async fn msg(&mut self) -> Value {
        self.expect("msg", None).await
    }

    /// Takes `n` `msg` frames.
    pub async fn msgs(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.msg().await);
        }
        out
    }

    /// Takes `msg` frames until every UUID of `want` has arrived, asserting
    /// that each arrives once and nothing else does, then that nothing
    /// more comes for half a second.
    pub async fn receive_each_once(&mut self, want: &std::collections::HashSet<&String>) {
        let mut seen = std::collections::HashSet::new();
        while seen.len() < want.len() {
            let m = self.msg().await;
            let u = m["uuid"].as_str().expect("a uuid").to_owned();
            assert!(want.contains(&u), "unexpected {m}");
            assert!(seen.insert(u), "delivered twice: {m}");
        }
        self.quiet(Duration::from_millis(500)).await;
    }

    /// Asserts that no `msg` frame arrives within `wait`.
    pub async fn quiet(&mut self, wait: Duration) {
        assert!(
            !self.backlog.iter().any(|v| v["op"] == "msg"),
            "unexpected message in backlog: {:?}",
            self.backlog
        );
        if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(wait, self.ws.next()).await {
            let v: Value = serde_json::from_str(&t).expect("json");
            assert_ne!(v["op"], "msg", "unexpected message {v}");
            self.backlog.push_back(v);
        }
    }

    /// Reads until the connection closes; returns how, and the messages
    /// received before.
    pub async fn until_closed(&mut self) -> (Closed, Vec<Value>) {
        let mut msgs: Vec<Value> = self
            .backlog
            .drain(..)
            .filter(|v| v["op"] == "msg")
            .collect();
        loop {
            match self.read().await {
                Ok(v) if v["op"] == "msg" => msgs.push(v),
                Ok(_) => {}
                Err(c) => return (c, msgs),
            }
        }
    }

    /// Closes the connection.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// The WebSocket request for `url`, and the host and port to connect to.
fn request(url: &str) -> (Request, String, u16) {
    let request = url.into_client_request().expect("a WebSocket URL");
    let uri = request.uri();
    let host = uri
        .host()
        .expect("a host")
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("wss") => 443,
        _ => 80,
    });
    (request, host, port)
}

/// POSTs `messages` (each with its own UUID) to `base`'s `/v1/publish`
/// until it is answered 200, every 100 ms: if in doubt, resend; the same
/// UUIDs are the same messages.
pub async fn publish_until_accepted(client: &reqwest::Client, base: &str, messages: &[Value]) {
    loop {
        let res = client
            .post(format!("{base}/v1/publish"))
            .json(&json!({ "messages": messages }))
            .send()
            .await;
        if let Ok(r) = res
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `postmesh` executable built next to the test binaries.
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target profile directory");
    let bin = dir.join(format!("postmesh{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build --bins` (deploy/test.sh does)",
        bin.display()
    );
    bin
}

/// Seconds since the epoch, plus `ahead`.
pub fn epoch_plus(ahead: u64) -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + ahead
}

/// A signed token.
pub fn token(secret: &str, sub: Option<u64>, subs: &[&str], pubs: &[&str]) -> String {
    postmesh_gateway::auth::issue_token(
        secret,
        &postmesh_gateway::auth::Claims {
            sub: sub.map(|s| s.to_string()),
            exp: epoch_plus(3600),
            nbf: None,
            subs: subs.iter().map(|s| s.to_string()).collect(),
            pubs: pubs.iter().map(|s| s.to_string()).collect(),
        },
    )
    .expect("token")
}

/// A loopback address with a port free now, for a process the test starts
/// (and may restart on the same address).
pub fn free_loopback_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    format!("127.0.0.1:{port}")
}

/// A `postmesh` process (any role) started by a test; killed when dropped.
pub struct Process {
    pub child: tokio::process::Child,
    /// `ws://.../ws` (`wss://` with TLS) for a process that runs a gateway.
    pub ws_url: Option<String>,
}

impl Process {
    /// Starts `postmesh <args>` with `envs` and waits until it says it is up.
    pub async fn start(args: &[&str], envs: &[(&str, &str)]) -> Process {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(binary())
            .args(args)
            .envs(envs.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("postmesh starts");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut ws_url = None;
        let mut up = false;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while let Ok(Ok(Some(line))) = tokio::time::timeout_at(deadline, lines.next_line()).await {
            up |= line.contains(" is up");
            if let Some(u) = line
                .split_whitespace()
                .find(|w| w.starts_with("ws://") || w.starts_with("wss://"))
            {
                ws_url = Some(u.to_owned());
            }
            if line.trim_start().starts_with("postoffice") {
                break;
            }
        }
        assert!(up, "postmesh {args:?} did not come up");
        // Keep draining stdout so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Process { child, ws_url }
    }

    /// `http://...` of the gateway (`https://` with TLS).
    pub fn http(&self) -> String {
        let url = self.ws_url.as_deref().expect("a gateway");
        let url = match url.strip_prefix("wss://") {
            Some(rest) => format!("https://{rest}"),
            None => url.replacen("ws://", "http://", 1),
        };
        url.trim_end_matches("/ws").to_owned()
    }

    /// `GET` on the gateway's HTTP API, as JSON.
    pub async fn get(&self, path_and_query: &str, token: Option<&str>) -> Value {
        let mut req = reqwest::Client::new().get(format!("{}{path_and_query}", self.http()));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
            .await
            .expect("http request")
            .json()
            .await
            .expect("a JSON body")
    }

    /// A device on this gateway.
    pub async fn ws(&self, token: Option<&str>) -> Client {
        let url = self.ws_url.clone().expect("a gateway");
        match token {
            Some(t) => Client::connect(&format!("{url}?token={t}")).await,
            None => Client::connect(&url).await,
        }
    }

    /// Kills the process at once (`kill -9`).
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Sends the signal `name` (`TERM`, `INT`, `HUP`) with `kill`.
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {pid}");
    }

    /// `host:port` of the process's gateway.
    pub fn host(&self) -> String {
        let http = self.http();
        http.split_once("://")
            .map_or(http.as_str(), |(_, rest)| rest)
            .to_owned()
    }

    /// Waits up to `within` for the process to exit, and asserts it
    /// exited 0.
    pub async fn exits_cleanly(&mut self, within: Duration) {
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .expect("the process exits in time")
            .expect("wait");
        assert!(status.success(), "exit status {status:?}");
    }

    /// Every UUID in the history of `pattern` (URL-encoded: `a.%23`)
    /// through this gateway, page after page by cursor.
    pub async fn history_uuids(&self, pattern: &str) -> std::collections::HashSet<String> {
        let mut stored = std::collections::HashSet::new();
        let mut before = String::new();
        loop {
            let page = self
                .get(
                    &format!("/v1/history?pattern={pattern}&limit=1000{before}"),
                    None,
                )
                .await;
            let messages = page["messages"].as_array().expect("messages");
            stored.extend(
                messages
                    .iter()
                    .map(|m| m["uuid"].as_str().expect("a uuid").to_owned()),
            );
            match messages.last() {
                Some(m) if page["more"] == true => {
                    before = format!("&before={}", m["cursor"].as_str().expect("a cursor"));
                }
                _ => return stored,
            }
        }
    }

    /// Waits (10 s at most) until the gateway's listener refuses
    /// connections: a stopping process closes it first. Whether it did.
    pub async fn listener_closes(&self) -> bool {
        let addr = self.host();
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(&addr).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}
