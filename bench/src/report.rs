//! Output: one JSON line per run (machine-readable), and Markdown rows.

use crate::scenario::{FanoutResult, IdleResult};

/// The Markdown header matching [`fanout_row`].
pub const FANOUT_HEADER: &str = "| system | N | M | size | rate | deliveries/s | p50 µs | p90 µs | p99 µs | max µs | delivered | server CPU s | harness CPU s |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |";

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into())
}

/// One Markdown row.
pub fn fanout_row(r: &FanoutResult) -> String {
    format!(
        "| {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {}/{} | {} | {} |",
        r.system,
        r.subscribers,
        r.messages,
        r.size,
        r.rate
            .map(|x| format!("{x:.0}/s"))
            .unwrap_or_else(|| "max".into()),
        r.deliveries_per_s,
        r.p50_us,
        r.p90_us,
        r.p99_us,
        r.max_us,
        r.deliveries,
        r.expected,
        opt(r.usage.server_cpu_s),
        opt(r.usage.harness_cpu_s),
    )
}

/// One Markdown row for an idle run.
pub fn idle_row(r: &IdleResult) -> String {
    format!(
        "| {} | {} | {} KiB | {} KiB | {:.0} B |",
        r.system,
        r.connections,
        r.server_rss_before_kib,
        r.server_rss_after_kib,
        r.bytes_per_connection
    )
}
