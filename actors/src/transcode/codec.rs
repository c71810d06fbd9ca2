//! The ffmpeg-next side of the transcoder: an H.264 decoder fed with our AVCC frames, a
//! scaler per rendition and a libx264 encoder whose Annex B output is turned back into AVCC
//! frames and an `avcC` record. Each value lives on one thread (the scaler is not `Send`).

use bytes::{Bytes, BytesMut};
use ff::codec::{self, Id};
use ff::format::Pixel;
use ff::software::scaling;
use ff::util::frame::video::Video as RawFrame;
use ff::util::picture;
use ffmpeg_next as ff;
use hivecast_proto::codec::h264::{self, AvcConfig};
use hivecast_proto::media::VideoFrame;
use thiserror::Error;

use super::ladder::RenditionPlan;
use super::TranscodeSettings;

/// What can go wrong inside the codec wrappers.
#[derive(Debug, Error)]
pub enum CodecError {
    /// FFmpeg refused an operation.
    #[error("{what}: {source}")]
    Ffmpeg {
        /// The operation.
        what: &'static str,
        /// FFmpeg's error.
        source: ff::Error,
    },
    /// The codec is not in this FFmpeg build.
    #[error("{0} is not available in this FFmpeg build")]
    Missing(&'static str),
    /// The encoder produced something we cannot use.
    #[error("encoder output: {0}")]
    Output(#[from] h264::H264Error),
}

fn ffe(what: &'static str) -> impl FnOnce(ff::Error) -> CodecError {
    move |source| CodecError::Ffmpeg { what, source }
}

/// Quiet FFmpeg's own logging (errors only; we log through tracing). Idempotent.
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ff::init();
        ff::util::log::set_level(ff::util::log::Level::Error);
    });
}

/// The H.264 decoder of the source.
pub struct Decoder {
    dec: ff::decoder::Video,
    /// SPS and PPS in Annex B, put in front of every keyframe (the decoder has no extradata).
    params: Bytes,
    buf: BytesMut,
}

impl Decoder {
    /// A single-threaded decoder (no frame-threading delay) for `avc`.
    pub fn new(avc: &AvcConfig) -> Result<Self, CodecError> {
        init();
        let codec = ff::decoder::find(Id::H264).ok_or(CodecError::Missing("H.264 decoder"))?;
        let mut ctx = codec::context::Context::new_with_codec(codec);
        ctx.set_threading(codec::threading::Config {
            kind: codec::threading::Type::Slice,
            count: 1,
            ..Default::default()
        });
        let dec = ctx
            .decoder()
            .video()
            .map_err(ffe("opening the H.264 decoder"))?;
        let mut d = Self {
            dec,
            params: Bytes::new(),
            buf: BytesMut::new(),
        };
        d.set_config(avc);
        Ok(d)
    }

    /// New parameter sets (a mid-stream sequence header).
    pub fn set_config(&mut self, avc: &AvcConfig) {
        let mut p = BytesMut::new();
        for nal in avc.sps.iter().chain(avc.pps.iter()) {
            p.extend_from_slice(&[0, 0, 0, 1]);
            p.extend_from_slice(nal);
        }
        self.params = p.freeze();
    }

    /// Feed one frame; decoded pictures come out through `out` (pts in 90 kHz). Each picture
    /// is handed over by value: it references the decoder's buffer, no copy is made.
    pub fn decode(
        &mut self,
        frame: &VideoFrame,
        mut out: impl FnMut(RawFrame, i64),
    ) -> Result<(), CodecError> {
        self.buf.clear();
        if frame.keyframe {
            self.buf.extend_from_slice(&self.params);
        }
        h264::avcc_to_annexb(&frame.data, &mut self.buf)?;
        let mut pkt = ff::Packet::copy(&self.buf);
        pkt.set_pts(Some(frame.pts_90k()));
        pkt.set_dts(Some(frame.dts_90k));
        if frame.keyframe {
            pkt.set_flags(ff::packet::Flags::KEY);
        }
        match self.dec.send_packet(&pkt) {
            Ok(()) => {}
            // Corrupt input: the decoder conceals what it can; not fatal for the stream.
            Err(ff::Error::InvalidData) => return Ok(()),
            Err(e) => return Err(ffe("decoding")(e)),
        }
        self.drain(&mut out)
    }

    /// Flush the decoder's reorder buffer at the end.
    pub fn finish(&mut self, mut out: impl FnMut(RawFrame, i64)) -> Result<(), CodecError> {
        let _ = self.dec.send_eof();
        self.drain(&mut out)
    }

    fn drain(&mut self, out: &mut impl FnMut(RawFrame, i64)) -> Result<(), CodecError> {
        loop {
            let mut frame = RawFrame::empty();
            match self.dec.receive_frame(&mut frame) {
                Ok(()) => {
                    if let Some(pts) = frame.timestamp().or(frame.pts()) {
                        out(frame, pts);
                    }
                }
                Err(ff::Error::Other {
                    errno: ff::util::error::EAGAIN,
                })
                | Err(ff::Error::Eof) => return Ok(()),
                Err(ff::Error::InvalidData) => continue,
                Err(e) => return Err(ffe("receiving a decoded frame")(e)),
            }
        }
    }
}

/// x264 threads for a rendition. `0` (automatic) gives one thread per started 720 lines, at most
/// the machine's cores: every rendition already runs on its own thread, so x264's own automatic
/// choice (1.5 x cores per encoder, sliced) only adds contention, while a 1080p encode on one
/// thread is too close to the frame interval to absorb an IDR.
pub fn encoder_threads(configured: u32, height: u32) -> u32 {
    if configured > 0 {
        return configured;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    height.div_ceil(720).clamp(1, cores.max(1))
}

/// One rendition's scaler and libx264 encoder.
pub struct Encoder {
    enc: ff::encoder::Video,
    scaler: Option<(scaling::Context, Pixel, u32, u32)>,
    scaled: RawFrame,
    packet: ff::Packet,
    width: u32,
    height: u32,
    config: Option<AvcConfig>,
}

/// One encoded frame and, when the parameter sets are new, the rendition's `avcC`.
pub struct Encoded {
    /// The frame, AVCC with 4-byte lengths, 90 kHz timestamps.
    pub frame: VideoFrame,
    /// Set on the first frame and whenever SPS/PPS change.
    pub new_config: Option<AvcConfig>,
}

impl Encoder {
    /// Open libx264 for `plan` with the node's settings; `fps` is the source frame rate
    /// (x264's rate control needs it; timestamps stay the source's, 90 kHz).
    pub fn new(
        plan: &RenditionPlan,
        settings: &TranscodeSettings,
        fps: f64,
    ) -> Result<Self, CodecError> {
        init();
        let codec =
            ff::encoder::find_by_name("libx264").ok_or(CodecError::Missing("libx264 encoder"))?;
        let ctx = codec::context::Context::new_with_codec(codec);
        let mut enc = ctx.encoder().video().map_err(ffe("libx264 context"))?;
        enc.set_width(plan.width);
        enc.set_height(plan.height);
        enc.set_format(Pixel::YUV420P);
        enc.set_time_base(ff::Rational::new(1, 90_000));
        let fps_q = ff::Rational::new((fps.clamp(1.0, 240.0) * 1000.0).round() as i32, 1000);
        enc.set_frame_rate(Some(fps_q));
        let bps = plan.video_kbps as usize * 1000;
        enc.set_bit_rate(bps);
        enc.set_max_bit_rate(bps);
        let mut opts = ff::Dictionary::new();
        opts.set("preset", &settings.preset);
        opts.set("tune", &settings.tune);
        opts.set("profile", &plan.profile);
        opts.set("bufsize", &(2 * bps).to_string());
        // Keyframes only where the transcoder forces them (segment starts), as IDR.
        opts.set("forced-idr", "1");
        // zerolatency's sliced threads: no frame of delay per thread (frame threads measured no
        // cheaper in scripts/bench-transcode and add a frame of latency each).
        opts.set("x264-params", "scenecut=0:keyint=infinite:min-keyint=1");
        let threads = encoder_threads(settings.encoder_threads, plan.height);
        opts.set("threads", &threads.to_string());
        let enc = enc
            .open_with(opts)
            .map_err(ffe("opening libx264 (preset/tune/profile/bitrate)"))?;
        Ok(Self {
            enc,
            scaler: None,
            scaled: RawFrame::new(Pixel::YUV420P, plan.width, plan.height),
            packet: ff::Packet::empty(),
            width: plan.width,
            height: plan.height,
            config: None,
        })
    }

    /// Scale `src` to this rendition's size and encode it at `pts` (90 kHz); a keyframe
    /// (IDR) is forced when `keyframe`. Encoded frames come out through `out`.
    pub fn encode(
        &mut self,
        src: &RawFrame,
        pts: i64,
        keyframe: bool,
        out: &mut impl FnMut(Encoded),
    ) -> Result<(), CodecError> {
        let (f, w, h) = (src.format(), src.width(), src.height());
        let stale = self
            .scaler
            .as_ref()
            .is_none_or(|(_, sf, sw, sh)| (*sf, *sw, *sh) != (f, w, h));
        if stale {
            let ctx = scaling::Context::get(
                f,
                w,
                h,
                Pixel::YUV420P,
                self.width,
                self.height,
                scaling::Flags::BICUBIC,
            )
            .map_err(ffe("creating the scaler"))?;
            self.scaler = Some((ctx, f, w, h));
        }
        if let Some((ctx, ..)) = self.scaler.as_mut() {
            ctx.run(src, &mut self.scaled).map_err(ffe("scaling"))?;
        }
        self.scaled.set_pts(Some(pts));
        self.scaled.set_kind(if keyframe {
            picture::Type::I
        } else {
            picture::Type::None
        });
        self.enc.send_frame(&self.scaled).map_err(ffe("encoding"))?;
        self.drain(out)
    }

    /// Flush the encoder at the end.
    pub fn finish(&mut self, out: &mut impl FnMut(Encoded)) -> Result<(), CodecError> {
        let _ = self.enc.send_eof();
        self.drain(out)
    }

    fn drain(&mut self, out: &mut impl FnMut(Encoded)) -> Result<(), CodecError> {
        loop {
            match self.enc.receive_packet(&mut self.packet) {
                Ok(()) => {
                    if let Some(e) = self.convert()? {
                        out(e);
                    }
                }
                Err(ff::Error::Other {
                    errno: ff::util::error::EAGAIN,
                })
                | Err(ff::Error::Eof) => return Ok(()),
                Err(e) => return Err(ffe("receiving an encoded packet")(e)),
            }
        }
    }

    fn convert(&mut self) -> Result<Option<Encoded>, CodecError> {
        let Some(data) = self.packet.data() else {
            return Ok(None);
        };
        let (Some(pts), dts) = (self.packet.pts(), self.packet.dts()) else {
            return Ok(None);
        };
        let dts = dts.unwrap_or(pts);
        let keyframe = self.packet.is_key();
        let mut new_config = None;
        if keyframe {
            let mut sps = None;
            let mut pps = None;
            for nal in h264::annexb_nalus(data) {
                match h264::nal_type(nal) {
                    Some(7) if sps.is_none() => sps = Some(Bytes::copy_from_slice(nal)),
                    Some(8) if pps.is_none() => pps = Some(Bytes::copy_from_slice(nal)),
                    _ => {}
                }
            }
            if let (Some(sps), Some(pps)) = (sps, pps) {
                let cfg = AvcConfig::from_parameter_sets(sps, pps)?;
                if self.config.as_ref() != Some(&cfg) {
                    self.config = Some(cfg.clone());
                    new_config = Some(cfg);
                }
            }
        }
        // SPS/PPS travel in the avcC (CMAF) and are re-inserted by the TS muxer; AUDs go.
        let avcc = h264::annexb_to_avcc4(data, |t| matches!(t, 7..=9))?;
        if avcc.is_empty() {
            return Ok(None);
        }
        Ok(Some(Encoded {
            frame: VideoFrame {
                dts_90k: dts,
                cts_90k: (pts - dts) as i32,
                keyframe,
                data: avcc,
            },
            new_config,
        }))
    }
}
