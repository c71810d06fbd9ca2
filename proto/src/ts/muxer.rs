//! [`TsMuxer`]: turns [`VideoFrame`]s and [`AudioFrame`]s into transport packets.
//!
//! Owns the per-stream muxing state: one continuity counter per PID, the last PCR written, and
//! the codec configs needed to make each access unit self-contained (SPS/PPS before every IDR,
//! ADTS headers on every AAC frame).
//!
//! Does not: decide where segments start (the packager calls `write_tables` and cuts at
//! keyframes), reorder frames (callers write in decode order, audio and video interleaved by
//! time), or allocate beyond growing the caller's buffer.
//!
//! Invariants: see the module doc of [`crate::ts`]; in addition, a failed call leaves `out`
//! and the muxer state untouched (all validation happens before the first byte is written).

use bytes::BytesMut;

use super::pes::{self, PesHeader, PesWriter, STREAM_ID_AUDIO, STREAM_ID_VIDEO};
use super::psi::{self, EsEntry, NO_PCR_PID, STREAM_TYPE_AAC_ADTS, STREAM_TYPE_H264};
use super::{wrap_33, TsError, AUDIO_PID, TIMESTAMP_OFFSET_90K, VIDEO_PID};
use crate::codec::aac::AacConfig;
use crate::codec::h264::AvcConfig;
use crate::media::{AudioFrame, VideoFrame};

/// Annex B start code written before every NAL unit. The 4-byte form (with zero_byte) is valid
/// before any NAL unit (H.264 B.1.2) and keeps the conversion uniform.
const START_CODE: [u8; 4] = [0, 0, 0, 1];
/// An access unit delimiter NAL unit (H.264 7.3.2.4) with primary_pic_type = 7 ("any slice
/// type") and the RBSP stop bit. iOS, QuickTime and video.js need it at the start of every
/// access unit in a TS (the same reason mediacommon's writer adds one).
const AUD: [u8; 6] = [0, 0, 0, 1, 0x09, 0xF0];

/// NAL unit types (H.264 table 7-1) the conversion cares about.
const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;

/// Largest raw AAC access unit an ADTS header can frame: `frame_length` is 13 bits and
/// includes the 7-byte header (14496-3 1.A.2.2.2).
const ADTS_MAX_PAYLOAD: usize = 0x1FFF - ADTS_HEADER_LEN;
const ADTS_HEADER_LEN: usize = 7;

/// 13818-1 2.7.2 wants a PCR at least every 100 ms. When video is sparse, audio frames trigger
/// a PCR once this much (70 ms) has passed since the last one: AAC frames are 21-23 ms apart
/// at 44.1/48 kHz, so the next opportunity still falls inside the 100 ms bound.
const PCR_AUDIO_TRIGGER_90K: i64 = 6_300;
/// How far a decode time may fall behind the last PCR before we treat it as a timeline reset.
/// Up to this much, the PCR is held (kept monotonic): every PTS is still >= the held PCR
/// because PTS = time + [`TIMESTAMP_OFFSET_90K`]. Beyond it, holding would put the PCR past
/// the PTS of what follows, so we follow the new timeline (the packager should mark such a
/// jump with EXT-X-DISCONTINUITY).
const PCR_MAX_REGRESSION_90K: i64 = TIMESTAMP_OFFSET_90K;

/// MPEG-TS muxer for one program with up to one H.264 and one AAC stream.
///
/// PIDs: PMT [`super::PMT_PID`] (0x1000), video [`VIDEO_PID`] (0x100), audio [`AUDIO_PID`]
/// (0x101). The PCR rides on the video PID when there is video, else on the audio PID.
///
/// Call order for a segment: [`write_tables`](Self::write_tables), then frames in decode
/// order (video and audio interleaved by time) starting with a video keyframe.
#[derive(Debug, Clone)]
pub struct TsMuxer {
    video: Option<AvcConfig>,
    audio: Option<AacConfig>,
    cc_pat: u8,
    cc_pmt: u8,
    cc_video: u8,
    cc_audio: u8,
    /// The last PCR base written (90 kHz, not wrapped, no offset); drives monotonicity and the
    /// 100 ms repetition rule.
    last_pcr_90k: Option<i64>,
}

impl TsMuxer {
    /// A muxer for the given tracks. With neither, only PAT/PMT can be written.
    pub fn new(video: Option<AvcConfig>, audio: Option<AacConfig>) -> Self {
        TsMuxer {
            video,
            audio,
            cc_pat: 0,
            cc_pmt: 0,
            cc_video: 0,
            cc_audio: 0,
            last_pcr_90k: None,
        }
    }

    /// The PID whose adaptation fields carry the PCR (0x1FFF if the program has no stream).
    pub fn pcr_pid(&self) -> u16 {
        if self.video.is_some() {
            VIDEO_PID
        } else if self.audio.is_some() {
            AUDIO_PID
        } else {
            NO_PCR_PID
        }
    }

    /// Writes a PAT and a PMT (two packets). The packager calls this at the start of every
    /// segment so that each segment can be decoded on its own (RFC 8216 3.2).
    pub fn write_tables(&mut self, out: &mut BytesMut) {
        psi::write_pat(&mut self.cc_pat, out);
        let mut streams = [EsEntry {
            stream_type: 0,
            pid: 0,
        }; 2];
        let mut n = 0;
        if self.video.is_some() {
            streams[n] = EsEntry {
                stream_type: STREAM_TYPE_H264,
                pid: VIDEO_PID,
            };
            n += 1;
        }
        if self.audio.is_some() {
            streams[n] = EsEntry {
                stream_type: STREAM_TYPE_AAC_ADTS,
                pid: AUDIO_PID,
            };
            n += 1;
        }
        let pcr_pid = self.pcr_pid();
        psi::write_pmt(&mut self.cc_pmt, pcr_pid, &streams[..n], out);
    }

    /// Writes one H.264 access unit as a PES on the video PID.
    ///
    /// The AVCC payload is converted to Annex B: an AUD first (existing AUDs are dropped), then
    /// the config's SPS and PPS before every keyframe that does not carry its own parameter
    /// sets, then the frame's NAL units, each behind a 4-byte start code. The first packet
    /// carries the PCR and, on keyframes (flagged or holding an IDR slice), the
    /// random_access_indicator.
    pub fn write_video(&mut self, f: &VideoFrame, out: &mut BytesMut) -> Result<(), TsError> {
        let Some(cfg) = &self.video else {
            return Err(TsError::TrackNotConfigured { track: "video" });
        };

        // Pass 1: validate and size the Annex B output, so that nothing is written on error
        // and the PES length is known before the first packet.
        let mut es_len = AUD.len();
        let mut nal_count = 0usize;
        let (mut has_sps, mut has_pps, mut has_idr) = (false, false, false);
        for nal in AvccNals::new(&f.data) {
            let nal = nal?;
            let Some(&header) = nal.first() else {
                continue; // a zero-length NAL unit carries nothing; drop it
            };
            match header & 0x1F {
                NAL_AUD => continue,
                NAL_SPS => has_sps = true,
                NAL_PPS => has_pps = true,
                NAL_IDR => has_idr = true,
                _ => {}
            }
            nal_count += 1;
            es_len += START_CODE.len() + nal.len();
        }
        if nal_count == 0 {
            return Err(TsError::EmptyAccessUnit { len: f.data.len() });
        }
        let keyframe = f.keyframe || has_idr;
        // In-band parameter sets (an encoder that repeats them, or a changed SPS) win over
        // the config's; otherwise prepend the config's so each segment starts decodable.
        let insert_ps = keyframe && !has_sps && !has_pps;
        if insert_ps {
            for ps in cfg.sps.iter().chain(cfg.pps.iter()) {
                es_len += START_CODE.len() + ps.len();
            }
        }

        // Wrapping arithmetic: inputs may sit anywhere in i64 (incl. negative after
        // normalisation); only the value mod 2^33 is written (see `wrap_33`).
        let dts = f.dts_90k;
        let pts = dts.wrapping_add(i64::from(f.cts_90k));
        let header = PesHeader {
            stream_id: STREAM_ID_VIDEO,
            pts: wrap_33(pts.wrapping_add(TIMESTAMP_OFFSET_90K)),
            dts: (pts != dts).then(|| wrap_33(dts.wrapping_add(TIMESTAMP_OFFSET_90K))),
        };
        let pcr = next_pcr(&mut self.last_pcr_90k, dts);

        // Pass 2: write.
        let (hdr, hdr_len) = header.encode(es_len);
        let mut w = PesWriter::new(
            out,
            VIDEO_PID,
            &mut self.cc_video,
            hdr_len + es_len,
            Some(wrap_33(pcr)),
            keyframe,
        );
        w.write(&hdr[..hdr_len]);
        w.write(&AUD);
        if insert_ps {
            for ps in cfg.sps.iter().chain(cfg.pps.iter()) {
                w.write(&START_CODE);
                w.write(ps);
            }
        }
        // Already validated in pass 1, so errors cannot occur here; skip defensively anyway.
        for nal in AvccNals::new(&f.data).flatten() {
            match nal.first() {
                None => {}
                Some(&h) if h & 0x1F == NAL_AUD => {}
                Some(_) => {
                    w.write(&START_CODE);
                    w.write(nal);
                }
            }
        }
        w.finish();
        Ok(())
    }

    /// Writes one AAC access unit, behind a 7-byte ADTS header, as a PES on the audio PID.
    ///
    /// When the program has video, the PCR lives on the video PID; if the video has left more
    /// than 100 ms without a PCR (low frame rates), a PCR-only packet is added on the video
    /// PID first, to honour 13818-1 2.7.2.
    pub fn write_audio(&mut self, f: &AudioFrame, out: &mut BytesMut) -> Result<(), TsError> {
        let Some(cfg) = &self.audio else {
            return Err(TsError::TrackNotConfigured { track: "audio" });
        };
        let adts = adts_header(cfg, f.data.len())?;

        let pts = f.pts_90k;
        let header = PesHeader {
            stream_id: STREAM_ID_AUDIO,
            pts: wrap_33(pts.wrapping_add(TIMESTAMP_OFFSET_90K)),
            dts: None,
        };
        let es_len = ADTS_HEADER_LEN + f.data.len();
        let (hdr, hdr_len) = header.encode(es_len);

        let pcr = if self.video.is_some() {
            let due = match self.last_pcr_90k {
                None => true,
                Some(last) => pts.saturating_sub(last) >= PCR_AUDIO_TRIGGER_90K,
            };
            if due {
                let pcr = next_pcr(&mut self.last_pcr_90k, pts);
                pes::write_pcr_only(out, VIDEO_PID, self.cc_video, wrap_33(pcr));
            }
            None
        } else {
            Some(wrap_33(next_pcr(&mut self.last_pcr_90k, pts)))
        };

        // Every AAC frame is a random access point; ffmpeg flags them the same way.
        let mut w = PesWriter::new(
            out,
            AUDIO_PID,
            &mut self.cc_audio,
            hdr_len + es_len,
            pcr,
            true,
        );
        w.write(&hdr[..hdr_len]);
        w.write(&adts);
        w.write(&f.data);
        w.finish();
        Ok(())
    }
}

/// The PCR to write for a packet whose decode time is `t` (90 kHz), kept monotonic within
/// [`PCR_MAX_REGRESSION_90K`]; records it in `last`.
fn next_pcr(last: &mut Option<i64>, t: i64) -> i64 {
    let pcr = match *last {
        Some(prev) if t < prev && prev.saturating_sub(t) <= PCR_MAX_REGRESSION_90K => prev,
        _ => t,
    };
    *last = Some(pcr);
    pcr
}

/// Builds the 7-byte ADTS header (14496-3 1.A.2.2, protection_absent = 1) for a raw access
/// unit of `payload_len` bytes.
fn adts_header(cfg: &AacConfig, payload_len: usize) -> Result<[u8; ADTS_HEADER_LEN], TsError> {
    // ADTS profile = audioObjectType - 1 for Main/LC/SSR/LTP. HE-AAC (SBR = 5, PS = 29) is
    // carried as LC with implicit signalling: the core sample rate goes in the header and the
    // decoder finds the SBR/PS extension in the payload.
    let profile = match cfg.object_type {
        1..=4 => cfg.object_type - 1,
        5 | 29 => 1,
        other => return Err(TsError::UnsupportedAudioObjectType { object_type: other }),
    };
    if cfg.sample_rate_index > 12 {
        return Err(TsError::InvalidSampleRateIndex {
            index: cfg.sample_rate_index,
        });
    }
    if !(1..=7).contains(&cfg.channels) {
        return Err(TsError::InvalidChannelConfig {
            channels: cfg.channels,
        });
    }
    if payload_len > ADTS_MAX_PAYLOAD {
        return Err(TsError::AudioFrameTooLarge {
            size: payload_len,
            max: ADTS_MAX_PAYLOAD,
        });
    }
    let frame_len = (payload_len + ADTS_HEADER_LEN) as u16; // < 2^13, checked above
    let sf = cfg.sample_rate_index;
    let ch = cfg.channels;
    Ok([
        0xFF, // syncword 0xFFF ...
        0xF1, // ... ID = 0 (MPEG-4), layer = 00, protection_absent = 1
        (profile << 6) | (sf << 2) | (ch >> 2),
        ((ch & 0x03) << 6) | (frame_len >> 11) as u8,
        (frame_len >> 3) as u8,
        ((frame_len & 0x07) as u8) << 5 | 0x1F, // adts_buffer_fullness = 0x7FF: VBR
        0xFC, // rest of buffer fullness, number_of_raw_data_blocks_in_frame = 0
    ])
}

/// Iterates the NAL units of a 4-byte-length AVCC payload without copying.
struct AvccNals<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> AvccNals<'a> {
    fn new(data: &'a [u8]) -> Self {
        AvccNals { data, pos: 0 }
    }
}

impl<'a> Iterator for AvccNals<'a> {
    type Item = Result<&'a [u8], TsError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.data.get(self.pos..)?;
        if rest.is_empty() {
            return None;
        }
        let offset = self.pos;
        let Some((len, body)) = rest.split_first_chunk::<4>() else {
            self.pos = self.data.len();
            return Some(Err(TsError::MalformedAvcc {
                offset,
                need: 4,
                have: rest.len(),
            }));
        };
        let len = u32::from_be_bytes(*len) as usize;
        let Some(nal) = body.get(..len) else {
            self.pos = self.data.len();
            return Some(Err(TsError::MalformedAvcc {
                offset,
                need: len.saturating_add(4),
                have: rest.len(),
            }));
        };
        self.pos += 4 + len;
        Some(Ok(nal))
    }
}

#[cfg(test)]
mod tests;
