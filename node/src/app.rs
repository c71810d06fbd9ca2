//! The node's shared state and the stream manager: what a publish turns into.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hivecast_actors::events::EventHub;
use hivecast_actors::registry::{Registry, RegistryError};
use hivecast_actors::store::{SegmentStore, StreamMedia};
use hivecast_actors::stream::ingest::IngestInput;
use hivecast_actors::stream::supervisor::{Role, StreamSupervisor, SupervisorArgs, SupervisorMsg};
use hivecast_actors::stream::{IngestStats, StreamSettings};
use hivecast_actors::transcode::TranscoderFault;
use hivecast_actors::types::{unix_ms_now, Epoch, StreamName, StreamStatus};
use ractor::{Actor, ActorRef};
use tokio::sync::mpsc;
use tracing::{debug, info_span, warn};

use crate::cluster::Cluster;
use crate::config::Config;
use crate::storage::Storage;

/// Frames a publisher may have in flight towards its ingest: about 4 s of 30 fps video plus
/// audio. When full, the RTMP reader waits, which pushes back on the encoder through TCP.
const INGEST_QUEUE: usize = 512;

/// A stream with a running tree.
pub struct LiveStream {
    /// Session.
    pub epoch: Epoch,
    /// The tree's root.
    pub supervisor: ActorRef<SupervisorMsg>,
    /// The ingest's input, weakly: the publisher's connection holds the sender, and the ingest
    /// learns of a lost connection when it drops; shutdown upgrades this to end the stream.
    pub input: mpsc::WeakSender<IngestInput>,
}

/// Everything handlers and listeners share.
pub struct App {
    /// Configuration.
    pub config: Config,
    /// The admin bearer token.
    pub admin_token: String,
    /// Viewer-facing media.
    pub store: Arc<SegmentStore>,
    /// The node's audit log.
    pub storage: Arc<Storage>,
    /// The registry (keys, streams, members): every stream state change goes through it.
    pub registry: Arc<Cluster>,
    /// Events for WebSocket subscribers.
    pub hub: EventHub,
    /// Replicas of streams originated by other nodes.
    pub replicas: Arc<crate::cluster::replicate::Replicas>,
    /// Running trees, by stream.
    pub live: Mutex<HashMap<StreamName, LiveStream>>,
    /// Ingest counters of the latest session of each stream.
    pub stats: Mutex<HashMap<StreamName, Arc<IngestStats>>>,
    /// Viewer requests served (playback routes), for the load this node reports.
    pub requests: std::sync::atomic::AtomicU64,
    /// One permit per stream this node may transcode at once (`transcode.capacity`).
    pub transcode_slots: Arc<tokio::sync::Semaphore>,
    /// Viewer sessions and stream metrics.
    pub analytics: crate::analytics::Analytics,
    /// Signs and checks playback tokens (`playback.protected_streams`).
    pub playback: crate::tokens::PlaybackTokens,
}

impl App {
    /// Claim `stream` and start its tree. Returns the session and the sender for its frames.
    pub async fn start_stream(
        self: &Arc<Self>,
        stream: StreamName,
    ) -> Result<(Epoch, mpsc::Sender<IngestInput>), RegistryError> {
        let (epoch, msn_base) = self
            .registry
            .claim_session(&stream, self.config.media.segment_target_ms)
            .await?;
        // The session continues the stream's timeline: media sequence numbers go on from the
        // previous sessions', one discontinuity per new session.
        let media_config = hivecast_actors::store::MediaConfig {
            msn_base,
            discontinuity_seq: epoch.0.saturating_sub(1),
            url_base: self.config.url_base_for(stream.as_str()),
            ..self.config.media_config()
        };
        let media = StreamMedia::new(stream.clone(), epoch, media_config);
        let media_handle = media.clone();
        self.store.insert(media.clone());
        let stats = Arc::new(IngestStats::default());
        self.stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(stream.clone(), stats.clone());
        // Transcode if enabled and a slot is free; otherwise passthrough, and say why.
        let mut transcode = self.config.transcode.plan();
        let mut permit = None;
        if transcode.is_some() {
            match self.transcode_slots.clone().try_acquire_owned() {
                Ok(p) => permit = Some(p),
                Err(_) => {
                    let cap = self.config.transcode.capacity;
                    warn!(stream = %stream, capacity = cap, "transcoding capacity reached: passthrough only");
                    transcode = None;
                    stats.update_transcode(|t| {
                        t.mode = "passthrough";
                        t.reason = Some(format!(
                            "node transcoding capacity ({cap} streams) reached: source only"
                        ));
                    });
                }
            }
        } else {
            stats.update_transcode(|t| {
                t.mode = "disabled";
                t.reason = Some("transcoding is disabled on this node".into());
            });
        }
        let (tx, rx) = mpsc::channel(INGEST_QUEUE);
        let span =
            info_span!("stream", stream = %stream, epoch = epoch.0, origin = %self.config.node.id);
        let args = SupervisorArgs {
            media,
            input: rx,
            stats,
            registry: self.registry.clone(),
            hub: self.hub.clone(),
            settings: StreamSettings {
                media_timeout: Duration::from_millis(self.config.media.media_timeout_ms),
                transcode,
                ..StreamSettings::default()
            },
            span,
        };
        let (sup, handle) = match Actor::spawn(None, StreamSupervisor, args).await {
            Ok(x) => x,
            Err(e) => {
                let _ = self
                    .registry
                    .set_status(
                        stream.clone(),
                        epoch,
                        hivecast_actors::types::StreamStatus::Error,
                        Some(format!("could not start: {e}")),
                    )
                    .await;
                return Err(RegistryError::Storage(format!("spawn: {e}")));
            }
        };
        self.live.lock().unwrap_or_else(|e| e.into_inner()).insert(
            stream.clone(),
            LiveStream {
                epoch,
                supervisor: sup,
                input: tx.downgrade(),
            },
        );
        // Record the session's renditions in the registry once the ingest decided them, so every
        // node can list them.
        {
            let (registry, media) = (self.registry.clone(), media_handle.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                for _ in 0..600 {
                    tick.tick().await;
                    if media.is_over() {
                        return;
                    }
                    if let Some(ids) = media.video_renditions() {
                        let cmd = crate::cluster::state::Command::SetRenditions {
                            stream: media.name.to_string(),
                            epoch: media.epoch.0,
                            renditions: ids.iter().map(ToString::to_string).collect(),
                        };
                        if let Err(e) = registry.write(cmd).await {
                            warn!(error = %e, "could not record the renditions");
                        }
                        return;
                    }
                }
            });
        }
        let app = self.clone();
        tokio::spawn(async move {
            let _ = handle.await;
            drop(permit); // the transcoding slot is free once the tree is gone
            let mut live = app.live.lock().unwrap_or_else(|e| e.into_inner());
            if live.get(&stream).is_some_and(|l| l.epoch == epoch) {
                live.remove(&stream);
            }
        });
        Ok((epoch, tx))
    }

    /// Shutdown: end every stream this node originates as an unpublish would (the packagers
    /// close their last segment, playlists get `EXT-X-ENDLIST`, the registry records
    /// `ENDED_GRACEFULLY` and WebSocket viewers are told), waiting at most `deadline` for the
    /// registry to show them all ended. Returns how many were ended and how many were left.
    pub async fn end_all(&self, deadline: Duration) -> (usize, usize) {
        let until = tokio::time::Instant::now() + deadline;
        let live: Vec<(StreamName, Epoch, mpsc::WeakSender<IngestInput>)> = self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(s, l)| (s.clone(), l.epoch, l.input.clone()))
            .collect();
        for (stream, _, input) in &live {
            let Some(tx) = input.upgrade() else {
                continue; // the connection just went: the tree is ending on its own
            };
            if tokio::time::timeout_at(until, tx.send(IngestInput::End))
                .await
                .is_err()
            {
                warn!(stream = %stream, "shutdown: the ingest did not take the end in time");
            }
        }
        let still_live = || {
            live.iter()
                .filter(|(s, e, _)| {
                    self.registry
                        .stream(s.as_str())
                        .is_some_and(|r| r.epoch == e.0 && r.status().is_live())
                })
                .count()
        };
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        while still_live() > 0 && tokio::time::Instant::now() < until {
            tick.tick().await;
        }
        let left = still_live();
        (live.len() - left, left)
    }

    /// Test hook: make one actor of a stream's tree panic.
    pub fn inject_panic(&self, stream: &str, role: Role) -> bool {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        match live.get(stream) {
            Some(l) => l.supervisor.cast(SupervisorMsg::InjectPanic(role)).is_ok(),
            None => false,
        }
    }

    /// Test hook: a transcoder fault in a stream's tree.
    pub fn inject_transcoder_fault(&self, stream: &str, fault: TranscoderFault) -> bool {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        match live.get(stream) {
            Some(l) => l
                .supervisor
                .cast(SupervisorMsg::InjectTranscoderFault(fault))
                .is_ok(),
            None => false,
        }
    }

    /// Ingest counters of a stream's latest session.
    pub fn stats_of(&self, stream: &str) -> Option<Arc<IngestStats>> {
        self.stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(stream)
            .cloned()
    }

    /// Fencing: a local tree whose session the registry has closed or superseded (this node was
    /// declared down while frozen or cut off, or another node claimed the stream) is stopped at
    /// once, so this node never goes on serving an old epoch as live.
    pub async fn fence_superseded(self: Arc<Self>) {
        use hivecast_actors::events::StreamEvent;
        use tokio::sync::broadcast::error::RecvError;
        let mut rx = self.hub.subscribe();
        loop {
            let (stream, epoch, status) = match rx.recv().await {
                Ok(StreamEvent::Status {
                    stream,
                    epoch,
                    status,
                    ..
                }) => (stream, epoch, status),
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => {
                    // Missed events: check every local tree against the registry.
                    let live: Vec<StreamName> = self
                        .live
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .keys()
                        .cloned()
                        .collect();
                    for s in live {
                        if let Some(r) = self.registry.stream(s.as_str()) {
                            self.fence(&s, Epoch(r.epoch), r.status());
                        }
                    }
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            self.fence(&stream, epoch, status);
        }
    }

    fn fence(&self, stream: &StreamName, epoch: Epoch, status: StreamStatus) {
        self.replicas.on_status(stream, epoch, status.is_live());
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let Some(l) = live.get(stream) else {
            return;
        };
        let superseded = l.epoch < epoch;
        let closed = l.epoch == epoch && !status.is_live();
        if superseded || closed {
            let why = if superseded {
                format!("superseded by epoch {epoch}")
            } else {
                format!("registry closed the session ({status})")
            };
            // A tree that ended on its own (its media over, then its final status written) hears
            // of that status too: nothing is fenced then, the abort only hurries its last step.
            let media = self.store.session(stream.as_str(), l.epoch);
            if media.as_ref().is_some_and(|m| m.is_over()) {
                debug!(stream = %stream, epoch = l.epoch.0, reason = %why, "the local tree is finishing");
            } else {
                warn!(stream = %stream, epoch = l.epoch.0, reason = %why, "fencing: stopping the local tree");
                // Still live here while the cluster had given up on it: never offered again,
                // not even as the previous session across the newer one's first seconds.
                if let Some(m) = media {
                    m.revoke();
                }
            }
            let _ = l.supervisor.cast(SupervisorMsg::Abort(why));
        }
    }

    /// Measure this node's load every heartbeat and hand it to the cluster.
    pub async fn report_load(self: Arc<Self>) {
        let every = Duration::from_millis(self.config.cluster.heartbeat_ms.max(100));
        let mut tick = tokio::time::interval(every);
        let mut last = (std::time::Instant::now(), process_cpu_ticks());
        let mut last_requests = 0u64;
        loop {
            tick.tick().await;
            let now = (std::time::Instant::now(), process_cpu_ticks());
            let secs = now.0.duration_since(last.0).as_secs_f64().max(1e-3);
            let requests = self.requests.load(std::sync::atomic::Ordering::Relaxed);
            let requests_per_s = (requests.saturating_sub(last_requests) as f64 / secs) as f32;
            last_requests = requests;
            let cpu_pct = match (last.1, now.1) {
                // Kernel clock ticks are 100 per second on Linux.
                (Some(a), Some(b)) => (b.saturating_sub(a) as f64 / 100.0 / secs * 100.0) as f32,
                _ => 0.0,
            };
            last = now;
            let streams = self.live.lock().unwrap_or_else(|e| e.into_inner()).len() as u32;
            self.registry.set_load(hivecast_proto::peer::NodeLoad {
                cpu_pct,
                streams,
                requests_per_s,
            });
        }
    }

    /// Drop ended sessions from the store once their retention is over (then playlists
    /// answer 410). Runs every second for the life of the node.
    pub async fn sweep_ended(self: Arc<Self>) {
        let retention = self.config.media.ended_retention_ms as i64;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            for m in self.store.all() {
                if !m.is_over() {
                    continue;
                }
                let ended_at = match self.registry.stream(m.name.as_str()) {
                    Some(r) if r.epoch == m.epoch.0 => r.ended_at_ms,
                    // Superseded: over at the latest when the newer session was claimed. Kept
                    // from then on like an ended one, so the newer session, installed here a
                    // moment after its claim, still finds it (`StreamMedia::previous`); it is
                    // never served as current meanwhile (`http::playback::media_of`).
                    Some(r) if r.epoch > m.epoch.0 => Some(r.started_at_ms.unwrap_or(0)),
                    _ => Some(0), // unknown: drop it
                };
                if ended_at.is_some_and(|t| unix_ms_now() - t >= retention) {
                    self.store.remove(&m.name, m.epoch);
                }
            }
        }
    }
}

/// utime + stime of this process, in clock ticks (`/proc/self/stat`); `None` off Linux.
fn process_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}
