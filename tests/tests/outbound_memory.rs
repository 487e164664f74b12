//! A connection's outbound memory is bounded in bytes: devices that stop
//! reading on a busy path are closed as slow consumers once they are
//! `gateway.outbound_bytes` behind, the server's memory stays within what
//! the bound allows, and healthy devices receive everything.
//!
//! Alone in its test binary: it measures this process's resident memory
//! (the mesh runs in it), which other tests would disturb.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use postmesh_tests::Mesh;
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// The byte bound under test.
const BOUND: usize = 1024 * 1024;
/// Bodies of this many bytes: the bound is 64 of them.
const BODY: usize = 16 * 1024;
/// Messages per HTTP publish request: what one request fans out at once
/// to every device (256 KiB) must fit in the bound, or healthy devices
/// that cannot take a burst as fast as it comes are closed too.
const PER_REQUEST: usize = 16;
/// Messages per flood (a whole number of requests): 48 MiB, far more than the sockets can buffer
/// (the server's send buffer grows to 4 MiB at most) and than the bound.
const FLOOD: usize = 3072;
/// Devices that stop reading.
const STALLED: usize = 6;

/// This process's resident memory, bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// The highest resident memory seen while it runs, sampled every 10 ms.
struct Peak {
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Peak {
    fn start() -> Peak {
        let peak = Arc::new(AtomicU64::new(rss()));
        let p = peak.clone();
        let task = tokio::spawn(async move {
            loop {
                p.fetch_max(rss(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Peak { peak, task }
    }

    fn stop(self) -> u64 {
        self.task.abort();
        self.peak.load(Ordering::Relaxed).max(rss())
    }
}

type Ws = WebSocketStream<TcpStream>;

/// A device on `flood.#`, over a socket whose receive buffer is `rcvbuf`
/// bytes when given (the kernel then buffers little for it).
async fn device(mesh: &Mesh, rcvbuf: Option<u32>) -> Ws {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(n) = rcvbuf {
        socket.set_recv_buffer_size(n).unwrap();
    }
    let stream = socket.connect(mesh.addr).await.unwrap();
    let url = format!("ws://{}/ws", mesh.addr);
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("websocket connects");
    ws.send(Message::text(
        json!({"op": "sub", "id": 1, "pattern": "flood.#"}).to_string(),
    ))
    .await
    .unwrap();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("sub answered")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = frame {
            let v: Value = serde_json::from_str(&t).unwrap();
            assert_eq!(v["op"], "ok", "{v}");
            return ws;
        }
    }
}

/// The `seq` of a message frame, found without parsing 16 KiB of JSON.
fn seq(frame: &str) -> u64 {
    let at = frame.find("\"seq\":").expect("a flood message") + 6;
    let digits: String = frame[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().unwrap()
}

/// Reads `n` messages, checking that `seq` runs from `from` by one: every
/// message, once, in order.
fn reader(mut ws: Ws, from: u64, n: usize) -> tokio::task::JoinHandle<Ws> {
    tokio::spawn(async move {
        let mut next = from;
        while next < from + n as u64 {
            let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
                .await
                .expect("a healthy device keeps receiving")
                .expect("open")
                .expect("frame");
            if let Message::Text(t) = frame {
                assert_eq!(seq(&t), next, "every message, in order");
                next += 1;
            }
        }
        ws
    })
}

/// Publishes `n` messages with `seq` from `from`, `PER_REQUEST` at a time.
async fn flood(mesh: &Mesh, from: u64, n: usize) {
    let client = reqwest::Client::new();
    let pad = "x".repeat(BODY);
    let mut k = from;
    while k < from + n as u64 {
        let messages: Vec<Value> = (0..PER_REQUEST)
            .map(|i| json!({"path": format!("flood.{}", (k + i as u64) % 10), "body": {"seq": k + i as u64, "pad": pad}}))
            .collect();
        let res = client
            .post(format!("{}/v1/publish", mesh.url()))
            .json(&json!({ "messages": messages }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        k += PER_REQUEST as u64;
    }
}

/// How a stalled device's connection ended, once it reads again: a close
/// code, or `None` if it was dropped without one (the close frame could not
/// be written in time behind what the device had not read).
async fn ending(mut ws: Ws) -> Option<u16> {
    let end = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => return None,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), end)
        .await
        .expect("the stalled device is closed, not sent everything")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_devices_are_closed_past_the_byte_bound_and_memory_stays_bounded() {
    let mesh = Mesh::start_with(|c| {
        c.gateway.outbound_bytes = BOUND;
        c.gateway.max_body_bytes = BOUND / 2;
        // Closed for the bytes they are behind, not for a write's time.
        c.gateway.write_timeout_secs = 120;
    })
    .await;
    let healthy = [device(&mesh, None).await, device(&mesh, None).await];

    // Control: the same flood with healthy devices only. What memory grows
    // by here (the store's memtable, the allocator, the HTTP bodies) is
    // the baseline for the flood with stalled devices.
    let before = rss();
    let peak = Peak::start();
    let readers: Vec<_> = healthy.into_iter().map(|ws| reader(ws, 0, FLOOD)).collect();
    flood(&mesh, 0, FLOOD).await;
    let mut healthy = Vec::new();
    for r in readers {
        healthy.push(
            r.await
                .expect("the healthy device received the control flood"),
        );
    }
    let control = peak.stop().saturating_sub(before);

    // The same flood, with devices that stop reading after they subscribe.
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        stalled.push(device(&mesh, Some(4096)).await);
    }
    let before = rss();
    let peak = Peak::start();
    let from = FLOOD as u64;
    let readers: Vec<_> = healthy
        .into_iter()
        .map(|ws| reader(ws, from, FLOOD))
        .collect();
    flood(&mesh, from, FLOOD).await;
    for r in readers {
        r.await.expect("healthy devices receive everything");
    }
    let grown = peak.stop().saturating_sub(before);

    // What a stalled connection may pin: its bound, plus what is being
    // written beyond it (the socket's write buffer and one frame).
    let write_buffer = mesh.config.gateway.write_buffer_bytes;
    let per_stalled = (BOUND + write_buffer + 2 * (BODY + 1024)) as u64;
    let flood_bytes = (FLOOD * BODY) as u64;
    // Allocator noise: a tenth of a flood. Without the byte bound the
    // stalled devices pin most of the flood (its frames are shared, so
    // about one flood in all).
    let allowed = control + STALLED as u64 * per_stalled + flood_bytes / 10;
    eprintln!(
        "control flood grew RSS by {} KiB; with {STALLED} stalled devices by {} KiB; allowed {} KiB",
        control >> 10,
        grown >> 10,
        allowed >> 10
    );
    // Each stalled device was closed as a slow consumer: it reads what the
    // sockets buffered, then the close (or finds the connection dropped).
    for ws in stalled {
        let end = ending(ws).await;
        assert!(
            matches!(end, Some(4000) | None),
            "closed as a slow consumer, got {end:?}"
        );
    }
    let (_, metrics) = mesh.get("/metrics", None).await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains(&format!("postmesh_gateway_slow_consumers_total {STALLED}")),
        "every stalled device counted: {metrics}"
    );

    assert!(
        grown <= allowed,
        "memory grew by {} KiB with stalled devices, over the {} KiB the bound allows",
        grown >> 10,
        allowed >> 10
    );
    mesh.stop().await;
}
