//! Resume across processes on RabbitMQ: two cores and two gateways, as an
//! operator runs them (README, "Many processes on RabbitMQ"), with devices
//! that drop and resume on either gateway and publishers that resend and
//! choose UUIDs from minutes ago.
//!
//! The protocol these tests speak: every `msg` carries `cursor`, its resume
//! position in the store, and a device resumes with `sub` and `since` set to
//! the cursor of the last message it received (a server that sends no
//! cursor gets the UUID instead). With several cores a resume may replay
//! again a few messages the device already had, but only inside that `sub`'s
//! replay (before its `ok`), never live: the UUID is the dedupe key.
//!
//! Each test uses a region of its own, so that the cores of one test never
//! answer another's requests, and a path category of its own, because every
//! region on the broker shares the `postmesh.paths` exchange. The tests of
//! this file run one at a time: each starts four processes and publishes
//! for a while, and timing windows (the 11 s wait, the quiet periods) mean
//! what they say only when the machine is not busy with the others.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postmesh_schema::{Pattern, Uuid};
use postmesh_tests::{Client, Process, rabbit};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// One test of this file at a time (see the module comment).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long a reply a device waits for may take before the test gives up.
const REPLY_WITHIN: Duration = Duration::from_secs(30);

/// How long a device hears nothing before the test calls it settled.
const QUIET: Duration = Duration::from_secs(3);

/// Two cores and two gateways of one region on the shared broker.
struct Mesh {
    /// Gateway A, then gateway B.
    gateways: Vec<Process>,
    _cores: Vec<Process>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Mesh {
    /// Starts `core1`, `core2` (with `core2_env` added to its environment),
    /// then gateways `gwa` and `gwb`, all anonymous on loopback.
    async fn start(region: &str, core2_env: &[(&str, &str)]) -> Mesh {
        let amqp = rabbit::shared().amqp_url.as_str();
        let dirs = vec![tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let mut cores = Vec::new();
        for (i, dir) in dirs.iter().enumerate() {
            let instance = format!("core{}", i + 1);
            let mut envs = vec![
                ("POSTMESH_NODE__REGION", region),
                ("POSTMESH_NODE__PRODUCT", region),
                ("POSTMESH_NODE__INSTANCE", instance.as_str()),
            ];
            if i == 1 {
                envs.extend_from_slice(core2_env);
            }
            let data = dir.path().to_str().unwrap();
            cores.push(Process::start(&["core", "--amqp", amqp, "--data", data], &envs).await);
        }
        let mut gateways = Vec::new();
        for instance in ["gwa", "gwb"] {
            gateways.push(
                Process::start(
                    &["gateway", "--amqp", amqp, "--listen", "127.0.0.1:0"],
                    &[
                        ("POSTMESH_NODE__REGION", region),
                        ("POSTMESH_NODE__PRODUCT", region),
                        ("POSTMESH_NODE__INSTANCE", instance),
                    ],
                )
                .await,
            );
        }
        Mesh {
            gateways,
            _cores: cores,
            _dirs: dirs,
        }
    }
}

/// `POST /v1/publish` until it answers 200 (if in doubt, resend: the
/// UUIDs are chosen by the caller, so a resend is the same message).
async fn publish(http: &reqwest::Client, gateway: &str, body: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let res = http
            .post(format!("{gateway}/v1/publish"))
            .json(body)
            .timeout(Duration::from_secs(20))
            .send()
            .await;
        let why = match res {
            Ok(r) if r.status() == 200 => return r.json().await.expect("a JSON reply"),
            Ok(r) => format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "a publish to {gateway} was never acknowledged: {why}"
        );
        eprintln!("publish to {gateway} failed ({why}); resending");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The resume position of a received message: its `cursor`, or its UUID
/// from a server that sends no cursor.
fn cursor_of(m: &Value) -> Value {
    match m.get("cursor") {
        Some(c) if !c.is_null() => c.clone(),
        _ => m["uuid"].clone(),
    }
}

/// The `msg` frames of a `sub`'s replay and its reply (`ok` or `err`).
async fn replay_of(device: &mut Client, id: u64) -> (Vec<Value>, Value) {
    let mut msgs = Vec::new();
    loop {
        let Some(f) = device.next_within(REPLY_WITHIN).await else {
            panic!("no reply to sub {id} within {REPLY_WITHIN:?}; replayed so far: {msgs:?}");
        };
        match f["op"].as_str() {
            Some("msg") => msgs.push(f),
            Some("ok" | "err") if f["id"] == id => return (msgs, f),
            _ => eprintln!("ignoring {f}"),
        }
    }
}

/// Every `msg` frame that arrives within `wait`.
async fn msgs_within(device: &mut Client, wait: Duration) -> Vec<Value> {
    let until = Instant::now() + wait;
    let mut msgs = Vec::new();
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match device.next_within(left).await {
            Some(f) if f["op"] == "msg" => msgs.push(f),
            Some(f) => eprintln!("ignoring {f}"),
            None => break,
        }
    }
    msgs
}

/// A message published once, stored and delivered to a device through a
/// history replay, then resent through the other gateway after the
/// gateways' short memories of it have lapsed (a session forgets replayed
/// UUIDs after 10 s; the gateway never saw it live; the core that only
/// holds it as a replica never distributed it): the resend answers
/// `duplicate` and no device receives the message a second time. Silver
/// requests are balanced over the cores, so four resends reach both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_resend_through_another_gateway_reaches_no_device_twice() {
    let _serial = SERIAL.lock().await;
    let began = Instant::now();
    let mesh = Mesh::start("lateresend", &[]).await;
    let (a, b) = (&mesh.gateways[0], &mesh.gateways[1]);
    let http = reqwest::Client::new();

    let uuid = postmesh_schema::message::new_v1().to_string();
    let message =
        json!({"path": "lateresend.feed.1", "uuid": uuid, "body": {"headline": "once only"}});
    let first = publish(&http, &b.http(), &message).await;
    assert_eq!(first["uuid"], uuid.as_str(), "{first}");
    assert_eq!(first["duplicate"], false, "{first}");
    let published_at = Instant::now();

    // Both cores hold it before a device reads history: a silver publish
    // reaches the peer core as a replica a little later, and reads are
    // balanced over the cores. Several answers in a row from either
    // gateway show it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut in_a_row = 0;
    while in_a_row < 6 {
        let gw = if in_a_row % 2 == 0 { a } else { b };
        let page = gw
            .get("/v1/history?pattern=lateresend.%23&limit=10", None)
            .await;
        if page["messages"][0]["uuid"] == uuid.as_str() {
            in_a_row += 1;
        } else {
            in_a_row = 0;
            assert!(
                Instant::now() < deadline,
                "history never showed {uuid} on both cores: {page}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // A device on each gateway reads it from history, once.
    let mut devices = Vec::new();
    for (name, gw) in [("the device on A", a), ("the device on B", b)] {
        let mut device = gw.ws(None).await;
        device
            .send(&json!({"op": "sub", "id": 1, "pattern": "lateresend.#", "history": 10}))
            .await;
        let (replay, reply) = replay_of(&mut device, 1).await;
        assert_eq!(reply["op"], "ok", "{name}: {reply}");
        let uuids: Vec<&Value> = replay.iter().map(|m| &m["uuid"]).collect();
        assert_eq!(
            uuids,
            [&json!(uuid)],
            "{name} replays the message once: {replay:?}"
        );
        devices.push((name, device));
    }

    // Past every short memory of it.
    for (name, got) in quiet_all(&mut devices, Duration::from_secs(11)).await {
        assert!(got.is_empty(), "{name} received more: {got:?}");
    }

    for k in 1..=4 {
        let again = publish(&http, &b.http(), &message).await;
        assert_eq!(again["uuid"], uuid.as_str(), "resend {k}: {again}");
        assert_eq!(again["duplicate"], true, "resend {k}: {again}");
        let watch = Duration::from_millis(if k < 4 { 1000 } else { 3000 });
        for (name, got) in quiet_all(&mut devices, watch).await {
            assert!(
                got.is_empty(),
                "resend {k} of {uuid} through gateway B, {:?} after it was first \
                 published, reached {name} again, live, after its history replay \
                 had delivered it: {got:?}",
                published_at.elapsed(),
            );
        }
    }
    eprintln!("late resend: {:?}", began.elapsed());
}

/// The `msg` frames each device receives within `wait`, all watched at once.
async fn quiet_all<'a>(
    devices: &mut [(&'a str, Client)],
    wait: Duration,
) -> Vec<(&'a str, Vec<Value>)> {
    let got =
        futures_util::future::join_all(devices.iter_mut().map(|(_, d)| msgs_within(d, wait))).await;
    devices.iter().map(|(name, _)| *name).zip(got).collect()
}

/// Every device of a randomized run, over two cores and two gateways, ends
/// with every acknowledged message that matches its pattern, and receives a
/// message again only inside a resume replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_resume_across_two_cores_and_two_gateways_without_gap() {
    let _serial = SERIAL.lock().await;
    run_scenario(Scenario {
        name: "resume",
        region: "resumemesh",
        category: "resumemesh",
        publish_for: Duration::from_secs(24),
        patterns: &["#", "a.#", "*.x"],
        core2_env: &[],
    })
    .await;
}

/// The same with core 2's clock 3 s behind (inside the default overlap
/// window of 5 s): still no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_with_a_skewed_clock_causes_no_gap() {
    let _serial = SERIAL.lock().await;
    run_scenario(Scenario {
        name: "skew",
        region: "skewmesh",
        category: "skewmesh",
        publish_for: Duration::from_secs(12),
        patterns: &["#", "*.x"],
        core2_env: &[("POSTMESH_CORE__CLOCK_OFFSET_MS", "-3000")],
    })
    .await;
}

/// A randomized run: what varies between tests.
struct Scenario {
    name: &'static str,
    region: &'static str,
    /// The first element of every path published, so that no other test's
    /// messages reach these devices.
    category: &'static str,
    publish_for: Duration,
    /// One device per pattern, relative to the category.
    patterns: &'static [&'static str],
    core2_env: &'static [(&'static str, &'static str)],
}

/// Paths published, relative to the category.
const PATHS: [&str; 6] = ["a.x", "a.y", "b.x", "b.z", "c.x", "c.y.deep"];

/// A seeded xorshift64* generator: no dependency, reproducible choices.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // splitmix64 once, so that small or similar seeds diverge at once.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)).max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }

    /// An independent generator for another task.
    fn fork(&mut self) -> Rng {
        Rng::new(self.next())
    }
}

/// The run's seed: `RESUME_SEED` to repeat a run, else the clock.
fn seed() -> u64 {
    match std::env::var("RESUME_SEED") {
        Ok(s) => s.parse().expect("RESUME_SEED is a number"),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    }
}

/// A version-1 UUID from minutes ago (1 to 10), with a random clock
/// sequence and node, as a publisher with its own generator makes.
fn old_uuid(rng: &mut Rng) -> String {
    const GREGORIAN_OFFSET: u64 = 0x01B2_1DD2_1381_4000;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let back = Duration::from_secs(60 + rng.below(540)) + Duration::from_millis(rng.below(1000));
    let ticks = (now - back).as_nanos() as u64 / 100 + GREGORIAN_OFFSET;
    let mut b = [0u8; 16];
    b[0..4].copy_from_slice(&((ticks & 0xffff_ffff) as u32).to_be_bytes());
    b[4..6].copy_from_slice(&(((ticks >> 32) & 0xffff) as u16).to_be_bytes());
    b[6..8].copy_from_slice(&((((ticks >> 48) & 0x0fff) as u16) | 0x1000).to_be_bytes());
    b[8..10].copy_from_slice(&((rng.below(0x4000) as u16) | 0x8000).to_be_bytes());
    for x in &mut b[10..16] {
        *x = rng.below(256) as u8;
    }
    b[10] |= 0x01; // a random node id, not a MAC
    Uuid::from_bytes(b).to_string()
}

/// A message a publisher had acknowledged.
#[derive(Debug, Clone)]
struct Sent {
    uuid: String,
    path: String,
    /// Its UUID is from minutes ago.
    old: bool,
}

/// A message to publish: a path of the category, a UUID chosen here (one in
/// seven from minutes ago), a class (one in ten gold, stored and
/// distributed by both cores; one in ten bronze, queued before it is
/// stored), and a body saying who sent it.
fn draft(rng: &mut Rng, category: &str, origin: &str, n: u64) -> (Value, Sent) {
    let path = format!("{category}.{}", rng.pick(&PATHS));
    let old = rng.below(7) == 0;
    let uuid = if old {
        old_uuid(rng)
    } else {
        postmesh_schema::message::new_v1().to_string()
    };
    let class = match rng.below(10) {
        0 => "gold",
        1 => "bronze",
        _ => "silver",
    };
    let m = json!({"path": path, "uuid": uuid, "class": class, "body": {"from": origin, "n": n}});
    (m, Sent { uuid, path, old })
}

/// One message per `POST /v1/publish`, to one gateway, until `end`.
async fn http_single(url: String, mut rng: Rng, category: String, end: Instant) -> Vec<Sent> {
    let http = reqwest::Client::new();
    let origin = format!("http {url}");
    let mut sent = Vec::new();
    let mut n = 0;
    while Instant::now() < end {
        n += 1;
        let (m, s) = draft(&mut rng, &category, &origin, n);
        let r = publish(&http, &url, &m).await;
        assert_eq!(r["uuid"], s.uuid.as_str(), "{r}");
        sent.push(s);
        tokio::time::sleep(rng.millis(80, 300)).await;
    }
    sent
}

/// Batches of 1 to 10 messages, each to either gateway, until `end`.
async fn http_batches(
    urls: Vec<String>,
    mut rng: Rng,
    category: String,
    end: Instant,
) -> Vec<Sent> {
    let http = reqwest::Client::new();
    let mut sent = Vec::new();
    let mut n = 0;
    while Instant::now() < end {
        let url = rng.pick(&urls).clone();
        let batch: Vec<(Value, Sent)> = (0..1 + rng.below(10))
            .map(|_| {
                n += 1;
                draft(&mut rng, &category, "http batch", n)
            })
            .collect();
        let messages: Vec<&Value> = batch.iter().map(|(m, _)| m).collect();
        let r = publish(&http, &url, &json!({ "messages": messages })).await;
        let uuids: Vec<&str> = batch.iter().map(|(_, s)| s.uuid.as_str()).collect();
        assert_eq!(r["uuids"], json!(uuids), "{r}");
        sent.extend(batch.into_iter().map(|(_, s)| s));
        tokio::time::sleep(rng.millis(500, 1500)).await;
    }
    sent
}

/// A WebSocket publisher on each gateway; each round one of them sends 1 to
/// 12 `pub` frames without waiting, then collects their replies (resending
/// those refused as `unavailable`), until `end`.
async fn ws_publisher(
    urls: Vec<String>,
    mut rng: Rng,
    category: String,
    end: Instant,
) -> Vec<Sent> {
    let mut clients = Vec::new();
    for url in &urls {
        clients.push(Client::connect(url).await);
    }
    let mut sent = Vec::new();
    let (mut n, mut next_id) = (0u64, 1u64);
    while Instant::now() < end {
        let which = rng.below(clients.len() as u64) as usize;
        let mut todo: Vec<(Value, Sent)> = (0..1 + rng.below(12))
            .map(|_| {
                n += 1;
                draft(&mut rng, &category, "ws", n)
            })
            .collect();
        let give_up = Instant::now() + Duration::from_secs(60);
        let client = &mut clients[which];
        while !todo.is_empty() {
            let mut waiting = HashMap::new();
            for (m, s) in todo.drain(..) {
                let mut frame = m.clone();
                frame["op"] = json!("pub");
                frame["id"] = json!(next_id);
                client.send(&frame).await;
                waiting.insert(next_id, (m, s));
                next_id += 1;
            }
            while !waiting.is_empty() {
                let Some(f) = client.next_within(REPLY_WITHIN).await else {
                    panic!(
                        "{} pipelined publishes unanswered after {REPLY_WITHIN:?}",
                        waiting.len()
                    );
                };
                let Some((m, s)) = f["id"].as_u64().and_then(|id| waiting.remove(&id)) else {
                    continue;
                };
                if f["op"] == "ok" {
                    assert_eq!(f["uuid"], s.uuid.as_str(), "{f}");
                    sent.push(s);
                } else if f["code"] == "unavailable" {
                    eprintln!("pub refused ({f}); resending");
                    todo.push((m, s));
                } else {
                    panic!("pub refused: {f}");
                }
            }
            if !todo.is_empty() {
                assert!(
                    Instant::now() < give_up,
                    "pipelined publishes never acknowledged"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        tokio::time::sleep(rng.millis(500, 1500)).await;
    }
    for c in clients {
        c.close().await;
    }
    sent
}

/// A message as a device received it.
#[derive(Debug)]
struct Seen {
    uuid: String,
    path: String,
    /// Inside a `sub`'s replay (before its reply), not live.
    replay: bool,
    /// Which of the device's connections (1 is the first).
    connection: usize,
}

/// What one device did and received.
#[derive(Debug)]
struct DeviceLog {
    name: String,
    pattern: String,
    seen: Vec<Seen>,
    connections: usize,
    resumes: usize,
}

/// A device that subscribes to `pattern` on gateway `first`, and from its
/// first message on drops its connection at random moments (sometimes in
/// the middle of a replay; half the time with a close frame, half the time
/// not), waits a little and resumes on a random gateway with `since` = the
/// cursor of the last message it received. Once `stop` is set it stays
/// connected and returns when it has heard nothing for [`QUIET`].
async fn device(
    name: String,
    pattern: String,
    urls: Vec<String>,
    first: usize,
    mut rng: Rng,
    stop: Arc<AtomicBool>,
    ready: tokio::sync::oneshot::Sender<()>,
) -> DeviceLog {
    let mut ready = Some(ready);
    let mut log = DeviceLog {
        name,
        pattern,
        seen: Vec::new(),
        connections: 0,
        resumes: 0,
    };
    let mut cursor: Option<Value> = None;
    loop {
        let url = match log.connections {
            0 => urls[first].clone(),
            _ => rng.pick(&urls).clone(),
        };
        let mut client = Client::connect(&url).await;
        log.connections += 1;
        let connection = log.connections;
        let id = connection as u64;
        let mut sub = json!({"op": "sub", "id": id, "pattern": log.pattern});
        if let Some(c) = &cursor {
            sub["since"] = c.clone();
            log.resumes += 1;
        }
        client.send(&sub).await;
        let opened = Instant::now();
        let lifetime = if rng.chance(15) {
            rng.millis(20, 200)
        } else {
            rng.millis(500, 4000)
        };
        let mut replied = false;
        let mut heard = Instant::now();
        loop {
            let stopping = stop.load(Ordering::SeqCst);
            if stopping && replied && heard.elapsed() >= QUIET {
                client.close().await;
                return log;
            }
            // Drop only once there is something to resume from.
            if !stopping && cursor.is_some() && opened.elapsed() >= lifetime {
                break;
            }
            assert!(
                replied || opened.elapsed() < REPLY_WITHIN,
                "{}: no reply to {sub} within {REPLY_WITHIN:?}",
                log.name
            );
            let Some(f) = client.next_within(Duration::from_millis(50)).await else {
                continue;
            };
            heard = Instant::now();
            match f["op"].as_str() {
                Some("msg") => {
                    cursor = Some(cursor_of(&f));
                    log.seen.push(Seen {
                        uuid: f["uuid"].as_str().expect("a uuid").to_owned(),
                        path: f["path"].as_str().expect("a path").to_owned(),
                        // A resume's late read is a replay after the `ok`.
                        replay: !replied || f["late"] == true,
                        connection,
                    });
                }
                Some("ok") if f["id"] == id => {
                    replied = true;
                    if f["more"] == true {
                        eprintln!("{}: a resume replay stopped early: {f}", log.name);
                    }
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                }
                Some("err") if f["id"] == id && f["code"] == "unavailable" => {
                    eprintln!("{}: {sub} refused ({f}); reconnecting", log.name);
                    break;
                }
                _ => panic!("{}: unexpected frame {f} after {sub}", log.name),
            }
        }
        if rng.chance(50) {
            client.close().await;
        } else {
            drop(client);
        }
        if !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(rng.millis(0, 1500)).await;
        }
    }
}

/// A task's result, or its panic as this test's.
async fn joined<T>(task: JoinHandle<T>, within: Duration, what: &str) -> T {
    match tokio::time::timeout(within, task).await {
        Err(_) => panic!("{what} did not finish within {within:?}"),
        Ok(Ok(v)) => v,
        Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Ok(Err(e)) => panic!("{what}: {e}"),
    }
}

async fn run_scenario(s: Scenario) {
    let began = Instant::now();
    let seed = seed();
    eprintln!(
        "{}: seed {seed} (RESUME_SEED={seed} repeats the choices)",
        s.name
    );
    let mut rng = Rng::new(seed);
    let mesh = Mesh::start(s.region, s.core2_env).await;
    let ws: Vec<String> = mesh
        .gateways
        .iter()
        .map(|g| g.ws_url.clone().expect("a gateway"))
        .collect();
    let http: Vec<String> = mesh.gateways.iter().map(|g| g.http()).collect();
    let stop = Arc::new(AtomicBool::new(false));

    let mut devices = Vec::new();
    let mut ready = Vec::new();
    for (i, p) in s.patterns.iter().enumerate() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let pattern = format!("{}.{p}", s.category);
        devices.push(tokio::spawn(device(
            format!("device {i} ({pattern})"),
            pattern,
            ws.clone(),
            i % ws.len(),
            rng.fork(),
            stop.clone(),
            tx,
        )));
        ready.push(rx);
    }
    for rx in ready {
        tokio::time::timeout(REPLY_WITHIN, rx)
            .await
            .expect("every device subscribes")
            .expect("a device subscribes");
    }

    let end = Instant::now() + s.publish_for;
    let category = s.category.to_owned();
    let publishers = vec![
        tokio::spawn(http_single(
            http[0].clone(),
            rng.fork(),
            category.clone(),
            end,
        )),
        tokio::spawn(http_single(
            http[1].clone(),
            rng.fork(),
            category.clone(),
            end,
        )),
        tokio::spawn(http_batches(
            http.clone(),
            rng.fork(),
            category.clone(),
            end,
        )),
        tokio::spawn(ws_publisher(ws.clone(), rng.fork(), category.clone(), end)),
    ];
    let mut sent = Vec::new();
    for p in publishers {
        let within = s.publish_for + Duration::from_secs(120);
        sent.extend(joined(p, within, "a publisher").await);
    }
    let published = began.elapsed();
    // Every publish is acknowledged: the devices now settle.
    stop.store(true, Ordering::SeqCst);
    let mut logs = Vec::new();
    for d in devices {
        logs.push(joined(d, Duration::from_secs(90), "a device").await);
    }
    eprintln!(
        "{}: {} messages acknowledged ({} with UUIDs from minutes ago); published by {published:?}, \
         settled by {:?}",
        s.name,
        sent.len(),
        sent.iter().filter(|m| m.old).count(),
        began.elapsed()
    );
    check(&sent, &logs);
}

/// No gap: every device has every acknowledged message its pattern
/// matches. No live duplicate: a message received again was received again
/// inside a resume replay.
fn check(sent: &[Sent], logs: &[DeviceLog]) {
    let by_uuid: HashMap<&str, &Sent> = sent.iter().map(|m| (m.uuid.as_str(), m)).collect();
    assert_eq!(by_uuid.len(), sent.len(), "every UUID published is new");
    let mut failures = Vec::new();
    for log in logs {
        let pattern = Pattern::parse(&log.pattern).expect("a valid pattern");
        let mut seen: HashMap<&str, Vec<&Seen>> = HashMap::new();
        for m in &log.seen {
            seen.entry(m.uuid.as_str()).or_default().push(m);
            match by_uuid.get(m.uuid.as_str()) {
                None => failures.push(format!(
                    "{} received {} at {}, which no publisher sent",
                    log.name, m.uuid, m.path
                )),
                Some(s) if s.path != m.path || !pattern.matches_str(&m.path) => {
                    failures.push(format!("{} received {m:?}, sent as {s:?}", log.name))
                }
                Some(_) => {}
            }
        }
        let wanted: Vec<&Sent> = sent
            .iter()
            .filter(|m| pattern.matches_str(&m.path))
            .collect();
        let missing: Vec<&&Sent> = wanted
            .iter()
            .filter(|m| !seen.contains_key(m.uuid.as_str()))
            .collect();
        if !missing.is_empty() {
            failures.push(format!(
                "{} never received {} of the {} acknowledged messages it matches \
                 ({} of them with UUIDs from minutes ago), e.g. {:?}",
                log.name,
                missing.len(),
                wanted.len(),
                missing.iter().filter(|m| m.old).count(),
                &missing[..missing.len().min(5)],
            ));
        }
        let mut replayed_again = 0;
        let mut live_again = HashSet::new();
        for (uuid, times) in &seen {
            for again in &times[1..] {
                if again.replay {
                    replayed_again += 1;
                } else {
                    live_again.insert(*uuid);
                    failures.push(format!(
                        "{} received {uuid} again live on connection {}: {times:?}",
                        log.name, again.connection
                    ));
                }
            }
        }
        eprintln!(
            "{}: {} connections ({} resumes), {} messages received, {} distinct of {} wanted, \
             {replayed_again} again inside replays, {} again live",
            log.name,
            log.connections,
            log.resumes,
            log.seen.len(),
            seen.len(),
            wanted.len(),
            live_again.len(),
        );
        assert!(log.resumes > 0, "{} never resumed", log.name);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
