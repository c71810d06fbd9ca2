//! hivecast: one node of a live video streaming cluster.
//!
//! Layout: `cli` (commands), `config` (figment), `storage` (redb: keys, streams, audit; the
//! single-node registry), `keys`, `app` (shared state, stream manager), `listen/` (RTMP, and
//! TLS: HTTPS and RTMPS),
//! `http/` (API, playback, WebSocket). This crate alone knows URLs, JSON and config files.

mod analytics;
mod app;
mod cli;
mod cluster;
mod config;
mod http;
mod keys;
mod listen;
mod storage;
mod throttle;
mod tokens;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::Parser;
use hivecast_actors::events::EventHub;
use hivecast_actors::store::SegmentStore;
use hivecast_actors::types::StreamName;
use tokio::net::TcpListener;
use tracing::info;

use crate::app::App;
use crate::cli::{Cli, Command};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::storage::Storage;

/// Accept-queue length of the listeners: a burst of connections (a flood beside real
/// viewers, or thousands of players tuning in at once) waits in the kernel instead of having
/// its SYNs dropped and retried a second or more later. The kernel caps it at
/// `net.core.somaxconn` (4096 on these machines).
const LISTEN_BACKLOG: u32 = 4096;

/// A TCP listener on `addr` with [`LISTEN_BACKLOG`] (tokio's `bind` leaves the standard
/// library's 128).
fn bind_listener(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Run { config } => rt.block_on(run(config)),
        Command::Key { op, config, url } => rt.block_on(cli::key(op, config, url)),
        Command::Token { op, config, url } => rt.block_on(cli::token(op, config, url)),
        Command::Cluster { op, config, url } => rt.block_on(cli::cluster(op, config, url)),
    }
}

async fn run(config: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=warn,ractor=warn,openraft=warn".into()),
        )
        .init();
    raise_open_files_limit();
    let cfg = Config::load(config.as_deref()).context("loading configuration")?;
    let hub = EventHub::new(1024);
    let storage = Storage::open_with(&cfg.node.data_dir, cfg.audit.max_entries)
        .with_context(|| format!("opening storage in {}", cfg.node.data_dir.display()))?;
    let store = SegmentStore::new();
    let registry = Cluster::start(&cfg, status_observer(&cfg, &storage, &hub), store.clone())
        .await
        .context("starting the registry")?;
    let (admin_token, generated) = resolve_admin_token(&cfg)?;

    let rtmp = bind_listener(cfg.rtmp.listen)
        .with_context(|| format!("binding RTMP on {}", cfg.rtmp.listen))?;
    let http = bind_listener(cfg.http.listen)
        .with_context(|| format!("binding HTTP on {}", cfg.http.listen))?;
    // `[tls]`: HTTPS (HTTP/2 + HTTP/1.1) and RTMPS beside the plain listeners.
    let tls = if cfg.tls.enabled() {
        let tls = listen::tls::Tls::setup(&cfg.tls, &cfg.node.data_dir)
            .context("setting up TLS ([tls])")?;
        let https = bind_listener(cfg.tls.https_listen)
            .with_context(|| format!("binding HTTPS on {}", cfg.tls.https_listen))?;
        let rtmps = bind_listener(cfg.tls.rtmps_listen)
            .with_context(|| format!("binding RTMPS on {}", cfg.tls.rtmps_listen))?;
        Some((tls, https, rtmps))
    } else {
        if cfg.tls.admin_https_only {
            tracing::warn!(
                "tls.admin_https_only is on but TLS is off: the admin API refuses every request"
            );
        }
        None
    };

    let app = Arc::new(App {
        config: cfg.clone(),
        admin_token: admin_token.clone(),
        store: store.clone(),
        storage: storage.clone(),
        registry: registry.clone(),
        replicas: cluster::replicate::Replicas::new(registry.clone(), store, cfg.clone()),
        hub,
        live: Mutex::new(HashMap::new()),
        stats: Mutex::new(HashMap::new()),
        requests: std::sync::atomic::AtomicU64::new(0),
        transcode_slots: Arc::new(tokio::sync::Semaphore::new(cfg.transcode.capacity)),
        analytics: analytics::Analytics::new(
            &cfg.analytics,
            std::time::Duration::from_millis(cfg.media.segment_target_ms),
        ),
        playback: tokens::PlaybackTokens::load(&cfg.playback.token_secret, &cfg.node.data_dir)?,
    });
    tokio::spawn(analytics::Analytics::run(app.clone()));
    let (tls_store, https_listener, rtmps) = match tls {
        Some((tls, https, rtmps)) => (
            Some(tls.store),
            Some(listen::tls::TlsListener::spawn(https, tls.https)?),
            Some((rtmps, tls.rtmps)),
        ),
        None => (None, None, None),
    };
    tokio::spawn(listen::rtmp::serve(app.clone(), rtmp, rtmps));
    // SIGHUP reloads the certificate (and never stops the node, TLS or not).
    tokio::spawn(listen::tls::watch_reloads(tls_store));
    tokio::spawn(app.clone().sweep_ended());
    tokio::spawn(app.clone().report_load());
    tokio::spawn(app.clone().fence_superseded());
    {
        let (cfg, registry) = (cfg.clone(), registry.clone());
        tokio::spawn(async move {
            if !registry
                .wait_ready(std::time::Duration::from_secs(60))
                .await
            {
                tracing::warn!("registry: no leader after 60 s; publishing waits for one");
                return;
            }
            match registry.fail_own_orphans().await {
                Ok(0) => {}
                Ok(n) => info!(
                    orphans = n,
                    "streams left live by a previous run moved to ERROR"
                ),
                Err(e) => tracing::warn!(error = %e, "could not fail orphaned streams"),
            }
            if generated {
                if let Err(e) = first_start_banner(&cfg, &registry, &admin_token).await {
                    tracing::warn!(error = %e, "could not create the demo key");
                }
            }
        });
    }
    if cfg.tls.enabled() {
        info!(rtmp = %cfg.rtmp.listen, http = %cfg.http.listen, https = %cfg.tls.https_listen,
            rtmps = %cfg.tls.rtmps_listen, node = %cfg.node.id, "hivecast node ready");
    } else {
        info!(rtmp = %cfg.rtmp.listen, http = %cfg.http.listen, node = %cfg.node.id, "hivecast node ready");
    }
    // Viewer connections: TCP_NODELAY, and sealed segments sent with sendfile (http::zerocopy).
    hivecast_actors::store::sealed::set_enabled(cfg.http.zero_copy);
    // One stop signal for both HTTP servers.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let router = http::router(app.clone());
    let limits = http::server::Limits {
        header_read_timeout: std::time::Duration::from_millis(cfg.http.header_read_timeout_ms),
        max_connections: cfg.http.max_connections,
        threads: 0,
    };
    let mut https = https_listener.map(|l| {
        tokio::spawn(http::server::serve(
            l,
            app.clone(),
            router.clone(),
            limits,
            "https",
            stopped(),
        ))
    });
    // tls.admin_https_only: credentials are refused on the plain port only.
    let plain = if cfg.tls.admin_https_only {
        router.layer(axum::middleware::from_fn(listen::tls::https_only))
    } else {
        router
    };
    // Half the cores by default: the rest ingest, transcode and package (nginx-rtmp's worker
    // model, but leaving room for the ladder).
    let threads = match cfg.http.threads {
        0 => std::thread::available_parallelism()
            .map_or(1, |n| n.get() / 2)
            .max(1),
        n => n,
    };
    let server = http::server::serve(
        http::zerocopy::ViewerListener(http),
        app.clone(),
        plain,
        http::server::Limits { threads, ..limits },
        "http",
        stopped(),
    );
    let mut server = std::pin::pin!(server);
    tokio::select! {
        () = &mut server => {},
        _ = shutdown() => {
            // SIGTERM / Ctrl-C: live streams end as an unpublish would, then the listener stops
            // taking connections; open ones (keep-alive viewers, WebSockets) get a moment to
            // finish. The whole exit stays within 5 s.
            let started = std::time::Instant::now();
            let (ended, left) = app.end_all(std::time::Duration::from_secs(3)).await;
            info!(ended, left, "shutting down: live streams ended");
            let _ = stop_tx.send(true);
            let _ = tokio::time::timeout(std::time::Duration::from_millis(500), async {
                let _ = (&mut server).await;
                if let Some(https) = https.as_mut() {
                    let _ = https.await;
                }
            })
            .await;
            info!(ms = started.elapsed().as_millis() as u64, "listeners closed");
        }
    }
    if tokio::time::timeout(std::time::Duration::from_secs(1), registry.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("registry shutdown took over 1 s; exiting anyway");
    }
    info!("shut down");
    Ok(())
}

/// Raise the soft limit on open files (`RLIMIT_NOFILE`) to the hard limit, before any listener
/// exists. Every viewer connection is a descriptor, and the usual soft default of 1024 would cap
/// a node at about a thousand viewers (accept then fails with EMFILE) while the hard limit the
/// administrator set (20,000 on the target machines) allows far more. Logs the result at info;
/// a failure leaves the limit as it was and is logged as a warning, since the node still works.
fn raise_open_files_limit() {
    match nofile::raise_to_hard() {
        Ok(Some((soft, hard))) => info!(soft, hard, "open files limit (RLIMIT_NOFILE)"),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "could not raise the open files limit"),
    }
}

#[cfg(unix)]
mod nofile {
    /// Sets the soft `RLIMIT_NOFILE` to the hard one if lower; returns `(soft, hard)` after.
    #[allow(clippy::unnecessary_cast)] // `rlim_t` is u64 here but u32 on some 32-bit targets
    pub(crate) fn raise_to_hard() -> std::io::Result<Option<(u64, u64)>> {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one `rlimit` into the valid, exclusively borrowed `lim`.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            // SAFETY: setrlimit only reads the valid `raised`. Raising the soft limit up to the
            // hard one needs no privilege (setrlimit(2)).
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            lim = raised;
        }
        Ok(Some((lim.rlim_cur as u64, lim.rlim_max as u64)))
    }
}

#[cfg(not(unix))]
mod nofile {
    /// No `RLIMIT_NOFILE` here: nothing to raise.
    pub(crate) fn raise_to_hard() -> std::io::Result<Option<(u64, u64)>> {
        Ok(None)
    }
}

/// Applied registry status changes: announced on the hub (every node tells its own WebSocket
/// viewers), and audited by the stream's origin node.
fn status_observer(
    cfg: &Config,
    storage: &Arc<Storage>,
    hub: &EventHub,
) -> cluster::store::ChangeObserver {
    use hivecast_actors::types::StreamStatus;
    let (me, storage, hub) = (cfg.node.id.clone(), storage.clone(), hub.clone());
    Arc::new(move |changes| {
        for c in changes {
            if c.origin == me {
                let audit = match c.status {
                    StreamStatus::Active => Some(("publish_started", String::new())),
                    StreamStatus::EndedGracefully => {
                        Some(("publish_ended", "unpublished".to_owned()))
                    }
                    StreamStatus::Error => Some((
                        "stream_error",
                        format!("error: {}", c.reason.clone().unwrap_or_default()),
                    )),
                    StreamStatus::PendingIngest => None,
                };
                if let Some((event, detail)) = audit {
                    let (storage, stream) = (storage.clone(), c.stream.clone());
                    tokio::task::spawn_blocking(move || {
                        storage.audit(&stream, event, &detail, None)
                    });
                }
            }
            if let Some(ev) = cluster::status_event(c) {
                hub.publish(ev);
            }
        }
    })
}

/// The admin token: configured, or generated once and kept in `<data_dir>/admin_token`.
fn resolve_admin_token(cfg: &Config) -> anyhow::Result<(String, bool)> {
    if !cfg.auth.admin_token.is_empty() {
        return Ok((cfg.auth.admin_token.clone(), false));
    }
    let path = cfg.node.data_dir.join("admin_token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        if !t.trim().is_empty() {
            return Ok((t.trim().to_owned(), false));
        }
    }
    let token = keys::admin_token();
    write_private(&path, &token).with_context(|| format!("writing {}", path.display()))?;
    Ok((token, true))
}

fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    o.mode(0o600);
    o.open(path)?.write_all(contents.as_bytes())
}

/// Printed once, on the first start without a configured token: the token and a
/// ready-to-paste publish line for a `demo` key created now.
async fn first_start_banner(cfg: &Config, registry: &Cluster, token: &str) -> anyhow::Result<()> {
    let (key_id, key) = keys::generate();
    let demo = StreamName::new("demo").expect("valid name");
    registry.create_key(&key_id, &key, &demo).await?;
    let rtmp_port = cfg.rtmp.listen.port();
    let http_port = cfg.http.listen.port();
    println!(
        "\n\
         hivecast first start\n\
         --------------------\n\
         admin token (shown once; also stored in {dir}/admin_token):\n  {token}\n\n\
         a key for stream \"demo\" was created. Publish a test pattern with ffmpeg:\n  \
         ffmpeg -re -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine -c:v libx264 -preset veryfast -tune zerolatency -g 30 -c:a aac -f flv rtmp://127.0.0.1:{rtmp_port}/live/{key}\n\
         or in OBS: Server rtmp://127.0.0.1:{rtmp_port}/live  Stream Key {key}\n\n\
         watch:\n  http://127.0.0.1:{http_port}/hls/demo/master.m3u8   (HLS)\n  \
         http://127.0.0.1:{http_port}/cmaf/demo/master.m3u8  (LL-HLS)\n  \
         http://127.0.0.1:{http_port}/cmaf/demo/manifest.mpd (DASH)\n\n\
         more keys: hivecast key create --stream NAME\n",
        dir = cfg.node.data_dir.display()
    );
    Ok(())
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
