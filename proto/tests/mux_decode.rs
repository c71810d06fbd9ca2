//! Real-decoder check of the MPEG-TS and CMAF muxers.
//!
//! Reads a real H.264/AAC capture made by ffmpeg (`tests/data/mux_testsrc_320x180.flv`, see
//! `tests/data/README.md`) with a small test-only FLV walker, muxes it into a transport stream
//! and into CMAF init + fragment files, then has ffprobe and ffmpeg decode the results: no
//! errors, every frame decoded, and the decoded timestamps equal to the input's.
//!
//! Needs `ffmpeg` and `ffprobe` on PATH (CI installs them).

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::{Bytes, BytesMut};
use hivecast_proto::cmaf::{self, CmafSample, CmafTrack};
use hivecast_proto::codec::aac::AacConfig;
use hivecast_proto::codec::h264::AvcConfig;
use hivecast_proto::media::{AudioFrame, VideoFrame};
use hivecast_proto::ts::{TsMuxer, TIMESTAMP_OFFSET_90K};

const CAPTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/mux_testsrc_320x180.flv"
);
/// The capture is 2 s of 30 fps video with an IDR every 30 frames (`-g 30`).
const VIDEO_FRAMES: usize = 60;

/// The elementary streams of the capture, in FLV (decode) order.
struct Capture {
    avc: AvcConfig,
    aac: AacConfig,
    /// Video and audio frames interleaved as in the file.
    frames: Vec<Frame>,
}

enum Frame {
    Video(VideoFrame),
    Audio(AudioFrame),
}

impl Capture {
    fn video(&self) -> impl Iterator<Item = &VideoFrame> {
        self.frames.iter().filter_map(|f| match f {
            Frame::Video(v) => Some(v),
            Frame::Audio(_) => None,
        })
    }

    fn audio(&self) -> impl Iterator<Item = &AudioFrame> {
        self.frames.iter().filter_map(|f| match f {
            Frame::Audio(a) => Some(a),
            Frame::Video(_) => None,
        })
    }
}

fn be(b: &[u8]) -> u32 {
    b.iter().fold(0, |acc, &x| (acc << 8) | u32::from(x))
}

/// Test-only FLV walker (FLV spec v10.1 annex E): 9-byte header, then tags of an 11-byte
/// header + body + 4-byte PreviousTagSize.
fn read_capture(path: &str) -> Capture {
    let flv = std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    assert_eq!(&flv[..3], b"FLV");
    let mut pos = be(&flv[5..9]) as usize + 4; // header, then PreviousTagSize0
    let (mut avc, mut aac) = (None, None);
    let mut frames = Vec::new();
    while pos + 11 <= flv.len() {
        let tag_type = flv[pos] & 0x1F;
        let size = be(&flv[pos + 1..pos + 4]) as usize;
        // 24-bit timestamp plus an 8-bit extension holding the upper bits, in ms.
        let ts_ms = i64::from(be(&flv[pos + 4..pos + 7]) | u32::from(flv[pos + 7]) << 24);
        let body = &flv[pos + 11..pos + 11 + size];
        pos += 11 + size + 4;
        match tag_type {
            9 => {
                assert_eq!(body[0] & 0x0F, 7, "AVC codec id");
                let keyframe = body[0] >> 4 == 1;
                // AVCPacketType, then a signed 24-bit composition time offset in ms.
                let cts_ms = ((be(&body[2..5]) << 8) as i32) >> 8;
                match body[1] {
                    0 => avc = Some(parse_avcc(&body[5..])),
                    1 => frames.push(Frame::Video(VideoFrame {
                        dts_90k: ts_ms * 90,
                        cts_90k: cts_ms * 90,
                        keyframe,
                        data: Bytes::copy_from_slice(&body[5..]),
                    })),
                    _ => {} // end of sequence
                }
            }
            8 => {
                assert_eq!(body[0] >> 4, 10, "AAC sound format");
                match body[1] {
                    0 => aac = Some(parse_asc(&body[2..])),
                    _ => frames.push(Frame::Audio(AudioFrame {
                        pts_90k: ts_ms * 90,
                        data: Bytes::copy_from_slice(&body[2..]),
                    })),
                }
            }
            _ => {} // script data
        }
    }
    Capture {
        avc: avc.expect("AVC sequence header"),
        aac: aac.expect("AAC sequence header"),
        frames,
    }
}

/// Test-only AVCDecoderConfigurationRecord parser (14496-15 5.3.3.1). Width and height are
/// those of the capture (`testsrc2=size=320x180`), not parsed from the SPS.
fn parse_avcc(rec: &[u8]) -> AvcConfig {
    assert_eq!(rec[0], 1, "configurationVersion");
    let mut pos = 6;
    let sets = |count: usize, pos: &mut usize| {
        (0..count)
            .map(|_| {
                let len = be(&rec[*pos..*pos + 2]) as usize;
                let s = Bytes::copy_from_slice(&rec[*pos + 2..*pos + 2 + len]);
                *pos += 2 + len;
                s
            })
            .collect::<Vec<_>>()
    };
    let sps = sets(usize::from(rec[5] & 0x1F), &mut pos);
    let n_pps = usize::from(rec[pos]);
    pos += 1;
    let pps = sets(n_pps, &mut pos);
    AvcConfig {
        record: Bytes::copy_from_slice(rec),
        sps,
        pps,
        profile_idc: rec[1],
        constraint_flags: rec[2],
        level_idc: rec[3],
        nal_length_size: (rec[4] & 3) + 1,
        width: 320,
        height: 180,
    }
}

/// Test-only AudioSpecificConfig parser for the plain AAC-LC case (14496-3 1.6.2.1).
fn parse_asc(asc: &[u8]) -> AacConfig {
    const RATES: [u32; 13] = [
        96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
    ];
    let v = be(&asc[..2]);
    let object_type = (v >> 11) as u8;
    let sample_rate_index = ((v >> 7) & 0x0F) as u8;
    AacConfig {
        asc: Bytes::copy_from_slice(asc),
        object_type,
        sample_rate: RATES[usize::from(sample_rate_index)],
        sample_rate_index,
        channels: ((v >> 3) & 0x0F) as u8,
    }
}

fn out_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mux_decode");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs a tool, failing with a clear message when it is missing or reports anything.
fn run(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run `{tool}` ({e}): this test needs ffmpeg and ffprobe on PATH (apt-get install ffmpeg)")
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{tool} {args:?} failed: {stderr}");
    assert!(
        stderr.trim().is_empty(),
        "{tool} {args:?} reported: {stderr}"
    );
    String::from_utf8(out.stdout).unwrap()
}

/// ffmpeg decodes every stream of the file to null without a single complaint.
fn assert_decodes_cleanly(file: &Path) {
    run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-i",
            file.to_str().unwrap(),
            "-f",
            "null",
            "-",
        ],
    );
}

/// `(codec_name, nb_read_frames)` for each stream, from `ffprobe -show_streams -count_frames`.
fn probe_streams(file: &Path) -> Vec<(String, usize)> {
    let out = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_streams",
            "-count_frames",
            file.to_str().unwrap(),
        ],
    );
    let mut streams = Vec::new();
    let (mut codec, mut frames) = (None, None);
    for line in out.lines() {
        match line.split_once('=') {
            Some(("codec_name", v)) => codec = Some(v.to_string()),
            Some(("nb_read_frames", v)) => frames = v.parse().ok(),
            _ if line == "[/STREAM]" => streams.push((
                codec.take().expect("codec_name in every stream"),
                frames.take().expect("nb_read_frames with -count_frames"),
            )),
            _ => {}
        }
    }
    streams
}

/// The presentation timestamps (in the stream's time base) of every decoded frame of one
/// stream, sorted.
fn decoded_pts(file: &Path, stream: &str) -> Vec<i64> {
    let out = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            stream,
            "-show_entries",
            "frame=pts",
            "-of",
            "csv=p=0",
            file.to_str().unwrap(),
        ],
    );
    let mut v: Vec<i64> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.trim()
                .trim_end_matches(',')
                .parse()
                .unwrap_or_else(|_| panic!("pts {l:?}"))
        })
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn capture_reads_as_expected() {
    let cap = read_capture(CAPTURE);
    assert_eq!(cap.video().count(), VIDEO_FRAMES);
    assert_eq!(cap.video().filter(|v| v.keyframe).count(), 2);
    assert!(cap.audio().count() > 80);
    assert_eq!(cap.avc.nal_length_size, 4);
    assert_eq!(
        (cap.aac.object_type, cap.aac.sample_rate, cap.aac.channels),
        (2, 44_100, 1)
    );
}

#[test]
fn ts_decodes_with_ffmpeg() {
    let cap = read_capture(CAPTURE);
    let mut mux = TsMuxer::new(Some(cap.avc.clone()), Some(cap.aac.clone()));
    let mut out = BytesMut::new();
    for f in &cap.frames {
        match f {
            Frame::Video(v) => {
                if v.keyframe {
                    mux.write_tables(&mut out); // as the packager does at every segment start
                }
                mux.write_video(v, &mut out).unwrap();
            }
            Frame::Audio(a) => mux.write_audio(a, &mut out).unwrap(),
        }
    }
    let file = out_dir().join("mux_testsrc.ts");
    std::fs::write(&file, &out).unwrap();

    assert_decodes_cleanly(&file);
    let audio_frames = cap.audio().count();
    assert_eq!(
        probe_streams(&file),
        [
            ("h264".to_string(), VIDEO_FRAMES),
            ("aac".to_string(), audio_frames)
        ]
    );

    // Decoded timestamps are the input's plus the documented offset (time base 1/90000).
    let mut want_video: Vec<i64> = cap
        .video()
        .map(|v| v.pts_90k() + TIMESTAMP_OFFSET_90K)
        .collect();
    want_video.sort_unstable();
    assert_eq!(decoded_pts(&file, "v:0"), want_video);
    let want_audio: Vec<i64> = cap
        .audio()
        .map(|a| a.pts_90k + TIMESTAMP_OFFSET_90K)
        .collect();
    assert_eq!(decoded_pts(&file, "a:0"), want_audio);

    // And the third-party reader sees the same PES timestamps.
    use mpeg2ts::pes::{PesPacketReader, ReadPesPacket};
    use mpeg2ts::ts::TsPacketReader;
    let mut reader = PesPacketReader::new(TsPacketReader::new(&out[..]));
    let (mut video_pts, mut audio_pts) = (Vec::new(), Vec::new());
    while let Some(p) = reader.read_pes_packet().unwrap() {
        let pts = p.header.pts.unwrap().as_u64() as i64;
        match p.header.stream_id.as_u8() {
            0xE0 => video_pts.push(pts),
            0xC0 => audio_pts.push(pts),
            other => panic!("stream id {other:#x}"),
        }
    }
    video_pts.sort_unstable();
    assert_eq!(video_pts, want_video);
    assert_eq!(audio_pts, want_audio);
}

/// Muxes one track as the packager would: an init segment, then one CMAF chunk per group of
/// samples, each with `tfdt` = the running sum of durations.
fn write_cmaf(track: CmafTrack, base: u64, chunks: &[Vec<CmafSample>]) -> BytesMut {
    let mut out = BytesMut::new();
    cmaf::write_init_segment(&track, &mut out);
    let mut t = base;
    for (i, chunk) in chunks.iter().enumerate() {
        if i % 2 == 0 {
            cmaf::write_styp(&mut out); // a segment of two parts
        }
        cmaf::write_fragment(i as u32 + 1, t, chunk, &mut out);
        t += chunk.iter().map(|s| u64::from(s.duration)).sum::<u64>();
    }
    out
}

#[test]
fn cmaf_video_decodes_with_ffmpeg() {
    let cap = read_capture(CAPTURE);
    let video: Vec<&VideoFrame> = cap.video().collect();
    let samples: Vec<CmafSample> = video
        .iter()
        .enumerate()
        .map(|(i, v)| {
            // Duration = next DTS - this DTS; the last frame repeats the previous duration.
            let next = match video.get(i + 1) {
                Some(n) => n.dts_90k,
                None => 2 * v.dts_90k - video[i - 1].dts_90k,
            };
            CmafSample {
                duration: (next - v.dts_90k) as u32,
                cts_offset: v.cts_90k,
                keyframe: v.keyframe,
                data: v.data.clone(),
            }
        })
        .collect();
    // LL-HLS-sized parts of 10 frames (333 ms), so chunks start on non-key frames too.
    let chunks: Vec<Vec<CmafSample>> = samples.chunks(10).map(|c| c.to_vec()).collect();
    let out = write_cmaf(CmafTrack::Video(&cap.avc), video[0].dts_90k as u64, &chunks);
    let file = out_dir().join("mux_testsrc_video.mp4");
    std::fs::write(&file, &out).unwrap();

    assert_decodes_cleanly(&file);
    assert_eq!(probe_streams(&file), [("h264".to_string(), VIDEO_FRAMES)]);
    let mut want: Vec<i64> = video.iter().map(|v| v.pts_90k()).collect();
    want.sort_unstable();
    assert_eq!(decoded_pts(&file, "v:0"), want);
}

#[test]
fn cmaf_audio_decodes_with_ffmpeg() {
    let cap = read_capture(CAPTURE);
    let audio: Vec<&AudioFrame> = cap.audio().collect();
    let rate = i64::from(cap.aac.sample_rate);
    let samples: Vec<CmafSample> = audio
        .iter()
        .map(|a| CmafSample {
            duration: 1024,
            cts_offset: 0,
            keyframe: true,
            data: a.data.clone(),
        })
        .collect();
    let base = (audio[0].pts_90k * rate + 45_000) / 90_000; // 90 kHz -> sample rate, rounded
    let chunks: Vec<Vec<CmafSample>> = samples.chunks(15).map(|c| c.to_vec()).collect();
    let out = write_cmaf(CmafTrack::Audio(&cap.aac), base as u64, &chunks);
    let file = out_dir().join("mux_testsrc_audio.mp4");
    std::fs::write(&file, &out).unwrap();

    assert_decodes_cleanly(&file);
    assert_eq!(probe_streams(&file), [("aac".to_string(), audio.len())]);
    // Exact in the track timescale, and within the FLV's 1 ms rounding of the input.
    let got = decoded_pts(&file, "a:0");
    let want: Vec<i64> = (0..audio.len() as i64).map(|i| base + 1024 * i).collect();
    assert_eq!(got, want);
    for (g, a) in got.iter().zip(&audio) {
        let input = a.pts_90k * rate / 90_000;
        assert!(
            (g - input).abs() <= rate / 1000 + 1,
            "decoded {g} vs input {input}"
        );
    }
}
