//! The mesh as separate processes on one RabbitMQ broker: two cores and two
//! gateways, as an operator runs them. Each test uses a region and a
//! product of its own, so that the cores of one test never answer another's
//! requests nor receive its replicas (replicas go to every region's cores).

use std::time::{Duration, Instant};

use postmesh_tests::{Process, rabbit, token};
use serde_json::{Value, json};

const SECRET: &str = "processes-secret";

/// `postmesh core` in `region` with a data directory of its own.
async fn core(amqp: &str, dir: &tempfile::TempDir, region: &str, instance: &str) -> Process {
    Process::start(
        &[
            "core",
            "--amqp",
            amqp,
            "--data",
            dir.path().to_str().unwrap(),
        ],
        &[
            ("POSTMESH_NODE__REGION", region),
            ("POSTMESH_NODE__PRODUCT", region),
            ("POSTMESH_NODE__INSTANCE", instance),
        ],
    )
    .await
}

/// `postmesh gateway` in `region` on a free port, with `extra` flags.
async fn gateway(amqp: &str, region: &str, instance: &str, extra: &[&str]) -> Process {
    let mut args = vec!["gateway", "--amqp", amqp, "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    Process::start(
        &args,
        &[
            ("POSTMESH_NODE__REGION", region),
            ("POSTMESH_NODE__PRODUCT", region),
            ("POSTMESH_NODE__INSTANCE", instance),
        ],
    )
    .await
}

async fn post(url: &str, body: &Value, t: &str) -> Value {
    let mut req = reqwest::Client::new().post(format!("{url}/v1/publish"));
    if !t.is_empty() {
        req = req.bearer_auth(t);
    }
    let res = req.json(body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_and_two_cores_on_one_broker() {
    let node = rabbit::shared();
    let amqp = node.amqp_url.as_str();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let _c1 = core(amqp, &d1, "twobytwo", "core1").await;
    let _c2 = core(amqp, &d2, "twobytwo", "core2").await;
    let a = gateway(amqp, "twobytwo", "gwa", &["--secret", SECRET]).await;
    let b = gateway(amqp, "twobytwo", "gwb", &["--secret", SECRET]).await;

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
            let res = gw.get("/v1/history?pattern=feeds.%23", Some(&admin)).await;
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

/// Gold: kill -9 one core while 10 000 gold messages are published. Every
/// message is stored (the surviving core has all of them) and every
/// subscribed device receives each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gold_survives_a_core_killed_mid_stream() {
    let node = rabbit::shared();
    let amqp = node.amqp_url.as_str();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut c1 = core(amqp, &d1, "goldland", "gold1").await;
    let _c2 = core(amqp, &d2, "goldland", "gold2").await;
    let gw = gateway(amqp, "goldland", "goldgw", &[]).await;
    let mut devices = vec![gw.ws(None).await, gw.ws(None).await];
    for d in &mut devices {
        d.sub("gold.#").await;
    }
    let total = 10_000usize;
    let batch = 100usize;
    let url = gw.http();
    let publisher = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut uuids = Vec::with_capacity(total);
        for b in 0..total / batch {
            let messages: Vec<Value> = (0..batch)
                .map(|i| json!({"path": format!("gold.{}", i % 10), "class": "gold", "body": b * batch + i,
                                 "uuid": postmesh_schema::message::new_v1().to_string()}))
                .collect();
            postmesh_tests::publish_until_accepted(&client, &url, &messages).await;
            uuids.extend(
                messages
                    .iter()
                    .map(|m| m["uuid"].as_str().unwrap().to_owned()),
            );
        }
        uuids
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!publisher.is_finished(), "the core dies mid-stream");
    c1.kill().await;
    let sent = publisher.await.unwrap();
    assert_eq!(sent.len(), total);
    let want: std::collections::HashSet<&String> = sent.iter().collect();

    for d in &mut devices {
        d.receive_each_once(&want).await;
    }

    // Every message is stored: page through the surviving core's history.
    let stored = gw.history_uuids("gold.%23").await;
    assert_eq!(
        stored.len(),
        total,
        "the surviving core stored every gold message"
    );
    assert!(sent.iter().all(|u| stored.contains(u)));
}

/// Bronze is queueable: a publish is accepted once the broker holds it
/// durably, even with no core running, and is stored and delivered when a
/// core comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bronze_waits_for_a_core() {
    let node = rabbit::shared();
    let amqp = node.amqp_url.as_str();
    let gw = gateway(amqp, "bronzeland", "bgw", &[]).await;
    let mut device = gw.ws(None).await;
    device.sub("slow.#").await;
    let res = reqwest::Client::new()
        .post(format!("{}/v1/publish", gw.http()))
        .json(&json!({"path": "slow.1", "class": "bronze", "body": "later"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "accepted with no core running");
    let uuid = res.json::<Value>().await.unwrap()["uuid"]
        .as_str()
        .unwrap()
        .to_owned();
    device.quiet(Duration::from_millis(500)).await;

    let dir = tempfile::tempdir().unwrap();
    let _core = core(amqp, &dir, "bronzeland", "bcore").await;
    let m = device.msg().await;
    assert_eq!(m["uuid"], uuid);
    assert_eq!(m["class"], "bronze");
    let page = gw.get("/v1/history?pattern=slow.%23", None).await;
    assert_eq!(page["messages"][0]["uuid"], uuid.as_str());
}

/// Under load, silver work overtakes bronze: with a backlog of bronze
/// publishes waiting for a core, silver publishes made when the core starts
/// are delivered long before the backlog is through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silver_overtakes_a_bronze_backlog() {
    let node = rabbit::shared();
    let amqp = node.amqp_url.as_str();
    let gw = gateway(amqp, "backlog", "blgw", &[]).await;
    let mut device = gw.ws(None).await;
    device.sub("work.#").await;
    // One request per message, so that the backlog is 2000 requests deep.
    let backlog = 2000usize;
    let senders: Vec<_> = (0..16)
        .map(|k| {
            let url = gw.http();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for i in (k..backlog).step_by(16) {
                    let res = client
                        .post(format!("{url}/v1/publish"))
                        .json(&json!({"path": "work.bronze", "class": "bronze", "body": i}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(res.status(), 200);
                }
            })
        })
        .collect();
    for s in senders {
        s.await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let _core = core(amqp, &dir, "backlog", "blcore").await;
    let silver = 20usize;
    let url = gw.http();
    tokio::spawn(async move {
        for i in 0..silver {
            let res = reqwest::Client::new()
                .post(format!("{url}/v1/publish"))
                .json(&json!({"path": "work.silver", "body": i}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
        }
    });
    let (mut bronze_seen, mut silver_seen) = (0usize, 0usize);
    let mut bronze_when_silver_done = None;
    while bronze_seen < backlog || silver_seen < silver {
        let m = device.msg().await;
        match m["path"].as_str() {
            Some("work.bronze") => bronze_seen += 1,
            Some("work.silver") => {
                silver_seen += 1;
                if silver_seen == silver {
                    bronze_when_silver_done = Some(bronze_seen);
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let at = bronze_when_silver_done.expect("every silver message arrived");
    eprintln!("all {silver} silver messages arrived after {at} of {backlog} bronze ones");
    assert!(
        at < backlog / 2,
        "all {silver} silver messages arrived after {at} of {backlog} bronze ones"
    );
}

/// `postmesh core` or `gateway` with explicit region, product and instance.
async fn node(
    args: &[&str],
    region: &str,
    product: &str,
    instance: &str,
    extra_env: &[(&str, &str)],
) -> Process {
    let mut envs = vec![
        ("POSTMESH_NODE__REGION", region),
        ("POSTMESH_NODE__PRODUCT", product),
        ("POSTMESH_NODE__INSTANCE", instance),
    ];
    envs.extend_from_slice(extra_env);
    Process::start(args, &envs).await
}

/// Polls `history` of `pattern` on `gw` until it shows `uuid`.
async fn history_shows(gw: &Process, pattern: &str, uuid: &Value) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let res = gw
            .get(&format!("/v1/history?pattern={pattern}"), None)
            .await;
        if res["messages"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| &m["uuid"] == uuid))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "history never showed {uuid}: {res}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// RPC addresses a region: cores bind on the destination, so a gateway in
/// one region is answered by the cores of the region it names (or of any
/// region, with `-`), and by its own region's by default. Replicas go to
/// the cores of every region. Before, cores bound on the *sender's* region
/// and a request addressed to another region reached no one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_reach_the_cores_of_the_region_they_name() {
    let amqp = rabbit::shared().amqp_url.as_str();
    let product = "rpcx";
    let (de, dw) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let core_args = |dir: &tempfile::TempDir| {
        vec![
            "core".to_owned(),
            "--amqp".to_owned(),
            amqp.to_owned(),
            "--data".to_owned(),
            dir.path().to_str().unwrap().to_owned(),
        ]
    };
    let gw_args = ["gateway", "--amqp", amqp, "--listen", "127.0.0.1:0"];
    // Only east has a core.
    let ea = core_args(&de);
    let ea: Vec<&str> = ea.iter().map(String::as_str).collect();
    let _east = node(&ea, "rpcx-east", product, "core-e", &[]).await;
    let to_east = node(
        &gw_args,
        "rpcx-west",
        product,
        "gw-e",
        &[("POSTMESH_GATEWAY__CORE_REGION", "rpcx-east")],
    )
    .await;
    let to_any = node(
        &gw_args,
        "rpcx-west",
        product,
        "gw-any",
        &[("POSTMESH_GATEWAY__CORE_REGION", "-")],
    )
    .await;
    let local = node(&gw_args, "rpcx-west", product, "gw-w", &[]).await;

    // West's gateway that names east is served by east's core: publish
    // and history.
    let first = post(&to_east.http(), &json!({"path": "rpcx.a", "body": 1}), "").await;
    history_shows(&to_east, "rpcx.%23", &first["uuid"]).await;
    // Any region: east's core answers.
    let second = post(&to_any.http(), &json!({"path": "rpcx.b", "body": 2}), "").await;
    history_shows(&to_any, "rpcx.%23", &second["uuid"]).await;

    // West's own core starts: the default gateway is served by it, and it
    // receives east's replicas of what is published from now on.
    let wa = core_args(&dw);
    let wa: Vec<&str> = wa.iter().map(String::as_str).collect();
    let _west = node(&wa, "rpcx-west", product, "core-w", &[]).await;
    let third = post(&to_east.http(), &json!({"path": "rpcx.c", "body": 3}), "").await;
    history_shows(&local, "rpcx.%23", &third["uuid"]).await;
    let fourth = post(&local.http(), &json!({"path": "rpcx.d", "body": 4}), "").await;
    history_shows(&to_east, "rpcx.%23", &fourth["uuid"]).await;
    // A message published before west's core started was stored in east
    // only: west's gateway does not see it, east's does.
    let res = local.get("/v1/history?pattern=rpcx.a", None).await;
    assert_eq!(res["messages"], json!([]), "{res}");
}
