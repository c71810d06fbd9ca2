//! Protocol tests in the style of quinn's `Pair`: rml_rtmp's `ClientSession` (plus a client
//! `Handshake`) publishes to a [`ServerConnection`] in memory, no sockets, no sleeps. The
//! media is the ffmpeg capture in `tests/data/`.

use super::*;
use crate::codec::aac::AacConfig;
use crate::codec::h264::AvcConfig;
use crate::flv::file::{FlvFileReader, TAG_AUDIO, TAG_VIDEO};
use crate::flv::{self, FlvAudio, FlvVideo};
use proptest::prelude::*;
use rml_rtmp::rml_amf0::{self, Amf0Value};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;

const CAPTURE: &[u8] = include_bytes!("../../tests/data/flv_testsrc_320x180.flv");
const KEY: &str = "s3cret-stream-key";

/// Handshake: C0 + C1 + C2 = 1 + 1536 + 1536 bytes (RTMP 5.2).
const HANDSHAKE_LEN: usize = 3073;

/// Media tags of the capture (type, timestamp, body).
fn capture_tags(limit: usize) -> Vec<(u8, u32, Bytes)> {
    FlvFileReader::new(Bytes::from_static(CAPTURE))
        .expect("capture")
        .map(|t| t.expect("tag"))
        .filter(|t| t.tag_type == TAG_VIDEO || t.tag_type == TAG_AUDIO)
        .take(limit)
        .map(|t| (t.tag_type, t.timestamp_ms, t.data))
        .collect()
}

/// One RTMP message as chunks with a type 0 header on `csid`, continuation chunks type 3.
fn raw_message(csid: u8, type_id: u8, msid: u32, payload: &[u8], chunk_size: usize) -> Vec<u8> {
    assert!((2..64).contains(&csid));
    let mut out = vec![csid];
    out.extend_from_slice(&[0, 0, 0]); // timestamp
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(type_id);
    out.extend_from_slice(&msid.to_le_bytes());
    for (i, piece) in payload.chunks(chunk_size).enumerate() {
        if i > 0 {
            out.push(0xc0 | csid);
        }
        out.extend_from_slice(piece);
    }
    out
}

fn amf_command(name: &str, txid: f64, args: Vec<Amf0Value>) -> Vec<u8> {
    let mut values = vec![
        Amf0Value::Utf8String(name.to_string()),
        Amf0Value::Number(txid),
        Amf0Value::Null,
    ];
    values.extend(args);
    rml_amf0::serialize(&values).expect("amf")
}

/// A publisher (rml_rtmp client) wired to a server connection in memory.
struct Pair {
    server: ServerConnection,
    client: ClientSession,
    /// Every byte the client sent, in order: replayable into a fresh server.
    wire: Vec<u8>,
    /// Client->server bytes are fed in pieces of this size.
    feed_size: usize,
    /// Offsets in `wire` right after which the server raised a request event: a replay must
    /// cut its feeds there and answer before feeding on (real clients wait for the answer).
    request_offsets: Vec<usize>,
    events: Vec<RtmpEvent>,
    client_events: Vec<ClientSessionEvent>,
    /// The client's current outbound chunk size (for raw injected messages).
    client_chunk_size: usize,
}

impl Pair {
    fn new(limits: RtmpLimits, config: ClientSessionConfig, feed_size: usize) -> Pair {
        let (client, initial) = ClientSession::new(config).expect("client");
        assert!(initial.is_empty());
        let mut pair = Pair {
            server: ServerConnection::new(limits),
            client,
            wire: Vec::new(),
            request_offsets: Vec::new(),
            feed_size,
            events: Vec::new(),
            client_events: Vec::new(),
            client_chunk_size: 128,
        };
        let mut hs = Handshake::new(PeerType::Client);
        let c0c1 = hs.generate_outbound_p0_and_p1().expect("c0c1");
        pair.deliver(&c0c1).expect("c0c1 accepted");
        assert!(!pair.server.is_handshake_done());
        let mut s012 = BytesMut::new();
        assert!(pair.server.poll_transmit(&mut s012));
        assert_eq!(s012.len(), HANDSHAKE_LEN, "S0+S1+S2");
        let c2 = match hs.process_bytes(&s012).expect("client handshake") {
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                assert!(remaining_bytes.is_empty());
                response_bytes
            }
            HandshakeProcessResult::InProgress { .. } => panic!("client handshake incomplete"),
        };
        pair.deliver(&c2).expect("c2 accepted");
        assert!(pair.server.is_handshake_done());
        pair.pump().expect("session start");
        pair
    }

    fn deliver(&mut self, bytes: &[u8]) -> Result<(), RtmpError> {
        let mut offset = self.wire.len();
        self.wire.extend_from_slice(bytes);
        for piece in bytes.chunks(self.feed_size) {
            self.server.feed(piece)?;
            offset += piece.len();
            while let Some(ev) = self.server.poll_event() {
                if is_request(&ev) {
                    self.request_offsets.push(offset);
                }
                self.events.push(ev);
            }
        }
        Ok(())
    }

    /// Delivers server output to the client and client answers to the server until quiet.
    fn pump(&mut self) -> Result<(), RtmpError> {
        loop {
            let mut out = BytesMut::new();
            if !self.server.poll_transmit(&mut out) {
                return Ok(());
            }
            let results = self.client.handle_input(&out).expect("client input");
            self.client_results(results)?;
        }
    }

    fn client_results(&mut self, results: Vec<ClientSessionResult>) -> Result<(), RtmpError> {
        for r in results {
            match r {
                ClientSessionResult::OutboundResponse(p) => self.deliver(&p.bytes)?,
                ClientSessionResult::RaisedEvent(e) => {
                    if e == ClientSessionEvent::ConnectionRequestAccepted {
                        // The client announces SetChunkSize right after (rml_rtmp client).
                        self.client_chunk_size = 4096;
                    }
                    self.client_events.push(e);
                }
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(())
    }

    fn send(
        &mut self,
        call: impl FnOnce(
            &mut ClientSession,
        )
            -> Result<ClientSessionResult, rml_rtmp::sessions::ClientSessionError>,
    ) {
        let r = call(&mut self.client);
        self.client_results(vec![r.expect("client call")])
            .expect("server accepts");
        self.pump().expect("pump");
    }

    /// Injects a command the rml_rtmp client does not send (releaseStream, FCPublish...)
    /// on chunk stream 8, which the client does not use.
    fn inject_command(&mut self, name: &str, txid: f64, msid: u32, args: Vec<Amf0Value>) {
        let body = amf_command(name, txid, args);
        let raw = raw_message(8, 20, msid, &body, self.client_chunk_size);
        self.deliver(&raw).expect("server accepts injected command");
        self.pump().expect("pump");
    }

    fn take_events(&mut self) -> Vec<RtmpEvent> {
        std::mem::take(&mut self.events)
    }

    fn request_id(&self, i: usize) -> u32 {
        match &self.events[i] {
            RtmpEvent::ConnectRequested { request_id, .. }
            | RtmpEvent::PublishRequested { request_id, .. } => *request_id,
            other => panic!("not a request: {other:?}"),
        }
    }

    /// connect + accept, as ffmpeg would (releaseStream/FCPublish injected), up to the
    /// PublishRequested event (not answered yet).
    fn connect_and_request_publish(&mut self) {
        self.send(|c| c.request_connection("live".to_string()));
        assert_eq!(
            self.events,
            vec![RtmpEvent::ConnectRequested {
                request_id: 0,
                app: "live".to_string()
            }]
        );
        let id = self.request_id(0);
        self.server.accept(id).expect("accept connect");
        self.pump().expect("pump");
        assert!(self
            .client_events
            .contains(&ClientSessionEvent::ConnectionRequestAccepted));
        assert_eq!(
            self.take_events()[1..],
            [RtmpEvent::ChunkSizeChanged { size: 4096 }]
        );
        // ffmpeg/OBS/rtmp2sink send these before createStream; no answer is expected.
        let key = Amf0Value::Utf8String(KEY.to_string());
        self.inject_command("releaseStream", 2.0, 0, vec![key.clone()]);
        self.inject_command("FCPublish", 3.0, 0, vec![key]);
        assert!(self.events.is_empty(), "{:?}", self.events);
        self.send(|c| c.request_publishing(KEY.to_string(), PublishRequestType::Live));
        assert_eq!(
            self.events,
            vec![RtmpEvent::PublishRequested {
                request_id: 1,
                app: "live".to_string(),
                key: KEY.to_string()
            }]
        );
    }
}

fn metadata() -> rml_rtmp::sessions::StreamMetadata {
    let mut m = rml_rtmp::sessions::StreamMetadata::new();
    m.video_width = Some(320);
    m.video_height = Some(180);
    m.video_frame_rate = Some(30.0);
    m.video_codec_id = Some(7);
    m.audio_codec_id = Some(10);
    m.video_bitrate_kbps = Some(300);
    m.audio_bitrate_kbps = Some(64);
    m.encoder = Some("Lavf59.27.100".to_string());
    m
}

/// Runs a full ffmpeg-like publish and returns the pair (events drained into a list).
fn publish_session(
    feed_size: usize,
    tags: &[(u8, u32, Bytes)],
    fc_unpublish: bool,
) -> (Pair, Vec<RtmpEvent>) {
    let mut pair = Pair::new(RtmpLimits::default(), ClientSessionConfig::new(), feed_size);
    pair.connect_and_request_publish();
    let id = pair.request_id(0);
    let mut events = pair.take_events();
    pair.server.accept(id).expect("accept publish");
    pair.pump().expect("pump");
    assert!(pair
        .client_events
        .contains(&ClientSessionEvent::PublishRequestAccepted));
    assert!(pair.server.is_publishing());
    pair.send(|c| c.publish_metadata(&metadata()));
    for (tag_type, ts, body) in tags {
        let ts = RtmpTimestamp::new(*ts);
        if *tag_type == TAG_VIDEO {
            pair.send(|c| c.publish_video_data(body.clone(), ts, false));
        } else {
            pair.send(|c| c.publish_audio_data(body.clone(), ts, false));
        }
    }
    if fc_unpublish {
        pair.inject_command(
            "FCUnpublish",
            6.0,
            0,
            vec![Amf0Value::Utf8String(KEY.into())],
        );
    }
    let r = pair.client.stop_publishing().expect("stop");
    pair.client_results(r).expect("deleteStream accepted");
    pair.pump().expect("pump");
    assert!(!pair.server.is_publishing());
    events.extend(pair.take_events());
    (pair, events)
}

fn expected_events(tags: &[(u8, u32, Bytes)]) -> Vec<RtmpEvent> {
    let mut expected = vec![
        RtmpEvent::PublishRequested {
            request_id: 1,
            app: "live".to_string(),
            key: KEY.to_string(),
        },
        RtmpEvent::Metadata(StreamMetadata {
            width: Some(320),
            height: Some(180),
            framerate: Some(30.0),
            video_data_rate_kbps: Some(300),
            audio_data_rate_kbps: Some(64),
            video_codec_id: Some(7),
            audio_codec_id: Some(10),
            audio_sample_rate: None,
            audio_channels: None,
            encoder: Some("Lavf59.27.100".to_string()),
        }),
    ];
    for (tag_type, ts, body) in tags {
        expected.push(if *tag_type == TAG_VIDEO {
            RtmpEvent::Video {
                timestamp_ms: *ts,
                payload: body.clone(),
            }
        } else {
            RtmpEvent::Audio {
                timestamp_ms: *ts,
                payload: body.clone(),
            }
        });
    }
    expected.push(RtmpEvent::PublishFinished);
    expected
}

#[test]
fn publish_session_events_in_order() {
    let tags = capture_tags(usize::MAX);
    assert!(tags.len() > 60, "capture has {} media tags", tags.len());
    let (_pair, events) = publish_session(64 * 1024, &tags, true);
    assert_eq!(events, expected_events(&tags));

    // The media that came out is what ingest needs: avcC, ASC, keyframes.
    let mut avc = None;
    let mut aac = None;
    for ev in &events {
        match ev {
            RtmpEvent::Video { payload, .. } => {
                if let FlvVideo::SequenceHeader(rec) = flv::parse_video(payload).expect("video") {
                    avc = Some(AvcConfig::parse(rec).expect("avcC"));
                }
            }
            RtmpEvent::Audio { payload, .. } => {
                if let FlvAudio::SequenceHeader(asc) = flv::parse_audio(payload).expect("audio") {
                    aac = Some(AacConfig::parse(asc).expect("asc"));
                }
            }
            _ => {}
        }
    }
    let avc = avc.expect("avc sequence header");
    assert_eq!((avc.width, avc.height), (320, 180));
    assert!(avc.codec_string().starts_with("avc1.640"));
    assert_eq!(
        aac.expect("aac sequence header").codec_string(),
        "mp4a.40.2"
    );
}

#[test]
fn delete_stream_alone_finishes_publish_once() {
    let tags = capture_tags(6);
    let (_pair, events) = publish_session(4096, &tags, false);
    assert_eq!(events, expected_events(&tags));
}

#[test]
fn one_byte_and_odd_splits_give_the_same_events() {
    let tags = capture_tags(20);
    let (_, bulk) = publish_session(1 << 20, &tags, true);
    for size in [1, 7, 129] {
        let (_, split) = publish_session(size, &tags, true);
        assert_eq!(split, bulk, "feed size {size}");
    }
}

#[test]
fn key_is_redacted_in_debug() {
    let ev = RtmpEvent::PublishRequested {
        request_id: 1,
        app: "live".into(),
        key: KEY.into(),
    };
    let dbg = format!("{ev:?}");
    assert!(!dbg.contains(KEY), "{dbg}");
    assert!(dbg.contains("<redacted>"));
    let v = RtmpEvent::Video {
        timestamp_ms: 5,
        payload: Bytes::from_static(b"\x17\x01secret-bytes"),
    };
    assert_eq!(format!("{v:?}"), "Video { timestamp_ms: 5, len: 14 }");
}

#[test]
fn reject_publish_sends_error_status() {
    let mut pair = Pair::new(RtmpLimits::default(), ClientSessionConfig::new(), 4096);
    pair.connect_and_request_publish();
    let id = pair.request_id(0);
    pair.take_events();
    pair.server
        .reject(id, "unknown stream key")
        .expect("reject");
    pair.pump().expect("pump");
    let seen = format!("{:?}", pair.client_events);
    assert!(seen.contains("NetStream.Publish.BadName"), "{seen}");
    assert!(seen.contains("unknown stream key"), "{seen}");
    assert!(!pair.server.is_publishing());
    // The request is gone: a second answer is a caller error, not fatal.
    assert_eq!(
        pair.server.accept(id),
        Err(RtmpError::UnknownRequest { request_id: id })
    );
    // Media sent anyway (a broken client) does not surface.
    let raw = raw_message(7, 9, 1, &[0x17, 1, 0, 0, 0], pair.client_chunk_size);
    pair.deliver(&raw).expect("ignored, not an error");
    assert!(pair.events.is_empty(), "{:?}", pair.events);
}

#[test]
fn deny_publish_sends_denied_status() {
    let mut pair = Pair::new(RtmpLimits::default(), ClientSessionConfig::new(), 4096);
    pair.connect_and_request_publish();
    let id = pair.request_id(0);
    pair.take_events();
    pair.server
        .deny(id, "node stream limit (1) reached")
        .expect("deny");
    pair.pump().expect("pump");
    let seen = format!("{:?}", pair.client_events);
    assert!(seen.contains("NetStream.Publish.Denied"), "{seen}");
    assert!(seen.contains("node stream limit (1) reached"), "{seen}");
    assert!(!seen.contains("NetStream.Publish.BadName"), "{seen}");
    assert!(!pair.server.is_publishing());
    assert_eq!(
        pair.server.deny(id, "again"),
        Err(RtmpError::UnknownRequest { request_id: id })
    );
}

#[test]
fn reject_connect() {
    let mut pair = Pair::new(RtmpLimits::default(), ClientSessionConfig::new(), 4096);
    pair.send(|c| c.request_connection("nope".to_string()));
    let id = pair.request_id(0);
    pair.server.reject(id, "no such app").expect("reject");
    pair.pump().expect("pump");
    assert!(
        pair.client_events
            .contains(&ClientSessionEvent::ConnectionRequestRejected {
                description: "no such app".to_string()
            }),
        "{:?}",
        pair.client_events
    );
}

#[test]
fn second_publish_on_a_connection_is_refused() {
    let tags = capture_tags(0);
    let (mut pair, _) = publish_session(4096, &tags, false);
    // Publish again on the same connection: allowed after the first one finished.
    pair.send(|c| c.request_publishing(KEY.to_string(), PublishRequestType::Live));
    let id = pair.request_id(0);
    pair.take_events();
    // A concurrent publish on another stream (raw, as the rml client allows only one).
    pair.inject_command("createStream", 9.0, 0, vec![]);
    let publish = amf_command(
        "publish",
        0.0,
        vec![
            Amf0Value::Utf8String("other".into()),
            Amf0Value::Utf8String("live".into()),
        ],
    );
    let raw = raw_message(8, 20, 3, &publish, pair.client_chunk_size);
    pair.deliver(&raw).expect("refused, not fatal");
    pair.pump().expect("pump");
    assert!(pair.events.is_empty(), "{:?}", pair.events);
    assert!(format!("{:?}", pair.client_events).contains("only one publish per connection"));
    pair.server.accept(id).expect("first publish still pending");
}

#[test]
fn chunk_size_above_limit_is_an_error() {
    let mut config = ClientSessionConfig::new();
    config.chunk_size = 2 * 1024 * 1024;
    let mut pair = Pair::new(RtmpLimits::default(), config, 4096);
    pair.send(|c| c.request_connection("live".to_string()));
    let id = pair.request_id(0);
    pair.server.accept(id).expect("accept");
    assert_eq!(
        pair.pump(),
        Err(RtmpError::ChunkSizeTooLarge {
            size: 2 * 1024 * 1024,
            max: 1024 * 1024
        })
    );
    assert_eq!(pair.server.feed(&[0]), Err(RtmpError::Failed));

    // At the limit it is fine.
    let mut config = ClientSessionConfig::new();
    config.chunk_size = 1024 * 1024;
    let mut pair = Pair::new(RtmpLimits::default(), config, 4096);
    pair.send(|c| c.request_connection("live".to_string()));
    let id = pair.request_id(0);
    pair.server.accept(id).expect("accept");
    pair.pump().expect("1 MiB chunks accepted");
    assert_eq!(pair.server.peer_chunk_size(), 1024 * 1024);
}

/// A server right after the handshake, for raw chunk tests.
fn handshaken(limits: RtmpLimits) -> ServerConnection {
    let pair = Pair::new(limits, ClientSessionConfig::new(), 1 << 20);
    pair.server
}

fn feed_raw(server: &mut ServerConnection, bytes: &[u8]) -> Result<(), RtmpError> {
    let r = server.feed(bytes);
    while server.poll_event().is_some() {}
    server.poll_transmit(&mut BytesMut::new());
    r
}

#[test]
fn huge_message_length_is_refused_at_the_header() {
    let mut s = handshaken(RtmpLimits::default());
    // Type 0 header announcing 16 MiB - 1 of video on csid 6, no body yet.
    let header = [6, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0];
    assert_eq!(
        feed_raw(&mut s, &header),
        Err(RtmpError::MessageTooLong {
            len: 0xff_ffff,
            max: RtmpLimits::default().max_message_len
        })
    );
}

#[test]
fn interleaved_chunk_streams_are_refused() {
    // rml_rtmp would append csid 6's chunk to csid 4's message (one shared buffer).
    let mut s = handshaken(RtmpLimits::default());
    let first = raw_message(4, 9, 1, &[0u8; 1000], 128);
    feed_raw(&mut s, &first[..12 + 128]).expect("first chunk");
    let other = raw_message(6, 8, 1, &[0xaf, 1, 2], 128);
    assert_eq!(
        feed_raw(&mut s, &other),
        Err(RtmpError::InterleavedChunkStreams {
            csid: 6,
            pending_csid: 4
        })
    );
    // A continuation that changes the length is refused too.
    let mut s = handshaken(RtmpLimits::default());
    feed_raw(&mut s, &first[..12 + 128]).expect("first chunk");
    let mut bad = raw_message(4, 9, 1, &[0u8; 10], 128);
    bad[0] = 4; // type 0 on the same csid, new length
    assert_eq!(
        feed_raw(&mut s, &bad),
        Err(RtmpError::ContinuationMismatch {
            csid: 4,
            len: 10,
            type_id: 9
        })
    );
}

#[test]
fn chunk_stream_count_is_limited() {
    let limits = RtmpLimits {
        max_chunk_streams: 8,
        ..RtmpLimits::default()
    };
    let mut s = handshaken(limits);
    // The handshake-time session uses no chunk stream of the peer yet.
    for csid in 3..11u8 {
        feed_raw(&mut s, &raw_message(csid, 9, 0, &[0x17, 2, 0, 0, 0], 128)).expect("within limit");
    }
    assert_eq!(
        feed_raw(&mut s, &raw_message(11, 9, 0, &[0x17, 2, 0, 0, 0], 128)),
        Err(RtmpError::TooManyChunkStreams { csid: 11, max: 8 })
    );
}

#[test]
fn malformed_amf_that_panics_rml_rtmp_is_refused() {
    // Fewer than 3 values: rml_rtmp's `drain(..3)` would panic.
    let mut s = handshaken(RtmpLimits::default());
    let two = rml_amf0::serialize(&vec![
        Amf0Value::Utf8String("connect".into()),
        Amf0Value::Number(1.0),
    ])
    .unwrap();
    assert_eq!(
        feed_raw(&mut s, &raw_message(3, 20, 0, &two, 128)),
        Err(RtmpError::MalformedCommand { values: 2 })
    );
    // A zero-length command is vetted as soon as its header is complete.
    let mut s = handshaken(RtmpLimits::default());
    assert_eq!(
        feed_raw(&mut s, &raw_message(3, 20, 0, &[], 128)),
        Err(RtmpError::MalformedCommand { values: 0 })
    );
    // @setDataFrame alone: rml_rtmp indexes `data[0]`.
    let mut s = handshaken(RtmpLimits::default());
    let sdf = rml_amf0::serialize(&vec![Amf0Value::Utf8String("@setDataFrame".into())]).unwrap();
    assert_eq!(
        feed_raw(&mut s, &raw_message(4, 18, 1, &sdf, 128)),
        Err(RtmpError::MalformedDataMessage { values: 1 })
    );
    // Deep nesting: rml_amf0 would recurse ~16000 levels (a stack overflow is an abort).
    let mut s = handshaken(RtmpLimits::default());
    let mut deep = amf_command("connect", 1.0, vec![]);
    deep.pop(); // drop the Null command object, put a nested object there
    deep.push(3);
    for _ in 0..15_000 {
        deep.extend_from_slice(&[0, 1, b'a', 3]);
    }
    assert_eq!(
        feed_raw(&mut s, &raw_message(3, 20, 0, &deep, 128)),
        Err(RtmpError::AmfTooDeep {
            type_id: 20,
            max: 16
        })
    );
    let mut s = handshaken(RtmpLimits::default());
    assert_eq!(
        feed_raw(&mut s, &raw_message(3, 20, 0, &vec![5u8; 70_000], 128)),
        Err(RtmpError::AmfMessageTooLong {
            type_id: 20,
            len: 70_000,
            max: 64 * 1024
        })
    );
}

#[test]
fn header_errors() {
    let mut s = handshaken(RtmpLimits::default());
    assert_eq!(
        feed_raw(&mut s, &[0xc5]),
        Err(RtmpError::NoPreviousChunk { csid: 5 })
    );
    // Type 1 header with the extended marker and an extended delta below 0xFFFFFF.
    let mut s = handshaken(RtmpLimits::default());
    feed_raw(&mut s, &raw_message(5, 9, 0, &[0x17, 2, 0, 0, 0], 128)).unwrap();
    let mut t1 = vec![0x45, 0xff, 0xff, 0xff, 0, 0, 5, 9];
    t1.extend_from_slice(&5u32.to_be_bytes());
    assert_eq!(
        feed_raw(&mut s, &t1),
        Err(RtmpError::InvalidExtendedTimestamp { csid: 5, value: 5 })
    );
    // SetChunkSize 0 and an absurd window.
    let mut s = handshaken(RtmpLimits::default());
    assert_eq!(
        feed_raw(&mut s, &raw_message(2, 1, 0, &0u32.to_be_bytes(), 128)),
        Err(RtmpError::InvalidChunkSize { size: 0 })
    );
    let mut s = handshaken(RtmpLimits::default());
    assert_eq!(
        feed_raw(&mut s, &raw_message(2, 5, 0, &u32::MAX.to_be_bytes(), 128)),
        Err(RtmpError::WindowAckSizeTooLarge {
            size: u32::MAX,
            max: chunk::MAX_WINDOW_ACK_SIZE
        })
    );
    // rml_rtmp's own decoding errors come back with the message type.
    let mut s = handshaken(RtmpLimits::default());
    assert!(matches!(
        feed_raw(&mut s, &raw_message(2, 6, 0, &[0, 0, 1, 0, 7], 128)),
        Err(RtmpError::MalformedMessage { type_id: 6, .. })
    ));
}

#[test]
fn handshake_version_and_failed_state() {
    let mut s = ServerConnection::new(RtmpLimits::default());
    assert_eq!(
        s.feed(b"GET / HTTP/1.1\r\n"),
        Err(RtmpError::UnsupportedVersion { version: b'G' })
    );
    assert_eq!(s.feed(&[3]), Err(RtmpError::Failed));
    let mut s = ServerConnection::new(RtmpLimits::default());
    assert_eq!(
        s.feed(&[6]),
        Err(RtmpError::UnsupportedVersion { version: 6 })
    );
}

#[test]
fn handshake_one_byte_at_a_time() {
    // Covers both handshakes: rml_rtmp's client sends a digest C1; the plain one echoes.
    let pair = Pair::new(RtmpLimits::default(), ClientSessionConfig::new(), 1);
    assert!(pair.server.is_handshake_done());
    let mut s = ServerConnection::new(RtmpLimits::default());
    let mut c1 = vec![3u8];
    c1.extend(std::iter::repeat_n(0u8, 1536)); // plain handshake: time 0, zero version
    for b in &c1 {
        s.feed(&[*b]).expect("c0c1 byte");
    }
    let mut out = BytesMut::new();
    assert!(s.poll_transmit(&mut out));
    assert_eq!(out.len(), HANDSHAKE_LEN);
    assert_eq!(
        &out[1 + 1536..],
        &c1[1..],
        "S2 echoes C1 in the plain handshake"
    );
    let s1 = out[1..1 + 1536].to_vec();
    for b in &s1 {
        s.feed(&[*b]).expect("c2 byte");
    }
    assert!(s.is_handshake_done());
}

#[test]
fn output_backlog_is_bounded() {
    let limits = RtmpLimits {
        max_pending_output: 4096,
        ..RtmpLimits::default()
    };
    let mut s = handshaken(limits);
    let mut pings = Vec::new();
    for i in 0..2000u32 {
        let mut body = vec![0, 6];
        body.extend_from_slice(&i.to_be_bytes());
        pings.extend(raw_message(2, 4, 0, &body, 128));
    }
    let err = s.feed(&pings).unwrap_err();
    assert!(
        matches!(err, RtmpError::OutputBacklog { pending, max: 4096 } if pending > 4096),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Replays and property tests.

fn is_request(ev: &RtmpEvent) -> bool {
    matches!(
        ev,
        RtmpEvent::ConnectRequested { .. } | RtmpEvent::PublishRequested { .. }
    )
}

/// A recorded publish session: client bytes, request offsets, and the events of a replay.
struct Recording {
    wire: Vec<u8>,
    request_offsets: Vec<usize>,
    events: Vec<RtmpEvent>,
}

fn record() -> Recording {
    let tags = capture_tags(12);
    let (pair, _) = publish_session(1 << 20, &tags, true);
    let (events, result) = replay(&pair.wire, &pair.request_offsets, &[pair.wire.len()]);
    result.expect("replay of a valid session");
    Recording {
        wire: pair.wire,
        request_offsets: pair.request_offsets,
        events,
    }
}

/// Feeds `wire` to a fresh server in pieces of the given sizes (cycled, and cut at
/// `request_offsets`), accepting every request as a listener that accepts everything would.
fn replay(
    wire: &[u8],
    request_offsets: &[usize],
    sizes: &[usize],
) -> (Vec<RtmpEvent>, Result<(), RtmpError>) {
    let mut s = ServerConnection::new(RtmpLimits::default());
    let mut events = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    let mut sink = BytesMut::new();
    while pos < wire.len() {
        let mut end = pos + sizes[i % sizes.len()].max(1);
        i += 1;
        if let Some(&cut) = request_offsets.iter().find(|&&o| o > pos) {
            end = end.min(cut);
        }
        let end = end.min(wire.len());
        if let Err(e) = s.feed(&wire[pos..end]) {
            return (events, Err(e));
        }
        pos = end;
        while let Some(ev) = s.poll_event() {
            if let RtmpEvent::ConnectRequested { request_id, .. }
            | RtmpEvent::PublishRequested { request_id, .. } = &ev
            {
                if let Err(e) = s.accept(*request_id) {
                    return (events, Err(e));
                }
            }
            events.push(ev);
        }
        s.poll_transmit(&mut sink);
        sink.clear();
    }
    (events, Ok(()))
}

fn reference() -> &'static Recording {
    static REF: std::sync::OnceLock<Recording> = std::sync::OnceLock::new();
    REF.get_or_init(record)
}

#[test]
fn replay_matches_live_session() {
    let r = reference();
    assert!(r.wire.len() > HANDSHAKE_LEN);
    assert_eq!(r.request_offsets.len(), 2);
    assert!(matches!(r.events[0], RtmpEvent::ConnectRequested { .. }));
    assert_eq!(r.events.last(), Some(&RtmpEvent::PublishFinished));
    let tags = capture_tags(12);
    let (_, live) = publish_session(1 << 20, &tags, true);
    // The live list starts at PublishRequested (connect events were checked and drained).
    assert_eq!(&r.events[r.events.len() - live.len()..], &live[..]);
}

fn not_internal(r: &Result<(), RtmpError>) -> Result<(), TestCaseError> {
    if let Err(e @ RtmpError::Internal { .. }) = r {
        return Err(TestCaseError::fail(format!("internal error: {e}")));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any split of a valid session gives the same events; any prefix gives a prefix of them.
    #[test]
    fn valid_stream_any_split(sizes in proptest::collection::vec(1usize..3000, 1..8), cut in 0.0f64..1.0) {
        let r = reference();
        let (events, result) = replay(&r.wire, &r.request_offsets, &sizes);
        prop_assert!(result.is_ok(), "{:?}", result);
        prop_assert_eq!(&events, &r.events);
        let expected = &r.events;
        let end = (r.wire.len() as f64 * cut) as usize;
        let (events, result) = replay(&r.wire[..end], &r.request_offsets, &sizes);
        prop_assert!(result.is_ok(), "{:?}", result);
        prop_assert_eq!(&events[..], &expected[..events.len()]);
    }

    /// Corrupting bytes after the handshake may end the connection, never panic or hit an
    /// internal error (all of rml_rtmp's panics are guarded before it sees the bytes).
    #[test]
    fn corrupted_stream_never_panics(flips in proptest::collection::vec((0.0f64..1.0, any::<u8>()), 1..6),
                                     sizes in proptest::collection::vec(1usize..500, 1..4)) {
        let r = reference();
        let mut bad = r.wire.clone();
        for (at, byte) in flips {
            let i = HANDSHAKE_LEN + ((bad.len() - HANDSHAKE_LEN) as f64 * at) as usize;
            let last = bad.len() - 1;
            bad[i.min(last)] = byte;
        }
        let (_, result) = replay(&bad, &r.request_offsets, &sizes);
        not_internal(&result)?;
    }

    /// Arbitrary bytes after a valid handshake, and from the first byte.
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2000),
                                   sizes in proptest::collection::vec(1usize..300, 1..4)) {
        let mut input = reference().wire[..HANDSHAKE_LEN].to_vec();
        input.extend_from_slice(&data);
        let (_, result) = replay(&input, &[], &sizes);
        not_internal(&result)?;
        let mut raw = vec![3u8];
        raw.extend_from_slice(&data);
        let (_, result) = replay(&raw, &[], &sizes);
        not_internal(&result)?;
    }

    /// Arbitrary message bodies of every type on a well-formed chunk stream.
    #[test]
    fn arbitrary_messages_never_panic(msgs in proptest::collection::vec((1u8..23, proptest::collection::vec(any::<u8>(), 0..200)), 1..10)) {
        let mut input = reference().wire[..HANDSHAKE_LEN].to_vec();
        for (type_id, body) in &msgs {
            input.extend(raw_message(3, *type_id, 0, body, 128));
        }
        let (_, result) = replay(&input, &[], &[input.len()]);
        not_internal(&result)?;
    }
}
