//! Scenarios: what a run does to a system.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::peer::{Peer, now_nanos};
use crate::proc::{Sample, sample};

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
    pub server_cpu_s: Option<f64>,
    pub harness_cpu_s: Option<f64>,
    pub server_rss_kib: Option<u64>,
}

fn cpu_between(a: Option<Sample>, b: Option<Sample>) -> Option<f64> {
    Some((b?.cpu.saturating_sub(a?.cpu)).as_secs_f64())
}

/// Runs the fan-out scenario against `peer`; `server` is the server's pid
/// for CPU and memory figures.
pub async fn fanout(
    peer: Arc<dyn Peer>,
    o: &FanoutOptions,
    server: Option<u32>,
) -> anyhow::Result<FanoutResult> {
    let mut subs = Vec::with_capacity(o.subscribers);
    while subs.len() < o.subscribers {
        let n = CONNECT_BATCH.min(o.subscribers - subs.len());
        let batch = futures_util::future::join_all((0..n).map(|_| peer.subscriber())).await;
        for s in batch {
            subs.push(s?);
        }
    }
    let mut pubs = Vec::with_capacity(o.publishers.max(1));
    for _ in 0..o.publishers.max(1) {
        pubs.push(peer.publisher().await?);
    }
    let per_sub = o.messages as u64;
    let idle = o.idle;
    let readers: Vec<_> = subs
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let mut hist =
                    Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("bounds");
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
                (count, hist, last)
            })
        })
        .collect();

    let (server_before, harness_before) = (server.and_then(|p| sample(Some(p))), sample(None));
    let start = now_nanos();
    let started = Instant::now();
    let per_pub = o.messages / pubs.len();
    let extra = o.messages % pubs.len();
    let rate_each = o.rate.map(|r| r / pubs.len() as f64);
    let size = o.size;
    let senders: Vec<_> = pubs
        .into_iter()
        .enumerate()
        .map(|(i, mut p)| {
            let n = per_pub + usize::from(i < extra);
            tokio::spawn(async move {
                for k in 0..n {
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
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("bounds");
    let (mut deliveries, mut last) = (0u64, start);
    for r in readers {
        let (count, h, l) = r.await?;
        deliveries += count;
        last = last.max(l);
        hist.add(&h).expect("same bounds");
    }
    let (server_after, harness_after) = (server.and_then(|p| sample(Some(p))), sample(None));
    let elapsed_s = (last.saturating_sub(start)) as f64 / 1e9;
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
        server_cpu_s: cpu_between(server_before, server_after),
        harness_cpu_s: cpu_between(harness_before, harness_after),
        server_rss_kib: server_after.map(|s| s.rss_kib),
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
    // Let the server settle (allocator, lazily grown buffers).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = sample(Some(server)).map(|s| s.rss_kib).unwrap_or(0);
    drop(held);
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
