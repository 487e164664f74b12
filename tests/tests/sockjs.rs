//! SockJS under `/sockjs` over real sockets: the client protocol carried by
//! xhr-polling, xhr-streaming and SockJS-framed WebSocket; sessions nobody
//! polls closed with their subscriptions; the default `Origin` rule; tokens.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use postmesh_tests::{Mesh, token};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "sockjs-secret";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(40))
        .build()
        .unwrap()
}

/// POSTs to a session URL; the status and the body.
async fn post(url: &str, body: &str) -> (u16, String) {
    let r = http().post(url).body(body.to_owned()).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The client frames an `a[...]` SockJS frame carries.
fn frames(sockjs: &str) -> Vec<Value> {
    let array = sockjs
        .trim_end()
        .strip_prefix('a')
        .unwrap_or_else(|| panic!("expected an a[..] frame, got {sockjs:?}"));
    serde_json::from_str::<Vec<String>>(array)
        .unwrap()
        .iter()
        .map(|f| serde_json::from_str(f).unwrap())
        .collect()
}

/// Sends client frames over `xhr_send`.
async fn send(session: &str, frames: &[Value]) {
    let texts: Vec<String> = frames.iter().map(Value::to_string).collect();
    let (status, body) = post(
        &format!("{session}/xhr_send"),
        &serde_json::to_string(&texts).unwrap(),
    )
    .await;
    assert_eq!(status, 204, "{body}");
}

/// The gateway's `/metrics` text.
async fn metrics(mesh: &Mesh) -> String {
    http()
        .get(format!("{}/metrics", mesh.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Polls until client frames come (a poll may end with a heartbeat).
async fn poll(session: &str) -> Vec<Value> {
    loop {
        let (status, body) = post(&format!("{session}/xhr"), "").await;
        assert_eq!(status, 200, "{body}");
        if body != "h\n" {
            return frames(&body);
        }
    }
}

#[tokio::test]
async fn xhr_polling_carries_the_client_protocol() {
    let mesh = Mesh::start().await;
    let session = format!("{}/sockjs/000/poll1", mesh.url());
    assert_eq!(
        post(&format!("{session}/xhr"), "").await,
        (200, "o\n".into())
    );
    send(&session, &[json!({"op":"sub","id":1,"pattern":"feeds.#"})]).await;
    assert_eq!(poll(&session).await, vec![json!({"op":"ok","id":1})]);
    let uuid = mesh.publish("feeds.a.1", json!({"n": 1})).await;
    let got = poll(&session).await;
    assert_eq!(got[0]["op"], "msg");
    assert_eq!(got[0]["uuid"], uuid.as_str());
    assert_eq!(got[0]["body"], json!({"n": 1}));
    // Bad input gets its err frame, as on /ws.
    send(&session, &[json!({"op":"nope","id":2})]).await;
    assert_eq!(poll(&session).await[0]["code"], "unknown_op");
    // The protocol's own refusals.
    assert_eq!(post(&format!("{session}/xhr_send"), "").await.0, 500);
    assert_eq!(post(&format!("{session}/xhr_send"), "[\"x").await.0, 500);
    assert_eq!(
        post(
            &format!("{}/sockjs/000/nosuch/xhr_send", mesh.url()),
            "[\"x\"]"
        )
        .await
        .0,
        404
    );
    mesh.stop().await;
}

#[tokio::test]
async fn xhr_streaming_carries_live_messages() {
    let mesh = Mesh::start().await;
    let session = format!("{}/sockjs/000/stream1", mesh.url());
    let mut stream = http()
        .post(format!("{session}/xhr_streaming"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut seen = String::new();
    let mut lines = Vec::new();
    let mut next_line = async || -> String {
        loop {
            if let Some(i) = seen.find('\n') {
                let line: String = seen.drain(..=i).collect();
                return line.trim_end().to_owned();
            }
            let chunk = stream.chunk().await.unwrap().expect("stream open");
            seen.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    };
    assert_eq!(next_line().await, "h".repeat(2048), "the prelude");
    assert_eq!(next_line().await, "o");
    send(&session, &[json!({"op":"sub","id":1,"pattern":"feeds.#"})]).await;
    assert_eq!(frames(&next_line().await), vec![json!({"op":"ok","id":1})]);
    for n in 0..5 {
        mesh.publish(&format!("feeds.s.{n}"), json!(n)).await;
    }
    while lines.len() < 5 {
        lines.extend(frames(&next_line().await));
    }
    let bodies: Vec<Value> = lines.iter().map(|m| m["body"].clone()).collect();
    assert_eq!(bodies, (0..5).map(|n| json!(n)).collect::<Vec<_>>());
    // A second receiving request is refused while this one is open.
    assert_eq!(
        post(&format!("{session}/xhr"), "").await.1,
        "c[2010,\"Another connection still open\"]\n"
    );
    mesh.stop().await;
}

#[tokio::test]
async fn a_session_nobody_polls_is_closed_with_its_subscriptions() {
    let mesh = Mesh::start_with(|c| c.gateway.sockjs.disconnect_delay_secs = 1).await;
    let session = format!("{}/sockjs/000/idle1", mesh.url());
    post(&format!("{session}/xhr"), "").await;
    send(&session, &[json!({"op":"sub","id":1,"pattern":"feeds.#"})]).await;
    poll(&session).await;
    let (_, health) = mesh.get("/healthz", None).await;
    assert_eq!(health["connections"], 1);
    assert!(
        metrics(&mesh)
            .await
            .contains("postmesh_gateway_sockjs_sessions 1\n")
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, health) = mesh.get("/healthz", None).await;
        let held = metrics(&mesh).await;
        if health["connections"] == 0 && held.contains("postmesh_gateway_sockjs_sessions 0\n") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the session was never closed and forgotten: {health} {held}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        metrics(&mesh)
            .await
            .contains("postmesh_gateway_subscriptions 0"),
        "its subscriptions went with it"
    );
    // The id is free again: a new session opens.
    assert_eq!(post(&format!("{session}/xhr"), "").await.1, "o\n");
    mesh.stop().await;
}

#[tokio::test]
async fn another_sites_page_is_refused_by_default() {
    let mesh = Mesh::start().await;
    let r = http()
        .post(format!("{}/sockjs/000/o1/xhr", mesh.url()))
        .header("Origin", "https://elsewhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "forbidden");
    let own = mesh.url().replace("http://", "");
    let r = http()
        .get(format!("{}/sockjs/info", mesh.url()))
        .header("Origin", format!("http://{own}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        format!("http://{own}").as_str()
    );
    let info: Value = r.json().await.unwrap();
    assert_eq!(info["websocket"], true);
    mesh.stop().await;
}

#[tokio::test]
async fn tokens_work_on_http_transports_and_websocket() {
    let mesh = Mesh::start_with(|c| c.gateway.secret = Some(SECRET.into())).await;
    let (status, body) = post(
        &format!("{}/sockjs/000/t0/xhr?token=garbage", mesh.url()),
        "",
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let t = token(SECRET, None, &["feeds.#"], &[]);
    let session = format!("{}/sockjs/000/t1", mesh.url());
    assert_eq!(post(&format!("{session}/xhr?token={t}"), "").await.1, "o\n");
    send(
        &session,
        &[
            json!({"op":"sub","id":1,"pattern":"feeds.#"}),
            json!({"op":"sub","id":2,"pattern":"other.#"}),
        ],
    )
    .await;
    let mut got = poll(&session).await;
    if got.len() < 2 {
        got.extend(poll(&session).await);
    }
    assert_eq!(got[0], json!({"op":"ok","id":1}));
    assert_eq!(got[1]["code"], "forbidden");

    let ws_url = format!(
        "{}/sockjs/000/w1/websocket?token={t}",
        mesh.url().replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("o"));
    ws.send(Message::text(r#"["{\"op\":\"ping\",\"id\":7}"]"#))
        .await
        .unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    assert_eq!(
        frames(reply.to_text().unwrap()),
        vec![json!({"op":"ok","id":7,"pong":true})]
    );
    mesh.stop().await;
}

#[tokio::test]
async fn a_waiting_poll_carries_the_shutdown_close_frame() {
    let mesh = Mesh::start().await;
    let session = format!("{}/sockjs/000/bye1", mesh.url());
    post(&format!("{session}/xhr"), "").await;
    send(&session, &[json!({"op":"sub","id":1,"pattern":"feeds.#"})]).await;
    poll(&session).await;
    let waiting = tokio::spawn({
        let url = format!("{session}/xhr");
        async move { post(&url, "").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    mesh.stop().await;
    let (status, body) = waiting.await.unwrap();
    assert_eq!(status, 200);
    assert!(body.starts_with("c[1001,"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the session closed at once, not after a close handshake timeout"
    );
}
