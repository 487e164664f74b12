//! The mesh as separate processes on one RabbitMQ broker: two cores and two
//! gateways, as an operator runs them.

use std::time::{Duration, Instant};

use postmesh_tests::{Process, rabbit, token};
use serde_json::{Value, json};

const SECRET: &str = "processes-secret";

async fn post(url: &str, body: &Value, t: &str) -> Value {
    let res = reqwest::Client::new()
        .post(format!("{url}/v1/publish"))
        .bearer_auth(t)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_and_two_cores_on_one_broker() {
    let node = rabbit::shared();
    let amqp = node.amqp_url.as_str();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let core = |dir: &tempfile::TempDir, name: &'static str| {
        let dir = dir.path().to_str().unwrap().to_owned();
        async move {
            Process::start(
                &["core", "--amqp", amqp, "--data", &dir],
                &[("POSTMESH_NODE__INSTANCE", name)],
            )
            .await
        }
    };
    let gateway = |name: &'static str| async move {
        Process::start(
            &[
                "gateway",
                "--amqp",
                amqp,
                "--listen",
                "127.0.0.1:0",
                "--secret",
                SECRET,
            ],
            &[("POSTMESH_NODE__INSTANCE", name)],
        )
        .await
    };
    let _c1 = core(&d1, "core1").await;
    let _c2 = core(&d2, "core2").await;
    let a = gateway("gwa").await;
    let b = gateway("gwb").await;

    let admin = token(SECRET, None, &["#"], &["#"]);
    // A device on gateway A receives what an HTTP publish to gateway B sent.
    let mut device = a.ws(Some(&admin)).await;
    device.sub("feeds.#").await;
    let published = post(
        &b.http(),
        &json!({"path": "feeds.breaking-news.56", "body": "via B"}),
        &admin,
    )
    .await;
    let m = device.msg().await;
    assert_eq!(m["uuid"], published["uuid"]);
    assert_eq!(m["body"], "via B");

    // History over RPC, from either gateway (either core may answer; cores
    // replicate to each other, so poll briefly for the replica).
    for gw in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let res: Value = reqwest::Client::new()
                .get(format!("{}/v1/history?pattern=feeds.%23", gw.http()))
                .bearer_auth(&admin)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if res["messages"][0]["uuid"] == published["uuid"] {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "history never showed the message: {res}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let r = device
        .request(json!({"op": "history", "pattern": "feeds.breaking-news.#"}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");

    // Dismiss on one gateway reaches the user's device on the other.
    let user = token(SECRET, Some(4242), &["alerts.#"], &[]);
    let mut phone = a.ws(Some(&user)).await;
    phone.expect("synced", None).await;
    let mut laptop = b.ws(Some(&user)).await;
    laptop.expect("synced", None).await;
    let alert = post(&a.http(), &json!({"path": "alerts.1", "body": "x"}), &admin).await;
    let r = phone
        .request(json!({"op": "dismiss", "uuid": alert["uuid"]}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    let d = laptop.expect("dismissed", None).await;
    assert_eq!(d["uuid"], alert["uuid"]);
}
