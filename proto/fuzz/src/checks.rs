//! The body of every fuzz target, one `pub fn` per target (`fuzz_targets/<name>.rs` only
//! calls it). Kept here, with no dependency beyond hivecast-proto, bytes, rml_rtmp and
//! serde_json (all of them hivecast-proto's own dependencies), so that
//! `proto/tests/fuzz_corpus.rs` replays the committed corpora and the crash regressions
//! through exactly these checks under plain `cargo test` (it includes this file, `formats.rs`,
//! `session.rs` and `wire.rs` by path).
//!
//! Every function takes arbitrary bytes, must not panic other than through its own
//! assertions, and asserts the invariants its doc lists; a failed assertion is a bug in
//! hivecast-proto (or in the check).

use bytes::{Bytes, BytesMut};
use hivecast_proto::beacon::{
    parse_beacon, BeaconError, BeaconEvent, BeaconKind, MAX_BEACON_BYTES, MAX_ECHO_CHARS,
    MAX_EVENTS,
};
use hivecast_proto::cmcd::{self, Cmcd, CmcdError};
use hivecast_proto::codec::aac::{AacConfig, AacError, ADTS_HEADER_LEN, MAX_ADTS_FRAME_LEN};
use hivecast_proto::codec::h264::{
    self, AvcConfig, H264Error, MAX_NALUS_PER_ACCESS_UNIT, NAL_IDR, NAL_PPS, NAL_SPS,
};
use hivecast_proto::flv::{self, FlvAudio, FlvVideo};
use hivecast_proto::hls::{
    parse_blocking_request, parse_delivery_directives, DirectiveError, MediaPlaylist, PartEntry,
    PartInf, SegmentEntry,
};
use hivecast_proto::peer::{
    encode_frame, FrameDecoder, MediaFrame, PeerRequest, PeerResponse, WireError,
};
use hivecast_proto::rtmp::{RtmpError, RtmpEvent, RtmpLimits, ServerConnection};
use rml_rtmp::rml_amf0::{self, Amf0Value};

use crate::formats::{split_aac, split_amf, split_frames, split_hls, split_peer, split_sps};
use crate::session::{self, amf_type, Op, Script};
use crate::wire::msg_type;

/// Arbitrary bytes as the first bytes a peer sends: C0, C1, C2 and whatever follows (RTMP
/// 5.2), into a fresh `ServerConnection` with the default limits.
///
/// Checks: no panic, no `Internal` error, the final-error contract, and that the outcome
/// does not depend on how the bytes are split into reads ("any split is fine, down to one
/// byte per call"): the input is fed once whole and once in pieces of 1..=64 bytes (the
/// piece size comes from the last input byte), and both runs must raise the same events and
/// end with the same result and the same handshake state.
pub fn rtmp_handshake(data: &[u8]) {
    let whole = drive(data, data.len().max(1));
    let piece = usize::from(data.last().copied().unwrap_or(0) % 64) + 1;
    let split = drive(data, piece);
    assert_eq!(
        whole, split,
        "outcome depends on the read split ({piece}-byte reads)"
    );
}

/// A whole publisher session, structure-aware: the target sends a valid C0/C1/C2, then plays
/// the ops decoded from the input (raw bytes, chunked messages with any header format,
/// connect/createStream/publish/metadata/media/unpublish commands, control messages, read
/// boundaries; see `hivecast_proto_fuzz::session` for the format), accepting or rejecting
/// `connect` and `publish` as the input's flags say, and runs every video/audio message
/// through `flv::parse_*`, `AvcConfig::parse`, `AacConfig::parse`, `to_avcc4` and
/// `avcc_to_annexb` as the ingest actor does.
///
/// Checks: the invariants listed in `session.rs` (no panic, no `Internal`, bounded output and
/// events, request/publish state consistent with the events).
pub fn rtmp_session(data: &[u8]) {
    let script = Script::decode(data);
    session::run(&script, RtmpLimits::default());
}

/// AMF0 command and data bodies (AMF0 spec 2.x; RTMP 7.1.1, 7.1.2) from a peer. proto's AMF0
/// code is private (`rtmp/amf.rs`, a structure walker that vets bodies before rml_amf0
/// decodes them), so the target reaches it the way a peer does: after a valid handshake,
/// `connect` (accepted), `createStream` and, unless the selector says otherwise, `publish`
/// (accepted), it sends the input body as one command or data message (layout in
/// `formats::split_amf`), which goes through the walker, then rml_rtmp's decoding and the
/// metadata event.
///
/// Checks: the session invariants, and the walker's contract against rml_amf0 itself where
/// calling rml_amf0 is safe (its recursion is bounded by the number of container markers):
/// wherever rml_amf0 decodes the body, the connection reports the same number of values in
/// `MalformedCommand`/`MalformedDataMessage`, refuses a command of fewer than three values,
/// and never lets through values that nest deeper than the limit. (The converse, "AmfTooDeep
/// only when rml_amf0's values nest too deep", does not hold: rml_amf0 keeps one of two
/// properties with the same name, so its tree can be shallower than the bytes.)
pub fn amf0(data: &[u8]) {
    let Some((selector, body)) = split_amf(data) else {
        return;
    };
    let limits = RtmpLimits::default();
    let mut ops = vec![Op::Connect(b"live"), Op::CreateStream];
    if selector & 8 == 0 {
        ops.push(Op::Publish(b"key"));
    }
    ops.push(Op::Amf(selector, body));
    let d = session::run(&Script { flags: 0, ops }, limits);
    let type_id = amf_type(selector);

    // Cross-check with rml_amf0 only where its recursion cannot blow the stack.
    let containers = body.iter().filter(|&&b| matches!(b, 3 | 8 | 10)).count();
    if containers > 256 {
        return;
    }
    let decoded_body = match body.split_first() {
        Some((0, rest)) if type_id == msg_type::AMF3_COMMAND => rest,
        _ => body,
    };
    let mut cursor = std::io::Cursor::new(decoded_body);
    let Ok(values) = rml_amf0::deserialize(&mut cursor) else {
        return;
    };
    let n = values.len();
    let deepest = values.iter().map(depth).max().unwrap_or(0);
    let too_deep = deepest > limits.max_amf_depth;
    match &d.error {
        Some(RtmpError::AmfTooDeep { .. }) => {}
        Some(RtmpError::MalformedCommand { values }) => assert_eq!(*values, n),
        Some(RtmpError::MalformedDataMessage { values }) => assert_eq!(*values, n),
        _ => {
            assert!(!too_deep, "nesting {deepest} accepted");
            let is_command = matches!(type_id, msg_type::AMF0_COMMAND | msg_type::AMF3_COMMAND);
            assert!(!(is_command && n < 3), "command with {n} values accepted");
        }
    }
}

/// An RTMP video message body (FLV VIDEODATA, FLV spec v10 E.4.3.1, and Enhanced RTMP) into
/// `flv::parse_video`, then what the ingest actor does next: `AvcConfig::parse` on a
/// sequence header and `to_avcc4` on a frame (with each valid NAL length size).
///
/// Checks: every returned `Bytes` is a zero-copy slice of the input (the module's
/// invariant) at the offset the header layout says; the composition time is a signed 24-bit
/// value; keyframe is FrameType 1.
pub fn flv_video(data: &[u8]) {
    let payload = Bytes::copy_from_slice(data);
    let enhanced = data.first().is_some_and(|b| b & 0x80 != 0);
    match flv::parse_video(&payload) {
        Ok(FlvVideo::SequenceHeader(record)) => {
            assert!(is_tail_of(&record, &payload, 5));
            if let Ok(cfg) = AvcConfig::parse(record.clone()) {
                assert_eq!(cfg.record, record);
            }
        }
        Ok(FlvVideo::Frame {
            keyframe,
            cts_ms,
            data: au,
        }) => {
            let frame_type = if enhanced {
                (data[0] >> 4) & 7
            } else {
                data[0] >> 4
            };
            assert_eq!(keyframe, frame_type == 1);
            assert!((-(1 << 23)..(1 << 23)).contains(&cts_ms));
            let offset = if enhanced && data[0] & 0x0f == 1 {
                8
            } else {
                5
            };
            assert!(is_tail_of(&au, &payload, offset));
            if enhanced && data[0] & 0x0f == 3 {
                assert_eq!(cts_ms, 0);
            }
            for nls in [1, 2, 4] {
                let _ = h264::to_avcc4(&au, nls);
            }
        }
        Ok(FlvVideo::EndOfSequence) | Err(_) => {}
    }
}

/// An RTMP audio message body (FLV AUDIODATA, FLV spec v10 E.4.2.1) into `flv::parse_audio`,
/// then `AacConfig::parse` on a sequence header and an ADTS header for a raw frame, as the
/// ingest actor and the TS packager do.
///
/// Checks: returned `Bytes` are zero-copy slices of the input after the 2-byte header; only
/// SoundFormat 10 (AAC) parses.
pub fn flv_audio(data: &[u8]) {
    let payload = Bytes::copy_from_slice(data);
    let body = match flv::parse_audio(&payload) {
        Ok(FlvAudio::SequenceHeader(b)) | Ok(FlvAudio::Frame(b)) => b,
        Err(_) => return,
    };
    assert_eq!(data[0] >> 4, flv::AUDIO_FORMAT_AAC);
    assert_eq!(body.len(), payload.len() - 2);
    assert!(body.is_empty() || std::ptr::eq(body.as_ptr(), payload[2..].as_ptr()));
    if data[1] == 0 {
        if let Ok(cfg) = AacConfig::parse(body) {
            let mut out = BytesMut::new();
            let _ = cfg.write_adts_header(payload.len(), &mut out);
        }
    }
}

/// An AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1; the body of an FLV AVC
/// sequence header) into `AvcConfig::parse`, which also reads the picture size from the
/// first SPS (H.264 7.3.2.1.1).
///
/// Checks on success: the record is kept verbatim; SPS/PPS are zero-copy slices of it with
/// the right NAL types; the NAL length size is 1, 2 or 4; the picture is at least 1x1 pixel;
/// the codec string is `avc1.` and six hex digits of the header bytes; parsing is
/// deterministic; and rebuilding a record from the first SPS and PPS with
/// `from_parameter_sets` gives the same picture size and parses again.
pub fn avc_config(data: &[u8]) {
    let record = Bytes::copy_from_slice(data);
    let Ok(cfg) = AvcConfig::parse(record.clone()) else {
        return;
    };
    assert_eq!(cfg.record, record);
    assert!(matches!(cfg.nal_length_size, 1 | 2 | 4));
    assert!(!cfg.sps.is_empty());
    for sps in &cfg.sps {
        assert!(within(sps, &record));
        assert_eq!(sps[0] & 0x1f, NAL_SPS);
    }
    for pps in &cfg.pps {
        assert!(within(pps, &record));
        assert_eq!(pps[0] & 0x1f, NAL_PPS);
    }
    assert!(cfg.width >= 1 && cfg.height >= 1);
    let codec = cfg.codec_string();
    assert_eq!(
        codec,
        format!("avc1.{:02x}{:02x}{:02x}", data[1], data[2], data[3])
    );
    assert_eq!(AvcConfig::parse(record.clone()).as_ref(), Ok(&cfg));
    if let Some(pps) = cfg.pps.first() {
        let rebuilt = AvcConfig::from_parameter_sets(cfg.sps[0].clone(), pps.clone())
            .expect("a parsed SPS and PPS rebuild a record");
        assert_eq!((rebuilt.width, rebuilt.height), (cfg.width, cfg.height));
        assert_eq!(rebuilt.nal_length_size, 4);
        assert_eq!(AvcConfig::parse(rebuilt.record.clone()), Ok(rebuilt));
    }
}

/// An SPS and a PPS NAL unit as an encoder hands them out (split from the input, see
/// `formats::split_sps`) into `AvcConfig::from_parameter_sets`, which parses the SPS (H.264
/// 7.3.2.1.1: profiles with chroma info, scaling lists, POC types, cropping) and builds an
/// avcC record (ISO/IEC 14496-15 5.3.3.1.2, with the high-profile extension).
///
/// Checks on success: the record re-parses with `AvcConfig::parse` to the same value; it
/// holds exactly the SPS and PPS given, with 4-byte NAL lengths; profile/constraints/level
/// are the SPS's bytes 1..4; the picture is at least 1x1. An error that is not about the PPS
/// stays the same when the PPS is replaced by a valid one (SPS errors do not depend on it).
pub fn sps(data: &[u8]) {
    let (sps, pps) = split_sps(data);
    let (sps, pps) = (Bytes::copy_from_slice(sps), Bytes::copy_from_slice(pps));
    match AvcConfig::from_parameter_sets(sps.clone(), pps.clone()) {
        Ok(cfg) => {
            assert_eq!(cfg.sps, vec![sps.clone()]);
            assert_eq!(cfg.pps, vec![pps]);
            assert_eq!(cfg.nal_length_size, 4);
            assert_eq!(
                (cfg.profile_idc, cfg.constraint_flags, cfg.level_idc),
                (sps[1], sps[2], sps[3])
            );
            assert!(cfg.width >= 1 && cfg.height >= 1);
            assert_eq!(AvcConfig::parse(cfg.record.clone()), Ok(cfg));
        }
        Err(e) => {
            // Only the PPS type check comes between the SPS type check and the SPS parse.
            let pps_type_error = matches!(
                e,
                H264Error::Invalid {
                    what: "PPS NAL unit type",
                    ..
                }
            ) || matches!(
                e,
                H264Error::Truncated {
                    what: "NAL unit",
                    ..
                } | H264Error::Invalid {
                    what: "PPS length",
                    ..
                }
            );
            if !pps_type_error {
                let with_valid_pps = AvcConfig::from_parameter_sets(
                    sps,
                    Bytes::from_static(&[0x68, 0xce, 0x38, 0x80]),
                );
                assert_eq!(with_valid_pps.err(), Some(e));
            }
        }
    }
}

/// An AVCC access unit from a peer (layout in `formats::split_frames`: a NAL length size
/// selector, valid or not, then the bytes) through the frame path: `avcc_nalus`,
/// `to_avcc4`, `avcc_to_annexb`, `has_idr`.
///
/// Checks: `to_avcc4` succeeds exactly when `avcc_nalus` walks the input without error,
/// keeps every NAL unit byte for byte with 4-byte lengths (zero-copy when the size already
/// is 4), and respects `MAX_NALUS_PER_ACCESS_UNIT`; its output converts to Annex B of the
/// same length with the same NAL units; `avcc_to_annexb` leaves its buffer untouched on
/// error; `has_idr` agrees with the NAL types.
pub fn h264_frames(data: &[u8]) {
    let Some((nls, au)) = split_frames(data) else {
        return;
    };
    let input = Bytes::copy_from_slice(au);
    let walked: Result<Vec<&[u8]>, _> = h264::avcc_nalus(au, nls).collect();
    assert!(h264::avcc_nalus(au, nls).count() <= MAX_NALUS_PER_ACCESS_UNIT + 1);
    let converted = h264::to_avcc4(&input, nls);
    match (&walked, &converted) {
        (Ok(nalus), Ok(out)) => {
            assert!(nalus.len() <= MAX_NALUS_PER_ACCESS_UNIT);
            let again: Vec<&[u8]> = h264::avcc_nalus(out, 4)
                .collect::<Result<_, _>>()
                .expect("to_avcc4 output walks");
            assert_eq!(&again, nalus);
            if nls == 4 {
                assert_eq!(out.as_ptr(), input.as_ptr());
            }
            let mut annexb = BytesMut::from(&b"prefix"[..]);
            h264::avcc_to_annexb(out, &mut annexb).expect("AVCC-4 converts");
            assert_eq!(annexb.len(), 6 + out.len());
            let mut expected = b"prefix".to_vec();
            for n in nalus {
                expected.extend_from_slice(&[0, 0, 0, 1]);
                expected.extend_from_slice(n);
            }
            assert_eq!(&annexb[..], &expected[..]);
            let idr = nalus.iter().any(|n| n[0] & 0x1f == NAL_IDR);
            assert_eq!(h264::has_idr(out), idr);
        }
        (Err(_), Err(_)) => {}
        (w, c) => panic!("avcc_nalus {:?} but to_avcc4 {:?}", w.is_ok(), c.is_ok()),
    }
    // The raw input as 4-byte AVCC (what the packagers assume after ingest).
    let mut buf = BytesMut::from(&b"keep"[..]);
    if h264::avcc_to_annexb(au, &mut buf).is_err() {
        assert_eq!(&buf[..], b"keep");
    }
    let _ = h264::has_idr(au);
}

/// An AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1; the body of an FLV AAC sequence header)
/// into `AacConfig::parse`, then the ADTS header (14496-3 1.A.2) the TS packager writes from
/// it for a raw frame of a fuzzed length (layout in `formats::split_aac`). proto parses no
/// ADTS (RTMP carries raw AAC), so the writer is checked by reading its header back.
///
/// Checks on success: the ASC is kept verbatim; parsing is deterministic; the codec string
/// is `mp4a.40.{object_type}`; the sample rate is not 0; an ADTS header, when written, is 7
/// bytes with the syncword, MPEG-4 ID, no CRC, the frame length (payload + 7), the channel
/// configuration and a sampling index whose rate is the configured one (the core rate for
/// explicit HE-AAC); it is refused exactly when the frame exceeds 8191 bytes or the config
/// has no ADTS form.
pub fn aac_config(data: &[u8]) {
    let Some((payload_len, asc)) = split_aac(data) else {
        return;
    };
    let asc = Bytes::copy_from_slice(asc);
    let Ok(cfg) = AacConfig::parse(asc.clone()) else {
        return;
    };
    assert_eq!(cfg.asc, asc);
    assert_eq!(AacConfig::parse(asc).as_ref(), Ok(&cfg));
    assert_eq!(cfg.codec_string(), format!("mp4a.40.{}", cfg.object_type));
    assert!(cfg.sample_rate > 0 && cfg.object_type > 0);
    assert!(cfg.channels <= 15 && cfg.sample_rate_index <= 15);

    let mut out = BytesMut::from(&b"x"[..]);
    match cfg.write_adts_header(payload_len, &mut out) {
        Ok(()) => {
            assert_eq!(out.len(), 1 + ADTS_HEADER_LEN);
            let h = &out[1..];
            assert_eq!(
                (h[0], h[1]),
                (0xff, 0xf1),
                "syncword, MPEG-4, layer 0, no CRC"
            );
            let profile = h[2] >> 6;
            assert!(profile <= 3);
            let index = (h[2] >> 2) & 0x0f;
            assert!(index <= 12);
            if cfg.sample_rate_index == 15 {
                assert_eq!(RATES[usize::from(index)], cfg.sample_rate);
            } else {
                assert_eq!(index, cfg.sample_rate_index);
            }
            let channels = ((h[2] & 1) << 2) | (h[3] >> 6);
            assert_eq!(channels, cfg.channels);
            let len =
                (usize::from(h[3] & 3) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
            assert_eq!(len, payload_len + ADTS_HEADER_LEN);
        }
        Err(AacError::FrameTooLarge { len, max }) => {
            assert_eq!(
                (len, max),
                (payload_len + ADTS_HEADER_LEN, MAX_ADTS_FRAME_LEN)
            );
            assert!(len > max);
            assert_eq!(&out[..], b"x");
        }
        Err(e) => {
            assert!(payload_len + ADTS_HEADER_LEN <= MAX_ADTS_FRAME_LEN, "{e:?}");
            assert!(matches!(e, AacError::Invalid { .. }));
            assert_eq!(&out[..], b"x");
        }
    }
}

/// The query string of a Media Playlist request (RFC 8216bis 6.2.5: `_HLS_msn`, `_HLS_part`,
/// `_HLS_skip`) into `hls::parse_delivery_directives` and `hls::parse_blocking_request`, then
/// the two decisions the HTTP edge makes with the result, `BlockingRequest::is_satisfied_by`
/// and `check_advance`, against a playlist described by the first 8 input bytes (layout in
/// `formats::split_hls`; the rest, as UTF-8, is the query).
///
/// Checks: both parsers agree; an `InvalidValue` echoes at most 32 bytes of the query; a
/// parsed request written back as a query parses to the same request; a request the playlist
/// already satisfies is never refused as too far ahead (when the playlist's sequence numbers
/// fit in 64 bits, which `MediaPlaylist::validate` requires).
pub fn hls_query(data: &[u8]) {
    let Some((shape, query)) = split_hls(data) else {
        return;
    };
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    let directives = parse_delivery_directives(query);
    let blocking = parse_blocking_request(query);
    assert_eq!(blocking, directives.clone().map(|d| d.blocking));
    if let Err(DirectiveError::InvalidValue { value, .. }) = &directives {
        assert!(value.len() <= 32 && query.contains(value.as_str()));
    }
    let Ok(Some(request)) = blocking else {
        return;
    };
    let mut again = format!("_HLS_msn={}", request.msn);
    if let Some(part) = request.part {
        again.push_str(&format!("&_HLS_part={part}"));
    }
    assert_eq!(parse_blocking_request(&again), Ok(Some(request)));

    let p = playlist(shape);
    let satisfied = request.is_satisfied_by(&p);
    let advance = request.check_advance(&p);
    let representable = p
        .media_sequence
        .checked_add(p.segments.len() as u64)
        .is_some();
    if satisfied && representable {
        assert_eq!(
            advance,
            Ok(()),
            "satisfied now, yet refused as too far ahead"
        );
    }
}

/// Frame limit of the `peer_wire` frame decoder (a replication stream's media frames fit).
pub const PEER_FRAME_LIMIT: usize = 64 * 1024;

/// Bytes from another node (`hivecast_proto::peer`; layout in `formats::split_peer`: a cut
/// selector, then the wire bytes): decoded whole with `PeerRequest::decode` and
/// `PeerResponse::decode` (one message per QUIC stream), and fed to a
/// `FrameDecoder::new(64 KiB)` pulling `MediaFrame`s (the replication push), once in one
/// piece and once in two pieces split where the selector says.
///
/// Checks: a decoded message re-encodes to at most as many bytes as it was decoded from
/// (postcard accepts over-long varints, so the input itself need not be canonical), and the
/// re-encoding decodes to the same value and re-encodes to the same bytes. Frames: after
/// every pull the decoder holds exactly what a reference walk of the stream says (a frame
/// is taken whole, a header over the limit is `TooLarge` with the announced length before
/// its body arrives, an incomplete frame is `Ok(None)` and consumes nothing, a malformed
/// body is consumed with its header); `buffered()` never exceeds the bytes pushed; the
/// frames, and the error that ends them, do not depend on the split; every frame goes back
/// through `encode_frame` and a fresh decoder to the same value, in at most as many bytes.
///
/// "The same value": `PartialEq`, except that a NaN (`NodeLoad`'s f32s, `Part::duration`,
/// `WireTrackInfo::frame_rate`, `Stats`' seconds) is never equal to itself, so values that differ under `==`
/// must then have the same `Debug` text. The byte comparison of the re-encodings covers the
/// NaN's bits exactly (postcard writes floats as raw little-endian bytes).
pub fn peer_wire(data: &[u8]) {
    let Some((cut, wire)) = split_peer(data) else {
        return;
    };
    if let Ok(request) = PeerRequest::decode(wire) {
        let bytes = request.encode();
        assert!(bytes.len() <= wire.len(), "request re-encodes longer");
        let again = PeerRequest::decode(&bytes).expect("a re-encoded request decodes");
        assert_same(&request, &again);
        assert_eq!(again.encode(), bytes);
    }
    if let Ok(response) = PeerResponse::decode(wire) {
        let bytes = response.encode();
        assert!(bytes.len() <= wire.len(), "response re-encodes longer");
        let again = PeerResponse::decode(&bytes).expect("a re-encoded response decodes");
        assert_same(&response, &again);
        assert_eq!(again.encode(), bytes);
    }
    let whole = feed_frames(wire, &[wire.len()]);
    let split = feed_frames(wire, &[cut, wire.len()]);
    assert_eq!(
        (&whole.0, &whole.1),
        (&split.0, &split.1),
        "frames depend on the split at {cut}"
    );
    if whole.1.is_none() {
        assert_eq!(whole.2, split.2);
    }
}

/// Pushes `wire` into a fresh frame decoder in pieces ending at each of `ends`, pulling
/// `MediaFrame`s after every push until `Ok(None)` or an error (then it stops: the stream is
/// unusable). Returns the frames' canonical encodings, the error, and what is left buffered.
fn feed_frames(wire: &[u8], ends: &[usize]) -> (Vec<Vec<u8>>, Option<WireError>, usize) {
    let mut d = FrameDecoder::new(PEER_FRAME_LIMIT);
    let mut frames = Vec::new();
    // Reference walk: bytes pushed so far, and where the next frame starts.
    let (mut pushed, mut pos) = (0usize, 0usize);
    for &end in ends {
        d.push(&wire[pushed..end]);
        pushed = end;
        assert_eq!(d.buffered(), pushed - pos);
        loop {
            let pending = &wire[pos..pushed];
            let announced = pending
                .first_chunk::<4>()
                .map(|h| u32::from_be_bytes(*h) as usize);
            let result = d.next_frame::<MediaFrame>();
            assert!(d.buffered() <= wire.len());
            match (announced, result) {
                (None, Ok(None)) => break,
                (Some(len), Ok(None)) => {
                    assert!(len <= PEER_FRAME_LIMIT && pending.len() < 4 + len);
                    assert_eq!(d.buffered(), pending.len());
                    break;
                }
                (Some(len), Ok(Some(frame))) => {
                    assert!(len <= PEER_FRAME_LIMIT && pending.len() >= 4 + len);
                    pos += 4 + len;
                    assert_eq!(d.buffered(), pushed - pos);
                    frames.push(frame_round_trip(&frame, len));
                }
                (Some(len), Err(e)) => {
                    match &e {
                        WireError::TooLarge { len: l, limit } => {
                            assert_eq!((*l, *limit), (len, PEER_FRAME_LIMIT));
                            assert!(len > PEER_FRAME_LIMIT);
                            assert_eq!(d.buffered(), pending.len());
                        }
                        WireError::Malformed(_) => {
                            assert!(len <= PEER_FRAME_LIMIT && pending.len() >= 4 + len);
                            assert_eq!(d.buffered(), pending.len() - 4 - len);
                        }
                    }
                    return (frames, Some(e), d.buffered());
                }
                (None, r) => panic!("{r:?} from fewer than 4 buffered bytes"),
            }
        }
    }
    (frames, None, d.buffered())
}

/// `frame`, decoded from a body of `body_len` bytes, through `encode_frame` and a fresh
/// decoder. Returns its canonical body.
fn frame_round_trip(frame: &MediaFrame, body_len: usize) -> Vec<u8> {
    let framed = encode_frame(frame);
    let (header, body) = framed.split_first_chunk::<4>().expect("a frame header");
    assert_eq!(u32::from_be_bytes(*header) as usize, body.len());
    assert!(body.len() <= body_len, "frame re-encodes longer");
    let mut fresh = FrameDecoder::new(PEER_FRAME_LIMIT);
    fresh.push(&framed);
    let again = fresh
        .next_frame::<MediaFrame>()
        .expect("a re-encoded frame decodes")
        .expect("a re-encoded frame is whole");
    assert_eq!(fresh.buffered(), 0);
    assert_same(frame, &again);
    assert_eq!(encode_frame(&again), framed);
    body.to_vec()
}

/// `a == b`, or the same `Debug` text where `==` fails because of a NaN.
fn assert_same<T: PartialEq + std::fmt::Debug>(a: &T, b: &T) {
    if a != b {
        assert_eq!(
            format!("{a:?}"),
            format!("{b:?}"),
            "changed in a round trip"
        );
    }
}

/// Feeds `data` in pieces of `piece` bytes; answers nothing (a peer that sends requests
/// here gets them queued). Returns the events, the first error and the handshake state.
fn drive(data: &[u8], piece: usize) -> (Vec<RtmpEvent>, Option<RtmpError>, bool) {
    let limits = RtmpLimits::default();
    let mut conn = ServerConnection::new(limits);
    let mut out = BytesMut::new();
    let mut events = Vec::new();
    let mut error = None;
    for p in data.chunks(piece) {
        match conn.feed(p) {
            Ok(()) => {}
            Err(e) => {
                assert!(!matches!(e, RtmpError::Internal { .. }), "{e:?}");
                assert_eq!(conn.feed(p), Err(RtmpError::Failed));
                error = Some(e);
            }
        }
        while let Some(ev) = conn.poll_event() {
            events.push(ev);
        }
        out.clear();
        conn.poll_transmit(&mut out);
        if error.is_none() {
            assert!(out.len() <= limits.max_pending_output);
        }
        if error.is_some() {
            break;
        }
    }
    (events, error, conn.is_handshake_done())
}

/// Nesting depth as proto's walker counts it: an object, ECMA array or strict array is one
/// level deeper than the value holding it; top-level scalars are depth 0.
fn depth(v: &Amf0Value) -> u32 {
    match v {
        Amf0Value::Object(props) => 1 + props.values().map(depth).max().unwrap_or(0),
        Amf0Value::StrictArray(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// `part` is `whole[offset..]`, sharing its memory.
fn is_tail_of(part: &Bytes, whole: &Bytes, offset: usize) -> bool {
    whole.len() >= offset
        && part.len() == whole.len() - offset
        && (part.is_empty() || std::ptr::eq(part.as_ptr(), whole[offset..].as_ptr()))
}

fn within(part: &Bytes, whole: &Bytes) -> bool {
    let (start, end) = (
        whole.as_ptr() as usize,
        whole.as_ptr() as usize + whole.len(),
    );
    let p = part.as_ptr() as usize;
    p >= start && p + part.len() <= end
}

const RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Part targets hivecast and other servers use, plus the edges of the Advance Part Limit
/// arithmetic (1 ms, just under and over a second).
const PART_TARGETS: [f64; 8] = [0.2, 0.333, 0.5, 1.0, 2.0, 0.001, 0.999, 1.001];

fn playlist(shape: [u8; 8]) -> MediaPlaylist {
    let [flags, parts_per_segment, part_target, s0, s1, s2, s3, s4] = shape;
    let mut media_sequence = u64::from_be_bytes([0, 0, 0, s0 & 0x7f, s1, s2, s3, s4]);
    if s0 & 0x80 != 0 {
        // Near the end of the 64-bit range.
        media_sequence = u64::MAX - (media_sequence & 0xff);
    }
    let mut p = MediaPlaylist::new(9, 2, media_sequence);
    p.ended = flags & 1 != 0;
    if flags & 2 != 0 {
        p.part_inf = PartInf::new(PART_TARGETS[usize::from(part_target & 7)]).ok();
    }
    let parts = usize::from(parts_per_segment & 7);
    for i in 0..usize::from((flags >> 2) & 3) {
        let mut s = SegmentEntry::new(format!("seg{i}.mp4"), 2.0);
        s.parts = (0..parts)
            .map(|j| PartEntry::new(format!("seg{i}.{j}.mp4"), 0.2, j == 0))
            .collect();
        p.segments.push(s);
    }
    p.trailing_parts = (0..usize::from((flags >> 4) & 7))
        .map(|j| PartEntry::new(format!("next.{j}.mp4"), 0.2, j == 0))
        .collect();
    p
}

/// CMCD (CTA-5004, `hivecast_proto::cmcd`) as players send it, the whole input three ways:
/// as the values of the `CMCD-*` headers, split on `\n` (which a header value cannot hold),
/// into `cmcd::from_headers`; and, when it is UTF-8, as one payload into `parse_payload` and
/// as a query string into `from_query`.
///
/// Checks: whatever parses, `encode` writes back in at most as many bytes as it came from (the
/// payload, or the header values joined; for a query, within `MAX_PAYLOAD_LEN`), and that
/// parses to the same value and encodes to the same text; `encode_query` and `encode_headers`
/// go back through `from_query` and `from_headers` to the same value; `TooLong` exactly when
/// the payload (or the joined header values) is over `MAX_PAYLOAD_LEN`, reporting that length;
/// the headers' result is the `merge` of each value's `parse_payload`, in order; the first
/// `CMCD` query parameter wins, and one appended to a query without any is found; an error
/// echoes at most `MAX_ERROR_KEY_CHARS` characters of a key.
pub fn cmcd(data: &[u8]) {
    let too_long = |len| CmcdError::TooLong {
        len,
        max: cmcd::MAX_PAYLOAD_LEN,
    };
    let values: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let headers = cmcd::from_headers(values.iter().copied());
    if data.len() > cmcd::MAX_PAYLOAD_LEN {
        assert_eq!(headers, Err(too_long(data.len())));
    } else {
        let mut reference = Ok(Cmcd::default());
        for v in &values {
            reference = reference.and_then(|mut acc| {
                let s = std::str::from_utf8(v).map_err(|_| CmcdError::NotUtf8)?;
                cmcd::merge(&mut acc, cmcd::parse_payload(s)?);
                Ok(acc)
            });
        }
        assert_eq!(
            headers,
            reference.map(Some),
            "headers are not the merge of the values"
        );
    }
    match &headers {
        Ok(Some(c)) => cmcd_round_trip(c, data.len()),
        Ok(None) => panic!("at least one header value was given"),
        Err(e) => cmcd_error(e),
    }

    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match cmcd::parse_payload(s) {
        Ok(c) => {
            assert!(s.len() <= cmcd::MAX_PAYLOAD_LEN);
            cmcd_round_trip(&c, s.len());
        }
        Err(e) => {
            assert_eq!(
                s.len() > cmcd::MAX_PAYLOAD_LEN,
                e == too_long(s.len()),
                "{e:?}"
            );
            cmcd_error(&e);
        }
    }
    let query = cmcd::from_query(s);
    match &query {
        Ok(Some(c)) => cmcd_round_trip(c, cmcd::MAX_PAYLOAD_LEN),
        Ok(None) => {}
        Err(e) => cmcd_error(e),
    }
    let appended = cmcd::from_query(&format!("{s}&CMCD=br%3D1"));
    match query {
        Ok(None) => assert_eq!(
            appended,
            Ok(Some(Cmcd {
                br: Some(1),
                ..Cmcd::default()
            }))
        ),
        first => assert_eq!(appended, first, "the first CMCD parameter must win"),
    }
}

/// `encode` and friends on a parsed value: see [`cmcd`].
fn cmcd_round_trip(c: &Cmcd, came_from: usize) {
    let payload = cmcd::encode(c);
    assert!(
        payload.len() <= came_from,
        "{payload:?} is longer than the {came_from} bytes it came from"
    );
    let again = cmcd::parse_payload(&payload).expect("an encoded payload parses");
    assert_eq!(&again, c);
    assert_eq!(cmcd::encode(&again), payload);
    let expected = Some(c.clone()).filter(|_| !payload.is_empty());
    assert_eq!(
        cmcd::from_query(&cmcd::encode_query(c)),
        Ok(expected.clone())
    );
    let headers = cmcd::encode_headers(c);
    assert_eq!(
        cmcd::from_headers(headers.iter().map(|(_, v)| v.as_bytes())),
        Ok(expected)
    );
}

fn cmcd_error(e: &CmcdError) {
    match e {
        CmcdError::Malformed { key, .. } => {
            assert!(key.chars().count() <= cmcd::MAX_ERROR_KEY_CHARS)
        }
        CmcdError::StringTooLong { len, max, .. } => assert!(len > max),
        CmcdError::TooLong { len, max } => assert!(len > max),
        CmcdError::NotUtf8 => {}
    }
}

/// The body of `POST /v1/beacon` (`hivecast_proto::beacon::parse_beacon`): the whole input.
///
/// Checks: `TooLarge` exactly when the body is over `MAX_BEACON_BYTES`, and `NotUtf8` exactly
/// when it is not UTF-8 (and fits); at most `MAX_EVENTS` events, each passing the rules
/// `BeaconEvent` lists (checked here independently: charsets and lengths of `sid`, `stream`
/// and `rendition`, a finite non-negative `latency_ms`, `message` at most 256 characters);
/// echoed values at most `MAX_ECHO_CHARS` characters; and the events, written back as JSON (an
/// array, and a bare object when there is one), parse to the same events when that JSON fits
/// the limit ("the same": `latency_ms` within 4 ulp, since serde_json's default float parsing
/// is not always exact on a round trip).
pub fn beacon(data: &[u8]) {
    let result = parse_beacon(data);
    if data.len() > MAX_BEACON_BYTES {
        assert!(
            matches!(result, Err(BeaconError::TooLarge { len, max: MAX_BEACON_BYTES }) if len == data.len())
        );
        return;
    }
    assert_eq!(
        std::str::from_utf8(data).is_err(),
        matches!(result, Err(BeaconError::NotUtf8))
    );
    let events = match result {
        Ok(events) => events,
        Err(BeaconError::UnknownEvent { event, .. }) => {
            assert!(event.chars().count() <= MAX_ECHO_CHARS);
            assert!(BeaconKind::parse(&event).is_none());
            return;
        }
        Err(BeaconError::InvalidField { value, .. }) => {
            assert!(value.chars().count() <= MAX_ECHO_CHARS);
            return;
        }
        Err(BeaconError::TooManyEvents { count, max }) => {
            assert!(count > max && max == MAX_EVENTS);
            return;
        }
        Err(_) => return,
    };
    assert!(events.len() <= MAX_EVENTS);
    let charset = |s: &str, max: usize, extra: &[u8]| {
        (1..=max).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b) || extra.contains(&b))
    };
    for e in &events {
        assert!(charset(&e.sid, 64, b"."), "sid {:?}", e.sid);
        assert!(charset(&e.stream, 64, b""), "stream {:?}", e.stream);
        if let Some(r) = &e.rendition {
            assert!(charset(r, 32, b""), "rendition {r:?}");
        }
        if let Some(l) = e.latency_ms {
            assert!(l.is_finite() && l >= 0.0, "latency_ms {l}");
        }
        if let Some(m) = &e.message {
            assert!(m.chars().count() <= 256);
        }
    }

    let json: Vec<serde_json::Value> = events.iter().map(beacon_json).collect();
    let array = serde_json::to_vec(&json).expect("events serialize");
    let mut forms = vec![array];
    if let [one] = &json[..] {
        forms.push(serde_json::to_vec(one).expect("an event serializes"));
    }
    for body in forms {
        if body.len() > MAX_BEACON_BYTES {
            // Integers given as floats (`"latency_ms":100` comes back as `100.0`) can grow.
            continue;
        }
        let again = parse_beacon(&body).expect("events written back parse");
        assert_eq!(again.len(), events.len());
        for (a, e) in again.iter().zip(&events) {
            let (al, el) = (a.latency_ms, e.latency_ms);
            assert_eq!(al.is_some(), el.is_some());
            if let (Some(al), Some(el)) = (al, el) {
                assert!((al - el).abs() <= el * 4.0 * f64::EPSILON, "{al} != {el}");
            }
            let strip = |e: &BeaconEvent| BeaconEvent {
                latency_ms: None,
                ..e.clone()
            };
            assert_eq!(strip(a), strip(e));
        }
    }
}

fn beacon_json(e: &BeaconEvent) -> serde_json::Value {
    serde_json::json!({
        "sid": e.sid,
        "stream": e.stream,
        "event": e.kind.as_str(),
        "rendition": e.rendition,
        "bitrate_kbps": e.bitrate_kbps,
        "buffer_ms": e.buffer_ms,
        "latency_ms": e.latency_ms,
        "stall_ms": e.stall_ms,
        "dropped_frames": e.dropped_frames,
        "bytes": e.bytes,
        "message": e.message,
    })
}
