//! `postmesh-bench`: see `postmesh-bench --help`.

use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use postmesh_bench::peer::mqtt::Mqtt;
use postmesh_bench::peer::nats::Nats;
use postmesh_bench::peer::socketio::SocketIo;
use postmesh_bench::peer::sockjs::SockjsXhrStreaming;
use postmesh_bench::peer::{Peer, Postmesh, spread_sources};
use postmesh_bench::{report, scenario, store, summary};
use serde::Serialize;

/// The postmesh load harness.
#[derive(Parser)]
#[command(name = "postmesh-bench", about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The protocol of the system under test.
#[derive(Clone, Copy, ValueEnum)]
enum System {
    Postmesh,
    /// postmesh, subscribers over SockJS xhr-streaming (`--sockjs-url`),
    /// publishers over WebSocket (`--url`).
    Sockjs,
    Nats,
    Mqtt,
    Socketio,
}

#[derive(clap::Args, Clone)]
struct Target {
    /// The protocol of the system under test.
    #[arg(long, value_enum, default_value = "postmesh")]
    system: System,
    /// WebSocket URL of the system under test.
    #[arg(long, default_value = "ws://127.0.0.1:7400/ws")]
    url: String,
    /// `--system sockjs`: the SockJS base URL (default: `--url`'s host
    /// with `http://` and `/sockjs`).
    #[arg(long)]
    sockjs_url: Option<String>,
    /// The server's pid, for its CPU and memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Class of messages published to postmesh.
    #[arg(long, default_value = "silver")]
    class: String,
    /// A label for the report (default: the system's name).
    #[arg(long)]
    label: Option<String>,
    /// Spread connections over this many loopback source addresses
    /// (127.0.0.2, ...); 0: the kernel picks 127.0.0.1's ports.
    #[arg(long, default_value_t = 0)]
    sources: usize,
    /// Print a Markdown row after the JSON line.
    #[arg(long)]
    markdown: bool,
    /// postmesh: one message per WebSocket frame (no `?batch=true`).
    #[arg(long)]
    unbatched: bool,
}

#[derive(Subcommand)]
enum Command {
    /// N subscribers on one pattern; publishers send M messages of S bytes.
    Fanout {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        #[arg(long, default_value_t = 2000)]
        messages: usize,
        #[arg(long, default_value_t = 256)]
        size: usize,
        /// Messages per second; as fast as possible without it.
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long, default_value_t = 4)]
        publishers: usize,
        /// Follow the server's memory (needs --server-pid): before, once
        /// connected, peak, 1 s after the burst, 1 s and 5 s after every
        /// subscriber left. Subscribers stay connected until all are done.
        #[arg(long)]
        memory: bool,
        /// Publishers connect here instead of --url (postmesh: another
        /// region's gateway, so every message crosses regions).
        #[arg(long)]
        publish_url: Option<String>,
        /// Milliseconds between the last subscription and the first
        /// publish (time for bindings to reach other regions' brokers).
        #[arg(long, default_value_t = 0)]
        settle_ms: u64,
    },
    /// N idle connections: the server's memory per connection.
    Idle {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Seconds to wait after the last connection before reading memory.
        #[arg(long, default_value_t = 2)]
        settle: u64,
    },
    /// Connect, subscribe and close in a loop: cycles per second.
    Churn {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 32)]
        workers: usize,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    /// Publish as fast as possible with nobody subscribed: messages/s the
    /// server takes. With --http (postmesh), batches over `POST /v1/publish`
    /// to the history store's paths.
    Ingest {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
        #[arg(long, default_value_t = 256)]
        size: usize,
        /// WebSocket publisher connections, or HTTP requests in flight.
        #[arg(long, default_value_t = 4)]
        publishers: usize,
        /// postmesh's HTTP base URL (`http://host:port`): publish in batches.
        #[arg(long)]
        http: Option<String>,
        #[arg(long, default_value_t = 1000)]
        batch: usize,
    },
    /// Medians of a run's JSON lines: side-by-side tables and a plot,
    /// spliced into a results file between `<!-- bench/run.sh: begin -->`
    /// and `<!-- bench/run.sh: end -->`.
    Report {
        /// JSON lines written by the other subcommands.
        #[arg(long)]
        input: std::path::PathBuf,
        /// Where to write the SVG plot.
        #[arg(long)]
        plot: std::path::PathBuf,
        /// Markdown to put before the tables (machine, commands).
        #[arg(long)]
        preamble: Option<std::path::PathBuf>,
        /// The results file to splice into; stdout without it.
        #[arg(long)]
        results: Option<std::path::PathBuf>,
    },
    /// postmesh history queries, one after another on each connection.
    History {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value = "feeds.cat7.#")]
        pattern: String,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long, default_value_t = 4)]
        connections: usize,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    /// The message stores themselves, through the `Store` trait: the
    /// embedded store in this process, or the CQL store on Cassandra.
    Store {
        /// `embedded:DIR` or `cql://HOST:PORT/KEYSPACE`. `ingest`, `load`
        /// and `amplification` empty it first.
        #[arg(long)]
        store: String,
        /// The Cassandra node's pid, for its CPU and peak memory.
        #[arg(long)]
        server_pid: Option<u32>,
        #[command(subcommand)]
        phase: StorePhase,
    },
}

#[derive(Subcommand)]
enum StorePhase {
    /// Single-message puts, N in flight: messages/s persisted and
    /// acknowledged.
    Ingest {
        #[arg(long, default_value_t = 100_000)]
        messages: u64,
        #[arg(long, default_value_t = 3)]
        depth: usize,
        #[arg(long, default_value_t = 64)]
        in_flight: usize,
    },
    /// Fills the store with depth-3 messages (`feeds.cat<0..20>.<0..5000>`).
    Load {
        #[arg(long, default_value_t = 1_000_000)]
        messages: u64,
        #[arg(long, default_value_t = 100)]
        batch: usize,
        #[arg(long, default_value_t = 16)]
        in_flight: usize,
    },
    /// History queries on the store as it is: latency per query.
    History {
        #[arg(long, default_value = "feeds.cat7.#")]
        pattern: String,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long, default_value_t = 2000)]
        queries: u64,
        #[arg(long, default_value_t = 200)]
        warmup: u64,
        #[arg(long, default_value_t = 1)]
        in_flight: usize,
    },
    /// Messages of one path depth into an empty store, then the rows each
    /// table holds.
    Amplification {
        #[arg(long)]
        depth: usize,
        #[arg(long, default_value_t = 10_000)]
        messages: u64,
        #[arg(long, default_value_t = 64)]
        in_flight: usize,
    },
}

fn peer(t: &Target) -> Arc<dyn Peer> {
    spread_sources(t.sources);
    let url = t.url.clone();
    match t.system {
        System::Postmesh => Arc::new(Postmesh {
            url,
            class: t.class.clone(),
            label: t.label.clone().unwrap_or_else(|| "postmesh".into()),
            batch: !t.unbatched,
        }),
        System::Sockjs => {
            let base = t.sockjs_url.clone().unwrap_or_else(|| {
                let http = url.replacen("ws://", "http://", 1);
                match http.strip_suffix("/ws") {
                    Some(host) => format!("{host}/sockjs"),
                    None => format!("{}/sockjs", http.trim_end_matches('/')),
                }
            });
            let publish = Postmesh {
                url,
                class: t.class.clone(),
                label: "postmesh".into(),
                batch: true,
            };
            let label = t
                .label
                .clone()
                .unwrap_or_else(|| "postmesh sockjs xhr-streaming".into());
            Arc::new(SockjsXhrStreaming::new(base, publish, label))
        }
        System::Nats => Arc::new(Nats { url }),
        System::Mqtt => Arc::new(Mqtt { url }),
        System::Socketio => Arc::new(SocketIo { url }),
    }
}

fn label(t: &Target, p: &Arc<dyn Peer>) -> String {
    t.label.clone().unwrap_or_else(|| p.name().to_owned())
}

fn print<R: Serialize>(r: &R, markdown: Option<String>) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(r)?);
    if let Some(row) = markdown {
        println!("{row}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Every connection is a file descriptor.
    rlimit::increase_nofile_limit(u64::MAX)?;
    match Cli::parse().command {
        Command::Fanout {
            target,
            subscribers,
            messages,
            size,
            rate,
            publishers,
            memory,
            publish_url,
            settle_ms,
        } => {
            if memory && target.server_pid.is_none() {
                anyhow::bail!("--memory needs --server-pid");
            }
            let o = scenario::FanoutOptions {
                subscribers,
                messages,
                size,
                rate,
                publishers,
                idle: Duration::from_secs(10),
                memory,
                settle: Duration::from_millis(settle_ms),
            };
            let p = peer(&target);
            let publish_to = publish_url.map(|url| {
                peer(&Target {
                    url,
                    ..target.clone()
                })
            });
            let mut r = scenario::fanout(p.clone(), publish_to, &o, target.server_pid).await?;
            r.system = label(&target, &p);
            print(&r, target.markdown.then(|| report::fanout_row(&r)))?;
        }
        Command::Idle {
            target,
            connections,
            settle,
        } => {
            let pid = target
                .server_pid
                .ok_or_else(|| anyhow::anyhow!("idle needs --server-pid"))?;
            let p = peer(&target);
            let mut r = scenario::idle(p.clone(), connections, settle, pid).await?;
            r.system = label(&target, &p);
            print(&r, target.markdown.then(|| report::idle_row(&r)))?;
        }
        Command::Churn {
            target,
            workers,
            seconds,
        } => {
            let p = peer(&target);
            let d = Duration::from_secs_f64(seconds);
            let mut r = scenario::churn(p.clone(), workers, d, target.server_pid).await?;
            r.system = label(&target, &p);
            print(&r, None)?;
        }
        Command::Ingest {
            target,
            messages,
            size,
            publishers,
            http,
            batch,
        } => {
            let p = peer(&target);
            let name = label(&target, &p);
            let mut r = match http {
                Some(base) => {
                    scenario::http_ingest(
                        &name,
                        &base,
                        messages,
                        batch,
                        publishers,
                        size,
                        target.server_pid,
                    )
                    .await?
                }
                None => scenario::ingest(p, messages, publishers, size, target.server_pid).await?,
            };
            r.system = name;
            print(&r, None)?;
        }
        Command::Report {
            input,
            plot,
            preamble,
            results,
        } => report(&input, &plot, preamble.as_deref(), results.as_deref())?,
        Command::History {
            target,
            pattern,
            limit,
            connections,
            seconds,
        } => {
            let p = peer(&target);
            let r = scenario::history(
                &label(&target, &p),
                &target.url,
                &pattern,
                limit,
                connections,
                Duration::from_secs_f64(seconds),
                target.server_pid,
            )
            .await?;
            print(&r, None)?;
        }
        Command::Store {
            store: s,
            server_pid,
            phase,
        } => {
            let t = store::Target::parse(&s)?;
            match phase {
                StorePhase::Ingest {
                    messages,
                    depth,
                    in_flight,
                } => print(
                    &store::ingest(&t, messages, depth, in_flight, server_pid).await?,
                    None,
                )?,
                StorePhase::Load {
                    messages,
                    batch,
                    in_flight,
                } => print(
                    &store::load(&t, messages, batch, in_flight, server_pid).await?,
                    None,
                )?,
                StorePhase::History {
                    pattern,
                    limit,
                    queries,
                    warmup,
                    in_flight,
                } => print(
                    &store::history(&t, &pattern, limit, queries, warmup, in_flight, server_pid)
                        .await?,
                    None,
                )?,
                StorePhase::Amplification {
                    depth,
                    messages,
                    in_flight,
                } => print(
                    &store::amplification(&t, depth, messages, in_flight, server_pid).await?,
                    None,
                )?,
            }
        }
    }
    Ok(())
}

const BEGIN: &str = "<!-- bench/run.sh: begin -->";
const END: &str = "<!-- bench/run.sh: end -->";

fn report(
    input: &std::path::Path,
    plot: &std::path::Path,
    preamble: Option<&std::path::Path>,
    results: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let text =
        std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} holds a line that is not JSON", input.display()))?;
    let groups = summary::summarize(&lines);
    summary::plot(&groups, plot)?;
    let mut section = String::new();
    if let Some(p) = preamble {
        section.push_str(&std::fs::read_to_string(p)?);
        section.push('\n');
    }
    let name = plot
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("plot.svg");
    section.push_str(&format!(
        "![fan-out: deliveries/s and p99 per system]({name})\n\n"
    ));
    section.push_str(&summary::markdown(&groups));
    match results {
        None => print!("{section}"),
        Some(path) => {
            let old = std::fs::read_to_string(path).unwrap_or_default();
            let new = match (old.find(BEGIN), old.find(END)) {
                (Some(b), Some(e)) if b < e => {
                    format!("{}{BEGIN}\n{section}{}", &old[..b], &old[e..])
                }
                _ => format!("{old}\n{BEGIN}\n{section}{END}\n"),
            };
            std::fs::write(path, new).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}
