//! The CMAF header (23000-19 7.3.1): `ftyp` + `moov` for one H.264 or AAC track, with empty
//! sample tables and an `mvex` announcing movie fragments.
//!
//! Does not: write edit lists (CMAF 7.5.13 allows them; our timelines start where `tfdt` says),
//! `btrt`/`pasp`/`colr` (optional, and clients read the same facts from the SPS), or any
//! duration (a live track has none: every `duration` field is 0).
//!
//! Invariants: exactly one `trak` (`track_ID` 1) and one sample entry; the `avcC` always
//! declares 4-byte NAL lengths; the `esds` always carries the AudioSpecificConfig.

use bytes::BytesMut;
use bytes::{BufMut, Bytes};

use super::boxes::BoxWriter;
use super::{timescale, CmafTrack, TRACK_ID};
use crate::codec::aac::AacConfig;
use crate::codec::h264::AvcConfig;

/// `ftyp` brands. Major `iso6`: the ISOBMFF edition that defines everything we use (`tfdt`,
/// signed `trun` composition offsets via version 1, `default-base-is-moof`). Compatible:
/// `iso6`; `cmfc`, which a CMAF header must list (23000-19 7.3.1) and which says the file
/// follows CMAF's structural constraints; and `dash`, the brand DASH segment formats use
/// (23009-1 6.3.4). hls.js and dash.js hand segments to MSE, whose byte-stream parsers (Chrome,
/// Firefox, Safari) do not check brands; Safari's native HLS player accepts any ISOBMFF brand
/// set. `hlsf` (used by some Go packagers) is not a registered brand and no client needs it.
const FTYP_MAJOR: &[u8; 4] = b"iso6";
const FTYP_COMPATIBLE: [&[u8; 4]; 3] = [b"iso6", b"cmfc", b"dash"];

/// The identity transform of `mvhd`/`tkhd` (14496-12 8.2.2.3), in 16.16 and 2.30 fixed point.
const UNITY_MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// ISO 639-2 "und" packed as three 5-bit letters (14496-12 8.4.2.3).
const LANGUAGE_UND: u16 =
    ((b'u' - 0x60) as u16) << 10 | ((b'n' - 0x60) as u16) << 5 | (b'd' - 0x60) as u16;

/// Writes the CMAF header for `track` (`ftyp` + `moov`) into `out`.
pub fn write_init_segment(track: &CmafTrack, out: &mut BytesMut) {
    let mut w = BoxWriter::new(out);
    w.boxed(b"ftyp", |w| {
        w.put_slice(FTYP_MAJOR);
        w.put_u32(0); // minor_version
        for brand in FTYP_COMPATIBLE {
            w.put_slice(brand);
        }
    });
    let ts = timescale(track);
    w.boxed(b"moov", |w| {
        write_mvhd(w, ts);
        w.boxed(b"trak", |w| {
            write_tkhd(w, track);
            w.boxed(b"mdia", |w| {
                write_mdhd(w, ts);
                write_hdlr(w, track);
                w.boxed(b"minf", |w| {
                    match track {
                        // vmhd flags must be 1 (14496-12 8.4.5.2).
                        CmafTrack::Video(_) => w.full_box(b"vmhd", 0, 1, |w| {
                            w.put_u16(0); // graphicsmode: copy
                            w.put_bytes(0, 6); // opcolor
                        }),
                        CmafTrack::Audio(_) => w.full_box(b"smhd", 0, 0, |w| {
                            w.put_u16(0); // balance: centre
                            w.put_u16(0); // reserved
                        }),
                    };
                    w.boxed(b"dinf", |w| {
                        w.full_box(b"dref", 0, 0, |w| {
                            w.put_u32(1); // entry_count
                                          // flags = 1: media data is in this file (14496-12 8.7.2).
                            w.full_box(b"url ", 0, 1, |_| {});
                        });
                    });
                    write_stbl(w, track);
                });
            });
        });
        w.boxed(b"mvex", |w| {
            w.full_box(b"trex", 0, 0, |w| {
                w.put_u32(TRACK_ID);
                w.put_u32(1); // default_sample_description_index
                w.put_u32(0); // default_sample_duration: every trun carries durations
                w.put_u32(0); // default_sample_size: every trun carries sizes
                w.put_u32(0); // default_sample_flags: every trun carries flags
            });
        });
    });
}

fn write_mvhd(w: &mut BoxWriter, timescale: u32) {
    w.full_box(b"mvhd", 0, 0, |w| {
        w.put_u32(0); // creation_time
        w.put_u32(0); // modification_time
        w.put_u32(timescale);
        w.put_u32(0); // duration: unknown (live)
        w.put_u32(0x0001_0000); // rate 1.0
        w.put_u16(0x0100); // volume 1.0
        w.put_bytes(0, 10); // reserved
        for m in UNITY_MATRIX {
            w.put_u32(m);
        }
        w.put_bytes(0, 24); // pre_defined
        w.put_u32(TRACK_ID + 1); // next_track_ID
    });
}

fn write_tkhd(w: &mut BoxWriter, track: &CmafTrack) {
    // flags: track_enabled | track_in_movie (14496-12 8.3.2.3).
    w.full_box(b"tkhd", 0, 0x3, |w| {
        w.put_u32(0); // creation_time
        w.put_u32(0); // modification_time
        w.put_u32(TRACK_ID);
        w.put_u32(0); // reserved
        w.put_u32(0); // duration
        w.put_bytes(0, 8); // reserved
        w.put_u16(0); // layer
        w.put_u16(0); // alternate_group
        w.put_u16(match track {
            CmafTrack::Audio(_) => 0x0100, // volume 1.0 for audio, 0 otherwise
            CmafTrack::Video(_) => 0,
        });
        w.put_u16(0); // reserved
        for m in UNITY_MATRIX {
            w.put_u32(m);
        }
        let (width, height) = match track {
            CmafTrack::Video(avc) => (dimension(avc.width), dimension(avc.height)),
            CmafTrack::Audio(_) => (0, 0),
        };
        // 16.16 fixed point.
        w.put_u32(u32::from(width) << 16);
        w.put_u32(u32::from(height) << 16);
    });
}

fn write_mdhd(w: &mut BoxWriter, timescale: u32) {
    w.full_box(b"mdhd", 0, 0, |w| {
        w.put_u32(0); // creation_time
        w.put_u32(0); // modification_time
        w.put_u32(timescale);
        w.put_u32(0); // duration
        w.put_u16(LANGUAGE_UND); // pad bit 0 + language
        w.put_u16(0); // pre_defined
    });
}

fn write_hdlr(w: &mut BoxWriter, track: &CmafTrack) {
    let (handler, name): (&[u8; 4], &[u8]) = match track {
        CmafTrack::Video(_) => (b"vide", b"VideoHandler\0"),
        CmafTrack::Audio(_) => (b"soun", b"SoundHandler\0"),
    };
    w.full_box(b"hdlr", 0, 0, |w| {
        w.put_u32(0); // pre_defined
        w.put_slice(handler);
        w.put_bytes(0, 12); // reserved
        w.put_slice(name); // null-terminated UTF-8
    });
}

fn write_stbl(w: &mut BoxWriter, track: &CmafTrack) {
    w.boxed(b"stbl", |w| {
        w.full_box(b"stsd", 0, 0, |w| {
            w.put_u32(1); // entry_count
            match track {
                CmafTrack::Video(avc) => write_avc1(w, avc),
                CmafTrack::Audio(aac) => write_mp4a(w, aac),
            }
        });
        // Empty sample tables: every sample lives in a movie fragment (14496-12 8.8.1).
        w.full_box(b"stts", 0, 0, |w| w.put_u32(0));
        w.full_box(b"stsc", 0, 0, |w| w.put_u32(0));
        w.full_box(b"stsz", 0, 0, |w| {
            w.put_u32(0); // sample_size
            w.put_u32(0); // sample_count
        });
        w.full_box(b"stco", 0, 0, |w| w.put_u32(0));
    });
}

/// Width/height fields of `tkhd` (16.16) and the visual sample entry are 16-bit.
fn dimension(v: u32) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

/// AVCSampleEntry (14496-15 5.4.2.1) = VisualSampleEntry (14496-12 12.1.3) + `avcC`.
fn write_avc1(w: &mut BoxWriter, avc: &AvcConfig) {
    w.boxed(b"avc1", |w| {
        w.put_bytes(0, 6); // reserved
        w.put_u16(1); // data_reference_index
        w.put_u16(0); // pre_defined
        w.put_u16(0); // reserved
        w.put_bytes(0, 12); // pre_defined
        w.put_u16(dimension(avc.width));
        w.put_u16(dimension(avc.height));
        w.put_u32(0x0048_0000); // horizresolution 72 dpi
        w.put_u32(0x0048_0000); // vertresolution 72 dpi
        w.put_u32(0); // reserved
        w.put_u16(1); // frame_count
        w.put_bytes(0, 32); // compressorname: empty Pascal string
        w.put_u16(0x0018); // depth: colour, no alpha
        w.put_u16(0xFFFF); // pre_defined = -1
        w.boxed(b"avcC", |w| write_avcc_record(w, avc));
    });
}

/// The AVCDecoderConfigurationRecord (14496-15 5.3.3.1). The record as received is kept (it
/// may carry the High-profile chroma/bit-depth extension), with `lengthSizeMinusOne` forced
/// to 3 because our samples always use 4-byte lengths. A record too short to be real is
/// rebuilt from the parsed fields.
fn write_avcc_record(w: &mut BoxWriter, avc: &AvcConfig) {
    let record = &avc.record;
    if record.len() >= 7 && record[0] == 1 {
        w.put_slice(&record[..4]);
        w.put_u8(0xFC | 0x03); // 6 reserved bits set, lengthSizeMinusOne = 3
        w.put_slice(&record[5..]);
        return;
    }
    w.put_u8(1); // configurationVersion
    w.put_u8(avc.profile_idc);
    w.put_u8(avc.constraint_flags);
    w.put_u8(avc.level_idc);
    w.put_u8(0xFF); // reserved + lengthSizeMinusOne = 3
    put_parameter_sets(w, &avc.sps, 0xE0, 0x1F);
    put_parameter_sets(w, &avc.pps, 0, 0xFF);
}

/// A count byte (`prefix | n`, n capped by `max`) then each set behind a 16-bit length.
fn put_parameter_sets(w: &mut BoxWriter, sets: &[Bytes], prefix: u8, max: u8) {
    let fitting = || {
        sets.iter()
            .filter(|s| s.len() <= usize::from(u16::MAX))
            .take(usize::from(max))
    };
    w.put_u8(prefix | fitting().count() as u8);
    for s in fitting() {
        w.put_u16(s.len() as u16);
        w.put_slice(s);
    }
}

/// MP4AudioSampleEntry (14496-14 5.6.1) = AudioSampleEntry (14496-12 12.2.3) + `esds`.
fn write_mp4a(w: &mut BoxWriter, aac: &AacConfig) {
    w.boxed(b"mp4a", |w| {
        w.put_bytes(0, 6); // reserved
        w.put_u16(1); // data_reference_index
        w.put_bytes(0, 8); // reserved
        w.put_u16(channel_count(aac.channels));
        w.put_u16(16); // samplesize
        w.put_u16(0); // pre_defined
        w.put_u16(0); // reserved
                      // samplerate is 16.16; rates above 65535 Hz do not fit and are left to the ASC,
                      // which is what decoders read anyway.
        let rate = if aac.sample_rate <= 0xFFFF {
            aac.sample_rate << 16
        } else {
            0
        };
        w.put_u32(rate);
        write_esds(w, aac);
    });
}

/// Channel count for the sample entry from channelConfiguration (14496-3 table 1.19):
/// 1-6 map to themselves, 7 is 7.1 (8 channels), 0 (defined by a PCE) is reported as 2.
fn channel_count(config: u8) -> u16 {
    match config {
        0 => 2,
        7 => 8,
        n => u16::from(n),
    }
}

/// The `esds` box (14496-14 5.6.1): an ES_Descriptor holding a DecoderConfigDescriptor with
/// objectTypeIndication 0x40 (Audio ISO/IEC 14496-3) and the AudioSpecificConfig as its
/// DecoderSpecificInfo, plus the SLConfigDescriptor that MP4 requires (predefined = 2).
fn write_esds(w: &mut BoxWriter, aac: &AacConfig) {
    // A missing ASC (never from a real parse) is rebuilt from the fields: 5-bit object type,
    // 4-bit frequency index, 4-bit channel configuration (14496-3 1.6.2.1).
    let built;
    let asc: &[u8] = if aac.asc.is_empty() {
        let v = (u16::from(aac.object_type & 0x1F) << 11)
            | (u16::from(aac.sample_rate_index & 0x0F) << 7)
            | (u16::from(aac.channels & 0x0F) << 3);
        built = v.to_be_bytes();
        &built
    } else {
        &aac.asc
    };
    // Descriptor body sizes, innermost first.
    let dsi_len = asc.len();
    let dcd_len = 13 + descriptor_header_len(dsi_len) + dsi_len;
    let sl_len = 1;
    let es_len =
        3 + descriptor_header_len(dcd_len) + dcd_len + descriptor_header_len(sl_len) + sl_len;
    w.full_box(b"esds", 0, 0, |w| {
        put_descriptor_header(w, 0x03, es_len); // ES_DescrTag
        w.put_u16(0); // ES_ID: 0 in MP4 files (14496-14 3.1.2)
        w.put_u8(0); // no stream dependence, URL or OCR stream; priority 0
        put_descriptor_header(w, 0x04, dcd_len); // DecoderConfigDescrTag
        w.put_u8(0x40); // objectTypeIndication: Audio ISO/IEC 14496-3
        w.put_u8((0x05 << 2) | 1); // streamType AudioStream, upStream 0, reserved 1
        w.put_uint(0, 3); // bufferSizeDB: unknown
        w.put_u32(0); // maxBitrate: unknown
        w.put_u32(0); // avgBitrate: 0 = variable
        put_descriptor_header(w, 0x05, dsi_len); // DecSpecificInfoTag
        w.put_slice(asc);
        put_descriptor_header(w, 0x06, sl_len); // SLConfigDescrTag
        w.put_u8(0x02); // predefined: reserved for use in MP4 files
    });
}

/// Bytes taken by a descriptor's tag and expandable size field (14496-1 8.3.3).
fn descriptor_header_len(body: usize) -> usize {
    1 + match body {
        0..=0x7F => 1,
        0x80..=0x3FFF => 2,
        0x4000..=0x1F_FFFF => 3,
        _ => 4,
    }
}

/// Tag, then the size in 7-bit groups, most significant first, with the top bit of every
/// byte but the last set.
fn put_descriptor_header(w: &mut BoxWriter, tag: u8, body: usize) {
    w.put_u8(tag);
    let n = descriptor_header_len(body) - 1;
    for i in (0..n).rev() {
        let more = if i > 0 { 0x80 } else { 0 };
        w.put_u8(more | ((body >> (7 * i)) & 0x7F) as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_sizes_use_minimal_expandable_form() {
        for (body, expect) in [
            (0usize, vec![0x05, 0x00]),
            (0x7F, vec![0x05, 0x7F]),
            (0x80, vec![0x05, 0x81, 0x00]),
            (300, vec![0x05, 0x82, 0x2C]),
            (0x20_0000, vec![0x05, 0x81, 0x80, 0x80, 0x00]),
        ] {
            let mut buf = BytesMut::new();
            put_descriptor_header(&mut BoxWriter::new(&mut buf), 0x05, body);
            assert_eq!(&buf[..], &expect[..], "body {body}");
            assert_eq!(buf.len(), descriptor_header_len(body));
        }
    }

    #[test]
    fn channel_counts() {
        assert_eq!(channel_count(1), 1);
        assert_eq!(channel_count(2), 2);
        assert_eq!(channel_count(6), 6);
        assert_eq!(channel_count(7), 8);
        assert_eq!(channel_count(0), 2);
    }

    #[test]
    fn language_is_und() {
        assert_eq!(LANGUAGE_UND, 0x55C4);
    }
}
