//! H.264: AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1), SPS fields we need
//! (ITU-T H.264 7.3.2.1.1), and AVCC <-> Annex B conversion.
//!
//! Owns: parsing and building the `avcC` record, reading the picture size out of the first SPS,
//! and walking length-prefixed (AVCC) access units.
//! Does not: decode slices, parse VUI/timing, reorder frames, or look at PPS contents.
//!
//! Invariants: every function here takes bytes from the network and never panics on them; all
//! reads are bounds-checked and every size is checked against [`MAX_ACCESS_UNIT_SIZE`] and
//! [`MAX_NALUS_PER_ACCESS_UNIT`]. Errors carry the offending value and, for limits, the limit.
//! Inside hivecast, video payloads are always 4-byte AVCC ([`to_avcc4`] normalises them).

use bytes::{BufMut, Bytes, BytesMut};

/// NAL unit type: coded slice of a non-IDR picture (H.264 Table 7-1).
pub const NAL_SLICE: u8 = 1;
/// NAL unit type: coded slice data partition A.
pub const NAL_SLICE_DPA: u8 = 2;
/// NAL unit type: coded slice data partition B.
pub const NAL_SLICE_DPB: u8 = 3;
/// NAL unit type: coded slice data partition C.
pub const NAL_SLICE_DPC: u8 = 4;
/// NAL unit type: coded slice of an IDR picture (a random access point).
pub const NAL_IDR: u8 = 5;
/// NAL unit type: supplemental enhancement information.
pub const NAL_SEI: u8 = 6;
/// NAL unit type: sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// NAL unit type: picture parameter set.
pub const NAL_PPS: u8 = 8;
/// NAL unit type: access unit delimiter.
pub const NAL_AUD: u8 = 9;
/// NAL unit type: end of sequence.
pub const NAL_END_OF_SEQUENCE: u8 = 10;
/// NAL unit type: end of stream.
pub const NAL_END_OF_STREAM: u8 = 11;
/// NAL unit type: filler data.
pub const NAL_FILLER: u8 = 12;
/// NAL unit type: sequence parameter set extension.
pub const NAL_SPS_EXT: u8 = 13;

/// Largest access unit (one picture, all its NAL units and their length prefixes) we accept.
///
/// Why 8 MiB: an IDR picture of a 2160p stream at broadcast bitrates (tens of Mbit/s) stays
/// in the low MiB; 8 MiB leaves several times that headroom while staying under the 16 MiB
/// that one RTMP message (24-bit length, RTMP 5.3.1.2.1) can carry at all. A bigger "picture"
/// is a broken or hostile encoder, and every copy we make of it costs memory per viewer path.
pub const MAX_ACCESS_UNIT_SIZE: usize = 8 * 1024 * 1024;

/// Most NAL units we accept in one access unit.
///
/// Why 256: encoders split a picture into slices (x264 `--slices`, hardware encoders often
/// one slice per few macroblock rows: 1080p has 68 rows) and add an AUD, SPS, PPS and a few
/// SEIs. 256 covers that with room to spare and bounds the per-frame work a peer can cause
/// with a flood of tiny NAL units.
pub const MAX_NALUS_PER_ACCESS_UNIT: usize = 256;

/// Errors from parsing H.264 structures.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum H264Error {
    /// The record or NAL unit ended early.
    #[error("h264: truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        /// Which structure.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// A field held a value we cannot accept.
    #[error("h264: invalid {what}: {value}")]
    Invalid {
        /// Which field.
        what: &'static str,
        /// The offending value.
        value: u64,
    },
    /// An access unit is larger than [`MAX_ACCESS_UNIT_SIZE`].
    #[error("h264: access unit of {size} bytes exceeds the limit of {max}")]
    AccessUnitTooLarge {
        /// Size of the access unit (or of its converted form) in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// An access unit holds more than [`MAX_NALUS_PER_ACCESS_UNIT`] NAL units.
    #[error("h264: access unit has more than {max} NAL units (at least {count})")]
    TooManyNalus {
        /// NAL units seen when the limit was crossed.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// Parsed AVCDecoderConfigurationRecord plus the SPS fields the packagers need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    /// The whole record as received (the `avcC` box payload).
    pub record: Bytes,
    /// Sequence parameter sets (without length prefix or start code).
    pub sps: Vec<Bytes>,
    /// Picture parameter sets (without length prefix or start code).
    pub pps: Vec<Bytes>,
    /// AVCProfileIndication (profile_idc).
    pub profile_idc: u8,
    /// profile_compatibility byte (constraint_set flags).
    pub constraint_flags: u8,
    /// AVCLevelIndication (level_idc).
    pub level_idc: u8,
    /// NAL unit length field size in bytes (1, 2 or 4).
    pub nal_length_size: u8,
    /// Coded width in pixels after cropping.
    pub width: u32,
    /// Coded height in pixels after cropping.
    pub height: u32,
}

impl AvcConfig {
    /// Parses an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1.2), e.g. the body of
    /// an FLV AVC sequence header, and reads the picture size from its first SPS.
    ///
    /// Checks: configurationVersion is 1, lengthSizeMinusOne is not 2 (sizes 1, 2, 4 only),
    /// at least one SPS, every SPS is NAL type 7 and every PPS NAL type 8. The optional
    /// high-profile extension after the PPS list is ignored (many encoders omit it).
    /// SPS and PPS are zero-copy slices of `record`.
    pub fn parse(record: Bytes) -> Result<AvcConfig, H264Error> {
        const WHAT: &str = "AVCDecoderConfigurationRecord";
        let head = record.get(..6).ok_or(H264Error::Truncated {
            what: WHAT,
            need: 6,
            have: record.len(),
        })?;
        let (version, profile_idc, constraint_flags, level_idc) =
            (head[0], head[1], head[2], head[3]);
        if version != 1 {
            return Err(H264Error::Invalid {
                what: "configurationVersion",
                value: version.into(),
            });
        }
        // 6 reserved bits then lengthSizeMinusOne; the value 2 (3-byte lengths) is not allowed.
        let nal_length_size = (head[4] & 0x03) + 1;
        if nal_length_size == 3 {
            return Err(H264Error::Invalid {
                what: "lengthSizeMinusOne",
                value: 2,
            });
        }
        let num_sps = usize::from(head[5] & 0x1f);
        if num_sps == 0 {
            return Err(H264Error::Invalid {
                what: "numOfSequenceParameterSets",
                value: 0,
            });
        }
        let mut pos = 6;
        let mut sps = Vec::with_capacity(num_sps);
        for _ in 0..num_sps {
            let nal = read_u16_prefixed(&record, &mut pos, "sequenceParameterSetNALUnit")?;
            check_nal_type(&nal, NAL_SPS, "SPS NAL unit type")?;
            sps.push(nal);
        }
        let num_pps = usize::from(*record.get(pos).ok_or(H264Error::Truncated {
            what: WHAT,
            need: pos + 1,
            have: record.len(),
        })?);
        pos += 1;
        let mut pps = Vec::with_capacity(num_pps);
        for _ in 0..num_pps {
            let nal = read_u16_prefixed(&record, &mut pos, "pictureParameterSetNALUnit")?;
            check_nal_type(&nal, NAL_PPS, "PPS NAL unit type")?;
            pps.push(nal);
        }
        let info = SpsInfo::parse(&sps[0])?;
        Ok(AvcConfig {
            record,
            sps,
            pps,
            profile_idc,
            constraint_flags,
            level_idc,
            nal_length_size,
            width: info.width,
            height: info.height,
        })
    }

    /// Builds a record from one SPS and one PPS (NAL units without prefix or start code), as
    /// an encoder hands them out, with 4-byte NAL lengths. Profile, constraint and level bytes
    /// are copied from the SPS; for the high profiles (100, 110, 122, 144) the chroma format
    /// and bit depth extension of 14496-15 5.3.3.1.2 is appended, as ffmpeg's muxers do.
    pub fn from_parameter_sets(sps: Bytes, pps: Bytes) -> Result<AvcConfig, H264Error> {
        check_nal_type(&sps, NAL_SPS, "SPS NAL unit type")?;
        check_nal_type(&pps, NAL_PPS, "PPS NAL unit type")?;
        let info = SpsInfo::parse(&sps)?;
        let sps_len = u16::try_from(sps.len()).map_err(|_| H264Error::Invalid {
            what: "SPS length",
            value: sps.len() as u64,
        })?;
        let pps_len = u16::try_from(pps.len()).map_err(|_| H264Error::Invalid {
            what: "PPS length",
            value: pps.len() as u64,
        })?;
        let mut out = BytesMut::with_capacity(16 + sps.len() + pps.len());
        out.put_u8(1); // configurationVersion
                       // profile_idc, constraint flags, level_idc: SpsInfo::parse read them, so they exist.
        let profile_level = sps.get(1..4).ok_or(H264Error::Truncated {
            what: "SPS",
            need: 4,
            have: sps.len(),
        })?;
        out.put_slice(profile_level);
        out.put_u8(0xfc | 0x03); // reserved '111111' + lengthSizeMinusOne = 3
        out.put_u8(0xe0 | 0x01); // reserved '111' + one SPS
        out.put_u16(sps_len);
        out.put_slice(&sps);
        out.put_u8(1); // one PPS
        out.put_u16(pps_len);
        out.put_slice(&pps);
        if matches!(info.profile_idc, 100 | 110 | 122 | 144) {
            out.put_u8(0xfc | (info.chroma_format_idc & 0x03));
            out.put_u8(0xf8 | (info.bit_depth_luma_minus8 & 0x07));
            out.put_u8(0xf8 | (info.bit_depth_chroma_minus8 & 0x07));
            out.put_u8(0); // numOfSequenceParameterSetExt
        }
        AvcConfig::parse(out.freeze())
    }

    /// The RFC 6381 codec string, e.g. `avc1.64001f`: profile, constraint byte and level,
    /// two lowercase hex digits each.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile_idc, self.constraint_flags, self.level_idc
        )
    }
}

fn read_u16_prefixed(
    record: &Bytes,
    pos: &mut usize,
    what: &'static str,
) -> Result<Bytes, H264Error> {
    let have = record.len();
    let len_bytes = record.get(*pos..*pos + 2).ok_or(H264Error::Truncated {
        what,
        need: *pos + 2,
        have,
    })?;
    let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
    let start = *pos + 2;
    let end = start + len;
    if end > have {
        return Err(H264Error::Truncated {
            what,
            need: end,
            have,
        });
    }
    if len == 0 {
        return Err(H264Error::Invalid {
            what: "parameter set length",
            value: 0,
        });
    }
    *pos = end;
    Ok(record.slice(start..end))
}

fn check_nal_type(nal: &[u8], expected: u8, what: &'static str) -> Result<(), H264Error> {
    let header = *nal.first().ok_or(H264Error::Truncated {
        what: "NAL unit",
        need: 1,
        have: 0,
    })?;
    let nal_type = header & 0x1f;
    if nal_type != expected {
        return Err(H264Error::Invalid {
            what,
            value: nal_type.into(),
        });
    }
    Ok(())
}

/// The SPS fields we use (H.264 7.3.2.1.1), read from an SPS NAL unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SpsInfo {
    profile_idc: u8,
    chroma_format_idc: u8,
    bit_depth_luma_minus8: u8,
    bit_depth_chroma_minus8: u8,
    width: u32,
    height: u32,
}

/// Profiles whose SPS carries chroma_format_idc, bit depths and scaling lists (7.3.2.1.1).
fn has_chroma_info(profile_idc: u8) -> bool {
    matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    )
}

impl SpsInfo {
    /// Parses an SPS NAL unit (with its 1-byte NAL header, emulation prevention still in).
    fn parse(nal: &[u8]) -> Result<SpsInfo, H264Error> {
        check_nal_type(nal, NAL_SPS, "SPS NAL unit type")?;
        let rbsp = remove_emulation_prevention(&nal[1..]);
        let mut r = BitReader::new(&rbsp);
        let profile_idc = r.bits(8)? as u8;
        let _constraint_flags = r.bits(8)?;
        let _level_idc = r.bits(8)?;
        let sps_id = r.ue()?;
        if sps_id > 31 {
            return Err(H264Error::Invalid {
                what: "seq_parameter_set_id",
                value: sps_id.into(),
            });
        }
        // Defaults when the profile does not signal them: 4:2:0, 8 bit (7.4.2.1.1).
        let mut chroma_format_idc = 1u32;
        let mut separate_colour_plane = false;
        let mut bit_depth_luma_minus8 = 0u32;
        let mut bit_depth_chroma_minus8 = 0u32;
        if has_chroma_info(profile_idc) {
            chroma_format_idc = r.ue()?;
            if chroma_format_idc > 3 {
                return Err(H264Error::Invalid {
                    what: "chroma_format_idc",
                    value: chroma_format_idc.into(),
                });
            }
            if chroma_format_idc == 3 {
                separate_colour_plane = r.flag()?;
            }
            bit_depth_luma_minus8 = r.ue()?;
            bit_depth_chroma_minus8 = r.ue()?;
            if bit_depth_luma_minus8 > 6 || bit_depth_chroma_minus8 > 6 {
                return Err(H264Error::Invalid {
                    what: "bit_depth_minus8",
                    value: bit_depth_luma_minus8.max(bit_depth_chroma_minus8).into(),
                });
            }
            let _qpprime_y_zero_transform_bypass = r.flag()?;
            if r.flag()? {
                // seq_scaling_matrix_present_flag: 6 4x4 lists, then 2 (or 6 for 4:4:4) 8x8.
                let lists = if chroma_format_idc == 3 { 12 } else { 8 };
                for i in 0..lists {
                    if r.flag()? {
                        skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                    }
                }
            }
        }
        let log2_max_frame_num_minus4 = r.ue()?;
        if log2_max_frame_num_minus4 > 12 {
            return Err(H264Error::Invalid {
                what: "log2_max_frame_num_minus4",
                value: log2_max_frame_num_minus4.into(),
            });
        }
        match r.ue()? {
            0 => {
                let _log2_max_pic_order_cnt_lsb_minus4 = r.ue()?;
            }
            1 => {
                let _delta_pic_order_always_zero = r.flag()?;
                let _offset_for_non_ref_pic = r.se()?;
                let _offset_for_top_to_bottom_field = r.se()?;
                let cycle = r.ue()?;
                if cycle > 255 {
                    return Err(H264Error::Invalid {
                        what: "num_ref_frames_in_pic_order_cnt_cycle",
                        value: cycle.into(),
                    });
                }
                for _ in 0..cycle {
                    let _offset_for_ref_frame = r.se()?;
                }
            }
            2 => {}
            other => {
                return Err(H264Error::Invalid {
                    what: "pic_order_cnt_type",
                    value: other.into(),
                })
            }
        }
        let _max_num_ref_frames = r.ue()?;
        let _gaps_in_frame_num_allowed = r.flag()?;
        let width_mbs = u64::from(r.ue()?) + 1;
        let height_map_units = u64::from(r.ue()?) + 1;
        let frame_mbs_only = r.flag()?;
        if !frame_mbs_only {
            let _mb_adaptive_frame_field = r.flag()?;
        }
        let _direct_8x8_inference = r.flag()?;
        let field_factor: u64 = if frame_mbs_only { 1 } else { 2 };
        let mut width = width_mbs * 16;
        let mut height = height_map_units * 16 * field_factor;
        if r.flag()? {
            // frame_cropping_flag: offsets are in crop units (7.4.2.1.1, eq. 7-19 .. 7-22).
            let left = u64::from(r.ue()?);
            let right = u64::from(r.ue()?);
            let top = u64::from(r.ue()?);
            let bottom = u64::from(r.ue()?);
            let chroma_array_type = if separate_colour_plane {
                0
            } else {
                chroma_format_idc
            };
            let (crop_x, crop_y) = match chroma_array_type {
                0 => (1, field_factor),
                1 => (2, 2 * field_factor),
                2 => (2, field_factor),
                _ => (1, field_factor),
            };
            let crop_w = crop_x * (left + right);
            let crop_h = crop_y * (top + bottom);
            if crop_w >= width {
                return Err(H264Error::Invalid {
                    what: "horizontal frame cropping",
                    value: crop_w,
                });
            }
            if crop_h >= height {
                return Err(H264Error::Invalid {
                    what: "vertical frame cropping",
                    value: crop_h,
                });
            }
            width -= crop_w;
            height -= crop_h;
        }
        let width = u32::try_from(width).map_err(|_| H264Error::Invalid {
            what: "picture width",
            value: width,
        })?;
        let height = u32::try_from(height).map_err(|_| H264Error::Invalid {
            what: "picture height",
            value: height,
        })?;
        Ok(SpsInfo {
            profile_idc,
            // Both checked above to fit (<= 3 and <= 6).
            chroma_format_idc: chroma_format_idc as u8,
            bit_depth_luma_minus8: bit_depth_luma_minus8 as u8,
            bit_depth_chroma_minus8: bit_depth_chroma_minus8 as u8,
            width,
            height,
        })
    }
}

/// Skips one scaling_list() (H.264 7.3.2.1.1.1); only the bit position matters to us.
fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<(), H264Error> {
    let mut last_scale: i64 = 8;
    let mut next_scale: i64 = 8;
    for _ in 0..size {
        if next_scale != 0 {
            let delta = i64::from(r.se()?);
            if !(-128..=127).contains(&delta) {
                return Err(H264Error::Invalid {
                    what: "delta_scale",
                    value: delta as u64,
                });
            }
            next_scale = (last_scale + delta + 256).rem_euclid(256);
        }
        if next_scale != 0 {
            last_scale = next_scale;
        }
    }
    Ok(())
}

/// Removes emulation prevention bytes (H.264 7.4.1: `00 00 03` -> `00 00`).
fn remove_emulation_prevention(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0usize;
    for &b in data {
        if zeros >= 2 && b == 0x03 {
            zeros = 0;
            continue;
        }
        if b == 0 {
            zeros += 1;
        } else {
            zeros = 0;
        }
        out.push(b);
    }
    out
}

/// MSB-first bit reader over an RBSP, with Exp-Golomb codes (H.264 9.1).
struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits.
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    fn bit(&mut self) -> Result<u32, H264Error> {
        let byte = *self.data.get(self.pos / 8).ok_or(H264Error::Truncated {
            what: "SPS",
            need: self.pos / 8 + 1,
            have: self.data.len(),
        })?;
        let bit = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Ok(u32::from(bit))
    }

    fn flag(&mut self) -> Result<bool, H264Error> {
        Ok(self.bit()? == 1)
    }

    /// Reads `n` (<= 32) bits.
    fn bits(&mut self, n: u32) -> Result<u32, H264Error> {
        let mut v: u32 = 0;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Ok(v)
    }

    /// ue(v): unsigned Exp-Golomb; at most 32 leading zeros (the value must fit in u32).
    fn ue(&mut self) -> Result<u32, H264Error> {
        let mut zeros = 0u32;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(H264Error::Invalid {
                    what: "exp-golomb code length",
                    value: zeros.into(),
                });
            }
        }
        let suffix = u64::from(self.bits(zeros)?);
        let value = (1u64 << zeros) - 1 + suffix;
        u32::try_from(value).map_err(|_| H264Error::Invalid {
            what: "exp-golomb value",
            value,
        })
    }

    /// se(v): signed Exp-Golomb (9.1.1).
    fn se(&mut self) -> Result<i32, H264Error> {
        let k = i64::from(self.ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        // |v| <= 2^31, fits i32 except the single value 2^31 which ue cannot reach (k <= 2^32-2).
        i32::try_from(v).map_err(|_| H264Error::Invalid {
            what: "signed exp-golomb value",
            value: v as u64,
        })
    }
}

/// Iterator over the NAL units of an AVCC access unit, see [`avcc_nalus`].
#[derive(Debug, Clone)]
pub struct AvccNalus<'a> {
    data: &'a [u8],
    pos: usize,
    length_size: u8,
    count: usize,
    done: bool,
}

/// Iterates over the NAL units of an AVCC (length-prefixed) access unit, each without its
/// prefix. `nal_length_size` is 1, 2 or 4 (from the avcC record). Yields an error and stops
/// at the first malformed prefix (zero length, length past the end), on an invalid length
/// size, or once more than [`MAX_NALUS_PER_ACCESS_UNIT`] units were seen.
pub fn avcc_nalus(data: &[u8], nal_length_size: u8) -> AvccNalus<'_> {
    AvccNalus {
        data,
        pos: 0,
        length_size: nal_length_size,
        count: 0,
        done: false,
    }
}

impl<'a> Iterator for AvccNalus<'a> {
    type Item = Result<&'a [u8], H264Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.data.len() {
            return None;
        }
        let item = self.next_inner();
        if item.is_err() {
            self.done = true;
        }
        Some(item)
    }
}

impl<'a> AvccNalus<'a> {
    fn next_inner(&mut self) -> Result<&'a [u8], H264Error> {
        let size = usize::from(self.length_size);
        if !matches!(size, 1 | 2 | 4) {
            return Err(H264Error::Invalid {
                what: "NAL length size",
                value: size as u64,
            });
        }
        self.count += 1;
        if self.count > MAX_NALUS_PER_ACCESS_UNIT {
            return Err(H264Error::TooManyNalus {
                count: self.count,
                max: MAX_NALUS_PER_ACCESS_UNIT,
            });
        }
        let have = self.data.len();
        let prefix = self
            .data
            .get(self.pos..self.pos + size)
            .ok_or(H264Error::Truncated {
                what: "NAL length prefix",
                need: self.pos + size,
                have,
            })?;
        let len = prefix
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        if len == 0 {
            return Err(H264Error::Invalid {
                what: "NAL unit length",
                value: 0,
            });
        }
        let start = self.pos + size;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= have)
            .ok_or(H264Error::Truncated {
                what: "NAL unit",
                need: start.saturating_add(len),
                have,
            })?;
        self.pos = end;
        Ok(&self.data[start..end])
    }
}

fn check_au_size(size: usize) -> Result<(), H264Error> {
    if size > MAX_ACCESS_UNIT_SIZE {
        return Err(H264Error::AccessUnitTooLarge {
            size,
            max: MAX_ACCESS_UNIT_SIZE,
        });
    }
    Ok(())
}

/// Re-prefixes an AVCC access unit with 4-byte lengths (hivecast's internal form).
///
/// When `nal_length_size` is already 4 the input is validated and returned as is (a
/// zero-copy clone of `data`); otherwise a new buffer is built. Enforces
/// [`MAX_ACCESS_UNIT_SIZE`] on the input and on the result, and [`MAX_NALUS_PER_ACCESS_UNIT`].
pub fn to_avcc4(data: &Bytes, nal_length_size: u8) -> Result<Bytes, H264Error> {
    check_au_size(data.len())?;
    if nal_length_size == 4 {
        for nal in avcc_nalus(data, 4) {
            nal?;
        }
        return Ok(data.clone());
    }
    let mut total = 0usize;
    for nal in avcc_nalus(data, nal_length_size) {
        total += 4 + nal?.len();
    }
    check_au_size(total)?;
    let mut out = BytesMut::with_capacity(total);
    for nal in avcc_nalus(data, nal_length_size) {
        let nal = nal?;
        // Fits: each NAL is shorter than the 8 MiB access unit limit checked above.
        out.put_u32(nal.len() as u32);
        out.put_slice(nal);
    }
    Ok(out.freeze())
}

/// Converts a 4-byte AVCC access unit to Annex B (each NAL unit preceded by `00 00 00 01`),
/// appending to `out`. On error `out` is left as it was.
pub fn avcc_to_annexb(data: &[u8], out: &mut BytesMut) -> Result<(), H264Error> {
    check_au_size(data.len())?;
    let start_len = out.len();
    // Same size as the input: a 4-byte start code replaces each 4-byte length.
    out.reserve(data.len());
    for nal in avcc_nalus(data, 4) {
        match nal {
            Ok(nal) => {
                out.put_slice(&[0, 0, 0, 1]);
                out.put_slice(nal);
            }
            Err(e) => {
                out.truncate(start_len);
                return Err(e);
            }
        }
    }
    Ok(())
}

/// True when a 4-byte AVCC access unit holds an IDR slice (NAL type 5). Walks the NAL units
/// up to the first malformed prefix; a malformed unit is not a keyframe.
pub fn has_idr(data: &[u8]) -> bool {
    avcc_nalus(data, 4)
        .map_while(Result::ok)
        .any(|nal| nal.first().is_some_and(|h| h & 0x1f == NAL_IDR))
}

/// Iterates over the NAL units of an Annex B byte stream (units separated by `00 00 01` or
/// `00 00 00 01` start codes), each without its start code and without trailing zero bytes.
/// Bytes before the first start code are skipped. Never fails: an input without start codes
/// yields nothing. Used on encoder output (libx264 writes Annex B).
pub fn annexb_nalus(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut pos = find_start_code(data, 0).map(|(_, after)| after);
    std::iter::from_fn(move || {
        let start = pos?;
        let (end, next) = match find_start_code(data, start) {
            Some((at, after)) => (at, Some(after)),
            None => (data.len(), None),
        };
        pos = next;
        let mut nal = &data[start..end];
        // A 4-byte start code's leading zero (and any trailing_zero_8bits) belong to no unit.
        while let [rest @ .., 0] = nal {
            nal = rest;
        }
        Some(nal)
    })
    .filter(|nal| !nal.is_empty())
}

/// The next `00 00 01` at or after `from`: (its index, the index after it).
fn find_start_code(data: &[u8], from: usize) -> Option<(usize, usize)> {
    let tail = data.get(from..)?;
    tail.windows(3)
        .position(|w| w == [0, 0, 1])
        .map(|i| (from + i, from + i + 3))
}

/// Converts an Annex B access unit to 4-byte AVCC, leaving out the NAL unit types for which
/// `drop` returns true (e.g. SPS/PPS/AUD, which CMAF and TS carry elsewhere or not at all).
pub fn annexb_to_avcc4(data: &[u8], drop: impl Fn(u8) -> bool) -> Result<Bytes, H264Error> {
    check_au_size(data.len())?;
    let mut out = BytesMut::with_capacity(data.len() + 16);
    let mut count = 0usize;
    for nal in annexb_nalus(data) {
        count += 1;
        if count > MAX_NALUS_PER_ACCESS_UNIT {
            return Err(H264Error::TooManyNalus {
                count,
                max: MAX_NALUS_PER_ACCESS_UNIT,
            });
        }
        if nal_type(nal).is_some_and(&drop) {
            continue;
        }
        // Fits: the whole access unit is below MAX_ACCESS_UNIT_SIZE.
        out.put_u32(nal.len() as u32);
        out.put_slice(nal);
    }
    Ok(out.freeze())
}

/// The NAL unit type (low 5 bits of the header byte) of a NAL unit, if it is not empty.
pub fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|h| h & 0x1f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn annexb_split_and_convert() {
        let au = [
            0u8, 0, 0, 1, 0x09, 0xf0, // AUD
            0, 0, 1, 0x67, 1, 2, 0, // SPS with a trailing zero
            0, 0, 0, 1, 0x65, 9, 8, 7,
        ];
        let nals: Vec<&[u8]> = annexb_nalus(&au).collect();
        assert_eq!(
            nals,
            vec![&[0x09, 0xf0][..], &[0x67, 1, 2][..], &[0x65, 9, 8, 7][..]]
        );
        let avcc = annexb_to_avcc4(&au, |t| t == 9 || t == NAL_SPS).unwrap();
        assert_eq!(&avcc[..], &[0, 0, 0, 4, 0x65, 9, 8, 7]);
        assert_eq!(annexb_nalus(&[1, 2, 3]).count(), 0);
    }

    /// Writes bits MSB first; used to build SPS test vectors field by field.
    struct BitWriter {
        out: Vec<u8>,
        bits: usize,
    }

    impl BitWriter {
        fn new() -> Self {
            BitWriter {
                out: Vec::new(),
                bits: 0,
            }
        }
        fn bit(&mut self, b: u32) {
            if self.bits & 7 == 0 {
                self.out.push(0);
            }
            if b != 0 {
                let last = self.out.len() - 1;
                self.out[last] |= 0x80 >> (self.bits % 8);
            }
            self.bits += 1;
        }
        fn bits(&mut self, v: u32, n: u32) {
            for i in (0..n).rev() {
                self.bit((v >> i) & 1);
            }
        }
        fn ue(&mut self, v: u32) {
            let v1 = u64::from(v) + 1;
            let len = 64 - v1.leading_zeros();
            for _ in 0..len - 1 {
                self.bit(0);
            }
            for i in (0..len).rev() {
                self.bit(((v1 >> i) & 1) as u32);
            }
        }
        fn se(&mut self, v: i32) {
            let k = if v > 0 { 2 * v - 1 } else { -2 * v };
            self.ue(k as u32);
        }
        /// rbsp_trailing_bits, then escape with emulation prevention.
        fn finish_nal(mut self, header: u8) -> Vec<u8> {
            self.bit(1);
            while self.bits & 7 != 0 {
                self.bit(0);
            }
            let mut nal = vec![header];
            let mut zeros = 0;
            for b in self.out {
                if zeros >= 2 && b <= 3 {
                    nal.push(3);
                    zeros = 0;
                }
                zeros = if b == 0 { zeros + 1 } else { 0 };
                nal.push(b);
            }
            nal
        }
    }

    struct SpsSpec {
        profile: u8,
        chroma_format_idc: u32,
        scaling: bool,
        poc_type: u32,
        width_mbs: u32,
        height_units: u32,
        frame_mbs_only: bool,
        crop: Option<(u32, u32, u32, u32)>,
    }

    fn build_sps(s: &SpsSpec) -> Vec<u8> {
        let mut w = BitWriter::new();
        w.bits(u32::from(s.profile), 8);
        w.bits(0, 8);
        w.bits(31, 8);
        w.ue(0);
        if has_chroma_info(s.profile) {
            w.ue(s.chroma_format_idc);
            if s.chroma_format_idc == 3 {
                w.bit(0);
            }
            w.ue(0);
            w.ue(0);
            w.bit(0);
            w.bit(u32::from(s.scaling));
            if s.scaling {
                let lists = if s.chroma_format_idc == 3 { 12 } else { 8 };
                for i in 0..lists {
                    // present for even lists; each with a few deltas then a 0-terminating one
                    if i % 2 == 0 {
                        w.bit(1);
                        let size = if i < 6 { 16 } else { 64 };
                        // deltas: +5, -3, then -10 to reach nextScale 0 (8+5-3-10 = 0).
                        w.se(5);
                        w.se(-3);
                        w.se(-10);
                        let _ = size;
                    } else {
                        w.bit(0);
                    }
                }
            }
        }
        w.ue(0); // log2_max_frame_num_minus4
        w.ue(s.poc_type);
        match s.poc_type {
            0 => w.ue(2),
            1 => {
                w.bit(0);
                w.se(-1);
                w.se(2);
                w.ue(2);
                w.se(1);
                w.se(-1);
            }
            _ => {}
        }
        w.ue(4); // max_num_ref_frames
        w.bit(0);
        w.ue(s.width_mbs - 1);
        w.ue(s.height_units - 1);
        w.bit(u32::from(s.frame_mbs_only));
        if !s.frame_mbs_only {
            w.bit(1);
        }
        w.bit(1); // direct_8x8_inference
        match s.crop {
            Some((l, r, t, b)) => {
                w.bit(1);
                w.ue(l);
                w.ue(r);
                w.ue(t);
                w.ue(b);
            }
            None => w.bit(0),
        }
        w.bit(0); // vui_parameters_present_flag
        w.finish_nal(0x67)
    }

    const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

    fn base_spec() -> SpsSpec {
        SpsSpec {
            profile: 100,
            chroma_format_idc: 1,
            scaling: false,
            poc_type: 0,
            width_mbs: 20,
            height_units: 12,
            frame_mbs_only: true,
            crop: Some((0, 0, 0, 6)),
        }
    }

    #[test]
    fn sps_with_cropping_gives_display_size() {
        // 320x192 coded, cropped by 6 crop units (12 luma rows for 4:2:0) -> 320x180.
        let sps = build_sps(&base_spec());
        let cfg = AvcConfig::from_parameter_sets(Bytes::from(sps), Bytes::from_static(PPS))
            .expect("valid sps/pps");
        assert_eq!((cfg.width, cfg.height), (320, 180));
        assert_eq!(cfg.codec_string(), "avc1.64001f");
        assert_eq!(cfg.nal_length_size, 4);
        // High profile: record carries the 4-byte chroma/bit depth extension.
        assert_eq!(&cfg.record[cfg.record.len() - 4..], &[0xfd, 0xf8, 0xf8, 0]);
    }

    #[test]
    fn sps_high_profile_with_scaling_lists_and_444() {
        let mut spec = base_spec();
        spec.scaling = true;
        spec.chroma_format_idc = 3;
        spec.profile = 244;
        spec.crop = Some((1, 3, 2, 2)); // 4:4:4 crop unit 1x1
        let sps = build_sps(&spec);
        let info = SpsInfo::parse(&sps).expect("parse");
        assert_eq!((info.width, info.height), (320 - 4, 192 - 4));
        assert_eq!(info.chroma_format_idc, 3);
    }

    #[test]
    fn sps_interlaced_doubles_height_and_crop_unit() {
        let mut spec = base_spec();
        spec.profile = 77; // main: no chroma info, 4:2:0 implied
        spec.frame_mbs_only = false;
        spec.height_units = 17; // 17 map units * 16 * 2 = 544
        spec.crop = Some((0, 0, 0, 8)); // 4:2:0 field: crop unit y = 4 -> 32 rows
        spec.poc_type = 1;
        let info = SpsInfo::parse(&build_sps(&spec)).expect("parse");
        assert_eq!((info.width, info.height), (320, 512));
    }

    #[test]
    fn sps_baseline_poc2_no_crop() {
        let mut spec = base_spec();
        spec.profile = 66;
        spec.poc_type = 2;
        spec.crop = None;
        spec.width_mbs = 120;
        spec.height_units = 68;
        let info = SpsInfo::parse(&build_sps(&spec)).expect("parse");
        assert_eq!((info.width, info.height), (1920, 1088));
    }

    #[test]
    fn emulation_prevention_is_removed() {
        assert_eq!(
            remove_emulation_prevention(&[0, 0, 3, 1, 0, 0, 3, 0, 0, 3]),
            vec![0, 0, 1, 0, 0, 0, 0]
        );
        // A width that yields 00 00 0x in the RBSP forces an escape in the NAL.
        let mut spec = base_spec();
        spec.width_mbs = 1;
        spec.height_units = 1;
        spec.crop = None;
        spec.profile = 66;
        let sps = build_sps(&spec);
        let info = SpsInfo::parse(&sps).expect("parse");
        assert_eq!((info.width, info.height), (16, 16));
    }

    #[test]
    fn crop_larger_than_picture_is_rejected() {
        let mut spec = base_spec();
        spec.crop = Some((0, 0, 0, 96));
        let err = SpsInfo::parse(&build_sps(&spec)).unwrap_err();
        assert_eq!(
            err,
            H264Error::Invalid {
                what: "vertical frame cropping",
                value: 192
            }
        );
    }

    fn record_with(sps: &[u8], pps: &[u8], len_size_minus1: u8) -> Vec<u8> {
        let mut r = vec![1, sps[1], sps[2], sps[3], 0xfc | len_size_minus1, 0xe1];
        r.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        r.extend_from_slice(sps);
        r.push(1);
        r.extend_from_slice(&(pps.len() as u16).to_be_bytes());
        r.extend_from_slice(pps);
        r
    }

    #[test]
    fn record_validation() {
        let sps = build_sps(&base_spec());
        let good = record_with(&sps, PPS, 3);
        let cfg = AvcConfig::parse(Bytes::from(good.clone())).expect("good");
        assert_eq!(cfg.sps.len(), 1);
        assert_eq!(cfg.pps.len(), 1);
        assert_eq!(&cfg.sps[0][..], &sps[..]);
        assert_eq!(&cfg.pps[0][..], PPS);

        let mut bad = good.clone();
        bad[0] = 0;
        assert_eq!(
            AvcConfig::parse(Bytes::from(bad)).unwrap_err(),
            H264Error::Invalid {
                what: "configurationVersion",
                value: 0
            }
        );
        let mut no_sps = good.clone();
        no_sps[5] = 0xe0;
        assert!(matches!(
            AvcConfig::parse(Bytes::from(no_sps)),
            Err(H264Error::Invalid {
                what: "numOfSequenceParameterSets",
                ..
            })
        ));
        let three = record_with(&sps, PPS, 2);
        assert!(matches!(
            AvcConfig::parse(Bytes::from(three)),
            Err(H264Error::Invalid {
                what: "lengthSizeMinusOne",
                ..
            })
        ));
        let two = record_with(&sps, PPS, 1);
        assert_eq!(
            AvcConfig::parse(Bytes::from(two)).unwrap().nal_length_size,
            2
        );
        for cut in 0..good.len() {
            assert!(
                AvcConfig::parse(Bytes::copy_from_slice(&good[..cut])).is_err(),
                "cut at {cut}"
            );
        }
    }

    fn avcc(nals: &[&[u8]], size: u8) -> Vec<u8> {
        let mut out = Vec::new();
        for n in nals {
            let len = n.len() as u32;
            out.extend_from_slice(&len.to_be_bytes()[4 - usize::from(size)..]);
            out.extend_from_slice(n);
        }
        out
    }

    #[test]
    fn avcc_walk_convert_and_idr() {
        let nals: [&[u8]; 3] = [&[0x09, 0xf0], &[0x65, 1, 2, 3], &[0x06, 5]];
        let four = Bytes::from(avcc(&nals, 4));
        let got: Vec<&[u8]> = avcc_nalus(&four, 4).map(|n| n.unwrap()).collect();
        assert_eq!(got, nals.to_vec());
        assert!(has_idr(&four));
        assert!(!has_idr(&avcc(&[&[0x41, 1]], 4)));

        // zero copy when already 4 bytes
        let same = to_avcc4(&four, 4).unwrap();
        assert_eq!(same.as_ptr(), four.as_ptr());
        for size in [1u8, 2] {
            let small = Bytes::from(avcc(&nals, size));
            assert_eq!(to_avcc4(&small, size).unwrap(), four);
        }

        let mut out = BytesMut::from(&b"xy"[..]);
        avcc_to_annexb(&four, &mut out).unwrap();
        assert_eq!(
            &out[..],
            &[b'x', b'y', 0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x65, 1, 2, 3, 0, 0, 0, 1, 0x06, 5][..]
        );
        // malformed input leaves out untouched
        let mut out2 = BytesMut::from(&b"ab"[..]);
        assert!(avcc_to_annexb(&four[..four.len() - 1], &mut out2).is_err());
        assert_eq!(&out2[..], b"ab");
    }

    #[test]
    fn avcc_errors_carry_values() {
        assert_eq!(
            avcc_nalus(&[0, 0, 0, 9, 1], 4).next().unwrap().unwrap_err(),
            H264Error::Truncated {
                what: "NAL unit",
                need: 13,
                have: 5
            }
        );
        assert_eq!(
            avcc_nalus(&[0, 0, 0, 0], 4).next().unwrap().unwrap_err(),
            H264Error::Invalid {
                what: "NAL unit length",
                value: 0
            }
        );
        assert!(matches!(
            avcc_nalus(&[1, 1], 3).next(),
            Some(Err(H264Error::Invalid {
                what: "NAL length size",
                value: 3
            }))
        ));
        let many = avcc(&vec![&[0x41u8][..]; MAX_NALUS_PER_ACCESS_UNIT + 1], 4);
        let last = avcc_nalus(&many, 4).last().unwrap();
        assert_eq!(
            last.unwrap_err(),
            H264Error::TooManyNalus {
                count: MAX_NALUS_PER_ACCESS_UNIT + 1,
                max: MAX_NALUS_PER_ACCESS_UNIT
            }
        );
        let big = Bytes::from(vec![0u8; MAX_ACCESS_UNIT_SIZE + 1]);
        assert_eq!(
            to_avcc4(&big, 4).unwrap_err(),
            H264Error::AccessUnitTooLarge {
                size: MAX_ACCESS_UNIT_SIZE + 1,
                max: MAX_ACCESS_UNIT_SIZE
            }
        );
    }

    proptest! {
        #[test]
        fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300), size in 0u8..6) {
            let b = Bytes::from(data.clone());
            let _ = AvcConfig::parse(b.clone());
            let _ = SpsInfo::parse(&data);
            let _ = to_avcc4(&b, size);
            let mut out = BytesMut::new();
            let _ = avcc_to_annexb(&data, &mut out);
            let _ = has_idr(&data);
            for n in avcc_nalus(&data, size) { let _ = n; }
        }

        #[test]
        fn sps_roundtrip(width_mbs in 1u32..200, height_units in 1u32..200,
                         profile in prop::sample::select(vec![66u8, 77, 88, 100, 110, 122, 244]),
                         frame_mbs_only: bool, bottom in 0u32..4, right in 0u32..4) {
            let spec = SpsSpec { profile, chroma_format_idc: 1, scaling: profile >= 100,
                poc_type: 0, width_mbs, height_units, frame_mbs_only,
                crop: Some((0, right, 0, bottom)) };
            let sps = build_sps(&spec);
            let factor = if frame_mbs_only { 1 } else { 2 };
            let full_h = height_units * 16 * factor;
            let crop_h = 2 * factor * bottom;
            let crop_w = 2 * right;
            let res = SpsInfo::parse(&sps);
            if crop_w >= width_mbs * 16 || crop_h >= full_h {
                prop_assert!(res.is_err());
            } else {
                let info = res.unwrap();
                prop_assert_eq!(info.width, width_mbs * 16 - crop_w);
                prop_assert_eq!(info.height, full_h - crop_h);
            }
        }

        #[test]
        fn avcc_size_roundtrip(nals in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..20)) {
            let refs: Vec<&[u8]> = nals.iter().map(|n| &n[..]).collect();
            let four = Bytes::from(avcc(&refs, 4));
            let two = Bytes::from(avcc(&refs, 2));
            prop_assert_eq!(to_avcc4(&two, 2).unwrap(), four.clone());
            let mut annexb = BytesMut::new();
            avcc_to_annexb(&four, &mut annexb).unwrap();
            prop_assert_eq!(annexb.len(), four.len());
        }

        #[test]
        fn annexb_roundtrip(nals in proptest::collection::vec(proptest::collection::vec(1u8..=255, 1..300), 0..20)) {
            // Emulation-prevented units contain no 00 00 0x; non-zero bytes model that.
            let refs: Vec<&[u8]> = nals.iter().map(|n| &n[..]).collect();
            let four = Bytes::from(avcc(&refs, 4));
            let mut annexb = BytesMut::new();
            avcc_to_annexb(&four, &mut annexb).unwrap();
            prop_assert_eq!(annexb_to_avcc4(&annexb, |_| false).unwrap(), four);
        }

        #[test]
        fn annexb_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let total: usize = annexb_nalus(&data).map(<[u8]>::len).sum();
            prop_assert!(total <= data.len());
            let _ = annexb_to_avcc4(&data, |t| t == 7);
        }
    }
}
