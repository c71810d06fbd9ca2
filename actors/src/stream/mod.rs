//! The per-stream supervised actor tree.
//!
//! ```text
//! StreamSupervisor(stream, epoch)
//!   |- Ingest      validates FLV/H.264/AAC, normalises timestamps, decides segment boundaries
//!   |- Packager    one per video rendition (CMAF + MPEG-TS) and one for the shared audio track
//!   '- Notifier    per-second metrics on the event hub
//! ```
//!
//! Each child is a [`worker::Worker`] actor: its work runs as a tokio task fed by a bounded
//! channel, and the task's end (or panic) comes back to the actor as a message, so a failure
//! reaches the supervisor as `ActorFailed`. Media never passes through a mailbox.

pub mod ingest;
pub mod notifier;
pub mod packager;
pub mod supervisor;
pub mod worker;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::events::IngressMetrics;

/// Why a stream's tree stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamOutcome {
    /// The publisher unpublished cleanly.
    Ended,
    /// Something went wrong; the reason is shown to operators and viewers.
    Failed(String),
}

/// Per-stream settings the tree needs (the node fills them from config).
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// No media for this long -> ERROR.
    pub media_timeout: Duration,
    /// Capacity of each packager's input channel, in frames.
    pub packager_queue: usize,
    /// Transcoding for this stream (`None`: passthrough only).
    pub transcode: Option<TranscodePlan>,
}

/// What the tree needs to transcode.
#[derive(Debug, Clone)]
pub struct TranscodePlan {
    /// The configured ladder.
    pub ladder: std::sync::Arc<Vec<crate::transcode::ladder::Rung>>,
    /// When `source` is offered beside the ladder.
    pub source: crate::transcode::ladder::SourcePolicy,
    /// Encoder and pipeline settings.
    pub settings: crate::transcode::TranscodeSettings,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            media_timeout: Duration::from_secs(5),
            // About 8 s of 30 fps video: a packager that far behind is broken, not slow.
            packager_queue: 256,
            transcode: None,
        }
    }
}

/// Counters written by the ingest, sampled by the notifier and the API.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Payload bytes received (audio + video).
    pub bytes: AtomicU64,
    /// Video frames received.
    pub video_frames: AtomicU64,
    /// Audio frames received.
    pub audio_frames: AtomicU64,
    /// Frames dropped by the drop policy.
    pub dropped_frames: AtomicU64,
    /// Codec strings and resolution, once known.
    pub(crate) describe: Mutex<IngressMetrics>,
    /// The last per-second sample.
    pub(crate) last_sample: Mutex<IngressMetrics>,
    /// How the renditions are produced.
    pub transcode: Mutex<TranscodeStatus>,
}

/// How a stream's renditions are produced (shown in the stream's status).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TranscodeStatus {
    /// `transcoding` (the ladder is produced), `passthrough` (source only: over capacity, or
    /// a source smaller than every rung), `disabled` (transcoding off on this node).
    pub mode: &'static str,
    /// Why the stream is not transcoded, or why `source` is not offered.
    pub reason: Option<String>,
    /// The video renditions offered, in master-playlist order.
    pub renditions: Vec<String>,
    /// Transcoder restarts so far.
    pub restarts: u32,
}

impl IngestStats {
    /// The current transcode status.
    pub fn transcode_status(&self) -> TranscodeStatus {
        self.transcode
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Change the transcode status.
    pub fn update_transcode(&self, f: impl FnOnce(&mut TranscodeStatus)) {
        f(&mut self.transcode.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

impl IngestStats {
    /// The most recent sample (rates over the last second, codec info).
    pub fn snapshot(&self) -> IngressMetrics {
        let mut m = self
            .last_sample
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let d = self.describe.lock().unwrap_or_else(|e| e.into_inner());
        m.video_codec = d.video_codec.clone();
        m.audio_codec = d.audio_codec.clone();
        m.width = d.width;
        m.height = d.height;
        m.frames = self.video_frames.load(Ordering::Relaxed);
        m.dropped_frames = self.dropped_frames.load(Ordering::Relaxed);
        m
    }
}
