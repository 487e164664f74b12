//! What browsers meet on a gateway, over real sockets: the live page at
//! `/` (and its former address `/live`, which redirects there), and the
//! `Origin` rule that `/ws` shares with `/sockjs`.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use postmesh_tests::{Client, Mesh};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A WebSocket handshake on `/ws` as a browser page at `origin` makes it;
/// the refusal's status and JSON body if the gateway refuses it.
async fn handshake(mesh: &Mesh, origin: &str) -> Result<Ws, (u16, Value)> {
    let mut req = format!("ws://{}/ws", mesh.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("origin", origin.parse().expect("a header value"));
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, res)) => {
            assert_eq!(res.status(), 101);
            Ok(ws)
        }
        Err(WsError::Http(res)) => {
            let body = res.body().clone().unwrap_or_default();
            Err((
                res.status().as_u16(),
                serde_json::from_slice(&body).expect("a JSON body"),
            ))
        }
        Err(e) => panic!("the handshake failed otherwise: {e}"),
    }
}

/// A request and its answer over an established connection.
async fn ping(ws: &mut Ws) {
    ws.send(Message::text(r#"{"op":"ping","id":1}"#))
        .await
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a reply in time")
        .expect("open")
        .expect("a frame");
    let reply: Value = serde_json::from_str(reply.to_text().unwrap()).unwrap();
    assert_eq!(reply, json!({"op":"ok","id":1,"pong":true}));
}

#[tokio::test]
async fn the_live_page_is_at_the_root_and_its_old_address_redirects() {
    let mesh = Mesh::start().await;
    let r = http().get(mesh.url() + "/").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let page = r.text().await.unwrap();
    assert!(page.contains("<title>postmesh live</title>"), "{page}");
    assert!(page.contains(r#"<script src="/postmesh.js"></script>"#));

    let r = http()
        .get(mesh.url() + "/postmesh.js")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(r.text().await.unwrap().contains("PostmeshClient"));

    for (old, new) in [
        ("/live", "/"),
        (
            "/live?transport=xhr-polling&pattern=feeds.%23",
            "/?transport=xhr-polling&pattern=feeds.%23",
        ),
        ("/live/postmesh.js", "/postmesh.js"),
    ] {
        let r = http().get(mesh.url() + old).send().await.unwrap();
        assert_eq!(r.status(), 308, "{old}");
        assert_eq!(r.headers()["location"], new, "{old}");
    }
    mesh.stop().await;
}

#[tokio::test]
async fn ws_refuses_another_sites_page_and_serves_its_own_and_non_browsers() {
    let mesh = Mesh::start().await;
    let (status, body) = handshake(&mesh, "https://elsewhere.example")
        .await
        .map(|_| ())
        .expect_err("another site's page is refused");
    assert_eq!(status, 403);
    assert_eq!(body["code"], "forbidden");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("https://elsewhere.example") && message.contains("gateway.origins"),
        "the refusal says what to change: {message}"
    );
    // A page served by the gateway itself (the live page).
    let mut own = handshake(&mesh, &mesh.url())
        .await
        .expect("the gateway's own page");
    ping(&mut own).await;
    // No `Origin` at all: not a browser.
    let mut device = Client::connect(&format!("ws://{}/ws", mesh.addr)).await;
    let reply = device.request(json!({"op":"ping"})).await;
    assert_eq!(reply["pong"], true);
    let (_, health) = mesh.get("/healthz", None).await;
    assert_eq!(health["connections"], 2, "the refused one never connected");
    mesh.stop().await;
}

#[tokio::test]
async fn listed_origins_are_the_rule_of_ws_and_sockjs_alike() {
    let mesh = Mesh::start_with(|c| c.gateway.origins = vec!["https://app.example".into()]).await;
    let mut listed = handshake(&mesh, "https://app.example")
        .await
        .expect("a listed origin");
    ping(&mut listed).await;
    // The list is the whole rule: the gateway's own origin is not on it.
    let (status, _) = handshake(&mesh, &mesh.url())
        .await
        .map(|_| ())
        .expect_err("not listed");
    assert_eq!(status, 403);
    // The same configuration guards SockJS.
    for (origin, want) in [("https://app.example", 200), ("https://other.example", 403)] {
        let r = http()
            .post(format!("{}/sockjs/000/o{want}/xhr", mesh.url()))
            .header("Origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want, "{origin}");
    }
    mesh.stop().await;

    let any = Mesh::start_with(|c| c.gateway.origins = vec!["*".into()]).await;
    let mut ws = handshake(&any, "https://anyone.example")
        .await
        .expect("any origin");
    ping(&mut ws).await;
    any.stop().await;
}
