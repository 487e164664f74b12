//! Stopping: half-sent HTTP requests hold neither a running server (the
//! header timeout drops them) nor a stopping one (the shutdown deadline cuts
//! them, and a second signal cuts at once); either way the store is closed
//! and the next run opens it.

use std::time::Duration;

use postmesh_tests::{Mesh, Process};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a process that must exit may take. Far above the deadlines the
/// tests configure: it only keeps a failing test from hanging.
const EXIT: Duration = Duration::from_secs(30);

/// Request headers without the blank line that ends them.
const HALF_HEADERS: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: postmesh\r\nAccept: */*\r\n";

/// A complete head, then a body short of its Content-Length.
const HALF_BODY: &[u8] = b"POST /v1/publish HTTP/1.1\r\nHost: postmesh\r\n\
Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"path\":";

/// Opens a connection and sends `bytes` on it; the connection stays open.
async fn half_sent(addr: &str, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connects");
    s.write_all(bytes).await.expect("writes");
    s
}

/// `postmesh up` on `dir`, with the given shutdown deadline in seconds.
async fn up(dir: &tempfile::TempDir, drain_secs: &str) -> Process {
    Process::start(
        &[
            "up",
            "--listen",
            "127.0.0.1:0",
            "--data",
            dir.path().to_str().unwrap(),
        ],
        &[("POSTMESH_GATEWAY__DRAIN_SECS", drain_secs)],
    )
    .await
}

/// Publishes one message; returns its UUID.
async fn publish(p: &Process, path: &str) -> String {
    let res = reqwest::Client::new()
        .post(format!("{}/v1/publish", p.http()))
        .json(&json!({"path": path, "body": 1}))
        .send()
        .await
        .expect("publish");
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    v["uuid"].as_str().unwrap().to_owned()
}

/// Both half-sent requests, then a whole one on a third connection: by the
/// time it is answered the server has taken the first two.
async fn hold_open(p: &Process) -> (TcpStream, TcpStream) {
    let addr = p.host();
    let held = (
        half_sent(&addr, HALF_HEADERS).await,
        half_sent(&addr, HALF_BODY).await,
    );
    assert_eq!(p.get("/healthz", None).await["status"], "ok");
    // Let the server read what the two sent (not an assertion of speed:
    // the test holds either way, it only fails on a server that hangs).
    tokio::time::sleep(Duration::from_millis(300)).await;
    held
}

/// The next run on the same data directory opens the store and holds
/// `uuid`: the store was closed and released.
async fn reopens_with(dir: &tempfile::TempDir, uuid: &str) {
    let mut again = up(dir, "5").await;
    let history = again.get("/v1/history?pattern=stop.%23", None).await;
    assert_eq!(history["messages"][0]["uuid"], uuid, "{history}");
    again.signal("TERM");
    again.exits_cleanly(EXIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_cut_at_the_shutdown_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = up(&dir, "2").await;
    let uuid = publish(&server, "stop.1").await;
    let _held = hold_open(&server).await;
    server.signal("TERM");
    server.exits_cleanly(EXIT).await;
    reopens_with(&dir, &uuid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // A deadline no test waits for: only the second signal can end it.
    let mut server = up(&dir, "3600").await;
    let uuid = publish(&server, "stop.2").await;
    let _held = hold_open(&server).await;
    server.signal("TERM");
    // The first signal is taken once the listener is closed.
    assert!(
        server.listener_closes().await,
        "the listener closes on the first signal"
    );
    server.signal("INT");
    server.exits_cleanly(EXIT).await;
    reopens_with(&dir, &uuid).await;
}

/// Whether the server closes `s` within `wait` (reading EOF or an error).
async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 512];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_not_sent_in_time_are_dropped() {
    let mesh = Mesh::start_with(|c| c.gateway.header_timeout_secs = 1).await;
    let addr = mesh.addr.to_string();

    // Headers without their blank line.
    let mut half = half_sent(&addr, HALF_HEADERS).await;
    assert!(
        closed_within(&mut half, Duration::from_secs(15)).await,
        "a connection that never finishes its headers is dropped"
    );

    // A slowloris: a byte of headers every 100 ms never completes them, and
    // sending keeps the connection no longer.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    let trickle = b"GET /healthz HTTP/1.1\r\nHost: postmesh\r\n"
        .iter()
        .chain(b"X-Padding: ".iter())
        .chain(std::iter::repeat(&b'a'));
    let mut dropped = false;
    for &byte in trickle.take(150) {
        if slow.write_all(&[byte]).await.is_err()
            || closed_within(&mut slow, Duration::from_millis(100)).await
        {
            dropped = true;
            break;
        }
    }
    assert!(dropped, "a client trickling its headers is dropped");

    // A client that sends its request at once is served; kept alive, its
    // connection has the same time for the next request's headers.
    let mut kept = TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: postmesh\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    kept.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert!(
        closed_within(&mut kept, Duration::from_secs(15)).await,
        "an idle kept-alive connection is dropped"
    );
}

/// A body sent slower than `gateway.body_timeout_secs` is refused with 408
/// and the `timeout` code, and nothing is published; others are served
/// meanwhile. Before, a trickled body held its connection and handler for
/// as long as the client liked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_too_slowly_is_refused_with_408() {
    let mesh = Mesh::start_with(|c| c.gateway.body_timeout_secs = 1).await;
    let addr = mesh.addr.to_string();
    let mut slow = half_sent(&addr, HALF_BODY).await;
    let started = std::time::Instant::now();
    // Served meanwhile.
    let uuid = mesh.publish("fast.1", json!(1)).await;
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut reply))
        .await
        .expect("answered and closed, not held")
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(900));
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    let body: Value = serde_json::from_str(reply.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["code"], "timeout", "{body}");
    let (_, h) = mesh.get("/v1/history?pattern=%23&limit=10", None).await;
    let uuids: Vec<_> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["uuid"].clone())
        .collect();
    assert_eq!(uuids, vec![json!(uuid)], "only the fast publish");
}
