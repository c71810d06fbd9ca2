//! The RTMP listener: one task per connection drives a sans-IO
//! [`ServerConnection`](hivecast_proto::rtmp::ServerConnection): read bytes, feed them in,
//! handle the events (key check, stream start, frames to the ingest), write what it wants sent.
//!
//! RTMPS (`tls.rtmps_listen`, when `[tls]` is on) is the same session over a TLS stream
//! (`rtmps://HOST:1936/live/{key}`); both ports share every limit below.
//!
//! Limits: a connection semaphore (`max_connections`); at most `max_streams` accepted publishes
//! at once ([`StreamSlots`]: a publish beyond it is denied before the stream is claimed); the
//! TLS handshake (RTMPS), the RTMP handshake and the publish must complete within
//! `handshake_timeout_ms`, counted from the TCP accept; a silent peer is dropped after
//! `idle_timeout_ms`; chunk and message sizes are capped by the session's `RtmpLimits`.
//! Frames go to the ingest through a bounded channel; when it is full this task waits, which
//! pushes back on the encoder through TCP.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use hivecast_actors::registry::RegistryError;
use hivecast_actors::stream::ingest::{IngestInput, SourceMetadata};
use hivecast_proto::rtmp::{RtmpEvent, RtmpLimits, ServerConnection};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::app::App;
use crate::throttle::{AddressLedger, LogEvery, LogPerCause};

/// The RTMP application name publishers use: `rtmp://HOST:1935/live/{key}`.
pub const APP_NAME: &str = "live";

/// Accepts RTMP connections on `listener`, and RTMPS ones on `rtmps` when TLS is on, forever.
///
/// Both ports share one connection semaphore (`rtmp.max_connections`) and one set of
/// [`StreamSlots`] (`rtmp.max_streams`): the limits are the node's, not each port's.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    rtmps: Option<(TcpListener, TlsAcceptor)>,
) {
    let rtmp = &app.config.rtmp;
    let limits = Limits {
        permits: Arc::new(Semaphore::new(rtmp.max_connections.max(1))),
        slots: StreamSlots::new(rtmp.max_streams),
        ledger: AddressLedger::new(
            rtmp.max_connections_per_address,
            rtmp.auth_failures_per_minute,
            Duration::from_millis(rtmp.auth_failure_delay_ms),
        ),
    };
    tokio::spawn(report_failures(app.clone(), limits.ledger.clone()));
    if let Some((tls_listener, acceptor)) = rtmps {
        tokio::spawn(accept_loop(
            app.clone(),
            tls_listener,
            Some(acceptor),
            limits.clone(),
        ));
    }
    accept_loop(app, listener, None, limits).await;
}

/// The limits both listeners share.
#[derive(Clone)]
struct Limits {
    /// One permit per open connection, plain or TLS.
    permits: Arc<Semaphore>,
    /// One slot per accepted publish.
    slots: StreamSlots,
    /// Per-address connection caps and failed-publish throttling.
    ledger: Arc<AddressLedger>,
}

/// How often failed publishes not audited one by one are written in aggregate.
const SUMMARY_EVERY: Duration = Duration::from_secs(5);

/// Write the aggregated failed-publish rows (one per address and period) and say so once.
async fn report_failures(app: Arc<App>, ledger: Arc<AddressLedger>) {
    let mut tick = tokio::time::interval(SUMMARY_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for s in ledger.drain_summaries() {
            let detail = format!(
                "{} publish attempts with unknown or revoked keys in the last {} s (throttled: audited in aggregate)",
                s.count, s.over_s
            );
            warn!(addr = %s.addr, count = s.count, "rtmp: repeated publishes with bad keys, throttled");
            app.storage.audit(
                "",
                "publish_rejected_aggregate",
                &detail,
                Some(s.addr.to_string()),
            );
        }
    }
}

/// Accepts connections on one port; `tls`: each is wrapped in TLS (RTMPS) before RTMP starts.
async fn accept_loop(
    app: Arc<App>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: Limits,
) {
    let scheme = if tls.is_some() { "rtmps" } else { "rtmp" };
    let refusals = LogEvery::new(Duration::from_secs(10));
    let full = LogEvery::new(Duration::from_secs(10));
    // Peers dropped before they published: one line per cause and 10 s (floods of one kind).
    let drops = Arc::new(LogPerCause::new(Duration::from_secs(10)));
    let mut backoff = Duration::from_millis(5);
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(x) => {
                backoff = Duration::from_millis(5);
                x
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(error = %e, scheme, "rtmp accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let accepted = Instant::now();
        let Ok(permit) = limits.permits.clone().try_acquire_owned() else {
            if full.allow() {
                warn!(%peer, scheme, limit = app.config.rtmp.max_connections,
                    "rtmp: node connection limit reached, refusing (logged once per 10 s)");
            }
            continue;
        };
        let Some(addr_slot) = limits.ledger.connect(peer.ip()) else {
            if refusals.allow() {
                warn!(%peer, scheme, limit = app.config.rtmp.max_connections_per_address,
                    "rtmp: too many connections from one address, refusing (logged once per 10 s)");
            }
            continue;
        };
        let _ = sock.set_nodelay(true);
        let (app, slots, tls) = (app.clone(), limits.slots.clone(), tls.clone());
        let (ledger, drops) = (limits.ledger.clone(), drops.clone());
        let span = info_span!("rtmp", %peer, tls = tls.is_some());
        tokio::spawn(
            async move {
                let _permit = (permit, addr_slot);
                let conn = Connection::new(app, peer, slots, ledger);
                let (result, published) = match tls {
                    None => conn.run(sock, accepted).await,
                    Some(acceptor) => {
                        // The TLS handshake counts against the RTMP handshake deadline.
                        let deadline = accepted + conn.handshake_timeout();
                        match tokio::time::timeout_at(deadline, acceptor.accept(sock)).await {
                            Ok(Ok(stream)) => conn.run(stream, accepted).await,
                            Ok(Err(e)) => (Err(format!("TLS handshake: {e}")), false),
                            Err(_) => (Err("TLS handshake not completed in time".to_owned()), false),
                        }
                    }
                };
                match result {
                    Ok(()) => debug!("connection closed"),
                    // A broadcaster's connection: always said.
                    Err(e) if published => info!(reason = %e, "connection dropped"),
                    Err(e) => {
                        if let Some(held_back) = drops.allow(drop_cause(&e)) {
                            info!(reason = %e, held_back,
                                "connection dropped before publishing (one line per cause and 10 s; held_back: like it since the last line)");
                        }
                    }
                }
            }
            .instrument(span),
        );
    }
}

/// Read buffer of a publishing connection (media arrives in chunks of up to 64 KiB).
const PUBLISHING_READ_BUFFER: usize = 64 * 1024;

/// The kind of a pre-publish drop, for [`LogPerCause`].
fn drop_cause(reason: &str) -> &'static str {
    if reason.contains("not completed in time") {
        "timeout"
    } else if reason.starts_with("protocol:") {
        "protocol"
    } else if reason.starts_with("TLS") {
        "tls"
    } else if reason.starts_with("read:") || reason.starts_with("write:") {
        "io"
    } else {
        "refused"
    }
}

/// The streams this node originates at once (`rtmp.max_streams`; 0: no limit). Every accepted
/// publish holds a [`StreamSlot`] for as long as it lasts; the count is one atomic, so two
/// publishes racing for the last slot cannot both get it.
#[derive(Debug, Clone)]
struct StreamSlots {
    limit: usize,
    used: Arc<AtomicUsize>,
}

/// One taken [`StreamSlots`] slot, freed on drop: it lives in the connection's [`Publishing`],
/// so whatever ends the publish frees it: an unpublish, a lost, failed or idle connection, or
/// the server ending the stream (the connection then closes at its next frame, or at its idle
/// timeout if the publisher sends nothing).
#[derive(Debug)]
struct StreamSlot {
    used: Arc<AtomicUsize>,
}

impl StreamSlots {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            used: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A slot, or `None` when all `limit` are taken (never without a limit).
    fn try_take(&self) -> Option<StreamSlot> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (self.limit == 0 || n < self.limit).then_some(n + 1)
            })
            .ok()
            .map(|_| StreamSlot {
                used: self.used.clone(),
            })
    }

    /// Slots taken now.
    #[cfg(test)]
    fn in_use(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.used.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The publish a connection carries once accepted.
struct Publishing {
    /// Frames to the stream's ingest.
    tx: mpsc::Sender<IngestInput>,
    /// This publish's place under `rtmp.max_streams`, held exactly as long as `tx`.
    _slot: StreamSlot,
}

struct Connection {
    app: Arc<App>,
    peer: SocketAddr,
    session: ServerConnection,
    /// The node's stream slots, one taken per accepted publish.
    slots: StreamSlots,
    /// Per-address failed-publish accounting.
    ledger: Arc<AddressLedger>,
    /// Set once publishing.
    ingest: Option<Publishing>,
    stream: Option<String>,
    /// Close after flushing the output (a refusal).
    closing: bool,
    /// The peer's RTMP `connect` was accepted (audited; so is its disconnect).
    connected: bool,
    /// Message types skipped so far (each logged once).
    ignored: Vec<u8>,
}

impl Connection {
    fn new(
        app: Arc<App>,
        peer: SocketAddr,
        slots: StreamSlots,
        ledger: Arc<AddressLedger>,
    ) -> Self {
        let limits = RtmpLimits {
            max_chunk_size: app.config.rtmp.max_chunk_size,
            max_message_len: app.config.rtmp.max_message_len,
            ..RtmpLimits::default()
        };
        Self {
            app,
            peer,
            session: ServerConnection::new(limits),
            slots,
            ledger,
            ingest: None,
            stream: None,
            closing: false,
            connected: false,
            ignored: Vec::new(),
        }
    }

    /// `rtmp.handshake_timeout_ms`: from accept to an accepted publish (TLS included).
    fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.app.config.rtmp.handshake_timeout_ms)
    }

    /// Drives the session over `sock` (TCP, or TLS for RTMPS) until it ends; `accepted`: when the
    /// TCP connection was accepted, the start of the handshake deadline. Returns how it ended
    /// and whether a publish was accepted on it.
    async fn run<S>(mut self, mut sock: S, accepted: Instant) -> (Result<(), String>, bool)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let handshake_deadline = accepted + self.handshake_timeout();
        let idle = Duration::from_millis(self.app.config.rtmp.idle_timeout_ms);
        // Small until a publish is accepted: thousands of peers that never finish the
        // handshake cost little each (issue 8: a 2,000-connection flood).
        let mut buf = vec![0u8; 4 * 1024];
        let mut out = BytesMut::with_capacity(4 * 1024);
        let result = loop {
            // Until publishing starts the whole exchange has one deadline; afterwards each
            // read has the idle timeout.
            let deadline = if self.ingest.is_some() {
                if buf.len() < PUBLISHING_READ_BUFFER {
                    buf.resize(PUBLISHING_READ_BUFFER, 0);
                }
                Instant::now() + idle
            } else {
                handshake_deadline
            };
            // A stream the server ended (an ingest failure: a bad sequence header, a codec
            // change, the media timeout; or fencing) closes its connection at once, not at the
            // publisher's next frame or idle timeout.
            let ingest_gone = async {
                match &self.ingest {
                    Some(p) => p.tx.closed().await,
                    None => std::future::pending().await,
                }
            };
            let read = tokio::select! {
                r = tokio::time::timeout_at(deadline, sock.read(&mut buf)) => r,
                () = ingest_gone => break Err("stream ended by the server".to_owned()),
            };
            let n = match read {
                Err(_) if self.ingest.is_some() => {
                    break Err(format!("idle for {} ms", idle.as_millis()))
                }
                Err(_) => break Err("handshake/publish not completed in time".to_owned()),
                Ok(Err(e)) => break Err(format!("read: {e}")),
                Ok(Ok(0)) => break Ok(()),
                Ok(Ok(n)) => n,
            };
            if let Err(e) = self.session.feed(&buf[..n]) {
                break Err(format!("protocol: {e}"));
            }
            if let Err(e) = self.drain_events().await {
                // Flush what the session queued (a refusal status) before closing.
                self.flush(&mut sock, &mut out).await.ok();
                break Err(e);
            }
            if let Err(e) = self.flush(&mut sock, &mut out).await {
                break Err(format!("write: {e}"));
            }
            if self.closing {
                break Ok(());
            }
        };
        // Dropping the sender without `End` tells the ingest the connection was lost; the
        // stream slot goes with it.
        self.ingest = None;
        let _ = sock.shutdown().await;
        // An address over its failed-publish limit is audited in aggregate only.
        if self.connected && !self.ledger.is_noisy(self.peer.ip()) {
            let why = match &result {
                Ok(()) => "closed".to_owned(),
                Err(e) => e.clone(),
            };
            self.app.storage.audit(
                self.stream.as_deref().unwrap_or(""),
                "disconnect",
                &why,
                Some(self.peer.to_string()),
            );
        }
        (result, self.stream.is_some())
    }

    async fn flush<S>(&mut self, sock: &mut S, out: &mut BytesMut) -> std::io::Result<()>
    where
        S: AsyncWrite + Unpin,
    {
        while self.session.poll_transmit(out) {}
        if !out.is_empty() {
            sock.write_all(out).await?;
            // TLS buffers records until flushed (a no-op on TCP).
            sock.flush().await?;
            out.clear();
        }
        Ok(())
    }

    async fn drain_events(&mut self) -> Result<(), String> {
        while let Some(ev) = self.session.poll_event() {
            match ev {
                RtmpEvent::ConnectRequested { request_id, app } => {
                    if app.trim_end_matches('/') == APP_NAME {
                        self.session.accept(request_id).map_err(|e| e.to_string())?;
                        if !self.connected {
                            self.connected = true;
                            if !self.ledger.is_noisy(self.peer.ip()) {
                                self.app.storage.audit(
                                    "",
                                    "connect",
                                    &format!("RTMP connect to /{APP_NAME}"),
                                    Some(self.peer.to_string()),
                                );
                            }
                        }
                    } else {
                        self.session
                            .reject(
                                request_id,
                                &format!(
                                    "unknown application {app:?}: publish to /{APP_NAME}/{{key}}"
                                ),
                            )
                            .map_err(|e| e.to_string())?;
                        self.closing = true;
                    }
                }
                RtmpEvent::PublishRequested {
                    request_id, key, ..
                } => {
                    self.publish(request_id, &key).await?;
                }
                RtmpEvent::Metadata(m) => {
                    if let Some(Publishing { tx, .. }) = &self.ingest {
                        let md = SourceMetadata {
                            frame_rate: m.framerate.map(f64::from),
                            video_kbps: m.video_data_rate_kbps.map(f64::from),
                            audio_kbps: m.audio_data_rate_kbps.map(f64::from),
                        };
                        tx.send(IngestInput::Metadata(md))
                            .await
                            .map_err(|_| "stream closed".to_owned())?;
                    }
                }
                RtmpEvent::Video {
                    timestamp_ms,
                    payload,
                } => {
                    if let Some(Publishing { tx, .. }) = &self.ingest {
                        tx.send(IngestInput::Video {
                            timestamp_ms,
                            payload,
                        })
                        .await
                        .map_err(|_| "stream closed by the server".to_owned())?;
                    }
                }
                RtmpEvent::Audio {
                    timestamp_ms,
                    payload,
                } => {
                    if let Some(Publishing { tx, .. }) = &self.ingest {
                        tx.send(IngestInput::Audio {
                            timestamp_ms,
                            payload,
                        })
                        .await
                        .map_err(|_| "stream closed by the server".to_owned())?;
                    }
                }
                RtmpEvent::PublishFinished => {
                    if let Some(Publishing { tx, .. }) = self.ingest.take() {
                        let _ = tx.send(IngestInput::End).await;
                        info!(stream = ?self.stream, "unpublished");
                    }
                }
                RtmpEvent::Ignored { type_id } => {
                    if !self.ignored.contains(&type_id) {
                        self.ignored.push(type_id);
                        info!(type_id, stream = ?self.stream,
                            "skipped an RTMP message of a type not used when publishing (said once per type and connection)");
                    }
                }
                other => debug!(event = ?other, "rtmp event"),
            }
        }
        Ok(())
    }

    async fn publish(&mut self, request_id: u32, key: &str) -> Result<(), String> {
        let remote = Some(self.peer.to_string());
        if self.ingest.is_some() {
            self.session
                .reject(request_id, "already publishing on this connection")
                .map_err(|e| e.to_string())?;
            return Err("second publish on one connection".into());
        }
        let stream = match self.app.registry.check_key(key) {
            Some(s) => s,
            None => {
                let failure = self.ledger.failed(self.peer.ip());
                if failure.audit {
                    self.app.storage.audit(
                        "",
                        "publish_rejected",
                        "unknown or revoked stream key",
                        remote,
                    );
                }
                // Past the address's limit: answer slowly (a guesser gets one try per delay).
                if !failure.delay.is_zero() {
                    tokio::time::sleep(failure.delay).await;
                }
                self.session
                    .reject(request_id, "invalid stream key")
                    .map_err(|e| e.to_string())?;
                return Err("invalid stream key".into());
            }
        };
        // Before the claim: a refused publish leaves the stream's state as it was.
        let Some(slot) = self.slots.try_take() else {
            let limit = self.slots.limit;
            let reason = format!("node stream limit ({limit}) reached");
            warn!(%stream, limit, "publish refused: node stream limit reached");
            self.app
                .storage
                .audit(stream.as_str(), "publish_rejected", &reason, remote);
            self.session
                .deny(request_id, &reason)
                .map_err(|e| e.to_string())?;
            return Err(reason);
        };
        match self.app.start_stream(stream.clone()).await {
            Ok((epoch, tx)) => {
                self.session.accept(request_id).map_err(|e| e.to_string())?;
                self.app.storage.audit(
                    stream.as_str(),
                    "publish_accepted",
                    &format!("epoch {epoch}"),
                    remote,
                );
                info!(%stream, %epoch, "publishing");
                self.ingest = Some(Publishing { tx, _slot: slot });
                self.stream = Some(stream.to_string());
                Ok(())
            }
            Err(RegistryError::AlreadyLive { epoch, .. }) => {
                self.app.storage.audit(
                    stream.as_str(),
                    "publish_rejected",
                    &format!("stream already live (epoch {epoch})"),
                    remote,
                );
                self.session
                    .reject(request_id, "stream is already being published")
                    .map_err(|e| e.to_string())?;
                Err(format!("stream {stream} already live"))
            }
            Err(e) => {
                self.session
                    .reject(request_id, "server error")
                    .map_err(|e| e.to_string())?;
                Err(format!("start: {e}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_stop_at_the_limit_and_free_on_drop() {
        let slots = StreamSlots::new(2);
        let a = slots.try_take().expect("first");
        let b = slots.try_take().expect("second");
        assert!(slots.try_take().is_none(), "a third is over the limit");
        assert_eq!(slots.in_use(), 2);
        drop(a);
        assert_eq!(slots.in_use(), 1);
        let c = slots.try_take().expect("a freed slot is taken again");
        assert!(slots.try_take().is_none());
        drop((b, c));
        assert_eq!(slots.in_use(), 0);
    }

    #[test]
    fn zero_means_no_limit() {
        let slots = StreamSlots::new(0);
        let taken: Vec<_> = (0..10_000)
            .map(|_| slots.try_take().expect("slot"))
            .collect();
        assert_eq!(slots.in_use(), 10_000);
        drop(taken);
        assert_eq!(slots.in_use(), 0);
    }

    /// Many publishes racing for few slots: exactly `limit` win, and all come back.
    #[test]
    fn racing_takers_never_exceed_the_limit() {
        let slots = StreamSlots::new(3);
        let barrier = Arc::new(std::sync::Barrier::new(16));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (slots, barrier) = (slots.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    slots.try_take()
                })
            })
            .collect();
        let won: Vec<StreamSlot> = threads
            .into_iter()
            .filter_map(|t| t.join().expect("thread"))
            .collect();
        assert_eq!(won.len(), 3);
        assert_eq!(slots.in_use(), 3);
        drop(won);
        assert_eq!(slots.in_use(), 0);
    }
}
