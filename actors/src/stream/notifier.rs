//! Notifier: samples the stream's ingest counters once per second into [`IngestStats`], where the
//! node's analytics reads them each second, joins them with the viewers of every node serving the
//! stream and publishes the stream's metrics on the event hub (WebSocket subscribers).
//!
//! Status changes are not its business: the registry publishes them once committed, so every
//! subscriber sees them in registry order. It runs until the supervisor stops it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use super::IngestStats;
use crate::types::{Epoch, StreamName};

/// The notifier's task.
pub struct NotifierTask {
    /// The stream.
    pub name: StreamName,
    /// The session.
    pub epoch: Epoch,
    /// Counters to sample.
    pub stats: Arc<IngestStats>,
    /// Sampling period (1 s in production).
    pub period: Duration,
}

impl NotifierTask {
    /// Sample forever.
    pub async fn run(self) -> Result<(), String> {
        let mut tick = tokio::time::interval(self.period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last = (Instant::now(), 0u64, 0u64);
        loop {
            tick.tick().await;
            let now = Instant::now();
            let bytes = self.stats.bytes.load(Ordering::Relaxed);
            let frames = self.stats.video_frames.load(Ordering::Relaxed);
            let secs = now.duration_since(last.0).as_secs_f64();
            if secs > 0.0 {
                let mut sample = self
                    .stats
                    .last_sample
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                sample.ingress_bitrate_kbps =
                    ((bytes - last.1) as f64 * 8.0 / 1000.0 / secs * 10.0).round() / 10.0;
                sample.fps = ((frames - last.2) as f64 / secs * 10.0).round() / 10.0;
            }
            last = (now, bytes, frames);
        }
    }
}
