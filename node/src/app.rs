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
use hivecast_actors::types::{unix_ms_now, Epoch, StreamName};
use ractor::{Actor, ActorRef};
use tokio::sync::mpsc;
use tracing::{info_span, warn};

use crate::config::Config;
use crate::storage::{LocalRegistry, Storage};

/// Frames a publisher may have in flight towards its ingest: about 4 s of 30 fps video plus
/// audio. When full, the RTMP reader waits, which pushes back on the encoder through TCP.
const INGEST_QUEUE: usize = 512;

/// A stream with a running tree.
pub struct LiveStream {
    /// Session.
    pub epoch: Epoch,
    /// The tree's root.
    pub supervisor: ActorRef<SupervisorMsg>,
}

/// Everything handlers and listeners share.
pub struct App {
    /// Configuration.
    pub config: Config,
    /// The admin bearer token.
    pub admin_token: String,
    /// Viewer-facing media.
    pub store: Arc<SegmentStore>,
    /// Durable state.
    pub storage: Arc<Storage>,
    /// Stream state changes.
    pub registry: Arc<LocalRegistry>,
    /// Events for WebSocket subscribers.
    pub hub: EventHub,
    /// Running trees, by stream.
    pub live: Mutex<HashMap<StreamName, LiveStream>>,
    /// Ingest counters of the latest session of each stream.
    pub stats: Mutex<HashMap<StreamName, Arc<IngestStats>>>,
    /// One permit per stream this node may transcode at once (`transcode.capacity`).
    pub transcode_slots: Arc<tokio::sync::Semaphore>,
}

impl App {
    /// Claim `stream` and start its tree. Returns the session and the sender for its frames.
    pub async fn start_stream(
        self: &Arc<Self>,
        stream: StreamName,
    ) -> Result<(Epoch, mpsc::Sender<IngestInput>), RegistryError> {
        let epoch = self.registry.claim(stream.clone()).await?;
        let media = StreamMedia::new(stream.clone(), epoch, self.config.media_config());
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
            },
        );
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

    /// Drop ended sessions from the store once their retention is over (then playlists
    /// answer 410). Runs every second for the life of the node.
    pub async fn sweep_ended(self: Arc<Self>) {
        let retention = self.config.media.ended_retention_ms as i64;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            for m in self.store.all() {
                if !m.is_ended() {
                    continue;
                }
                let ended_at = match self.storage.stream(m.name.as_str()) {
                    Ok(Some(r)) if r.epoch == m.epoch.0 => r.ended_at_ms,
                    Ok(_) => Some(0), // superseded or unknown: drop it
                    Err(e) => {
                        warn!(error = %e, "sweeper: storage read failed");
                        None
                    }
                };
                if ended_at.is_some_and(|t| unix_ms_now() - t >= retention) {
                    self.store.remove(&m.name, m.epoch);
                }
            }
        }
    }
}
