//! The health score of a live stream, 0 (broken) to 100 (fine), from four parts each in 0..1:
//!
//! | part | weight | formula | reads |
//! |---|---|---|---|
//! | ingest stability `S_i` | 0.3 | `0` if no video frame arrived in the last second, else `½·(1 − min(1, 2·cv(fps))) + ½·(1 − min(1, cv(bitrate)/2))` | cv = coefficient of variation over the last 10 samples: an encoder whose frame rate swings by a quarter, or whose bitrate swings by twice its mean, loses that half |
//! | dropped frames `S_d` | 0.2 | `1 − min(1, 10 · dropped / received)` over the last 10 s | 10 % of frames dropped (ingest queue full, encoder behind) gives 0 |
//! | viewer stalls `S_v` | 0.3 | `1 − min(1, 2 · stall_rate)`, 1 without viewers | `stall_rate`: share of the concurrent viewers that reported a stall (CMCD `bs`, beacon) in the last 30 s; half of them gives 0 |
//! | transcoder lag `S_l` | 0.2 | `1 − clamp((age − 1000 ms) / 4000 ms, 0, 1)`, 1 if unknown | age: time since the least recently updated LL-HLS playlist of the stream changed (a new part every part target when healthy) |
//!
//! `health = 100 · (0.3·S_i + 0.2·S_d + 0.3·S_v + 0.2·S_l)`, rounded to 0.1.

use std::sync::Arc;

use hivecast_actors::events::StreamMetrics;

/// Samples the stability and drop parts look back over (1 s each).
pub const WINDOW: usize = 10;

/// The score and its parts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Health {
    /// 0..100.
    pub score: f64,
    /// Ingest stability, 0..1.
    pub ingest: f64,
    /// Dropped frames, 0..1.
    pub drops: f64,
    /// Viewer stalls, 0..1.
    pub viewers: f64,
    /// Transcoder/packager lag, 0..1.
    pub lag: f64,
}

fn cv(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if mean <= 0.0 {
        return 0.0;
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    var.sqrt() / mean
}

/// The health of sample `m`, given the samples before it (oldest first).
pub fn score(m: &StreamMetrics, before: &[Arc<StreamMetrics>]) -> Health {
    let recent: Vec<&StreamMetrics> = before
        .iter()
        .rev()
        .take(WINDOW - 1)
        .map(|a| a.as_ref())
        .chain(std::iter::once(m))
        .collect();
    let ingest = if m.ingress.fps <= 0.0 {
        0.0
    } else {
        let fps: Vec<f64> = recent.iter().map(|s| s.ingress.fps).collect();
        let br: Vec<f64> = recent
            .iter()
            .map(|s| s.ingress.ingress_bitrate_kbps)
            .collect();
        0.5 * (1.0 - (2.0 * cv(&fps)).min(1.0)) + 0.5 * (1.0 - (cv(&br) / 2.0).min(1.0))
    };
    let oldest = recent.iter().min_by_key(|s| s.at_ms).copied().unwrap_or(m);
    let frames = m.ingress.frames.saturating_sub(oldest.ingress.frames);
    let dropped = m
        .ingress
        .dropped_frames
        .saturating_sub(oldest.ingress.dropped_frames);
    let drops = if frames == 0 && dropped == 0 {
        1.0
    } else {
        1.0 - (10.0 * dropped as f64 / (frames.max(1) as f64)).min(1.0)
    };
    let viewers = if m.audience.concurrent_viewers == 0 {
        1.0
    } else {
        1.0 - (2.0 * m.audience.stall_rate).min(1.0)
    };
    let lag = match m.media_age_ms {
        Some(age) => 1.0 - ((age as f64 - 1000.0) / 4000.0).clamp(0.0, 1.0),
        None => 1.0,
    };
    let score = 100.0 * (0.3 * ingest + 0.2 * drops + 0.3 * viewers + 0.2 * lag);
    Health {
        score: (score * 10.0).round() / 10.0,
        ingest,
        drops,
        viewers,
        lag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: i64, fps: f64, kbps: f64, frames: u64, dropped: u64) -> StreamMetrics {
        let mut m = StreamMetrics {
            at_ms,
            media_age_ms: Some(200),
            ..StreamMetrics::default()
        };
        m.ingress.fps = fps;
        m.ingress.ingress_bitrate_kbps = kbps;
        m.ingress.frames = frames;
        m.ingress.dropped_frames = dropped;
        m
    }

    fn steady(n: usize) -> Vec<Arc<StreamMetrics>> {
        (0..n)
            .map(|i| Arc::new(sample(i as i64 * 1000, 30.0, 2500.0, i as u64 * 30, 0)))
            .collect()
    }

    #[test]
    fn a_steady_stream_without_viewers_is_fully_healthy() {
        let h = score(&sample(10_000, 30.0, 2500.0, 300, 0), &steady(10));
        assert_eq!(h.score, 100.0);
    }

    #[test]
    fn no_frames_costs_the_ingest_part() {
        let h = score(&sample(10_000, 0.0, 0.0, 270, 0), &steady(10));
        assert_eq!(h.ingest, 0.0);
        assert_eq!(h.score, 70.0);
    }

    #[test]
    fn ten_percent_dropped_zeroes_the_drop_part() {
        // 9 s ago: frame 30, dropped 0; now: 300 frames, 27 dropped -> 27/270 = 10 %.
        let h = score(&sample(10_000, 30.0, 2500.0, 300, 27), &steady(10));
        assert!(h.drops.abs() < 1e-9, "{h:?}");
        assert_eq!(h.score, 80.0);
    }

    #[test]
    fn stalling_viewers_and_lag_lower_the_score() {
        let mut m = sample(10_000, 30.0, 2500.0, 300, 0);
        m.audience.concurrent_viewers = 4;
        m.audience.stall_rate = 0.25;
        m.media_age_ms = Some(3000);
        let h = score(&m, &steady(10));
        assert!((h.viewers - 0.5).abs() < 1e-9);
        assert!((h.lag - 0.5).abs() < 1e-9);
        assert_eq!(h.score, 75.0);
    }

    #[test]
    fn an_unsteady_frame_rate_costs_stability() {
        let before: Vec<Arc<StreamMetrics>> = (0..9)
            .map(|i| {
                let fps = if i % 2 == 0 { 15.0 } else { 30.0 };
                Arc::new(sample(i * 1000, fps, 2500.0, i as u64 * 30, 0))
            })
            .collect();
        let h = score(&sample(9_000, 30.0, 2500.0, 270, 0), &before);
        assert!(h.ingest < 0.9 && h.ingest > 0.4, "{h:?}");
    }
}
