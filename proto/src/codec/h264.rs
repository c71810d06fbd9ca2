//! H.264: AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1), SPS fields we need
//! (ITU-T H.264 7.3.2.1.1), and AVCC <-> Annex B conversion.

use bytes::Bytes;

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
// LEAD-STUB
impl AvcConfig {
    /// stub
    pub fn parse(_record: Bytes) -> Result<AvcConfig, H264Error> {
        unimplemented!()
    }
    /// stub
    pub fn codec_string(&self) -> String {
        unimplemented!()
    }
}
/// stub
pub fn to_avcc4(_data: &Bytes, _n: u8) -> Result<Bytes, H264Error> {
    unimplemented!()
}
