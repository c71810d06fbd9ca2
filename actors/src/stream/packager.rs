//! Packager: cuts one track into segments and LL-HLS parts and writes them into the store.
//!
//! One packager per video rendition writes CMAF (LL-HLS/DASH) and MPEG-TS (legacy HLS, with the
//! audio muxed in); one packager for the shared audio track writes CMAF. Cut points are not its
//! choice: video segments start where the ingest flagged `segment_start` (aligned keyframes),
//! audio segments start at the first audio frame at or after each `Boundary`. Parts are cut by
//! duration: a part closes as soon as the next frame would take it past PART-TARGET.
//!
//! The state machine ([`VideoPackager`], [`AudioPackager`]) is plain code driven by
//! [`PackagerTask::run`], so it is unit-tested without a runtime. Supervised by the stream
//! supervisor; if it fails, the stream goes to ERROR and playlists stop advancing.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::BytesMut;
use hivecast_proto::cmaf::{self, CmafSample, CmafTrack};
use hivecast_proto::codec::aac::AacConfig;
use hivecast_proto::codec::h264::AvcConfig;
use hivecast_proto::media::{AudioFrame, TrackConfigs, VideoFrame, CLOCK_90K};
use hivecast_proto::ts::TsMuxer;
use tokio::sync::mpsc;
use tracing::warn;

use crate::store::{StreamMedia, TrackFormat, TrackInfo, TrackKind, TrackStore};
use crate::types::RenditionId;

/// What a packager consumes.
#[derive(Debug, Clone)]
pub enum PackagerInput {
    /// Codec parameters (sent before the first frame, and again if they change).
    Config {
        /// The tracks.
        tracks: TrackConfigs,
        /// Declared frame rate, if the publisher announced one.
        frame_rate: Option<f64>,
        /// Declared total bitrate (kbit/s), 0 if unknown.
        declared_kbps: f64,
    },
    /// A video frame; `segment_start` marks an aligned keyframe that opens a segment.
    Video {
        /// The frame.
        frame: VideoFrame,
        /// Opens a new segment.
        segment_start: bool,
    },
    /// An audio frame.
    Audio(AudioFrame),
    /// Video opened a segment at this presentation time (for the audio track's cuts).
    Boundary {
        /// 90 kHz.
        pts_90k: i64,
    },
    /// The input is over: flush the open segment and stop. (Whether the playlists then end
    /// or stay open for a next session is decided for the whole session by the supervisor.)
    End,
}

/// Audio frames a video packager holds for TS muxing (about 10 s of 48 kHz AAC).
const MAX_TS_AUDIO_QUEUE: usize = 480;

/// Largest gap between two video frames that we treat as a frame duration. Beyond it (encoder
/// stall) the duration is capped so one sample cannot span many seconds.
const MAX_FRAME_GAP_90K: i64 = 2 * CLOCK_90K as i64;

/// The samples of the LL-HLS part being built, and the writing of it as one CMAF chunk.
#[derive(Default)]
struct PartBuilder {
    samples: Vec<CmafSample>,
    /// Decode time of the first sample, track timescale.
    start: u64,
    /// Sum of the sample durations, track timescale.
    ticks: u64,
    /// `mfhd` sequence number of the last chunk written.
    fragment_seq: u32,
}

impl PartBuilder {
    fn push(&mut self, decode_time: u64, sample: CmafSample) {
        if self.samples.is_empty() {
            self.start = decode_time;
        }
        self.ticks += u64::from(sample.duration);
        self.samples.push(sample);
    }

    /// Write the part into `track` (if it has samples) and re-render its playlist.
    fn flush(&mut self, media: &StreamMedia, track: &TrackStore, timescale: u32) {
        let Some(first) = self.samples.first() else {
            return;
        };
        let independent = first.keyframe;
        let mut out = BytesMut::new();
        self.fragment_seq = self.fragment_seq.wrapping_add(1);
        cmaf::write_fragment(self.fragment_seq, self.start, &self.samples, &mut out);
        let duration = self.ticks as f64 / f64::from(timescale.max(1));
        self.samples.clear();
        self.ticks = 0;
        track.push_part(duration, independent, out.freeze());
        media.render(track);
    }
}

/// Video track state: CMAF parts/segments and the TS segment in progress.
pub struct VideoPackager {
    media: Arc<StreamMedia>,
    rendition: RenditionId,
    /// CMAF and TS tracks, created with the first configuration (a rung the transcoder does
    /// not produce for this source never shows up in the store).
    tracks: Option<(Arc<TrackStore>, Arc<TrackStore>)>,
    avc: Option<AvcConfig>,
    aac: Option<AacConfig>,
    frame_rate: Option<f64>,
    declared_bps: u64,
    tsmux: Option<TsMuxer>,
    ts_buf: BytesMut,
    /// A TS segment is open (tables written).
    ts_open: bool,
    /// Audio waiting to be muxed into TS once video has reached its time (the transcoded
    /// renditions' video comes later than the audio, which the ingest sends directly).
    ts_audio: VecDeque<AudioFrame>,
    /// The newest frame: its duration is known only when the next one arrives.
    pending: Option<VideoFrame>,
    part: PartBuilder,
    last_duration: i64,
    cmaf_open: bool,
    part_target_90k: i64,
    reconfigure: bool,
}

impl VideoPackager {
    /// A packager for `rendition` of `media`.
    pub fn new(media: Arc<StreamMedia>, rendition: RenditionId) -> Self {
        let part_target_90k =
            (media.config.part_target.as_secs_f64() * f64::from(CLOCK_90K)) as i64;
        Self {
            media,
            rendition,
            tracks: None,
            ts_audio: VecDeque::new(),
            avc: None,
            aac: None,
            frame_rate: None,
            declared_bps: 0,
            tsmux: None,
            ts_buf: BytesMut::new(),
            ts_open: false,
            pending: None,
            part: PartBuilder::default(),
            last_duration: 3000,
            cmaf_open: false,
            part_target_90k,
            reconfigure: false,
        }
    }

    /// Handle one input.
    pub fn handle(&mut self, input: PackagerInput) {
        match input {
            PackagerInput::Config {
                tracks,
                frame_rate,
                declared_kbps,
            } => {
                let changed = self.avc.is_some();
                self.avc = tracks.video;
                self.aac = tracks.audio;
                self.frame_rate = frame_rate.filter(|f| f.is_finite() && *f > 0.0 && *f <= 240.0);
                self.declared_bps = (declared_kbps.max(0.0) * 1000.0) as u64;
                if changed {
                    self.reconfigure = true;
                } else {
                    self.init_tracks();
                }
            }
            PackagerInput::Video {
                frame,
                segment_start,
            } => self.video(frame, segment_start),
            PackagerInput::Audio(a) => self.audio(&a),
            PackagerInput::Boundary { .. } => {}
            PackagerInput::End => self.end(),
        }
    }

    fn init_tracks(&mut self) {
        let Some(avc) = self.avc.as_ref() else { return };
        let mut init = BytesMut::new();
        cmaf::write_init_segment(&CmafTrack::Video(avc), &mut init);
        let info = TrackInfo {
            codec: avc.codec_string(),
            width: Some(avc.width),
            height: Some(avc.height),
            frame_rate: self.frame_rate,
            sample_rate: None,
            channels: None,
            timescale: CLOCK_90K,
            declared_bandwidth: self.declared_bps.max(1_000_000),
        };
        let (cmaf, ts) = self.tracks.get_or_insert_with(|| {
            let r = &self.rendition;
            (
                self.media
                    .track(r.clone(), TrackFormat::Cmaf, TrackKind::Video),
                self.media
                    .track(r.clone(), TrackFormat::Ts, TrackKind::Video),
            )
        });
        cmaf.set_init(Some(init.freeze()), info.clone());
        ts.set_init(None, info);
        self.tsmux = Some(TsMuxer::new(self.avc.clone(), self.aac.clone()));
    }

    fn video(&mut self, frame: VideoFrame, segment_start: bool) {
        let Some((cmaf, _)) = self.tracks.clone() else {
            return; // No configuration yet.
        };
        if !self.cmaf_open && !segment_start {
            return; // Nothing opens a track but an aligned keyframe.
        }
        if let Some(prev) = self.pending.take() {
            let d = (frame.dts_90k - prev.dts_90k).clamp(1, MAX_FRAME_GAP_90K);
            self.last_duration = d;
            self.add_sample(prev, d);
        }
        if segment_start {
            self.flush_part();
            if self.cmaf_open {
                cmaf.finish_segment(frame.dts_90k.max(0) as u64, None);
            }
            if self.reconfigure {
                self.reconfigure = false;
                self.init_tracks();
            }
            let pdt = self.pdt_ms(frame.pts_90k());
            cmaf.begin_segment(frame.dts_90k.max(0) as u64, pdt);
            self.cmaf_open = true;
            self.media.render(&cmaf);
            self.media.render_mpd();
            self.cut_ts(&frame);
        } else if self.part.ticks > 0
            && self.part.ticks as i64 + self.last_duration > self.part_target_90k
        {
            self.flush_part();
        }
        if let Some(mux) = self.tsmux.as_mut() {
            if self.ts_open {
                if let Err(e) = mux.write_video(&frame, &mut self.ts_buf) {
                    warn!(error = %e, "ts: video frame not muxed");
                }
            }
        }
        self.mux_audio_until(frame.dts_90k + 1);
        self.pending = Some(frame);
    }

    fn audio(&mut self, a: &AudioFrame) {
        if self.tsmux.is_none() {
            return;
        }
        self.ts_audio.push_back(a.clone());
        // Bounded: about 10 s of 48 kHz AAC. Beyond it the oldest goes out (or away).
        while self.ts_audio.len() > MAX_TS_AUDIO_QUEUE {
            if let Some(old) = self.ts_audio.pop_front() {
                self.mux_audio(&old);
            }
        }
    }

    /// Mux queued audio that starts before `pts_90k` into the open TS segment.
    fn mux_audio_until(&mut self, pts_90k: i64) {
        while self.ts_audio.front().is_some_and(|a| a.pts_90k < pts_90k) {
            if let Some(a) = self.ts_audio.pop_front() {
                self.mux_audio(&a);
            }
        }
    }

    fn mux_audio(&mut self, a: &AudioFrame) {
        if !self.ts_open {
            return; // before the first segment
        }
        if let Some(mux) = self.tsmux.as_mut() {
            if let Err(e) = mux.write_audio(a, &mut self.ts_buf) {
                warn!(error = %e, "ts: audio frame not muxed");
            }
        }
    }

    fn cut_ts(&mut self, frame: &VideoFrame) {
        let Some((_, ts)) = self.tracks.clone() else {
            return;
        };
        if self.tsmux.is_none() {
            return;
        }
        // Audio before the cut belongs to the segment that ends here.
        self.mux_audio_until(frame.pts_90k());
        if std::mem::take(&mut self.ts_open) {
            let data = std::mem::take(&mut self.ts_buf).freeze();
            ts.finish_segment(frame.dts_90k.max(0) as u64, Some(data));
        }
        let pdt = self.pdt_ms(frame.pts_90k());
        ts.begin_segment(frame.dts_90k.max(0) as u64, pdt);
        self.ts_open = true;
        if let Some(mux) = self.tsmux.as_mut() {
            mux.write_tables(&mut self.ts_buf);
        }
        self.media.render(&ts);
    }

    fn add_sample(&mut self, f: VideoFrame, duration: i64) {
        self.part.push(
            f.dts_90k.max(0) as u64,
            CmafSample {
                duration: duration as u32,
                cts_offset: f.cts_90k,
                keyframe: f.keyframe,
                data: f.data,
            },
        );
    }

    fn flush_part(&mut self) {
        if let Some((cmaf, _)) = &self.tracks {
            self.part.flush(&self.media, cmaf, CLOCK_90K);
        }
    }

    fn pdt_ms(&self, pts_90k: i64) -> i64 {
        self.media.start_wall_ms().unwrap_or(0) + pts_90k / 90
    }

    fn end(&mut self) {
        let Some((cmaf, ts)) = self.tracks.clone() else {
            return; // never configured: no track to close
        };
        if let Some(prev) = self.pending.take() {
            let d = self.last_duration;
            let end_dts = prev.dts_90k + d;
            self.add_sample(prev, d);
            self.flush_part();
            self.mux_audio_until(i64::MAX);
            if self.cmaf_open {
                cmaf.finish_segment(end_dts.max(0) as u64, None);
                self.cmaf_open = false;
            }
            if std::mem::take(&mut self.ts_open) {
                let data = std::mem::take(&mut self.ts_buf).freeze();
                ts.finish_segment(end_dts.max(0) as u64, Some(data));
            }
        }
        // Whether the playlists end (ENDLIST, a clean end) or stay open for a next session (a
        // failure) is the supervisor's call for the whole session: StreamMedia::end/interrupt.
        self.media.render(&cmaf);
        self.media.render(&ts);
        self.media.render_mpd();
    }
}

/// Audio track state (CMAF only; TS gets its audio from the video packagers).
pub struct AudioPackager {
    media: Arc<StreamMedia>,
    track: Arc<TrackStore>,
    aac: Option<AacConfig>,
    boundaries: VecDeque<i64>,
    open: bool,
    /// Next sample's decode time, in samples.
    next_ts: u64,
    part: PartBuilder,
    part_target_samples: u64,
}

/// AAC-LC frame length in samples.
const AAC_FRAME: u64 = 1024;

impl AudioPackager {
    /// The packager of the shared audio track of `media`.
    pub fn new(media: Arc<StreamMedia>) -> Self {
        let track = media.track(RenditionId::audio(), TrackFormat::Cmaf, TrackKind::Audio);
        Self {
            media,
            track,
            aac: None,
            boundaries: VecDeque::new(),
            open: false,
            next_ts: 0,
            part: PartBuilder::default(),
            part_target_samples: 0,
        }
    }

    fn rate(&self) -> u64 {
        self.aac
            .as_ref()
            .map_or(48_000, |a| u64::from(a.sample_rate.max(1)))
    }

    /// Handle one input.
    pub fn handle(&mut self, input: PackagerInput) {
        match input {
            PackagerInput::Config { tracks, .. } => {
                let Some(aac) = tracks.audio else { return };
                if self.aac.as_ref() == Some(&aac) {
                    return;
                }
                let mut init = BytesMut::new();
                cmaf::write_init_segment(&CmafTrack::Audio(&aac), &mut init);
                self.track.set_init(
                    Some(init.freeze()),
                    TrackInfo {
                        codec: aac.codec_string(),
                        width: None,
                        height: None,
                        frame_rate: None,
                        sample_rate: Some(aac.sample_rate),
                        channels: Some(aac.channels),
                        timescale: aac.sample_rate.max(1),
                        declared_bandwidth: 128_000,
                    },
                );
                self.aac = Some(aac);
                let rate = self.rate();
                self.part_target_samples =
                    (self.media.config.part_target.as_secs_f64() * rate as f64) as u64;
            }
            PackagerInput::Boundary { pts_90k } => self.boundaries.push_back(pts_90k),
            PackagerInput::Audio(a) => self.audio(a),
            PackagerInput::Video { .. } => {}
            PackagerInput::End => self.end(),
        }
    }

    fn audio(&mut self, a: AudioFrame) {
        if self.aac.is_none() {
            return;
        }
        let rate = self.rate();
        let ts = (a.pts_90k.max(0) as u64) * rate / u64::from(CLOCK_90K);
        let mut cut = false;
        while self.boundaries.front().is_some_and(|b| a.pts_90k >= *b) {
            self.boundaries.pop_front();
            cut = true;
        }
        if !self.open && !cut {
            return; // Audio starts with the first video segment.
        }
        if !self.open || cut {
            self.flush_part();
            if self.open {
                self.track.finish_segment(self.next_ts, None);
            }
            // Samples are back to back (1024 each), across segments too, so the DASH timeline
            // has no overlaps or gaps; re-anchor on the frame's own timestamp only at the start
            // or when the source drifts by more than two frames.
            if !self.open || ts.abs_diff(self.next_ts) > 2 * AAC_FRAME {
                self.next_ts = ts;
            }
            let pdt = self.media.start_wall_ms().unwrap_or(0) + a.pts_90k / 90;
            self.track.begin_segment(self.next_ts, pdt);
            self.open = true;
            self.media.render(&self.track);
            self.media.render_mpd();
        } else if ts.abs_diff(self.next_ts) > 2 * AAC_FRAME {
            self.flush_part();
            self.next_ts = ts;
        }
        self.part.push(
            self.next_ts,
            CmafSample {
                duration: AAC_FRAME as u32,
                cts_offset: 0,
                keyframe: true,
                data: a.data,
            },
        );
        self.next_ts += AAC_FRAME;
        if self.part.ticks + AAC_FRAME > self.part_target_samples {
            self.flush_part();
        }
    }

    fn flush_part(&mut self) {
        let rate = self.rate() as u32;
        self.part.flush(&self.media, &self.track, rate);
    }

    fn end(&mut self) {
        self.flush_part();
        if self.open {
            self.track.finish_segment(self.next_ts, None);
            self.open = false;
        }
        // Ended or interrupted: the supervisor decides for the session (see VideoPackager::end).
        self.media.render(&self.track);
        self.media.render_mpd();
    }
}

/// What [`run`] drives: a packager state machine.
pub trait Packager: Send + 'static {
    /// Handle one input.
    fn handle(&mut self, input: PackagerInput);
    /// The input closed without `End`: flush what is open.
    fn finish(&mut self);
}

impl Packager for VideoPackager {
    fn handle(&mut self, input: PackagerInput) {
        VideoPackager::handle(self, input);
    }
    fn finish(&mut self) {
        self.end();
    }
}

impl Packager for AudioPackager {
    fn handle(&mut self, input: PackagerInput) {
        AudioPackager::handle(self, input);
    }
    fn finish(&mut self) {
        self.end();
    }
}

/// Consume inputs until `End` (or the channel closes, then flush).
pub async fn run<P: Packager>(
    mut p: Box<P>,
    mut rx: mpsc::Receiver<PackagerInput>,
) -> Result<(), String> {
    while let Some(i) = rx.recv().await {
        let end = matches!(i, PackagerInput::End);
        p.handle(i);
        if end {
            return Ok(());
        }
    }
    p.finish();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MediaConfig, PartLookup};
    use crate::types::{Epoch, StreamName};
    use bytes::Bytes;
    use std::time::Duration;

    fn configs() -> TrackConfigs {
        TrackConfigs {
            video: Some(AvcConfig {
                record: Bytes::new(),
                sps: vec![Bytes::from_static(&[0x67, 0x42, 0xc0, 0x1e, 0xd9])],
                pps: vec![Bytes::from_static(&[0x68, 0xce, 0x3c, 0x80])],
                profile_idc: 0x42,
                constraint_flags: 0xc0,
                level_idc: 0x1e,
                nal_length_size: 4,
                width: 640,
                height: 360,
            }),
            audio: Some(AacConfig {
                asc: Bytes::from_static(&[0x12, 0x10]),
                object_type: 2,
                sample_rate: 44_100,
                sample_rate_index: 4,
                channels: 2,
            }),
        }
    }

    fn frame(i: i64, key: bool) -> VideoFrame {
        let nal: &[u8] = if key {
            &[0, 0, 0, 2, 0x65, 0x88]
        } else {
            &[0, 0, 0, 2, 0x41, 0x9a]
        };
        VideoFrame {
            dts_90k: i * 3000,
            cts_90k: 0,
            keyframe: key,
            data: Bytes::copy_from_slice(nal),
        }
    }

    /// A session of stream `t`, epoch 3, 2 s segments of 200 ms parts.
    fn session(url_base: Option<&str>) -> Arc<StreamMedia> {
        StreamMedia::new(
            StreamName::new("t").unwrap(),
            Epoch(3),
            MediaConfig {
                segment_target: Duration::from_secs(2),
                part_target: Duration::from_millis(200),
                window_segments: 6,
                url_base: url_base.map(Into::into),
                ..MediaConfig::default()
            },
        )
    }

    /// 10 s of 30 fps video with a 1 s GOP and 44.1 kHz audio through both packagers, with the
    /// ingest's boundary rule (every second keyframe here: 2 s segments).
    fn feed_ten_seconds(media: &Arc<StreamMedia>) -> (VideoPackager, AudioPackager) {
        media.set_start_wall_ms(1_000_000);
        let mut v = VideoPackager::new(media.clone(), RenditionId::source());
        let mut a = AudioPackager::new(media.clone());
        let cfg = PackagerInput::Config {
            tracks: configs(),
            frame_rate: Some(30.0),
            declared_kbps: 0.0,
        };
        v.handle(cfg.clone());
        a.handle(cfg);
        let mut audio_pts = 0i64;
        for i in 0..300i64 {
            let key = i % 30 == 0;
            let start = i % 60 == 0;
            let f = frame(i, key);
            if start {
                a.handle(PackagerInput::Boundary {
                    pts_90k: f.pts_90k(),
                });
            }
            v.handle(PackagerInput::Video {
                frame: f,
                segment_start: start,
            });
            while audio_pts <= i * 3000 {
                let af = AudioFrame {
                    pts_90k: audio_pts,
                    data: Bytes::from_static(&[0x21, 0x00]),
                };
                v.handle(PackagerInput::Audio(af.clone()));
                a.handle(PackagerInput::Audio(af));
                audio_pts += 1024 * 90_000 / 44_100;
            }
        }
        (v, a)
    }

    #[test]
    fn segments_parts_and_audio_follow_the_boundaries() {
        let media = session(None);
        let (mut v, mut a) = feed_ten_seconds(&media);
        let cmaf = media.find(TrackFormat::Cmaf, "source").unwrap();
        let ts = media.find(TrackFormat::Ts, "source").unwrap();
        let audio = media.find(TrackFormat::Cmaf, "audio").unwrap();
        // Four complete 2 s segments, the fifth open.
        assert_eq!(cmaf.next_msn(), 5);
        assert_eq!(ts.next_msn(), 5);
        assert_eq!(audio.next_msn(), 5);
        for msn in 0..4 {
            assert!(
                cmaf.segment(msn).is_some()
                    && ts.segment(msn).is_some()
                    && audio.segment(msn).is_some()
            );
        }
        let pl = String::from_utf8(cmaf.playlist().unwrap().to_vec()).unwrap();
        assert!(pl.contains("#EXT-X-MAP:URI=\"init-3.mp4\""), "{pl}");
        assert!(pl.contains("#EXTINF:2.000,\n3-3.m4s"), "{pl}");
        assert!(pl.contains("#EXT-X-PRELOAD-HINT:TYPE=PART"), "{pl}");
        assert!(
            pl.contains("#EXT-X-RENDITION-REPORT:URI=\"../audio/index.m3u8\""),
            "{pl}"
        );
        // Every listed part is within PART-TARGET and the first of each segment is independent.
        for line in pl.lines().filter(|l| l.starts_with("#EXT-X-PART:")) {
            let d: f64 = line["#EXT-X-PART:DURATION=".len()..]
                .split(',')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!(d <= 0.2 + 1e-9, "{line}");
            if line.contains("-4.0.m4s") || line.contains("-3.0.m4s") {
                assert!(line.contains("INDEPENDENT=YES"), "{line}");
            }
        }
        assert!(matches!(cmaf.part(3, 0), PartLookup::Found(_)));
        let tspl = String::from_utf8(ts.playlist().unwrap().to_vec()).unwrap();
        assert!(
            tspl.contains("#EXT-X-VERSION:3") && tspl.contains("3-0.ts"),
            "{tspl}"
        );
        // The end flushes the open segment; the supervisor then closes every playlist.
        v.handle(PackagerInput::End);
        a.handle(PackagerInput::End);
        media.end();
        assert_eq!(cmaf.next_msn(), 5);
        assert!(cmaf.segment(4).is_some() && ts.segment(4).is_some());
        for t in [&cmaf, &ts, &audio] {
            let pl = String::from_utf8(t.playlist().unwrap().to_vec()).unwrap();
            assert!(
                pl.trim_end().ends_with("#EXT-X-ENDLIST") || pl.contains("#EXT-X-ENDLIST\n"),
                "{pl}"
            );
        }
        media.render_mpd();
        let mpd = String::from_utf8(media.mpd().unwrap().to_vec()).unwrap();
        assert!(mpd.contains("media=\"source/3-$Number$.m4s\""), "{mpd}");
    }

    /// With a CDN base, every URL a player follows is absolute under it: variants and the audio
    /// rendition in the masters, init, segments, parts, the preload hint and the rendition
    /// reports in the media playlists, the MPD's BaseURL and its time source.
    #[test]
    fn a_cdn_base_makes_every_url_absolute() {
        let media = session(Some("https://cdn.example.com"));
        let _packagers = feed_ten_seconds(&media);
        let cmaf = media.find(TrackFormat::Cmaf, "source").unwrap();
        let ts = media.find(TrackFormat::Ts, "source").unwrap();
        let pl = String::from_utf8(cmaf.playlist().unwrap().to_vec()).unwrap();
        let dir = "https://cdn.example.com/cmaf/t";
        for want in [
            format!("#EXT-X-MAP:URI=\"{dir}/source/init-3.mp4\""),
            format!("#EXTINF:2.000,\n{dir}/source/3-3.m4s"),
            format!("URI=\"{dir}/source/3-4.0.m4s\""),
            format!("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{dir}/source/3-4."),
            format!("#EXT-X-RENDITION-REPORT:URI=\"{dir}/audio/index.m3u8\""),
        ] {
            assert!(pl.contains(&want), "{want} not in\n{pl}");
        }
        let uri_lines = |text: &str| {
            text.lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        for line in uri_lines(&pl) {
            assert!(line.starts_with(dir), "{line}");
        }
        let tspl = String::from_utf8(ts.playlist().unwrap().to_vec()).unwrap();
        let ts_lines = uri_lines(&tspl);
        assert!(!ts_lines.is_empty());
        for line in ts_lines {
            assert!(
                line.starts_with("https://cdn.example.com/hls/t/source/3-")
                    && line.ends_with(".ts"),
                "{line}"
            );
        }
        let master = |f| {
            String::from_utf8(crate::store::master_playlist(&media, f).unwrap().to_vec()).unwrap()
        };
        let m = master(TrackFormat::Cmaf);
        assert!(m.contains(&format!("\n{dir}/source/index.m3u8")), "{m}");
        assert!(
            m.contains(&format!("URI=\"{dir}/audio/index.m3u8\"")),
            "{m}"
        );
        let m = master(TrackFormat::Ts);
        assert!(
            m.contains("\nhttps://cdn.example.com/hls/t/source/index.m3u8"),
            "{m}"
        );
        media.render_mpd();
        let mpd = String::from_utf8(media.mpd().unwrap().to_vec()).unwrap();
        assert!(mpd.contains(&format!("<BaseURL>{dir}/</BaseURL>")), "{mpd}");
        assert!(
            mpd.contains("value=\"https://cdn.example.com/v1/time\""),
            "{mpd}"
        );
        assert!(
            mpd.find("<BaseURL>") < mpd.find("<Period"),
            "BaseURL precedes Period"
        );
        // Without a base everything stays relative (checked in detail above).
        let plain = session(None);
        let _packagers = feed_ten_seconds(&plain);
        plain.render_mpd();
        let mpd = String::from_utf8(plain.mpd().unwrap().to_vec()).unwrap();
        assert!(
            !mpd.contains("BaseURL") && mpd.contains("value=\"/v1/time\""),
            "{mpd}"
        );
    }

    #[test]
    fn frames_before_the_first_boundary_are_not_packaged() {
        let media = StreamMedia::new(
            StreamName::new("t").unwrap(),
            Epoch(1),
            MediaConfig::default(),
        );
        let mut v = VideoPackager::new(media.clone(), RenditionId::source());
        v.handle(PackagerInput::Config {
            tracks: configs(),
            frame_rate: None,
            declared_kbps: 0.0,
        });
        v.handle(PackagerInput::Video {
            frame: frame(0, false),
            segment_start: false,
        });
        let cmaf = media.find(TrackFormat::Cmaf, "source").unwrap();
        assert!(matches!(cmaf.part(0, 0), PartLookup::Pending));
        assert!(cmaf.playlist().is_none());
    }
}
