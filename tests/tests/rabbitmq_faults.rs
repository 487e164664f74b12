//! Faults with a real broker: each test has a node of its own to break.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use postmesh_tests::Mesh;
use postmesh_tests::rabbit::Rabbit;
use serde_json::{Value, json};

/// The broker is killed and restarted in the middle of a stream. Publishers
/// resend what was not acknowledged ("if in doubt: resend"); the gateway
/// keeps its devices connected, rebinds, and has them reread. Every
/// acknowledged message reaches the device exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_mid_stream_loses_nothing() {
    let node = tokio::task::spawn_blocking(|| Rabbit::start("restart").expect("broker"))
        .await
        .unwrap();
    let mesh = Mesh::start_with(|c| c.amqp = Some(node.amqp_url.clone())).await;
    let mut device = mesh.ws().await;
    device.sub("stream.#").await;
    let mut other = mesh.ws().await;
    other.sub("stream.1").await;

    let total = 300usize;
    let url = mesh.url();
    let publisher = tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let mut acked = Vec::with_capacity(total);
        let mut resends = 0;
        for i in 0..total {
            let uuid = postmesh_schema::message::new_v1().to_string();
            let body = json!({"path": format!("stream.{}", i % 3), "uuid": uuid, "body": i});
            loop {
                match client
                    .post(format!("{url}/v1/publish"))
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => break,
                    _ => {
                        resends += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            acked.push((uuid, i % 3));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (acked, resends)
    });

    tokio::time::sleep(Duration::from_millis(700)).await;
    let node = tokio::task::spawn_blocking(move || {
        node.kill();
        std::thread::sleep(Duration::from_millis(500));
        node.restart().expect("broker restarts");
        node
    })
    .await
    .unwrap();
    let (acked, resends) = publisher.await.unwrap();
    assert!(resends > 0, "the outage was felt by the publisher");

    for (client, filter) in [(&mut device, None), (&mut other, Some(1))] {
        let want: HashSet<&String> = acked
            .iter()
            .filter(|(_, k)| filter.is_none_or(|f| f == *k))
            .map(|(u, _)| u)
            .collect();
        let mut seen: HashSet<String> = HashSet::new();
        let mut rereads = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !want.iter().all(|u| seen.contains(*u)) {
            assert!(
                Instant::now() < deadline,
                "missing {} of {}",
                want.len() - seen.len(),
                want.len()
            );
            let Some(f) = client.next_within(Duration::from_secs(30)).await else {
                continue;
            };
            match f["op"].as_str() {
                Some("msg") => {
                    let u = f["uuid"].as_str().unwrap().to_owned();
                    assert!(
                        want.contains(&u),
                        "a message this device did not subscribe to: {f}"
                    );
                    assert!(seen.insert(u), "duplicate delivery {f}");
                }
                Some("reread") => rereads += 1,
                _ => {}
            }
        }
        assert_eq!(seen.len(), want.len());
        // The `reread` frame follows the replayed messages: when the last
        // missing message came in the replay, the frame is still on its way.
        if rereads == 0 {
            client.expect("reread", None).await;
        }
        client.quiet(Duration::from_millis(500)).await;
    }
    let _: Value = json!(null);
    mesh.stop().await;
    node.kill();
}
