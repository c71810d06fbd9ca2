//! LEAD-STUB
#![allow(missing_docs)]
use bytes::{Bytes, BytesMut};
#[derive(Debug, thiserror::Error)]
pub enum RtmpError {
    #[error("x")]
    X,
}
#[derive(Debug, Clone, Default)]
pub struct RtmpLimits {
    pub max_chunk_size: u32,
    pub max_message_len: u32,
}
#[derive(Debug, Clone, Default)]
pub struct StreamMetadata {
    pub frame_rate: Option<f64>,
    pub video_data_rate: Option<f64>,
    pub audio_data_rate: Option<f64>,
}
#[derive(Debug)]
pub enum RtmpEvent {
    ConnectRequested {
        request_id: u32,
        app: String,
    },
    PublishRequested {
        request_id: u32,
        app: String,
        key: String,
    },
    Metadata(StreamMetadata),
    Video {
        timestamp_ms: u32,
        payload: Bytes,
    },
    Audio {
        timestamp_ms: u32,
        payload: Bytes,
    },
    PublishFinished,
    ChunkSizeChanged {
        size: u32,
    },
}
pub struct ServerConnection;
impl ServerConnection {
    pub fn new(_l: RtmpLimits) -> Self {
        unimplemented!()
    }
    pub fn feed(&mut self, _i: &[u8]) -> Result<(), RtmpError> {
        unimplemented!()
    }
    pub fn poll_event(&mut self) -> Option<RtmpEvent> {
        unimplemented!()
    }
    pub fn poll_transmit(&mut self, _o: &mut BytesMut) -> bool {
        unimplemented!()
    }
    pub fn accept(&mut self, _r: u32) -> Result<(), RtmpError> {
        unimplemented!()
    }
    pub fn reject(&mut self, _r: u32, _d: &str) -> Result<(), RtmpError> {
        unimplemented!()
    }
}
