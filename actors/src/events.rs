//! The node-wide event hub: status changes and per-second metrics, fanned out to WebSocket
//! subscribers (`/v1/streams/{stream}/events`, `/v1/events`).
//!
//! A `tokio::sync::broadcast` channel: bounded, and a slow subscriber lags (and is told so by the
//! receiver) instead of growing memory. Status events are emitted by the registry after a change
//! is committed, so the order subscribers see is the order of the registry.

use tokio::sync::broadcast;

use crate::types::{Epoch, StreamName, StreamStatus};

/// Ingress metrics of one stream, sampled about once per second.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngressMetrics {
    /// Ingress bitrate over the last second, kbit/s (audio + video payload).
    pub ingress_bitrate_kbps: f64,
    /// Video frames per second over the last second.
    pub fps: f64,
    /// RFC 6381 video codec string, once known.
    pub video_codec: Option<String>,
    /// RFC 6381 audio codec string, once known.
    pub audio_codec: Option<String>,
    /// Video width in pixels.
    pub width: Option<u32>,
    /// Video height in pixels.
    pub height: Option<u32>,
    /// Video frames received since the publish started.
    pub frames: u64,
    /// Frames dropped by the ingest drop policy (full channel).
    pub dropped_frames: u64,
}

/// What the viewers of one stream do, summed over every node serving it (sampled each second by
/// the node's analytics).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AudienceMetrics {
    /// Viewer sessions playing now.
    pub concurrent_viewers: u64,
    /// Viewer sessions that joined since the stream's first session on these nodes.
    pub total_viewers: u64,
    /// Bytes sent to viewers over the last second, kbit/s.
    pub egress_bitrate_kbps: f64,
    /// Concurrent viewers per video rendition (sorted by rendition name).
    pub quality: Vec<(String, u64)>,
    /// Buffering (stall) events reported by players so far (CMCD `bs`, beacons).
    pub buffering_events: u64,
    /// Share of the concurrent viewers that reported a stall in the last 30 s, 0..1.
    pub stall_rate: f64,
    /// Quality switches seen so far.
    pub quality_switches: u64,
    /// Nodes whose viewers are counted in this sample.
    pub nodes: u32,
}

/// The per-second metrics of a live stream: ingest, audience and a health score.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamMetrics {
    /// Wall clock of the sample, Unix ms.
    pub at_ms: i64,
    /// Ingest (from the origin node).
    pub ingress: IngressMetrics,
    /// Viewers.
    pub audience: AudienceMetrics,
    /// Age of the newest part or segment of the stream's video, ms (transcoder/packager lag).
    pub media_age_ms: Option<u64>,
    /// Health 0..100 (formula in `docs/ANALYTICS.md`).
    pub health: f64,
}

/// One event on the hub.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// A committed status change.
    Status {
        /// The stream.
        stream: StreamName,
        /// The new status.
        status: StreamStatus,
        /// The publish session it belongs to.
        epoch: Epoch,
        /// Wall clock of the change, Unix ms.
        at_ms: i64,
        /// Why (for `Error` and refusals), human-readable.
        reason: Option<String>,
    },
    /// Periodic metrics of a live stream.
    Metrics {
        /// The stream.
        stream: StreamName,
        /// The publish session.
        epoch: Epoch,
        /// The sample.
        metrics: Box<StreamMetrics>,
    },
}

impl StreamEvent {
    /// The stream this event is about.
    pub fn stream(&self) -> &StreamName {
        match self {
            Self::Status { stream, .. } | Self::Metrics { stream, .. } => stream,
        }
    }
}

/// Cloneable handle to the hub.
#[derive(Debug, Clone)]
pub struct EventHub {
    tx: broadcast::Sender<StreamEvent>,
}

impl EventHub {
    /// A hub whose subscribers may fall `capacity` events behind before they lag.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        Self { tx }
    }

    /// Publish an event; having no subscriber is normal.
    pub fn publish(&self, ev: StreamEvent) {
        let _ = self.tx.send(ev);
    }

    /// Follow every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<StreamEvent> {
        self.tx.subscribe()
    }
}
