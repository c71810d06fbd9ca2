//! MPEG-TS muxer (ISO/IEC 13818-1) for legacy HLS (RFC 8216 segments for HLS v3 clients:
//! Safari, VLC, ffplay, hls.js).
//!
//! Owns: PAT/PMT sections (`psi.rs`), PES packetisation into 188-byte transport packets
//! (`pes.rs`), and the per-stream state that ties them together ([`TsMuxer`]): continuity
//! counters, the PCR, H.264 AVCC -> Annex B conversion and AAC ADTS framing.
//!
//! Does not: choose segment boundaries (the packager calls [`TsMuxer::write_tables`] at the
//! start of every segment and cuts at keyframes), validate H.264/AAC semantics beyond what
//! framing needs (ingest does that), or allocate: everything is written into the caller's
//! `BytesMut`.
//!
//! Layout of the transport stream (fixed, documented for operators reading captures):
//!
//! | what  | PID                    | stream_type             | PES stream_id |
//! |-------|------------------------|-------------------------|---------------|
//! | PAT   | `0x0000`               | -                       | -             |
//! | PMT   | [`PMT_PID`] `0x1000`   | -                       | -             |
//! | video | [`VIDEO_PID`] `0x100`  | `0x1B` H.264 (Annex B)  | `0xE0`        |
//! | audio | [`AUDIO_PID`] `0x101`  | `0x0F` AAC in ADTS      | `0xC0`        |
//!
//! These are the values ffmpeg and most HLS packagers use, so captures look familiar.
//!
//! Invariants:
//! - every packet written is exactly 188 bytes and starts with the sync byte `0x47`;
//! - continuity counters run mod 16 per PID and only advance on packets with payload
//!   (13818-1 2.4.3.3);
//! - every PES ends exactly at a packet end: the last packet is padded with adaptation-field
//!   stuffing (13818-1 2.4.3.5), never with payload bytes;
//! - PES timestamps are `(input + TIMESTAMP_OFFSET_90K) mod 2^33`; the PCR base is the decode
//!   time *without* the offset, wrapped the same way. Frames written in decode order therefore
//!   have PTS >= DTS >= PCR + [`TIMESTAMP_OFFSET_90K`]; when audio and video interleave with some
//!   skew, the PCR is held rather than moved back, and PTS/DTS stay >= PCR as long as the skew
//!   is below the offset;
//! - the PCR never moves backwards, except when the input jumps back by more than the offset
//!   (a new timeline, which the packager marks as a discontinuity);
//! - on error nothing is written to `out`.

mod muxer;
mod pes;
mod psi;

pub use muxer::TsMuxer;

/// PID of the Program Map Table (0x1000, as ffmpeg writes it).
pub const PMT_PID: u16 = 0x1000;
/// PID of the H.264 elementary stream.
pub const VIDEO_PID: u16 = 0x100;
/// PID of the AAC (ADTS) elementary stream.
pub const AUDIO_PID: u16 = 0x101;
/// Size of one transport stream packet (13818-1 2.4.3.2).
pub const PACKET_SIZE: usize = 188;
/// The sync byte that opens every transport stream packet.
pub const SYNC_BYTE: u8 = 0x47;

/// Added to every PES PTS/DTS (90 kHz ticks) so that timestamps stay ahead of the PCR.
///
/// The PCR carries the decode time of the frame it precedes; a decoder that follows the
/// T-STD (VLC, set-top boxes) starts decoding an access unit when its clock reaches the DTS.
/// With DTS = PCR + 700 ms every access unit arrives well before it is due, which leaves the
/// decoder room for B-frame reordering and for audio that the packager interleaves a little
/// late. 700 ms is ffmpeg's default `max_delay` (`-muxdelay 0.7`), so our segments carry the
/// same margin as ffmpeg-made ones. Players that ignore the PCR (hls.js, Safari) only see a
/// constant shift of the timeline, identical across renditions of a stream.
pub const TIMESTAMP_OFFSET_90K: i64 = 63_000;

/// Errors from the MPEG-TS muxer. Nothing is written to the output when one is returned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TsError {
    /// `write_video`/`write_audio` was called for a track the muxer was built without.
    #[error("ts: no {track} track configured")]
    TrackNotConfigured {
        /// `"video"` or `"audio"`.
        track: &'static str,
    },
    /// The AVCC payload is malformed: a length prefix or NAL unit runs past the end.
    #[error("ts: malformed AVCC at offset {offset}: need {need} bytes, have {have}")]
    MalformedAvcc {
        /// Byte offset of the length prefix in the frame.
        offset: usize,
        /// Bytes the prefix (or the NAL unit it announces) needs.
        need: usize,
        /// Bytes left in the frame from `offset`.
        have: usize,
    },
    /// The video frame holds no NAL unit (other than access unit delimiters).
    #[error("ts: video frame of {len} bytes holds no NAL unit")]
    EmptyAccessUnit {
        /// Length of the frame data.
        len: usize,
    },
    /// An AAC access unit does not fit the 13-bit ADTS `frame_length` (14496-3 1.A.2.2.2).
    #[error("ts: AAC frame of {size} bytes exceeds the ADTS maximum of {max}")]
    AudioFrameTooLarge {
        /// The raw access unit size.
        size: usize,
        /// The largest raw access unit an ADTS header can describe.
        max: usize,
    },
    /// ADTS can only signal AAC Main, LC, SSR and LTP (plus SBR/PS implicitly over LC).
    #[error("ts: AAC object type {object_type} cannot be carried in ADTS")]
    UnsupportedAudioObjectType {
        /// audioObjectType from the AudioSpecificConfig.
        object_type: u8,
    },
    /// ADTS needs a samplingFrequencyIndex 0..=12 (no explicit frequency escape).
    #[error("ts: AAC sampling frequency index {index} cannot be carried in ADTS")]
    InvalidSampleRateIndex {
        /// samplingFrequencyIndex from the AudioSpecificConfig.
        index: u8,
    },
    /// ADTS needs a channelConfiguration 1..=7 (0 would need an in-band PCE).
    #[error("ts: AAC channel configuration {channels} cannot be carried in ADTS")]
    InvalidChannelConfig {
        /// channelConfiguration from the AudioSpecificConfig.
        channels: u8,
    },
}

/// Wraps a 90 kHz timestamp (any `i64`, negative included) into the 33-bit field range of
/// 13818-1 PTS/DTS/PCR-base. Because 2^64 is a multiple of 2^33, wrapping `i64` arithmetic
/// before this call preserves the result, so callers may add offsets with `wrapping_add`.
pub fn wrap_33(ts_90k: i64) -> u64 {
    // Two's complement: the low 33 bits are the value mod 2^33, for negatives too.
    (ts_90k as u64) & ((1 << 33) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_33_handles_negative_and_large() {
        assert_eq!(wrap_33(0), 0);
        assert_eq!(wrap_33(1), 1);
        assert_eq!(wrap_33(-1), (1 << 33) - 1);
        assert_eq!(wrap_33(1 << 33), 0);
        assert_eq!(wrap_33((1 << 33) + 5), 5);
        assert_eq!(wrap_33(i64::MIN), 0);
        assert_eq!(wrap_33(i64::MAX), (1 << 33) - 1);
    }
}
