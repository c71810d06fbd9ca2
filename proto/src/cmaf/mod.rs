//! LEAD-STUB
#![allow(missing_docs)]
use crate::codec::{aac::AacConfig, h264::AvcConfig};
use bytes::{Bytes, BytesMut};
pub enum CmafTrack<'a> {
    Video(&'a AvcConfig),
    Audio(&'a AacConfig),
}
pub struct CmafSample {
    pub duration: u32,
    pub cts_offset: i32,
    pub keyframe: bool,
    pub data: Bytes,
}
pub fn write_init_segment(_t: &CmafTrack, _o: &mut BytesMut) {
    unimplemented!()
}
pub fn write_fragment(_s: u32, _b: u64, _x: &[CmafSample], _o: &mut BytesMut) {
    unimplemented!()
}
