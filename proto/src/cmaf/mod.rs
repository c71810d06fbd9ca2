//! CMAF / fragmented MP4 writer (ISO/IEC 14496-12 ISOBMFF, ISO/IEC 23000-19 CMAF) for LL-HLS
//! and DASH.
//!
//! Owns: the CMAF header (`ftyp` + `moov`, [`write_init_segment`]), CMAF chunks (`moof` +
//! `mdat`, [`write_fragment`]) and the optional segment-type box ([`write_styp`]). Boxes are
//! written by a tiny private `BoxWriter` that reserves each size field and patches it when the
//! box closes; no MP4 crate is involved.
//!
//! Does not: decide what goes into a chunk or when (the packager groups samples into LL-HLS
//! parts and cuts segments at keyframes), compute durations (the caller supplies them, in the
//! track timescale), or mux several tracks into one file: CMAF has one track per file, so each
//! video rendition and the audio track get their own init segment and fragments.
//!
//! Composition: an LL-HLS part is one `moof`+`mdat` pair (a CMAF chunk); a full segment is the
//! concatenation of its parts, optionally preceded by `styp`. DASH uses the same bytes.
//!
//! Invariants:
//! - the track is always `track_ID` [`TRACK_ID`] (1), described by sample description 1;
//! - video samples are AVCC with 4-byte lengths, exactly as [`crate::media::VideoFrame`]
//!   carries them, and the written `avcC` always says `lengthSizeMinusOne = 3`;
//! - video uses [`VIDEO_TIMESCALE`] (90 kHz, the media clock, so timestamps convert without
//!   rounding); audio uses its sample rate, so AAC frames last exactly 1024 ticks;
//! - every `trun` has a `data_offset` relative to its `moof` (`default-base-is-moof`) that
//!   points at the first byte of the `mdat` payload that follows.

mod boxes;
mod fragment;
mod init;

pub use fragment::{write_fragment, write_styp, CmafSample};
pub use init::write_init_segment;

use crate::codec::aac::AacConfig;
use crate::codec::h264::AvcConfig;

/// Timescale (ticks per second) of every video track: the 90 kHz MPEG media clock.
pub const VIDEO_TIMESCALE: u32 = 90_000;

/// The `track_ID` of the single track in every CMAF file we write.
pub const TRACK_ID: u32 = 1;

/// The track a CMAF header describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmafTrack<'a> {
    /// An H.264 video track (`avc1` sample entry).
    Video(&'a AvcConfig),
    /// An AAC audio track (`mp4a` sample entry).
    Audio(&'a AacConfig),
}

/// The timescale of `track`: [`VIDEO_TIMESCALE`] for video, the sample rate for audio.
/// Sample durations and `tfdt` values passed to [`write_fragment`] are in this unit.
pub fn timescale(track: &CmafTrack) -> u32 {
    match track {
        CmafTrack::Video(_) => VIDEO_TIMESCALE,
        CmafTrack::Audio(aac) => aac.sample_rate,
    }
}

#[cfg(test)]
mod tests;
