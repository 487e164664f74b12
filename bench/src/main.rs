//! `postmesh-bench`: see `postmesh-bench --help`.

use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use postmesh_bench::peer::{Peer, Postmesh};
use postmesh_bench::{report, scenario};

/// The postmesh load harness.
#[derive(Parser)]
#[command(name = "postmesh-bench", about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Target {
    /// WebSocket URL of the system under test.
    #[arg(long, default_value = "ws://127.0.0.1:7400/ws")]
    url: String,
    /// The server's pid, for its CPU and memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Class of published messages.
    #[arg(long, default_value = "silver")]
    class: String,
    /// A label for the report (default: the system's name).
    #[arg(long)]
    label: Option<String>,
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
        /// Print a Markdown row after the JSON line.
        #[arg(long)]
        markdown: bool,
    },
    /// N idle connections: the server's memory per connection.
    Idle {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
    },
}

struct Labelled {
    inner: Postmesh,
    label: String,
}

#[async_trait::async_trait]
impl Peer for Labelled {
    fn name(&self) -> &str {
        &self.label
    }
    async fn subscriber(&self) -> anyhow::Result<Box<dyn postmesh_bench::peer::Subscriber>> {
        self.inner.subscriber().await
    }
    async fn publisher(&self) -> anyhow::Result<Box<dyn postmesh_bench::peer::Publisher>> {
        self.inner.publisher().await
    }
}

fn peer(t: &Target) -> Arc<dyn Peer> {
    Arc::new(Labelled {
        inner: Postmesh {
            url: t.url.clone(),
            class: t.class.clone(),
        },
        label: t.label.clone().unwrap_or_else(|| "postmesh".into()),
    })
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
            markdown,
        } => {
            let o = scenario::FanoutOptions {
                subscribers,
                messages,
                size,
                rate,
                publishers,
                idle: Duration::from_secs(10),
            };
            let r = scenario::fanout(peer(&target), &o, target.server_pid).await?;
            println!("{}", serde_json::to_string(&r)?);
            if markdown {
                println!("{}", report::fanout_row(&r));
            }
        }
        Command::Idle {
            target,
            connections,
        } => {
            let pid = target
                .server_pid
                .ok_or_else(|| anyhow::anyhow!("idle needs --server-pid"))?;
            let r = scenario::idle(peer(&target), connections, pid).await?;
            println!("{}", serde_json::to_string(&r)?);
        }
    }
    Ok(())
}
