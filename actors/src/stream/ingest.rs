//! Ingest: the first stage of a stream's tree.
//!
//! Owns the receiving end of the publisher's bounded channel. Validates what arrives (FLV
//! video must be H.264, audio AAC; sequence headers must parse), normalises timestamps to the
//! 90 kHz clock starting at the first keyframe, decides segment boundaries (the first keyframe at
//! or after the segment target), counts ingress metrics, and fans frames out to the packagers.
//!
//! Drop policy towards the packagers: a full packager channel drops the frame, counts it, and
//! drops video until the next keyframe (a decoder cannot use frames whose references are gone).
//! Supervised by [`super::supervisor::StreamSupervisor`]; its outcome (ended / failed with a
//! reason) is handed back through a oneshot channel before the task returns.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hivecast_proto::codec::aac::AacConfig;
use hivecast_proto::codec::h264::{self, AvcConfig};
use hivecast_proto::flv::{self, FlvAudio, FlvVideo};
use hivecast_proto::media::{AudioFrame, TrackConfigs, VideoFrame};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::packager::PackagerInput;
use super::{IngestStats, StreamOutcome};
use crate::registry::Registry;
use crate::store::StreamMedia;
use crate::types::{unix_ms_now, RenditionId, StreamName, StreamStatus};

/// What the protocol listener hands to the ingest (RTMP today; any protocol later).
#[derive(Debug)]
pub enum IngestInput {
    /// `@setDataFrame onMetaData` fields we use.
    Metadata(SourceMetadata),
    /// An FLV VIDEODATA body with its RTMP timestamp.
    Video {
        /// Milliseconds, publisher clock.
        timestamp_ms: u32,
        /// The tag body.
        payload: Bytes,
    },
    /// An FLV AUDIODATA body with its RTMP timestamp.
    Audio {
        /// Milliseconds, publisher clock.
        timestamp_ms: u32,
        /// The tag body.
        payload: Bytes,
    },
    /// The publisher unpublished cleanly. (A dropped sender without `End` means the
    /// connection was lost.)
    End,
}

/// Metadata announced by the publisher (all optional: encoders differ).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceMetadata {
    /// Declared frame rate.
    pub frame_rate: Option<f64>,
    /// Declared video bitrate, kbit/s.
    pub video_kbps: Option<f64>,
    /// Declared audio bitrate, kbit/s.
    pub audio_kbps: Option<f64>,
}

/// Where the ingest sends frames.
pub struct IngestOutputs {
    /// The source (passthrough) packager; it also muxes audio into TS.
    pub video: Vec<mpsc::Sender<PackagerInput>>,
    /// The audio packager.
    pub audio: Option<mpsc::Sender<PackagerInput>>,
    /// The transcoder (config, video, end), when this stream is transcoded.
    pub transcoder: Option<mpsc::Sender<PackagerInput>>,
    /// The transcoded renditions' packagers: audio only (for TS). Their video, config and
    /// end come from the transcoder.
    pub rung_audio: Vec<mpsc::Sender<PackagerInput>>,
    /// The transcoding plan (ladder and source policy), when transcoded.
    pub plan: Option<super::TranscodePlan>,
}

/// Everything the ingest task needs.
pub struct IngestTask {
    /// The stream.
    pub name: StreamName,
    /// The session's media (for the start clock).
    pub media: Arc<StreamMedia>,
    /// Frames from the listener.
    pub input: mpsc::Receiver<IngestInput>,
    /// Frames to the packagers.
    pub outputs: IngestOutputs,
    /// Shared counters.
    pub stats: Arc<IngestStats>,
    /// Status changes.
    pub registry: Arc<dyn Registry>,
    /// No media for this long -> failure.
    pub media_timeout: Duration,
    /// Where the outcome goes.
    pub outcome: oneshot::Sender<StreamOutcome>,
}

/// A step between two frames of one track larger than this (forward) is not a pause an
/// encoder makes (the media timeout ends a stream long before), but a publisher clock that
/// jumped: the track is re-based so that its media time goes on smoothly.
pub(crate) const JUMP_FORWARD_MS: i64 = 3_000;
/// A step back larger than this is a jump too (smaller ones are jitter: decode timestamps are
/// nudged forward instead).
pub(crate) const JUMP_BACK_MS: i64 = 1_000;

/// One track's publisher clock: 32-bit RTMP milliseconds unwrapped, and jumps taken out.
#[derive(Debug, Default)]
struct TrackClock {
    last_raw: Option<u32>,
    wraps: i64,
    /// Added to the unwrapped time since the last jump.
    shift: i64,
    /// The previous frame's corrected time, and the step before it.
    last_ms: Option<i64>,
    last_step: i64,
}

impl TrackClock {
    /// The corrected time of a frame stamped `raw`, and the size of the jump taken out at this
    /// frame (0 if none).
    fn place(&mut self, raw: u32, usual_step: i64) -> (i64, i64) {
        if let Some(last) = self.last_raw {
            // A jump back of more than half the range is a wrap (after ~49.7 days).
            if raw < last && last - raw > u32::MAX / 2 {
                self.wraps += 1;
            }
            // And a jump forward of more than half the range is an unwrap of a wrap that
            // came too early (a clock that went back across zero).
            if raw > last && raw - last > u32::MAX / 2 {
                self.wraps -= 1;
            }
        }
        self.last_raw = Some(raw);
        let mut ms = i64::from(raw) + (self.wraps << 32) + self.shift;
        let mut jump = 0;
        if let Some(last) = self.last_ms {
            let step = ms - last;
            if !(-JUMP_BACK_MS..=JUMP_FORWARD_MS).contains(&step) {
                let smooth = if (1..=100).contains(&self.last_step) {
                    self.last_step
                } else {
                    usual_step
                };
                jump = step;
                self.shift += last + smooth - ms;
                ms = last + smooth;
            }
            self.last_step = ms - last;
        }
        self.last_ms = Some(ms);
        (ms, jump)
    }
}

/// Says that the publisher's clock jumped: the first time, then at most every 10 s with the
/// count (a publisher that jumps on every frame gives one line per 10 s, not one per frame).
#[derive(Debug, Default)]
struct JumpLog {
    count: u64,
    last_line: Option<std::time::Instant>,
}

impl JumpLog {
    fn note(&mut self, jump_ms: Option<i64>) {
        let Some(jump_ms) = jump_ms else { return };
        self.count += 1;
        let now = std::time::Instant::now();
        if self
            .last_line
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
        {
            self.last_line = Some(now);
            warn!(
                jump_ms,
                jumps = self.count,
                "publisher timestamps jumped; the track is re-based so media time goes on (logged at most every 10 s)"
            );
        }
    }
}

/// Timestamp and boundary bookkeeping, free of I/O so it can be tested directly.
#[derive(Debug, Default)]
pub(crate) struct Timeline {
    /// Publisher time of the first keyframe (media time zero).
    base_ms: Option<i64>,
    last_video_dts: Option<i64>,
    segment_start_pts: i64,
    segment_target_90k: i64,
    video_clock: TrackClock,
    audio_clock: TrackClock,
    /// The latest clock jump taken out (ms, signed), until [`Timeline::take_jump`].
    jump: Option<i64>,
    /// Segments opened so far.
    segments: u64,
    /// Boundaries on any frame (the transcoder forces keyframes there), not only on source
    /// keyframes: used when the source is not offered, so its GOP does not matter.
    grid: bool,
}

impl Timeline {
    pub(crate) fn new(segment_target: Duration) -> Self {
        Self {
            segment_target_90k: (segment_target.as_millis() as i64) * 90,
            ..Self::default()
        }
    }

    /// The publisher clock jump taken out since the last call (ms; positive: forward), if any.
    pub(crate) fn take_jump(&mut self) -> Option<i64> {
        self.jump.take()
    }

    pub(crate) fn started(&self) -> bool {
        self.base_ms.is_some()
    }

    /// Cut on the segment target whatever the source's keyframes (see `grid`).
    pub(crate) fn set_grid(&mut self, grid: bool) {
        self.grid = grid;
    }

    /// Place a video frame: returns (dts_90k, segment_start), or `None` to drop it (before the
    /// first keyframe).
    pub(crate) fn video(
        &mut self,
        raw_ms: u32,
        keyframe: bool,
        cts_ms: i32,
    ) -> Option<(i64, bool)> {
        let (ms, jump) = self.video_clock.place(raw_ms, 33);
        if jump != 0 {
            self.jump = Some(jump);
        }
        let base = match self.base_ms {
            Some(b) => b,
            None if keyframe => {
                self.base_ms = Some(ms);
                ms
            }
            None => return None,
        };
        let mut dts = (ms - base) * 90;
        // Decode timestamps must increase strictly; encoders that repeat or go back a few ms
        // (seen with some OBS versions after a hiccup) get nudged forward by one tick.
        if let Some(last) = self.last_video_dts {
            if dts <= last {
                dts = last + 1;
            }
        }
        self.last_video_dts = Some(dts);
        let pts = dts + i64::from(cts_ms) * 90;
        let first = self.segments == 0;
        // Fast start: the first segment closes at the first keyframe after half the target,
        // so the first playlist (which needs one complete segment) is out sooner.
        let target = if self.segments == 1 {
            self.segment_target_90k / 2
        } else {
            self.segment_target_90k
        };
        let boundary = first || ((keyframe || self.grid) && pts - self.segment_start_pts >= target);
        if boundary {
            self.segment_start_pts = pts;
            self.segments += 1;
        }
        Some((dts, boundary))
    }

    /// Place an audio frame: pts_90k, or `None` before media time zero.
    pub(crate) fn audio(&mut self, raw_ms: u32) -> Option<i64> {
        let (ms, jump) = self.audio_clock.place(raw_ms, 21);
        if jump != 0 {
            self.jump = Some(jump);
        }
        let base = self.base_ms?;
        let pts = (ms - base) * 90;
        (pts >= 0).then_some(pts)
    }
}

impl IngestTask {
    /// Run until the publisher ends, fails or goes silent. Always reports an outcome.
    pub async fn run(mut self) -> Result<(), String> {
        let outcome = self.pump().await;
        match &outcome {
            StreamOutcome::Ended => info!("publisher ended the stream"),
            StreamOutcome::Failed(reason) => warn!(%reason, "stream failed"),
        }
        let end = PackagerInput::End;
        for tx in self
            .outputs
            .video
            .iter()
            .chain(self.outputs.audio.iter())
            .chain(self.outputs.transcoder.iter())
        {
            // End must get through even if the packager is behind: wait (bounded) for room.
            let _ = tokio::time::timeout(Duration::from_secs(2), tx.send(end.clone())).await;
        }
        let _ = self.outcome.send(outcome);
        Ok(())
    }

    async fn pump(&mut self) -> StreamOutcome {
        let mut timeline = Timeline::new(self.media.config.segment_target);
        let mut jumps = JumpLog::default();
        let mut avc: Option<AvcConfig> = None;
        let mut aac: Option<AacConfig> = None;
        let mut configs_sent = false;
        let mut need_keyframe = vec![false; self.outputs.video.len()];
        // Towards the transcoder: after a drop, wait for a keyframe; a segment start that was
        // dropped is carried to the next frame that gets through.
        let mut tc_need_keyframe = false;
        let mut tc_pending_boundary = false;
        let mut metadata = SourceMetadata::default();
        loop {
            let item = match tokio::time::timeout(self.media_timeout, self.input.recv()).await {
                Err(_) => {
                    return StreamOutcome::Failed(format!(
                        "no media received for {} ms",
                        self.media_timeout.as_millis()
                    ))
                }
                Ok(None) => {
                    return StreamOutcome::Failed(
                        "publisher connection lost without unpublish".to_owned(),
                    )
                }
                Ok(Some(item)) => item,
            };
            match item {
                IngestInput::End => return StreamOutcome::Ended,
                IngestInput::Metadata(m) => {
                    debug!(?m, "metadata");
                    metadata = m;
                }
                IngestInput::Video {
                    timestamp_ms,
                    payload,
                } => {
                    self.stats
                        .bytes
                        .fetch_add(payload.len() as u64, Ordering::Relaxed);
                    let tag = match flv::parse_video(&payload) {
                        Ok(t) => t,
                        Err(e) => return StreamOutcome::Failed(e.to_string()),
                    };
                    match tag {
                        FlvVideo::SequenceHeader(record) => match AvcConfig::parse(record) {
                            Ok(cfg) => {
                                info!(codec = %cfg.codec_string(), width = cfg.width, height = cfg.height, "video config");
                                {
                                    let mut d = self
                                        .stats
                                        .describe
                                        .lock()
                                        .unwrap_or_else(|e| e.into_inner());
                                    d.video_codec = Some(cfg.codec_string());
                                    d.width = Some(cfg.width);
                                    d.height = Some(cfg.height);
                                }
                                if configs_sent && avc.as_ref() != Some(&cfg) {
                                    // A mid-stream change of parameters: packagers re-init at the
                                    // next segment.
                                    self.send_config(&Some(cfg.clone()), &aac, &metadata).await;
                                }
                                avc = Some(cfg);
                            }
                            Err(e) => {
                                return StreamOutcome::Failed(format!(
                                    "bad H.264 configuration: {e}"
                                ))
                            }
                        },
                        FlvVideo::EndOfSequence => {}
                        FlvVideo::Frame {
                            keyframe,
                            cts_ms,
                            data,
                        } => {
                            self.stats.video_frames.fetch_add(1, Ordering::Relaxed);
                            let Some(cfg) = avc.as_ref() else {
                                self.stats.dropped_frames.fetch_add(1, Ordering::Relaxed);
                                continue;
                            };
                            let data = match h264::to_avcc4(&data, cfg.nal_length_size) {
                                Ok(d) => d,
                                Err(e) => {
                                    return StreamOutcome::Failed(format!("bad H.264 frame: {e}"))
                                }
                            };
                            let was_started = timeline.started();
                            let placed = timeline.video(timestamp_ms, keyframe, cts_ms);
                            jumps.note(timeline.take_jump());
                            let Some((dts, segment_start)) = placed else {
                                self.stats.dropped_frames.fetch_add(1, Ordering::Relaxed);
                                continue;
                            };
                            if !was_started {
                                self.media.set_start_wall_ms(unix_ms_now());
                                self.decide_renditions(cfg_size(&avc), &metadata, &mut timeline)
                                    .await;
                                self.send_config(&avc, &aac, &metadata).await;
                                configs_sent = true;
                                if let Err(e) = self
                                    .registry
                                    .set_status(
                                        self.name.clone(),
                                        self.media.epoch,
                                        StreamStatus::Active,
                                        None,
                                    )
                                    .await
                                {
                                    return StreamOutcome::Failed(format!("registry: {e}"));
                                }
                            }
                            let frame = VideoFrame {
                                dts_90k: dts,
                                cts_90k: cts_ms.saturating_mul(90),
                                keyframe,
                                data,
                            };
                            if segment_start {
                                if let Some(a) = &self.outputs.audio {
                                    if a.try_send(PackagerInput::Boundary {
                                        pts_90k: frame.pts_90k(),
                                    })
                                    .is_err()
                                    {
                                        self.stats.dropped_frames.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                            }
                            if let Some(tc) = &self.outputs.transcoder {
                                if tc_need_keyframe && !keyframe {
                                    tc_pending_boundary |= segment_start;
                                } else {
                                    let item = PackagerInput::Video {
                                        frame: frame.clone(),
                                        segment_start: segment_start
                                            || std::mem::take(&mut tc_pending_boundary),
                                    };
                                    tc_need_keyframe = false;
                                    if let Err(mpsc::error::TrySendError::Full(_)) =
                                        tc.try_send(item)
                                    {
                                        tc_need_keyframe = true;
                                        tc_pending_boundary |= segment_start;
                                        let n = self
                                            .stats
                                            .dropped_frames
                                            .fetch_add(1, Ordering::Relaxed)
                                            + 1;
                                        if n.is_power_of_two() {
                                            warn!(dropped = n, "transcoder input full: dropping video until the next keyframe");
                                        }
                                    }
                                }
                            }
                            for (i, tx) in self.outputs.video.iter().enumerate() {
                                if need_keyframe[i] && !keyframe {
                                    self.stats.dropped_frames.fetch_add(1, Ordering::Relaxed);
                                    continue;
                                }
                                need_keyframe[i] = false;
                                let item = PackagerInput::Video {
                                    frame: frame.clone(),
                                    segment_start,
                                };
                                if tx.try_send(item).is_err() {
                                    need_keyframe[i] = true;
                                    let n =
                                        self.stats.dropped_frames.fetch_add(1, Ordering::Relaxed)
                                            + 1;
                                    if n.is_power_of_two() {
                                        warn!(dropped = n, "packager input full: dropping video until the next keyframe");
                                    }
                                }
                            }
                        }
                    }
                }
                IngestInput::Audio {
                    timestamp_ms,
                    payload,
                } => {
                    self.stats
                        .bytes
                        .fetch_add(payload.len() as u64, Ordering::Relaxed);
                    let tag = match flv::parse_audio(&payload) {
                        Ok(t) => t,
                        Err(e) => return StreamOutcome::Failed(e.to_string()),
                    };
                    match tag {
                        FlvAudio::SequenceHeader(asc) => match AacConfig::parse(asc) {
                            Ok(cfg) => {
                                info!(codec = %cfg.codec_string(), rate = cfg.sample_rate, channels = cfg.channels, "audio config");
                                self.stats
                                    .describe
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .audio_codec = Some(cfg.codec_string());
                                let changed = aac.as_ref() != Some(&cfg);
                                aac = Some(cfg);
                                if configs_sent && changed {
                                    self.send_config(&avc, &aac, &metadata).await;
                                }
                            }
                            Err(e) => {
                                return StreamOutcome::Failed(format!("bad AAC configuration: {e}"))
                            }
                        },
                        FlvAudio::Frame(data) => {
                            self.stats.audio_frames.fetch_add(1, Ordering::Relaxed);
                            if aac.is_none() {
                                continue;
                            }
                            let placed = timeline.audio(timestamp_ms);
                            jumps.note(timeline.take_jump());
                            let Some(pts) = placed else {
                                continue;
                            };
                            let frame = AudioFrame { pts_90k: pts, data };
                            for tx in self
                                .outputs
                                .video
                                .iter()
                                .chain(self.outputs.audio.iter())
                                .chain(self.outputs.rung_audio.iter())
                            {
                                if let Err(mpsc::error::TrySendError::Full(_)) =
                                    tx.try_send(PackagerInput::Audio(frame.clone()))
                                {
                                    self.stats.dropped_frames.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    async fn send_config(
        &self,
        avc: &Option<AvcConfig>,
        aac: &Option<AacConfig>,
        metadata: &SourceMetadata,
    ) {
        let cfg = PackagerInput::Config {
            tracks: TrackConfigs {
                video: avc.clone(),
                audio: aac.clone(),
            },
            frame_rate: metadata.frame_rate,
            declared_kbps: metadata.video_kbps.unwrap_or(0.0) + metadata.audio_kbps.unwrap_or(0.0),
        };
        for tx in self
            .outputs
            .video
            .iter()
            .chain(self.outputs.audio.iter())
            .chain(self.outputs.transcoder.iter())
        {
            let _ = tokio::time::timeout(Duration::from_secs(1), tx.send(cfg.clone())).await;
        }
    }

    /// At the first keyframe: which video renditions this session has (the ladder's rungs
    /// that apply, and `source` unless capped or disabled), in master-playlist order. When
    /// `source` is not offered, its packager is ended and segments follow a regular grid.
    async fn decide_renditions(
        &mut self,
        (width, height): (u32, u32),
        metadata: &SourceMetadata,
        timeline: &mut Timeline,
    ) {
        let plan = self.outputs.plan.as_ref().map(|p| {
            (
                crate::transcode::ladder::plan(&p.ladder, width, height),
                p.source.clone(),
            )
        });
        let transcoding = plan.as_ref().is_some_and(|(rungs, _)| !rungs.is_empty());
        let rungs_len = plan.as_ref().map_or(0, |(r, _)| r.len());
        let policy = plan.as_ref().map(|(_, p)| p.clone()).unwrap_or_default();
        let offered = crate::transcode::ladder::source_offered(
            &policy,
            plan.is_some(),
            rungs_len,
            height,
            metadata.video_kbps,
        );
        let mut ids = Vec::new();
        let mut reason = None;
        match offered {
            Ok(()) => ids.push(RenditionId::source()),
            Err(why) => {
                info!(reason = why, "source rendition not offered");
                reason = Some(why.to_owned());
                for tx in self.outputs.video.drain(..) {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(1), tx.send(PackagerInput::End))
                            .await;
                }
                timeline.set_grid(true);
            }
        }
        if let Some((rungs, _)) = &plan {
            ids.extend(rungs.iter().map(|r| r.id.clone()));
            if rungs.is_empty() {
                reason = Some(format!(
                    "source ({width}x{height}) is smaller than every rung: passthrough only"
                ));
            }
        }
        self.media.set_video_renditions(ids.clone());
        self.stats.update_transcode(|t| {
            if plan.is_some() {
                t.mode = if transcoding {
                    "transcoding"
                } else {
                    "passthrough"
                };
                if reason.is_some() {
                    t.reason = reason;
                }
            }
            t.renditions = ids.iter().map(ToString::to_string).collect();
        });
    }
}

fn cfg_size(avc: &Option<AvcConfig>) -> (u32, u32) {
    avc.as_ref().map_or((0, 0), |c| (c.width, c.height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_starts_at_first_keyframe() {
        let mut t = Timeline::new(Duration::from_secs(2));
        assert_eq!(
            t.video(1000, false, 0),
            None,
            "frames before the first keyframe are dropped"
        );
        assert_eq!(t.audio(1000), None);
        assert_eq!(t.video(1033, true, 0), Some((0, true)));
        assert_eq!(t.audio(1033), Some(0));
        assert_eq!(
            t.audio(1000),
            None,
            "audio before media time zero is dropped"
        );
        assert_eq!(t.video(1066, false, 0), Some((33 * 90, false)));
    }

    #[test]
    fn boundaries_at_keyframes_after_target() {
        let mut t = Timeline::new(Duration::from_secs(2));
        let mut cuts = Vec::new();
        for i in 0..300u32 {
            let ms = i * 100 / 3; // 30 fps
            let key = i % 30 == 0; // 1 s GOP
            if let Some((_, b)) = t.video(ms, key, 0) {
                if b {
                    cuts.push(i);
                }
            }
        }
        assert_eq!(
            cuts,
            vec![0, 30, 90, 150, 210, 270],
            "first segment half the target"
        );
    }

    #[test]
    fn dts_strictly_increases() {
        let mut t = Timeline::new(Duration::from_secs(2));
        let a = t.video(0, true, 0).unwrap().0;
        let b = t.video(0, false, 0).unwrap().0;
        let c = t.video(0, false, 0).unwrap().0;
        assert!(a < b && b < c);
    }

    #[test]
    fn a_publisher_clock_jump_is_taken_out_of_both_tracks() {
        let mut t = Timeline::new(Duration::from_secs(2));
        let hours = 3 * 3_600_000;
        assert_eq!(t.video(0, true, 0), Some((0, true)));
        assert_eq!(t.audio(0), Some(0));
        assert_eq!(t.video(33, false, 0), Some((33 * 90, false)));
        assert_eq!(t.audio(21), Some(21 * 90));
        // Three hours forward: each track goes on one usual step later, and says so once.
        assert_eq!(t.video(66 + hours, false, 0), Some((66 * 90, false)));
        assert_eq!(t.take_jump(), Some(i64::from(33 + hours)));
        assert_eq!(t.take_jump(), None);
        assert_eq!(t.audio(42 + hours), Some(42 * 90));
        assert_eq!(t.video(99 + hours, false, 0), Some((99 * 90, false)));
        assert_eq!(t.audio(63 + hours), Some(63 * 90));
        assert_eq!(t.take_jump(), Some(i64::from(21 + hours)), "the audio jump");
        // And back by more than the range of jitter, e.g. a publisher restarting its clock.
        assert_eq!(t.video(5, false, 0), Some((132 * 90, false)));
        assert!(t.take_jump().unwrap() < 0);
        assert_eq!(t.video(38, false, 0), Some((165 * 90, false)));
    }

    #[test]
    fn ordinary_gaps_and_jitter_are_not_jumps() {
        let mut t = Timeline::new(Duration::from_secs(2));
        t.video(0, true, 0);
        // A 2 s gap (a dropped burst) and a 500 ms step back are kept as they are.
        assert_eq!(t.video(2_000, false, 0), Some((2_000 * 90, false)));
        assert_eq!(t.video(1_500, false, 0), Some((2_000 * 90 + 1, false)));
        assert_eq!(t.take_jump(), None);
    }

    #[test]
    fn rtmp_timestamp_wrap() {
        let mut t = Timeline::new(Duration::from_secs(2));
        let near = u32::MAX - 10;
        assert_eq!(t.video(near, true, 0), Some((0, true)));
        let (dts, _) = t.video(20, false, 0).unwrap();
        assert_eq!(dts, 31 * 90);
    }
}
