//! The standalone mesh over real sockets: publish, subscribe, history,
//! latest, resume, restart, slow consumers.

use std::collections::HashSet;
use std::time::Duration;

use postmesh_tests::{Closed, Mesh};
use serde_json::{Value, json};

fn uuids(msgs: &[Value]) -> Vec<String> {
    msgs.iter()
        .map(|m| m["uuid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn http_publish_reaches_a_subscribed_device() {
    let mesh = Mesh::start().await;
    let mut device = mesh.ws().await;
    device.sub("feeds.breaking-news.#").await;
    let uuid = mesh
        .publish("feeds.breaking-news.56", json!({"headline": "Rates cut"}))
        .await;
    let m = device.msg().await;
    assert_eq!(m["path"], "feeds.breaking-news.56");
    assert_eq!(m["uuid"], uuid);
    assert_eq!(m["body"]["headline"], "Rates cut");
    assert_eq!(m["class"], "silver");
    // Not subscribed: not delivered.
    mesh.publish("sports.x", json!(1)).await;
    device.quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn history_of_a_folder_is_one_query_newest_first() {
    let mesh = Mesh::start().await;
    let u55 = mesh.publish("feeds.breaking-news.55", json!("older")).await;
    let u56 = mesh.publish("feeds.breaking-news.56", json!("newer")).await;
    mesh.publish("feeds.sports.1", json!("elsewhere")).await;
    let (status, body) = mesh
        .get("/v1/history?pattern=feeds.breaking-news.%23", None)
        .await;
    assert_eq!(status, 200, "{body}");
    let got = uuids(body["messages"].as_array().unwrap());
    assert_eq!(got, [u56.clone(), u55.clone()]);
    assert_eq!(body["more"], false);

    // The same over WebSocket, with paging.
    let mut device = mesh.ws().await;
    let r = device
        .request(json!({"op": "history", "pattern": "feeds.breaking-news.#", "limit": 1}))
        .await;
    assert_eq!(r["op"], "ok");
    assert_eq!(
        uuids(r["messages"].as_array().unwrap()),
        std::slice::from_ref(&u56)
    );
    assert_eq!(r["more"], true);
    let c56 = r["messages"][0]["cursor"].clone();
    assert!(c56.is_string(), "stored messages carry their cursor: {r}");
    let r = device
        .request(
            json!({"op": "history", "pattern": "feeds.breaking-news.#", "limit": 1, "before": c56}),
        )
        .await;
    assert_eq!(uuids(r["messages"].as_array().unwrap()), [u55]);
    // A wildcard in the middle.
    let r = device
        .request(json!({"op": "history", "pattern": "feeds.*.1"}))
        .await;
    assert_eq!(r["messages"][0]["path"], "feeds.sports.1");
}

#[tokio::test]
async fn latest_is_the_newest_per_path() {
    let mesh = Mesh::start().await;
    mesh.publish("scores.a", json!(1)).await;
    let a2 = mesh.publish("scores.a", json!(2)).await;
    let b1 = mesh.publish("scores.b", json!(1)).await;
    let (status, body) = mesh.get("/v1/latest?pattern=scores.*", None).await;
    assert_eq!(status, 200);
    let got: HashSet<String> = uuids(body["messages"].as_array().unwrap())
        .into_iter()
        .collect();
    assert_eq!(got, HashSet::from([a2, b1]));
}

#[tokio::test]
async fn one_copy_per_connection_and_unsub() {
    let mesh = Mesh::start().await;
    let mut device = mesh.ws().await;
    device.sub("feeds.#").await;
    device.sub("feeds.*.56").await;
    device.sub("#").await;
    let again = device.request(json!({"op": "sub", "pattern": "#"})).await;
    assert_eq!(again["already"], true, "subscribing twice is harmless");
    let u = mesh.publish("feeds.x.56", json!(null)).await;
    assert_eq!(device.msg().await["uuid"], u);
    device.quiet(Duration::from_millis(300)).await;

    for p in ["feeds.#", "feeds.*.56", "#"] {
        let r = device.request(json!({"op": "unsub", "pattern": p})).await;
        assert_eq!(r["op"], "ok", "{r}");
    }
    mesh.publish("feeds.x.56", json!(null)).await;
    device.quiet(Duration::from_millis(300)).await;
    let r = device
        .request(json!({"op": "unsub", "pattern": "feeds.#"}))
        .await;
    assert_eq!(r["code"], "not_subscribed");
}

#[tokio::test]
async fn publishing_over_websocket_and_idempotence() {
    let mesh = Mesh::start().await;
    let mut listener = mesh.ws().await;
    listener.sub("chat.#").await;
    let mut publisher = mesh.ws().await;
    let uuid = postmesh_schema::message::new_v1().to_string();
    let r = publisher
        .request(json!({"op": "pub", "path": "chat.room.1", "body": {"t": "hi"}, "uuid": uuid, "meta": {"from": "x"}}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    assert_eq!(r["uuid"], uuid);
    assert_eq!(r["duplicate"], false);
    let r = publisher
        .request(json!({"op": "pub", "path": "chat.room.1", "body": {"t": "hi"}, "uuid": uuid}))
        .await;
    assert_eq!(r["duplicate"], true, "same UUID twice is one message");
    let m = listener.msg().await;
    assert_eq!(m["meta"]["from"], "x");
    listener.quiet(Duration::from_millis(300)).await;
    let (_, body) = mesh.get("/v1/history?pattern=chat.%23", None).await;
    assert_eq!(body["messages"].as_array().unwrap().len(), 1);
    // Binary bodies travel as base64.
    let r = publisher
        .request(json!({"op": "pub", "path": "chat.room.1", "body_base64": "AAEC/w=="}))
        .await;
    assert_eq!(r["op"], "ok");
    assert_eq!(listener.msg().await["body_base64"], "AAEC/w==");
}

/// A publisher that does not wait for answers: its publishes are stored
/// and delivered in the order sent, answered in order, and a request sent
/// after them sees them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_publishes_keep_their_order() {
    let mesh = Mesh::start().await;
    let mut listener = mesh.ws().await;
    listener.sub("pipe.#").await;
    let mut publisher = mesh.ws().await;
    const N: u64 = 600;
    for n in 1..=N {
        publisher
            .send(
                &json!({"op": "pub", "id": n, "path": format!("pipe.{}", n % 7), "body": {"n": n}}),
            )
            .await;
    }
    publisher
        .send(&json!({"op": "history", "id": N + 1, "pattern": "pipe.#", "limit": 1000}))
        .await;
    for n in 1..=N {
        let r = publisher.next().await;
        assert_eq!(
            (r["op"].as_str(), r["id"].as_u64()),
            (Some("ok"), Some(n)),
            "{r}"
        );
    }
    let h = publisher.next().await;
    assert_eq!(h["id"], N + 1, "{h}");
    let stored: Vec<u64> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(
        stored,
        (1..=N).rev().collect::<Vec<_>>(),
        "newest first, all of them"
    );
    let live: Vec<u64> = listener
        .msgs(N as usize)
        .await
        .iter()
        .map(|m| m["body"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(live, (1..=N).collect::<Vec<_>>());
}

/// `?batch=true`: a burst of messages arrives in fewer WebSocket frames,
/// one JSON object per line, all of them, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_frames_carry_several_messages_per_line() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let mesh = Mesh::start().await;
    let url = format!("ws://{}/ws?batch=true", mesh.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    ws.send(Message::text(r#"{"op":"sub","id":1,"pattern":"burst.#"}"#))
        .await
        .unwrap();
    const N: u64 = 500;
    let messages: Vec<Value> = (0..N)
        .map(|n| json!({"path": format!("burst.{}", n % 3), "body": {"n": n}}))
        .collect();
    let mut seen = Vec::new();
    let mut frames = 0;
    let mut published = false;
    while seen.len() < N as usize {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("frames keep coming")
            .unwrap()
            .unwrap();
        let Message::Text(text) = frame else { continue };
        let lines: Vec<Value> = text
            .split('\n')
            .map(|l| serde_json::from_str(l).expect("each line is one JSON frame"))
            .collect();
        if lines[0]["op"] == "ok" && !published {
            let (status, _) = mesh
                .post("/v1/publish", &json!({"messages": messages}), None)
                .await;
            assert_eq!(status, 200);
            published = true;
            continue;
        }
        frames += 1;
        for l in lines {
            assert_eq!(l["op"], "msg", "{l}");
            seen.push(l["body"]["n"].as_u64().unwrap());
        }
    }
    assert_eq!(seen, (0..N).collect::<Vec<_>>());
    assert!(
        frames < N,
        "{N} messages in one burst came in {frames} frames"
    );
}

/// Subscribers join while a publisher is mid-stream; each must see every
/// message exactly once, replayed or live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_with_history_has_no_gap_and_no_duplicate() {
    let mesh = Mesh::start().await;
    let total = 600usize;
    let url = mesh.url();
    let publisher = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut sent = Vec::with_capacity(total);
        for i in 0..total {
            let res = client
                .post(format!("{url}/v1/publish"))
                .json(&json!({"path": format!("live.s.{}", i % 5), "body": i}))
                .send()
                .await
                .unwrap();
            let v: Value = res.json().await.unwrap();
            sent.push(v["uuid"].as_str().unwrap().to_owned());
        }
        sent
    });
    let mut devices = Vec::new();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(40)).await;
        let mut d = mesh.ws().await;
        let r = d
            .request(json!({"op": "sub", "pattern": "live.#", "history": 1000}))
            .await;
        assert_eq!(r["op"], "ok", "{r}");
        devices.push(d);
    }
    let sent = publisher.await.unwrap();
    for (i, d) in devices.iter_mut().enumerate() {
        let got = uuids(&d.msgs(total).await);
        let set: HashSet<&String> = got.iter().collect();
        assert_eq!(set.len(), total, "device {i}: duplicates");
        assert!(sent.iter().all(|u| set.contains(u)), "device {i}: gap");
        d.quiet(Duration::from_millis(200)).await;
    }
}

/// A device drops, misses messages, reconnects with `since` and rereads.
#[tokio::test]
async fn resume_after_a_dropped_connection_has_no_gap() {
    let mesh = Mesh::start().await;
    let mut d = mesh.ws().await;
    d.sub("news.#").await;
    for i in 0..5 {
        mesh.publish(&format!("news.{i}"), json!(i)).await;
    }
    let seen = d.msgs(5).await;
    d.close().await;
    let mut missed = Vec::new();
    for i in 5..12 {
        missed.push(mesh.publish(&format!("news.{i}"), json!(i)).await);
    }
    let mut d = mesh.ws().await;
    // The resume position is the cursor of the last message received.
    let last = seen.last().unwrap()["cursor"].clone();
    let r = d
        .request(json!({"op": "sub", "pattern": "news.#", "since": last}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    assert_eq!(r["replayed"], 7);
    assert_eq!(r["more"], false);
    let got = uuids(&d.msgs(7).await);
    assert_eq!(got, missed, "the missed messages, oldest first");
    let live = mesh.publish("news.12", json!(12)).await;
    assert_eq!(d.msg().await["uuid"], live);
    d.quiet(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn restart_on_the_same_data_keeps_history() {
    let mut mesh = Mesh::start().await;
    let u = mesh
        .publish("feeds.breaking-news.56", json!("persisted"))
        .await;
    mesh.restart().await;
    let (status, body) = mesh.get("/v1/history?pattern=feeds.%23", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["messages"][0]["uuid"], u);
    assert_eq!(body["messages"][0]["body"], "persisted");
    // And the restarted mesh still delivers.
    let mut d = mesh.ws().await;
    d.sub("feeds.#").await;
    mesh.publish("feeds.x", json!(1)).await;
    d.msg().await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_disconnected_and_the_others_keep_receiving() {
    let mesh = Mesh::start_with(|c| {
        // Room for one publish batch (a burst), not for a whole flood.
        c.gateway.outbound_queue = 256;
        c.gateway.write_timeout_secs = 3;
    })
    .await;
    let mut fast = mesh.ws().await;
    fast.sub("flood.#").await;
    let mut slow = mesh.ws().await;
    slow.sub("flood.#").await;
    // `slow` never reads while the flood is sent.
    let body = "x".repeat(4096);
    let batches = 100;
    let per_batch = 100;
    let url = mesh.url();
    let flood = tokio::spawn(async move {
        let client = reqwest::Client::new();
        for b in 0..batches {
            let messages: Vec<Value> = (0..per_batch)
                .map(|i| json!({"path": format!("flood.{b}"), "body": {"i": i, "pad": body}}))
                .collect();
            let res = client
                .post(format!("{url}/v1/publish"))
                .json(&json!({"messages": messages}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
        }
    });
    let fast_reader = tokio::spawn(async move {
        for _ in 0..batches * per_batch {
            fast.msg().await;
        }
    });
    flood.await.unwrap();
    // The slow device wakes up: it reads what was buffered, then the close.
    let (how, got) = slow.until_closed().await;
    fast_reader
        .await
        .expect("the fast device received every message");
    assert_eq!(how, Closed::Code(4000), "closed as a slow consumer");
    assert!(got.len() < batches * per_batch, "it could not have kept up");
    let (_, metrics) = mesh.get("/metrics", None).await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("postmesh_gateway_slow_consumers_total 1"),
        "metric counts it"
    );
}

/// Publishes `n` messages of about 30 KB at `big.0` .. `big.<n-1>`.
async fn publish_big(mesh: &Mesh, n: usize) {
    let pad = "x".repeat(30_000);
    for i in 0..n {
        mesh.publish(&format!("big.{i}"), json!({ "pad": pad }))
            .await;
    }
}

/// A history reply larger than the reply cap (1 MiB) stops early with
/// `more`, and paging with `before` reads every message once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_history_replies_are_capped_and_page_on() {
    let mesh = Mesh::start().await;
    publish_big(&mesh, 100).await;
    let mut device = mesh.ws().await;
    let mut seen: Vec<String> = Vec::new();
    let mut before: Option<String> = None;
    for id in 1..=10u64 {
        let mut frame = json!({"op": "history", "id": id, "pattern": "big.#", "limit": 100});
        if let Some(b) = &before {
            frame["before"] = json!(b);
        }
        let reply = device.request(frame).await;
        let page = reply["messages"].as_array().unwrap().clone();
        assert!(!page.is_empty());
        let bytes: usize = page.iter().map(|m| m.to_string().len()).sum();
        assert!(bytes <= 1 << 20, "reply of {bytes} bytes");
        seen.extend(uuids(&page));
        before = page
            .last()
            .map(|m| m["cursor"].as_str().unwrap().to_owned());
        if reply["more"] == false {
            break;
        }
        assert!(page.len() < 100, "a full page would be over 1 MiB");
    }
    assert_eq!(seen.len(), 100, "every message once");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 100);
    // Newest first, across pages.
    let paths: Vec<String> = (0..100).rev().map(|i| format!("big.{i}")).collect();
    let (_, all) = mesh
        .get("/v1/history?pattern=big.%23&limit=100", None)
        .await;
    let got: Vec<&str> = all["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].as_str().unwrap())
        .collect();
    assert_eq!(got, paths);
    assert_eq!(uuids(all["messages"].as_array().unwrap()), seen);
    mesh.stop().await;
}

/// Replies count as writes too: a device that asks and never reads is
/// closed as a slow consumer once a reply cannot be written in time, and
/// reads the close after what was buffered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_does_not_read_its_replies_is_closed_as_a_slow_consumer() {
    let mesh = Mesh::start_with(|c| c.gateway.write_timeout_secs = 1).await;
    publish_big(&mesh, 100).await;
    let mut device = mesh.ws().await;
    // Forty replies of about 1 MiB each: far more than the sockets buffer.
    for id in 1..=40u64 {
        device
            .send(&json!({"op": "history", "id": id, "pattern": "big.#", "limit": 100}))
            .await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (how, _) = device.until_closed().await;
    assert_eq!(how, Closed::Code(4000), "closed as a slow consumer");
    mesh.stop().await;
}

#[tokio::test]
async fn dismiss_reaches_the_users_other_devices() {
    let secret = "dismiss-secret";
    let mesh = Mesh::start_with(|c| c.gateway.secret = Some(secret.into())).await;
    let t = postmesh_tests::token(secret, Some(9067832), &["alerts.#"], &["alerts.#"]);
    let mut phone = mesh.ws_token(&t).await;
    phone.expect("synced", None).await;
    let mut laptop = mesh.ws_token(&t).await;
    laptop.expect("synced", None).await;
    let (status, body) = mesh
        .post(
            "/v1/publish",
            &json!({"path": "alerts.1", "body": "x"}),
            Some(&t),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let u = body["uuid"].as_str().unwrap();
    let r = phone.request(json!({"op": "dismiss", "uuid": u})).await;
    assert_eq!(r["op"], "ok", "{r}");
    let d = laptop.expect("dismissed", None).await;
    assert_eq!(d["uuid"], u);
    // Dismissed messages are left out of the user's history.
    let r = laptop
        .request(json!({"op": "history", "pattern": "alerts.#"}))
        .await;
    assert_eq!(r["messages"].as_array().unwrap().len(), 0, "{r}");
    let (_, body) = mesh.get("/v1/history?pattern=alerts.%23", Some(&t)).await;
    assert_eq!(body["messages"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn health_and_metrics() {
    let mesh = Mesh::start().await;
    let _d = mesh.ws().await;
    let (status, body) = mesh.get("/healthz", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    mesh.publish("m.x", json!(1)).await;
    let (status, body) = mesh.get("/metrics", None).await;
    assert_eq!(status, 200);
    let text = body.as_str().unwrap();
    for name in [
        "postmesh_gateway_connections 1",
        "postmesh_gateway_subscriptions",
        "postmesh_gateway_messages_in_total",
        "postmesh_gateway_deliveries_total",
        "postmesh_core_messages_persisted_total 1",
        "postmesh_store_operation_seconds_count{op=\"put\"}",
    ] {
        assert!(text.contains(name), "{name} missing from metrics:\n{text}");
    }
}
