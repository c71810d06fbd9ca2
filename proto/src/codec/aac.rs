//! AAC: AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1) and ADTS headers (14496-3 1.A.2).

use bytes::Bytes;

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
// LEAD-STUB
impl AacConfig {
    /// stub
    pub fn parse(_asc: Bytes) -> Result<AacConfig, AacError> {
        unimplemented!()
    }
    /// stub
    pub fn codec_string(&self) -> String {
        unimplemented!()
    }
}
