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
        metrics: IngressMetrics,
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
