//! The accept loop. Each HTTP connection is served by hyper on a task of the
//! gateway's tracker, with a deadline for its request headers; with TLS,
//! its handshake comes first and has the same deadline. On shutdown
//! the loop stops accepting and every connection is asked to finish its
//! request in progress; when the `cut` token fires (the shutdown deadline,
//! or a second signal) the connections still open are dropped.
//!
//! `axum::serve` does none of this: it sets no header timeout, and its
//! graceful shutdown waits for every connection without limit, so one
//! client that sent half a request kept a stopping process alive for ever.

use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::parse_errors::JsonParseErrors;
use crate::tls::Tls;

/// How long the loop pauses after an accept error that is not about one
/// connection (out of file descriptors, for example): retrying at once
/// would spin while nothing can change.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Where connections come from, what serves them, and when they stop.
pub(crate) struct Acceptor {
    pub listener: TcpListener,
    pub router: Router,
    /// TLS on every connection, when the gateway has a certificate.
    pub tls: Option<Tls>,
    /// Time a client has to send a request's headers (and, with TLS, to
    /// complete its handshake).
    pub header_timeout: Duration,
    /// Stop accepting; ask open connections to finish.
    pub shutdown: CancellationToken,
    /// Drop open connections.
    pub cut: CancellationToken,
    /// Every connection's task.
    pub tracker: TaskTracker,
}

impl Acceptor {
    /// Accepts until `shutdown`, then closes the listener. Connections keep
    /// running on the tracker.
    pub(crate) async fn run(self) {
        loop {
            let accepted = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                a = self.listener.accept() => a,
            };
            match accepted {
                Ok((stream, _)) => {
                    self.tracker.spawn(connection(
                        stream,
                        self.tls.clone(),
                        self.router.clone(),
                        self.header_timeout,
                        self.shutdown.clone(),
                        self.cut.clone(),
                    ));
                }
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; pausing");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => break,
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
            }
        }
    }
}

/// An error about one connection (gone before it was accepted), not about
/// the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

/// Completes the TLS handshake if the gateway has TLS, then serves the
/// connection. A handshake that fails or does not finish within the header
/// timeout drops the connection; so does a shutdown before it finished
/// (there is no request in progress to finish yet).
async fn connection(
    stream: TcpStream,
    tls: Option<Tls>,
    router: Router,
    header_timeout: Duration,
    shutdown: CancellationToken,
    cut: CancellationToken,
) {
    let Some(tls) = tls else {
        return serve(stream, router, header_timeout, shutdown, cut).await;
    };
    let stream = tokio::select! {
        biased;
        _ = cut.cancelled() => return,
        _ = shutdown.cancelled() => return,
        s = tls.accept(stream, header_timeout) => match s {
            Some(s) => s,
            None => return,
        },
    };
    serve(stream, router, header_timeout, shutdown, cut).await;
}

/// Serves one connection (plain TCP or TLS) until it closes, finishes after
/// `shutdown`, or is dropped at `cut`. An upgraded connection (`/ws`)
/// leaves this task once the upgrade is answered: its session runs on a
/// task of its own, over hyper's `Upgraded`, whatever the stream beneath.
async fn serve<I>(
    stream: I,
    router: Router,
    header_timeout: Duration,
    shutdown: CancellationToken,
    cut: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let conn = builder
        .serve_connection(
            TokioIo::new(JsonParseErrors::new(stream)),
            TowerToHyperService::new(router),
        )
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let mut asked = false;
    loop {
        tokio::select! {
            biased;
            // Dropping the connection closes its socket.
            _ = cut.cancelled() => return,
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = shutdown.cancelled(), if !asked => {
                asked = true;
                // Finish the request in progress, then close; an idle
                // connection closes at once.
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
