//! A light RTMP chunk-stream tracker (RTMP spec 1.0, 5.3) that runs in lock-step in front of
//! `rml_rtmp`'s `ChunkDeserializer` and enforces [`RtmpLimits`] before a byte reaches it.
//!
//! Owns: chunk boundaries, the peer's chunk size, per-chunk-stream header state, the limits
//! on message length / chunk size / chunk stream count, and vetting of the few message bodies
//! that `rml_rtmp` 0.8 cannot take safely (AMF commands and data, SetChunkSize,
//! WindowAcknowledgementSize). It copies only those small bodies, never media.
//! Does not: reassemble media messages or decode anything (rml_rtmp does that).
//!
//! Why it exists (read in rml_rtmp 0.8.0, `chunk_io/deserializer.rs`): the deserializer keeps
//! ONE payload buffer for all chunk streams, so a chunk on another stream while a message is
//! half read is appended to the wrong message; when its length is smaller than what is already
//! buffered, `length - current_payload_length` underflows (a panic in debug builds; in release
//! the message never completes and the buffer grows with every chunk: unbounded memory). It
//! also accepts any message length up to 16 MiB and any chunk size up to 2^31-1, and an
//! extended timestamp below 0xFFFFFF on a non-type-0 header underflows too. The tracker
//! rejects all of these with an error instead.
//!
//! Invariants: the tracker parses exactly like rml_rtmp's deserializer (same header rules,
//! same chunk length formula, chunk size changes applied when the SetChunkSize message
//! completes), so both agree on every chunk boundary; [`ChunkTracker::advance`] stops right
//! after the last byte of each complete message, so the caller can hand rml_rtmp one message
//! at a time and the tracker's verdict on a message always comes before rml_rtmp sees its last
//! byte. At most one message is in progress (interleaving is rejected), so rml_rtmp holds at
//! most one partial message (<= `max_message_len`) plus one partial chunk.

use std::collections::HashMap;

use super::amf::{self, Shape};
use super::{RtmpError, RtmpLimits};

/// Chunk size in force until the peer sends SetChunkSize (RTMP 5.4.1).
const INITIAL_CHUNK_SIZE: u32 = 128;
/// Largest chunk size the 31-bit SetChunkSize field can carry (RTMP 5.4.1).
const MAX_CHUNK_SIZE_FIELD: u32 = 0x7fff_ffff;
/// A timestamp field of 0xFFFFFF means a 4-byte extended timestamp follows (RTMP 5.3.1.3).
const EXTENDED_TIMESTAMP: u32 = 0x00ff_ffff;
/// Basic header (up to 3) + type 0 message header (11) + extended timestamp (4).
const MAX_HEADER_LEN: usize = 18;
/// Largest window acknowledgement size we accept. rml_rtmp adds each input's length to a u32
/// counter that only resets once it reaches the window, so a window near u32::MAX makes that
/// addition overflow (a panic in debug builds) after 4 GiB of input.
pub(super) const MAX_WINDOW_ACK_SIZE: u32 = 0x7fff_ffff;

/// RTMP message type ids (RTMP 5.4, 7.1).
pub(super) const TYPE_SET_CHUNK_SIZE: u8 = 1;
const TYPE_WINDOW_ACK_SIZE: u8 = 5;
const TYPE_AMF3_DATA: u8 = 15;
const TYPE_AMF3_COMMAND: u8 = 17;
const TYPE_AMF0_DATA: u8 = 18;
const TYPE_AMF0_COMMAND: u8 = 20;

/// rml_rtmp decodes types 15/17 as AMF0 too (Flash clients mislabel them), so they are vetted
/// the same way.
fn is_amf(type_id: u8) -> bool {
    matches!(
        type_id,
        TYPE_AMF3_DATA | TYPE_AMF3_COMMAND | TYPE_AMF0_DATA | TYPE_AMF0_COMMAND
    )
}

/// How many leading body bytes to keep for vetting (0 for media and most control messages).
fn capture_len(type_id: u8, message_length: u32) -> usize {
    match type_id {
        TYPE_SET_CHUNK_SIZE | TYPE_WINDOW_ACK_SIZE => 4,
        t if is_amf(t) => message_length as usize,
        _ => 0,
    }
}

/// The header state a chunk stream keeps for compressed (type 1-3) headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StreamHeader {
    timestamp_field: u32,
    message_length: u32,
    type_id: u8,
}

/// The one message whose chunks are being received.
#[derive(Debug)]
struct Partial {
    csid: u32,
    length: u32,
    type_id: u8,
    received: u32,
    capture: Vec<u8>,
    capture_len: usize,
}

#[derive(Debug, Clone, Copy)]
enum Stage {
    Header,
    Body {
        csid: u32,
        header: StreamHeader,
        chunk_len: u32,
        left: u32,
    },
}

/// What [`ChunkTracker::advance`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Advance {
    /// Bytes of the input consumed; the caller forwards exactly these to rml_rtmp.
    pub(super) consumed: usize,
    /// Set when those bytes end with the last byte of a message.
    pub(super) completed: Option<Completed>,
}

/// A message that completed at the end of an [`Advance`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Completed {
    /// Its RTMP message type id.
    pub(super) type_id: u8,
    /// For a SetChunkSize message: the peer's new chunk size.
    pub(super) new_chunk_size: Option<u32>,
}

/// See the module doc.
#[derive(Debug)]
pub(super) struct ChunkTracker {
    limits: RtmpLimits,
    chunk_size: u32,
    streams: HashMap<u32, StreamHeader>,
    partial: Option<Partial>,
    hdr: [u8; MAX_HEADER_LEN],
    hdr_len: usize,
    stage: Stage,
}

/// A header read in full.
struct ParsedHeader {
    fmt: u8,
    csid: u32,
    header: StreamHeader,
    extended: Option<u32>,
}

impl ChunkTracker {
    pub(super) fn new(limits: RtmpLimits) -> Self {
        ChunkTracker {
            limits,
            chunk_size: INITIAL_CHUNK_SIZE,
            streams: HashMap::new(),
            partial: None,
            hdr: [0; MAX_HEADER_LEN],
            hdr_len: 0,
            stage: Stage::Header,
        }
    }

    /// The chunk size the peer currently uses.
    pub(super) fn peer_chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Consumes `input` up to and including the end of the next complete message, or all of
    /// it. Consumes at least one byte when `input` is not empty and no error is returned.
    pub(super) fn advance(&mut self, input: &[u8]) -> Result<Advance, RtmpError> {
        let mut pos = 0;
        loop {
            match self.stage {
                Stage::Header => {
                    if pos == input.len() {
                        break;
                    }
                    // Take as many bytes as the header is known to need, else one at a time
                    // until its length can be told (at most 18 steps).
                    let want = match self.header_len()? {
                        Some(total) => total - self.hdr_len,
                        None => 1,
                    };
                    let take = want.min(input.len() - pos);
                    self.hdr[self.hdr_len..self.hdr_len + take]
                        .copy_from_slice(&input[pos..pos + take]);
                    self.hdr_len += take;
                    pos += take;
                    if self.header_len()? == Some(self.hdr_len) {
                        self.finish_header()?;
                        // A zero-length chunk completes at once, as in rml_rtmp.
                        if let Some(done) = self.end_of_chunk()? {
                            return Ok(Advance {
                                consumed: pos,
                                completed: Some(done),
                            });
                        }
                    }
                }
                Stage::Body {
                    csid,
                    header,
                    chunk_len,
                    left,
                } => {
                    if left > 0 {
                        if pos == input.len() {
                            break;
                        }
                        let take = (left as usize).min(input.len() - pos);
                        if let Some(p) = self.partial.as_mut() {
                            let room = p.capture_len.saturating_sub(p.capture.len());
                            p.capture
                                .extend_from_slice(&input[pos..pos + take.min(room)]);
                        }
                        pos += take;
                        self.stage = Stage::Body {
                            csid,
                            header,
                            chunk_len,
                            left: left - take as u32,
                        };
                    }
                    if let Some(done) = self.end_of_chunk()? {
                        return Ok(Advance {
                            consumed: pos,
                            completed: Some(done),
                        });
                    }
                }
            }
        }
        Ok(Advance {
            consumed: pos,
            completed: None,
        })
    }

    /// Total header length once enough bytes are known, `None` while more are needed.
    fn header_len(&self) -> Result<Option<usize>, RtmpError> {
        let h = &self.hdr[..self.hdr_len];
        let Some(&first) = h.first() else {
            return Ok(None);
        };
        let fmt = first >> 6;
        let basic = match first & 0x3f {
            0 => 2,
            1 => 3,
            _ => 1,
        };
        if h.len() < basic {
            return Ok(None);
        }
        let csid = basic_csid(h);
        let previous = self.streams.get(&csid);
        if fmt != 0 && previous.is_none() {
            return Err(RtmpError::NoPreviousChunk { csid });
        }
        let message_header = [11, 7, 3, 0][usize::from(fmt)];
        let timestamp_field = match (fmt, previous) {
            (3, Some(p)) => p.timestamp_field,
            _ => match h.get(basic..basic + 3) {
                Some(t) => u24(t),
                None => return Ok(None),
            },
        };
        let extended = if timestamp_field >= EXTENDED_TIMESTAMP {
            4
        } else {
            0
        };
        Ok(Some(basic + message_header + extended))
    }

    fn parse_header(&self) -> Result<ParsedHeader, RtmpError> {
        let h = &self.hdr[..self.hdr_len];
        let fmt = h[0] >> 6;
        let basic = match h[0] & 0x3f {
            0 => 2,
            1 => 3,
            _ => 1,
        };
        let csid = basic_csid(h);
        let previous = self.streams.get(&csid).copied();
        let m = &h[basic..];
        let header = match (fmt, previous) {
            (0, _) => StreamHeader {
                timestamp_field: u24(&m[0..3]),
                message_length: u24(&m[3..6]),
                type_id: m[6],
            },
            (1, Some(_)) => StreamHeader {
                timestamp_field: u24(&m[0..3]),
                message_length: u24(&m[3..6]),
                type_id: m[6],
            },
            (2, Some(p)) => StreamHeader {
                timestamp_field: u24(&m[0..3]),
                ..p
            },
            (_, Some(p)) => p,
            (_, None) => return Err(RtmpError::NoPreviousChunk { csid }),
        };
        let message_header = [11, 7, 3, 0][usize::from(fmt)];
        let extended = if header.timestamp_field >= EXTENDED_TIMESTAMP {
            let e = &m[message_header..message_header + 4];
            Some(u32::from_be_bytes([e[0], e[1], e[2], e[3]]))
        } else {
            None
        };
        Ok(ParsedHeader {
            fmt,
            csid,
            header,
            extended,
        })
    }

    fn finish_header(&mut self) -> Result<(), RtmpError> {
        let ParsedHeader {
            fmt,
            csid,
            header,
            extended,
        } = self.parse_header()?;
        self.hdr_len = 0;
        let limits = &self.limits;
        match &self.partial {
            Some(p) => {
                if p.csid != csid {
                    return Err(RtmpError::InterleavedChunkStreams {
                        csid,
                        pending_csid: p.csid,
                    });
                }
                if header.message_length != p.length || header.type_id != p.type_id {
                    return Err(RtmpError::ContinuationMismatch {
                        csid,
                        len: header.message_length,
                        type_id: header.type_id,
                    });
                }
            }
            None => {
                if header.message_length > limits.max_message_len {
                    return Err(RtmpError::MessageTooLong {
                        len: header.message_length,
                        max: limits.max_message_len,
                    });
                }
                if is_amf(header.type_id) && header.message_length > limits.max_amf_message_len {
                    return Err(RtmpError::AmfMessageTooLong {
                        type_id: header.type_id,
                        len: header.message_length,
                        max: limits.max_amf_message_len,
                    });
                }
                if !self.streams.contains_key(&csid)
                    && self.streams.len() >= limits.max_chunk_streams
                {
                    return Err(RtmpError::TooManyChunkStreams {
                        csid,
                        max: limits.max_chunk_streams,
                    });
                }
                // rml_rtmp computes `extended - 0xFFFFFF` for the first chunk of a message
                // with a compressed header (a delta); smaller values underflow it.
                if let Some(value) = extended.filter(|&v| fmt != 0 && v < EXTENDED_TIMESTAMP) {
                    return Err(RtmpError::InvalidExtendedTimestamp { csid, value });
                }
                let capture_len = capture_len(header.type_id, header.message_length);
                self.partial = Some(Partial {
                    csid,
                    length: header.message_length,
                    type_id: header.type_id,
                    received: 0,
                    capture: Vec::with_capacity(capture_len),
                    capture_len,
                });
            }
        }
        let received = self.partial.as_ref().map_or(0, |p| p.received);
        // rml_rtmp's formula: the whole message when it fits in one chunk, else what is left,
        // capped at the chunk size.
        let mut chunk_len = header.message_length;
        if chunk_len > self.chunk_size {
            chunk_len = (header.message_length - received).min(self.chunk_size);
        }
        if received.checked_add(chunk_len) > Some(header.message_length) {
            // Unreachable with the checks above; never let rml_rtmp overrun a message.
            return Err(RtmpError::Internal {
                context: "chunk tracker: chunk overruns its message",
            });
        }
        self.stage = Stage::Body {
            csid,
            header,
            chunk_len,
            left: chunk_len,
        };
        Ok(())
    }

    /// When the current chunk's body is complete: record its header for the chunk stream and,
    /// if the message is complete too, vet it and report it.
    fn end_of_chunk(&mut self) -> Result<Option<Completed>, RtmpError> {
        let Stage::Body {
            csid,
            header,
            chunk_len,
            left: 0,
        } = self.stage
        else {
            return Ok(None);
        };
        self.stage = Stage::Header;
        self.streams.insert(csid, header);
        let Some(p) = self.partial.as_mut() else {
            return Err(RtmpError::Internal {
                context: "chunk tracker: chunk without a message",
            });
        };
        p.received += chunk_len;
        if p.received < p.length {
            return Ok(None);
        }
        let Some(p) = self.partial.take() else {
            return Ok(None);
        };
        self.vet(p).map(Some)
    }

    fn vet(&mut self, p: Partial) -> Result<Completed, RtmpError> {
        let mut done = Completed {
            type_id: p.type_id,
            new_chunk_size: None,
        };
        let depth = self.limits.max_amf_depth;
        let too_deep = |_| RtmpError::AmfTooDeep {
            type_id: p.type_id,
            max: depth,
        };
        match p.type_id {
            TYPE_SET_CHUNK_SIZE => {
                // Shorter bodies make rml_rtmp fail with its own error.
                if let Some(b) = p.capture.get(..4) {
                    let size = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                    let max = self.limits.max_chunk_size.min(MAX_CHUNK_SIZE_FIELD);
                    if size == 0 {
                        return Err(RtmpError::InvalidChunkSize { size });
                    }
                    if size > max {
                        return Err(RtmpError::ChunkSizeTooLarge { size, max });
                    }
                    self.chunk_size = size;
                    done.new_chunk_size = Some(size);
                }
            }
            TYPE_WINDOW_ACK_SIZE => {
                if let Some(b) = p.capture.get(..4) {
                    let size = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                    if size > MAX_WINDOW_ACK_SIZE {
                        return Err(RtmpError::WindowAckSizeTooLarge {
                            size,
                            max: MAX_WINDOW_ACK_SIZE,
                        });
                    }
                }
            }
            TYPE_AMF0_DATA | TYPE_AMF3_DATA => {
                if let Shape::Parsed {
                    values,
                    first_is_set_data_frame: true,
                    second_is_on_metadata,
                } = amf::inspect(&p.capture, depth).map_err(too_deep)?
                {
                    // rml_rtmp indexes the arguments of @setDataFrame without checking them.
                    if values == 1 || (values == 2 && second_is_on_metadata) {
                        return Err(RtmpError::MalformedDataMessage { values });
                    }
                }
            }
            TYPE_AMF0_COMMAND | TYPE_AMF3_COMMAND => {
                // rml_rtmp drops one leading zero byte of "AMF3" commands before decoding.
                let body = match p.capture.split_first() {
                    Some((0, rest)) if p.type_id == TYPE_AMF3_COMMAND => rest,
                    _ => &p.capture[..],
                };
                if let Shape::Parsed { values, .. } = amf::inspect(body, depth).map_err(too_deep)? {
                    // name, transaction id and command object are mandatory (RTMP 7.1.1);
                    // rml_rtmp takes them with `drain(..3)`, which panics on fewer.
                    if values < 3 {
                        return Err(RtmpError::MalformedCommand { values });
                    }
                }
            }
            _ => {}
        }
        Ok(done)
    }
}

fn basic_csid(h: &[u8]) -> u32 {
    match h[0] & 0x3f {
        0 => u32::from(h[1]) + 64,
        1 => u32::from(h[2]) * 256 + u32::from(h[1]) + 64,
        x => u32::from(x),
    }
}

fn u24(b: &[u8]) -> u32 {
    (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2])
}
