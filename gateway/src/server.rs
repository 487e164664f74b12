//! Starting and stopping a gateway.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use postmesh_core::CoreClient;
use postmesh_router::Postoffice;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authority;
use crate::config::GatewayConfig;
use crate::http::{App, router};
use crate::hub::Hub;
use crate::metrics::GatewayMetrics;
use crate::session::Ctx;

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("postoffice: {0}")]
    Postoffice(#[from] postmesh_router::PostofficeError),
}

/// A gateway that has bound its listener and its postoffice queue.
pub struct Gateway {
    listener: TcpListener,
    app: Arc<App>,
    drain: Duration,
}

/// Most connections one gateway accepts: the file limit is the real bound on
/// one machine; this keeps a misconfigured one from exhausting it.
pub const MAX_CONNECTIONS: usize = 1_000_000;

/// Largest HTTP request body (a batch publish).
pub const MAX_BODY_BYTES: usize = 8 << 20;

impl Gateway {
    /// Validates the config, binds the listener and the gateway's queue.
    /// `name` is the gateway's postoffice address, which makes its queue
    /// unique; with `replies`, the queue also receives RPC replies sent to
    /// that address (for a `postmesh_core::remote::RemoteCore`).
    pub async fn bind(
        config: GatewayConfig,
        name: &str,
        core: Arc<dyn CoreClient>,
        postoffice: Arc<dyn Postoffice>,
        registry: &mut Registry,
        shutdown: CancellationToken,
        replies: Option<Arc<postmesh_router::rpc::Replies>>,
    ) -> Result<Gateway, StartError> {
        config.validate()?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| StartError::Bind(config.listen, e))?;
        let metrics = GatewayMetrics::register(registry);
        let hub = Hub::start(
            postoffice,
            format!("gateway.{name}"),
            config.dedupe_window,
            metrics.clone(),
            shutdown.clone(),
            replies.map(|replies| crate::hub::Rpc {
                binding: format!("*.*.*.*.*.*.{name}"),
                replies,
            }),
            (config.keepalive_secs > 0).then(|| Duration::from_secs(config.keepalive_secs)),
        )
        .await?;
        let drain = Duration::from_secs(config.drain_secs);
        let ctx = Arc::new(Ctx {
            hub,
            core,
            authority: Authority::new(config.secret.as_deref()),
            config,
            metrics,
        });
        Ok(Gateway {
            listener,
            app: Arc::new(App {
                ctx,
                registry: Arc::new(Registry::default()),
                shutdown,
                tracker: TaskTracker::new(),
                max_connections: MAX_CONNECTIONS,
                max_body_bytes: MAX_BODY_BYTES,
            }),
            drain,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the shutdown token is cancelled, then closes sessions
    /// with 1001 and waits for them up to the drain deadline. `registry` is
    /// what `/metrics` shows (the whole process's).
    pub async fn serve(self, registry: Arc<Registry>) -> std::io::Result<()> {
        let app = Arc::new(App {
            ctx: self.app.ctx.clone(),
            registry,
            shutdown: self.app.shutdown.clone(),
            tracker: self.app.tracker.clone(),
            max_connections: self.app.max_connections,
            max_body_bytes: self.app.max_body_bytes,
        });
        let shutdown = app.shutdown.clone();
        let tracker = app.tracker.clone();
        axum::serve(self.listener, router(app))
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await?;
        tracker.close();
        if tokio::time::timeout(self.drain, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close within the drain deadline");
        }
        Ok(())
    }
}
