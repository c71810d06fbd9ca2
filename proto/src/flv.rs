//! LEAD-STUB
#![allow(missing_docs)]
use bytes::Bytes;
#[derive(Debug, thiserror::Error)]
pub enum FlvError {
    #[error("x")]
    X,
}
pub enum FlvVideo {
    SequenceHeader(Bytes),
    Frame {
        keyframe: bool,
        cts_ms: i32,
        data: Bytes,
    },
    EndOfSequence,
}
pub enum FlvAudio {
    SequenceHeader(Bytes),
    Frame(Bytes),
}
pub fn parse_video(_p: &Bytes) -> Result<FlvVideo, FlvError> {
    unimplemented!()
}
pub fn parse_audio(_p: &Bytes) -> Result<FlvAudio, FlvError> {
    unimplemented!()
}
