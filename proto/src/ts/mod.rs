//! LEAD-STUB
#![allow(missing_docs)]
use crate::codec::{aac::AacConfig, h264::AvcConfig};
use crate::media::{AudioFrame, VideoFrame};
use bytes::BytesMut;
#[derive(Debug, thiserror::Error)]
pub enum TsError {
    #[error("x")]
    X,
}
pub struct TsMuxer;
impl TsMuxer {
    pub fn new(_v: Option<AvcConfig>, _a: Option<AacConfig>) -> Self {
        unimplemented!()
    }
    pub fn write_tables(&mut self, _o: &mut BytesMut) {
        unimplemented!()
    }
    pub fn write_video(&mut self, _f: &VideoFrame, _o: &mut BytesMut) -> Result<(), TsError> {
        unimplemented!()
    }
    pub fn write_audio(&mut self, _f: &AudioFrame, _o: &mut BytesMut) -> Result<(), TsError> {
        unimplemented!()
    }
}
