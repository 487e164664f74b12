//! A small run of every scenario against a real `postmesh up`, so the
//! harness cannot rot. Figures from it mean nothing; `bench/run.sh` measures.

use std::sync::Arc;
use std::time::Duration;

use postmesh_bench::peer::{Peer, Postmesh};
use postmesh_bench::scenario::{FanoutOptions, fanout, idle};
use postmesh_tests::Mesh;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_and_idle_smoke() {
    let mesh = Mesh::start().await;
    let peer: Arc<dyn Peer> = Arc::new(Postmesh {
        url: format!("ws://{}/ws", mesh.addr),
        class: "silver".into(),
    });
    let o = FanoutOptions {
        subscribers: 100,
        messages: 10,
        size: 256,
        rate: None,
        publishers: 2,
        idle: Duration::from_secs(10),
    };
    let r = fanout(peer.clone(), &o, Some(std::process::id()))
        .await
        .unwrap();
    assert_eq!(r.deliveries, 1000, "{r:?}");
    assert_eq!(r.refused, 0);
    assert!(r.deliveries_per_s > 0.0 && r.p99_us >= r.p50_us && r.max_us >= r.p99_us);
    let line = postmesh_bench::report::fanout_row(&r);
    assert!(line.starts_with("| postmesh | 100 | 10 | 256 |"), "{line}");

    let paced = FanoutOptions {
        rate: Some(200.0),
        ..o
    };
    let r = fanout(peer.clone(), &paced, None).await.unwrap();
    assert_eq!(r.deliveries, 1000);
    assert!(
        r.elapsed_s >= 0.04,
        "10 messages at 200/s take at least 45 ms: {r:?}"
    );

    let r = idle(peer, 100, std::process::id()).await.unwrap();
    assert_eq!(r.connections, 100);
    assert!(r.server_rss_after_kib > 0);
}
