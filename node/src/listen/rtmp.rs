//! The RTMP listener: one task per connection drives a sans-IO
//! [`ServerConnection`](hivecast_proto::rtmp::ServerConnection): read bytes, feed them in,
//! handle the events (key check, stream start, frames to the ingest), write what it wants sent.
//!
//! Limits: a connection semaphore; the handshake and publish must complete within
//! `handshake_timeout_ms`; a silent peer is dropped after `idle_timeout_ms`; chunk and message
//! sizes are capped by the session's `RtmpLimits`. Frames go to the ingest through a bounded
//! channel; when it is full this task waits, which pushes back on the encoder through TCP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use hivecast_actors::registry::RegistryError;
use hivecast_actors::stream::ingest::{IngestInput, SourceMetadata};
use hivecast_proto::rtmp::{RtmpEvent, RtmpLimits, ServerConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::app::App;

/// The RTMP application name publishers use: `rtmp://HOST:1935/live/{key}`.
pub const APP_NAME: &str = "live";

/// Accept connections forever.
pub async fn serve(app: Arc<App>, listener: TcpListener) {
    let permits = Arc::new(Semaphore::new(app.config.rtmp.max_connections.max(1)));
    let mut backoff = Duration::from_millis(5);
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(x) => {
                backoff = Duration::from_millis(5);
                x
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(error = %e, "rtmp accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            warn!(%peer, "rtmp: too many connections, refusing");
            continue;
        };
        let app = app.clone();
        let span = info_span!("rtmp", %peer);
        tokio::spawn(
            async move {
                let _permit = permit;
                match Connection::new(app, peer).run(sock).await {
                    Ok(()) => debug!("connection closed"),
                    Err(e) => info!(reason = %e, "connection dropped"),
                }
            }
            .instrument(span),
        );
    }
}

struct Connection {
    app: Arc<App>,
    peer: SocketAddr,
    session: ServerConnection,
    /// Frames to the stream's ingest, once publishing.
    ingest: Option<mpsc::Sender<IngestInput>>,
    stream: Option<String>,
    /// Close after flushing the output (a refusal).
    closing: bool,
}

impl Connection {
    fn new(app: Arc<App>, peer: SocketAddr) -> Self {
        let limits = RtmpLimits {
            max_chunk_size: app.config.rtmp.max_chunk_size,
            max_message_len: app.config.rtmp.max_message_len,
            ..RtmpLimits::default()
        };
        Self {
            app,
            peer,
            session: ServerConnection::new(limits),
            ingest: None,
            stream: None,
            closing: false,
        }
    }

    async fn run(mut self, mut sock: TcpStream) -> Result<(), String> {
        let _ = sock.set_nodelay(true);
        let handshake_deadline =
            Instant::now() + Duration::from_millis(self.app.config.rtmp.handshake_timeout_ms);
        let idle = Duration::from_millis(self.app.config.rtmp.idle_timeout_ms);
        let mut buf = vec![0u8; 64 * 1024];
        let mut out = BytesMut::with_capacity(16 * 1024);
        let result = loop {
            // Until publishing starts the whole exchange has one deadline; afterwards each
            // read has the idle timeout.
            let deadline = if self.ingest.is_some() {
                Instant::now() + idle
            } else {
                handshake_deadline
            };
            let n = match tokio::time::timeout_at(deadline, sock.read(&mut buf)).await {
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
        // Dropping the sender without `End` tells the ingest the connection was lost.
        self.ingest = None;
        let _ = sock.shutdown().await;
        result
    }

    async fn flush(&mut self, sock: &mut TcpStream, out: &mut BytesMut) -> std::io::Result<()> {
        while self.session.poll_transmit(out) {}
        if !out.is_empty() {
            sock.write_all(out).await?;
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
                    if let Some(tx) = &self.ingest {
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
                    if let Some(tx) = &self.ingest {
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
                    if let Some(tx) = &self.ingest {
                        tx.send(IngestInput::Audio {
                            timestamp_ms,
                            payload,
                        })
                        .await
                        .map_err(|_| "stream closed by the server".to_owned())?;
                    }
                }
                RtmpEvent::PublishFinished => {
                    if let Some(tx) = self.ingest.take() {
                        let _ = tx.send(IngestInput::End).await;
                        info!(stream = ?self.stream, "unpublished");
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
                self.app.storage.audit(
                    "",
                    "publish_rejected",
                    "unknown or revoked stream key",
                    remote,
                );
                self.session
                    .reject(request_id, "invalid stream key")
                    .map_err(|e| e.to_string())?;
                return Err("invalid stream key".into());
            }
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
                self.ingest = Some(tx);
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
