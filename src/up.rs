//! Running roles: `postmesh up` runs every role in one process (on the
//! embedded postoffice and store unless a broker is configured);
//! `postmesh gateway` and `postmesh core` run one role each, meeting the
//! others on a shared RabbitMQ postoffice.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use postmesh_core::remote::{CoreServer, RemoteCore};
use postmesh_core::{Core, CoreClient, CoreMetrics, CoreOptions, Store, retention};
use postmesh_gateway::{Gateway, TlsReloader};
use postmesh_router::rpc::RpcClient;
use postmesh_router::{AmqpPostoffice, MemoryPostoffice, Postoffice};
use postmesh_schema::{Address, RegionTarget};
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, DEFAULT_RESUME_OVERLAP_MS, DEFAULT_RESUME_SETTLE_MS};
use crate::store::open_store;

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
    /// Reloads the gateway's TLS certificate, if it has one (`run` calls it
    /// on SIGHUP).
    pub tls: Option<TlsReloader>,
    /// Cancel to shut down; then await `task`. Connections are asked to
    /// finish and background tasks to stop until the shutdown deadline
    /// (`gateway.drain_secs`), when `cut` fires by itself.
    pub shutdown: CancellationToken,
    /// Cancel to stop at once (a second signal): connections still open are
    /// dropped and background tasks are no longer waited for. The store is
    /// closed cleanly all the same.
    pub cut: CancellationToken,
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

/// How long closing the core may take: it stores and distributes what it
/// was given. A postoffice that does not take it in this time is not waited
/// for; the next start distributes the rest from its checkpoint.
const CORE_CLOSE: Duration = Duration::from_secs(5);

/// Starts the given roles; returns once listeners and queues are bound.
pub async fn start_roles(config: Config, roles: Roles) -> anyhow::Result<Running> {
    let shutdown = CancellationToken::new();
    // The core's consumers and the retention sweeper: shutdown waits for
    // them before it closes the core and the store.
    let tasks = TaskTracker::new();
    let mut registry = Registry::default();
    let postoffice = postoffice(&config, roles).await?;

    let mut store: Option<Arc<dyn Store>> = None;
    let mut core: Option<Arc<Core>> = None;
    if roles != Roles::Gateway {
        let s = open_store(&config.core, &config.data, &mut registry).await?;
        let c = match Core::start(
            s.clone(),
            postoffice.clone(),
            CoreMetrics::register(&mut registry),
            CoreOptions {
                max_message_bytes: config.max_message_bytes,
            },
        )
        .await
        {
            Ok(c) => Arc::new(c),
            Err(e) => {
                s.close().await;
                return Err(e).context("starting the core");
            }
        };
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
        &tasks,
    )
    .await
    {
        Ok(mut gateway) => {
            if let (Some(g), Some(s)) = (gateway.as_mut(), &store) {
                g.report_store(s.clone());
            }
            Ok(serve(
                gateway, registry, store, core, &config, shutdown, tasks,
            )?)
        }
        Err(e) => {
            // Release the data directory before saying why.
            shutdown.cancel();
            tasks.close();
            let drain = Duration::from_secs(config.gateway.drain_secs);
            if tokio::time::timeout(drain, tasks.wait()).await.is_err() {
                tracing::warn!("background tasks still running at the shutdown deadline");
            }
            close(core, store).await;
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
    tasks: &TaskTracker,
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
            tasks,
        )
        .await
        .context("serving the core on the postoffice")?;
    }
    let mut gateway = None;
    if roles != Roles::Core {
        let me = address(config, "gateway")?;
        let (client, rpc): (Arc<dyn CoreClient>, _) = match core {
            Some(c) => (c.clone(), None),
            None => {
                let rpc = Arc::new(RpcClient::new(postoffice.clone(), me.clone()));
                let target =
                    RegionTarget::parse(config.gateway.core_region.as_deref().unwrap_or(""))
                        .context("gateway.core_region")?;
                let remote = RemoteCore::connect(
                    postoffice.clone(),
                    rpc.clone(),
                    target,
                    &config.core.queues,
                )
                .await
                .context("declaring the core queues")?;
                (Arc::new(remote), Some(rpc))
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
        // A replica on its way from another core (or region) can only
        // exist with a broker.
        gateway_config
            .resume_settle_ms
            .get_or_insert(match config.amqp {
                None => 0,
                Some(_) => DEFAULT_RESUME_SETTLE_MS,
            });
        gateway = Some(
            Gateway::bind(
                gateway_config,
                &me.to_string(),
                client,
                postoffice.clone(),
                registry,
                shutdown.clone(),
                rpc,
            )
            .await?,
        );
    }
    Ok(gateway)
}

/// Serves until `shutdown`, then drains until the shutdown deadline and
/// closes the store.
fn serve(
    gateway: Option<Gateway>,
    registry: Registry,
    store: Option<Arc<dyn Store>>,
    core: Option<Arc<Core>>,
    config: &Config,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) -> anyhow::Result<Running> {
    let addr = match &gateway {
        Some(g) => Some(g.local_addr()?),
        None => None,
    };
    let tls = gateway.as_ref().and_then(Gateway::tls_reloader);
    if let Some(s) = store.clone() {
        tasks.spawn(retention::sweeper(
            s,
            Duration::from_secs(config.core.sweep_secs.max(1)),
            shutdown.clone(),
        ));
    }
    let registry = Arc::new(registry);
    let cut = CancellationToken::new();
    let drain = Duration::from_secs(config.gateway.drain_secs);
    let (stop, cutting) = (shutdown.clone(), cut.clone());
    let task = tokio::spawn(async move {
        let stopping = async {
            match gateway {
                Some(g) => g.serve(registry, cutting.clone()).await,
                None => stop.cancelled().await,
            }
            tasks.close();
            tokio::select! {
                biased;
                _ = tasks.wait() => {}
                _ = cutting.cancelled() => tracing::warn!(
                    running = tasks.len(),
                    "background tasks still running when the shutdown was cut short"
                ),
            }
        };
        tokio::select! {
            () = stopping => {}
            () = deadline(&stop, &cutting, drain) => {}
        }
        close(core, store).await;
        Ok(())
    });
    Ok(Running {
        gateway: addr,
        tls,
        shutdown,
        cut,
        task,
    })
}

/// Cancels `cut` `drain` after `shutdown`, unless it was cancelled before
/// (a second signal). Never returns: it is raced against the shutdown.
async fn deadline(shutdown: &CancellationToken, cut: &CancellationToken, drain: Duration) {
    shutdown.cancelled().await;
    tokio::select! {
        _ = tokio::time::sleep(drain) => {
            tracing::warn!(secs = drain.as_secs(), "shutdown deadline reached: cutting what is left");
            cut.cancel();
        }
        _ = cut.cancelled() => {}
    }
    std::future::pending().await
}

/// Stores and distributes what the core was given (for at most
/// [`CORE_CLOSE`]), then closes the store (the embedded one commits what
/// is queued and releases the data directory).
async fn close(core: Option<Arc<Core>>, store: Option<Arc<dyn Store>>) {
    if let Some(c) = core
        && tokio::time::timeout(CORE_CLOSE, c.close()).await.is_err()
    {
        tracing::warn!(
            "the core did not hand on everything in {CORE_CLOSE:?}; \
             the next start distributes the rest from its checkpoint"
        );
    }
    if let Some(s) = store {
        s.close().await;
    }
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

/// Runs `roles` until Ctrl-C (or SIGTERM), then drains and exits. A second
/// signal cuts the drain short. With TLS, SIGHUP reloads the certificate.
pub async fn run(config: Config, roles: Roles) -> anyhow::Result<()> {
    let data = match config.core.store.kind {
        crate::config::StoreKind::Embedded => config.data.display().to_string(),
        crate::config::StoreKind::Cql => format!(
            "cql://{}/{}",
            config.core.store.hosts.join(","),
            config.core.store.keyspace
        ),
    };
    let postoffice = config
        .amqp
        .as_deref()
        .map(redact)
        .unwrap_or_else(|| "embedded".into());
    let open = config.gateway.secret.is_none();
    let cert = config.gateway.tls.as_ref().map(|t| t.cert.clone());
    let running = start_roles(config, roles).await?;
    // Listening for signals before saying "up": a signal sent as soon as
    // the process is up must not meet the default action (exit without
    // draining or closing the store, or, for SIGHUP, instead of a reload).
    let mut signals = Signals::new();
    if let Some(reloader) = running.tls.clone() {
        reload_on_hangup(reloader);
    }
    let (ws, http) = match running.tls {
        Some(_) => ("wss", "https"),
        None => ("ws", "http"),
    };
    let mut lines = vec![match roles {
        Roles::All => "postmesh is up".to_owned(),
        Roles::Gateway => "postmesh gateway is up".to_owned(),
        Roles::Core => "postmesh core is up".to_owned(),
    }];
    if let Some(addr) = running.gateway {
        lines.push(format!("  WebSocket  {ws}://{addr}/ws"));
        lines.push(format!(
            "  HTTP       {http}://{addr}/v1/publish  /v1/history  /v1/latest"
        ));
        lines.push(format!(
            "  health     {http}://{addr}/healthz   metrics {http}://{addr}/metrics"
        ));
        if let Some(cert) = &cert {
            lines.push(format!(
                "  tls        {} (SIGHUP reloads it)",
                cert.display()
            ));
        }
        if open {
            lines.push("  access     anonymous (no secret set; loopback only)".to_owned());
        }
    }
    if roles != Roles::Gateway {
        lines.push(format!("  data       {data}"));
    }
    lines.push(format!("  postoffice {postoffice}"));
    announce(&lines);
    let (shutdown, cut) = (running.shutdown.clone(), running.cut.clone());
    tokio::spawn(async move {
        signals.next().await;
        tracing::info!("shutting down; a second signal stops at once");
        shutdown.cancel();
        signals.next().await;
        tracing::warn!("second signal: cutting what is left and closing the store");
        cut.cancel();
    });
    running.task.await.context("task panicked")?
}

/// Reloads the TLS certificate on each SIGHUP, for the life of the
/// process. A failed reload is logged (and counted) by the reloader, and
/// the previous certificate goes on serving.
fn reload_on_hangup(reloader: TlsReloader) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP: the certificate cannot be reloaded");
                return;
            }
        };
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                let reloader = reloader.clone();
                // It reads files; the outcome is logged by the reloader.
                let _ = tokio::task::spawn_blocking(move || reloader.reload()).await;
            }
        });
    }
    #[cfg(not(unix))]
    let _ = reloader;
}

/// Prints `lines` on standard output, for the people and scripts that
/// started the process. They may stop reading (`postmesh up | head -1`
/// closes the pipe): a failed write is ignored, because a server whose
/// output went away must go on serving (`println!` would panic).
fn announce(lines: &[String]) {
    let mut out = std::io::stdout().lock();
    for line in lines {
        if writeln!(out, "{line}").is_err() {
            return;
        }
    }
    let _ = out.flush();
}

/// Ctrl-C and SIGTERM as one source, installed once for the whole run, so
/// that a second signal during the shutdown is seen (and not left to a
/// handler that no longer listens).
pub(crate) struct Signals {
    #[cfg(unix)]
    unix: [Option<tokio::signal::unix::Signal>; 2],
}

impl Signals {
    pub(crate) fn new() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let install = |kind: SignalKind| match signal(kind) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for a signal");
                    None
                }
            };
            Signals {
                unix: [
                    install(SignalKind::interrupt()),
                    install(SignalKind::terminate()),
                ],
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// Waits for the next signal.
    pub(crate) async fn next(&mut self) {
        #[cfg(unix)]
        {
            let [int, term] = &mut self.unix;
            tokio::select! {
                _ = recv(int.as_mut()) => {}
                _ = recv(term.as_mut()) => {}
            }
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The next delivery of one signal; never, if it could not be installed.
#[cfg(unix)]
async fn recv(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}
