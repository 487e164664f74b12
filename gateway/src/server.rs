//! Starting and stopping a gateway.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use postmesh_core::{CoreClient, Store};
use postmesh_router::Postoffice;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accept::Acceptor;
use crate::admission::Admission;
use crate::app::App;
use crate::auth::Authority;
use crate::config::GatewayConfig;
use crate::http::router;
use crate::hub::Hub;
use crate::metrics::GatewayMetrics;
use crate::session::Ctx;
use crate::tls::{Tls, TlsReloader};

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("postoffice: {0}")]
    Postoffice(#[from] postmesh_router::PostofficeError),
}

/// A gateway that has bound its listener and its postoffice queue.
pub struct Gateway {
    listener: TcpListener,
    tls: Option<Tls>,
    ctx: Arc<Ctx>,
    shutdown: CancellationToken,
    /// The store of the core in this process, whose health `/healthz`
    /// reports.
    store: Option<Arc<dyn Store>>,
}

/// How long connections get to end once they are cut: dropping a task's
/// future is immediate, so this only bounds a task that never yields.
const CUT_GRACE: Duration = Duration::from_secs(1);

/// Most connections one gateway accepts: the file limit is the real bound on
/// one machine; this keeps a misconfigured one from exhausting it.
pub const MAX_CONNECTIONS: usize = 1_000_000;

impl Gateway {
    /// Validates the config, loads the TLS certificate and key if
    /// configured, binds the listener and the gateway's queue.
    /// `name` is the gateway's postoffice address, which makes its queue
    /// unique; with `rpc`, the queue also receives the replies to that
    /// client's requests (for a `postmesh_core::remote::RemoteCore`).
    pub async fn bind(
        config: GatewayConfig,
        name: &str,
        core: Arc<dyn CoreClient>,
        postoffice: Arc<dyn Postoffice>,
        registry: &mut Registry,
        shutdown: CancellationToken,
        rpc: Option<Arc<postmesh_router::rpc::RpcClient>>,
    ) -> Result<Gateway, StartError> {
        config.validate()?;
        let metrics = GatewayMetrics::register(registry);
        // Before the socket: a bad file is said before anyone can connect.
        let tls = match &config.tls {
            Some(files) => Some(Tls::load(files, &metrics)?),
            None => None,
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| StartError::Bind(config.listen, e))?;
        let hub = Hub::start(
            postoffice,
            format!("gateway.{name}"),
            config.dedupe_window,
            metrics.clone(),
            shutdown.clone(),
            rpc,
            (config.keepalive_secs > 0).then(|| Duration::from_secs(config.keepalive_secs)),
        )
        .await?;
        let ctx = Arc::new(Ctx {
            hub,
            core,
            authority: Authority::new(config.secret.as_deref()),
            config,
            metrics,
        });
        Ok(Gateway {
            listener,
            tls,
            ctx,
            shutdown,
            store: None,
        })
    }

    /// Reports `store`'s health in `/healthz` (the store of the core in
    /// this process).
    pub fn report_store(&mut self, store: Arc<dyn Store>) {
        self.store = Some(store);
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// What reloads the listener's certificate, if it has TLS. It keeps
    /// working while the gateway serves.
    pub fn tls_reloader(&self) -> Option<TlsReloader> {
        self.tls.as_ref().map(Tls::reloader)
    }

    /// Serves until the shutdown token is cancelled; then stops accepting,
    /// lets HTTP requests in progress finish, closes sessions with 1001, and
    /// waits for them and for the hub (which deletes its queue) until `cut`
    /// (the shutdown deadline). At `cut`, connections still open are
    /// dropped. `registry` is what `/metrics` shows (the whole process's).
    pub async fn serve(self, registry: Arc<Registry>, cut: CancellationToken) {
        let tracker = TaskTracker::new();
        let app = Arc::new(App {
            store: self.store.clone(),
            ctx: self.ctx.clone(),
            registry,
            shutdown: self.shutdown.clone(),
            cut: cut.clone(),
            tracker: tracker.clone(),
            admission: Admission::new(MAX_CONNECTIONS),
            max_body_bytes: self.ctx.config.max_body_bytes,
        });
        Acceptor {
            listener: self.listener,
            router: router(app),
            tls: self.tls,
            header_timeout: Duration::from_secs(self.ctx.config.header_timeout_secs.max(1)),
            shutdown: self.shutdown.clone(),
            cut: cut.clone(),
            tracker: tracker.clone(),
        }
        .run()
        .await;
        tracker.close();
        tokio::select! {
            biased;
            _ = tracker.wait() => {}
            _ = cut.cancelled() => {
                tracing::warn!(
                    open = tracker.len(),
                    "cutting the connections still open (shutdown deadline or second signal)"
                );
                if tokio::time::timeout(CUT_GRACE, tracker.wait()).await.is_err() {
                    tracing::warn!(open = tracker.len(), "some connections did not end when cut");
                }
            }
        }
        tokio::select! {
            biased;
            _ = self.ctx.hub.stopped() => {}
            _ = cut.cancelled() => {
                tracing::warn!("the hub had not stopped when the shutdown was cut short");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use async_trait::async_trait;
    use postmesh_core::{CoreError, Page, Published};
    use postmesh_router::{
        Consumer, Exchange, MemoryPostoffice, Outgoing, PostofficeError, QueueSpec,
    };
    use postmesh_schema::{Cursor, Message, Pattern, Uuid};

    use super::*;

    /// The embedded postoffice, slow to delete a queue as a distant broker
    /// can be.
    struct SlowDelete {
        inner: MemoryPostoffice,
        deleted: AtomicBool,
    }

    #[async_trait]
    impl Postoffice for SlowDelete {
        async fn declare_queue(&self, spec: &QueueSpec) -> Result<(), PostofficeError> {
            self.inner.declare_queue(spec).await
        }
        async fn delete_queue(&self, name: &str) -> Result<(), PostofficeError> {
            tokio::time::sleep(Duration::from_millis(300)).await;
            self.inner.delete_queue(name).await?;
            self.deleted.store(true, Ordering::SeqCst);
            Ok(())
        }
        async fn bind(&self, e: Exchange, q: &str, p: &str) -> Result<(), PostofficeError> {
            self.inner.bind(e, q, p).await
        }
        async fn unbind(&self, e: Exchange, q: &str, p: &str) -> Result<(), PostofficeError> {
            self.inner.unbind(e, q, p).await
        }
        async fn publish(&self, e: Exchange, m: Outgoing) -> Result<(), PostofficeError> {
            self.inner.publish(e, m).await
        }
        async fn consume(&self, q: &str, prefetch: u16) -> Result<Consumer, PostofficeError> {
            self.inner.consume(q, prefetch).await
        }
    }

    /// A core the test never calls.
    struct NoCore;

    #[async_trait]
    impl CoreClient for NoCore {
        async fn publish(&self, _: Vec<Message>) -> Result<Vec<Published>, CoreError> {
            unimplemented!("not used")
        }
        async fn history(
            &self,
            _: Pattern,
            _: usize,
            _: Option<Cursor>,
            _: Option<u64>,
        ) -> Result<Page, CoreError> {
            unimplemented!("not used")
        }
        async fn since(
            &self,
            _: Pattern,
            _: Cursor,
            _: usize,
            _: Option<u64>,
        ) -> Result<Page, CoreError> {
            unimplemented!("not used")
        }
        async fn latest(&self, _: Pattern, _: usize, _: Option<u64>) -> Result<Page, CoreError> {
            unimplemented!("not used")
        }
        async fn dismiss(&self, _: u64, _: Uuid) -> Result<(), CoreError> {
            unimplemented!("not used")
        }
    }

    /// ARCHITECTURE.md's shutdown order: the hub deletes its queue before
    /// the gateway is done, however long the postoffice takes (up to the
    /// deadline), so the process cannot exit with the queue left behind.
    #[tokio::test]
    async fn serve_returns_once_the_hub_deleted_its_queue() {
        let postoffice = Arc::new(SlowDelete {
            inner: MemoryPostoffice::new(),
            deleted: AtomicBool::new(false),
        });
        let config = GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..GatewayConfig::default()
        };
        let shutdown = CancellationToken::new();
        let gateway = Gateway::bind(
            config,
            "gw",
            Arc::new(NoCore),
            postoffice.clone(),
            &mut Registry::default(),
            shutdown.clone(),
            None,
        )
        .await
        .unwrap();
        let serving = tokio::spawn(gateway.serve(Arc::default(), CancellationToken::new()));
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), serving)
            .await
            .expect("serve returns")
            .unwrap();
        assert!(postoffice.deleted.load(Ordering::SeqCst));
    }
}
