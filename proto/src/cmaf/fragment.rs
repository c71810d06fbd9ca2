//! CMAF chunks (23000-19 7.3.2.3): one `moof` + `mdat` pair per call, and the `styp` that may
//! open a segment.
//!
//! Does not: group samples or choose chunk boundaries (the packager does), or check that
//! durations add up (`tfdt` is whatever the caller passes; the packager keeps it equal to the
//! sum of earlier durations).
//!
//! Invariants: one `traf` for track 1 with `tfhd` flag `default-base-is-moof`, a version 1
//! `tfdt` (64-bit decode time), and one version 1 `trun` (signed composition offsets) that
//! lists duration, size, flags and composition offset for every sample and whose
//! `data_offset` points at the first payload byte of the `mdat` written right after the
//! `moof`. Sample data is copied into `mdat` unchanged, in order.

use bytes::{BufMut, Bytes, BytesMut};

use super::boxes::BoxWriter;
use super::TRACK_ID;

/// One sample (a video access unit or an audio frame) of a CMAF chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmafSample {
    /// Duration in the track timescale (decode time of the next sample minus this one's).
    pub duration: u32,
    /// Composition offset (PTS - DTS) in the track timescale; `trun` version 1 allows it to be
    /// negative.
    pub cts_offset: i32,
    /// A sync sample (IDR for video; every AAC frame is one, so audio passes `true`).
    pub keyframe: bool,
    /// The sample bytes: AVCC with 4-byte lengths for video, a raw AAC frame for audio.
    pub data: Bytes,
}

/// tfhd flag (14496-12 8.8.7.1): data offsets are relative to the start of the `moof`.
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
/// trun flags (14496-12 8.8.8.1).
const TRUN_DATA_OFFSET: u32 = 0x000001;
const TRUN_SAMPLE_DURATION: u32 = 0x000100;
const TRUN_SAMPLE_SIZE: u32 = 0x000200;
const TRUN_SAMPLE_FLAGS: u32 = 0x000400;
const TRUN_SAMPLE_CTS: u32 = 0x000800;

/// Sample flags (14496-12 8.8.3.1): is_leading(2) depends_on(2) is_depended_on(2)
/// has_redundancy(2) padding(3) non_sync(1) degradation_priority(16), after 4 reserved bits.
/// A sync sample depends on no other (depends_on = 2) and is not non-sync.
pub(super) const SAMPLE_FLAGS_SYNC: u32 = 2 << 24;
/// A non-sync sample depends on others (depends_on = 1) and sets sample_is_non_sync_sample.
pub(super) const SAMPLE_FLAGS_NON_SYNC: u32 = (1 << 24) | (1 << 16);

/// Writes one CMAF chunk: `moof` (`mfhd`, `traf` (`tfhd`, `tfdt`, `trun`)) followed by `mdat`.
///
/// `sequence_number` goes into `mfhd` (it must increase from chunk to chunk within a track);
/// `base_media_decode_time` is the decode time of the first sample in the track timescale.
/// Sample sizes are 32-bit in `trun`: a sample over 4 GiB cannot be described (ingest limits
/// access units to a few MiB long before that).
pub fn write_fragment(
    sequence_number: u32,
    base_media_decode_time: u64,
    samples: &[CmafSample],
    out: &mut BytesMut,
) {
    let payload: u64 = samples.iter().map(|s| s.data.len() as u64).sum();
    // mdat header: 8 bytes, or 16 with a 64-bit largesize when the payload needs it.
    let mdat_header: u64 = if payload + 8 > u64::from(u32::MAX) {
        16
    } else {
        8
    };
    let mut data_offset_pos = 0;
    let mut w = BoxWriter::new(out);
    let moof_start = w.boxed(b"moof", |w| {
        w.full_box(b"mfhd", 0, 0, |w| w.put_u32(sequence_number));
        w.boxed(b"traf", |w| {
            w.full_box(b"tfhd", 0, TFHD_DEFAULT_BASE_IS_MOOF, |w| {
                w.put_u32(TRACK_ID)
            });
            w.full_box(b"tfdt", 1, 0, |w| w.put_u64(base_media_decode_time));
            let flags = TRUN_DATA_OFFSET
                | TRUN_SAMPLE_DURATION
                | TRUN_SAMPLE_SIZE
                | TRUN_SAMPLE_FLAGS
                | TRUN_SAMPLE_CTS;
            w.full_box(b"trun", 1, flags, |w| {
                w.put_u32(u32::try_from(samples.len()).unwrap_or(u32::MAX));
                data_offset_pos = w.len();
                w.put_i32(0); // data_offset, patched once the moof size is known
                for s in samples {
                    w.put_u32(s.duration);
                    w.put_u32(u32::try_from(s.data.len()).unwrap_or(u32::MAX));
                    w.put_u32(if s.keyframe {
                        SAMPLE_FLAGS_SYNC
                    } else {
                        SAMPLE_FLAGS_NON_SYNC
                    });
                    w.put_i32(s.cts_offset);
                }
            });
        });
    });
    let moof_len = (w.len() - moof_start) as u64;
    // data_offset is a signed 32-bit field; a moof that large (134 M samples) never occurs.
    let data_offset = i32::try_from(moof_len + mdat_header).unwrap_or(i32::MAX);
    w.patch_u32(data_offset_pos, data_offset as u32);

    w.reserve(mdat_header as usize + payload as usize);
    if mdat_header == 8 {
        w.put_u32((payload + 8) as u32);
        w.put_slice(b"mdat");
    } else {
        w.put_u32(1); // size = 1: a 64-bit largesize follows the type (14496-12 4.2)
        w.put_slice(b"mdat");
        w.put_u64(payload + 16);
    }
    for s in samples {
        w.put_slice(&s.data);
    }
}

/// Writes a `styp` box for the start of a media segment (14496-12 8.16.2): major brand
/// `msdh` (a DASH media segment, 23009-1 6.3.4.2), compatible with `msdh` and `cmfs` (a CMAF
/// segment, 23000-19 7.3.3.2). Optional: players accept segments without it.
pub fn write_styp(out: &mut BytesMut) {
    BoxWriter::new(out).boxed(b"styp", |w| {
        w.put_slice(b"msdh");
        w.put_u32(0); // minor_version
        w.put_slice(b"msdh");
        w.put_slice(b"cmfs");
    });
}
