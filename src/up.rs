//! `postmesh up`: every role in one process, on the embedded postoffice and
//! the embedded store. Nothing to install: the first thing a new user runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use postmesh_core::store::embedded::EmbeddedOptions;
use postmesh_core::{Core, CoreMetrics, EmbeddedStore, Store, retention};
use postmesh_gateway::Gateway;
use postmesh_router::{AmqpPostoffice, MemoryPostoffice, Postoffice};
use postmesh_schema::Address;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// A running mesh.
pub struct Running {
    /// Where the gateway listens (HTTP and `/ws`).
    pub addr: SocketAddr,
    /// Cancel to shut down; then await `task`.
    pub shutdown: CancellationToken,
    /// Ends when the mesh has drained and closed its store.
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Shuts down and waits until the store is closed.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await.context("mesh task panicked")?
    }
}

/// Starts every role; returns once the listener is bound.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let shutdown = CancellationToken::new();
    let mut registry = Registry::default();
    let store_dir = config.data.join("store");
    let store = Arc::new(
        EmbeddedStore::open(
            &store_dir,
            EmbeddedOptions {
                sync: config.core.sync,
                cache_bytes: config.core.cache_mb << 20,
                ..EmbeddedOptions::default()
            },
        )
        .with_context(|| format!("opening the store in {}", store_dir.display()))?,
    );
    retention::apply(store.as_ref(), &config.core.retention())
        .await
        .context("applying retention")?;
    let postoffice: Arc<dyn Postoffice> = match &config.amqp {
        Some(uri) => Arc::new(
            AmqpPostoffice::connect(uri)
                .await
                .with_context(|| format!("connecting to the postoffice at {}", redact(uri)))?,
        ),
        None => Arc::new(MemoryPostoffice::new()),
    };
    let core = Arc::new(Core::new(
        store.clone() as Arc<dyn Store>,
        postoffice.clone(),
        CoreMetrics::register(&mut registry),
    ));
    let address = Address::new(
        &config.node.region,
        &config.node.product,
        "gateway",
        &config.node.instance,
        &std::process::id().to_string(),
    )
    .context("node address")?;
    let gateway = Gateway::bind(
        config.gateway.clone(),
        &address.to_string(),
        core,
        postoffice,
        &mut registry,
        shutdown.clone(),
    )
    .await?;
    let addr = gateway.local_addr()?;
    let sweeper = tokio::spawn(retention::sweeper(
        store.clone() as Arc<dyn Store>,
        Duration::from_secs(config.core.sweep_secs.max(1)),
        shutdown.clone(),
    ));
    let registry = Arc::new(registry);
    let task = tokio::spawn(async move {
        let served = gateway.serve(registry).await;
        let _ = sweeper.await;
        // Commit what is queued and release the data directory.
        store.close();
        served.context("serving")
    });
    Ok(Running {
        addr,
        shutdown,
        task,
    })
}

/// The URI without its password, for messages.
fn redact(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &uri[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &uri[..scheme + 3], &uri[at..])
        }
        _ => uri.to_owned(),
    }
}

/// Runs until Ctrl-C (or SIGTERM), then drains and exits.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let data = config.data.clone();
    let postoffice = config
        .amqp
        .as_deref()
        .map(redact)
        .unwrap_or_else(|| "embedded".into());
    let open = config.gateway.secret.is_none();
    let running = start(config).await?;
    let addr = running.addr;
    println!("postmesh is up");
    println!("  WebSocket  ws://{addr}/ws");
    println!("  HTTP       http://{addr}/v1/publish  /v1/history  /v1/latest");
    println!("  health     http://{addr}/healthz   metrics http://{addr}/metrics");
    println!("  data       {}", data.display());
    println!("  postoffice {postoffice}");
    if open {
        println!("  access     anonymous (no secret set; loopback only)");
    }
    let shutdown = running.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        shutdown.cancel();
    });
    running.task.await.context("mesh task panicked")?
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
