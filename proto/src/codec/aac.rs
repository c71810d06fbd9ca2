//! AAC: AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1) and ADTS headers (14496-3 1.A.2).
//!
//! Owns: reading the fields of an AudioSpecificConfig that packagers need (object type,
//! sampling rate, channel configuration), the RFC 6381 codec string, and writing the 7-byte
//! ADTS header that MPEG-TS carries before each raw AAC frame.
//! Does not: decode audio, parse program_config_element, or handle 960-sample frames.
//!
//! Invariants: parsing never panics on peer bytes; `AacConfig::asc` is the exact
//! AudioSpecificConfig received (it goes verbatim into the `esds` box).

use bytes::{BufMut, Bytes, BytesMut};

/// Samples per AAC frame (AAC-LC with frameLengthFlag = 0, 14496-3 4.5.1.1). The 960-sample
/// variant is a DAB/broadcast oddity that no RTMP encoder we target produces.
pub const SAMPLES_PER_FRAME: u32 = 1024;

/// Sampling frequencies by samplingFrequencyIndex (14496-3 Table 1.18); 13 and 14 are
/// reserved, 15 means an explicit 24-bit frequency follows.
const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Largest `aac_frame_length` ADTS can express (13-bit field, 1.A.2.2.1), header included.
pub const MAX_ADTS_FRAME_LEN: usize = (1 << 13) - 1;

/// Length of an ADTS header without CRC (protection_absent = 1).
pub const ADTS_HEADER_LEN: usize = 7;

/// Errors from parsing AAC structures.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AacError {
    /// The config ended early.
    #[error("aac: truncated AudioSpecificConfig: {len} bytes")]
    Truncated {
        /// Bytes present.
        len: usize,
    },
    /// A field held a value we cannot accept.
    #[error("aac: invalid {what}: {value}")]
    Invalid {
        /// Which field.
        what: &'static str,
        /// The offending value.
        value: u64,
    },
    /// The frame does not fit in ADTS's 13-bit frame length.
    #[error("aac: ADTS frame of {len} bytes (header included) exceeds the maximum {max}")]
    FrameTooLarge {
        /// Payload plus header length.
        len: usize,
        /// The largest expressible frame length.
        max: usize,
    },
}

/// Parsed AudioSpecificConfig.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AacConfig {
    /// The raw AudioSpecificConfig bytes (the `esds` DecoderSpecificInfo).
    pub asc: Bytes,
    /// audioObjectType (2 = AAC-LC).
    pub object_type: u8,
    /// Sampling frequency in Hz.
    pub sample_rate: u32,
    /// samplingFrequencyIndex as signalled (used by ADTS).
    pub sample_rate_index: u8,
    /// channelConfiguration.
    pub channels: u8,
}

/// The fields read from the front of an AudioSpecificConfig.
struct AscFields {
    object_type: u8,
    sample_rate_index: u8,
    sample_rate: u32,
    channels: u8,
    /// For explicit SBR/PS signalling (object type 5 or 29): the core object type that
    /// follows the extension sampling frequency (14496-3 1.6.2.1); else `object_type`.
    core_object_type: u8,
}

impl AacConfig {
    /// Parses an AudioSpecificConfig (14496-3 1.6.2.1), e.g. the body of an FLV AAC sequence
    /// header.
    ///
    /// Handles the escaped object type (31 -> 32 + 6 bits) and the explicit 24-bit sampling
    /// frequency (index 15). With explicit HE-AAC signalling (object type 5 or 29) the
    /// reported `object_type` stays 5/29 (so the codec string says HE-AAC) and the sampling
    /// rate is the core one. Rejects object type 0, the reserved frequency indexes 13/14 and a
    /// sampling frequency of 0. Channel configuration 0 is accepted: it means the layout is in
    /// a program_config_element inside the stream, which decoders handle but which cannot be
    /// signalled in ADTS without an in-band PCE (so [`AacConfig::write_adts_header`] writes 0
    /// and the decoder must find the PCE).
    pub fn parse(asc: Bytes) -> Result<AacConfig, AacError> {
        let f = parse_fields(&asc)?;
        Ok(AacConfig {
            object_type: f.object_type,
            sample_rate: f.sample_rate,
            sample_rate_index: f.sample_rate_index,
            channels: f.channels,
            asc,
        })
    }

    /// The RFC 6381 codec string, `mp4a.40.{object_type}` (e.g. `mp4a.40.2` for AAC-LC).
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }

    /// Writes the 7-byte ADTS header (14496-3 1.A.2.2, MPEG-4 ID, no CRC) for one raw AAC
    /// frame of `payload_len` bytes, appending to `out`.
    ///
    /// Errors when the frame is too large for the 13-bit length, when the object type has no
    /// ADTS profile (ADTS only has Main, LC, SSR and LTP; HE-AAC is written as its LC core, as
    /// the spec intends for implicit SBR), when the channel configuration exceeds 7, or when
    /// an explicit sampling frequency matches no samplingFrequencyIndex.
    pub fn write_adts_header(
        &self,
        payload_len: usize,
        out: &mut BytesMut,
    ) -> Result<(), AacError> {
        let frame_len = payload_len.saturating_add(ADTS_HEADER_LEN);
        if frame_len > MAX_ADTS_FRAME_LEN {
            return Err(AacError::FrameTooLarge {
                len: frame_len,
                max: MAX_ADTS_FRAME_LEN,
            });
        }
        let core = match self.object_type {
            5 | 29 => parse_fields(&self.asc)
                .map(|f| f.core_object_type)
                .unwrap_or(2),
            other => other,
        };
        if !(1..=4).contains(&core) {
            return Err(AacError::Invalid {
                what: "object type for ADTS profile",
                value: core.into(),
            });
        }
        let index = if self.sample_rate_index == 15 {
            SAMPLE_RATES
                .iter()
                .position(|&r| r == self.sample_rate)
                .ok_or(AacError::Invalid {
                    what: "explicit sampling frequency for ADTS",
                    value: self.sample_rate.into(),
                })? as u8
        } else {
            self.sample_rate_index
        };
        if index > 12 {
            return Err(AacError::Invalid {
                what: "sampling frequency index for ADTS",
                value: index.into(),
            });
        }
        if self.channels > 7 {
            return Err(AacError::Invalid {
                what: "channel configuration for ADTS",
                value: self.channels.into(),
            });
        }
        let profile = core - 1;
        let len = frame_len as u32; // <= 8191
        let fullness: u32 = 0x7ff; // VBR
        out.reserve(ADTS_HEADER_LEN);
        out.put_u8(0xff); // syncword 0xFFF ...
        out.put_u8(0xf1); // ... ID=0 (MPEG-4), layer=00, protection_absent=1
        out.put_u8((profile << 6) | (index << 2) | (self.channels >> 2));
        out.put_u8(((self.channels & 0x03) << 6) | ((len >> 11) as u8 & 0x03));
        out.put_u8((len >> 3) as u8);
        out.put_u8((((len & 0x07) << 5) | (fullness >> 6)) as u8);
        out.put_u8(((fullness & 0x3f) << 2) as u8); // number_of_raw_data_blocks_in_frame = 0
        Ok(())
    }
}

fn parse_fields(asc: &[u8]) -> Result<AscFields, AacError> {
    let mut r = Bits { data: asc, pos: 0 };
    let object_type = read_object_type(&mut r)?;
    if object_type == 0 {
        return Err(AacError::Invalid {
            what: "audioObjectType",
            value: 0,
        });
    }
    let (sample_rate_index, sample_rate) = read_frequency(&mut r)?;
    let channels = r.bits(4)? as u8;
    let mut core_object_type = object_type;
    if object_type == 5 || object_type == 29 {
        // Explicit hierarchical SBR/PS signalling: extensionSamplingFrequency, then the
        // core audioObjectType.
        let _extension = read_frequency(&mut r)?;
        core_object_type = read_object_type(&mut r)?;
    }
    Ok(AscFields {
        object_type,
        sample_rate_index,
        sample_rate,
        channels,
        core_object_type,
    })
}

fn read_object_type(r: &mut Bits<'_>) -> Result<u8, AacError> {
    let t = r.bits(5)?;
    if t == 31 {
        // audioObjectTypeExt: 32 + 6 bits, at most 95.
        return Ok((32 + r.bits(6)?) as u8);
    }
    Ok(t as u8)
}

fn read_frequency(r: &mut Bits<'_>) -> Result<(u8, u32), AacError> {
    let index = r.bits(4)? as u8;
    let rate = match index {
        15 => r.bits(24)?,
        13 | 14 => {
            return Err(AacError::Invalid {
                what: "samplingFrequencyIndex",
                value: index.into(),
            })
        }
        i => SAMPLE_RATES[usize::from(i)],
    };
    if rate == 0 {
        return Err(AacError::Invalid {
            what: "samplingFrequency",
            value: 0,
        });
    }
    Ok((index, rate))
}

/// MSB-first bit reader.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn bits(&mut self, n: u32) -> Result<u32, AacError> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self.data.get(self.pos / 8).ok_or(AacError::Truncated {
                len: self.data.len(),
            })?;
            v = (v << 1) | u32::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lc_44100_stereo() {
        // 00010 0100 0010 000 -> 0x12 0x10
        let cfg = AacConfig::parse(Bytes::from_static(&[0x12, 0x10])).unwrap();
        assert_eq!(cfg.object_type, 2);
        assert_eq!(cfg.sample_rate, 44100);
        assert_eq!(cfg.sample_rate_index, 4);
        assert_eq!(cfg.channels, 2);
        assert_eq!(cfg.codec_string(), "mp4a.40.2");
    }

    #[test]
    fn explicit_frequency_escape() {
        // object 2, index 15, 24-bit 48000 (0x00BB80), channels 1.
        // bits: 00010 1111 000000001011101110000000 0001 (+pad)
        let bits = "00010".to_string() + "1111" + &format!("{:024b}", 48000) + "0001";
        let bytes = pack(&bits);
        let cfg = AacConfig::parse(Bytes::from(bytes)).unwrap();
        assert_eq!(cfg.sample_rate_index, 15);
        assert_eq!(cfg.sample_rate, 48000);
        assert_eq!(cfg.channels, 1);
        // ADTS maps the explicit rate back to index 3.
        let mut out = BytesMut::new();
        cfg.write_adts_header(10, &mut out).unwrap();
        assert_eq!((out[2] >> 2) & 0x0f, 3);

        let odd = "00010".to_string() + "1111" + &format!("{:024b}", 12345) + "0001";
        let cfg = AacConfig::parse(Bytes::from(pack(&odd))).unwrap();
        assert_eq!(
            cfg.write_adts_header(10, &mut out).unwrap_err(),
            AacError::Invalid {
                what: "explicit sampling frequency for ADTS",
                value: 12345
            }
        );
        let zero = "00010".to_string() + "1111" + &format!("{:024b}", 0) + "0001";
        assert_eq!(
            AacConfig::parse(Bytes::from(pack(&zero))).unwrap_err(),
            AacError::Invalid {
                what: "samplingFrequency",
                value: 0
            }
        );
    }

    #[test]
    fn escaped_object_type_and_he_aac() {
        // object type 31 + 6 bits (10 -> 42), index 3, channels 2
        let bits = "11111".to_string() + "001010" + "0011" + "0010";
        let cfg = AacConfig::parse(Bytes::from(pack(&bits))).unwrap();
        assert_eq!(cfg.object_type, 42);
        assert_eq!(cfg.codec_string(), "mp4a.40.42");
        // HE-AAC explicit: 5, core index 6 (24000), ch 2, ext index 3 (48000), core type 2
        let he = "00101".to_string() + "0110" + "0010" + "0011" + "00010";
        let cfg = AacConfig::parse(Bytes::from(pack(&he))).unwrap();
        assert_eq!(cfg.object_type, 5);
        assert_eq!(cfg.sample_rate, 24000);
        let mut out = BytesMut::new();
        cfg.write_adts_header(0, &mut out).unwrap();
        assert_eq!(out[2] >> 6, 1, "written as its LC core");
    }

    #[test]
    fn rejects_reserved_and_truncated() {
        assert_eq!(
            AacConfig::parse(Bytes::from_static(&[0x12])).unwrap_err(),
            AacError::Truncated { len: 1 }
        );
        assert_eq!(
            AacConfig::parse(Bytes::from_static(&[0x10, 0x08])).map(|c| c.sample_rate),
            Ok(96000)
        );
        let reserved = pack(&("00010".to_string() + "1101" + "0010"));
        assert_eq!(
            AacConfig::parse(Bytes::from(reserved)).unwrap_err(),
            AacError::Invalid {
                what: "samplingFrequencyIndex",
                value: 13
            }
        );
        assert_eq!(
            AacConfig::parse(Bytes::from_static(&[0x00, 0x10])).unwrap_err(),
            AacError::Invalid {
                what: "audioObjectType",
                value: 0
            }
        );
        // channel configuration 0 is accepted
        let pce = AacConfig::parse(Bytes::from_static(&[0x12, 0x00])).unwrap();
        assert_eq!(pce.channels, 0);
    }

    #[test]
    fn adts_header_fields() {
        let cfg = AacConfig::parse(Bytes::from_static(&[0x12, 0x10])).unwrap();
        let mut out = BytesMut::new();
        cfg.write_adts_header(371, &mut out).unwrap();
        assert_eq!(out.len(), 7);
        let h = &out[..];
        assert_eq!(h[0], 0xff);
        assert_eq!(h[1], 0xf1);
        assert_eq!(h[2] >> 6, 1); // LC
        assert_eq!((h[2] >> 2) & 0x0f, 4); // 44100
        let ch = ((h[2] & 1) << 2) | (h[3] >> 6);
        assert_eq!(ch, 2);
        let len = (u32::from(h[3] & 3) << 11) | (u32::from(h[4]) << 3) | u32::from(h[5] >> 5);
        assert_eq!(len, 378);
        let fullness = (u32::from(h[5] & 0x1f) << 6) | u32::from(h[6] >> 2);
        assert_eq!(fullness, 0x7ff);
        assert_eq!(h[6] & 3, 0);

        assert!(cfg
            .write_adts_header(MAX_ADTS_FRAME_LEN - 7, &mut out)
            .is_ok());
        assert_eq!(
            cfg.write_adts_header(MAX_ADTS_FRAME_LEN - 6, &mut out)
                .unwrap_err(),
            AacError::FrameTooLarge {
                len: MAX_ADTS_FRAME_LEN + 1,
                max: MAX_ADTS_FRAME_LEN
            }
        );
    }

    fn pack(bits: &str) -> Vec<u8> {
        let mut out = vec![0u8; bits.len().div_ceil(8)];
        for (i, c) in bits.chars().enumerate() {
            if c == '1' {
                out[i / 8] |= 0x80 >> (i % 8);
            }
        }
        out
    }

    proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..16), len in 0usize..10000) {
            if let Ok(cfg) = AacConfig::parse(Bytes::from(data)) {
                let mut out = BytesMut::new();
                let _ = cfg.write_adts_header(len, &mut out);
                let _ = cfg.codec_string();
            }
        }

        #[test]
        fn adts_length_roundtrip(len in 0usize..(MAX_ADTS_FRAME_LEN - 7), index in 0u8..13, ch in 1u8..8) {
            let asc = [(2 << 3) | (index >> 1), ((index & 1) << 7) | (ch << 3)];
            let cfg = AacConfig::parse(Bytes::copy_from_slice(&asc)).unwrap();
            prop_assert_eq!(cfg.sample_rate_index, index);
            prop_assert_eq!(cfg.channels, ch);
            let mut out = BytesMut::new();
            cfg.write_adts_header(len, &mut out).unwrap();
            let h = &out[..];
            let got = (usize::from(h[3] & 3) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
            prop_assert_eq!(got, len + 7);
            prop_assert_eq!((h[2] >> 2) & 0x0f, index);
        }
    }
}
