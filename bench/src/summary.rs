//! Medians over repeated runs: the side-by-side tables of `bench/run.sh`
//! and its plot. Input is the harness's own JSON lines.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;
use serde_json::Value;

/// One scenario setting for one system: every run's figures.
#[derive(Debug, Clone)]
pub struct Group {
    /// Scenario and its parameters, e.g. `fanout N=1000 M=2000 256 B max`.
    pub key: String,
    pub system: String,
    pub runs: usize,
    /// Metric → one value per run.
    pub values: BTreeMap<String, Vec<f64>>,
}

impl Group {
    /// The median of a metric over the runs.
    pub fn median(&self, metric: &str) -> Option<f64> {
        let mut v = self.values.get(metric)?.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        Some(if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        })
    }
}

/// The setting a JSON line belongs to, and the metrics it reports.
fn classify(line: &Value) -> Option<(String, &'static [&'static str])> {
    let n = |k: &str| line[k].as_f64().unwrap_or(0.0);
    match line["scenario"].as_str()? {
        "fanout" => Some((
            format!(
                "fanout N={} M={} {} B {}",
                n("subscribers"),
                n("messages"),
                n("size"),
                if line["rate"].is_null() {
                    "max"
                } else {
                    "paced"
                }
            ),
            &[
                "deliveries_per_s",
                "p50_us",
                "p90_us",
                "p99_us",
                "max_us",
                "rate",
                "delivered",
                "server_cpu_s",
                "harness_cpu_s",
            ],
        )),
        "idle" => Some((
            format!("idle {} connections", n("connections")),
            &[
                "bytes_per_connection",
                "server_rss_before_kib",
                "server_rss_after_kib",
            ],
        )),
        "churn" => Some((
            format!("churn {} workers", n("workers")),
            &[
                "cycles_per_s",
                "p50_us",
                "p99_us",
                "failures",
                "server_cpu_s",
            ],
        )),
        "ingest" => Some((
            format!("ingest, {}", line["via"].as_str().unwrap_or("?")),
            &["messages_per_s", "refused", "server_cpu_s", "harness_cpu_s"],
        )),
        "history" => Some((
            format!(
                "history {} limit {}, {} connections",
                line["pattern"].as_str().unwrap_or("?"),
                n("limit"),
                n("connections")
            ),
            &[
                "queries_per_s",
                "p50_us",
                "p99_us",
                "max_us",
                "errors",
                "server_cpu_s",
            ],
        )),
        _ => None,
    }
}

/// Groups JSON lines by setting and system, in order of first appearance.
pub fn summarize(lines: &[Value]) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for line in lines {
        let Some((key, metrics)) = classify(line) else {
            continue;
        };
        let system = line["system"].as_str().unwrap_or("?").to_owned();
        let at = match groups
            .iter()
            .position(|g| g.key == key && g.system == system)
        {
            Some(i) => i,
            None => {
                groups.push(Group {
                    key,
                    system,
                    runs: 0,
                    values: BTreeMap::new(),
                });
                groups.len() - 1
            }
        };
        let g = &mut groups[at];
        g.runs += 1;
        for m in metrics.iter() {
            let v = if *m == "delivered" {
                let expected = line["expected"].as_f64().unwrap_or(0.0);
                (expected > 0.0).then(|| line["deliveries"].as_f64().unwrap_or(0.0) / expected)
            } else {
                line[*m].as_f64()
            };
            if let Some(v) = v {
                g.values.entry((*m).to_owned()).or_default().push(v);
            }
        }
    }
    groups
}

fn systems(groups: &[Group]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for g in groups {
        if !out.contains(&g.system) {
            out.push(g.system.clone());
        }
    }
    out
}

fn keys(groups: &[Group]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for g in groups {
        if !out.contains(&g.key) {
            out.push(g.key.clone());
        }
    }
    out
}

/// A figure in the unit its metric reads best in.
pub fn format(metric: &str, v: f64) -> String {
    if metric.ends_with("_us") {
        if v >= 1_000_000.0 {
            format!("{:.2} s", v / 1e6)
        } else if v >= 1000.0 {
            format!("{:.1} ms", v / 1e3)
        } else {
            format!("{v:.0} µs")
        }
    } else if metric == "bytes_per_connection" {
        format!("{:.1} KB", v / 1000.0)
    } else if metric == "delivered" {
        format!("{:.1}%", v * 100.0)
    } else if metric.ends_with("_s") && !metric.ends_with("per_s") {
        format!("{v:.1}")
    } else if v >= 1000.0 {
        let s = format!("{v:.0}");
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else {
        format!("{v:.1}")
    }
}

/// The headline rows: (setting prefix, metric, what it means, higher is better).
const HEADLINES: &[(&str, &str, &str, bool)] = &[
    (
        "idle",
        "bytes_per_connection",
        "memory per connection",
        false,
    ),
    (
        "fanout N=1000 M=2000 256 B max",
        "deliveries_per_s",
        "deliveries/s",
        true,
    ),
    (
        "fanout N=1000 M=2000 256 B max",
        "p99_us",
        "p99 latency",
        false,
    ),
    (
        "fanout N=10000 M=200 256 B max",
        "deliveries_per_s",
        "deliveries/s",
        true,
    ),
    (
        "fanout N=10000 M=200 256 B max",
        "p99_us",
        "p99 latency",
        false,
    ),
    (
        "fanout N=1000 M=2000 256 B paced",
        "rate",
        "messages/s (50% of postmesh's max)",
        true,
    ),
    (
        "fanout N=1000 M=2000 256 B paced",
        "p99_us",
        "p99 latency",
        false,
    ),
    (
        "churn",
        "cycles_per_s",
        "connect + subscribe + close / s",
        true,
    ),
    ("ingest", "messages_per_s", "messages/s", true),
    ("history", "p99_us", "p99 latency", false),
    ("history", "queries_per_s", "queries/s", true),
];

/// The side-by-side tables: headlines with postmesh's ratio to the best
/// peer, then every setting in full.
pub fn markdown(groups: &[Group]) -> String {
    let systems = systems(groups);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| scenario | figure | {} | postmesh ÷ best peer |",
        systems.join(" | ")
    );
    let _ = writeln!(out, "| --- | --- |{}", " --- |".repeat(systems.len() + 1));
    for key in keys(groups) {
        for (prefix, metric, label, higher) in HEADLINES {
            if !key.starts_with(prefix) {
                continue;
            }
            let cell = |s: &str| {
                groups
                    .iter()
                    .find(|g| g.key == key && g.system == s)
                    .and_then(|g| g.median(metric))
            };
            let mine = cell("postmesh");
            let peers: Vec<f64> = systems
                .iter()
                .filter(|s| *s != "postmesh")
                .filter_map(|s| cell(s))
                .collect();
            let best = if *higher {
                peers.iter().copied().reduce(f64::max)
            } else {
                peers.iter().copied().reduce(f64::min)
            };
            let ratio = match (mine, best) {
                (Some(m), Some(b)) if b > 0.0 && *metric != "rate" => format!("{:.2}×", m / b),
                _ => "-".into(),
            };
            let cells: Vec<String> = systems
                .iter()
                .map(|s| {
                    cell(s)
                        .map(|v| format(metric, v))
                        .unwrap_or_else(|| "-".into())
                })
                .collect();
            let better = if *higher { "higher" } else { "lower" };
            let _ = writeln!(
                out,
                "| {key} | {label} ({better} is better) | {} | {ratio} |",
                cells.join(" | ")
            );
        }
    }
    for key in keys(groups) {
        let rows: Vec<&Group> = groups.iter().filter(|g| g.key == key).collect();
        let metrics: Vec<&String> = rows[0].values.keys().collect();
        let _ = writeln!(out, "\n**{key}** (medians)\n");
        let _ = writeln!(
            out,
            "| system | runs | {} |",
            metrics
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(out, "| --- | --- |{}", " --- |".repeat(metrics.len()));
        for g in rows {
            let cells: Vec<String> = metrics
                .iter()
                .map(|m| {
                    g.median(m)
                        .map(|v| format(m, v))
                        .unwrap_or_else(|| "-".into())
                })
                .collect();
            let _ = writeln!(out, "| {} | {} | {} |", g.system, g.runs, cells.join(" | "));
        }
    }
    out
}

/// Draws each system's bars as one labelled series, and the legend.
macro_rules! draw_bars {
    ($chart:expr, $series:expr, $systems:expr, $colors:expr) => {{
        for (j, name) in $systems.iter().enumerate() {
            let color = $colors[j % $colors.len()];
            $chart
                .draw_series::<_, Rectangle<(f64, f64)>, _, _>(
                    $series
                        .iter()
                        .filter(|(k, _)| *k == j)
                        .map(|(_, r)| r.clone()),
                )
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
        }
        $chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }};
}

/// An SVG of deliveries/s and p99 latency per system for each fan-out
/// setting (medians), side by side.
pub fn plot(groups: &[Group], path: &Path) -> anyhow::Result<()> {
    let systems = systems(groups);
    let settings: Vec<String> = keys(groups)
        .into_iter()
        .filter(|k| k.starts_with("fanout"))
        .collect();
    let colors = [
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0xff, 0x7f, 0x0e),
        RGBColor(0x2c, 0xa0, 0x2c),
        RGBColor(0xd6, 0x27, 0x28),
        RGBColor(0x94, 0x67, 0xbd),
    ];
    let root = SVGBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (left, right) = root.split_horizontally(600);
    let value = |key: &str, system: &str, metric: &str| {
        groups
            .iter()
            .find(|g| g.key == key && g.system == system)
            .and_then(|g| g.median(metric))
    };
    for (area, metric, title, log) in [
        (
            &left,
            "deliveries_per_s",
            "deliveries/s (higher is better)",
            false,
        ),
        (
            &right,
            "p99_us",
            "p99 publish → deliver, ms (log; lower is better)",
            true,
        ),
    ] {
        let scale = if metric == "p99_us" { 1e-3 } else { 1.0 };
        let values: Vec<f64> = settings
            .iter()
            .flat_map(|k| systems.iter().filter_map(|s| value(k, s, metric)))
            .map(|v| v * scale)
            .collect();
        let top = values.iter().copied().fold(1.0, f64::max) * 1.15;
        let bottom = values.iter().copied().fold(top, f64::min).max(1e-3) / 2.0;
        let n = settings.len().max(1) as f64;
        let mut chart = ChartBuilder::on(area);
        chart
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70);
        let labels = settings.clone();
        let x_fmt = move |x: &f64| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 1e-9 && i < labels.len() {
                labels[i]
                    .trim_start_matches("fanout ")
                    .replace(" 256 B", "")
            } else {
                String::new()
            }
        };
        let bars = |i: usize, j: usize, v: f64| {
            let w = 0.8 / systems.len().max(1) as f64;
            let x0 = i as f64 + 0.1 + j as f64 * w;
            Rectangle::new(
                [(x0, if log { bottom } else { 0.0 }), (x0 + w * 0.9, v)],
                colors[j % colors.len()].filled(),
            )
        };
        let mut series: Vec<(usize, Rectangle<(f64, f64)>)> = Vec::new();
        for (i, k) in settings.iter().enumerate() {
            for (j, s) in systems.iter().enumerate() {
                if let Some(v) = value(k, s, metric) {
                    series.push((j, bars(i, j, v * scale)));
                }
            }
        }
        if log {
            let mut c = chart
                .build_cartesian_2d(0.0..n, (bottom..top).log_scale())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            c.configure_mesh()
                .x_labels(settings.len() * 2 + 1)
                .x_label_formatter(&x_fmt)
                .disable_x_mesh()
                .draw()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            draw_bars!(c, series, systems, colors);
        } else {
            let mut c = chart
                .build_cartesian_2d(0.0..n, 0.0..top)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            c.configure_mesh()
                .x_labels(settings.len() * 2 + 1)
                .x_label_formatter(&x_fmt)
                .y_label_formatter(&|v| format!("{:.0}k", v / 1000.0))
                .disable_x_mesh()
                .draw()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            draw_bars!(c, series, systems, colors);
        }
    }
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines() -> Vec<Value> {
        let mut v = Vec::new();
        for (system, rate) in [("postmesh", 900_000.0), ("NATS", 700_000.0)] {
            for k in 0..3 {
                v.push(
                    json!({"scenario": "fanout", "system": system, "subscribers": 1000,
                    "messages": 2000, "size": 256, "rate": null, "expected": 100, "deliveries": 100,
                    "deliveries_per_s": rate + k as f64, "p99_us": 2000 + k}),
                );
            }
        }
        v.push(
            json!({"scenario": "idle", "system": "postmesh", "connections": 19000,
            "bytes_per_connection": 5300.0}),
        );
        v
    }

    #[test]
    fn medians_and_ratios() {
        let g = summarize(&lines());
        assert_eq!(g.len(), 3);
        assert_eq!(g[0].runs, 3);
        assert_eq!(g[0].median("deliveries_per_s"), Some(900_001.0));
        let md = markdown(&g);
        assert!(md.contains("| 900,001 | 700,001 | 1.29× |"), "{md}");
        assert!(md.contains("| 5.3 KB | - | - |"), "{md}");
    }

    #[test]
    fn plots_an_svg() {
        let dir = std::env::temp_dir().join(format!("pm-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("plot.svg");
        plot(&summarize(&lines()), &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("NATS"), "{svg}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
