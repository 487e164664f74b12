//! Store benchmarks: the same code on every [`Store`] implementation, the
//! embedded fjall store in this process and the CQL store on a Cassandra
//! node, through the trait alone (`put`, `history`).
//!
//! - [`ingest`]: single-message puts with a number in flight; a message
//!   counts once its `put` returned `Ok` (persisted and acknowledged).
//! - [`load`]: fills a store with depth-3 messages
//!   (`feeds.cat<0..20>.<0..5000>`), in batches, as fast as it takes them.
//! - [`history`]: one pattern queried again and again; latency per query.
//! - [`amplification`]: puts messages of one path depth into a fresh store,
//!   then counts the rows each table holds (and, for the embedded store,
//!   their bytes and the bytes on disk after a flush).
//!
//! A Cassandra node's CPU and memory come from `/proc` (`--server-pid`),
//! sampled during each phase.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::StreamExt as _;
use futures_util::stream;
use hdrhistogram::Histogram;
use postmesh_core::store::cql::{self, CqlOptions, CqlStore};
use postmesh_core::store::embedded::{EmbeddedOptions, EmbeddedStore};
use postmesh_core::store::{HistoryQuery, Store};
use postmesh_schema::{Body, Message, Path, Pattern};
use serde::Serialize;

use crate::proc;

/// Which store, and where.
#[derive(Debug, Clone)]
pub enum Target {
    /// `embedded:DIR`: the fjall store in this process.
    Embedded(PathBuf),
    /// `cql://HOST:PORT[,HOST:PORT]/KEYSPACE`: the CQL store.
    Cql {
        hosts: Vec<String>,
        keyspace: String,
    },
}

impl Target {
    pub fn parse(s: &str) -> anyhow::Result<Target> {
        if let Some(dir) = s.strip_prefix("embedded:") {
            return Ok(Target::Embedded(PathBuf::from(dir)));
        }
        if let Some(rest) = s.strip_prefix("cql://") {
            let (hosts, keyspace) = rest
                .split_once('/')
                .context("cql://HOST:PORT/KEYSPACE: the keyspace is missing")?;
            return Ok(Target::Cql {
                hosts: hosts.split(',').map(str::to_owned).collect(),
                keyspace: keyspace.to_owned(),
            });
        }
        bail!("expected embedded:DIR or cql://HOST:PORT/KEYSPACE, not {s:?}")
    }

    /// `embedded` or `cassandra`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Embedded(_) => "embedded",
            Target::Cql { .. } => "cassandra",
        }
    }
}

/// Opens the store; with `fresh`, on an empty directory or keyspace
/// (a CQL keyspace is dropped and made again with replication factor 1).
pub async fn open(t: &Target, fresh: bool) -> anyhow::Result<Arc<dyn Store>> {
    match t {
        Target::Embedded(dir) => {
            if fresh && dir.exists() {
                std::fs::remove_dir_all(dir)
                    .with_context(|| format!("removing {}", dir.display()))?;
            }
            // The defaults `postmesh up` runs with: fsync per commit group.
            let s = EmbeddedStore::open(dir, EmbeddedOptions::default())?;
            Ok(Arc::new(s))
        }
        Target::Cql { hosts, keyspace } => {
            let session = cql::connect(hosts).await?;
            if fresh {
                session
                    .query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), ())
                    .await?;
                session.await_schema_agreement().await?;
                cql::schema::apply(
                    &session,
                    keyspace,
                    "{'class': 'SimpleStrategy', 'replication_factor': 1}",
                )
                .await?;
            }
            let s = CqlStore::with_session(
                session,
                CqlOptions {
                    hosts: hosts.clone(),
                    keyspace: keyspace.clone(),
                    ..CqlOptions::default()
                },
            )
            .await?;
            Ok(Arc::new(s))
        }
    }
}

/// The path of message `i` at `depth` (1..=5): `feeds`, `cat<i % 20>`,
/// `<i / 20 % 5000>`, `x<i % 7>`, `y<i % 3>`, the first `depth` of them.
/// Depth 3 is the history benchmark's `feeds.cat<0..20>.<0..5000>`.
pub fn path(i: u64, depth: usize) -> Path {
    let elems = [
        "feeds".to_owned(),
        format!("cat{}", i % 20),
        format!("{}", i / 20 % 5000),
        format!("x{}", i % 7),
        format!("y{}", i % 3),
    ];
    Path::parse(&elems[..depth.clamp(1, 5)].join(".")).expect("a valid path")
}

/// A message of about 300 bytes of JSON (a 180-byte headline).
pub fn message(i: u64, depth: usize) -> Message {
    let body = Body::json(&serde_json::json!({"headline": "x".repeat(180)}));
    Message::new(path(i, depth), body)
}

/// Peak resident memory of a process, sampled every 100 ms until stopped.
struct PeakRss {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PeakRss {
    fn start(pid: Option<u32>) -> PeakRss {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                if let Some(x) = proc::sample(pid) {
                    p.fetch_max(x.rss_kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        PeakRss { stop, peak, task }
    }

    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.peak.load(Ordering::Relaxed)
    }
}

/// CPU and memory of the server (a Cassandra node) and of this process
/// (which is the embedded store) during one phase.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Resources {
    pub server_cpu_s: Option<f64>,
    pub server_rss_peak_kib: Option<u64>,
    pub harness_cpu_s: Option<f64>,
    pub harness_rss_peak_kib: u64,
}

struct Meter {
    usage: proc::Usage,
    server: Option<PeakRss>,
    harness: PeakRss,
}

impl Meter {
    fn start(server: Option<u32>) -> Meter {
        Meter {
            usage: proc::Usage::start(server),
            server: server.map(|p| PeakRss::start(Some(p))),
            harness: PeakRss::start(None),
        }
    }

    async fn finish(self) -> Resources {
        let f = self.usage.finish();
        let server_rss_peak_kib = match self.server {
            Some(s) => Some(s.finish().await),
            None => None,
        };
        Resources {
            server_cpu_s: f.server_cpu_s,
            server_rss_peak_kib,
            harness_cpu_s: f.harness_cpu_s,
            harness_rss_peak_kib: self.harness.finish().await,
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

/// Latency percentiles, µs.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

fn latency(h: &Histogram<u64>) -> Latency {
    Latency {
        p50_us: h.value_at_quantile(0.50),
        p90_us: h.value_at_quantile(0.90),
        p99_us: h.value_at_quantile(0.99),
        max_us: h.max(),
    }
}

/// One ingest or load run.
#[derive(Debug, Clone, Serialize)]
pub struct WriteResult {
    pub store: String,
    pub phase: &'static str,
    pub messages: u64,
    pub depth: usize,
    pub batch: usize,
    pub in_flight: usize,
    pub seconds: f64,
    pub messages_per_s: f64,
    /// Per `put` call, from the call to its `Ok`.
    pub put_latency: Latency,
    pub message_bytes: usize,
    #[serde(flatten)]
    pub resources: Resources,
}

/// What one write phase puts.
#[derive(Debug, Clone, Copy)]
struct Writes {
    phase: &'static str,
    messages: u64,
    depth: usize,
    /// Messages per `put`.
    batch: usize,
    /// `put` calls at a time.
    in_flight: usize,
}

/// Puts `w.messages` messages of `w.depth`, `w.batch` per put,
/// `w.in_flight` puts at a time. Every put must succeed (a failed one is
/// retried once it says it may be, up to 100 times); the clock stops at the
/// last `Ok`.
async fn write(
    store: Arc<dyn Store>,
    t: &Target,
    w: Writes,
    server_pid: Option<u32>,
) -> anyhow::Result<WriteResult> {
    let Writes {
        phase,
        messages,
        depth,
        batch,
        in_flight,
    } = w;
    let batch = batch.max(1);
    let puts = messages.div_ceil(batch as u64);
    let meter = Meter::start(server_pid);
    let started = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let progress = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                let n = done.load(Ordering::Relaxed);
                eprintln!(
                    "  {phase}: {n} of {messages} after {:.0} s ({:.0} msg/s in the last 30 s)",
                    started.elapsed().as_secs_f64(),
                    (n - last) as f64 / 30.0
                );
                last = n;
            }
        })
    };
    let mut lat = histogram();
    let mut results = stream::iter(0..puts)
        .map(|p| {
            let store = store.clone();
            let done = done.clone();
            async move {
                let first = p * batch as u64;
                let last = (first + batch as u64).min(messages);
                let msgs: Vec<Message> = (first..last).map(|i| message(i, depth)).collect();
                let t0 = Instant::now();
                let mut tries = 0;
                loop {
                    match store.put(msgs.clone()).await {
                        Ok(_) => break,
                        Err(e) if e.is_retryable() && tries < 100 => {
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => return Err(anyhow::Error::from(e)),
                    }
                }
                done.fetch_add(last - first, Ordering::Relaxed);
                Ok::<_, anyhow::Error>(t0.elapsed())
            }
        })
        .buffer_unordered(in_flight.max(1));
    while let Some(r) = results.next().await {
        lat.record(r?.as_micros().max(1) as u64)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    progress.abort();
    Ok(WriteResult {
        store: t.kind().into(),
        phase,
        messages,
        depth,
        batch,
        in_flight,
        seconds,
        messages_per_s: messages as f64 / seconds,
        put_latency: latency(&lat),
        message_bytes: message(0, depth).to_json().len(),
        resources: meter.finish().await,
    })
}

/// Single-message puts, `in_flight` at a time, into a fresh store.
pub async fn ingest(
    t: &Target,
    messages: u64,
    depth: usize,
    in_flight: usize,
    server_pid: Option<u32>,
) -> anyhow::Result<WriteResult> {
    let store = open(t, true).await?;
    let w = Writes {
        phase: "ingest",
        messages,
        depth,
        batch: 1,
        in_flight,
    };
    let r = write(store.clone(), t, w, server_pid).await;
    store.close().await;
    r
}

/// Fills a fresh store with depth-3 messages, `batch` per put.
pub async fn load(
    t: &Target,
    messages: u64,
    batch: usize,
    in_flight: usize,
    server_pid: Option<u32>,
) -> anyhow::Result<WriteResult> {
    let store = open(t, true).await?;
    let w = Writes {
        phase: "load",
        messages,
        depth: 3,
        batch,
        in_flight,
    };
    let r = write(store.clone(), t, w, server_pid).await;
    store.close().await;
    r
}

/// One history run.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryResult {
    pub store: String,
    pub phase: &'static str,
    pub pattern: String,
    pub limit: usize,
    pub queries: u64,
    pub in_flight: usize,
    pub seconds: f64,
    pub queries_per_s: f64,
    #[serde(flatten)]
    pub latency: Latency,
    /// Messages the first page held (the limit, when the store is loaded).
    pub page_len: usize,
    #[serde(flatten)]
    pub resources: Resources,
}

/// `queries` history queries of `pattern` (after `warmup` unrecorded
/// ones), `in_flight` at a time, on the store as it is.
pub async fn history(
    t: &Target,
    pattern: &str,
    limit: usize,
    queries: u64,
    warmup: u64,
    in_flight: usize,
    server_pid: Option<u32>,
) -> anyhow::Result<HistoryResult> {
    let store = open(t, false).await?;
    let pattern_p = Pattern::parse(pattern)?;
    let q = || HistoryQuery {
        pattern: pattern_p.clone(),
        limit,
        before: None,
    };
    let page_len = store.history(q()).await?.messages.len();
    for _ in 0..warmup {
        store.history(q()).await?;
    }
    let meter = Meter::start(server_pid);
    let started = Instant::now();
    let mut lat = histogram();
    let mut results = stream::iter(0..queries)
        .map(|_| {
            let store = store.clone();
            let q = q();
            async move {
                let t0 = Instant::now();
                let page = store.history(q).await?;
                Ok::<_, anyhow::Error>((t0.elapsed(), page.messages.len()))
            }
        })
        .buffer_unordered(in_flight.max(1));
    while let Some(r) = results.next().await {
        let (d, n) = r?;
        if n != page_len {
            bail!("a page held {n} messages, the first {page_len}");
        }
        lat.record(d.as_micros().max(1) as u64)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let resources = meter.finish().await;
    store.close().await;
    Ok(HistoryResult {
        store: t.kind().into(),
        phase: "history",
        pattern: pattern.into(),
        limit,
        queries,
        in_flight,
        seconds,
        queries_per_s: queries as f64 / seconds,
        latency: latency(&lat),
        page_len,
        resources,
    })
}

/// What one table holds after an amplification run.
#[derive(Debug, Clone, Serialize)]
pub struct TableRows {
    pub table: String,
    pub rows: u64,
    /// Keys and values as stored, before compression (embedded only).
    pub logical_bytes: Option<u64>,
    /// On disk after a flush, journal excluded (embedded only; the CQL
    /// tables are measured on disk after the node has stopped).
    pub disk_bytes: Option<u64>,
}

/// One amplification run: rows per table for `messages` messages of one
/// depth.
#[derive(Debug, Clone, Serialize)]
pub struct AmplificationResult {
    pub store: String,
    pub phase: &'static str,
    /// The keyspace (CQL) or directory (embedded).
    pub location: String,
    pub depth: usize,
    pub messages: u64,
    pub message_bytes: usize,
    pub tables: Vec<TableRows>,
    pub rows_per_message: f64,
    pub write: WriteResult,
}

/// The CQL store's tables that a `put` writes.
const CQL_TABLES: &[&str] = &[
    "messages_by_id",
    "messages_by_folder",
    "folder_buckets",
    "children",
    "latest",
];

/// The embedded store's keyspaces that a `put` writes.
const EMBEDDED_TABLES: &[&str] = &["timeline", "ids", "names", "below", "exact"];

/// Puts `messages` messages of `depth` (one per put, `in_flight` at a
/// time) into a fresh store and counts what each table holds.
pub async fn amplification(
    t: &Target,
    depth: usize,
    messages: u64,
    in_flight: usize,
    server_pid: Option<u32>,
) -> anyhow::Result<AmplificationResult> {
    let store = open(t, true).await?;
    let writes = Writes {
        phase: "amplification",
        messages,
        depth,
        batch: 1,
        in_flight,
    };
    let w = write(store.clone(), t, writes, server_pid).await?;
    store.close().await;
    drop(store);
    let (location, tables) = match t {
        Target::Embedded(dir) => (dir.display().to_string(), embedded_rows(dir)?),
        Target::Cql { hosts, keyspace } => (keyspace.clone(), cql_rows(hosts, keyspace).await?),
    };
    let rows: u64 = tables.iter().map(|r| r.rows).sum();
    Ok(AmplificationResult {
        store: t.kind().into(),
        phase: "amplification",
        location,
        depth,
        messages,
        message_bytes: w.message_bytes,
        rows_per_message: rows as f64 / messages as f64,
        tables,
        write: w,
    })
}

/// Counts each table's rows with `SELECT COUNT(*)`.
async fn cql_rows(hosts: &[String], keyspace: &str) -> anyhow::Result<Vec<TableRows>> {
    let session = cql::connect(hosts).await?;
    let mut out = Vec::new();
    for table in CQL_TABLES {
        let mut st =
            scylla::statement::Statement::new(format!("SELECT COUNT(*) FROM {keyspace}.{table}"));
        st.set_request_timeout(Some(Duration::from_secs(120)));
        let rows = session
            .query_unpaged(st, ())
            .await
            .with_context(|| format!("counting {keyspace}.{table}"))?
            .into_rows_result()?;
        let (n,) = rows.first_row::<(i64,)>()?;
        out.push(TableRows {
            table: (*table).to_owned(),
            rows: n as u64,
            logical_bytes: None,
            disk_bytes: None,
        });
    }
    Ok(out)
}

/// Opens the closed store's directory with fjall itself, counts each
/// keyspace's rows and bytes, flushes its memtable and reads its size on
/// disk.
fn embedded_rows(dir: &FsPath) -> anyhow::Result<Vec<TableRows>> {
    let db = fjall::Database::builder(dir).open()?;
    let mut out = Vec::new();
    for table in EMBEDDED_TABLES {
        let ks = db.keyspace(table, fjall::KeyspaceCreateOptions::default)?;
        let (mut rows, mut bytes) = (0u64, 0u64);
        for kv in ks.iter() {
            let (k, v) = kv.into_inner()?;
            rows += 1;
            bytes += (k.len() + v.len()) as u64;
        }
        ks.rotate_memtable_and_wait()?;
        out.push(TableRows {
            table: (*table).to_owned(),
            rows,
            logical_bytes: Some(bytes),
            disk_bytes: Some(ks.disk_space()),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_by_depth() {
        assert_eq!(super::path(7, 1).as_str(), "feeds");
        assert_eq!(super::path(27, 3).as_str(), "feeds.cat7.1");
        assert_eq!(super::path(27, 5).as_str(), "feeds.cat7.1.x6.y0");
        assert!(super::Target::parse("cql://127.0.0.1:9042/ks").is_ok());
        assert!(super::Target::parse("embedded:/tmp/x").is_ok());
        assert!(super::Target::parse("/tmp/x").is_err());
    }
}
