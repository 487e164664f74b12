//! A small run of every scenario against a real `postmesh up`, so the
//! harness cannot rot. Figures from it mean nothing; `bench/run.sh` measures.

use std::sync::Arc;
use std::time::Duration;

use postmesh_bench::peer::{Peer, Postmesh};
use postmesh_bench::scenario::{FanoutOptions, churn, fanout, history, http_ingest, idle, ingest};
use postmesh_tests::Mesh;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_smoke() {
    let mesh = Mesh::start().await;
    let peer: Arc<dyn Peer> = Arc::new(Postmesh::new(format!("ws://{}/ws", mesh.addr)));
    let o = FanoutOptions {
        subscribers: 100,
        messages: 10,
        size: 256,
        rate: None,
        publishers: 2,
        idle: Duration::from_secs(10),
        memory: true,
        settle: Duration::ZERO,
    };
    let r = fanout(peer.clone(), None, &o, Some(std::process::id()))
        .await
        .unwrap();
    let m = r.memory.expect("memory followed");
    assert!(
        m.server_rss_base_kib > 0 && m.server_rss_peak_kib >= m.server_rss_after_burst_kib,
        "{m:?}"
    );
    assert_eq!(r.deliveries, 1000, "{r:?}");
    assert_eq!(r.refused, 0);
    assert!(r.deliveries_per_s > 0.0 && r.p99_us >= r.p50_us && r.max_us >= r.p99_us);
    // The report reads these keys at the top level of each JSON line.
    let json = serde_json::to_value(&r).unwrap();
    assert!(
        json["server_cpu_s"].is_number()
            && json["harness_cpu_s"].is_number()
            && json["server_rss_peak_kib"].is_number(),
        "{json}"
    );
    let line = postmesh_bench::report::fanout_row(&r);
    assert!(line.starts_with("| postmesh | 100 | 10 | 256 |"), "{line}");

    // Paced, with the publishers on a connection of their own peer (as
    // another region's gateway would be).
    let paced = FanoutOptions {
        rate: Some(200.0),
        memory: false,
        settle: Duration::from_millis(50),
        ..o
    };
    let publish_to: Arc<dyn Peer> = Arc::new(Postmesh::new(format!("ws://{}/ws", mesh.addr)));
    let r = fanout(peer.clone(), Some(publish_to), &paced, None)
        .await
        .unwrap();
    assert_eq!(r.deliveries, 1000);
    assert!(
        r.elapsed_s >= 0.04,
        "10 messages at 200/s take at least 45 ms: {r:?}"
    );

    let r = idle(peer.clone(), 100, 0, std::process::id())
        .await
        .unwrap();
    assert_eq!(r.connections, 100);
    assert!(r.server_rss_after_kib > 0);

    let r = churn(peer.clone(), 2, Duration::from_millis(300), None)
        .await
        .unwrap();
    assert!(r.cycles > 0 && r.failures == 0, "{r:?}");

    let r = ingest(peer.clone(), 100, 2, 64, None).await.unwrap();
    assert_eq!((r.messages, r.refused), (100, 0), "{r:?}");

    let base = format!("http://{}", mesh.addr);
    let r = http_ingest("postmesh", &base, 400, 50, 2, 64, None)
        .await
        .unwrap();
    assert_eq!((r.messages, r.refused), (400, 0), "{r:?}");

    let url = format!("ws://{}/ws", mesh.addr);
    let r = history(
        "postmesh",
        &url,
        "feeds.cat7.#",
        50,
        2,
        Duration::from_millis(300),
        None,
    )
    .await
    .unwrap();
    assert!(r.queries > 0 && r.errors == 0, "{r:?}");
}

/// Every store phase on the embedded store (`bench/store.sh` runs them on
/// Cassandra too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_store_phase_smoke() {
    use postmesh_bench::store::{Target, amplification, history, ingest, load};

    let dir = tempfile::tempdir().unwrap();
    let t = Target::parse(&format!("embedded:{}", dir.path().join("s").display())).unwrap();

    let r = ingest(&t, 300, 3, 16, None).await.unwrap();
    assert_eq!((r.messages, r.depth, r.batch), (300, 3, 1));
    assert!(r.messages_per_s > 0.0);

    let r = load(&t, 2000, 100, 4, None).await.unwrap();
    assert_eq!(r.messages, 2000);
    // 2000 messages over 20 categories: 100 under feeds.cat7.
    let h = history(&t, "feeds.cat7.#", 50, 20, 2, 2, None)
        .await
        .unwrap();
    assert_eq!(h.page_len, 50);
    assert!(h.latency.p99_us >= h.latency.p50_us);

    // Depth 1: the record, its ids row and its exact row per message, and
    // one names row for `feeds`.
    let a = amplification(&t, 1, 200, 16, None).await.unwrap();
    let rows = |name: &str| a.tables.iter().find(|r| r.table == name).unwrap().rows;
    assert_eq!(
        (rows("timeline"), rows("ids"), rows("exact"), rows("below")),
        (200, 200, 200, 0)
    );
    assert_eq!(rows("names"), 1);
    // Depth 3: two `below` rows per message (feeds, feeds.catN).
    let a = amplification(&t, 3, 200, 16, None).await.unwrap();
    let below = a.tables.iter().find(|r| r.table == "below").unwrap();
    assert_eq!(below.rows, 400);
    assert!(a.tables.iter().all(|r| r.disk_bytes.is_some()));
}

/// The SockJS xhr-streaming subscribers: every message arrives, across the
/// receiving requests the gateway ends at `response_limit` (500 messages
/// of 256 B are more than its 128 KiB), and sessions end when their
/// subscribers leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockjs_xhr_streaming_smoke() {
    use postmesh_bench::peer::sockjs::SockjsXhrStreaming;
    let mesh = Mesh::start().await;
    let peer: Arc<dyn Peer> = Arc::new(SockjsXhrStreaming::new(
        format!("http://{}/sockjs", mesh.addr),
        Postmesh::new(format!("ws://{}/ws", mesh.addr)),
        "sockjs",
    ));
    let o = FanoutOptions {
        subscribers: 20,
        messages: 500,
        size: 256,
        rate: None,
        publishers: 2,
        idle: Duration::from_secs(10),
        memory: false,
        settle: Duration::ZERO,
    };
    let r = fanout(peer.clone(), None, &o, None).await.unwrap();
    assert_eq!(r.deliveries, 10_000, "{r:?}");
    assert_eq!(r.refused, 0);
    let r = idle(peer.clone(), 50, 0, std::process::id()).await.unwrap();
    assert_eq!(r.connections, 50);
    // Subscribers that left took their sessions with them.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, metrics) = mesh.get("/metrics", None).await;
        let metrics = metrics.as_str().unwrap_or_default().to_owned();
        if metrics.contains("postmesh_gateway_sockjs_sessions 0\n") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    mesh.stop().await;
}
