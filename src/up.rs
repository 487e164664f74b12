//! Running roles: `postmesh up` runs every role in one process (on the
//! embedded postoffice and store unless a broker is configured);
//! `postmesh gateway` and `postmesh core` run one role each, meeting the
//! others on a shared RabbitMQ postoffice.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use postmesh_core::remote::{CoreServer, RemoteCore};
use postmesh_core::store::embedded::EmbeddedOptions;
use postmesh_core::{Core, CoreClient, CoreMetrics, CoreOptions, EmbeddedStore, Store, retention};
use postmesh_gateway::Gateway;
use postmesh_router::rpc::Replies;
use postmesh_router::{AmqpPostoffice, MemoryPostoffice, Postoffice};
use postmesh_schema::Address;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DEFAULT_RESUME_OVERLAP_MS};

/// Which roles a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roles {
    /// Gateway and core (`postmesh up`).
    All,
    /// A gateway that asks remote cores (`postmesh gateway`).
    Gateway,
    /// A core that serves remote gateways (`postmesh core`).
    Core,
}

/// A running process's roles.
pub struct Running {
    /// Where the gateway listens (HTTP and `/ws`), if this process runs one.
    pub gateway: Option<SocketAddr>,
    /// Cancel to shut down; then await `task`.
    pub shutdown: CancellationToken,
    /// Ends when everything has drained and the store is closed.
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// The gateway's address (panics for a core-only process).
    pub fn addr(&self) -> SocketAddr {
        self.gateway.expect("this process runs a gateway")
    }

    /// Shuts down and waits until the store is closed.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await.context("task panicked")?
    }
}

/// Starts every role (`postmesh up`); returns once the listener is bound.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    start_roles(config, Roles::All).await
}

fn address(config: &Config, service: &str) -> anyhow::Result<Address> {
    Address::new(
        &config.node.region,
        &config.node.product,
        service,
        &config.node.instance,
        &std::process::id().to_string(),
    )
    .context("node address")
}

async fn postoffice(config: &Config, roles: Roles) -> anyhow::Result<Arc<dyn Postoffice>> {
    Ok(match (&config.amqp, roles) {
        (Some(uri), _) => Arc::new(
            AmqpPostoffice::connect(uri)
                .await
                .with_context(|| format!("connecting to the postoffice at {}", redact(uri)))?,
        ),
        (None, Roles::All) => Arc::new(MemoryPostoffice::new()),
        (None, _) => bail!(
            "running one role alone needs a shared postoffice: give --amqp amqp://... \
             (or run every role in one process with `postmesh up`)"
        ),
    })
}

/// Starts the given roles; returns once listeners and queues are bound.
pub async fn start_roles(config: Config, roles: Roles) -> anyhow::Result<Running> {
    let shutdown = CancellationToken::new();
    let mut registry = Registry::default();
    let postoffice = postoffice(&config, roles).await?;

    let mut store: Option<Arc<EmbeddedStore>> = None;
    let mut core: Option<Arc<Core>> = None;
    if roles != Roles::Gateway {
        let dir = config.data.join("store");
        let s = Arc::new(
            EmbeddedStore::open(
                &dir,
                EmbeddedOptions {
                    sync: config.core.sync,
                    cache_bytes: config.core.cache_mb << 20,
                    clock_offset_ms: config.core.clock_offset_ms,
                    ..EmbeddedOptions::default()
                },
            )
            .with_context(|| format!("opening the store in {}", dir.display()))?,
        );
        retention::apply(s.as_ref(), &config.core.retention())
            .await
            .context("applying retention")?;
        let c = Arc::new(
            Core::start(
                s.clone() as Arc<dyn Store>,
                postoffice.clone(),
                CoreMetrics::register(&mut registry),
                CoreOptions {
                    max_message_bytes: config.max_message_bytes,
                },
            )
            .await
            .context("starting the core")?,
        );
        store = Some(s);
        core = Some(c);
    }
    match start_front(
        &config,
        roles,
        &postoffice,
        core.as_ref(),
        &mut registry,
        &shutdown,
    )
    .await
    {
        Ok(gateway) => Ok(serve(gateway, registry, store, core, &config, shutdown)?),
        Err(e) => {
            // Release the data directory before saying why.
            shutdown.cancel();
            if let Some(c) = core {
                c.close().await;
            }
            if let Some(s) = store {
                s.close();
            }
            Err(e)
        }
    }
}

/// Starts what faces the others: the core's service on a shared postoffice,
/// and the gateway.
async fn start_front(
    config: &Config,
    roles: Roles,
    postoffice: &Arc<dyn Postoffice>,
    core: Option<&Arc<Core>>,
    registry: &mut Registry,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Gateway>> {
    // On a shared postoffice a core serves every gateway of the region.
    if let Some(c) = core
        && config.amqp.is_some()
    {
        CoreServer::start(
            c.clone(),
            postoffice.clone(),
            address(config, "core")?,
            config.core.queues.clone(),
            shutdown.clone(),
        )
        .await
        .context("serving the core on the postoffice")?;
    }
    let mut gateway = None;
    if roles != Roles::Core {
        let me = address(config, "gateway")?;
        let (client, replies): (Arc<dyn CoreClient>, _) = match core {
            Some(c) => (c.clone(), None),
            None => {
                let replies = Arc::new(Replies::new(&me.to_string()));
                let remote = RemoteCore::connect(
                    postoffice.clone(),
                    me.clone(),
                    replies.clone(),
                    &config.core.queues,
                )
                .await
                .context("declaring the core queues")?;
                (Arc::new(remote), Some(replies))
            }
        };
        // One core on the embedded postoffice orders everything it stores
        // and distributes: resume is exact. Cores on a broker stamp with
        // clocks that differ: resume reads an overlap window.
        let mut gateway_config = config.gateway.clone();
        gateway_config.max_message_bytes = config.max_message_bytes;
        gateway_config
            .resume_overlap_ms
            .get_or_insert(match config.amqp {
                None => 0,
                Some(_) => DEFAULT_RESUME_OVERLAP_MS,
            });
        gateway = Some(
            Gateway::bind(
                gateway_config,
                &me.to_string(),
                client,
                postoffice.clone(),
                registry,
                shutdown.clone(),
                replies,
            )
            .await?,
        );
    }
    Ok(gateway)
}

/// Serves until `shutdown`, then drains and closes the store.
fn serve(
    gateway: Option<Gateway>,
    registry: Registry,
    store: Option<Arc<EmbeddedStore>>,
    core: Option<Arc<Core>>,
    config: &Config,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    let addr = match &gateway {
        Some(g) => Some(g.local_addr()?),
        None => None,
    };
    let sweeper = store.clone().map(|s| {
        tokio::spawn(retention::sweeper(
            s as Arc<dyn Store>,
            Duration::from_secs(config.core.sweep_secs.max(1)),
            shutdown.clone(),
        ))
    });
    let registry = Arc::new(registry);
    let stop = shutdown.clone();
    let task = tokio::spawn(async move {
        let served = match gateway {
            Some(g) => g.serve(registry).await.context("serving"),
            None => {
                stop.cancelled().await;
                Ok(())
            }
        };
        if let Some(s) = sweeper {
            let _ = s.await;
        }
        // Store and distribute what was submitted, then commit what is
        // queued and release the data directory.
        if let Some(c) = core {
            c.close().await;
        }
        if let Some(s) = store {
            s.close();
        }
        served
    });
    Ok(Running {
        gateway: addr,
        shutdown,
        task,
    })
}

/// The URI without its password, for messages.
pub fn redact(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &uri[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &uri[..scheme + 3], &uri[at..])
        }
        _ => uri.to_owned(),
    }
}

/// Runs `roles` until Ctrl-C (or SIGTERM), then drains and exits.
pub async fn run(config: Config, roles: Roles) -> anyhow::Result<()> {
    let data = config.data.clone();
    let postoffice = config
        .amqp
        .as_deref()
        .map(redact)
        .unwrap_or_else(|| "embedded".into());
    let open = config.gateway.secret.is_none();
    let running = start_roles(config, roles).await?;
    match roles {
        Roles::All => println!("postmesh is up"),
        Roles::Gateway => println!("postmesh gateway is up"),
        Roles::Core => println!("postmesh core is up"),
    }
    if let Some(addr) = running.gateway {
        println!("  WebSocket  ws://{addr}/ws");
        println!("  HTTP       http://{addr}/v1/publish  /v1/history  /v1/latest");
        println!("  health     http://{addr}/healthz   metrics http://{addr}/metrics");
        if open {
            println!("  access     anonymous (no secret set; loopback only)");
        }
    }
    if roles != Roles::Gateway {
        println!("  data       {}", data.display());
    }
    println!("  postoffice {postoffice}");
    let shutdown = running.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        shutdown.cancel();
    });
    running.task.await.context("task panicked")?
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
