//! Resume never loses a message.
//!
//! Every `msg` carries a `cursor`, its position in the store's resume order
//! (stored order, not publish time). A device that drops and resubscribes
//! with `since` = the cursor of the last message it received gets every
//! acknowledged message matching its pattern that it had not received, and
//! none twice, whoever published it, over whatever transport, with whatever
//! UUID. The `ok` of such a `sub` says `gap: true` when the position is older
//! than the retention of the pattern's category.
//!
//! Where a server sends no `cursor`, these tests resume from the `uuid` of
//! the last message instead (the behaviour before cursors existed), so they
//! run against it, and fail.
//!
//! The randomized tests take their seed from `RESUME_SEED` when it is set,
//! and print it when they fail.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use postmesh_schema::Pattern;
use postmesh_tests::{ARRIVE, Mesh};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

// ---------------------------------------------------------------- randomness

/// xorshift64*: small, seeded, good enough to shuffle timings.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, so that neighbouring seeds diverge at once.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// True with probability `p` percent.
    fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }
}

/// The seed of the randomized tests: `RESUME_SEED`, or a fixed one.
fn base_seed() -> u64 {
    std::env::var("RESUME_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_2026)
}

// ------------------------------------------------------ v1 UUIDs, by hand

/// 100 ns ticks between 1582-10-15 (the v1 epoch) and 1970-01-01.
const GREGORIAN_OFFSET: u64 = 0x01B2_1DD2_1381_4000;

/// v1 ticks per second.
const TICKS_PER_SEC: u64 = 10_000_000;

/// Now, in v1 ticks.
fn now_ticks() -> u64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    since_epoch.as_nanos() as u64 / 100 + GREGORIAN_OFFSET
}

/// A version-1, RFC 4122 variant UUID with this 60-bit timestamp, clock
/// sequence (14 bits) and node (48 bits).
fn v1_uuid(ticks: u64, clock_seq: u64, node: u64) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        ticks & 0xffff_ffff,
        (ticks >> 32) & 0xffff,
        ((ticks >> 48) & 0x0fff) | 0x1000,
        (clock_seq & 0x3fff) | 0x8000,
        node & 0xffff_ffff_ffff,
    )
}

/// A v1 UUID at `ticks` with a random clock sequence and a random node (the
/// multicast bit set, as RFC 9562 asks of random nodes).
fn random_v1_at(rng: &mut Rng, ticks: u64) -> String {
    v1_uuid(ticks, rng.next(), rng.next() | 0x0100_0000_0000)
}

/// The order of a v1 UUID: its 60-bit timestamp, then clock sequence and
/// node. `None` for anything else.
fn v1_order(s: &str) -> Option<(u64, u64)> {
    let b = s.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') || b[14] != b'1' {
        return None;
    }
    if !s.chars().all(|c| c == '-' || c.is_ascii_hexdigit()) {
        return None;
    }
    let hex = |r: std::ops::Range<usize>| u64::from_str_radix(&s[r], 16).ok();
    let low = hex(0..8)?;
    let mid = hex(9..13)?;
    let hi = hex(14..18)? & 0x0fff;
    let rest = (hex(19..23)? << 48) | hex(24..36)?;
    Some(((hi << 48) | (mid << 32) | low, rest))
}

/// The 60-bit timestamp of a v1 UUID.
fn v1_ticks(s: &str) -> u64 {
    v1_order(s)
        .unwrap_or_else(|| panic!("{s} is not a v1 UUID"))
        .0
}

/// Where to resume after `m`: its `cursor`, or (a server without cursors)
/// its `uuid`.
fn cursor_of(m: &Value) -> String {
    m["cursor"]
        .as_str()
        .or_else(|| m["uuid"].as_str())
        .unwrap_or_else(|| panic!("a msg without cursor or uuid: {m}"))
        .to_owned()
}

fn uuid_of(m: &Value) -> String {
    m["uuid"]
        .as_str()
        .unwrap_or_else(|| panic!("a msg without uuid: {m}"))
        .to_owned()
}

// ------------------------------------------------------------ connections

/// A raw device connection that, unlike the harness client, reports a
/// close instead of panicking (a device that is closed resumes), and
/// understands `?batch=true` frames.
struct Conn {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Lines of a batched frame not yet taken.
    pending: VecDeque<Value>,
}

enum Read {
    Frame(Value),
    Idle,
    Closed(String),
}

impl Conn {
    async fn open(url: &str) -> Conn {
        let (ws, _) = tokio::time::timeout(ARRIVE, tokio_tungstenite::connect_async(url))
            .await
            .unwrap_or_else(|_| panic!("no WebSocket handshake within {ARRIVE:?}"))
            .expect("websocket connects");
        Conn {
            ws,
            pending: VecDeque::new(),
        }
    }

    /// Sends a frame; false if the connection is gone.
    async fn send(&mut self, frame: &Value) -> bool {
        self.ws.send(Frame::text(frame.to_string())).await.is_ok()
    }

    /// The next frame, waiting at most `wait`.
    async fn read(&mut self, wait: Duration) -> Read {
        if let Some(v) = self.pending.pop_front() {
            return Read::Frame(v);
        }
        let deadline = Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Read::Idle,
                Ok(None) => return Read::Closed("end of stream".into()),
                Ok(Some(Err(e))) => return Read::Closed(e.to_string()),
                Ok(Some(Ok(Frame::Text(t)))) => {
                    let mut lines = t.split('\n').filter(|l| !l.is_empty()).map(|l| {
                        serde_json::from_str::<Value>(l)
                            .unwrap_or_else(|e| panic!("server frame is not JSON ({e}): {l}"))
                    });
                    let Some(first) = lines.next() else { continue };
                    self.pending.extend(lines);
                    return Read::Frame(first);
                }
                Ok(Some(Ok(Frame::Close(f)))) => {
                    return Read::Closed(format!(
                        "closed by the server with {:?}",
                        f.map(|f| (u16::from(f.code), f.reason.to_string()))
                    ));
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Waits for the reply (`ok` or `err`) to request `id`, pushing the `msg`
    /// frames that come before it onto `msgs`. `Err` if the connection
    /// closes first.
    async fn reply(&mut self, id: u64, msgs: &mut Vec<Value>) -> Result<Value, String> {
        loop {
            match self.read(ARRIVE).await {
                Read::Frame(v) if v["op"] == "msg" => msgs.push(v),
                Read::Frame(v) if v["id"] == id && (v["op"] == "ok" || v["op"] == "err") => {
                    return Ok(v);
                }
                Read::Frame(_) => {}
                Read::Idle => panic!("no reply to request {id} within {ARRIVE:?}"),
                Read::Closed(why) => return Err(why),
            }
        }
    }

    /// Goes away with a close frame, or (`abrupt`) by dropping the socket.
    async fn leave(mut self, abrupt: bool) {
        if !abrupt {
            let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
        }
    }
}

// -------------------------------------------------------------- publishers

/// What a publisher had acknowledged: UUID → path.
type Acked = HashMap<String, String>;

/// Sends pub frames (without ids) back to back, then reads their replies,
/// which come in order; returns them. Each must be `ok`.
async fn pipeline(conn: &mut Conn, next_id: &mut u64, frames: Vec<Value>) -> Vec<Value> {
    let first = *next_id;
    for mut f in frames {
        f["id"] = json!(*next_id);
        *next_id += 1;
        assert!(conn.send(&f).await, "the publisher's connection is gone");
    }
    let mut replies = Vec::new();
    for id in first..*next_id {
        match conn.read(ARRIVE).await {
            Read::Frame(r) => {
                assert_eq!(
                    (r["op"].as_str(), r["id"].as_u64()),
                    (Some("ok"), Some(id)),
                    "reply to pub {id}: {r}"
                );
                replies.push(r);
            }
            Read::Idle => panic!("no reply to pub {id} within {ARRIVE:?}"),
            Read::Closed(why) => panic!("the publisher's connection closed: {why}"),
        }
    }
    replies
}

/// `POST /v1/publish`, which must answer 200; its JSON body.
async fn http_publish(http: &reqwest::Client, url: &str, body: &Value) -> Value {
    let res = tokio::time::timeout(
        ARRIVE,
        http.post(format!("{url}/v1/publish")).json(body).send(),
    )
    .await
    .unwrap_or_else(|_| panic!("no answer to a publish within {ARRIVE:?}"))
    .expect("http publish");
    let status = res.status().as_u16();
    let text = res.text().await.expect("a publish answer");
    assert_eq!(status, 200, "publish answered {status}: {text}");
    serde_json::from_str(&text).expect("a JSON publish answer")
}

// ----------------------------------------------------------------- devices

/// How a device drops: after at most `msgs` messages or `conn_ms` on one
/// connection, it goes away for up to `offline_ms`.
#[derive(Clone, Copy)]
struct DropPlan {
    msgs: u64,
    conn_ms: u64,
    offline_ms: u64,
}

/// A device that subscribes, drops now and then, and resumes with `since`;
/// it records everything it receives.
struct Device {
    name: String,
    url: String,
    pattern: String,
    rng: Rng,
    plan: DropPlan,
    next_id: u64,
    /// UUID → how many times received.
    counts: HashMap<String, u32>,
    received: u64,
    /// Where to resume.
    last_cursor: Option<String>,
    /// The order of the last cursor, when cursors are v1 UUIDs.
    last_key: Option<(u64, u64)>,
    resumes: u64,
    /// Resumes answered `more: true` (resumed again from there).
    more: u64,
    /// Connections the server closed.
    server_closes: Vec<String>,
    problems: Vec<String>,
}

/// Where the device is in its final phase: publishing is over, and it
/// reads until it holds every acknowledged message or the stream is quiet.
struct Finish {
    missing: HashSet<String>,
    last_frame: Instant,
    settle_until: Option<Instant>,
    give_up: Instant,
}

/// After the last missing message arrived, how long the device keeps
/// listening for copies.
const SETTLE: Duration = Duration::from_millis(300);
/// With messages still missing, how long a quiet stream is waited on.
const SILENCE: Duration = Duration::from_secs(2);

impl Device {
    fn new(name: &str, mesh: &Mesh, pattern: &str, seed: u64, plan: DropPlan) -> Device {
        Device {
            name: name.to_owned(),
            url: format!("ws://{}/ws", mesh.addr),
            pattern: pattern.to_owned(),
            rng: Rng::new(seed),
            plan,
            next_id: 1,
            counts: HashMap::new(),
            received: 0,
            last_cursor: None,
            last_key: None,
            resumes: 0,
            more: 0,
            server_closes: Vec::new(),
            problems: Vec::new(),
        }
    }

    fn problem(&mut self, p: String) {
        if self.problems.len() < 20 {
            self.problems.push(p);
        }
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A connection, with batched frames one time in three.
    async fn open(&mut self) -> Conn {
        if self.rng.percent(33) {
            Conn::open(&format!("{}?batch=true", self.url)).await
        } else {
            Conn::open(&self.url).await
        }
    }

    /// Records a message; checks that cursors (when the server sends them
    /// and they are v1 UUIDs) increase along `prev`.
    fn take(&mut self, m: &Value, prev: &mut Option<(u64, u64)>, how: &str) {
        let uuid = uuid_of(m);
        *self.counts.entry(uuid.clone()).or_default() += 1;
        self.received += 1;
        if let Some(key) = m["cursor"].as_str().and_then(v1_order) {
            if prev.is_some_and(|p| key <= p) {
                self.problem(format!(
                    "{how} msg {uuid} has cursor {} not after the one before it on this connection",
                    m["cursor"]
                ));
            }
            *prev = Some(key);
            self.last_key = Some(key);
        }
        self.last_cursor = Some(cursor_of(m));
    }

    /// Subscribes (no replay) on a first connection.
    async fn subscribe(&mut self) -> Conn {
        let mut conn = self.open().await;
        let id = self.id();
        assert!(
            conn.send(&json!({"op": "sub", "id": id, "pattern": self.pattern}))
                .await
        );
        let mut early = Vec::new();
        let r = conn.reply(id, &mut early).await.expect("sub answered");
        assert_eq!(r["op"], "ok", "{}: sub {}: {r}", self.name, self.pattern);
        assert!(
            early.is_empty(),
            "messages before the subscription: {early:?}"
        );
        conn
    }

    /// Reconnects and resubscribes with `since` = the last cursor; records
    /// the replay. On `more: true` (the replay was cut short) it resumes
    /// again from the last replayed message.
    async fn resume(&mut self) -> Conn {
        for _ in 0..50 {
            let since = self.last_cursor.clone().expect("resume after a message");
            let mut conn = self.open().await;
            let id = self.id();
            let frame = json!({"op": "sub", "id": id, "pattern": self.pattern, "since": since});
            if !conn.send(&frame).await {
                self.server_closes.push("gone before the sub".into());
                continue;
            }
            let mut replay = Vec::new();
            let reply = conn.reply(id, &mut replay).await;
            // Replayed messages are received even if the ok never comes.
            let mut prev = self.last_key;
            for m in &replay {
                self.take(m, &mut prev, "replayed");
            }
            let reply = match reply {
                Ok(r) => r,
                Err(why) => {
                    self.server_closes.push(why);
                    continue;
                }
            };
            assert_eq!(
                reply["op"], "ok",
                "{}: resume of {} since {since} refused: {reply}",
                self.name, self.pattern
            );
            self.resumes += 1;
            if reply["replayed"].as_u64() != Some(replay.len() as u64) {
                self.problem(format!(
                    "resume since {since}: ok says replayed {} but {} msgs came before it",
                    reply["replayed"],
                    replay.len()
                ));
            }
            if reply["gap"] == true {
                self.problem(format!("resume since {since} reported a gap: {reply}"));
            }
            if reply["more"] == true {
                self.more += 1;
                conn.leave(true).await;
                continue;
            }
            return conn;
        }
        panic!(
            "{}: fifty resumes in a row failed: {:?}",
            self.name, self.server_closes
        );
    }

    /// Runs until `done` carries what was acknowledged and the device holds
    /// all of it that matches its pattern (or the stream went quiet).
    async fn run(
        mut self,
        ready: oneshot::Sender<()>,
        mut done: watch::Receiver<Option<Arc<Acked>>>,
    ) -> Device {
        let mut conn = Some(self.subscribe().await);
        let _ = ready.send(());
        let pattern = Pattern::parse(&self.pattern).expect("a valid pattern");
        let mut finish: Option<Finish> = None;
        let mut on_conn = 0u64;
        let mut conn_until = Instant::now() + self.rng.millis(1, self.plan.conn_ms);
        let mut conn_budget = self.rng.range(1, self.plan.msgs);
        let mut live_key = None;
        loop {
            if finish.is_none() {
                let acked = done.borrow_and_update().clone();
                if let Some(acked) = acked {
                    let missing = acked
                        .iter()
                        .filter(|(u, p)| pattern.matches_str(p) && !self.counts.contains_key(*u))
                        .map(|(u, _)| u.clone())
                        .collect::<HashSet<_>>();
                    let now = Instant::now();
                    finish = Some(Finish {
                        settle_until: missing.is_empty().then(|| now + SETTLE),
                        missing,
                        last_frame: now,
                        give_up: now + Duration::from_secs(20),
                    });
                }
            }
            let Some(c) = conn.as_mut() else {
                if finish.is_none() {
                    let offline = self.rng.millis(0, self.plan.offline_ms);
                    tokio::time::sleep(offline).await;
                }
                let before = self.received;
                conn = Some(self.resume().await);
                // Replayed messages count towards the next drop, so that a
                // device drops every so many messages, however they came.
                on_conn = self.received - before;
                if let Some(f) = finish.as_mut() {
                    f.missing.retain(|u| !self.counts.contains_key(u));
                    if f.missing.is_empty() && f.settle_until.is_none() {
                        f.settle_until = Some(Instant::now() + SETTLE);
                    }
                }
                conn_until = Instant::now() + self.rng.millis(1, self.plan.conn_ms);
                conn_budget = self.rng.range(1, self.plan.msgs);
                // One writer: the whole stream, replays and live, across
                // connections, is in cursor order.
                live_key = self.last_key;
                continue;
            };
            match c.read(Duration::from_millis(50)).await {
                Read::Frame(m) if m["op"] == "msg" => {
                    self.take(&m, &mut live_key, "live");
                    on_conn += 1;
                    if let Some(f) = finish.as_mut() {
                        f.last_frame = Instant::now();
                        if f.missing.remove(&uuid_of(&m)) && f.missing.is_empty() {
                            f.settle_until = Some(Instant::now() + SETTLE);
                        }
                    }
                }
                Read::Frame(f) => {
                    if f["op"] == "err" {
                        self.problem(format!("an error frame: {f}"));
                    }
                }
                Read::Idle => {}
                Read::Closed(why) => {
                    self.server_closes.push(why);
                    conn = None;
                    continue;
                }
            }
            match &finish {
                Some(f) => {
                    let now = Instant::now();
                    if f.settle_until.is_some_and(|t| now >= t)
                        || now >= f.give_up
                        || now.duration_since(f.last_frame) >= SILENCE
                    {
                        break;
                    }
                }
                None => {
                    let due = on_conn >= conn_budget || Instant::now() >= conn_until;
                    if due && self.last_cursor.is_some() {
                        let abrupt = self.rng.percent(50);
                        conn.take().expect("connected").leave(abrupt).await;
                    }
                }
            }
        }
        if let Some(c) = conn {
            c.leave(false).await;
        }
        self
    }

    /// What is wrong with what the device received, given everything that
    /// was acknowledged.
    fn verify(&self, acked: &Acked) -> Vec<String> {
        let pattern = Pattern::parse(&self.pattern).expect("a valid pattern");
        let expected: HashSet<&String> = acked
            .iter()
            .filter(|(_, p)| pattern.matches_str(p))
            .map(|(u, _)| u)
            .collect();
        let mut out: Vec<String> = self
            .problems
            .iter()
            .map(|p| format!("{} ({}): {p}", self.name, self.pattern))
            .collect();
        let mut missing: Vec<&String> = expected
            .iter()
            .copied()
            .filter(|u| !self.counts.contains_key(*u))
            .collect();
        missing.sort();
        if !missing.is_empty() {
            let shown: Vec<String> = missing
                .iter()
                .take(5)
                .map(|u| format!("{u} at {}", acked[*u]))
                .collect();
            out.push(format!(
                "{} ({}): {} of {} acknowledged messages never received (after {} resumes), e.g. {shown:?}",
                self.name,
                self.pattern,
                missing.len(),
                expected.len(),
                self.resumes
            ));
        }
        let twice: Vec<(&String, &u32)> = self.counts.iter().filter(|(_, n)| **n > 1).collect();
        if !twice.is_empty() {
            out.push(format!(
                "{} ({}): {} messages received more than once, e.g. {:?}",
                self.name,
                self.pattern,
                twice.len(),
                twice.iter().take(5).collect::<Vec<_>>()
            ));
        }
        let stray: Vec<&String> = self
            .counts
            .keys()
            .filter(|u| !expected.contains(u))
            .collect();
        if !stray.is_empty() {
            out.push(format!(
                "{} ({}): {} messages received that were not acknowledged or do not match, e.g. {:?}",
                self.name,
                self.pattern,
                stray.len(),
                stray.iter().take(5).collect::<Vec<_>>()
            ));
        }
        out
    }
}

/// Starts devices; returns their tasks once each is subscribed.
async fn start_devices(
    devices: Vec<Device>,
    done: &watch::Receiver<Option<Arc<Acked>>>,
) -> Vec<tokio::task::JoinHandle<Device>> {
    let mut tasks = Vec::new();
    for d in devices {
        let (ready_tx, ready_rx) = oneshot::channel();
        tasks.push(tokio::spawn(d.run(ready_tx, done.clone())));
        tokio::time::timeout(ARRIVE, ready_rx)
            .await
            .expect("the device subscribes in time")
            .expect("the device subscribed");
    }
    tasks
}

/// Hands the acknowledged messages to the devices and collects them when
/// they have finished.
async fn finish_devices(
    tasks: Vec<tokio::task::JoinHandle<Device>>,
    done: &watch::Sender<Option<Arc<Acked>>>,
    acked: &Acked,
) -> Vec<Device> {
    done.send_replace(Some(Arc::new(acked.clone())));
    let mut out = Vec::new();
    for t in tasks {
        let d = tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("the device finishes in time")
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        out.push(d);
    }
    out
}

// ------------------------------------------------------------------- tests

/// One round of test 1: a pipelining WebSocket publisher and an HTTP
/// publisher (single and batch bodies) publish to `feeds.resume.<n>` while a
/// device subscribed to `feeds.resume.#` drops and resumes.
async fn mixed_round(seed: u64) -> (Vec<String>, u64, String) {
    let mesh = Mesh::start().await;
    let mut rng = Rng::new(seed);
    let (done_tx, done_rx) = watch::channel(None);
    let device = Device::new(
        "subscriber",
        &mesh,
        "feeds.resume.#",
        rng.next(),
        DropPlan {
            msgs: 100,
            conn_ms: 200,
            offline_ms: 30,
        },
    );
    let devices = start_devices(vec![device], &done_rx).await;

    const WS_BURSTS: u64 = 5;
    const BURST: u64 = 200;
    let ws_url = format!("ws://{}/ws", mesh.addr);
    let ws_seed = rng.next();
    let ws = tokio::spawn(async move {
        let mut rng = Rng::new(ws_seed);
        let mut conn = Conn::open(&ws_url).await;
        let mut id = 1;
        let mut acked = Vec::new();
        for b in 0..WS_BURSTS {
            let frames: Vec<Value> = (0..BURST)
                .map(|i| {
                    let n = b * BURST + i;
                    json!({"op": "pub", "path": format!("feeds.resume.{}", rng.range(0, 6)), "body": {"ws": n}})
                })
                .collect();
            let paths: Vec<String> = frames
                .iter()
                .map(|f| f["path"].as_str().unwrap().to_owned())
                .collect();
            for (r, p) in pipeline(&mut conn, &mut id, frames).await.iter().zip(paths) {
                assert_eq!(r["duplicate"], false, "{r}");
                acked.push((uuid_of(r), p));
            }
            tokio::time::sleep(rng.millis(0, 20)).await;
        }
        conn.leave(false).await;
        acked
    });
    let http_tasks: Vec<_> = (0..2)
        .map(|t| {
            let url = mesh.url();
            let http_seed = rng.next();
            tokio::spawn(async move {
                let mut rng = Rng::new(http_seed);
                let http = reqwest::Client::new();
                let mut acked = Vec::new();
                let mut n = 0;
                while n < 500 {
                    if rng.percent(40) {
                        let path = format!("feeds.resume.{}", rng.range(0, 6));
                        let r = http_publish(
                            &http,
                            &url,
                            &json!({"path": path, "body": {"http": t, "n": n}}),
                        )
                        .await;
                        assert_eq!(r["duplicate"], false, "{r}");
                        acked.push((r["uuid"].as_str().expect("uuid").to_owned(), path));
                        n += 1;
                    } else {
                        let size = rng.range(2, 50);
                        let messages: Vec<Value> = (0..size)
                            .map(|i| json!({"path": format!("feeds.resume.{}", rng.range(0, 6)), "body": {"http": t, "n": n + i}}))
                            .collect();
                        let r = http_publish(&http, &url, &json!({ "messages": messages })).await;
                        assert_eq!(r["duplicates"], 0, "{r}");
                        let uuids = r["uuids"].as_array().expect("uuids");
                        assert_eq!(uuids.len() as u64, size, "{r}");
                        for (u, m) in uuids.iter().zip(&messages) {
                            acked.push((
                                u.as_str().expect("uuid").to_owned(),
                                m["path"].as_str().unwrap().to_owned(),
                            ));
                        }
                        n += size;
                    }
                }
                acked
            })
        })
        .collect();

    let mut acked = Acked::new();
    let mut all = ws.await.expect("the WebSocket publisher");
    for t in http_tasks {
        all.extend(t.await.expect("an HTTP publisher"));
    }
    for (u, p) in all {
        assert!(
            acked.insert(u.clone(), p).is_none(),
            "{u} acknowledged twice"
        );
    }
    let devices = finish_devices(devices, &done_tx, &acked).await;
    let d = &devices[0];
    let summary = format!(
        "{} acknowledged, {} received, {} resumes ({} with more), server closes {:?}",
        acked.len(),
        d.received,
        d.resumes,
        d.more,
        d.server_closes
    );
    let mut problems = d.verify(&acked);
    if d.resumes == 0 {
        problems.push("the device never dropped: nothing was tested".into());
    }
    mesh.stop().await;
    (problems, d.resumes, summary)
}

/// Publishers on both transports, pipelined and batched, race while a
/// device keeps dropping and resuming from the cursor of the last message it
/// received: it ends up with every acknowledged message exactly once.
/// Resuming by UUID time (before cursors) both loses and repeats messages:
/// UUIDs are taken when a publish is read, but batches of the two publishers
/// commit in another order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_publishers_resume_without_gap_or_duplicate() {
    const ROUNDS: u64 = 12;
    let seed = base_seed();
    let mut failures = Vec::new();
    let mut resumes = 0;
    for round in 0..ROUNDS {
        let round_seed = seed.wrapping_add(round.wrapping_mul(0x100_0001));
        let (problems, n, summary) = mixed_round(round_seed).await;
        resumes += n;
        eprintln!("round {round} (seed {round_seed}): {summary}");
        if !problems.is_empty() {
            failures.push(format!(
                "round {round} (seed {round_seed}, {summary}):\n  {}",
                problems.join("\n  ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ROUNDS} rounds failed (RESUME_SEED={seed}):\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        resumes >= 2 * ROUNDS,
        "only {resumes} resumes in {ROUNDS} rounds: the device did not drop enough to test anything"
    );
}

/// A publisher resends with a UUID it chose an hour before a message the
/// device already received: the device that resumes after that message
/// still gets it, because resume follows stored order, not UUID time.
#[tokio::test]
async fn resend_with_an_earlier_uuid_reaches_a_resumed_device() {
    let mesh = Mesh::start().await;
    let mut rng = Rng::new(base_seed());
    let mut device = mesh.ws().await;
    device.sub("feeds.earlier.#").await;
    let u1 = mesh.publish("feeds.earlier.1", json!("m1")).await;
    let m1 = device.msg().await;
    assert_eq!(m1["uuid"], u1);
    let cursor1 = cursor_of(&m1);
    device.close().await;

    // m0: published after m1, with a UUID an hour older.
    let u0 = random_v1_at(&mut rng, v1_ticks(&u1) - 3600 * TICKS_PER_SEC);
    let (status, r) = mesh
        .post(
            "/v1/publish",
            &json!({"path": "feeds.earlier.0", "uuid": u0, "body": "m0"}),
            None,
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["uuid"], u0, "{r}");
    assert_eq!(r["duplicate"], false, "{r}");

    let mut device = mesh.ws().await;
    let r = device
        .request(json!({"op": "sub", "pattern": "feeds.earlier.#", "since": cursor1}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    assert_eq!(
        r["replayed"], 1,
        "m0 (uuid {u0}, an hour before m1) was stored after m1 (cursor {cursor1}): {r}"
    );
    assert_eq!(r["more"], false, "{r}");
    let m0 = device.msg().await;
    assert_eq!(m0["uuid"], u0);
    assert_eq!(m0["body"], "m0");
    // Live again, and neither m1 nor m0 a second time.
    let u2 = mesh.publish("feeds.earlier.2", json!("m2")).await;
    let m2 = device.msg().await;
    assert_eq!(m2["uuid"], u2, "the next live message, nothing else");
    device.quiet(Duration::from_millis(200)).await;
    device.close().await;

    // The same with a `pub` frame and a UUID two hours older than m1.
    let mut publisher = mesh.ws().await;
    let u00 = random_v1_at(&mut rng, v1_ticks(&u1) - 2 * 3600 * TICKS_PER_SEC);
    let r = publisher
        .request(json!({"op": "pub", "path": "feeds.earlier.00", "uuid": u00, "body": "m00"}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    assert_eq!(r["duplicate"], false, "{r}");
    let mut device = mesh.ws().await;
    let r = device
        .request(json!({"op": "sub", "pattern": "feeds.earlier.#", "since": cursor_of(&m2)}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    assert_eq!(r["replayed"], 1, "m00 was stored after m2: {r}");
    assert_eq!(device.msg().await["uuid"], u00);
    device.quiet(Duration::from_millis(200)).await;
    mesh.stop().await;
}

/// A resume from a position older than the category's retention says
/// `gap: true` (what came after it may have been deleted); a resume from a
/// fresh cursor, or in a category kept forever, says `gap: false`.
#[tokio::test]
async fn resume_older_than_retention_says_gap() {
    let mesh = Mesh::start_with(|c| {
        c.core.retention_secs.insert("feeds".into(), 60);
    })
    .await;
    let mut rng = Rng::new(base_seed());
    let mut device = mesh.ws().await;
    device.sub("feeds.kept.#").await;
    let u = mesh.publish("feeds.kept.1", json!("fresh")).await;
    let m = device.msg().await;
    assert_eq!(m["uuid"], u);
    let fresh = cursor_of(&m);
    let two_hours_ago = random_v1_at(&mut rng, now_ticks() - 2 * 3600 * TICKS_PER_SEC);

    let mut late = mesh.ws().await;
    let r = late
        .request(json!({"op": "sub", "pattern": "feeds.kept.#", "since": two_hours_ago}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    assert_eq!(
        r["gap"], true,
        "since {two_hours_ago} is two hours back, feeds keeps 60 s: {r}"
    );
    assert_eq!(r["replayed"], 1, "what is still stored is replayed: {r}");
    assert_eq!(late.msg().await["uuid"], u);

    let mut recent = mesh.ws().await;
    let r = recent
        .request(json!({"op": "sub", "pattern": "feeds.kept.#", "since": fresh}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    assert_eq!(r["gap"], false, "since the last message received: {r}");
    assert_eq!(r["replayed"], 0, "{r}");

    // A category without retention loses nothing, however old the position.
    let n = mesh.publish("news.kept.1", json!("forever")).await;
    let mut other = mesh.ws().await;
    let r = other
        .request(json!({"op": "sub", "pattern": "news.kept.#", "since": two_hours_ago}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    assert_eq!(r["gap"], false, "news has no retention: {r}");
    assert_eq!(r["replayed"], 1, "{r}");
    assert_eq!(other.msg().await["uuid"], n);
    mesh.stop().await;
}

/// A path for the randomized test: under `feeds.rnd` or elsewhere in
/// `feeds`, at several depths.
fn random_path(rng: &mut Rng) -> String {
    let a = rng.range(0, 3);
    match rng.range(0, 9) {
        0 => "feeds.rnd".to_owned(),
        1 => format!("feeds.rnd.{a}"),
        2 | 3 => format!("feeds.rnd.{a}.x"),
        4 => format!("feeds.rnd.{a}.y"),
        5 => format!("feeds.rnd.{a}.b.x"),
        6 | 7 => format!("feeds.other.{a}.x"),
        8 => format!("feeds.{a}"),
        _ => "feeds".to_owned(),
    }
}

/// Mostly none (the server picks); else a client-chosen UUID, fresh or
/// up to ten minutes old.
fn random_client_uuid(rng: &mut Rng) -> Option<String> {
    match rng.range(0, 9) {
        0 => Some(random_v1_at(rng, now_ticks())),
        1 | 2 => {
            let back = rng.range(TICKS_PER_SEC, 600 * TICKS_PER_SEC);
            Some(random_v1_at(rng, now_ticks() - back))
        }
        _ => None,
    }
}

/// A message a publisher had acknowledged, to resend.
#[derive(Clone)]
struct Sent {
    uuid: String,
    path: String,
    body: Value,
}

/// Picks a recent acknowledged message to resend.
fn pick_resend(rng: &mut Rng, sent: &[Sent]) -> Sent {
    let back = rng.range(1, sent.len().min(500) as u64) as usize;
    sent[sent.len() - back].clone()
}

/// The draft of a new message, or (3 %) a resend of an acknowledged one.
fn random_draft(rng: &mut Rng, sent: &[Sent], tag: &str, n: u64) -> (Value, bool) {
    if !sent.is_empty() && rng.percent(3) {
        let s = pick_resend(rng, sent);
        return (
            json!({"path": s.path, "uuid": s.uuid, "body": s.body}),
            true,
        );
    }
    let mut d = json!({"path": random_path(rng), "body": {"p": tag, "n": n}});
    if let Some(u) = random_client_uuid(rng) {
        d["uuid"] = json!(u);
    }
    (d, false)
}

/// Checks a reply's UUID against the draft's, and records a new message.
fn record(sent: &mut Vec<Sent>, draft: &Value, uuid: &str, again: bool, reply: &Value) {
    if let Some(u) = draft["uuid"].as_str() {
        assert_eq!(uuid, u, "the client's UUID is the message's: {reply}");
    }
    if !again {
        sent.push(Sent {
            uuid: uuid.to_owned(),
            path: draft["path"].as_str().expect("path").to_owned(),
            body: draft["body"].clone(),
        });
    }
}

/// Pipelined `pub` bursts until `until`.
async fn random_ws_publisher(ws_url: String, seed: u64, until: Instant) -> Vec<Sent> {
    let mut rng = Rng::new(seed);
    let mut conn = Conn::open(&ws_url).await;
    let (mut id, mut n) = (1, 0);
    let mut sent = Vec::new();
    while Instant::now() < until {
        let drafts: Vec<(Value, bool)> = (0..rng.range(1, 150))
            .map(|_| {
                n += 1;
                random_draft(&mut rng, &sent, "ws", n)
            })
            .collect();
        let frames = drafts
            .iter()
            .map(|(d, _)| {
                let mut f = d.clone();
                f["op"] = json!("pub");
                f
            })
            .collect();
        let replies = pipeline(&mut conn, &mut id, frames).await;
        for ((d, again), r) in drafts.iter().zip(&replies) {
            assert_eq!(r["duplicate"], *again, "pub {d}: {r}");
            record(&mut sent, d, r["uuid"].as_str().expect("uuid"), *again, r);
        }
        tokio::time::sleep(rng.millis(0, 40)).await;
    }
    conn.leave(false).await;
    sent
}

/// `{"messages": [...]}` batches until `until`.
async fn random_batch_publisher(url: String, seed: u64, until: Instant) -> Vec<Sent> {
    let mut rng = Rng::new(seed);
    let http = reqwest::Client::new();
    let mut n = 0;
    let mut sent = Vec::new();
    while Instant::now() < until {
        let drafts: Vec<(Value, bool)> = (0..rng.range(1, 200))
            .map(|_| {
                n += 1;
                random_draft(&mut rng, &sent, "batch", n)
            })
            .collect();
        let messages: Vec<&Value> = drafts.iter().map(|(d, _)| d).collect();
        let r = http_publish(&http, &url, &json!({ "messages": messages })).await;
        let uuids = r["uuids"].as_array().expect("uuids");
        assert_eq!(uuids.len(), drafts.len(), "{r}");
        let resends = drafts.iter().filter(|(_, again)| *again).count();
        assert_eq!(r["duplicates"], resends, "{r}");
        for ((d, again), u) in drafts.iter().zip(uuids) {
            record(&mut sent, d, u.as_str().expect("uuid"), *again, &r);
        }
        tokio::time::sleep(rng.millis(0, 40)).await;
    }
    sent
}

/// One message per request until `until`.
async fn random_single_publisher(url: String, seed: u64, until: Instant) -> Vec<Sent> {
    let mut rng = Rng::new(seed);
    let http = reqwest::Client::new();
    let mut n = 0;
    let mut sent = Vec::new();
    while Instant::now() < until {
        n += 1;
        let (d, again) = random_draft(&mut rng, &sent, "single", n);
        let r = http_publish(&http, &url, &d).await;
        assert_eq!(r["duplicate"], again, "{d}: {r}");
        record(&mut sent, &d, r["uuid"].as_str().expect("uuid"), again, &r);
        tokio::time::sleep(rng.millis(0, 5)).await;
    }
    sent
}

/// Three publishers (pipelined WebSocket, HTTP batches, HTTP singles; some
/// with their own UUIDs, minutes old, some resending) and three devices on
/// overlapping patterns that drop and resume at random: each device ends up
/// with every acknowledged message matching its pattern, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_publishers_and_devices_never_miss_a_message() {
    const PUBLISHING: Duration = Duration::from_secs(15);
    let seed = base_seed() ^ 0xD15C_0DE5;
    let mut rng = Rng::new(seed);
    let mesh = Mesh::start().await;
    let (done_tx, done_rx) = watch::channel(None);
    let mut devices = Vec::new();
    for (name, pattern) in [
        ("folder", "feeds.rnd.#"),
        ("wildcard", "feeds.rnd.*.x"),
        ("category", "feeds.#"),
    ] {
        let plan = DropPlan {
            msgs: rng.range(50, 600),
            conn_ms: rng.range(100, 1500),
            offline_ms: rng.range(10, 300),
        };
        devices.push(Device::new(name, &mesh, pattern, rng.next(), plan));
    }
    let devices = start_devices(devices, &done_rx).await;

    let until = Instant::now() + PUBLISHING;
    let publishers = vec![
        tokio::spawn(random_ws_publisher(
            format!("ws://{}/ws", mesh.addr),
            rng.next(),
            until,
        )),
        tokio::spawn(random_batch_publisher(mesh.url(), rng.next(), until)),
        tokio::spawn(random_single_publisher(mesh.url(), rng.next(), until)),
    ];
    let mut acked = Acked::new();
    for p in publishers {
        for s in p.await.expect("a publisher") {
            assert!(
                acked.insert(s.uuid.clone(), s.path).is_none(),
                "{} acknowledged as new twice",
                s.uuid
            );
        }
    }
    let devices = finish_devices(devices, &done_tx, &acked).await;
    let mut problems = Vec::new();
    for d in &devices {
        eprintln!(
            "{} ({}): {} received, {} resumes ({} with more), server closes {:?}",
            d.name, d.pattern, d.received, d.resumes, d.more, d.server_closes
        );
        problems.extend(d.verify(&acked));
        if d.resumes < 3 {
            problems.push(format!("{}: only {} resumes", d.name, d.resumes));
        }
    }
    assert!(
        problems.is_empty(),
        "{} messages acknowledged (RESUME_SEED={}):\n{}",
        acked.len(),
        base_seed(),
        problems.join("\n")
    );
    mesh.stop().await;
}

/// "Publishing the same UUID twice is one message", however far apart: a
/// resend after a restart (when no process remembers it in memory) is
/// answered `duplicate` and reaches no device, neither live nor through a
/// later resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_after_a_restart_reaches_no_device_twice() {
    let mut mesh = Mesh::start().await;
    let mut device = mesh.ws().await;
    device.sub("feeds.again.#").await;
    let body = json!({"path": "feeds.again.1", "body": "once"});
    let (status, first) = mesh.post("/v1/publish", &body, None).await;
    assert_eq!(status, 200, "{first}");
    let got = device.msg().await;
    assert_eq!(got["uuid"], first["uuid"]);
    let cursor = got["cursor"].clone();
    device.close().await;

    mesh.restart().await;
    let mut device = mesh.ws().await;
    let r = device
        .request(json!({"op": "sub", "pattern": "feeds.again.#", "since": cursor}))
        .await;
    assert_eq!(
        (r["op"].as_str(), r["replayed"].as_u64()),
        (Some("ok"), Some(0)),
        "{r}"
    );
    let resend = json!({"path": "feeds.again.1", "body": "once", "uuid": first["uuid"]});
    let (status, again) = mesh.post("/v1/publish", &resend, None).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(
        again["cursor"], first["cursor"],
        "where it was stored: {again}"
    );
    device.quiet(Duration::from_millis(500)).await;
    // Nor does a device that resumes from before the resend get it again.
    let mut late = mesh.ws().await;
    let r = late
        .request(json!({"op": "sub", "pattern": "feeds.again.#", "since": cursor}))
        .await;
    assert_eq!(r["replayed"], 0, "{r}");
    mesh.stop().await;
}
