//! Cores and gateways as processes on one RabbitMQ broker (started by the
//! harness) sharing one keyspace on the real Cassandra node
//! (`POSTMESH_CQL`), a fresh keyspace for this test binary. Each test uses
//! a region and a product of its own (requests and replicas go by
//! address), and paths of its own in the shared keyspace.

use std::collections::HashSet;
use std::time::Duration;

use postmesh_tests::{Process, cql::Keyspace, rabbit};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

/// This binary's keyspace, created once.
async fn keyspace() -> &'static Keyspace {
    static KEYSPACE: OnceCell<Keyspace> = OnceCell::const_new();
    KEYSPACE.get_or_init(|| Keyspace::fresh("processes")).await
}

fn store_flag(ks: &Keyspace) -> String {
    format!("cql://{}/{}", ks.hosts.join(","), ks.name)
}

/// `postmesh core` on the keyspace, in `region` (also its product).
async fn core(amqp: &str, region: &str, instance: &str) -> Process {
    let ks = keyspace().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let store = store_flag(ks);
    let p = Process::start(
        &["core", "--amqp", amqp, "--data", &data, "--store", &store],
        &[
            ("POSTMESH_NODE__REGION", region),
            ("POSTMESH_NODE__PRODUCT", region),
            ("POSTMESH_NODE__INSTANCE", instance),
        ],
    )
    .await;
    // The data directory holds nothing the core needs once it runs on CQL.
    std::mem::forget(dir);
    p
}

async fn gateway(amqp: &str, region: &str, instance: &str) -> Process {
    Process::start(
        &["gateway", "--amqp", amqp, "--listen", "127.0.0.1:0"],
        &[
            ("POSTMESH_NODE__REGION", region),
            ("POSTMESH_NODE__PRODUCT", region),
            ("POSTMESH_NODE__INSTANCE", instance),
        ],
    )
    .await
}

async fn post(url: &str, body: &Value) -> Value {
    let res = reqwest::Client::new()
        .post(format!("{url}/v1/publish"))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// What one gateway publishes, the other reads at once: no replication
/// between the cores, whichever core answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cores_and_two_gateways_share_one_keyspace() {
    let amqp = rabbit::shared().amqp_url.as_str();
    let region = "cqlshare";
    let _c1 = core(amqp, region, "c1").await;
    let _c2 = core(amqp, region, "c2").await;
    let a = gateway(amqp, region, "gwa").await;
    let b = gateway(amqp, region, "gwb").await;
    let mut device = a.ws(None).await;
    device.sub("share.#").await;
    for (from, to) in [(&a, &b), (&b, &a), (&a, &a), (&b, &b)] {
        let published = post(&from.http(), &json!({"path": "share.news.1", "body": "x"})).await;
        assert_eq!(device.msg().await["uuid"], published["uuid"]);
        // Right away, several times, so that both cores answer some.
        for _ in 0..6 {
            let page = to.get("/v1/history?pattern=share.%23&limit=1", None).await;
            assert_eq!(page["messages"][0]["uuid"], published["uuid"], "{page}");
        }
    }
    device.quiet(Duration::from_millis(500)).await;
}

/// kill -9 one of two cores while publishes stream in: every message
/// acknowledged is stored and every subscribed device receives each once.
/// A third core started afterwards (the others gone) serves the whole
/// history at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_killed_mid_stream_loses_nothing_acknowledged() {
    let amqp = rabbit::shared().amqp_url.as_str();
    let region = "cqlkill";
    let mut c1 = core(amqp, region, "k1").await;
    let mut c2 = core(amqp, region, "k2").await;
    let gw = gateway(amqp, region, "kgw").await;
    let mut devices = vec![gw.ws(None).await, gw.ws(None).await];
    for d in &mut devices {
        d.sub("kill.#").await;
    }
    let total = 3000usize;
    let batch = 50usize;
    let url = gw.http();
    let publisher = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut acked = Vec::with_capacity(total);
        for b in 0..total / batch {
            let messages: Vec<Value> = (0..batch)
                .map(|i| {
                    json!({"path": format!("kill.{}.x", i % 10), "body": b * batch + i,
                                 "uuid": postmesh_schema::message::new_v1().to_string()})
                })
                .collect();
            postmesh_tests::publish_until_accepted(&client, &url, &messages).await;
            acked.extend(
                messages
                    .iter()
                    .map(|m| m["uuid"].as_str().unwrap().to_owned()),
            );
        }
        acked
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!publisher.is_finished(), "the core dies mid-stream");
    c1.kill().await;
    let acked = publisher.await.unwrap();
    assert_eq!(acked.len(), total);
    let want: HashSet<&String> = acked.iter().collect();
    for d in &mut devices {
        d.receive_each_once(&want).await;
    }

    // A third core, alone now: the whole history at once.
    let _c3 = core(amqp, region, "k3").await;
    c2.kill().await;
    let stored = gw.history_uuids("kill.%23").await;
    assert_eq!(stored.len(), total, "every acknowledged message is stored");
    assert!(acked.iter().all(|u| stored.contains(u)));
}
