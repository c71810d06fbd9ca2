//! Protocol-independent media frames: what ingest hands to the packagers.
//!
//! Every timestamp here is on the 90 kHz MPEG clock (`*_90k`), whatever the source protocol
//! used (RTMP carries milliseconds). Video payloads are AVCC (4-byte big-endian length before
//! each NAL unit); audio payloads are raw AAC access units (no ADTS header).

use bytes::Bytes;

use crate::codec::aac::AacConfig;
use crate::codec::h264::AvcConfig;

/// The 90 kHz clock rate used for every video and intermediate timestamp.
pub const CLOCK_90K: u32 = 90_000;

/// One H.264 access unit (a whole picture).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFrame {
    /// Decode timestamp, 90 kHz.
    pub dts_90k: i64,
    /// Composition offset (pts - dts), 90 kHz; may be negative only for broken sources.
    pub cts_90k: i32,
    /// The access unit holds an IDR picture (random access point).
    pub keyframe: bool,
    /// NAL units, each preceded by a 4-byte big-endian length (AVCC).
    pub data: Bytes,
}

impl VideoFrame {
    /// Presentation timestamp, 90 kHz.
    pub fn pts_90k(&self) -> i64 {
        self.dts_90k + i64::from(self.cts_90k)
    }
}

/// One AAC access unit (1024 samples for AAC-LC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFrame {
    /// Presentation (= decode) timestamp, 90 kHz.
    pub pts_90k: i64,
    /// The raw AAC access unit, without ADTS header.
    pub data: Bytes,
}

/// The codec parameters of one stream's tracks, known once the sequence headers arrived.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrackConfigs {
    /// The video track (always present for a playable stream).
    pub video: Option<AvcConfig>,
    /// The audio track, if the source has one.
    pub audio: Option<AacConfig>,
}
