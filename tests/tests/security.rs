//! Tokens, refusals, limits and bad input over real sockets. Every refusal
//! is an `err` frame with a code (or an HTTP 4xx with a JSON body), and the
//! connection stays usable.

use std::time::Duration;

use postmesh_tests::{Client, Closed, Mesh, token};
use serde_json::{Value, json};

const SECRET: &str = "test-secret";

async fn secured() -> Mesh {
    Mesh::start_with(|c| c.gateway.secret = Some(SECRET.into())).await
}

#[tokio::test]
async fn each_bad_input_gets_its_err_frame_and_the_connection_survives() {
    let mesh = Mesh::start().await;
    let mut d = mesh.ws().await;
    let cases: &[(&str, &str)] = &[
        ("not json", "bad_json"),
        ("[1,2,3]", "bad_json"),
        (r#"{"id":1}"#, "bad_frame"),
        (r#"{"op":"teleport","id":2}"#, "unknown_op"),
        (r#"{"op":"sub","id":3}"#, "bad_frame"),
        (r#"{"op":"sub","id":4,"pattern":"a..b"}"#, "bad_pattern"),
        (r#"{"op":"pub","id":5,"path":"a.*"}"#, "bad_path"),
        (r#"{"op":"pub","id":6,"path":""}"#, "bad_path"),
        (
            r#"{"op":"pub","id":7,"path":"a","uuid":"not-a-uuid"}"#,
            "bad_uuid",
        ),
        (
            r#"{"op":"pub","id":8,"path":"a","uuid":"67e55044-10b1-426f-9247-bb680e5fe0c8"}"#,
            "bad_uuid",
        ),
        (
            r#"{"op":"pub","id":9,"path":"a","meta":"x"}"#,
            "bad_message",
        ),
        (
            r#"{"op":"history","id":10,"pattern":"a.#","limit":5000}"#,
            "bad_limit",
        ),
        (
            r#"{"op":"unsub","id":11,"pattern":"never.subscribed"}"#,
            "not_subscribed",
        ),
        (
            r#"{"op":"dismiss","id":12,"uuid":"bd1961f5-1062-11e4-a630-406c8f1838fa"}"#,
            "unauthorized",
        ),
    ];
    for (frame, code) in cases {
        d.send_text(frame).await;
        let e = d.expect("err", None).await;
        assert_eq!(e["code"], *code, "{frame} gave {e}");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let deep = vec!["x"; 40].join(".");
    let e = d.request(json!({"op": "sub", "pattern": deep})).await;
    assert_eq!(e["code"], "bad_pattern");
    d.send_binary(vec![0, 1, 2]).await;
    assert_eq!(d.expect("err", None).await["code"], "bad_json");
    // Still usable after all that.
    let pong = d.request(json!({"op": "ping"})).await;
    assert_eq!(pong["op"], "ok");
    assert_eq!(pong["pong"], true);
    // And other connections never noticed.
    let mut other = mesh.ws().await;
    other.sub("ok.#").await;
    mesh.publish("ok.1", json!(1)).await;
    other.msg().await;
}

#[tokio::test]
async fn an_oversized_frame_closes_with_1009() {
    let mesh = Mesh::start_with(|c| c.gateway.max_frame_bytes = 1024).await;
    let mut d = mesh.ws().await;
    let big = json!({"op": "pub", "id": 1, "path": "a", "body": "x".repeat(4096)});
    d.send(&big).await;
    let (how, _) = d.until_closed().await;
    assert_eq!(how, Closed::Code(1009));
    // The gateway is fine.
    let mut other = mesh.ws().await;
    assert_eq!(other.request(json!({"op": "ping"})).await["op"], "ok");
}

#[tokio::test]
async fn subscription_limit() {
    let mesh = Mesh::start_with(|c| c.gateway.max_subscriptions = 3).await;
    let mut d = mesh.ws().await;
    for i in 0..3 {
        d.sub(&format!("s.{i}")).await;
    }
    let e = d.request(json!({"op": "sub", "pattern": "s.3"})).await;
    assert_eq!(e["code"], "too_many_subscriptions");
    d.request(json!({"op": "unsub", "pattern": "s.0"})).await;
    d.sub("s.3").await;
}

#[tokio::test]
async fn with_a_secret_tokens_are_required_and_scoped() {
    let mesh = secured().await;
    // No token: only ping and auth.
    let mut anon = mesh.ws().await;
    assert_eq!(anon.request(json!({"op": "ping"})).await["op"], "ok");
    let e = anon
        .request(json!({"op": "sub", "pattern": "feeds.#"}))
        .await;
    assert_eq!(e["code"], "unauthorized");
    let e = anon
        .request(json!({"op": "auth", "token": "garbage"}))
        .await;
    assert_eq!(e["code"], "unauthorized");
    // An auth frame upgrades the connection.
    let t = token(SECRET, None, &["feeds.#"], &["feeds.breaking-news.*"]);
    let ok = anon.request(json!({"op": "auth", "token": t})).await;
    assert_eq!(ok["op"], "ok", "{ok}");
    anon.sub("feeds.breaking-news.#").await;
    let e = anon
        .request(json!({"op": "sub", "pattern": "sports.#"}))
        .await;
    assert_eq!(e["code"], "forbidden");
    let e = anon.request(json!({"op": "history", "pattern": "#"})).await;
    assert_eq!(e["code"], "forbidden");
    let e = anon
        .request(json!({"op": "pub", "path": "feeds.other.1"}))
        .await;
    assert_eq!(e["code"], "forbidden");
    let r = anon
        .request(json!({"op": "pub", "path": "feeds.breaking-news.1", "body": 1}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    anon.msg().await;

    // ?token= at connect time.
    let mut d = mesh.ws_token(&t).await;
    d.sub("feeds.#").await;

    // A bad token at connect time is refused before the upgrade.
    let refused =
        tokio_tungstenite::connect_async(format!("ws://{}/ws?token=nope", mesh.addr)).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 401),
        other => panic!("expected a 401, got {other:?}"),
    }
}

#[tokio::test]
async fn http_needs_tokens_when_a_secret_is_set() {
    let mesh = secured().await;
    let (status, body) = mesh
        .post("/v1/publish", &json!({"path": "feeds.x"}), None)
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "unauthorized");
    let reader = token(SECRET, None, &["feeds.#"], &[]);
    let (status, body) = mesh
        .post("/v1/publish", &json!({"path": "feeds.x"}), Some(&reader))
        .await;
    assert_eq!(status, 403, "{body}");
    let writer = token(SECRET, None, &[], &["feeds.#"]);
    let (status, _) = mesh
        .post("/v1/publish", &json!({"path": "feeds.x"}), Some(&writer))
        .await;
    assert_eq!(status, 200);
    let (status, _) = mesh
        .get("/v1/history?pattern=feeds.%23", Some(&reader))
        .await;
    assert_eq!(status, 200);
    let (status, _) = mesh
        .get("/v1/history?pattern=feeds.%23", Some(&writer))
        .await;
    assert_eq!(status, 403);
    let (status, _) = mesh.get("/v1/history?pattern=feeds.%23", None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn http_errors_are_4xx_with_a_code() {
    let mesh = Mesh::start().await;
    let cases = [
        (json!({"path": "a.*"}), 400, "bad_path"),
        (json!({"nopath": 1}), 400, "bad_frame"),
        (json!({"path": "a", "class": "platinum"}), 400, "bad_frame"),
        (json!({"messages": []}), 400, "bad_frame"),
        (
            json!({"messages": [{"path": "ok"}, {"path": "bad..path"}]}),
            400,
            "bad_path",
        ),
    ];
    for (body, status, code) in cases {
        let (s, b) = mesh.post("/v1/publish", &body, None).await;
        assert_eq!(
            (s, b["code"].as_str().unwrap_or("")),
            (status, code),
            "{body} gave {b}"
        );
    }
    let (s, b) = mesh.get("/v1/history?pattern=a..b", None).await;
    assert_eq!((s, b["code"].as_str().unwrap()), (400, "bad_pattern"));
    let (s, b) = mesh.get("/v1/history", None).await;
    assert_eq!((s, b["code"].as_str().unwrap()), (400, "bad_frame"));
    let (s, b) = mesh.get("/v1/history?pattern=a&limit=0", None).await;
    assert_eq!((s, b["code"].as_str().unwrap()), (400, "bad_limit"));
    let (s, b) = mesh.get("/v1/history?pattern=a&before=nope", None).await;
    assert_eq!((s, b["code"].as_str().unwrap()), (400, "bad_uuid"));
    let res = reqwest::Client::new()
        .post(format!("{}/v1/publish", mesh.url()))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // A batch publish answers every UUID.
    let (s, b) = mesh
        .post(
            "/v1/publish",
            &json!({"messages": [{"path": "b.1"}, {"path": "b.2", "body": [1]}]}),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["uuids"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn exposure_without_a_secret_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = postmesh::config::Config {
        data: dir.path().to_path_buf(),
        ..Default::default()
    };
    config.gateway.listen = "0.0.0.0:0".parse().unwrap();
    let err = postmesh::up::start(config.clone())
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("without a secret"), "{err}");
    config.gateway.insecure = true;
    let running = postmesh::up::start(config)
        .await
        .expect("--insecure allows it");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn an_expired_token_closes_the_connection() {
    let mesh = secured().await;
    let t = postmesh_gateway::auth::issue_token(
        SECRET,
        &postmesh_gateway::auth::Claims {
            sub: None,
            exp: postmesh_tests::epoch_plus(2),
            nbf: None,
            subs: vec!["#".into()],
            pubs: vec![],
        },
    )
    .unwrap();
    let mut d: Client = mesh.ws_token(&t).await;
    d.sub("x.#").await;
    let (how, _) = tokio::time::timeout(Duration::from_secs(10), d.until_closed())
        .await
        .expect("closed in time");
    assert_eq!(how, Closed::Code(4001));
}

/// The gateway pings every device; one that answers (any reading client
/// does, and browsers do) stays, one silent for two intervals is closed
/// with 4002.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_closes_silent_devices() {
    let mesh = Mesh::start_with(|c| c.gateway.keepalive_secs = 1).await;
    let mut alive = mesh.ws().await;
    alive.sub("k.#").await;
    let mut silent = mesh.ws().await;
    silent.sub("k.#").await;
    // `alive` keeps reading (answering pings) for 7 s; `silent` reads
    // nothing. Silent for more than 2 s: closed at a keepalive tick (about
    // 3 s), after a close handshake that waits up to 2 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(7);
    while tokio::time::Instant::now() < deadline {
        let _ = alive.next_within(Duration::from_millis(200)).await;
    }
    // The server gave up on `silent` (its close frame, 4002, may be lost
    // with the socket: a truly silent device reads nothing anyway).
    let (_, metrics) = mesh.get("/metrics", None).await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("postmesh_gateway_connections 1\n"),
        "only the live device remains"
    );
    let (how, _) = silent.until_closed().await;
    assert!(matches!(how, Closed::Code(4002) | Closed::Eof), "{how:?}");
    assert_eq!(alive.request(json!({"op": "ping"})).await["op"], "ok");
}

/// One subscription whose pattern has many `#` used to make every publish
/// under it try every way of splitting the path among them: with ten, a
/// publish never returned and a runtime thread spun. Matching is now
/// polynomial: the publish is delivered where it matches, and the server
/// goes on answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_many_hash_pattern_does_not_wedge_the_server() {
    let mesh = Mesh::start().await;
    let mut wedge = mesh.ws().await;
    let r = wedge
        .request(json!({"op": "sub", "pattern": "feeds.#.#.#.#.#.#.#.#.#.#.nomatch"}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    let mut plain = mesh.ws().await;
    plain.sub("feeds.#").await;
    let deep = std::iter::once("feeds")
        .chain((1..32).map(|i| if i % 2 == 0 { "x" } else { "y" }))
        .collect::<Vec<_>>()
        .join(".");
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap();
    for _ in 0..3 {
        let res = client
            .post(format!("{}/v1/publish", mesh.url()))
            .json(&json!({"path": deep, "body": 1}))
            .send()
            .await
            .expect("the publish is answered");
        assert_eq!(res.status(), 200);
        let got = plain.msg().await;
        assert_eq!(got["path"], deep.as_str());
    }
    let health = client
        .get(format!("{}/healthz", mesh.url()))
        .send()
        .await
        .expect("healthz answers");
    assert_eq!(health.status(), 200);
    wedge.quiet(std::time::Duration::from_millis(200)).await;
    mesh.stop().await;
}

/// A new token replaces the grants of a connection: subscriptions it does
/// not cover are dropped at once and listed in the `ok`; live messages for
/// them stop, and reading them is forbidden.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_authenticating_revokes_what_the_new_token_does_not_cover() {
    let mesh = secured().await;
    let wide = token(SECRET, None, &["secret.#", "public.#"], &[]);
    let narrow = token(SECRET, None, &["public.#"], &[]);
    let publisher = token(SECRET, None, &[], &["#"]);
    let mut d = mesh.ws_token(&wide).await;
    d.sub("secret.#").await;
    d.sub("public.#").await;
    let r = d.request(json!({"op": "auth", "token": narrow})).await;
    assert_eq!(r["op"], "ok", "{r}");
    assert_eq!(r["dropped"][0]["pattern"], "secret.#", "{r}");
    assert_eq!(r["dropped"][0]["code"], "forbidden", "{r}");
    assert_eq!(r["dropped"].as_array().map(Vec::len), Some(1), "{r}");
    for path in ["secret.x", "public.x"] {
        let (s, b) = mesh
            .post(
                "/v1/publish",
                &json!({"path": path, "body": path}),
                Some(&publisher),
            )
            .await;
        assert_eq!(s, 200, "{b}");
    }
    let got = d.msg().await;
    assert_eq!(got["path"], "public.x", "only what the new token allows");
    d.quiet(Duration::from_millis(300)).await;
    let r = d
        .request(json!({"op": "history", "pattern": "secret.#"}))
        .await;
    assert_eq!(r["code"], "forbidden", "{r}");
    // Subscribing again is refused too.
    let r = d.request(json!({"op": "sub", "pattern": "secret.#"})).await;
    assert_eq!(r["code"], "forbidden", "{r}");
}

/// The `Bearer` scheme is case-insensitive (RFC 7235), and a token is
/// refused before its `nbf`.
#[tokio::test]
async fn bearer_scheme_is_case_insensitive_and_nbf_is_honoured() {
    let mesh = secured().await;
    let t = token(SECRET, None, &["a.#"], &[]);
    for scheme in ["Bearer", "bearer", "BEARER", "BeArEr"] {
        let res = reqwest::Client::new()
            .get(format!("{}/v1/history?pattern=a.%23", mesh.url()))
            .header("Authorization", format!("{scheme} {t}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "scheme {scheme}");
    }
    let now = postmesh_tests::epoch_plus(0);
    let early = postmesh_gateway::auth::issue_token(
        SECRET,
        &postmesh_gateway::auth::Claims {
            sub: None,
            exp: now + 3600,
            nbf: Some(now + 600),
            subs: vec!["a.#".into()],
            pubs: vec![],
        },
    )
    .unwrap();
    let (s, b) = mesh.get("/v1/history?pattern=a.%23", Some(&early)).await;
    assert_eq!(s, 401, "{b}");
    assert_eq!(b["code"], "unauthorized", "{b}");
    assert!(
        b["message"].as_str().unwrap().contains("not valid yet"),
        "{b}"
    );
}

/// One maximum message size at every door: a message up to it reaches live
/// subscribers (batched or not), replays and history; a larger one is
/// refused with `too_large` (HTTP 413) and cuts no one off. Before, a
/// 1.5 MB body was accepted and every subscriber to its path was dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_up_to_the_limit_reach_everyone_and_larger_ones_are_refused() {
    let mesh = Mesh::start().await;
    let mut live = mesh.ws().await;
    live.sub("big.#").await;
    let mut batched = Client::connect(&format!("ws://{}/ws?batch=true", mesh.addr)).await;
    batched.sub("big.#").await;
    let first = mesh.publish("big.0", json!("small")).await;
    let cursor = live.msg().await["cursor"].clone();
    assert_eq!(batched.msg().await["uuid"], first);

    let near = "x".repeat(postmesh_schema::protocol::DEFAULT_MAX_MESSAGE_BYTES - 100);
    let (s, b) = mesh
        .post("/v1/publish", &json!({"path": "big.1", "body": near}), None)
        .await;
    assert_eq!(s, 200, "{b}");
    let big = b["uuid"].clone();
    assert_eq!(live.msg().await["uuid"], big, "delivered live");
    assert_eq!(batched.msg().await["uuid"], big, "delivered batched");

    let over = "x".repeat(postmesh_schema::protocol::DEFAULT_MAX_MESSAGE_BYTES + 1);
    let (s, b) = mesh
        .post("/v1/publish", &json!({"path": "big.2", "body": over}), None)
        .await;
    assert_eq!(s, 413, "{b}");
    assert_eq!(b["code"], "too_large", "{b}");
    let (s, b) = mesh
        .post(
            "/v1/publish",
            &json!({"messages": [{"path": "big.3"}, {"path": "big.4", "body": over}]}),
            None,
        )
        .await;
    assert_eq!((s, b["code"].as_str()), (413, Some("too_large")), "{b}");
    assert!(
        b["message"].as_str().unwrap().contains("messages[1]"),
        "{b}"
    );

    // Still connected, and the big message replays and reads back.
    let after = mesh.publish("big.5", json!("after")).await;
    assert_eq!(live.msg().await["uuid"], after);
    assert_eq!(batched.msg().await["uuid"], after);
    let mut resumed = mesh.ws().await;
    let r = resumed
        .request(json!({"op": "sub", "pattern": "big.#", "since": cursor}))
        .await;
    assert_eq!(r["replayed"], 2, "{r}");
    // History pages on past the 1 MiB reply cap and reads it back.
    let mut uuids = Vec::new();
    let mut before = serde_json::Value::Null;
    for _ in 0..5 {
        let r = resumed
            .request(json!({"op": "history", "pattern": "big.#", "limit": 10, "before": before}))
            .await;
        let page = r["messages"].as_array().unwrap().clone();
        uuids.extend(page.iter().map(|m| m["uuid"].clone()));
        before = page.last().unwrap()["cursor"].clone();
        if r["more"] == false {
            break;
        }
    }
    assert!(uuids.contains(&big), "{uuids:?}");
    assert_eq!(uuids.len(), 3, "each once: {uuids:?}");
}

/// The same limit on a WebSocket `pub`: refused with `too_large`, and the
/// connection goes on.
#[tokio::test]
async fn a_websocket_pub_over_the_limit_is_refused() {
    let mesh = Mesh::start_with(|c| c.max_message_bytes = 10_000).await;
    let mut d = mesh.ws().await;
    let r = d
        .request(json!({"op": "pub", "path": "a.b", "body": "y".repeat(20_000)}))
        .await;
    assert_eq!(
        (r["op"].as_str(), r["code"].as_str()),
        (Some("err"), Some("too_large")),
        "{r}"
    );
    let r = d
        .request(json!({"op": "pub", "path": "a.b", "body": "y".repeat(9_000)}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
}

/// The largest HTTP batch a publisher may send (the request body limit,
/// filled with messages near the largest size) reaches every device that
/// reads, batched or not: what one request fans out to a connection at
/// once fits in its outbound bound. Before, the bound (4 MiB) was half the
/// body limit (8 MiB), and one such batch closed every subscriber of its
/// path as a slow consumer however fast it read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_http_batch_reaches_every_reading_device() {
    let mesh = Mesh::start().await;
    let config = postmesh_gateway::GatewayConfig::default();
    let mut live = mesh.ws().await;
    live.sub("full.#").await;
    let mut batched = Client::connect(&format!("ws://{}/ws?batch=true", mesh.addr)).await;
    batched.sub("full.#").await;

    let body = "y".repeat(postmesh_schema::protocol::DEFAULT_MAX_MESSAGE_BYTES - 100);
    let n = config.max_body_bytes / (body.len() + 64);
    assert!(n >= 7, "a batch of {n} large messages");
    let messages: Vec<Value> = (0..n)
        .map(|i| json!({"path": format!("full.{i}"), "body": body}))
        .collect();
    let request = json!({ "messages": messages });
    assert!(serde_json::to_vec(&request).unwrap().len() <= config.max_body_bytes);
    let (s, b) = mesh.post("/v1/publish", &request, None).await;
    assert_eq!(s, 200, "{b}");
    for device in [&mut live, &mut batched] {
        let got = device.msgs(n).await;
        let paths: Vec<_> = got
            .iter()
            .map(|m| m["path"].as_str().unwrap().to_owned())
            .collect();
        let expect: Vec<_> = (0..n).map(|i| format!("full.{i}")).collect();
        assert_eq!(paths, expect);
    }
}
