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
use axum::http::StatusCode;
use axum::response::IntoResponse;
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
    /// Threads that serve this port's connections, each with a single-threaded runtime of its
    /// own (see [`ConnThreads`]); 0: the node's shared runtime serves them.
    pub threads: usize,
}

/// A connection that can move to another runtime's reactor: what [`ConnThreads`] serve.
pub trait Rehome: Sized {
    /// The connection registered with `rt`'s reactor instead of the current one's (an error:
    /// the socket could not be moved and is closed), or `Err(self)` if it cannot move at all.
    fn rehome(self, rt: &tokio::runtime::Handle) -> Result<std::io::Result<Self>, Self>;
}

/// Threads that serve connections, nginx's worker model: each runs a single-threaded tokio
/// runtime, and a connection stays on the one it is handed to, with its reads, writes and
/// timers (issue 7: on 2 cores, 10,000 keep-alive viewers cost about 8 % less CPU per request
/// this way than on the shared work-stealing runtime, whose workers park and wake each other
/// through futexes). Waits that cross threads (a blocking reload
/// woken by the packager) go through the same wakers as before. Connections are dealt out in
/// turn. The threads stop when this is dropped; their connections close.
pub struct ConnThreads {
    handles: Vec<tokio::runtime::Handle>,
    next: std::sync::atomic::AtomicUsize,
    _stop: Vec<tokio::sync::oneshot::Sender<()>>,
    serial: u64,
}

/// The connection threads' runtimes alive in this process, for [`alive_tasks`].
static CONN_RUNTIMES: std::sync::Mutex<Vec<(u64, tokio::runtime::Handle)>> =
    std::sync::Mutex::new(Vec::new());

/// Tasks alive in the current runtime and in every [`ConnThreads`] runtime (the
/// `hivecast_tokio_alive_tasks` gauge: connections, requests, streams, timers).
pub fn alive_tasks() -> usize {
    let current =
        tokio::runtime::Handle::try_current().map_or(0, |h| h.metrics().num_alive_tasks());
    let conns: usize = CONN_RUNTIMES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(_, h)| h.metrics().num_alive_tasks())
        .sum();
    current + conns
}

impl Drop for ConnThreads {
    fn drop(&mut self) {
        CONN_RUNTIMES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(s, _)| *s != self.serial);
    }
}

impl ConnThreads {
    /// Start `n` (at least 1) threads named `{name}-{i}`.
    pub fn start(n: usize, name: &str) -> std::io::Result<Self> {
        let (mut handles, mut stops) = (Vec::new(), Vec::new());
        for i in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(rt.handle().clone());
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            stops.push(stop);
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    let _ = rt.block_on(stopped);
                })?;
        }
        static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        CONN_RUNTIMES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(handles.iter().map(|h| (serial, h.clone())));
        Ok(Self {
            handles,
            next: std::sync::atomic::AtomicUsize::new(0),
            _stop: stops,
            serial,
        })
    }

    /// The runtime the next connection goes to.
    fn pick(&self) -> &tokio::runtime::Handle {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.handles[i % self.handles.len()]
    }
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
    L::Io: AsyncRead + AsyncWrite + Unpin + Send + Rehome + 'static,
{
    let threads = match limits.threads {
        0 => None,
        n => match ConnThreads::start(n, &format!("{scheme}-conn")) {
            Ok(t) => Some(t),
            Err(e) => {
                warn!(scheme, error = %e, "http: could not start connection threads; serving on the shared runtime");
                None
            }
        },
    };
    // The node's runtime: requests other than viewers' media are answered there.
    let main = tokio::runtime::Handle::current();
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
        // On a connection thread if there are any (and the connection can move there).
        let (io, home) = match threads.as_ref().map(ConnThreads::pick) {
            None => (Some(io), None),
            Some(handle) => match io.rehome(handle) {
                Err(io) => (Some(io), None),
                Ok(Ok(io)) => (Some(io), Some(handle.clone())),
                Ok(Err(e)) => {
                    debug!(%peer, scheme, error = %e, "could not move a connection");
                    (None, None)
                }
            },
        };
        let Some(io) = io else { continue };
        let (app, router) = (app.clone(), router.clone());
        let hop = home.as_ref().map(|_| main.clone());
        let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            let (app, router, hop) = (app.clone(), router.clone(), hop.clone());
            async move {
                if let Some(resp) = super::playback::fast_media(&app, &req, peer).await {
                    return Ok::<_, Infallible>(resp);
                }
                // What handlers read as `ConnectInfo<PeerAddr>`.
                req.extensions_mut().insert(ConnectInfo(PeerAddr(peer)));
                match &hop {
                    None => router.oneshot(req).await,
                    // Off the connection threads: what these handlers spawn (WebSocket
                    // sessions, replication, cluster calls) belongs on the node's runtime.
                    Some(main) => main.spawn(router.oneshot(req)).await.unwrap_or_else(|e| {
                        warn!(%peer, scheme, error = %e, "http: a handler failed");
                        Ok(StatusCode::INTERNAL_SERVER_ERROR.into_response())
                    }),
                }
            }
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let conn = graceful.watch(conn);
        let task = async move {
            let _permit = permit;
            if let Err(e) = conn.await {
                debug!(%peer, scheme, error = %e, "connection ended with an error");
            }
        };
        match home {
            Some(handle) => drop(handle.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where a task spawned on `handle` runs.
    fn thread_of(handle: &tokio::runtime::Handle) -> String {
        let (tx, rx) = std::sync::mpsc::channel();
        handle.spawn(async move {
            let _ = tx.send(std::thread::current().name().unwrap_or("").to_owned());
        });
        rx.recv_timeout(Duration::from_secs(5)).unwrap()
    }

    /// Whether `alive_tasks()` becomes `n` within 5 s (a finished task is released by its
    /// thread a moment after its output is taken).
    fn alive_becomes(n: usize) -> bool {
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while alive_tasks() != n {
            if std::time::Instant::now() > until {
                return false;
            }
            std::thread::yield_now();
        }
        true
    }

    #[test]
    fn conn_threads_take_connections_in_turn_and_count_in_alive_tasks() {
        let threads = ConnThreads::start(2, "t").unwrap();
        let order: Vec<String> = (0..4).map(|_| thread_of(threads.pick())).collect();
        assert_eq!(order, ["t-0", "t-1", "t-0", "t-1"]);

        // Outside any runtime, the gauge is the connection threads' tasks alone.
        assert!(alive_becomes(0));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let waiting = threads.pick().spawn(async move {
            let _ = rx.await;
        });
        assert_eq!(alive_tasks(), 1);
        drop(tx);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(waiting).unwrap();
        assert!(alive_becomes(0));

        // Stopped threads leave the gauge.
        let _parked = threads.pick().spawn(std::future::pending::<()>());
        assert_eq!(alive_tasks(), 1);
        drop(threads);
        assert!(alive_becomes(0));
    }

    #[test]
    fn at_least_one_conn_thread() {
        let threads = ConnThreads::start(0, "z").unwrap();
        assert_eq!(thread_of(threads.pick()), "z-0");
    }
}
