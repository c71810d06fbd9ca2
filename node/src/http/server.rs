//! The HTTP server loop of both ports: plain HTTP ([`super::zerocopy::ViewerListener`]) and
//! HTTPS ([`crate::listen::tls::TlsListener`]), HTTP/1.1 and HTTP/2 through hyper-util.
//!
//! Limits against abusive clients: a request head must arrive within
//! `http.header_read_timeout_ms` (a slowloris client dripping headers is closed after it, and so
//! is a keep-alive connection idle that long), and at most `http.max_connections` connections
//! are served at once per port; beyond, a new one is closed at once (logged once per 10 s).
//!
//! Why not `axum::serve`: it enables HTTP/2 extended CONNECT (RFC 8441, WebSockets over HTTP/2)
//! unconditionally. A browser that sees it in SETTINGS opens `wss://` as a CONNECT stream on the
//! page's HTTP/2 connection, which the node's `GET`-only WebSocket routes answer with 405: seen
//! with Chromium, whose player page then never starts (tests/tls.rs, the hls.js test). Without the
//! setting a client must not send extended CONNECT (RFC 8441 §3), and browsers open WebSockets
//! over HTTP/1.1, which works. It also offers no header-read timeout.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tracing::{debug, warn};

use super::zerocopy::PeerAddr;
use crate::app::App;
use crate::throttle::LogEvery;

/// Limits of one server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A request head must be complete this long after the server starts waiting for it.
    pub header_read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `shutdown` completes (viewers' media requests are answered
/// by [`super::playback::fast_media`] without the router); then stops accepting, asks every open
/// connection to finish (HTTP/1.1: after its current response; HTTP/2: GOAWAY) and returns once
/// they have. The caller bounds that wait.
pub async fn serve<L>(
    mut listener: L,
    app: Arc<App>,
    router: Router,
    limits: Limits,
    scheme: &'static str,
    shutdown: impl Future<Output = ()> + Send,
) where
    L: axum::serve::Listener<Addr = SocketAddr>,
    L::Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let refusals = LogEvery::new(Duration::from_secs(10));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            c = listener.accept() => c,
            () = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            if refusals.allow() {
                warn!(%peer, scheme, limit = limits.max_connections,
                    "http: too many connections, refusing new ones (logged once per 10 s)");
            }
            drop(io);
            continue;
        };
        let (app, router) = (app.clone(), router.clone());
        let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            let (app, router) = (app.clone(), router.clone());
            async move {
                if let Some(resp) = super::playback::fast_media(&app, &req, peer).await {
                    return Ok::<_, Infallible>(resp);
                }
                // What handlers read as `ConnectInfo<PeerAddr>`.
                req.extensions_mut().insert(ConnectInfo(PeerAddr(peer)));
                router.oneshot(req).await
            }
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = conn.await {
                debug!(%peer, scheme, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
