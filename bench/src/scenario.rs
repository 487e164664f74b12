//! Scenarios: what a run does to a system.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::peer::{Peer, Publisher, now_nanos};
use crate::proc::{Figures, Usage, sample};

/// Connections opened at once while setting up.
const CONNECT_BATCH: usize = 200;

/// The fan-out scenario: `subscribers` devices on one pattern; publishers
/// send `messages` of `size` bytes as fast as possible, or at `rate`.
#[derive(Debug, Clone)]
pub struct FanoutOptions {
    pub subscribers: usize,
    pub messages: usize,
    pub size: usize,
    /// Messages per second over all publishers; `None`: as fast as possible.
    pub rate: Option<f64>,
    pub publishers: usize,
    /// A subscriber that receives nothing for this long stops counting.
    pub idle: Duration,
    /// Follow the server's memory through the burst ([`BurstMemory`]):
    /// subscribers stay connected until every one is done, then all leave.
    pub memory: bool,
    /// How long to wait between the last subscription and the first
    /// publish (a subscription on one region's gateway takes a moment to
    /// reach the brokers of other regions).
    pub settle: Duration,
}

/// The server's resident memory around a fan-out burst, in KiB: before the
/// subscribers connect, once they are connected, the highest reading
/// during the burst (sampled every 10 ms), one second after the last
/// delivery (the subscribers still connected), and one and five seconds
/// after every subscriber dropped its connection.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct BurstMemory {
    pub server_rss_base_kib: u64,
    pub server_rss_connected_kib: u64,
    pub server_rss_peak_kib: u64,
    pub server_rss_after_burst_kib: u64,
    pub server_rss_closed_1s_kib: u64,
    pub server_rss_closed_5s_kib: u64,
    /// Above the base, per subscriber, in bytes.
    pub idle_bytes_per_connection: f64,
    pub peak_bytes_per_connection: f64,
    pub after_burst_bytes_per_connection: f64,
}

impl BurstMemory {
    fn per_connection(&mut self, subscribers: usize) {
        let per = |kib: u64| {
            (kib.saturating_sub(self.server_rss_base_kib) * 1024) as f64 / subscribers.max(1) as f64
        };
        self.idle_bytes_per_connection = per(self.server_rss_connected_kib);
        self.peak_bytes_per_connection = per(self.server_rss_peak_kib);
        self.after_burst_bytes_per_connection = per(self.server_rss_after_burst_kib);
    }
}

/// The server's resident memory now, KiB (0 when unreadable).
fn rss_kib(server: u32) -> u64 {
    sample(Some(server)).map(|s| s.rss_kib).unwrap_or(0)
}

/// Samples the server's resident memory every 10 ms until dropped; `peak`
/// reads the highest so far.
struct PeakSampler {
    peak: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PeakSampler {
    fn start(server: u32) -> PeakSampler {
        let peak = Arc::new(std::sync::atomic::AtomicU64::new(rss_kib(server)));
        let p = peak.clone();
        let task = tokio::spawn(async move {
            loop {
                p.fetch_max(rss_kib(server), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        PeakSampler { peak, task }
    }

    fn peak(&self) -> u64 {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for PeakSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a fan-out run measured.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutResult {
    pub scenario: &'static str,
    pub system: String,
    pub subscribers: usize,
    pub messages: usize,
    pub size: usize,
    pub rate: Option<f64>,
    pub expected: u64,
    pub deliveries: u64,
    pub refused: u64,
    pub elapsed_s: f64,
    pub deliveries_per_s: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    #[serde(flatten)]
    pub usage: Figures,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub memory: Option<BurstMemory>,
}

/// Runs the fan-out scenario against `peer`; `server` is the server's pid
/// for CPU and memory figures.
/// Publishers connect to `publish_to` when it is given (another gateway of
/// the same system: another region's), else to `peer`.
pub async fn fanout(
    peer: Arc<dyn Peer>,
    publish_to: Option<Arc<dyn Peer>>,
    o: &FanoutOptions,
    server: Option<u32>,
) -> anyhow::Result<FanoutResult> {
    let watch = server.filter(|_| o.memory);
    let mut memory = watch.map(|pid| BurstMemory {
        server_rss_base_kib: rss_kib(pid),
        ..BurstMemory::default()
    });
    let mut subs = Vec::with_capacity(o.subscribers);
    while subs.len() < o.subscribers {
        let n = CONNECT_BATCH.min(o.subscribers - subs.len());
        let batch = futures_util::future::join_all((0..n).map(|_| peer.subscriber())).await;
        for s in batch {
            subs.push(s?);
        }
    }
    let pubs =
        open_publishers(publish_to.as_deref().unwrap_or(peer.as_ref()), o.publishers).await?;
    tokio::time::sleep(o.settle).await;
    if let (Some(m), Some(pid)) = (memory.as_mut(), watch) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        m.server_rss_connected_kib = rss_kib(pid);
    }
    let sampler = watch.map(PeakSampler::start);
    let keep = o.memory;
    let per_sub = o.messages as u64;
    let idle = o.idle;
    let readers: Vec<_> = subs
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let mut hist = histogram();
                let (mut count, mut last) = (0u64, 0u64);
                while count < per_sub {
                    match s.next(idle).await {
                        Ok(Some(sent)) => {
                            let now = now_nanos();
                            hist.saturating_record(now.saturating_sub(sent) / 1000);
                            count += 1;
                            last = now;
                        }
                        _ => break,
                    }
                }
                (count, hist, last, keep.then_some(s))
            })
        })
        .collect();

    let usage = Usage::start(server);
    let start = now_nanos();
    let started = Instant::now();
    let refused = publish(pubs, o.messages, o.size, o.rate, started).await?;
    let mut hist = histogram();
    let (mut deliveries, mut last) = (0u64, start);
    let mut kept = Vec::new();
    for r in readers {
        let (count, h, l, s) = r.await?;
        deliveries += count;
        last = last.max(l);
        hist.add(&h).expect("same bounds");
        kept.extend(s);
    }
    let elapsed_s = (last.saturating_sub(start)) as f64 / 1e9;
    let usage = usage.finish();
    if let (Some(m), Some(pid), Some(sampler)) = (memory.as_mut(), watch, sampler) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        m.server_rss_after_burst_kib = rss_kib(pid);
        m.server_rss_peak_kib = sampler.peak().max(m.server_rss_after_burst_kib);
        drop(sampler);
        // Every device leaves at once, as dead devices do (no close
        // handshake): the server learns it from the sockets.
        drop(kept);
        tokio::time::sleep(Duration::from_secs(1)).await;
        m.server_rss_closed_1s_kib = rss_kib(pid);
        tokio::time::sleep(Duration::from_secs(4)).await;
        m.server_rss_closed_5s_kib = rss_kib(pid);
        m.per_connection(o.subscribers);
    }
    Ok(FanoutResult {
        scenario: "fanout",
        system: peer.name().to_owned(),
        subscribers: o.subscribers,
        messages: o.messages,
        size: o.size,
        rate: o.rate,
        expected: o.subscribers as u64 * o.messages as u64,
        deliveries,
        refused,
        elapsed_s,
        deliveries_per_s: if elapsed_s > 0.0 {
            deliveries as f64 / elapsed_s
        } else {
            0.0
        },
        p50_us: hist.value_at_quantile(0.50),
        p90_us: hist.value_at_quantile(0.90),
        p99_us: hist.value_at_quantile(0.99),
        max_us: hist.max(),
        usage,
        memory,
    })
}

/// What an idle run measured.
#[derive(Debug, Clone, Serialize)]
pub struct IdleResult {
    pub scenario: &'static str,
    pub system: String,
    pub connections: usize,
    pub server_rss_before_kib: u64,
    pub server_rss_after_kib: u64,
    pub bytes_per_connection: f64,
}

/// Opens `connections` subscribed devices and reports the server's resident
/// memory per connection.
pub async fn idle(
    peer: Arc<dyn Peer>,
    connections: usize,
    settle_secs: u64,
    server: u32,
) -> anyhow::Result<IdleResult> {
    let before = sample(Some(server)).map(|s| s.rss_kib).unwrap_or(0);
    let mut held = Vec::with_capacity(connections);
    while held.len() < connections {
        let n = CONNECT_BATCH.min(connections - held.len());
        for s in futures_util::future::join_all((0..n).map(|_| peer.subscriber())).await {
            held.push(s?);
        }
    }
    // Idle devices still answer the protocol's pings, as real ones do.
    let readers: Vec<_> = held
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                while let Ok(Some(_)) = s.next(Duration::from_secs(3600)).await {}
            })
        })
        .collect();
    // Let the server settle (allocator, lazily grown buffers).
    tokio::time::sleep(Duration::from_secs(settle_secs)).await;
    let after = sample(Some(server)).map(|s| s.rss_kib).unwrap_or(0);
    for r in readers {
        r.abort();
    }
    Ok(IdleResult {
        scenario: "idle",
        system: peer.name().to_owned(),
        connections,
        server_rss_before_kib: before,
        server_rss_after_kib: after,
        bytes_per_connection: (after.saturating_sub(before) * 1024) as f64
            / connections.max(1) as f64,
    })
}

/// Latency histogram in microseconds, up to two minutes.
/// Opens `n` publisher connections (at least one).
async fn open_publishers(peer: &dyn Peer, n: usize) -> anyhow::Result<Vec<Box<dyn Publisher>>> {
    let mut pubs = Vec::with_capacity(n.max(1));
    for _ in 0..n.max(1) {
        pubs.push(peer.publisher().await?);
    }
    Ok(pubs)
}

/// The publishers send `messages` of `size` bytes in all, split evenly, as
/// fast as they can or at `rate` messages/s in all (paced from `started`),
/// then wait until the server has taken them. Returns how many it refused.
async fn publish(
    pubs: Vec<Box<dyn Publisher>>,
    messages: usize,
    size: usize,
    rate: Option<f64>,
    started: Instant,
) -> anyhow::Result<u64> {
    let n = pubs.len();
    let rate_each = rate.map(|r| r / n as f64);
    let senders: Vec<_> = pubs
        .into_iter()
        .enumerate()
        .map(|(i, mut p)| {
            let count = messages / n + usize::from(i < messages % n);
            tokio::spawn(async move {
                for k in 0..count {
                    if let Some(r) = rate_each {
                        let due = started + Duration::from_secs_f64(k as f64 / r);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    p.send(size).await?;
                }
                p.finish().await
            })
        })
        .collect();
    let mut refused = 0;
    for s in senders {
        refused += s.await??;
    }
    Ok(refused)
}

fn histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("bounds")
}

/// What a churn run measured.
#[derive(Debug, Clone, Serialize)]
pub struct ChurnResult {
    pub scenario: &'static str,
    pub system: String,
    pub workers: usize,
    pub duration_s: f64,
    /// Connect, subscribe and close cycles completed.
    pub cycles: u64,
    pub cycles_per_s: f64,
    pub failures: u64,
    /// Connect + subscribe time.
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    #[serde(flatten)]
    pub usage: Figures,
}

/// `workers` loops, each connecting a subscribed device and closing it
/// again, for `duration`: connects and disconnects per second.
pub async fn churn(
    peer: Arc<dyn Peer>,
    workers: usize,
    duration: Duration,
    server: Option<u32>,
) -> anyhow::Result<ChurnResult> {
    let usage = Usage::start(server);
    let started = Instant::now();
    let end = started + duration;
    let tasks: Vec<_> = (0..workers.max(1))
        .map(|_| {
            let peer = peer.clone();
            tokio::spawn(async move {
                let mut hist = histogram();
                let (mut cycles, mut failures) = (0u64, 0u64);
                while Instant::now() < end {
                    let t = Instant::now();
                    match peer.subscriber().await {
                        Ok(s) => {
                            hist.saturating_record(t.elapsed().as_micros() as u64);
                            match s.close().await {
                                Ok(()) => cycles += 1,
                                Err(_) => failures += 1,
                            }
                        }
                        Err(_) => {
                            failures += 1;
                            // Do not spin on a refusing server.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                (cycles, failures, hist)
            })
        })
        .collect();
    let mut hist = histogram();
    let (mut cycles, mut failures) = (0, 0);
    for t in tasks {
        let (c, f, h) = t.await?;
        cycles += c;
        failures += f;
        hist.add(&h).expect("same bounds");
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(ChurnResult {
        scenario: "churn",
        system: peer.name().to_owned(),
        workers,
        duration_s: elapsed,
        cycles,
        cycles_per_s: cycles as f64 / elapsed,
        failures,
        p50_us: hist.value_at_quantile(0.5),
        p99_us: hist.value_at_quantile(0.99),
        max_us: hist.max(),
        usage: usage.finish(),
    })
}

/// What an ingest run measured.
#[derive(Debug, Clone, Serialize)]
pub struct IngestResult {
    pub scenario: &'static str,
    pub system: String,
    /// How messages were sent: "websocket" (one per frame) or "http batch N".
    pub via: String,
    pub messages: u64,
    pub refused: u64,
    pub elapsed_s: f64,
    pub messages_per_s: f64,
    #[serde(flatten)]
    pub usage: Figures,
}

fn ingest_result(
    system: &str,
    via: String,
    messages: u64,
    refused: u64,
    started: Instant,
    usage: Usage,
) -> IngestResult {
    let elapsed_s = started.elapsed().as_secs_f64();
    IngestResult {
        scenario: "ingest",
        system: system.to_owned(),
        via,
        messages,
        refused,
        elapsed_s,
        messages_per_s: messages.saturating_sub(refused) as f64 / elapsed_s,
        usage: usage.finish(),
    }
}

/// `publishers` connections send `messages` in all, as fast as possible,
/// over the system's own WebSocket protocol, and wait until the server has
/// taken them all.
pub async fn ingest(
    peer: Arc<dyn Peer>,
    messages: usize,
    publishers: usize,
    size: usize,
    server: Option<u32>,
) -> anyhow::Result<IngestResult> {
    let pubs = open_publishers(peer.as_ref(), publishers).await?;
    let n = pubs.len();
    let usage = Usage::start(server);
    let started = Instant::now();
    let refused = publish(pubs, messages, size, None, started).await?;
    Ok(ingest_result(
        peer.name(),
        format!("websocket, {n} connections"),
        messages as u64,
        refused,
        started,
        usage,
    ))
}

/// The path of the `k`th message of the history store: 20 categories of
/// 5 000 items each, as in the store's criterion benchmark.
pub fn store_path(k: usize) -> String {
    format!("feeds.cat{}.{}", k % 20, k % 5000)
}

/// postmesh's HTTP batch publish: `concurrency` requests in flight, each
/// `POST /v1/publish` of `batch` messages to [`store_path`]s; every
/// answered request was persisted.
pub async fn http_ingest(
    system: &str,
    base: &str,
    messages: usize,
    batch: usize,
    concurrency: usize,
    size: usize,
    server: Option<u32>,
) -> anyhow::Result<IngestResult> {
    let client = reqwest::Client::new();
    let url = format!("{base}/v1/publish");
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let usage = Usage::start(server);
    let started = Instant::now();
    let batch = batch.max(1);
    let tasks: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (client, url, next) = (client.clone(), url.clone(), next.clone());
            tokio::spawn(async move {
                let mut refused = 0u64;
                loop {
                    let from = next.fetch_add(batch, std::sync::atomic::Ordering::Relaxed);
                    if from >= messages {
                        return Ok::<_, anyhow::Error>(refused);
                    }
                    let to = (from + batch).min(messages);
                    let mut req = String::with_capacity((to - from) * (size + 48) + 16);
                    req.push_str("{\"messages\":[");
                    for k in from..to {
                        if k > from {
                            req.push(',');
                        }
                        req.push_str(&format!(
                            "{{\"path\":\"{}\",\"body\":{}}}",
                            store_path(k),
                            crate::peer::body(size)
                        ));
                    }
                    req.push_str("]}");
                    let r = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(req)
                        .send()
                        .await?;
                    if !r.status().is_success() {
                        refused += (to - from) as u64;
                        let status = r.status();
                        let text = r.text().await.unwrap_or_default();
                        eprintln!("publish refused: {status} {text}");
                    }
                }
            })
        })
        .collect();
    let mut refused = 0;
    for t in tasks {
        refused += t.await??;
    }
    Ok(ingest_result(
        system,
        format!("HTTP, batches of {batch}, {concurrency} in flight"),
        messages as u64,
        refused,
        started,
        usage,
    ))
}

/// What a history run measured.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryResult {
    pub scenario: &'static str,
    pub system: String,
    pub pattern: String,
    pub limit: usize,
    pub connections: usize,
    pub queries: u64,
    pub errors: u64,
    pub queries_per_s: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    #[serde(flatten)]
    pub usage: Figures,
}

/// `connections` devices each ask postmesh for `history` of `pattern`
/// (`limit` messages), one query after another, for `duration`.
pub async fn history(
    system: &str,
    url: &str,
    pattern: &str,
    limit: usize,
    connections: usize,
    duration: Duration,
    server: Option<u32>,
) -> anyhow::Result<HistoryResult> {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut sockets = Vec::new();
    for _ in 0..connections.max(1) {
        sockets.push(crate::peer::connect(url, None).await?);
    }
    let usage = Usage::start(server);
    let started = Instant::now();
    let end = started + duration;
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            let pattern = pattern.to_owned();
            tokio::spawn(async move {
                let mut hist = histogram();
                let (mut queries, mut errors) = (0u64, 0u64);
                while Instant::now() < end {
                    let t = Instant::now();
                    let q = format!(
                        r#"{{"op":"history","id":{queries},"pattern":"{pattern}","limit":{limit}}}"#
                    );
                    ws.send(Message::text(q)).await?;
                    let answer = crate::peer::next_data(&mut ws, Duration::from_secs(30)).await?;
                    hist.saturating_record(t.elapsed().as_micros() as u64);
                    queries += 1;
                    let ok = matches!(&answer, Message::Text(a)
                        if a.starts_with("{\"op\":\"ok\"") && a.contains("\"messages\":[{"));
                    if !ok {
                        errors += 1;
                    }
                }
                Ok::<_, anyhow::Error>((queries, errors, hist))
            })
        })
        .collect();
    let mut hist = histogram();
    let (mut queries, mut errors) = (0, 0);
    for t in tasks {
        let (q, e, h) = t.await??;
        queries += q;
        errors += e;
        hist.add(&h).expect("same bounds");
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(HistoryResult {
        scenario: "history",
        system: system.to_owned(),
        pattern: pattern.to_owned(),
        limit,
        connections,
        queries,
        errors,
        queries_per_s: queries as f64 / elapsed,
        p50_us: hist.value_at_quantile(0.5),
        p90_us: hist.value_at_quantile(0.9),
        p99_us: hist.value_at_quantile(0.99),
        max_us: hist.max(),
        usage: usage.finish(),
    })
}
