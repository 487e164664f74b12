//! History and latest queries on a store holding many messages.
//!
//! `cargo bench -p postmesh-core --bench history` loads 1,000,000 messages
//! (set POSTMESH_BENCH_MESSAGES to change); under `cargo test` it runs each
//! benchmark once on 10,000 so the code cannot rot.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use postmesh_core::store::embedded::{EmbeddedOptions, EmbeddedStore};
use postmesh_core::store::{HistoryQuery, Store};
use postmesh_schema::{Body, Message, Path, Pattern, idpath};

fn messages() -> usize {
    if let Ok(n) = std::env::var("POSTMESH_BENCH_MESSAGES") {
        return n.parse().expect("POSTMESH_BENCH_MESSAGES is a number");
    }
    if std::env::args().any(|a| a == "--bench") {
        1_000_000
    } else {
        10_000
    }
}

fn load(store: &EmbeddedStore, rt: &tokio::runtime::Runtime, n: usize) {
    let body = Body::json(&serde_json::json!({"headline": "x".repeat(180)}));
    let started = Instant::now();
    let mut batch = Vec::with_capacity(1000);
    for i in 0..n {
        // 70% feeds in 20 categories x 5000 items, 30% user preference paths.
        let path = if i % 10 < 7 {
            format!("feeds.cat{}.{}", i % 20, (i / 20) % 5000)
        } else {
            format!(
                "id.prefs.{}",
                idpath::split_id(10_000_000 + (i as u64 % 100_000))
            )
        };
        batch.push(Message::new(Path::parse(&path).unwrap(), body.clone()));
        if batch.len() == 1000 {
            rt.block_on(store.put(std::mem::take(&mut batch))).unwrap();
        }
    }
    if !batch.is_empty() {
        rt.block_on(store.put(batch)).unwrap();
    }
    eprintln!(
        "loaded {n} messages in {:.1?} ({:.0} msg/s, {} MiB on disk)",
        started.elapsed(),
        n as f64 / started.elapsed().as_secs_f64(),
        store.disk_space() >> 20
    );
}

fn bench(c: &mut Criterion) {
    let n = messages();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(
        dir.path(),
        EmbeddedOptions {
            sync: false,
            ..EmbeddedOptions::default()
        },
    )
    .unwrap();
    load(&store, &rt, n);
    let history = |pattern: &str, limit: usize| HistoryQuery {
        pattern: Pattern::parse(pattern).unwrap(),
        limit,
        before: None,
    };
    let mut g = c.benchmark_group("history");
    g.sample_size(200);
    let user = format!("id.*.{}", idpath::split_id(10_000_042));
    for (name, pattern) in [
        ("trailing_hash_category", "feeds.cat7.#"),
        ("trailing_hash_item", "feeds.cat7.35.#"),
        ("trailing_hash_all_feeds", "feeds.#"),
        ("exact_path", "feeds.cat7.35"),
        ("star_in_middle", "feeds.*.35"),
        ("user_paths", user.as_str()),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| black_box(rt.block_on(store.history(history(pattern, 50))).unwrap()))
        });
    }
    g.finish();
    c.bench_function("latest/feeds_category_limit_50", |b| {
        b.iter(|| {
            black_box(
                rt.block_on(store.latest(Pattern::parse("feeds.cat7.*").unwrap(), 50))
                    .unwrap(),
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
