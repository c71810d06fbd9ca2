//! Media replication: an edge that gets a viewer request for a stream it does not hold
//! subscribes to the stream's origin over QUIC and replays the origin's store operations, so
//! its playlists are the origin's (same media sequence and part numbers, same names).
//!
//! Origin side ([`serve_subscription`]): follow the session's feed, send a snapshot of the
//! current state, a `SnapshotDone` marker, then every change as it is made, until the session
//! ends. A subscriber that falls behind the bounded feed is cut off (it resubscribes and gets
//! a fresh snapshot); a stream write that does not progress for [`WRITE_STALL`] cuts it too.
//!
//! Edge side ([`Replicas`]): one subscription per stream, started on demand, inserted in the
//! local store once its snapshot is applied. It ends with the session (ENDLIST), when the
//! registry moves the stream on (fencing: a newer epoch replaces it, a failed one is
//! interrupted: no more part hints, no ENDLIST, so a new session continues the playlists),
//! or after [`IDLE_AFTER`] without a viewer request on this node. A lost connection to a
//! still-live origin is retried with a fresh snapshot (apply is idempotent).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hivecast_actors::store::{
    MediaConfig, MediaOp, Part, SegmentStore, StreamMedia, TrackFormat, TrackInfo, TrackKind,
    TrackStats,
};
use hivecast_actors::types::{Epoch, RenditionId, StreamName};
use hivecast_proto::peer::{
    encode_frame, frame_body_len, FrameDecoder, MediaFrame, MediaFrameV1, PeerRequest, RequestV1,
    WireFormat, WireKind, WireTrackInfo, MAX_MESSAGE,
};
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, info, warn};

use super::transport::Transport;
use super::Cluster;
use crate::config::Config;

/// A push that cannot write for this long is abandoned.
const WRITE_STALL: Duration = Duration::from_secs(5);
/// An origin silent for this long (it sends a part every part target) is considered lost.
const READ_STALL: Duration = Duration::from_secs(5);
/// A replica nobody requested for this long is dropped.
const IDLE_AFTER: Duration = Duration::from_secs(30);
/// Attempts to (re)subscribe to a live origin before giving up.
const ATTEMPTS: u32 = 5;

// ---- conversions ----------------------------------------------------------------------------

fn wire_format(f: TrackFormat) -> WireFormat {
    match f {
        TrackFormat::Cmaf => WireFormat::Cmaf,
        TrackFormat::Ts => WireFormat::Ts,
    }
}

fn track_format(f: WireFormat) -> TrackFormat {
    match f {
        WireFormat::Cmaf => TrackFormat::Cmaf,
        WireFormat::Ts => TrackFormat::Ts,
    }
}

fn wire_info(i: &TrackInfo) -> WireTrackInfo {
    WireTrackInfo {
        codec: i.codec.clone(),
        width: i.width,
        height: i.height,
        frame_rate: i.frame_rate,
        sample_rate: i.sample_rate,
        channels: i.channels,
        timescale: i.timescale,
        declared_bandwidth: i.declared_bandwidth,
    }
}

fn track_info(i: WireTrackInfo) -> TrackInfo {
    TrackInfo {
        codec: i.codec,
        width: i.width,
        height: i.height,
        frame_rate: i.frame_rate,
        sample_rate: i.sample_rate,
        channels: i.channels,
        timescale: i.timescale,
        declared_bandwidth: i.declared_bandwidth,
    }
}

/// A store operation as a frame.
pub fn frame_of(op: &MediaOp) -> MediaFrameV1 {
    match op {
        MediaOp::Renditions(r) => {
            MediaFrameV1::Renditions(r.iter().map(|r| r.as_str().to_owned()).collect())
        }
        MediaOp::StartWall(ms) => MediaFrameV1::StartWall(*ms),
        MediaOp::Track {
            format,
            kind,
            rendition,
        } => MediaFrameV1::Track {
            format: wire_format(*format),
            kind: match kind {
                TrackKind::Video => WireKind::Video,
                TrackKind::Audio => WireKind::Audio,
            },
            rendition: rendition.as_str().to_owned(),
        },
        MediaOp::Init {
            format,
            rendition,
            init,
            info,
        } => MediaFrameV1::Init {
            format: wire_format(*format),
            rendition: rendition.as_str().to_owned(),
            init: init.clone(),
            info: wire_info(info),
        },
        MediaOp::Begin {
            format,
            rendition,
            msn,
            start,
            pdt_ms,
        } => MediaFrameV1::Begin {
            format: wire_format(*format),
            rendition: rendition.as_str().to_owned(),
            msn: *msn,
            start: *start,
            pdt_ms: *pdt_ms,
        },
        MediaOp::Part {
            format,
            rendition,
            msn,
            part,
        } => MediaFrameV1::Part {
            format: wire_format(*format),
            rendition: rendition.as_str().to_owned(),
            msn: *msn,
            index: part.index,
            duration: part.duration,
            independent: part.independent,
            data: part.data.clone(),
        },
        MediaOp::Finish {
            format,
            rendition,
            msn,
            end,
            data,
        } => MediaFrameV1::Finish {
            format: wire_format(*format),
            rendition: rendition.as_str().to_owned(),
            msn: *msn,
            end: *end,
            data: data.clone(),
        },
        MediaOp::Stats {
            format,
            rendition,
            stats,
        } => MediaFrameV1::Stats {
            format: wire_format(*format),
            rendition: rendition.as_str().to_owned(),
            max_segment_duration: stats.max_segment_duration,
            peak_bps: stats.peak_bps,
            total_bytes: stats.total_bytes,
            total_seconds: stats.total_seconds,
        },
        MediaOp::End => MediaFrameV1::End,
    }
}

/// A frame as a store operation (`None` for control frames).
pub fn op_of(f: MediaFrameV1) -> Option<MediaOp> {
    let rid = RenditionId;
    Some(match f {
        MediaFrameV1::Renditions(r) => MediaOp::Renditions(r.into_iter().map(rid).collect()),
        MediaFrameV1::StartWall(ms) => MediaOp::StartWall(ms),
        MediaFrameV1::Track {
            format,
            kind,
            rendition,
        } => MediaOp::Track {
            format: track_format(format),
            kind: match kind {
                WireKind::Video => TrackKind::Video,
                WireKind::Audio => TrackKind::Audio,
            },
            rendition: rid(rendition),
        },
        MediaFrameV1::Init {
            format,
            rendition,
            init,
            info,
        } => MediaOp::Init {
            format: track_format(format),
            rendition: rid(rendition),
            init,
            info: track_info(info),
        },
        MediaFrameV1::Begin {
            format,
            rendition,
            msn,
            start,
            pdt_ms,
        } => MediaOp::Begin {
            format: track_format(format),
            rendition: rid(rendition),
            msn,
            start,
            pdt_ms,
        },
        MediaFrameV1::Part {
            format,
            rendition,
            msn,
            index,
            duration,
            independent,
            data,
        } => MediaOp::Part {
            format: track_format(format),
            rendition: rid(rendition),
            msn,
            part: Part {
                index,
                duration,
                independent,
                data,
            },
        },
        MediaFrameV1::Finish {
            format,
            rendition,
            msn,
            end,
            data,
        } => MediaOp::Finish {
            format: track_format(format),
            rendition: rid(rendition),
            msn,
            end,
            data,
        },
        MediaFrameV1::Stats {
            format,
            rendition,
            max_segment_duration,
            peak_bps,
            total_bytes,
            total_seconds,
        } => MediaOp::Stats {
            format: track_format(format),
            rendition: rid(rendition),
            stats: TrackStats {
                max_segment_duration,
                peak_bps,
                total_bytes,
                total_seconds,
            },
        },
        MediaFrameV1::End => MediaOp::End,
        MediaFrameV1::Session { .. }
        | MediaFrameV1::Refused { .. }
        | MediaFrameV1::SnapshotDone => return None,
    })
}

// ---- origin side ----------------------------------------------------------------------------

async fn send_frame(send: &mut quinn::SendStream, f: MediaFrameV1) -> Result<(), String> {
    let bytes = encode_frame(&MediaFrame::V1(f));
    if frame_body_len(&bytes) > MAX_MESSAGE {
        return Err(format!(
            "a {}-byte frame exceeds the {MAX_MESSAGE}-byte limit",
            bytes.len()
        ));
    }
    match tokio::time::timeout(WRITE_STALL, send.write_all(&bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write: {e}")),
        Err(_) => Err(format!("no progress for {} s", WRITE_STALL.as_secs())),
    }
}

/// Push session `epoch` of `stream` from this node's store to a subscriber.
pub async fn serve_subscription(
    store: Arc<SegmentStore>,
    from: SocketAddr,
    stream: String,
    epoch: u64,
    mut send: quinn::SendStream,
) {
    let media = store.get(&stream).filter(|m| m.epoch.0 == epoch);
    let Some(media) = media else {
        let _ = send_frame(
            &mut send,
            MediaFrameV1::Refused {
                reason: format!("this node does not hold {stream} epoch {epoch}"),
            },
        )
        .await;
        let _ = send.finish();
        return;
    };
    debug!(peer = %from, %stream, epoch, "replicating to a subscriber");
    // Follow first, then snapshot: the feed may repeat what the snapshot has (the edge's
    // apply is idempotent), but misses nothing.
    let mut feed = media.follow();
    let snapshot = media.snapshot_ops();
    let c = &media.config;
    let mut out = vec![MediaFrameV1::Session {
        epoch,
        segment_target_ms: c.segment_target.as_millis() as u64,
        part_target_ms: c.part_target.as_millis() as u64,
        window_segments: c.window_segments as u32,
        msn_base: c.msn_base,
        discontinuity_seq: c.discontinuity_seq,
    }];
    let mut ended = false;
    for op in &snapshot {
        ended |= matches!(op, MediaOp::End);
        out.push(frame_of(op));
    }
    out.push(MediaFrameV1::SnapshotDone);
    for f in out {
        if let Err(e) = send_frame(&mut send, f).await {
            debug!(peer = %from, %stream, error = %e, "subscriber lost during snapshot");
            let _ = send.reset(1u32.into());
            return;
        }
    }
    while !ended {
        let op = match feed.recv().await {
            Ok(op) => op,
            Err(RecvError::Lagged(n)) => {
                warn!(peer = %from, %stream, missed = n, "subscriber fell behind the feed; cut off (it resubscribes)");
                let _ = send.reset(2u32.into());
                return;
            }
            Err(RecvError::Closed) => break,
        };
        ended = matches!(op, MediaOp::End);
        if let Err(e) = send_frame(&mut send, frame_of(&op)).await {
            debug!(peer = %from, %stream, error = %e, "subscriber lost");
            let _ = send.reset(1u32.into());
            return;
        }
    }
    let _ = send.finish();
}

// ---- edge side ------------------------------------------------------------------------------

struct Sub {
    epoch: Epoch,
    last_access: Arc<Mutex<Instant>>,
    task: tokio::task::AbortHandle,
}

/// This node's replicas of streams originated elsewhere.
pub struct Replicas {
    cluster: Arc<Cluster>,
    store: Arc<SegmentStore>,
    subs: Mutex<HashMap<StreamName, Sub>>,
    /// This node's configuration: a replica's playlists are rendered with this node's CDN
    /// setting ([`Config::url_base_for`]).
    config: Config,
    /// The runtime replicas run on (the one this was made on).
    runtime: Option<tokio::runtime::Handle>,
}

enum Ended {
    /// The session ended at the origin (End frame).
    Done,
    /// Connection or protocol failure: maybe retry.
    Lost(String),
    /// The origin does not hold it (any more).
    Refused(String),
}

impl Replicas {
    /// No replicas yet.
    pub fn new(cluster: Arc<Cluster>, store: Arc<SegmentStore>, config: Config) -> Arc<Self> {
        Arc::new(Self {
            cluster,
            store,
            subs: Mutex::new(HashMap::new()),
            config,
            runtime: tokio::runtime::Handle::try_current().ok(),
        })
    }

    /// A viewer asked for `stream` here: keep its replica alive.
    pub fn touch(&self, stream: &str) {
        if let Some(s) = self
            .subs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(stream)
        {
            *s.last_access.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        }
    }

    /// The registry's live session of `stream` held by another node: replicate it (once) and
    /// wait up to `wait` for its snapshot. `None` if the stream is not live elsewhere or the
    /// origin could not be reached in time.
    pub async fn fetch(
        self: &Arc<Self>,
        stream: &StreamName,
        wait: Duration,
    ) -> Option<Arc<StreamMedia>> {
        let rec = self.cluster.stream(stream.as_str())?;
        if !rec.status().is_live() || rec.origin == self.cluster.me.name {
            return None;
        }
        let epoch = Epoch(rec.epoch);
        let origin = self.cluster.node_by_name(&rec.origin)?;
        let addr: SocketAddr = origin.quic.parse().ok()?;
        let transport = self.cluster.transport()?.clone();
        {
            let mut subs = self.subs.lock().unwrap_or_else(|e| e.into_inner());
            let current = subs
                .get(stream)
                .is_some_and(|s| s.epoch == epoch && !s.task.is_finished());
            if !current {
                if let Some(old) = subs.remove(stream) {
                    old.task.abort();
                }
                let last_access = Arc::new(Mutex::new(Instant::now()));
                let me = self.clone();
                let (s, la) = (stream.clone(), last_access.clone());
                let run = async move { me.run(s, epoch, addr, transport, la).await };
                // On the node's runtime, whichever thread the viewer's request came in on
                // (`http::server::ConnThreads`): the replica outlives the request.
                let task = match &self.runtime {
                    Some(rt) => rt.spawn(run),
                    None => tokio::spawn(run),
                };
                subs.insert(
                    stream.clone(),
                    Sub {
                        epoch,
                        last_access,
                        task: task.abort_handle(),
                    },
                );
            }
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(m) = self.store.get(stream.as_str()).filter(|m| m.epoch == epoch) {
                return Some(m);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Fencing for replicas: the registry closed or superseded a session this node replicates.
    pub fn on_status(&self, stream: &StreamName, epoch: Epoch, live: bool) {
        let mut subs = self.subs.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = subs.get(stream) else {
            return;
        };
        if s.epoch < epoch || (s.epoch == epoch && !live) {
            let old = s.epoch;
            if let Some(s) = subs.remove(stream) {
                s.task.abort();
            }
            drop(subs);
            if let Some(m) = self.store.get(stream.as_str()).filter(|m| m.epoch == old) {
                // No more segments will come for this session: no preload hints. A clean end
                // reaches the replica as the origin's End (ENDLIST); a failure leaves the
                // playlists open for a new session to continue.
                m.interrupt();
            }
            info!(%stream, epoch = old.0, "replica closed: the registry moved the stream on");
        }
    }

    async fn run(
        self: Arc<Self>,
        stream: StreamName,
        epoch: Epoch,
        origin: SocketAddr,
        transport: Arc<Transport>,
        last_access: Arc<Mutex<Instant>>,
    ) {
        let mut media: Option<Arc<StreamMedia>> = None;
        let mut attempts = 0;
        let outcome = loop {
            attempts += 1;
            match self
                .subscribe_once(&stream, epoch, origin, &transport, &mut media, &last_access)
                .await
            {
                Ended::Lost(e) if attempts < ATTEMPTS => {
                    let still_live = self
                        .cluster
                        .stream(stream.as_str())
                        .is_some_and(|r| r.epoch == epoch.0 && r.status().is_live());
                    if !still_live {
                        break Ended::Lost(e);
                    }
                    debug!(%stream, error = %e, attempt = attempts, "replication lost; resubscribing");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => break other,
            }
        };
        match outcome {
            Ended::Done => debug!(%stream, "replicated session ended"),
            Ended::Lost(e) => warn!(%stream, error = %e, "replication from the origin lost"),
            Ended::Refused(e) => debug!(%stream, reason = %e, "origin refused replication"),
        }
        if let Some(m) = media {
            m.interrupt();
        }
        let mut subs = self.subs.lock().unwrap_or_else(|e| e.into_inner());
        if subs.get(&stream).is_some_and(|s| s.epoch == epoch) {
            subs.remove(&stream);
        }
    }

    async fn subscribe_once(
        &self,
        stream: &StreamName,
        epoch: Epoch,
        origin: SocketAddr,
        transport: &Transport,
        media: &mut Option<Arc<StreamMedia>>,
        last_access: &Mutex<Instant>,
    ) -> Ended {
        let req = PeerRequest::V1(RequestV1::Subscribe {
            stream: stream.to_string(),
            epoch: epoch.0,
        })
        .encode();
        let mut recv = match transport
            .subscribe(origin, &req, Duration::from_secs(2))
            .await
        {
            Ok(r) => r,
            Err(e) => return Ended::Lost(e.to_string()),
        };
        let mut dec = FrameDecoder::new(MAX_MESSAGE);
        let mut live = false;
        loop {
            let chunk =
                match tokio::time::timeout(READ_STALL, recv.read_chunk(256 * 1024, true)).await {
                    Ok(Ok(Some(c))) => c.bytes,
                    Ok(Ok(None)) => return Ended::Lost("origin closed the stream".into()),
                    Ok(Err(e)) => return Ended::Lost(format!("read: {e}")),
                    Err(_) => {
                        return Ended::Lost(format!("origin silent for {} s", READ_STALL.as_secs()))
                    }
                };
            if last_access
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .elapsed()
                > IDLE_AFTER
            {
                debug!(%stream, "replica idle: dropping it");
                if let Some(m) = media.take() {
                    self.store.remove(&m.name, m.epoch);
                }
                return Ended::Done;
            }
            dec.push(&chunk);
            loop {
                let frame = match dec.next_frame::<MediaFrame>() {
                    Ok(Some(MediaFrame::V1(f))) => f,
                    Ok(None) => break,
                    Err(e) => return Ended::Lost(format!("bad frame from the origin: {e}")),
                };
                match frame {
                    MediaFrameV1::Session {
                        epoch: e,
                        segment_target_ms,
                        part_target_ms,
                        window_segments,
                        msn_base,
                        discontinuity_seq,
                    } => {
                        if e != epoch.0 {
                            return Ended::Refused(format!("origin offered epoch {e}"));
                        }
                        if media.is_none() {
                            let config = MediaConfig {
                                segment_target: Duration::from_millis(segment_target_ms),
                                part_target: Duration::from_millis(part_target_ms),
                                window_segments: window_segments as usize,
                                msn_base,
                                discontinuity_seq,
                                url_base: self.config.url_base_for(stream.as_str()),
                            };
                            *media = Some(StreamMedia::new(stream.clone(), epoch, config));
                        }
                    }
                    MediaFrameV1::Refused { reason } => return Ended::Refused(reason),
                    MediaFrameV1::SnapshotDone => {
                        if let (Some(m), false) = (media.as_ref(), live) {
                            self.store.insert(m.clone());
                            live = true;
                        }
                    }
                    other => {
                        let Some(m) = media.as_ref() else {
                            return Ended::Lost("media before the session header".into());
                        };
                        let Some(op) = op_of(other) else { continue };
                        let end = matches!(op, MediaOp::End);
                        if let Err(e) = m.apply(op) {
                            return Ended::Lost(format!("replica rejected an operation: {e}"));
                        }
                        if end {
                            return Ended::Done;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_survive_the_wire() {
        let ops = vec![
            MediaOp::Renditions(vec![RenditionId::source()]),
            MediaOp::StartWall(1234),
            MediaOp::Track {
                format: TrackFormat::Ts,
                kind: TrackKind::Video,
                rendition: RenditionId::source(),
            },
            MediaOp::Begin {
                format: TrackFormat::Cmaf,
                rendition: RenditionId::audio(),
                msn: 7,
                start: 90_000,
                pdt_ms: 99,
            },
            MediaOp::Finish {
                format: TrackFormat::Ts,
                rendition: RenditionId::source(),
                msn: 7,
                end: 270_000,
                data: Some(bytes::Bytes::from_static(b"ts")),
            },
            MediaOp::End,
        ];
        for op in ops {
            let back = op_of(frame_of(&op)).expect("media op");
            assert_eq!(format!("{back:?}"), format!("{op:?}"));
        }
    }
}
