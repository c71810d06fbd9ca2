//! Codec bitstream helpers: H.264 and AAC.

pub mod aac;
pub mod h264;
