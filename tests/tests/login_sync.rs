//! Login sync (the design's "subscribed using her ID"): a device that
//! authenticates as user N is subscribed to its id paths, receives its
//! stored preferences, and is subscribed to the patterns they name.

use std::time::Duration;

use postmesh_schema::idpath;
use postmesh_tests::{Mesh, token};
use serde_json::json;

const SECRET: &str = "sync-secret";
const USER: u64 = 9067832;

#[test]
fn the_design_example_splits_as_documented() {
    assert_eq!(idpath::split_id(USER), "c.2.x.M");
    assert_eq!(
        idpath::split_id_path("id.prefs.09067832").unwrap().as_str(),
        "id.prefs.c.2.x.M"
    );
}

#[tokio::test]
async fn login_sync_replays_preferences_and_subscribes_them() {
    let mesh = Mesh::start_with(|c| c.gateway.secret = Some(SECRET.into())).await;
    let admin = token(SECRET, None, &["#"], &["#"]);
    let prefs = json!({"path": "id.prefs.c.2.x.M", "body": {"subscribe": ["feeds.breaking-news.#", "forbidden.#", "bad..pattern"]}});
    let (s, b) = mesh.post("/v1/publish", &prefs, Some(&admin)).await;
    assert_eq!(s, 200, "{b}");
    let (_, b) = mesh
        .post(
            "/v1/publish",
            &json!({"path": "feeds.breaking-news.55", "body": "earlier"}),
            Some(&admin),
        )
        .await;
    let earlier = b["uuid"].as_str().unwrap().to_owned();
    mesh.post(
        "/v1/publish",
        &json!({"path": "id.inbox.c.2.x.M", "body": "hello"}),
        Some(&admin),
    )
    .await;
    // Someone else's inbox: never delivered.
    mesh.post(
        "/v1/publish",
        &json!({"path": "id.inbox.c.2.x.N", "body": "not yours"}),
        Some(&admin),
    )
    .await;

    let user = token(SECRET, Some(USER), &["feeds.#"], &[]);
    let started = std::time::Instant::now();
    let mut d = mesh.ws_token(&user).await;
    let synced = d.expect("synced", None).await;
    let took = started.elapsed();
    assert_eq!(synced["user"], USER.to_string());
    assert_eq!(synced["patterns"], json!(["feeds.breaking-news.#"]));
    let rejected: Vec<&str> = synced["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert_eq!(rejected, ["forbidden", "bad_pattern"]);
    // Replayed before `synced`: the stored preferences, the inbox, and the
    // latest message of the preference pattern.
    let mut paths = Vec::new();
    for _ in 0..3 {
        paths.push(d.msg().await["path"].as_str().unwrap().to_owned());
    }
    paths.sort();
    assert_eq!(
        paths,
        [
            "feeds.breaking-news.55",
            "id.inbox.c.2.x.M",
            "id.prefs.c.2.x.M"
        ]
    );
    eprintln!("login sync took {took:?}");

    // Live on both the id paths and the preference patterns.
    let (_, b) = mesh
        .post(
            "/v1/publish",
            &json!({"path": "feeds.breaking-news.56", "body": "live"}),
            Some(&admin),
        )
        .await;
    assert_eq!(d.msg().await["uuid"], b["uuid"]);
    assert_ne!(b["uuid"], earlier);
    mesh.post(
        "/v1/publish",
        &json!({"path": "id.inbox.c.2.x.M", "body": "again"}),
        Some(&admin),
    )
    .await;
    assert_eq!(d.msg().await["body"], "again");

    // Changing the preferences re-syncs every connected device.
    mesh.post(
        "/v1/publish",
        &json!({"path": "id.prefs.c.2.x.M", "body": {"subscribe": ["feeds.sports.#"]}}),
        Some(&admin),
    )
    .await;
    assert_eq!(d.msg().await["path"], "id.prefs.c.2.x.M");
    let synced = d.expect("synced", None).await;
    assert_eq!(synced["patterns"], json!(["feeds.sports.#"]));
    mesh.post(
        "/v1/publish",
        &json!({"path": "feeds.breaking-news.57"}),
        Some(&admin),
    )
    .await;
    mesh.post(
        "/v1/publish",
        &json!({"path": "feeds.sports.1", "body": "goal"}),
        Some(&admin),
    )
    .await;
    assert_eq!(
        d.msg().await["path"],
        "feeds.sports.1",
        "old preference dropped, new one live"
    );
    d.quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn login_sync_by_auth_frame_and_without_preferences() {
    let mesh = Mesh::start_with(|c| c.gateway.secret = Some(SECRET.into())).await;
    let mut d = mesh.ws().await;
    let user = token(SECRET, Some(7), &[], &[]);
    let r = d.request(json!({"op": "auth", "token": user})).await;
    assert_eq!(r["user"], "7");
    let synced = d.expect("synced", None).await;
    assert_eq!(synced["patterns"], json!([]));
    // Own paths are readable without any subs claim.
    let r = d
        .request(json!({"op": "history", "pattern": "id.*.7"}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    let e = d
        .request(json!({"op": "history", "pattern": "id.*.8"}))
        .await;
    assert_eq!(e["code"], "forbidden");
}
