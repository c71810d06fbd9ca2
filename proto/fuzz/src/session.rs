//! The `rtmp_session` input format and the driver that plays a whole publisher session into a
//! [`ServerConnection`] the way `node/src/listen/rtmp.rs` and the ingest actor do.
//!
//! # Input format (stable: `fuzz-corpus` writes it, so do not reorder the ops)
//! `flags:u8` then ops until the input ends. Each op is `tag:u8` (taken modulo
//! [`OP_COUNT`]) and its fields; integers are big endian; `bytes16` is a `u16` length then
//! that many bytes (fewer if the input ends first). The handshake (C0/C1/C2) is not in the
//! input: the driver sends a valid one first.
//!
//! | tag | op | fields |
//! |----|----|--------|
//! | 0 | raw client bytes | `bytes16` |
//! | 1 | hold: toggle buffering (held bytes are fed as one read when toggled off) | - |
//! | 2 | message, chunked | `fmt:u8 csid:u8 [csid ext] type:u8 msid:u8 ts:u32 body:bytes16` |
//! | 3 | SetChunkSize | `size:u32` |
//! | 4 | `connect` | `app:bytes8` |
//! | 5 | `releaseStream`, `FCPublish`, `createStream` | - |
//! | 6 | `publish` | `key:bytes8` |
//! | 7 | `@setDataFrame onMetaData` | `extra AMF:bytes16` |
//! | 8 | video message | `ts:u32 body:bytes16` |
//! | 9 | audio message | `ts:u32 body:bytes16` |
//! | 10 | command or data message with a raw AMF body | `kind:u8 body:bytes16` |
//! | 11 | `FCUnpublish`, `deleteStream` | - |
//! | 12 | protocol control / user control message | `kind:u8 value:u32` |
//!
//! `csid`: 2..=63 as is; 0 then one byte: 64 + byte; 1 then two bytes (little endian, as on
//! the wire): 64 + value; 64..=255: 2 + csid % 62. `bytes8` has a `u8` length.
//! `flags` bit 0: reject `connect`; bit 1: reject `publish`; bit 2: feed every read in pieces
//! of 1..=16 bytes (the piece size is `flags >> 4` + 1).
//!
//! # Invariants checked (a violation panics, which libFuzzer reports as a crash)
//! - no call returns [`RtmpError::Internal`] (a panic caught inside rml_rtmp, or a broken
//!   tracker invariant), accept/reject never see an unknown id, and after the first error
//!   every `feed` returns [`RtmpError::Failed`];
//! - pending output never exceeds `max_pending_output` after a successful call, and one feed
//!   of N bytes raises at most N events (bounded queues);
//! - at most one `ConnectRequested`; media, metadata and `PublishFinished` only while a
//!   publish we accepted is running, and `is_publishing()` agrees with what we saw.

use bytes::{Bytes, BytesMut};
use hivecast_proto::codec::aac::AacConfig;
use hivecast_proto::codec::h264::{self, AvcConfig};
use hivecast_proto::flv::{self, FlvAudio, FlvVideo};
use hivecast_proto::rtmp::{RtmpError, RtmpEvent, RtmpLimits, ServerConnection};

use crate::wire::{self, msg_type, ChunkWriter, Message};

/// Number of op tags.
pub const OP_COUNT: u8 = 13;

/// Flag bit: reject `connect`.
pub const FLAG_REJECT_CONNECT: u8 = 1;
/// Flag bit: reject `publish`.
pub const FLAG_REJECT_PUBLISH: u8 = 2;
/// Flag bit: split every read into small pieces.
pub const FLAG_SMALL_FEEDS: u8 = 4;

/// Chunk stream ids ffmpeg uses (libavformat/rtmppkt.h): commands, audio, video.
const CSID_COMMAND: u32 = 3;
const CSID_AUDIO: u32 = 4;
const CSID_VIDEO: u32 = 6;
/// Message stream id `createStream` returns for the first stream (rml_rtmp counts from 1).
const MSID_PUBLISH: u32 = 1;

/// One decoded op; see the module doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op<'a> {
    /// Raw bytes.
    Raw(&'a [u8]),
    /// Toggle buffering.
    Hold,
    /// A message chunked by the writer.
    Message {
        /// Requested header format.
        fmt: u8,
        /// Chunk stream id.
        csid: u32,
        /// Message type id.
        type_id: u8,
        /// Message stream id.
        msid: u32,
        /// Timestamp field.
        timestamp: u32,
        /// Body.
        body: &'a [u8],
    },
    /// SetChunkSize.
    SetChunkSize(u32),
    /// `connect`.
    Connect(&'a [u8]),
    /// `releaseStream`, `FCPublish`, `createStream`.
    CreateStream,
    /// `publish`.
    Publish(&'a [u8]),
    /// `@setDataFrame onMetaData` plus extra AMF bytes.
    Metadata(&'a [u8]),
    /// Video message.
    Video(u32, &'a [u8]),
    /// Audio message.
    Audio(u32, &'a [u8]),
    /// AMF command/data with a raw body; `kind` picks the message type.
    Amf(u8, &'a [u8]),
    /// `FCUnpublish`, `deleteStream`.
    Unpublish,
    /// Protocol or user control message.
    Control(u8, u32),
}

/// A decoded input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script<'a> {
    /// Flag bits, see the module doc.
    pub flags: u8,
    /// The ops in order.
    pub ops: Vec<Op<'a>>,
}

/// Reads the input front to back; every read fails once the input is exhausted. (A plain
/// cursor rather than `arbitrary::Unstructured`, so that proto's tests can replay the corpora
/// through this file without extra dependencies, and so the layout is obviously stable.)
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.data.len() {
            return None;
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Some(head)
    }

    /// Up to `n` bytes: fewer when the input ends first.
    fn take_up_to(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn bytes8(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(self.u8()?);
        Some(self.take_up_to(n))
    }

    fn bytes16(&mut self) -> Option<&'a [u8]> {
        let b = self.take(2)?;
        let n = usize::from(u16::from_be_bytes([b[0], b[1]]));
        Some(self.take_up_to(n))
    }

    fn csid(&mut self) -> Option<u32> {
        Some(match self.u8()? {
            0 => 64 + u32::from(self.u8()?),
            1 => {
                let b = self.take(2)?;
                64 + u32::from(u16::from_le_bytes([b[0], b[1]]))
            }
            c @ 2..=63 => u32::from(c),
            c => 2 + u32::from(c) % 62,
        })
    }
}

impl<'a> Script<'a> {
    /// Decodes an input; a truncated last op is dropped.
    pub fn decode(data: &'a [u8]) -> Script<'a> {
        let mut r = Reader { data };
        let flags = r.u8().unwrap_or(0);
        let mut ops = Vec::new();
        while !r.is_empty() {
            match Self::op(&mut r) {
                Some(op) => ops.push(op),
                None => break,
            }
        }
        Script { flags, ops }
    }

    fn op(r: &mut Reader<'a>) -> Option<Op<'a>> {
        Some(match r.u8()? % OP_COUNT {
            0 => Op::Raw(r.bytes16()?),
            1 => Op::Hold,
            2 => Op::Message {
                fmt: r.u8()?,
                csid: r.csid()?,
                type_id: r.u8()?,
                msid: u32::from(r.u8()?),
                timestamp: r.u32()?,
                body: r.bytes16()?,
            },
            3 => Op::SetChunkSize(r.u32()?),
            4 => Op::Connect(r.bytes8()?),
            5 => Op::CreateStream,
            6 => Op::Publish(r.bytes8()?),
            7 => Op::Metadata(r.bytes16()?),
            8 => Op::Video(r.u32()?, r.bytes16()?),
            9 => Op::Audio(r.u32()?, r.bytes16()?),
            10 => Op::Amf(r.u8()?, r.bytes16()?),
            11 => Op::Unpublish,
            _ => Op::Control(r.u8()?, r.u32()?),
        })
    }

    /// Encodes the script in the input format (the inverse of [`Script::decode`] for ops
    /// whose fields fit their length prefixes; longer fields are cut).
    pub fn encode(&self) -> Vec<u8> {
        fn b16(b: &[u8], out: &mut Vec<u8>) {
            let b = &b[..b.len().min(0xffff)];
            out.extend_from_slice(&(b.len() as u16).to_be_bytes());
            out.extend_from_slice(b);
        }
        fn b8(b: &[u8], out: &mut Vec<u8>) {
            let b = &b[..b.len().min(0xff)];
            out.push(b.len() as u8);
            out.extend_from_slice(b);
        }
        let mut out = vec![self.flags];
        for op in &self.ops {
            match op {
                Op::Raw(b) => {
                    out.push(0);
                    b16(b, &mut out);
                }
                Op::Hold => out.push(1),
                Op::Message {
                    fmt,
                    csid,
                    type_id,
                    msid,
                    timestamp,
                    body,
                } => {
                    out.extend_from_slice(&[2, *fmt]);
                    match *csid {
                        c @ 2..=63 => out.push(c as u8),
                        c @ 64..=319 => out.extend_from_slice(&[0, (c - 64) as u8]),
                        c => {
                            out.push(1);
                            let v = (c.clamp(64, 65599) - 64) as u16;
                            out.extend_from_slice(&v.to_le_bytes());
                        }
                    }
                    out.extend_from_slice(&[*type_id, *msid as u8]);
                    out.extend_from_slice(&timestamp.to_be_bytes());
                    b16(body, &mut out);
                }
                Op::SetChunkSize(s) => {
                    out.push(3);
                    out.extend_from_slice(&s.to_be_bytes());
                }
                Op::Connect(app) => {
                    out.push(4);
                    b8(app, &mut out);
                }
                Op::CreateStream => out.push(5),
                Op::Publish(key) => {
                    out.push(6);
                    b8(key, &mut out);
                }
                Op::Metadata(extra) => {
                    out.push(7);
                    b16(extra, &mut out);
                }
                Op::Video(ts, body) | Op::Audio(ts, body) => {
                    out.push(if matches!(op, Op::Video(..)) { 8 } else { 9 });
                    out.extend_from_slice(&ts.to_be_bytes());
                    b16(body, &mut out);
                }
                Op::Amf(kind, body) => {
                    out.extend_from_slice(&[10, *kind]);
                    b16(body, &mut out);
                }
                Op::Unpublish => out.push(11),
                Op::Control(kind, value) => {
                    out.extend_from_slice(&[12, *kind]);
                    out.extend_from_slice(&value.to_be_bytes());
                }
            }
        }
        out
    }
}

/// The message type an [`Op::Amf`] `kind` selects.
pub fn amf_type(kind: u8) -> u8 {
    [
        msg_type::AMF0_COMMAND,
        msg_type::AMF0_DATA,
        msg_type::AMF3_COMMAND,
        msg_type::AMF3_DATA,
    ][usize::from(kind & 3)]
}

/// What a driven session produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Events polled.
    pub events: usize,
    /// Video messages of the accepted publish.
    pub video: usize,
    /// Audio messages of the accepted publish.
    pub audio: usize,
    /// Video messages that parsed into an access unit that converted to AVCC-4.
    pub frames_ok: usize,
    /// AVC sequence headers that parsed.
    pub avc_configs: usize,
    /// AAC sequence headers that parsed.
    pub aac_configs: usize,
    /// Metadata events.
    pub metadata: usize,
}

/// Plays bytes into a [`ServerConnection`], answers requests, drains everything, and runs
/// the media through the FLV and codec parsers as the ingest actor does.
pub struct Driver {
    conn: ServerConnection,
    limits: RtmpLimits,
    out: BytesMut,
    annexb: BytesMut,
    reject_connect: bool,
    reject_publish: bool,
    /// Connect requests seen.
    connects: usize,
    /// A publish we accepted is running.
    publishing: bool,
    /// NAL length size of the current avcC.
    nal_length_size: Option<u8>,
    aac: Option<AacConfig>,
    /// The first error any call returned.
    pub error: Option<RtmpError>,
    /// What happened.
    pub stats: Stats,
}

impl Driver {
    /// A fresh connection with `limits`.
    pub fn new(limits: RtmpLimits, reject_connect: bool, reject_publish: bool) -> Driver {
        Driver {
            conn: ServerConnection::new(limits),
            limits,
            out: BytesMut::new(),
            annexb: BytesMut::new(),
            reject_connect,
            reject_publish,
            connects: 0,
            publishing: false,
            nal_length_size: None,
            aac: None,
            error: None,
            stats: Stats::default(),
        }
    }

    /// The connection under test.
    pub fn connection(&self) -> &ServerConnection {
        &self.conn
    }

    /// True once a call failed (the connection is closed then).
    pub fn failed(&self) -> bool {
        self.error.is_some()
    }

    /// Feeds one read, then drains events (answering requests) and output.
    pub fn feed(&mut self, input: &[u8]) {
        if let Some(first) = &self.error {
            // Every call after an error reports the failure, and nothing else happens.
            assert_eq!(
                self.conn.feed(input),
                Err(RtmpError::Failed),
                "after {first:?}"
            );
            assert!(self.conn.poll_event().is_none(), "event after {first:?}");
            return;
        }
        let result = self.conn.feed(input);
        self.check(result);
        let mut events = 0usize;
        while let Some(event) = self.conn.poll_event() {
            events += 1;
            self.on_event(event);
        }
        assert!(
            events <= input.len(),
            "{events} events from a feed of {} bytes",
            input.len()
        );
        self.stats.events += events;
        self.drain_output();
        if self.error.is_none() {
            assert_eq!(self.conn.is_publishing(), self.publishing);
        }
    }

    fn check(&mut self, result: Result<(), RtmpError>) {
        match result {
            Ok(()) => {}
            Err(e) => {
                assert!(
                    !matches!(e, RtmpError::Internal { .. } | RtmpError::Failed),
                    "first error is {e:?}"
                );
                assert!(
                    !matches!(e, RtmpError::UnknownRequest { .. }),
                    "driver used an id it was given: {e:?}"
                );
                if self.error.is_none() {
                    self.error = Some(e);
                }
            }
        }
    }

    fn drain_output(&mut self) {
        self.out.clear();
        if self.conn.poll_transmit(&mut self.out) {
            assert!(!self.out.is_empty());
        }
        if self.error.is_none() {
            assert!(
                self.out.len() <= self.limits.max_pending_output,
                "{} bytes pending",
                self.out.len()
            );
        }
        assert!(!self.conn.poll_transmit(&mut self.out) || self.error.is_some());
    }

    fn on_event(&mut self, event: RtmpEvent) {
        match event {
            RtmpEvent::ConnectRequested { request_id, app: _ } => {
                self.connects += 1;
                assert_eq!(self.connects, 1, "second ConnectRequested");
                self.answer(request_id, self.reject_connect, false);
            }
            RtmpEvent::PublishRequested { request_id, .. } => {
                assert!(!self.publishing, "PublishRequested while publishing");
                self.answer(request_id, self.reject_publish, true);
            }
            RtmpEvent::Metadata(_) => {
                assert!(self.publishing, "metadata outside a publish");
                self.stats.metadata += 1;
            }
            RtmpEvent::Video { payload, .. } => {
                assert!(self.publishing, "video outside a publish");
                self.stats.video += 1;
                self.video(&payload);
            }
            RtmpEvent::Audio { payload, .. } => {
                assert!(self.publishing, "audio outside a publish");
                self.stats.audio += 1;
                self.audio(&payload);
            }
            RtmpEvent::PublishFinished => {
                assert!(self.publishing, "PublishFinished outside a publish");
                self.publishing = false;
            }
            RtmpEvent::ChunkSizeChanged { size } => {
                // Not compared with peer_chunk_size(): a later SetChunkSize of the same
                // feed may have changed it again.
                assert!(size >= 1 && size <= self.limits.max_chunk_size);
            }
            RtmpEvent::Ignored { type_id } => {
                // Only types the session has no use for are skipped: never media or commands.
                assert!(
                    ![8, 9, 18, 20].contains(&type_id),
                    "a type {type_id} message was reported as ignored"
                );
            }
        }
    }

    fn answer(&mut self, request_id: u32, reject: bool, publish: bool) {
        if self.error.is_some() {
            // The connection already failed: the node closes it without answering.
            return;
        }
        let result = if reject {
            self.conn.reject(request_id, "rejected by the fuzz driver")
        } else {
            self.conn.accept(request_id)
        };
        let ok = result.is_ok();
        self.check(result);
        if ok && publish && !reject {
            self.publishing = true;
        }
    }

    /// What `actors/src/stream/ingest.rs` does with a video message.
    fn video(&mut self, payload: &Bytes) {
        match flv::parse_video(payload) {
            Ok(FlvVideo::SequenceHeader(record)) => {
                if let Ok(cfg) = AvcConfig::parse(record) {
                    self.stats.avc_configs += 1;
                    self.nal_length_size = Some(cfg.nal_length_size);
                }
            }
            Ok(FlvVideo::Frame { data, .. }) => {
                let Some(nls) = self.nal_length_size else {
                    return;
                };
                if let Ok(au) = h264::to_avcc4(&data, nls) {
                    self.stats.frames_ok += 1;
                    self.annexb.clear();
                    h264::avcc_to_annexb(&au, &mut self.annexb)
                        .expect("to_avcc4 output converts to Annex B");
                    assert_eq!(self.annexb.len(), au.len());
                }
            }
            Ok(FlvVideo::EndOfSequence) | Err(_) => {}
        }
    }

    fn audio(&mut self, payload: &Bytes) {
        match flv::parse_audio(payload) {
            Ok(FlvAudio::SequenceHeader(asc)) => {
                if let Ok(cfg) = AacConfig::parse(asc) {
                    self.stats.aac_configs += 1;
                    self.aac = Some(cfg);
                }
            }
            Ok(FlvAudio::Frame(frame)) => {
                if let Some(cfg) = &self.aac {
                    self.out.clear();
                    let _ = cfg.write_adts_header(frame.len(), &mut self.out);
                }
            }
            Err(_) => {}
        }
    }
}

/// Turns a script into client reads (each `Vec` is one `feed`), handshake first.
pub fn reads(script: &Script<'_>) -> Vec<Vec<u8>> {
    let mut reads = vec![wire::client_handshake()];
    let mut w = ChunkWriter::default();
    let mut held: Option<Vec<u8>> = None;
    for op in &script.ops {
        let mut buf = Vec::new();
        match *op {
            Op::Raw(b) => buf.extend_from_slice(b),
            Op::Hold => {
                if let Some(h) = held.take() {
                    reads.push(h);
                } else {
                    held = Some(Vec::new());
                }
                continue;
            }
            Op::Message {
                fmt,
                csid,
                type_id,
                msid,
                timestamp,
                body,
            } => w.write(
                &Message {
                    fmt,
                    csid,
                    type_id,
                    msid,
                    timestamp,
                    body,
                },
                &mut buf,
            ),
            Op::SetChunkSize(size) => w.set_chunk_size(size, &mut buf),
            Op::Connect(app) => command(&mut w, 0, &wire::connect_command(app), &mut buf),
            Op::CreateStream => {
                let mut name = Vec::new();
                wire::amf::string(b"stream", &mut name);
                command(
                    &mut w,
                    0,
                    &wire::command("releaseStream", 2.0, &name),
                    &mut buf,
                );
                command(&mut w, 0, &wire::command("FCPublish", 3.0, &name), &mut buf);
                command(
                    &mut w,
                    0,
                    &wire::command("createStream", 4.0, &[]),
                    &mut buf,
                );
            }
            Op::Publish(key) => {
                command(&mut w, MSID_PUBLISH, &wire::publish_command(key), &mut buf)
            }
            Op::Metadata(extra) => media(
                &mut w,
                CSID_COMMAND + 1,
                msg_type::AMF0_DATA,
                0,
                &wire::metadata(extra),
                &mut buf,
            ),
            Op::Video(ts, body) => media(&mut w, CSID_VIDEO, msg_type::VIDEO, ts, body, &mut buf),
            Op::Audio(ts, body) => media(&mut w, CSID_AUDIO, msg_type::AUDIO, ts, body, &mut buf),
            Op::Amf(kind, body) => {
                let type_id = amf_type(kind);
                let msid = u32::from(kind >> 2 & 1) * MSID_PUBLISH;
                w.write(
                    &Message {
                        fmt: 0,
                        csid: CSID_COMMAND,
                        type_id,
                        msid,
                        timestamp: 0,
                        body,
                    },
                    &mut buf,
                );
            }
            Op::Unpublish => {
                let mut name = Vec::new();
                wire::amf::string(b"stream", &mut name);
                command(
                    &mut w,
                    0,
                    &wire::command("FCUnpublish", 6.0, &name),
                    &mut buf,
                );
                let mut id = Vec::new();
                wire::amf::number(f64::from(MSID_PUBLISH), &mut id);
                command(
                    &mut w,
                    0,
                    &wire::command("deleteStream", 7.0, &id),
                    &mut buf,
                );
            }
            Op::Control(kind, value) => {
                let (type_id, body) = control(kind, value);
                w.write(
                    &Message {
                        fmt: 0,
                        csid: 2,
                        type_id,
                        msid: 0,
                        timestamp: 0,
                        body: &body,
                    },
                    &mut buf,
                );
            }
        }
        match held.as_mut() {
            Some(h) => h.extend_from_slice(&buf),
            None => reads.push(buf),
        }
    }
    if let Some(h) = held {
        reads.push(h);
    }
    reads
}

fn command(w: &mut ChunkWriter, msid: u32, body: &[u8], out: &mut Vec<u8>) {
    w.write(
        &Message {
            fmt: 0,
            csid: CSID_COMMAND,
            type_id: msg_type::AMF0_COMMAND,
            msid,
            timestamp: 0,
            body,
        },
        out,
    );
}

/// A media or data message on the publish stream; after the first, headers are type 1 with
/// a timestamp delta, as ffmpeg writes them.
fn media(w: &mut ChunkWriter, csid: u32, type_id: u8, ts: u32, body: &[u8], out: &mut Vec<u8>) {
    w.write(
        &Message {
            fmt: 1,
            csid,
            type_id,
            msid: MSID_PUBLISH,
            timestamp: ts,
            body,
        },
        out,
    );
}

/// Protocol control (RTMP 5.4) and user control (7.1.7) messages a publisher may send.
fn control(kind: u8, value: u32) -> (u8, Vec<u8>) {
    let v = value.to_be_bytes();
    match kind % 6 {
        0 => (msg_type::ACK, v.to_vec()),
        1 => (msg_type::WINDOW_ACK_SIZE, v.to_vec()),
        2 => (msg_type::ABORT, v.to_vec()),
        3 => (msg_type::SET_PEER_BANDWIDTH, [&v[..], &[2]].concat()),
        // PingRequest / PingResponse / SetBufferLength (event type, then values).
        4 => (msg_type::USER_CONTROL, [&[0, 6][..], &v[..]].concat()),
        _ => (
            msg_type::USER_CONTROL,
            [&[0, kind % 8][..], &v[..], &v[..]].concat(),
        ),
    }
}

/// Runs a script: handshake, then every read (in small pieces with [`FLAG_SMALL_FEEDS`]).
pub fn run(script: &Script<'_>, limits: RtmpLimits) -> Driver {
    let mut d = Driver::new(
        limits,
        script.flags & FLAG_REJECT_CONNECT != 0,
        script.flags & FLAG_REJECT_PUBLISH != 0,
    );
    let piece = if script.flags & FLAG_SMALL_FEEDS != 0 {
        usize::from(script.flags >> 4) + 1
    } else {
        usize::MAX
    };
    for (i, read) in reads(script).iter().enumerate() {
        for p in read.chunks(piece.min(read.len().max(1))) {
            d.feed(p);
            if d.failed() {
                // One more feed checks the "final error" contract, then stop: the node
                // closes the connection.
                d.feed(b"x");
                return d;
            }
        }
        if i == 0 {
            assert!(
                d.connection().is_handshake_done(),
                "valid handshake refused"
            );
        }
    }
    d
}
