//! The RTMP server side of one publisher connection, sans-IO: handshake bytes and chunks go
//! in through [`ServerConnection::feed`], [`RtmpEvent`]s come out of
//! [`ServerConnection::poll_event`], and the bytes to send back come out of
//! [`ServerConnection::poll_transmit`] into a buffer the caller owns.
//!
//! Owns: the handshake (plain and Flash-digest, via `rml_rtmp::handshake::Handshake`), the
//! `rml_rtmp` 0.8 `ServerSession` that decodes chunks and commands and writes the answers,
//! the limits in [`RtmpLimits`], and the translation of rml_rtmp's events into [`RtmpEvent`]s
//! (one publish per connection, the stream key reported once).
//! Does not: open sockets, read clocks or decide policy: whether an app or a stream key is
//! acceptable is the caller's call through [`ServerConnection::accept`] and
//! [`ServerConnection::reject`]. It does not parse the FLV bodies of audio/video messages
//! (see [`crate::flv`]) and it does not serve playback (`play` is refused).
//!
//! # Driving it
//! After every [`feed`](ServerConnection::feed), drain [`poll_event`](ServerConnection::poll_event)
//! until `None` and [`poll_transmit`](ServerConnection::poll_transmit) until `false`, and write
//! what it produced to the peer in order (RTMP header compression makes every outbound byte
//! matter). Bound the size of each `feed` (a socket read buffer, e.g. 64 KiB): the events of
//! one feed are queued until drained. Any error from `feed`, `accept` or `reject` is final
//! (except [`RtmpError::UnknownRequest`], a caller bug that changes nothing): the connection
//! must be closed, and every later call returns [`RtmpError::Failed`]. Events queued before
//! the error can still be drained, and output queued before it may still be written.
//!
//! # Compatibility notes
//! - rml_rtmp sends, right after the handshake: SetChunkSize 4096, WindowAcknowledgementSize,
//!   StreamBegin(0), SetPeerBandwidth 2.5 MB dynamic and `onBWDone`; it answers
//!   `connect` with `_result`/NetConnection.Connect.Success, `createStream` with `_result`,
//!   and sends StreamBegin + `onStatus NetStream.Publish.Start` when we accept a publish. It
//!   acknowledges received bytes once the peer announced its window (ffmpeg, OBS and
//!   GStreamer rtmp2sink do).
//! - `releaseStream` and `FCPublish` get no answer. ffmpeg and OBS (librtmp) send them
//!   back to back with `createStream` as soon as `connect` succeeds and only wait for
//!   `createStream`'s result; rtmp2sink sends them without a reply handler. Answering would
//!   need bytes outside rml_rtmp's serializer (it has no API for arbitrary commands, and
//!   foreign chunks would break its header compression). `FCUnpublish` ends the publish like
//!   `deleteStream` and `closeStream`; [`RtmpEvent::PublishFinished`] is reported once.
//! - A rejected request gets rml_rtmp's `_error` with level `_error` and code
//!   `NetConnection.Connect.Rejected` (connect) or `NetStream.Publish.BadName` (publish;
//!   `NetStream.Publish.Denied` for a publish refused for capacity, [`ServerConnection::deny`]):
//!   ffmpeg prints "Server error: DESCRIPTION", rtmp2sink reports the rejection; the caller
//!   then closes the connection.
//!
//! # Limits and the memory bound
//! rml_rtmp's chunk deserializer can be made to buffer without bound by a hostile peer
//! (interleaved chunk streams corrupt its single payload buffer, see `rtmp/chunk.rs`), and it
//! panics or recurses without limit on some inputs. A chunk tracker runs in lock-step in front
//! of it and rejects, before rml_rtmp sees the bytes: messages longer than
//! `max_message_len`, AMF messages longer than `max_amf_message_len` or nested deeper than
//! `max_amf_depth`, chunk sizes above `max_chunk_size`, interleaved chunk streams, more than
//! `max_chunk_streams` chunk streams, and the malformed commands that make rml_rtmp panic.
//! Per connection the buffered input is therefore at most one message plus one chunk, and
//! the queued output at most `max_pending_output`. As a last line of defence every call into
//! rml_rtmp runs under `catch_unwind` (which needs `panic = "unwind"`, the default): a panic
//! becomes [`RtmpError::Internal`].
//!
//! # Known caveats (rml_rtmp 0.8)
//! - It reads `SystemTime::now()` internally to stamp the messages it sends (this module
//!   passes no clock in, but the dependency does read one); the timestamps of received media
//!   are the peer's and are unaffected.
//! - Its Acknowledgement carries the bytes received since the previous acknowledgement, not
//!   the running total that RTMP 5.4.3 asks for; the encoders above do not check it.
//! - It clones the app name and stream key for every media message internally; we drop them.
//! - Aggregate messages (type 22) are not decoded (encoders do not send them when publishing).

mod amf;
mod chunk;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::{Bytes, BytesMut};
use rml_rtmp::handshake::{Handshake, HandshakeError, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionError, ServerSessionEvent, ServerSessionResult,
};

use self::chunk::ChunkTracker;
use crate::codec::h264;

/// Limits for one RTMP connection. Every breach ends the connection with an error naming the
/// value and the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtmpLimits {
    /// Largest chunk size the peer may announce with SetChunkSize.
    pub max_chunk_size: u32,
    /// Largest RTMP message (one FLV tag body for media).
    pub max_message_len: u32,
    /// Largest AMF command or data message (connect, publish, onMetaData...).
    pub max_amf_message_len: u32,
    /// Deepest nesting of AMF objects/arrays in a command or data message.
    pub max_amf_depth: u32,
    /// Most distinct chunk stream ids the peer may use.
    pub max_chunk_streams: usize,
    /// Most bytes waiting in [`ServerConnection::poll_transmit`] after a call. Keep it above
    /// 4 KiB: the handshake answer alone (S0+S1+S2) is 3073 bytes.
    pub max_pending_output: usize,
}

impl Default for RtmpLimits {
    fn default() -> Self {
        RtmpLimits {
            // Publishers use 128 (the RTMP default) to a few KiB (4096 is common) and relaying
            // servers up to ~64 KiB (SRS uses 60000); 1 MiB leaves 16x headroom over those.
            // Chunk size costs memory only up to the message size (the tracker bounds that), so
            // this is hygiene more than defence: it refuses the 2^31-1 that rml_rtmp accepts.
            max_chunk_size: 1024 * 1024,
            // One video message is one access unit plus the FLV video tag header (5 bytes, 8
            // for Enhanced RTMP); the access unit limit is justified in `codec::h264`. This also
            // bounds what rml_rtmp buffers for a message in progress.
            max_message_len: h264::MAX_ACCESS_UNIT_SIZE as u32 + 64,
            // connect/publish/createStream are a few hundred bytes; OBS and ffmpeg metadata is
            // under 1 KiB. 64 KiB leaves room for verbose encoders and caps the copy the
            // tracker keeps to vet these messages.
            max_amf_message_len: 64 * 1024,
            // Real commands nest 1-2 levels (an object in a command, an ECMA array of scalars in
            // onMetaData). 16 allows odd encoders and keeps rml_amf0's recursion shallow.
            max_amf_depth: 16,
            // Encoders use a handful of chunk streams (one each for control, commands, audio,
            // video, data; ffmpeg's channel constants span 2..8). rml_rtmp keeps a header per
            // chunk stream id, of which a peer could otherwise use 65599.
            max_chunk_streams: 64,
            // Answers are small (acks, pongs, command results ~200 B). 1 MiB pending means the
            // caller is not draining or the peer floods pings while never reading.
            max_pending_output: 1024 * 1024,
        }
    }
}

/// Errors of an RTMP connection. All are final: close the connection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RtmpError {
    /// C0 was not 3 (6 is RTMPE, 'G'/'P' an HTTP request, 0x16 TLS: not plain RTMP).
    #[error("rtmp: unsupported handshake version byte {version:#04x} (only 3, plain RTMP)")]
    UnsupportedVersion {
        /// The C0 byte received.
        version: u8,
    },
    /// The handshake failed in rml_rtmp.
    #[error("rtmp: handshake failed: {detail}")]
    Handshake {
        /// rml_rtmp's description.
        detail: String,
    },
    /// The peer announced a chunk size above [`RtmpLimits::max_chunk_size`].
    #[error("rtmp: peer chunk size {size} exceeds the limit of {max}")]
    ChunkSizeTooLarge {
        /// The announced size.
        size: u32,
        /// The limit.
        max: u32,
    },
    /// The peer announced a chunk size of 0 (RTMP 5.4.1: at least 1).
    #[error("rtmp: invalid peer chunk size {size}")]
    InvalidChunkSize {
        /// The announced size.
        size: u32,
    },
    /// The peer announced an absurd acknowledgement window (see `chunk.rs`).
    #[error("rtmp: window acknowledgement size {size} exceeds the limit of {max}")]
    WindowAckSizeTooLarge {
        /// The announced size.
        size: u32,
        /// The limit.
        max: u32,
    },
    /// A message header announced more than [`RtmpLimits::max_message_len`] bytes.
    #[error("rtmp: message of {len} bytes exceeds the limit of {max}")]
    MessageTooLong {
        /// The announced length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// An AMF command/data message longer than [`RtmpLimits::max_amf_message_len`].
    #[error("rtmp: AMF message (type {type_id}) of {len} bytes exceeds the limit of {max}")]
    AmfMessageTooLong {
        /// The RTMP message type.
        type_id: u8,
        /// The announced length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// AMF values nested deeper than [`RtmpLimits::max_amf_depth`].
    #[error("rtmp: AMF message (type {type_id}) nests deeper than {max} levels")]
    AmfTooDeep {
        /// The RTMP message type.
        type_id: u8,
        /// The limit.
        max: u32,
    },
    /// A command message with fewer than the three mandatory values (name, transaction id,
    /// command object).
    #[error("rtmp: command message with {values} AMF values (need at least 3)")]
    MalformedCommand {
        /// Values present.
        values: usize,
    },
    /// `@setDataFrame` without its handler name and value.
    #[error("rtmp: @setDataFrame with {values} AMF values (need 3)")]
    MalformedDataMessage {
        /// Values present.
        values: usize,
    },
    /// The peer used more chunk streams than [`RtmpLimits::max_chunk_streams`].
    #[error("rtmp: chunk stream {csid} exceeds the limit of {max} chunk streams")]
    TooManyChunkStreams {
        /// The chunk stream id that crossed the limit.
        csid: u32,
        /// The limit.
        max: usize,
    },
    /// A chunk of another chunk stream arrived while a message was half received. RTMP
    /// allows it, but rml_rtmp 0.8 cannot reassemble it, and the encoders we target never do
    /// it (they write each message's chunks back to back).
    #[error("rtmp: chunk on stream {csid} interleaved with an unfinished message on stream {pending_csid}")]
    InterleavedChunkStreams {
        /// The chunk stream of the interleaved chunk.
        csid: u32,
        /// The chunk stream with the unfinished message.
        pending_csid: u32,
    },
    /// A continuation chunk changed the length or type of the message in progress.
    #[error("rtmp: continuation chunk on stream {csid} changes the message to {len} bytes of type {type_id}")]
    ContinuationMismatch {
        /// The chunk stream.
        csid: u32,
        /// The length in the new header.
        len: u32,
        /// The type in the new header.
        type_id: u8,
    },
    /// A compressed chunk header on a chunk stream that never had a full one (RTMP 5.3.1.2).
    #[error("rtmp: compressed chunk header on stream {csid} without a previous header")]
    NoPreviousChunk {
        /// The chunk stream.
        csid: u32,
    },
    /// An extended timestamp delta below 0xFFFFFF (it would have fit the 24-bit field).
    #[error("rtmp: invalid extended timestamp {value} on chunk stream {csid}")]
    InvalidExtendedTimestamp {
        /// The chunk stream.
        csid: u32,
        /// The extended timestamp.
        value: u32,
    },
    /// rml_rtmp could not decode a message.
    #[error("rtmp: malformed message of type {type_id}: {detail}")]
    MalformedMessage {
        /// The RTMP message type (0 when unknown).
        type_id: u8,
        /// rml_rtmp's description.
        detail: String,
    },
    /// `connect` without an app name.
    #[error("rtmp: connect without an app name")]
    ConnectWithoutApp,
    /// A second `connect` on the same connection.
    #[error("rtmp: second connect on the same connection")]
    DuplicateConnect,
    /// [`ServerConnection::accept`]/[`ServerConnection::reject`] with an id that is not
    /// pending.
    #[error("rtmp: no pending request with id {request_id}")]
    UnknownRequest {
        /// The id given.
        request_id: u32,
    },
    /// Output piled up beyond [`RtmpLimits::max_pending_output`].
    #[error("rtmp: {pending} bytes of output pending exceed the limit of {max}")]
    OutputBacklog {
        /// Bytes pending.
        pending: usize,
        /// The limit.
        max: usize,
    },
    /// rml_rtmp reported another error.
    #[error("rtmp: session error: {detail}")]
    Session {
        /// rml_rtmp's description.
        detail: String,
    },
    /// rml_rtmp panicked (caught) or an internal invariant broke.
    #[error("rtmp: internal error in {context}")]
    Internal {
        /// Where.
        context: &'static str,
    },
    /// An earlier error ended this connection.
    #[error("rtmp: connection already failed")]
    Failed,
}

/// Stream metadata from `@setDataFrame onMetaData` (FLV spec E.5). Every field is what the
/// encoder claims; none is trusted for packaging (the codec configs are).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamMetadata {
    /// `width`.
    pub width: Option<u32>,
    /// `height`.
    pub height: Option<u32>,
    /// `framerate`.
    pub framerate: Option<f32>,
    /// `videodatarate`, kbit/s.
    pub video_data_rate_kbps: Option<u32>,
    /// `audiodatarate`, kbit/s.
    pub audio_data_rate_kbps: Option<u32>,
    /// `videocodecid` (7 = AVC) when sent as a number.
    pub video_codec_id: Option<u32>,
    /// `audiocodecid` (10 = AAC) when sent as a number.
    pub audio_codec_id: Option<u32>,
    /// `audiosamplerate`, Hz.
    pub audio_sample_rate: Option<u32>,
    /// `audiochannels`.
    pub audio_channels: Option<u32>,
    /// `encoder`, e.g. `Lavf59.27.100` or `obs-output module (libobs version 30.0.0)`.
    pub encoder: Option<String>,
}

impl From<rml_rtmp::sessions::StreamMetadata> for StreamMetadata {
    fn from(m: rml_rtmp::sessions::StreamMetadata) -> Self {
        StreamMetadata {
            width: m.video_width,
            height: m.video_height,
            framerate: m.video_frame_rate,
            video_data_rate_kbps: m.video_bitrate_kbps,
            audio_data_rate_kbps: m.audio_bitrate_kbps,
            video_codec_id: m.video_codec_id,
            audio_codec_id: m.audio_codec_id,
            audio_sample_rate: m.audio_sample_rate,
            audio_channels: m.audio_channels,
            encoder: m.encoder,
        }
    }
}

/// What happened on the connection. `Debug` redacts the stream key and prints media
/// payloads as their length.
#[derive(Clone, PartialEq)]
pub enum RtmpEvent {
    /// `connect`: answer with [`ServerConnection::accept`] or [`ServerConnection::reject`].
    ConnectRequested {
        /// Pass to accept/reject.
        request_id: u32,
        /// The RTMP application (`live` in `rtmp://host/live/KEY`).
        app: String,
    },
    /// `publish`: answer with [`ServerConnection::accept`] or [`ServerConnection::reject`].
    /// The stream key is reported here only, never with the media.
    PublishRequested {
        /// Pass to accept/reject.
        request_id: u32,
        /// The RTMP application.
        app: String,
        /// The stream key (publishing name), a secret.
        key: String,
    },
    /// `@setDataFrame onMetaData` on the accepted publish.
    Metadata(StreamMetadata),
    /// A video message of the accepted publish: an FLV VIDEODATA body.
    Video {
        /// RTMP timestamp (decode time), milliseconds, wraps at 2^32.
        timestamp_ms: u32,
        /// The message body, see [`crate::flv::parse_video`].
        payload: Bytes,
    },
    /// An audio message of the accepted publish: an FLV AUDIODATA body.
    Audio {
        /// RTMP timestamp, milliseconds, wraps at 2^32.
        timestamp_ms: u32,
        /// The message body, see [`crate::flv::parse_audio`].
        payload: Bytes,
    },
    /// The publisher ended the accepted publish (FCUnpublish, deleteStream or closeStream).
    PublishFinished,
    /// The peer changed its chunk size (SetChunkSize).
    ChunkSizeChanged {
        /// The new chunk size.
        size: u32,
    },
    /// A message of a type this server does not use (aggregate, shared object, AMF3 or an
    /// unknown type id) was skipped; the connection goes on.
    Ignored {
        /// The RTMP message type id.
        type_id: u8,
    },
}

impl fmt::Debug for RtmpEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RtmpEvent::ConnectRequested { request_id, app } => f
                .debug_struct("ConnectRequested")
                .field("request_id", request_id)
                .field("app", app)
                .finish(),
            RtmpEvent::PublishRequested {
                request_id, app, ..
            } => f
                .debug_struct("PublishRequested")
                .field("request_id", request_id)
                .field("app", app)
                .field("key", &"<redacted>")
                .finish(),
            RtmpEvent::Metadata(m) => f.debug_tuple("Metadata").field(m).finish(),
            RtmpEvent::Video {
                timestamp_ms,
                payload,
            } => f
                .debug_struct("Video")
                .field("timestamp_ms", timestamp_ms)
                .field("len", &payload.len())
                .finish(),
            RtmpEvent::Audio {
                timestamp_ms,
                payload,
            } => f
                .debug_struct("Audio")
                .field("timestamp_ms", timestamp_ms)
                .field("len", &payload.len())
                .finish(),
            RtmpEvent::PublishFinished => f.write_str("PublishFinished"),
            RtmpEvent::ChunkSizeChanged { size } => f
                .debug_struct("ChunkSizeChanged")
                .field("size", size)
                .finish(),
            RtmpEvent::Ignored { type_id } => {
                f.debug_struct("Ignored").field("type_id", type_id).finish()
            }
        }
    }
}

/// What an outstanding request id stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestKind {
    Connect,
    Publish,
}

/// The one publish a connection may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PublishState {
    Idle,
    Requested,
    Publishing,
}

enum Phase {
    Handshake(Box<Handshake>),
    Session(Box<ServerSession>),
    /// Placeholder while a method holds the session (never observed from outside).
    Taken,
}

/// The server side of one RTMP connection. See the module doc for the driving loop.
///
/// Methods: input [`feed`](Self::feed); commands [`accept`](Self::accept),
/// [`reject`](Self::reject); output [`poll_event`](Self::poll_event),
/// [`poll_transmit`](Self::poll_transmit); getters [`is_handshake_done`](Self::is_handshake_done),
/// [`peer_chunk_size`](Self::peer_chunk_size), [`is_publishing`](Self::is_publishing).
pub struct ServerConnection {
    limits: RtmpLimits,
    phase: Phase,
    tracker: ChunkTracker,
    events: VecDeque<RtmpEvent>,
    transmit: BytesMut,
    requests: HashMap<u32, RequestKind>,
    /// C0 arrived (and was checked).
    c0_seen: bool,
    connect_seen: bool,
    publish: PublishState,
    failed: bool,
}

impl fmt::Debug for ServerConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConnection")
            .field("handshake_done", &self.is_handshake_done())
            .field("publish", &self.publish)
            .field("pending_events", &self.events.len())
            .field("pending_output", &self.transmit.len())
            .field("failed", &self.failed)
            .finish()
    }
}

/// Runs a call into rml_rtmp, turning a panic into [`RtmpError::Internal`].
fn guarded<T>(context: &'static str, f: impl FnOnce() -> T) -> Result<T, RtmpError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|_| RtmpError::Internal { context })
}

fn session_error(e: ServerSessionError, type_id: u8) -> RtmpError {
    match e {
        ServerSessionError::MessageDeserializationError(e) => RtmpError::MalformedMessage {
            type_id,
            detail: e.to_string(),
        },
        ServerSessionError::NoAppNameForConnectionRequest => RtmpError::ConnectWithoutApp,
        other => RtmpError::Session {
            detail: other.to_string(),
        },
    }
}

fn handshake_error(e: HandshakeError) -> RtmpError {
    RtmpError::Handshake {
        detail: e.to_string(),
    }
}

impl ServerConnection {
    /// A connection waiting for the client's C0/C1.
    pub fn new(limits: RtmpLimits) -> Self {
        ServerConnection {
            limits,
            phase: Phase::Handshake(Box::new(Handshake::new(PeerType::Server))),
            tracker: ChunkTracker::new(limits),
            events: VecDeque::new(),
            transmit: BytesMut::new(),
            requests: HashMap::new(),
            c0_seen: false,
            connect_seen: false,
            publish: PublishState::Idle,
            failed: false,
        }
    }

    /// True once C2 arrived and the RTMP session started.
    pub fn is_handshake_done(&self) -> bool {
        matches!(self.phase, Phase::Session(_))
    }

    /// The chunk size the peer currently sends with (128 until it says otherwise).
    pub fn peer_chunk_size(&self) -> u32 {
        self.tracker.peer_chunk_size()
    }

    /// True between an accepted publish and its end.
    pub fn is_publishing(&self) -> bool {
        self.publish == PublishState::Publishing
    }

    /// Feeds bytes received from the peer: handshake bytes, then RTMP chunks (a single call
    /// may hold both). Any split is fine, down to one byte per call.
    pub fn feed(&mut self, input: &[u8]) -> Result<(), RtmpError> {
        if self.failed {
            return Err(RtmpError::Failed);
        }
        let result = self.feed_inner(input).and_then(|()| self.check_backlog());
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// The next event, in the order the peer caused them.
    pub fn poll_event(&mut self) -> Option<RtmpEvent> {
        self.events.pop_front()
    }

    /// Moves every pending outbound byte into `out` (appended); true if there were any.
    pub fn poll_transmit(&mut self, out: &mut BytesMut) -> bool {
        if self.transmit.is_empty() {
            return false;
        }
        if out.is_empty() {
            std::mem::swap(out, &mut self.transmit);
        } else {
            out.extend_from_slice(&self.transmit);
            self.transmit.clear();
        }
        true
    }

    /// Accepts a pending [`RtmpEvent::ConnectRequested`] (answers `_result`
    /// NetConnection.Connect.Success) or [`RtmpEvent::PublishRequested`] (answers StreamBegin and
    /// `onStatus` NetStream.Publish.Start; media events follow).
    pub fn accept(&mut self, request_id: u32) -> Result<(), RtmpError> {
        self.command(request_id, |this, kind, session| {
            let results = guarded("rml_rtmp accept_request", || {
                session.accept_request(request_id)
            })?
            .map_err(|e| session_error(e, 0))?;
            if kind == RequestKind::Publish {
                this.publish = PublishState::Publishing;
            }
            Ok(results)
        })
    }

    /// Rejects a pending request: the peer gets `_error` with code
    /// `NetConnection.Connect.Rejected` (connect) or `NetStream.Publish.BadName` (publish) and
    /// `description`. The caller should then close the connection once the output is written.
    pub fn reject(&mut self, request_id: u32, description: &str) -> Result<(), RtmpError> {
        self.refuse(request_id, "NetStream.Publish.BadName", description)
    }

    /// Refuses a pending publish that is valid but cannot be taken now (a capacity limit),
    /// where [`Self::reject`] refuses one that never will be (a bad key): the peer gets
    /// `_error` with code `NetStream.Publish.Denied` and `description`, so an operator or a
    /// client can tell "try another node or later" from "wrong key". A pending connect is
    /// rejected as by [`Self::reject`]. The caller should then close the connection once the
    /// output is written.
    pub fn deny(&mut self, request_id: u32, description: &str) -> Result<(), RtmpError> {
        self.refuse(request_id, "NetStream.Publish.Denied", description)
    }

    /// Shared body of reject/deny: a publish gets `publish_code`.
    fn refuse(
        &mut self,
        request_id: u32,
        publish_code: &str,
        description: &str,
    ) -> Result<(), RtmpError> {
        self.command(request_id, |this, kind, session| {
            let code = match kind {
                RequestKind::Connect => "NetConnection.Connect.Rejected",
                RequestKind::Publish => publish_code,
            };
            let results = guarded("rml_rtmp reject_request", || {
                session.reject_request(request_id, code, description)
            })?
            .map_err(|e| session_error(e, 0))?;
            if kind == RequestKind::Publish {
                this.publish = PublishState::Idle;
            }
            Ok(results)
        })
    }

    /// Shared body of accept/reject: look the request up, run `f`, queue its output.
    fn command(
        &mut self,
        request_id: u32,
        f: impl FnOnce(
            &mut Self,
            RequestKind,
            &mut ServerSession,
        ) -> Result<Vec<ServerSessionResult>, RtmpError>,
    ) -> Result<(), RtmpError> {
        if self.failed {
            return Err(RtmpError::Failed);
        }
        let Some(kind) = self.requests.remove(&request_id) else {
            return Err(RtmpError::UnknownRequest { request_id });
        };
        // Take the session out so `f` can borrow both it and `self`.
        let mut phase = std::mem::replace(&mut self.phase, Phase::Taken);
        let result = match &mut phase {
            Phase::Session(session) => f(self, kind, session).and_then(|results| {
                self.handle_results(session, results, 0)?;
                self.check_backlog()
            }),
            // Requests only exist once the session runs.
            Phase::Handshake(_) | Phase::Taken => Err(RtmpError::UnknownRequest { request_id }),
        };
        self.phase = phase;
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn check_backlog(&self) -> Result<(), RtmpError> {
        if self.transmit.len() > self.limits.max_pending_output {
            return Err(RtmpError::OutputBacklog {
                pending: self.transmit.len(),
                max: self.limits.max_pending_output,
            });
        }
        Ok(())
    }

    fn feed_inner(&mut self, input: &[u8]) -> Result<(), RtmpError> {
        if input.is_empty() {
            return Ok(());
        }
        let leftover = match &mut self.phase {
            Phase::Session(_) => return self.feed_chunks(input),
            Phase::Taken => {
                return Err(RtmpError::Internal {
                    context: "feed while the session is taken",
                })
            }
            Phase::Handshake(handshake) => {
                if !self.c0_seen {
                    // C0 (RTMP 5.2.2): checked here to report the byte itself.
                    if input[0] != 3 {
                        return Err(RtmpError::UnsupportedVersion { version: input[0] });
                    }
                    self.c0_seen = true;
                }
                let result = guarded("rml_rtmp handshake", || handshake.process_bytes(input))?
                    .map_err(handshake_error)?;
                match result {
                    HandshakeProcessResult::InProgress { response_bytes } => {
                        self.transmit.extend_from_slice(&response_bytes);
                        return Ok(());
                    }
                    HandshakeProcessResult::Completed {
                        response_bytes,
                        remaining_bytes,
                    } => {
                        self.transmit.extend_from_slice(&response_bytes);
                        remaining_bytes
                    }
                }
            }
        };
        let (session, results) = guarded("rml_rtmp ServerSession::new", || {
            ServerSession::new(ServerSessionConfig::new())
        })?
        .map_err(|e| session_error(e, 0))?;
        let mut session = Box::new(session);
        self.handle_results(&mut session, results, 0)?;
        self.phase = Phase::Session(session);
        self.feed_chunks(&leftover)
    }

    /// Hands rml_rtmp the input one message at a time, as cut by the tracker.
    fn feed_chunks(&mut self, input: &[u8]) -> Result<(), RtmpError> {
        let mut phase = std::mem::replace(&mut self.phase, Phase::Taken);
        let result = match &mut phase {
            Phase::Session(session) => self.feed_session(session, input),
            Phase::Handshake(_) | Phase::Taken => Err(RtmpError::Internal {
                context: "feed_chunks before the handshake completed",
            }),
        };
        self.phase = phase;
        result
    }

    fn feed_session(&mut self, session: &mut ServerSession, input: &[u8]) -> Result<(), RtmpError> {
        let mut rest = input;
        while !rest.is_empty() {
            let step = self.tracker.advance(rest)?;
            if step.consumed == 0 {
                return Err(RtmpError::Internal {
                    context: "chunk tracker made no progress",
                });
            }
            let (segment, tail) = rest.split_at(step.consumed);
            rest = tail;
            let type_id = step.completed.map_or(0, |c| c.type_id);
            let results = guarded("rml_rtmp handle_input", || session.handle_input(segment))?
                .map_err(|e| session_error(e, type_id))?;
            if let Some(size) = step.completed.and_then(|c| c.new_chunk_size) {
                self.events.push_back(RtmpEvent::ChunkSizeChanged { size });
            }
            self.handle_results(session, results, type_id)?;
        }
        Ok(())
    }

    fn handle_results(
        &mut self,
        session: &mut ServerSession,
        results: Vec<ServerSessionResult>,
        type_id: u8,
    ) -> Result<(), RtmpError> {
        for result in results {
            match result {
                ServerSessionResult::OutboundResponse(packet) => {
                    self.transmit.extend_from_slice(&packet.bytes);
                }
                ServerSessionResult::RaisedEvent(event) => {
                    self.on_session_event(session, event, type_id)?;
                }
                // Aggregate messages, shared objects, AMF3 media, unknown types: nothing an
                // encoder sends when publishing; skipped, and said so.
                ServerSessionResult::UnhandleableMessageReceived(payload) => {
                    self.events.push_back(RtmpEvent::Ignored {
                        type_id: payload.type_id,
                    });
                }
            }
        }
        Ok(())
    }

    fn on_session_event(
        &mut self,
        session: &mut ServerSession,
        event: ServerSessionEvent,
        type_id: u8,
    ) -> Result<(), RtmpError> {
        match event {
            ServerSessionEvent::ConnectionRequested {
                request_id,
                app_name,
            } => {
                if self.connect_seen {
                    return Err(RtmpError::DuplicateConnect);
                }
                self.connect_seen = true;
                self.requests.insert(request_id, RequestKind::Connect);
                self.events.push_back(RtmpEvent::ConnectRequested {
                    request_id,
                    app: app_name,
                });
            }
            ServerSessionEvent::PublishStreamRequested {
                request_id,
                app_name,
                stream_key,
                // "record"/"append" are treated as "live": nothing is recorded here.
                mode: _,
            } => {
                if self.publish != PublishState::Idle {
                    // Media events carry no stream identity: one publish per connection.
                    let results = guarded("rml_rtmp reject_request", || {
                        session.reject_request(
                            request_id,
                            "NetStream.Publish.BadName",
                            "only one publish per connection",
                        )
                    })?
                    .map_err(|e| session_error(e, type_id))?;
                    return self.handle_results(session, results, type_id);
                }
                self.publish = PublishState::Requested;
                self.requests.insert(request_id, RequestKind::Publish);
                self.events.push_back(RtmpEvent::PublishRequested {
                    request_id,
                    app: app_name,
                    key: stream_key,
                });
            }
            ServerSessionEvent::PublishStreamFinished { .. } => self.finish_publish(),
            ServerSessionEvent::UnhandleableAmf0Command { command_name, .. } => {
                if command_name == "FCUnpublish" {
                    self.finish_publish();
                }
                // releaseStream, FCPublish, _checkbw, getStreamLength...: no answer needed,
                // see the module doc.
            }
            ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                if self.is_publishing() {
                    self.events.push_back(RtmpEvent::Metadata(metadata.into()));
                }
            }
            ServerSessionEvent::VideoDataReceived {
                data, timestamp, ..
            } => {
                if self.is_publishing() {
                    self.events.push_back(RtmpEvent::Video {
                        timestamp_ms: timestamp.value,
                        payload: data,
                    });
                }
            }
            ServerSessionEvent::AudioDataReceived {
                data, timestamp, ..
            } => {
                if self.is_publishing() {
                    self.events.push_back(RtmpEvent::Audio {
                        timestamp_ms: timestamp.value,
                        payload: data,
                    });
                }
            }
            ServerSessionEvent::PlayStreamRequested { request_id, .. } => {
                // An ingest endpoint: playback is served over HLS/DASH, not RTMP.
                let results = guarded("rml_rtmp reject_request", || {
                    session.reject_request(
                        request_id,
                        "NetStream.Play.Failed",
                        "playback is not served over RTMP",
                    )
                })?
                .map_err(|e| session_error(e, type_id))?;
                self.handle_results(session, results, type_id)?;
            }
            // rml_rtmp 0.8 never raises ReleaseStreamRequested or ClientChunkSizeChanged (the
            // tracker reports chunk size changes); acks and pongs need no action.
            ServerSessionEvent::ReleaseStreamRequested { .. }
            | ServerSessionEvent::ClientChunkSizeChanged { .. }
            | ServerSessionEvent::PlayStreamFinished { .. }
            | ServerSessionEvent::AcknowledgementReceived { .. }
            | ServerSessionEvent::PingResponseReceived { .. } => {}
        }
        Ok(())
    }

    fn finish_publish(&mut self) {
        if self.publish == PublishState::Publishing {
            self.publish = PublishState::Idle;
            self.events.push_back(RtmpEvent::PublishFinished);
        }
    }
}
