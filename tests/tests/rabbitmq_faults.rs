//! Faults with a real broker: each test has a node of its own to break.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use postmesh_router::amqp::{AmqpPostoffice, OPERATION_TIMEOUT};
use postmesh_router::postoffice::{Exchange, Outgoing, Postoffice, Properties, QueueSpec};
use postmesh_tests::Mesh;
use postmesh_tests::rabbit::Rabbit;
use serde_json::json;

/// How long a publisher resends one message before the test says the mesh
/// stopped accepting: far more than a broker's restart takes.
const ACCEPT_WITHIN: Duration = Duration::from_secs(120);

/// What happens to the broker mid-stream.
#[derive(Clone, Copy)]
enum Outage {
    /// `kill -9`, then a restart on the same data.
    Crash,
    /// `SIGSTOP` for longer than a broker operation may take, then
    /// `SIGCONT`: sockets stay open and nothing answers.
    Freeze,
}

/// The broker is killed and restarted in the middle of a stream. Publishers
/// resend what was not acknowledged ("if in doubt: resend"); the gateway
/// keeps its devices connected, rebinds, and has them reread. Every
/// acknowledged message reaches the device exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_mid_stream_loses_nothing() {
    outage_mid_stream_loses_nothing("restart", Outage::Crash).await;
}

/// The broker stops answering without closing a socket. Operations on it
/// fail within their bound instead of holding the mesh; once it answers
/// again, every acknowledged message reaches the device exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_frozen_mid_stream_loses_nothing() {
    outage_mid_stream_loses_nothing("freeze", Outage::Freeze).await;
}

async fn outage_mid_stream_loses_nothing(name: &'static str, outage: Outage) {
    let node = tokio::task::spawn_blocking(move || Rabbit::start(name).expect("broker"))
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
            let since = Instant::now();
            loop {
                assert!(
                    since.elapsed() < ACCEPT_WITHIN,
                    "message {i} not accepted within {ACCEPT_WITHIN:?}: the mesh stopped accepting"
                );
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
        match outage {
            Outage::Crash => {
                node.kill();
                std::thread::sleep(Duration::from_millis(500));
                node.restart().expect("broker restarts");
            }
            Outage::Freeze => {
                node.freeze();
                std::thread::sleep(OPERATION_TIMEOUT + Duration::from_secs(3));
                node.thaw();
            }
        }
        node
    })
    .await
    .unwrap();
    let (acked, resends) = publisher.await.unwrap();
    assert!(resends > 0, "the outage was felt by the publisher");

    let published: HashSet<&String> = acked.iter().map(|(u, _)| u).collect();
    for (name, client, filter) in [
        ("stream.#", &mut device, None),
        ("stream.1", &mut other, Some(1)),
    ] {
        let want: HashSet<&String> = acked
            .iter()
            .filter(|(_, k)| filter.is_none_or(|f| f == *k))
            .map(|(u, _)| u)
            .collect();
        let mut seen: HashSet<String> = HashSet::new();
        let mut rereads = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !want.iter().all(|u| seen.contains(*u)) {
            if Instant::now() >= deadline {
                let missing: Vec<usize> = acked
                    .iter()
                    .enumerate()
                    .filter(|(_, (u, _))| want.contains(u) && !seen.contains(u))
                    .map(|(i, _)| i)
                    .collect();
                panic!(
                    "{name}: missing {} of {} (messages {missing:?}, after {rereads} rereads)",
                    want.len() - seen.len(),
                    want.len()
                );
            }
            let Some(f) = client.next_within(Duration::from_secs(30)).await else {
                continue;
            };
            match f["op"].as_str() {
                Some("msg") => {
                    let u = f["uuid"].as_str().unwrap().to_owned();
                    assert!(
                        want.contains(&u),
                        "{name}: a message this device did not subscribe to \
                         (published by this test: {}; after {} messages, {rereads} rereads): {f}",
                        published.contains(&u),
                        seen.len()
                    );
                    assert!(seen.insert(u), "{name}: duplicate delivery {f}");
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
    mesh.stop().await;
    node.kill();
}

/// On a frozen broker a publish fails within [`OPERATION_TIMEOUT`] (it
/// would otherwise wait for ever, and every publish after it behind the
/// connection's lock); once the broker answers again, the postoffice
/// reconnects and delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_on_a_frozen_broker_fail_in_bounded_time() {
    let node = tokio::task::spawn_blocking(|| Rabbit::start("frozen").expect("broker"))
        .await
        .unwrap();
    let po = AmqpPostoffice::connect(&node.amqp_url)
        .await
        .expect("connects");
    let message = |n: u32| Outgoing {
        routing_key: format!("frozen.{n}"),
        payload: bytes::Bytes::from(n.to_string()),
        props: Properties::default(),
    };
    po.publish(Exchange::Paths, message(0))
        .await
        .expect("a live broker confirms");

    node.freeze();
    let started = Instant::now();
    let outcome = tokio::time::timeout(
        OPERATION_TIMEOUT * 3,
        po.publish(Exchange::Paths, message(1)),
    )
    .await;
    let waited = started.elapsed();
    // Six callers at once while it stays frozen: each waits for the one
    // attempt to connect in progress, not for one attempt per caller
    // before it (which would take six times the bound for the last).
    let started_all = Instant::now();
    let all = futures_util::future::join_all((10..16).map(|n| {
        tokio::time::timeout(
            OPERATION_TIMEOUT * 4,
            po.publish(Exchange::Paths, message(n)),
        )
    }))
    .await;
    let waited_all = started_all.elapsed();
    node.thaw();
    for r in &all {
        assert!(
            matches!(r, Ok(Err(e)) if e.is_retryable()),
            "each caller gets a retryable error in time: {all:?}"
        );
    }
    assert!(
        waited_all < OPERATION_TIMEOUT * 2 + Duration::from_secs(5),
        "six callers took {waited_all:?}"
    );
    let outcome = outcome.expect("a publish to a frozen broker returns");
    assert!(
        outcome.as_ref().is_err_and(|e| e.is_retryable()),
        "a retryable error, got {outcome:?}"
    );
    assert!(
        waited < OPERATION_TIMEOUT + Duration::from_secs(5),
        "failed after {waited:?}"
    );

    // Answering again: the next operations reconnect and work.
    let spec = QueueSpec::transient("after-freeze");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut consumer = loop {
        let opened = async {
            po.declare_queue(&spec).await?;
            po.bind(Exchange::Paths, &spec.name, "frozen.#").await?;
            po.consume(&spec.name, 8).await
        };
        match opened.await {
            Ok(c) => break c,
            Err(e) => {
                assert!(Instant::now() < deadline, "no recovery: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    po.publish(Exchange::Paths, message(2))
        .await
        .expect("confirmed after the thaw");
    let d = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("delivered")
        .expect("a delivery");
    assert_eq!(d.payload, "2");
    d.ack().await.unwrap();
    po.close().await;
    node.kill();
}
