//! Node-to-node messages: versioned serde enums encoded with postcard.
//!
//! Every message is wrapped in a version enum ([`PeerRequest::V1`], [`PeerResponse::V1`]): a node
//! that receives a version it does not know answers [`ResponseV1::Error`] with
//! [`ErrorCode::Version`] instead of guessing. New variants are only ever appended (postcard
//! encodes the variant index), so an older node decodes every message it knows.
//!
//! The transport carries one request and one response per QUIC stream, so a message needs no
//! framing of its own: the stream's end delimits it. Long-lived pushes (media replication) use
//! [`FrameDecoder`]: a 4-byte big-endian length, then the postcard body.
//!
//! Raft's own RPC bodies are opaque here (`body`): this crate does not know the consensus
//! library; the node encodes them (postcard too) and checks them on decode.

use serde::{Deserialize, Serialize};

/// Largest message accepted from a peer, in bytes (a Raft snapshot chunk or a media segment
/// fits well within it).
pub const MAX_MESSAGE: usize = 32 * 1024 * 1024;

/// Why bytes from a peer are not a message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// Over [`MAX_MESSAGE`] (or a frame header announcing more).
    #[error("peer message of {len} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// Announced or actual length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Not a valid postcard encoding of the expected message.
    #[error("malformed peer message: {0}")]
    Malformed(String),
}

/// A member as the others see it. Also the Raft membership's node record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNode {
    /// Configured node name (`node.id`).
    pub name: String,
    /// Region label used by routing.
    pub region: String,
    /// QUIC address other nodes reach it at.
    pub quic: String,
    /// Public HTTP base URL viewers are sent to (`http://127.0.0.1:8081`).
    pub http: String,
    /// RTMP address broadcasters may use.
    pub rtmp: String,
}

/// A node's load, sent in heartbeats (not in the Raft log: it changes every second).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeLoad {
    /// Process CPU over the last interval, percent of one core.
    pub cpu_pct: f32,
    /// Streams this node originates.
    pub streams: u32,
    /// Viewer requests per second served over the last interval.
    pub requests_per_s: f32,
}

/// One stream's viewers on one node, sent to every member once a second so that each node can
/// show a stream's audience summed over the cluster (not in the Raft log).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamAudience {
    /// Stream name.
    pub stream: String,
    /// The session the counts belong to.
    pub epoch: u64,
    /// Viewer sessions playing on the sender now.
    pub concurrent: u32,
    /// Sessions that joined on the sender so far.
    pub joined: u64,
    /// Bytes sent to the stream's viewers over the last second, kbit/s.
    pub egress_kbps: f32,
    /// Concurrent viewers per video rendition (at most 16 entries).
    pub quality: Vec<(String, u32)>,
    /// Buffering events reported so far.
    pub stalls: u64,
    /// Concurrent viewers with a stall in the last 30 s.
    pub stalled_recent: u32,
    /// Quality switches so far.
    pub switches: u64,
    /// The ingest, when the sender is the stream's origin.
    pub ingress: Option<IngressSummary>,
}

/// A stream's ingest as its origin sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IngressSummary {
    /// kbit/s over the last second.
    pub bitrate_kbps: f32,
    /// Video frames per second.
    pub fps: f32,
    /// Video frames received.
    pub frames: u64,
    /// Frames dropped (ingest queue, encoders behind).
    pub dropped_frames: u64,
    /// Width (0: unknown).
    pub width: u32,
    /// Height (0: unknown).
    pub height: u32,
    /// RFC 6381 video codec ("" unknown).
    pub video_codec: String,
    /// RFC 6381 audio codec ("" unknown).
    pub audio_codec: String,
}

/// Which Raft RPC a [`RequestV1::Raft`] body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RaftRpc {
    /// AppendEntries (also the leader's heartbeat).
    AppendEntries,
    /// RequestVote.
    Vote,
    /// InstallSnapshot (one chunk).
    InstallSnapshot,
}

/// A request, versioned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PeerRequest {
    /// Version 1.
    V1(RequestV1),
}

/// Version 1 requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RequestV1 {
    /// Who are you, and are you in a cluster? (Seed probing at start-up.)
    Hello {
        /// The asking node.
        from: PeerNode,
    },
    /// Add me to the cluster (sent to the leader).
    Join {
        /// The joining node.
        node: PeerNode,
    },
    /// A Raft RPC.
    Raft {
        /// Which one.
        rpc: RaftRpc,
        /// Its encoded body.
        body: Vec<u8>,
    },
    /// A registry command forwarded to the leader (encoded by the node).
    Write {
        /// The encoded command.
        body: Vec<u8>,
    },
    /// Liveness and load, sent to every member a few times a second.
    Heartbeat {
        /// Sender's name.
        from: String,
        /// Its load.
        load: NodeLoad,
    },
    /// Replicate a live session: the answer is a stream of [`MediaFrame`]s (a snapshot of
    /// the current state, then every change as it is made) until the session ends.
    Subscribe {
        /// Stream name.
        stream: String,
        /// The session the subscriber expects (the registry's current epoch).
        epoch: u64,
    },
    /// To the leader: confirm leadership with a quorum and answer the committed log index (a
    /// node that stalled waits until it has applied that much before serving live media).
    ReadIndex,
    /// The sender's viewers of each stream it serves, once a second (analytics).
    Audience {
        /// Sender's name.
        from: String,
        /// One entry per stream (at most 1,000).
        streams: Vec<StreamAudience>,
    },
}

/// A response, versioned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PeerResponse {
    /// Version 1.
    V1(ResponseV1),
}

/// Version 1 responses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ResponseV1 {
    /// Answer to `Hello`.
    Hello {
        /// The answering node.
        node: PeerNode,
        /// Whether it belongs to an initialised cluster.
        initialized: bool,
        /// The leader it knows of.
        leader: Option<PeerNode>,
    },
    /// Answer to `Join`: the node was added (as learner, and voter if voters were missing).
    Joined,
    /// Not the leader; try this one.
    NotLeader {
        /// The leader, if known.
        leader: Option<PeerNode>,
    },
    /// A Raft RPC's encoded result.
    Raft {
        /// Encoded body.
        body: Vec<u8>,
    },
    /// A forwarded command's encoded outcome.
    Write {
        /// Encoded body.
        body: Vec<u8>,
    },
    /// Acknowledged.
    Ack,
    /// Refused.
    Error {
        /// Machine-readable cause.
        code: ErrorCode,
        /// For humans.
        message: String,
    },
    /// Answer to `ReadIndex`: the leader's committed index, confirmed by a quorum.
    ReadIndex {
        /// Log index.
        index: u64,
    },
}

/// Why a peer refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// Unknown message version or undecodable request.
    Version,
    /// The request was understood but could not be carried out now (retry later).
    Unavailable,
    /// The request is wrong.
    Invalid,
}

/// A pushed replication frame, versioned (length-prefixed with [`encode_frame`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MediaFrame {
    /// Version 1.
    V1(MediaFrameV1),
}

/// Container format of a replicated track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireFormat {
    /// CMAF (LL-HLS, DASH).
    Cmaf,
    /// MPEG-TS (HLS).
    Ts,
}

/// Kind of a replicated track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireKind {
    /// Video rendition.
    Video,
    /// The shared audio track.
    Audio,
}

/// What manifests need to know about a track.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireTrackInfo {
    /// RFC 6381 codec string.
    pub codec: String,
    /// Video width.
    pub width: Option<u32>,
    /// Video height.
    pub height: Option<u32>,
    /// Video frame rate.
    pub frame_rate: Option<f64>,
    /// Audio sampling rate.
    pub sample_rate: Option<u32>,
    /// Audio channels.
    pub channels: Option<u8>,
    /// Track timescale.
    pub timescale: u32,
    /// Declared bandwidth, bit/s.
    pub declared_bandwidth: u64,
}

/// Version 1 replication frames: the origin's store operations, replayed by the edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MediaFrameV1 {
    /// First frame: the session and its packaging parameters.
    Session {
        /// The session.
        epoch: u64,
        /// Segment target, ms.
        segment_target_ms: u64,
        /// Part target, ms.
        part_target_ms: u64,
        /// Segments listed.
        window_segments: u32,
        /// First media sequence number of the session.
        msn_base: u64,
        /// EXT-X-DISCONTINUITY-SEQUENCE.
        discontinuity_seq: u64,
    },
    /// The video renditions in master-playlist order.
    Renditions(Vec<String>),
    /// Wall clock of media time zero, Unix ms.
    StartWall(i64),
    /// A track exists.
    Track {
        /// Format.
        format: WireFormat,
        /// Kind.
        kind: WireKind,
        /// Rendition.
        rendition: String,
    },
    /// A track's init segment and description.
    Init {
        /// Format.
        format: WireFormat,
        /// Rendition.
        rendition: String,
        /// Init segment (CMAF).
        init: Option<bytes::Bytes>,
        /// Description.
        info: WireTrackInfo,
    },
    /// A segment opens.
    Begin {
        /// Format.
        format: WireFormat,
        /// Rendition.
        rendition: String,
        /// Media sequence number.
        msn: u64,
        /// Start, track timescale.
        start: u64,
        /// Program date-time, Unix ms.
        pdt_ms: i64,
    },
    /// A part of the open segment.
    Part {
        /// Format.
        format: WireFormat,
        /// Rendition.
        rendition: String,
        /// Its segment.
        msn: u64,
        /// Index in the segment.
        index: u64,
        /// Seconds.
        duration: f64,
        /// Starts with a keyframe.
        independent: bool,
        /// The bytes.
        data: bytes::Bytes,
    },
    /// The open segment completes.
    Finish {
        /// Format.
        format: WireFormat,
        /// Rendition.
        rendition: String,
        /// Its msn.
        msn: u64,
        /// End, track timescale.
        end: u64,
        /// The whole segment (TS only).
        data: Option<bytes::Bytes>,
    },
    /// The session ended (ENDLIST).
    End,
    /// The origin does not hold that session.
    Refused {
        /// Why.
        reason: String,
    },
    /// The snapshot is complete: what follows are live changes.
    SnapshotDone,
    /// A track's measurements over every segment it completed (snapshot only): the longest
    /// segment (TARGETDURATION) and the bitrates (BANDWIDTH), including segments that left the
    /// window.
    Stats {
        /// Format.
        format: WireFormat,
        /// Rendition.
        rendition: String,
        /// Longest segment, seconds.
        max_segment_duration: f64,
        /// Highest per-segment bitrate, bit/s.
        peak_bps: u64,
        /// Bytes of all segments.
        total_bytes: u64,
        /// Seconds of all segments.
        total_seconds: f64,
    },
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, WireError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(WireError::TooLarge {
            len: bytes.len(),
            limit: MAX_MESSAGE,
        });
    }
    let (v, rest) =
        postcard::take_from_bytes(bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(WireError::Malformed(format!(
            "{} trailing bytes after the message",
            rest.len()
        )));
    }
    Ok(v)
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // postcard cannot fail on these types: no maps with non-string keys, no unsized sequences.
    postcard::to_allocvec(v).unwrap_or_default()
}

impl PeerRequest {
    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }
    /// Decode a whole message (no trailing bytes).
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        decode(bytes)
    }
}

impl PeerResponse {
    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }
    /// Decode a whole message (no trailing bytes).
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        decode(bytes)
    }
}

/// Encode one length-prefixed frame (for long-lived pushes). The receiver refuses a body over
/// its limit (at most [`MAX_MESSAGE`]); senders check [`frame_body_len`] against it.
pub fn encode_frame<T: Serialize>(msg: &T) -> Vec<u8> {
    let body = encode(msg);
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// The body length of an encoded frame (what the receiver checks against its limit).
pub fn frame_body_len(frame: &[u8]) -> usize {
    frame.len().saturating_sub(4)
}

/// Splits a byte stream into length-prefixed frames and decodes them. Sans-IO: feed bytes with
/// [`FrameDecoder::push`], take messages with [`FrameDecoder::next_frame`]. Memory is bounded by the
/// frame limit: a header announcing more is an error before any body is buffered.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already decoded (dropped at the next push, so pulling many small frames
    /// stays linear).
    start: usize,
    limit: usize,
}

impl FrameDecoder {
    /// A decoder accepting frames up to `limit` bytes (at most [`MAX_MESSAGE`]).
    pub fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            limit: limit.min(MAX_MESSAGE),
        }
    }

    /// Append received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next whole frame, decoded; `Ok(None)` if more bytes are needed. After an error the
    /// stream is unusable (the caller drops the connection).
    pub fn next_frame<T: for<'de> Deserialize<'de>>(&mut self) -> Result<Option<T>, WireError> {
        let b = &self.buf[self.start..];
        if b.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if len > self.limit {
            return Err(WireError::TooLarge {
                len,
                limit: self.limit,
            });
        }
        if b.len() < 4 + len {
            return Ok(None);
        }
        let msg = decode(&b[4..4 + len]);
        self.start += 4 + len;
        msg.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node(name: &str) -> PeerNode {
        PeerNode {
            name: name.into(),
            region: "eu".into(),
            quic: "127.0.0.1:7000".into(),
            http: "http://127.0.0.1:8080".into(),
            rtmp: "127.0.0.1:1935".into(),
        }
    }

    #[test]
    fn requests_and_responses_round_trip() {
        let reqs = [
            PeerRequest::V1(RequestV1::Hello { from: node("a") }),
            PeerRequest::V1(RequestV1::Join { node: node("b") }),
            PeerRequest::V1(RequestV1::Raft {
                rpc: RaftRpc::Vote,
                body: vec![1, 2, 3],
            }),
            PeerRequest::V1(RequestV1::Heartbeat {
                from: "c".into(),
                load: NodeLoad {
                    cpu_pct: 12.5,
                    streams: 3,
                    requests_per_s: 40.0,
                },
            }),
        ];
        for r in reqs {
            assert_eq!(PeerRequest::decode(&r.encode()).unwrap(), r);
        }
        let resp = PeerResponse::V1(ResponseV1::Hello {
            node: node("a"),
            initialized: true,
            leader: Some(node("b")),
        });
        assert_eq!(PeerResponse::decode(&resp.encode()).unwrap(), resp);
    }

    #[test]
    fn trailing_bytes_and_unknown_versions_are_refused() {
        let mut b = PeerRequest::V1(RequestV1::Join { node: node("a") }).encode();
        b.push(0);
        assert!(matches!(
            PeerRequest::decode(&b),
            Err(WireError::Malformed(_))
        ));
        // Variant index 1 of the version enum does not exist (yet).
        assert!(PeerRequest::decode(&[1, 0]).is_err());
    }

    #[test]
    fn many_small_frames_decode_in_linear_time() {
        let end = encode_frame(&MediaFrame::V1(MediaFrameV1::End));
        let wire: Vec<u8> = std::iter::repeat_n(end, 200_000).flatten().collect();
        let mut d = FrameDecoder::new(MAX_MESSAGE);
        d.push(&wire);
        let t = std::time::Instant::now();
        let mut n = 0;
        while let Some(MediaFrame::V1(MediaFrameV1::End)) = d.next_frame().unwrap() {
            n += 1;
        }
        assert_eq!(n, 200_000);
        assert_eq!(d.buffered(), 0);
        // Quadratic draining took seconds here; linear takes milliseconds.
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn frame_decoder_refuses_oversized_headers_before_buffering() {
        let mut d = FrameDecoder::new(1024);
        d.push(&(1_000_000u32).to_be_bytes());
        assert!(matches!(
            d.next_frame::<PeerRequest>(),
            Err(WireError::TooLarge { len: 1_000_000, .. })
        ));
    }

    #[test]
    fn media_frames_round_trip_through_the_frame_decoder() {
        let frames = vec![
            MediaFrame::V1(MediaFrameV1::Session {
                epoch: 3,
                segment_target_ms: 2000,
                part_target_ms: 200,
                window_segments: 6,
                msn_base: 40,
                discontinuity_seq: 2,
            }),
            MediaFrame::V1(MediaFrameV1::Part {
                format: WireFormat::Cmaf,
                rendition: "720p".into(),
                msn: 41,
                index: 3,
                duration: 0.2,
                independent: false,
                data: bytes::Bytes::from(vec![7u8; 5000]),
            }),
            MediaFrame::V1(MediaFrameV1::End),
        ];
        let wire: Vec<u8> = frames.iter().flat_map(encode_frame).collect();
        let mut d = FrameDecoder::new(MAX_MESSAGE);
        d.push(&wire);
        let mut got = Vec::new();
        while let Some(f) = d.next_frame::<MediaFrame>().unwrap() {
            got.push(f);
        }
        assert_eq!(got, frames);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = PeerRequest::decode(&bytes);
            let _ = PeerResponse::decode(&bytes);
            let mut d = FrameDecoder::new(4096);
            d.push(&bytes);
            while let Ok(Some(_)) = d.next_frame::<PeerRequest>() {}
            let mut d = FrameDecoder::new(4096);
            d.push(&bytes);
            while let Ok(Some(_)) = d.next_frame::<MediaFrame>() {}
        }

        #[test]
        fn frames_split_anywhere_decode_in_order(
            names in proptest::collection::vec("[a-z]{1,12}", 1..8),
            cut in 0usize..4096,
        ) {
            let msgs: Vec<PeerRequest> = names
                .iter()
                .map(|n| PeerRequest::V1(RequestV1::Hello { from: node(n) }))
                .collect();
            let wire: Vec<u8> = msgs.iter().flat_map(encode_frame).collect();
            let cut = cut % (wire.len() + 1);
            let mut d = FrameDecoder::new(4096);
            let mut got = Vec::new();
            for part in [&wire[..cut], &wire[cut..]] {
                d.push(part);
                while let Some(m) = d.next_frame::<PeerRequest>().unwrap() {
                    got.push(m);
                }
            }
            prop_assert_eq!(got, msgs);
            prop_assert_eq!(d.buffered(), 0);
        }
    }
}
