//! FLV tag bodies as carried in RTMP video (type 9) and audio (type 8) messages: VIDEODATA and
//! AUDIODATA of the FLV spec v10, annex E.4.3 and E.4.2, plus [`file`](mod@file), a minimal FLV file
//! reader for tests and tools.
//!
//! Owns: classifying a message body into sequence header / frame / end of sequence, the
//! composition time offset, and naming the codec when it is not H.264 or AAC.
//! Does not: parse the avcC record or the AudioSpecificConfig (see [`crate::codec`]), or
//! check NAL units; script data (onMetaData) is handled by the RTMP session.
//!
//! Invariants: every returned `Bytes` is a zero-copy slice of the input; no function panics on
//! peer bytes. An error here concerns one message only: the caller decides whether to drop the
//! message or end the stream.

use bytes::Bytes;

/// FLV VIDEODATA CodecID for AVC (H.264), the only video codec accepted.
pub const VIDEO_CODEC_AVC: u8 = 7;
/// FLV AUDIODATA SoundFormat for AAC, the only audio codec accepted.
pub const AUDIO_FORMAT_AAC: u8 = 10;

/// Errors from parsing FLV tag bodies.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlvError {
    /// The body is shorter than its header.
    #[error("flv: truncated tag body: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// A legacy (non-enhanced) video codec other than AVC.
    #[error(
        "flv: unsupported video codec {name} (CodecID {codec_id}); only H.264/AVC is supported"
    )]
    UnsupportedVideoCodec {
        /// The FLV CodecID.
        codec_id: u8,
        /// Its name from the FLV spec (or a de facto extension such as 12 = HEVC).
        name: &'static str,
    },
    /// An Enhanced RTMP video tag (ex-header, bit 0x80) with a codec other than `avc1`.
    #[error("flv: unsupported enhanced-rtmp video codec '{}'; only H.264/AVC is supported", fourcc_str(.fourcc))]
    UnsupportedVideoFourCc {
        /// The FourCC, e.g. `hvc1`, `av01`, `vp09`.
        fourcc: [u8; 4],
    },
    /// An audio format other than AAC.
    #[error("flv: unsupported audio codec {name} (SoundFormat {format}); only AAC is supported")]
    UnsupportedAudioCodec {
        /// The FLV SoundFormat.
        format: u8,
        /// Its name from the FLV spec.
        name: &'static str,
    },
    /// An Enhanced RTMP audio tag (SoundFormat 9 = ex-header) naming a FourCC, e.g. `Opus`.
    #[error("flv: unsupported enhanced-rtmp audio codec '{}'; only AAC is supported", fourcc_str(.fourcc))]
    UnsupportedAudioFourCc {
        /// The FourCC, e.g. `Opus`, `fLaC`, `ac-3`.
        fourcc: [u8; 4],
    },
    /// AVCPacketType (legacy) or PacketType (enhanced) we do not know.
    #[error("flv: unknown video packet type {packet_type}")]
    InvalidVideoPacketType {
        /// The offending packet type.
        packet_type: u8,
    },
    /// A video tag whose FrameType we do not carry (5 = video info/command frame).
    #[error("flv: unsupported video frame type {frame_type}")]
    UnsupportedVideoFrameType {
        /// The FrameType nibble.
        frame_type: u8,
    },
    /// AACPacketType other than 0 (sequence header) or 1 (raw).
    #[error("flv: unknown AAC packet type {packet_type}")]
    InvalidAacPacketType {
        /// The offending packet type.
        packet_type: u8,
    },
    /// An FLV file does not start with the `FLV` signature, version 1.
    #[error("flv: not an FLV file (signature {signature:?}, version {version})")]
    InvalidFileHeader {
        /// The first three bytes.
        signature: [u8; 3],
        /// The version byte.
        version: u8,
    },
}

fn fourcc_str(f: &[u8; 4]) -> String {
    f.iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect()
}

/// A parsed video message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlvVideo {
    /// AVC sequence header: the AVCDecoderConfigurationRecord (see
    /// [`crate::codec::h264::AvcConfig::parse`]).
    SequenceHeader(Bytes),
    /// One access unit.
    Frame {
        /// FrameType 1 (key frame, a random access point for AVC).
        keyframe: bool,
        /// CompositionTime (pts - dts) in milliseconds, a signed 24-bit value.
        cts_ms: i32,
        /// The NAL units as sent: AVCC with the record's NAL length size.
        data: Bytes,
    },
    /// AVC end of sequence: the publisher ends this coded video sequence.
    EndOfSequence,
}

/// A parsed audio message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlvAudio {
    /// AAC sequence header: the AudioSpecificConfig (see
    /// [`crate::codec::aac::AacConfig::parse`]).
    SequenceHeader(Bytes),
    /// One raw AAC frame (no ADTS header).
    Frame(Bytes),
}

/// Name of a legacy FLV video CodecID (FLV spec v10 E.4.3.1; 12 = HEVC is the de facto
/// extension used by Chinese CDNs and ffmpeg forks before Enhanced RTMP).
pub fn video_codec_name(codec_id: u8) -> &'static str {
    match codec_id {
        1 => "JPEG",
        2 => "Sorenson H.263 (FLV1)",
        3 => "Screen video",
        4 => "On2 VP6",
        5 => "On2 VP6 with alpha",
        6 => "Screen video v2",
        7 => "AVC (H.264)",
        12 => "HEVC (H.265)",
        _ => "unknown",
    }
}

/// Name of an FLV SoundFormat (FLV spec v10 E.4.2.1).
pub fn audio_format_name(format: u8) -> &'static str {
    match format {
        0 => "Linear PCM, platform endian",
        1 => "ADPCM",
        2 => "MP3",
        3 => "Linear PCM, little endian",
        4 => "Nellymoser 16 kHz mono",
        5 => "Nellymoser 8 kHz mono",
        6 => "Nellymoser",
        7 => "G.711 A-law",
        8 => "G.711 mu-law",
        9 => "reserved (Enhanced RTMP ex-header)",
        10 => "AAC",
        11 => "Speex",
        14 => "MP3 8 kHz",
        15 => "Device-specific sound",
        _ => "reserved",
    }
}

fn truncated(need: usize, payload: &Bytes) -> FlvError {
    FlvError::Truncated {
        need,
        have: payload.len(),
    }
}

/// Signed 24-bit big endian (FLV SI24).
fn si24(b: [u8; 3]) -> i32 {
    let v = (i32::from(b[0]) << 16) | (i32::from(b[1]) << 8) | i32::from(b[2]);
    (v << 8) >> 8
}

/// Parses an RTMP video message payload (= FLV VIDEODATA, E.4.3.1).
///
/// Legacy tags: `FrameType:4 CodecID:4`, then for AVC `AVCPacketType:8 CompositionTime:SI24`.
/// Enhanced RTMP tags (first byte has bit 0x80) carry `FrameType:3 PacketType:4 FourCC:32`;
/// FourCC `avc1` is accepted (PacketType 0 sequence start, 1 coded frames with SI24
/// composition time, 2 sequence end, 3 coded frames without composition time), any other
/// FourCC is reported by name.
pub fn parse_video(payload: &Bytes) -> Result<FlvVideo, FlvError> {
    let first = *payload.first().ok_or(truncated(1, payload))?;
    if first & 0x80 != 0 {
        return parse_enhanced_video(first, payload);
    }
    let frame_type = first >> 4;
    let codec_id = first & 0x0f;
    if codec_id != VIDEO_CODEC_AVC {
        return Err(FlvError::UnsupportedVideoCodec {
            codec_id,
            name: video_codec_name(codec_id),
        });
    }
    check_frame_type(frame_type)?;
    let head = payload.get(..5).ok_or(truncated(5, payload))?;
    let cts_ms = si24([head[2], head[3], head[4]]);
    match head[1] {
        0 => Ok(FlvVideo::SequenceHeader(payload.slice(5..))),
        1 => Ok(FlvVideo::Frame {
            keyframe: frame_type == 1,
            cts_ms,
            data: payload.slice(5..),
        }),
        2 => Ok(FlvVideo::EndOfSequence),
        packet_type => Err(FlvError::InvalidVideoPacketType { packet_type }),
    }
}

/// FrameType 1..=4 carry video; 5 is a video info/command frame (one UI8, no picture).
fn check_frame_type(frame_type: u8) -> Result<(), FlvError> {
    if (1..=4).contains(&frame_type) {
        Ok(())
    } else {
        Err(FlvError::UnsupportedVideoFrameType { frame_type })
    }
}

fn parse_enhanced_video(first: u8, payload: &Bytes) -> Result<FlvVideo, FlvError> {
    let frame_type = (first >> 4) & 0x07;
    let packet_type = first & 0x0f;
    let head = payload.get(..5).ok_or(truncated(5, payload))?;
    let fourcc = [head[1], head[2], head[3], head[4]];
    if &fourcc != b"avc1" {
        return Err(FlvError::UnsupportedVideoFourCc { fourcc });
    }
    check_frame_type(frame_type)?;
    match packet_type {
        0 => Ok(FlvVideo::SequenceHeader(payload.slice(5..))),
        1 => {
            let h = payload.get(..8).ok_or(truncated(8, payload))?;
            Ok(FlvVideo::Frame {
                keyframe: frame_type == 1,
                cts_ms: si24([h[5], h[6], h[7]]),
                data: payload.slice(8..),
            })
        }
        2 => Ok(FlvVideo::EndOfSequence),
        3 => Ok(FlvVideo::Frame {
            keyframe: frame_type == 1,
            cts_ms: 0,
            data: payload.slice(5..),
        }),
        packet_type => Err(FlvError::InvalidVideoPacketType { packet_type }),
    }
}

/// Parses an RTMP audio message payload (= FLV AUDIODATA, E.4.2.1):
/// `SoundFormat:4 SoundRate:2 SoundSize:1 SoundType:1`, then for AAC `AACPacketType:8`.
/// The rate/size/type bits are ignored for AAC (the AudioSpecificConfig is authoritative,
/// E.4.2.1 says so). SoundFormat 9 is the Enhanced RTMP ex-header; its FourCC is reported.
pub fn parse_audio(payload: &Bytes) -> Result<FlvAudio, FlvError> {
    let first = *payload.first().ok_or(truncated(1, payload))?;
    let format = first >> 4;
    if format == 9 {
        let head = payload.get(..5).ok_or(truncated(5, payload))?;
        return Err(FlvError::UnsupportedAudioFourCc {
            fourcc: [head[1], head[2], head[3], head[4]],
        });
    }
    if format != AUDIO_FORMAT_AAC {
        return Err(FlvError::UnsupportedAudioCodec {
            format,
            name: audio_format_name(format),
        });
    }
    let packet_type = *payload.get(1).ok_or(truncated(2, payload))?;
    match packet_type {
        0 => Ok(FlvAudio::SequenceHeader(payload.slice(2..))),
        1 => Ok(FlvAudio::Frame(payload.slice(2..))),
        packet_type => Err(FlvError::InvalidAacPacketType { packet_type }),
    }
}

/// A minimal FLV *file* reader (FLV spec v10 annex E.2, E.3), used by tests and tools to walk
/// captures in `proto/tests/data/` and feed their tag bodies to [`parse_video`] and
/// [`parse_audio`]. Not used on the ingest path (RTMP carries tag bodies, not files).
pub mod file {
    use super::FlvError;
    use bytes::Bytes;

    /// FLV tag type for audio.
    pub const TAG_AUDIO: u8 = 8;
    /// FLV tag type for video.
    pub const TAG_VIDEO: u8 = 9;
    /// FLV tag type for script data (onMetaData).
    pub const TAG_SCRIPT: u8 = 18;

    /// One tag of an FLV file.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct FlvTag {
        /// TagType (8 audio, 9 video, 18 script data), filter bit removed.
        pub tag_type: u8,
        /// Timestamp in milliseconds (24 bits plus the extended upper byte).
        pub timestamp_ms: u32,
        /// The tag body (what an RTMP message of the same type carries).
        pub data: Bytes,
    }

    /// Iterates over the tags of an FLV file held in memory.
    #[derive(Debug, Clone)]
    pub struct FlvFileReader {
        data: Bytes,
        pos: usize,
        failed: bool,
    }

    impl FlvFileReader {
        /// Checks the FLV header (`FLV`, version 1) and positions after it and the first
        /// PreviousTagSize.
        pub fn new(data: Bytes) -> Result<FlvFileReader, FlvError> {
            let head = data.get(..9).ok_or(FlvError::Truncated {
                need: 9,
                have: data.len(),
            })?;
            if &head[..3] != b"FLV" || head[3] != 1 {
                return Err(FlvError::InvalidFileHeader {
                    signature: [head[0], head[1], head[2]],
                    version: head[3],
                });
            }
            let header_len = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) as usize;
            let pos = header_len.saturating_add(4); // skip PreviousTagSize0
            if pos > data.len() {
                return Err(FlvError::Truncated {
                    need: pos,
                    have: data.len(),
                });
            }
            Ok(FlvFileReader {
                data,
                pos,
                failed: false,
            })
        }
    }

    impl Iterator for FlvFileReader {
        type Item = Result<FlvTag, FlvError>;

        fn next(&mut self) -> Option<Self::Item> {
            if self.failed || self.pos >= self.data.len() {
                return None;
            }
            let have = self.data.len();
            let Some(h) = self.data.get(self.pos..self.pos + 11) else {
                self.failed = true;
                return Some(Err(FlvError::Truncated {
                    need: self.pos + 11,
                    have,
                }));
            };
            let tag_type = h[0] & 0x1f;
            let size = (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3]);
            let timestamp_ms = (u32::from(h[7]) << 24)
                | (u32::from(h[4]) << 16)
                | (u32::from(h[5]) << 8)
                | u32::from(h[6]);
            let start = self.pos + 11;
            let end = start + size;
            if end + 4 > have {
                self.failed = true;
                return Some(Err(FlvError::Truncated {
                    need: end + 4,
                    have,
                }));
            }
            self.pos = end + 4; // body, then PreviousTagSize
            Some(Ok(FlvTag {
                tag_type,
                timestamp_ms,
                data: self.data.slice(start..end),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::file::{FlvFileReader, TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO};
    use super::*;
    use crate::codec::aac::AacConfig;
    use crate::codec::h264::{self, AvcConfig};
    use proptest::prelude::*;

    #[test]
    fn avc_frames_and_headers() {
        let seq = Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f]);
        assert_eq!(
            parse_video(&seq).unwrap(),
            FlvVideo::SequenceHeader(Bytes::from_static(&[1, 0x64, 0, 0x1f]))
        );
        let key = Bytes::from_static(&[0x17, 1, 0, 0, 0x42, 0, 0, 0, 1, 0x65]);
        match parse_video(&key).unwrap() {
            FlvVideo::Frame {
                keyframe,
                cts_ms,
                data,
            } => {
                assert!(keyframe);
                assert_eq!(cts_ms, 0x42);
                assert_eq!(&data[..], &[0, 0, 0, 1, 0x65]);
                // zero copy: data points into the payload
                assert_eq!(data.as_ptr(), key[5..].as_ptr());
            }
            other => panic!("unexpected {other:?}"),
        }
        let inter_neg = Bytes::from_static(&[0x27, 1, 0xff, 0xff, 0xdf, 0, 0, 0, 1, 0x41]);
        assert!(matches!(
            parse_video(&inter_neg).unwrap(),
            FlvVideo::Frame {
                keyframe: false,
                cts_ms: -33,
                ..
            }
        ));
        assert_eq!(
            parse_video(&Bytes::from_static(&[0x17, 2, 0, 0, 0])).unwrap(),
            FlvVideo::EndOfSequence
        );
        assert_eq!(
            parse_video(&Bytes::from_static(&[0x17, 3, 0, 0, 0])).unwrap_err(),
            FlvError::InvalidVideoPacketType { packet_type: 3 }
        );
        assert_eq!(
            parse_video(&Bytes::from_static(&[0x17, 1, 0])).unwrap_err(),
            FlvError::Truncated { need: 5, have: 3 }
        );
        assert_eq!(
            parse_video(&Bytes::new()).unwrap_err(),
            FlvError::Truncated { need: 1, have: 0 }
        );
        assert_eq!(
            parse_video(&Bytes::from_static(&[0x57, 0])).unwrap_err(),
            FlvError::UnsupportedVideoFrameType { frame_type: 5 }
        );
    }

    #[test]
    fn unsupported_codecs_are_named() {
        for (id, name) in [
            (1u8, "JPEG"),
            (2, "Sorenson H.263 (FLV1)"),
            (3, "Screen video"),
            (4, "On2 VP6"),
            (5, "On2 VP6 with alpha"),
            (6, "Screen video v2"),
            (12, "HEVC (H.265)"),
        ] {
            let p = Bytes::from(vec![0x10 | id, 0, 0, 0, 0]);
            assert_eq!(
                parse_video(&p).unwrap_err(),
                FlvError::UnsupportedVideoCodec { codec_id: id, name }
            );
        }
        let hevc = Bytes::from_static(b"\x90hvc1....");
        let err = parse_video(&hevc).unwrap_err();
        assert_eq!(err, FlvError::UnsupportedVideoFourCc { fourcc: *b"hvc1" });
        assert!(err.to_string().contains("'hvc1'"), "{err}");
        for cc in [b"av01", b"vp09"] {
            let mut p = vec![0x90];
            p.extend_from_slice(cc);
            assert_eq!(
                parse_video(&Bytes::from(p)).unwrap_err(),
                FlvError::UnsupportedVideoFourCc { fourcc: *cc }
            );
        }
        for (fmt, name) in [
            (0u8, "Linear PCM, platform endian"),
            (1, "ADPCM"),
            (2, "MP3"),
            (3, "Linear PCM, little endian"),
            (4, "Nellymoser 16 kHz mono"),
            (5, "Nellymoser 8 kHz mono"),
            (6, "Nellymoser"),
            (7, "G.711 A-law"),
            (8, "G.711 mu-law"),
            (11, "Speex"),
            (14, "MP3 8 kHz"),
            (15, "Device-specific sound"),
        ] {
            let p = Bytes::from(vec![fmt << 4, 0]);
            let err = parse_audio(&p).unwrap_err();
            assert_eq!(err, FlvError::UnsupportedAudioCodec { format: fmt, name });
            assert!(err.to_string().contains(name));
        }
        assert_eq!(
            parse_audio(&Bytes::from_static(b"\x90Opus")).unwrap_err(),
            FlvError::UnsupportedAudioFourCc { fourcc: *b"Opus" }
        );
    }

    #[test]
    fn enhanced_avc1_is_accepted() {
        let seq = Bytes::from_static(b"\x90avc1\x01\x64");
        assert_eq!(
            parse_video(&seq).unwrap(),
            FlvVideo::SequenceHeader(Bytes::from_static(&[1, 0x64]))
        );
        let frame = Bytes::from_static(b"\x91avc1\x00\x00\x21\x00\x00\x00\x01\x65");
        assert!(matches!(
            parse_video(&frame).unwrap(),
            FlvVideo::Frame { keyframe: true, cts_ms: 0x21, ref data } if data.len() == 5
        ));
        let framex = Bytes::from_static(b"\xa3avc1\x00\x00\x00\x01\x41");
        assert!(matches!(
            parse_video(&framex).unwrap(),
            FlvVideo::Frame {
                keyframe: false,
                cts_ms: 0,
                ..
            }
        ));
    }

    #[test]
    fn aac_packets() {
        assert_eq!(
            parse_audio(&Bytes::from_static(&[0xaf, 0, 0x12, 0x10])).unwrap(),
            FlvAudio::SequenceHeader(Bytes::from_static(&[0x12, 0x10]))
        );
        assert_eq!(
            parse_audio(&Bytes::from_static(&[0xaf, 1, 0x21])).unwrap(),
            FlvAudio::Frame(Bytes::from_static(&[0x21]))
        );
        assert_eq!(
            parse_audio(&Bytes::from_static(&[0xaf, 2])).unwrap_err(),
            FlvError::InvalidAacPacketType { packet_type: 2 }
        );
        assert_eq!(
            parse_audio(&Bytes::from_static(&[0xaf])).unwrap_err(),
            FlvError::Truncated { need: 2, have: 1 }
        );
    }

    /// Walks the ffmpeg capture (see tests/data/README.md) through the FLV, H.264 and AAC
    /// parsers: the values checked are what ffprobe reports for the file.
    #[test]
    fn ffmpeg_capture_parses() {
        let data = Bytes::from_static(include_bytes!("../tests/data/flv_testsrc_320x180.flv"));
        let reader = FlvFileReader::new(data).expect("flv header");
        let mut avc = None;
        let mut aac = None;
        let (mut frames, mut keyframes, mut audio_frames, mut scripts) = (0, 0, 0, 0);
        let mut last_video_ts = None;
        for tag in reader {
            let tag = tag.expect("tag");
            match tag.tag_type {
                TAG_VIDEO => match parse_video(&tag.data).expect("video") {
                    FlvVideo::SequenceHeader(rec) => {
                        avc = Some(AvcConfig::parse(rec).expect("avcC"));
                    }
                    FlvVideo::Frame {
                        keyframe,
                        cts_ms,
                        data,
                    } => {
                        let cfg = avc.as_ref().expect("sequence header first");
                        let au = h264::to_avcc4(&data, cfg.nal_length_size).expect("avcc");
                        assert_eq!(keyframe, h264::has_idr(&au), "keyframe flag matches IDR");
                        assert!(cts_ms >= 0);
                        if let Some(prev) = last_video_ts {
                            assert!(tag.timestamp_ms >= prev, "dts monotonic");
                        }
                        last_video_ts = Some(tag.timestamp_ms);
                        frames += 1;
                        keyframes += usize::from(keyframe);
                    }
                    FlvVideo::EndOfSequence => {}
                },
                TAG_AUDIO => match parse_audio(&tag.data).expect("audio") {
                    FlvAudio::SequenceHeader(asc) => {
                        aac = Some(AacConfig::parse(asc).expect("asc"));
                    }
                    FlvAudio::Frame(f) => {
                        assert!(!f.is_empty());
                        audio_frames += 1;
                    }
                },
                TAG_SCRIPT => scripts += 1,
                other => panic!("unexpected tag type {other}"),
            }
        }
        let avc = avc.expect("video sequence header");
        assert_eq!((avc.width, avc.height), (320, 180));
        let codec = avc.codec_string();
        assert!(codec.starts_with("avc1.640"), "{codec}"); // libx264 default: High profile
        let aac = aac.expect("audio sequence header");
        assert_eq!(aac.codec_string(), "mp4a.40.2");
        assert_eq!(aac.sample_rate, 44100);
        assert_eq!(aac.channels, 1);
        // 1 s at 30 fps, GOP 30: 30 frames, one keyframe (ffmpeg may emit one more).
        assert!((30..=32).contains(&frames), "{frames} frames");
        assert!((1..=2).contains(&keyframes), "{keyframes} keyframes");
        // ~44100/1024 = 43 frames for 1 s
        assert!(
            (40..=48).contains(&audio_frames),
            "{audio_frames} audio frames"
        );
        assert_eq!(scripts, 1);
    }

    #[test]
    fn file_reader_rejects_garbage() {
        assert_eq!(
            FlvFileReader::new(Bytes::from_static(b"GIF89a\0\0\0\0")).unwrap_err(),
            FlvError::InvalidFileHeader {
                signature: *b"GIF",
                version: b'8'
            }
        );
        let data = include_bytes!("../tests/data/flv_testsrc_320x180.flv");
        let cut = Bytes::copy_from_slice(&data[..data.len() - 3]);
        let last = FlvFileReader::new(cut).unwrap().last().unwrap();
        assert!(matches!(last, Err(FlvError::Truncated { .. })));
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let b = Bytes::from(data);
            let _ = parse_video(&b);
            let _ = parse_audio(&b);
            if let Ok(r) = FlvFileReader::new(b) {
                for t in r { let _ = t; }
            }
        }

        #[test]
        fn cts_roundtrip(cts in -(1i32 << 23)..(1i32 << 23)) {
            let c = (cts as u32).to_be_bytes();
            let p = Bytes::from(vec![0x27, 1, c[1], c[2], c[3], 9]);
            match parse_video(&p).unwrap() {
                FlvVideo::Frame { cts_ms, .. } => prop_assert_eq!(cts_ms, cts),
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }
}
