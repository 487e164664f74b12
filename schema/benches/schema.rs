//! Benchmarks for `postmesh-schema`: parsing, trie matching at a million
//! bindings (base62-split vs unsplit id paths), and frame encoding.
//!
//! Run with `cargo bench -p postmesh-schema`. The trie build time and the
//! resident memory each 1M-binding trie adds are printed once to stderr.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use postmesh_schema::idpath::split_id;
use postmesh_schema::path::Limits;
use postmesh_schema::protocol;
use postmesh_schema::{Body, Class, Message, Path, Pattern, Trie};
use serde_json::value::RawValue;

/// First id of the million bound in each trie.
const FIRST_ID: u64 = 10_000_000;
/// Number of id bindings per trie.
const IDS: u64 = 1_000_000;

fn path_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("path_parse");
    let short = "feeds.breaking-news.56";
    let deep = (0..32)
        .map(|i| format!("e{i}"))
        .collect::<Vec<_>>()
        .join(".");
    assert!(Path::parse(&deep).is_ok());
    g.bench_function("path_3_elements", |b| {
        b.iter(|| Path::parse(black_box(short)))
    });
    g.bench_function("path_32_elements", |b| {
        b.iter(|| Path::parse(black_box(&deep)))
    });
    g.bench_function("pattern_feeds.*.#", |b| {
        b.iter(|| Pattern::parse(black_box("feeds.*.#")))
    });
    g.finish();
}

/// Resident set size of this process in KiB, from /proc/self/status.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The ~100 wildcard bindings shared by both tries: per-user device
/// subscriptions `id.*.<id>` (id spelled by `id_elem`), feed folders, feed
/// leaves across topics and alerts by region.
fn wildcard_patterns(id_elem: impl Fn(u64) -> String) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..50 {
        out.push(format!("id.*.{}", id_elem(FIRST_ID + i * 20_000)));
    }
    for i in 0..30 {
        out.push(format!("feeds.topic-{i}.#"));
    }
    out.push("feeds.#".to_owned());
    for i in 0..9 {
        out.push(format!("feeds.*.{i}"));
    }
    for i in 0..10 {
        out.push(format!("alerts.#.region-{i}"));
    }
    out
}

/// Builds a trie with one binding per id, `id.prefs.<id_elem(n)>`, plus the
/// wildcard patterns, and reports how long that took and how much resident
/// memory it added.
fn build_trie(name: &str, id_elem: impl Fn(u64) -> String) -> Trie<u32> {
    let rss_before = rss_kib();
    let start = Instant::now();
    let mut trie = Trie::new();
    for n in FIRST_ID..FIRST_ID + IDS {
        trie.insert(&format!("id.prefs.{}", id_elem(n)), (n - FIRST_ID) as u32);
    }
    let wildcards = wildcard_patterns(&id_elem);
    for (i, p) in wildcards.iter().enumerate() {
        trie.insert(p, IDS as u32 + i as u32);
    }
    let took = start.elapsed();
    let rss_after = rss_kib();
    let added = match (rss_before, rss_after) {
        (Some(b), Some(a)) => format!(
            "{:.1} MiB (VmRSS {b} kB -> {a} kB)",
            a.saturating_sub(b) as f64 / 1024.0
        ),
        _ => "unknown (no /proc/self/status)".to_owned(),
    };
    eprintln!(
        "trie {name}: {} bindings ({} patterns) built in {:.3} s, resident memory added {added}",
        IDS as usize + wildcards.len(),
        trie.pattern_count(),
        took.as_secs_f64(),
    );
    trie
}

fn trie_match(c: &mut Criterion) {
    // Built once, outside the timed loops.
    let split = build_trie("split (id.prefs.<base62 elements>)", split_id);
    let unsplit = build_trie("unsplit (id.prefs.<decimal>)", |n| n.to_string());

    // A hit: the user's own binding plus its `id.*.<id>` device subscription.
    let hit_id = FIRST_ID + 25 * 20_000;
    // A near miss: outside the bound range but sharing the leading base62
    // digits of its top end, so the split walk goes deep before failing.
    let miss_id = FIRST_ID + IDS + 100;
    let cases = [
        (
            "split_hit",
            &split,
            format!("id.prefs.{}", split_id(hit_id)),
            2,
        ),
        (
            "split_miss",
            &split,
            format!("id.prefs.{}", split_id(miss_id)),
            0,
        ),
        ("unsplit_hit", &unsplit, format!("id.prefs.{hit_id}"), 2),
        ("unsplit_miss", &unsplit, format!("id.prefs.{miss_id}"), 0),
    ];

    let mut g = c.benchmark_group("trie_match");
    for (name, trie, key, want) in &cases {
        assert_eq!(trie.matches(key).len(), *want, "{name} {key}");
        g.bench_function(*name, |b| b.iter(|| trie.matches(black_box(key)).len()));
    }
    g.finish();
}

/// Patterns with `k` `#` and a literal that never comes, against a 32-word
/// key: the shape that made matching combinatorial before the trie kept a
/// set of states. Beside them, an ordinary `feeds.#` for scale.
fn trie_match_adversarial(c: &mut Criterion) {
    let key = std::iter::once("feeds")
        .chain(std::iter::repeat_n("a", 31))
        .collect::<Vec<_>>()
        .join(".");
    let mut g = c.benchmark_group("trie_match_adversarial");
    for k in [0usize, 2, 4, 8, 10, 30] {
        let pattern = if k == 0 {
            "feeds.#".to_owned()
        } else {
            format!("feeds.{}.nomatch", vec!["#"; k].join("."))
        };
        let mut trie: Trie<u32> = Trie::new();
        trie.insert(&pattern, 1);
        let want = usize::from(k == 0);
        assert_eq!(trie.matches(&key).len(), want, "{pattern}");
        g.bench_function(format!("hashes_{k}_key_32_words"), |b| {
            b.iter(|| trie.matches(black_box(&key)).len())
        });
    }
    g.finish();
}

/// A JSON body of exactly `len` bytes.
fn json_body(len: usize) -> Box<RawValue> {
    let head = r#"{"headline":"Breaking news","text":""#;
    let tail = r#""}"#;
    let text = format!("{head}{}{tail}", "x".repeat(len - head.len() - tail.len()));
    assert_eq!(text.len(), len);
    RawValue::from_string(text).expect("valid JSON")
}

fn frame_encode(c: &mut Criterion) {
    let body = json_body(256);
    let mut m = Message::new(
        Path::parse("feeds.breaking-news.56").unwrap(),
        Body::Json(body.clone()),
    );
    m.class = Class::Gold;
    m.meta.insert("source".into(), "wire".into());
    let pub_frame = format!(
        r#"{{"op":"pub","id":42,"path":"feeds.breaking-news.56","class":"gold","meta":{{"source":"wire"}},"body":{}}}"#,
        body.get()
    );
    let limits = Limits::default();
    assert!(matches!(
        protocol::parse_client_frame(&pub_frame, &limits),
        Ok(protocol::ClientFrame::Pub { id: 42, .. })
    ));

    let mut g = c.benchmark_group("frame_encode");
    g.bench_function("msg_frame_256B_json", |b| {
        b.iter(|| protocol::msg_frame(black_box(&m)))
    });
    g.bench_function("message_to_json_256B_json", |b| {
        b.iter(|| black_box(&m).to_json())
    });
    g.bench_function("parse_client_frame_pub_256B_json", |b| {
        b.iter(|| protocol::parse_client_frame(black_box(&pub_frame), &limits))
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = path_parse, trie_match, trie_match_adversarial, frame_encode
}
criterion_main!(benches);
