//! The RabbitMQ postoffice against a real broker, started by the harness.

use postmesh_router::{
    AmqpPostoffice, Exchange, MemoryPostoffice, Outgoing, Postoffice, Properties, QueueSpec,
};
use postmesh_tests::rabbit;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_postoffice_keeps_the_postoffice_contract() {
    let node = rabbit::shared();
    let po = AmqpPostoffice::connect(&node.amqp_url)
        .await
        .expect("connects");
    postmesh_router::contract::run_all(&po, "contract").await;
    po.close().await;
}

/// On random (pattern, routing key) pairs, the embedded topic exchange and
/// RabbitMQ's route exactly the same: every pattern is a queue binding on
/// both, every key is published to both, and each queue's deliveries are
/// compared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_and_rabbitmq_topic_routing_agree() {
    let node = rabbit::shared();
    let amqp = AmqpPostoffice::connect(&node.amqp_url)
        .await
        .expect("connects");
    let memory = MemoryPostoffice::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    // Words include the empty word; patterns and keys up to 6 words, plus
    // a few deep ones.
    let words = ["a", "b", "c", ""];
    let mut patterns: Vec<String> = Vec::new();
    while patterns.len() < 100 {
        let len = rand(5) as usize;
        let p: Vec<&str> = (0..len)
            .map(|_| match rand(6) {
                0 => "*",
                1 => "#",
                _ => words[rand(words.len() as u64) as usize],
            })
            .collect();
        let p = p.join(".");
        if !patterns.contains(&p) {
            patterns.push(p);
        }
    }
    let mut keys: Vec<String> = Vec::new();
    while keys.len() < 100 {
        let len = if rand(10) == 0 {
            20 + rand(10) as usize
        } else {
            rand(7) as usize
        };
        let k: Vec<&str> = (0..len)
            .map(|_| words[rand(words.len() as u64) as usize])
            .collect();
        keys.push(k.join("."));
    }
    // 100 patterns x 100 keys = 10 000 (pattern, key) pairs.
    let run = format!("diff{}", std::process::id());
    let mut results = Vec::new();
    for po in [&amqp as &dyn Postoffice, &memory as &dyn Postoffice] {
        let mut consumers = Vec::new();
        for (i, p) in patterns.iter().enumerate() {
            let q = format!("{run}.{i}");
            po.declare_queue(&QueueSpec::transient(&q)).await.unwrap();
            po.bind(Exchange::Postoffice, &q, p).await.unwrap();
            consumers.push(po.consume(&q, 1000).await.unwrap());
        }
        for (j, k) in keys.iter().enumerate() {
            let out = Outgoing {
                routing_key: k.clone(),
                payload: bytes::Bytes::from(format!("{run}:{j}")),
                props: Properties::default(),
            };
            po.publish(Exchange::Postoffice, out).await.unwrap();
        }
        // A sentinel on every queue marks the end of its deliveries.
        let mut matched = vec![Vec::new(); patterns.len()];
        for (i, c) in consumers.iter_mut().enumerate() {
            let q = format!("{run}.{i}");
            po.unbind(Exchange::Postoffice, &q, &patterns[i])
                .await
                .unwrap();
            po.bind(Exchange::Postoffice, &q, &format!("{run}.end.{i}"))
                .await
                .unwrap();
            let end = Outgoing {
                routing_key: format!("{run}.end.{i}"),
                payload: bytes::Bytes::from(format!("{run}:end")),
                props: Properties::default(),
            };
            po.publish(Exchange::Postoffice, end).await.unwrap();
            loop {
                let d = tokio::time::timeout(std::time::Duration::from_secs(10), c.next())
                    .await
                    .expect("delivery")
                    .expect("consumer open");
                let body = String::from_utf8(d.payload.to_vec()).unwrap();
                d.ack().await.unwrap();
                // Other tests share the broker; their messages are not ours.
                let Some(ours) = body.strip_prefix(&format!("{run}:")) else {
                    continue;
                };
                // Every key was published before any sentinel, so the first
                // sentinel (ours or an earlier queue's) ends this queue's keys.
                if ours == "end" {
                    break;
                }
                matched[i].push(ours.parse::<usize>().unwrap());
            }
            po.delete_queue(&q).await.unwrap();
        }
        results.push(matched);
    }
    let (rabbit, embedded) = (&results[0], &results[1]);
    let mut pairs = 0;
    for (i, p) in patterns.iter().enumerate() {
        assert_eq!(rabbit[i], embedded[i], "pattern {p:?}: keys matched differ");
        for (j, k) in keys.iter().enumerate() {
            let hit = embedded[i].contains(&j);
            assert_eq!(
                hit,
                postmesh_schema::pattern::topic_match(p, k),
                "{p:?} vs {k:?}"
            );
            pairs += 1;
        }
    }
    assert_eq!(pairs, 10_000);
    amqp.close().await;
}

/// `postmesh up --amqp`: the whole mesh distributing through RabbitMQ. Two
/// meshes on one broker: a device on A receives what an HTTP publish to B
/// sent, because both bind their gateway queues on the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_meshes_on_one_broker_deliver_across() {
    let node = rabbit::shared();
    let a = postmesh_tests::Mesh::start_with(|c| c.amqp = Some(node.amqp_url.clone())).await;
    let b = postmesh_tests::Mesh::start_with(|c| {
        c.amqp = Some(node.amqp_url.clone());
        c.node.instance = "other".into();
    })
    .await;
    let mut device = a.ws().await;
    device.sub("feeds.across.#").await;
    let uuid = b
        .publish("feeds.across.56", serde_json::json!({"from": "b"}))
        .await;
    let m = device.msg().await;
    assert_eq!(m["uuid"], uuid);
    assert_eq!(m["body"]["from"], "b");
    // And locally on A, through the broker as well.
    let uuid = a.publish("feeds.across.57", serde_json::json!(1)).await;
    assert_eq!(device.msg().await["uuid"], uuid);
    device.quiet(std::time::Duration::from_millis(300)).await;
    a.stop().await;
    b.stop().await;
}

/// 10 000 devices on one gateway subscribing to 1 000 distinct patterns
/// make 1 000 broker bindings, not 10 000: the gateway binds the union of
/// its devices' patterns. Read back from the management API. The gateway is
/// a `postmesh up --amqp` process of its own, so the 10 000 server sockets
/// and the 10 000 client sockets are in two processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_binds_the_union_of_device_patterns() {
    rlimit::increase_nofile_limit(u64::MAX).unwrap();
    let node = rabbit::shared();
    let dir = tempfile::tempdir().unwrap();
    let mut up = postmesh_tests::Process::start(
        &[
            "up",
            "--listen",
            "127.0.0.1:0",
            "--amqp",
            &node.amqp_url,
            "--data",
            dir.path().to_str().unwrap(),
        ],
        &[("POSTMESH_NODE__INSTANCE", "bindings")],
    )
    .await;
    let ws_url = up.ws_url.clone().expect("postmesh up prints its URL");
    let queue = format!(
        "gateway.local.postmesh.gateway.bindings.{}",
        up.child.id().unwrap()
    );

    let devices = 10_000usize;
    let patterns = 1_000usize;
    let mut clients = Vec::with_capacity(devices);
    for chunk in (0..devices).collect::<Vec<_>>().chunks(500) {
        let opened = futures_util::future::join_all(chunk.iter().map(|i| {
            let url = ws_url.clone();
            async move {
                let mut c = postmesh_tests::Client::connect(&url).await;
                c.sub(&format!("union.{}.#", i % patterns)).await;
                c
            }
        }))
        .await;
        clients.extend(opened);
    }
    assert_eq!(clients.len(), devices);

    let bindings = async || -> usize {
        let url = format!(
            "{}/api/exchanges/%2F/postmesh.paths/bindings/source",
            node.mgmt_url
        );
        let all: Vec<serde_json::Value> = reqwest::Client::new()
            .get(url)
            .basic_auth("guest", Some("guest"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        all.iter()
            .filter(|b| b["destination"] == queue.as_str())
            .count()
    };
    assert_eq!(bindings().await, patterns);

    // A message reaches every device of its pattern, and only those.
    let (status, _) = {
        let http = up.http();
        let res = reqwest::Client::new()
            .post(format!("{http}/v1/publish"))
            .json(&serde_json::json!({"path": "union.7.x", "body": 1}))
            .send()
            .await
            .unwrap();
        (res.status(), ())
    };
    assert_eq!(status, 200);
    let mut received = 0;
    for (i, c) in clients
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| i % patterns == 7)
    {
        assert_eq!(c.msg().await["path"], "union.7.x", "device {i}");
        received += 1;
    }
    assert_eq!(received, devices / patterns);

    // When the last device of a pattern leaves, its binding goes.
    let leaving: Vec<usize> = (0..devices).filter(|i| i % patterns == 3).collect();
    for i in leaving.into_iter().rev() {
        clients.swap_remove(i).close().await;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while bindings().await != patterns - 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "binding of the departed pattern is still there"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    drop(clients);
    up.kill().await;
}
