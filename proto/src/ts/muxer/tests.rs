//! Tests for [`TsMuxer`]: a small independent demuxer written here checks the packet layer,
//! and the `mpeg2ts` crate reads the output back as a second, third-party reader.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::ts::{PACKET_SIZE, PMT_PID, SYNC_BYTE};

const WRAP: u64 = 1 << 33;

// Parameter sets of a real 320x180 High-profile x264 stream (any bytes would do for the
// muxer, which does not parse them).
const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x0D, 0xAC, 0xD9, 0x41, 0x41, 0x9F, 0x9E, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
    0x00, 0x00, 0x03, 0x03, 0xC0, 0xF1, 0x42, 0x99, 0x60,
];
const PPS: &[u8] = &[0x68, 0xEB, 0xE3, 0xCB, 0x22, 0xC0];

fn avc_config() -> AvcConfig {
    let mut record = vec![1, 0x64, 0x00, 0x0D, 0xFF, 0xE1];
    record.extend_from_slice(&(SPS.len() as u16).to_be_bytes());
    record.extend_from_slice(SPS);
    record.push(1);
    record.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
    record.extend_from_slice(PPS);
    AvcConfig {
        record: Bytes::from(record),
        sps: vec![Bytes::from_static(SPS)],
        pps: vec![Bytes::from_static(PPS)],
        profile_idc: 0x64,
        constraint_flags: 0,
        level_idc: 0x0D,
        nal_length_size: 4,
        width: 320,
        height: 180,
    }
}

fn aac_config() -> AacConfig {
    // AAC-LC (2), 44100 Hz (index 4), stereo: 00010 0100 0010 000
    AacConfig {
        asc: Bytes::from_static(&[0x12, 0x10]),
        object_type: 2,
        sample_rate: 44_100,
        sample_rate_index: 4,
        channels: 2,
    }
}

fn avcc(nals: &[&[u8]]) -> Bytes {
    let mut v = Vec::new();
    for n in nals {
        v.extend_from_slice(&(n.len() as u32).to_be_bytes());
        v.extend_from_slice(n);
    }
    Bytes::from(v)
}

fn annexb(nals: &[&[u8]]) -> Vec<u8> {
    let mut v = AUD.to_vec();
    for n in nals {
        v.extend_from_slice(&[0, 0, 0, 1]);
        v.extend_from_slice(n);
    }
    v
}

/// One transport packet as the test demuxer sees it.
#[derive(Debug, Clone)]
struct Packet {
    pid: u16,
    pusi: bool,
    cc: u8,
    has_payload: bool,
    random_access: bool,
    pcr: Option<u64>,
    payload: Vec<u8>,
}

/// One reassembled PES.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pes {
    pid: u16,
    stream_id: u8,
    pts: u64,
    dts: Option<u64>,
    es: Vec<u8>,
    random_access: bool,
    pcr: Option<u64>,
}

/// Parses packets strictly: any framing violation fails the test.
fn parse_packets(ts: &[u8]) -> Vec<Packet> {
    assert_eq!(
        ts.len() % PACKET_SIZE,
        0,
        "output is a whole number of packets"
    );
    let mut out = Vec::new();
    for p in ts.chunks(PACKET_SIZE) {
        assert_eq!(p[0], SYNC_BYTE);
        assert_eq!(p[1] & 0x80, 0, "transport_error_indicator");
        let pid = u16::from_be_bytes([p[1], p[2]]) & 0x1FFF;
        let pusi = p[1] & 0x40 != 0;
        assert_eq!(p[3] & 0xC0, 0, "not scrambled");
        let afc = (p[3] >> 4) & 3;
        assert_ne!(afc, 0, "reserved adaptation_field_control");
        let cc = p[3] & 0x0F;
        let mut body = &p[4..];
        let (mut random_access, mut pcr) = (false, None);
        if afc & 2 != 0 {
            let len = usize::from(body[0]);
            let af = &body[1..1 + len];
            if afc == 2 {
                assert_eq!(len, 183, "adaptation-only packets fill the packet");
            }
            if let Some((&flags, rest)) = af.split_first() {
                random_access = flags & 0x40 != 0;
                let mut rest = rest;
                if flags & 0x10 != 0 {
                    let b = &rest[..6];
                    pcr = Some(
                        u64::from(b[0]) << 25
                            | u64::from(b[1]) << 17
                            | u64::from(b[2]) << 9
                            | u64::from(b[3]) << 1
                            | u64::from(b[4] >> 7),
                    );
                    rest = &rest[6..];
                }
                assert_eq!(flags & 0x2F, 0, "only PCR and RAI flags are used");
                assert!(rest.iter().all(|&b| b == 0xFF), "stuffing is 0xFF");
            }
            body = &body[1 + len..];
        }
        let has_payload = afc & 1 != 0;
        assert_eq!(
            has_payload,
            !body.is_empty(),
            "payload flag matches payload bytes"
        );
        out.push(Packet {
            pid,
            pusi,
            cc,
            has_payload,
            random_access,
            pcr,
            payload: body.to_vec(),
        });
    }
    out
}

fn read_ts(b: &[u8]) -> u64 {
    assert_eq!(b[0] & 1, 1);
    assert_eq!(b[2] & 1, 1);
    assert_eq!(b[4] & 1, 1);
    (u64::from(b[0] >> 1) & 7) << 30
        | u64::from(b[1]) << 22
        | u64::from(b[2] >> 1) << 15
        | u64::from(b[3]) << 7
        | u64::from(b[4] >> 1)
}

/// Reassembles PES packets of the elementary-stream PIDs and decodes their headers.
fn reassemble(packets: &[Packet]) -> Vec<Pes> {
    type Open = (usize, Vec<u8>, bool, Option<u64>);
    let mut open: HashMap<u16, Open> = HashMap::new();
    let mut done: Vec<(usize, Pes)> = Vec::new();
    let finish = |pid: u16, (start, buf, rai, pcr): Open, done: &mut Vec<(usize, Pes)>| {
        assert_eq!(&buf[..3], &[0, 0, 1], "PES start code");
        let stream_id = buf[3];
        let len = usize::from(u16::from_be_bytes([buf[4], buf[5]]));
        if len != 0 {
            assert_eq!(len, buf.len() - 6, "PES_packet_length");
        } else {
            assert_eq!(stream_id & 0xF0, 0xE0, "unbounded length only for video");
        }
        assert_eq!(buf[6], 0x84);
        let hlen = usize::from(buf[8]);
        let (pts, dts) = match buf[7] {
            0x80 => {
                assert_eq!(hlen, 5);
                assert_eq!(buf[9] >> 4, 0b0010);
                (read_ts(&buf[9..14]), None)
            }
            0xC0 => {
                assert_eq!(hlen, 10);
                assert_eq!(buf[9] >> 4, 0b0011);
                assert_eq!(buf[14] >> 4, 0b0001);
                (read_ts(&buf[9..14]), Some(read_ts(&buf[14..19])))
            }
            other => panic!("unexpected PTS_DTS flags {other:#x}"),
        };
        done.push((
            start,
            Pes {
                pid,
                stream_id,
                pts,
                dts,
                es: buf[9 + hlen..].to_vec(),
                random_access: rai,
                pcr,
            },
        ));
    };
    for (i, p) in packets.iter().enumerate() {
        if p.pid == 0 || p.pid == PMT_PID || !p.has_payload {
            continue;
        }
        if p.pusi {
            if let Some(prev) = open.remove(&p.pid) {
                finish(p.pid, prev, &mut done);
            }
            open.insert(p.pid, (i, p.payload.clone(), p.random_access, p.pcr));
        } else {
            open.get_mut(&p.pid)
                .expect("continuation after a start")
                .1
                .extend(&p.payload);
        }
    }
    for (pid, v) in open {
        finish(pid, v, &mut done);
    }
    // In the order the PES started, which is the order they were written.
    done.sort_by_key(|(start, _)| *start);
    done.into_iter().map(|(_, p)| p).collect()
}

/// Continuity counters advance by one per payload packet and repeat on adaptation-only
/// packets, per PID.
fn check_continuity(packets: &[Packet]) {
    let mut last: HashMap<u16, u8> = HashMap::new();
    for p in packets {
        if let Some(&prev) = last.get(&p.pid) {
            let expected = if p.has_payload {
                (prev + 1) & 0x0F
            } else {
                prev
            };
            assert_eq!(p.cc, expected, "continuity on PID {:#x}", p.pid);
        }
        last.insert(p.pid, p.cc);
    }
}

/// `a` is at or after `b` on the 33-bit circle.
fn not_before(a: u64, b: u64) -> bool {
    (a.wrapping_sub(b) & (WRAP - 1)) < WRAP / 2
}

fn wrapped(t: i64) -> u64 {
    wrap_33(t + TIMESTAMP_OFFSET_90K)
}

#[test]
fn tables_are_pat_then_pmt() {
    let mut m = TsMuxer::new(Some(avc_config()), Some(aac_config()));
    let mut out = BytesMut::new();
    m.write_tables(&mut out);
    m.write_tables(&mut out);
    let packets = parse_packets(&out);
    let pids: Vec<u16> = packets.iter().map(|p| p.pid).collect();
    assert_eq!(pids, [0, PMT_PID, 0, PMT_PID]);
    check_continuity(&packets);
    assert_eq!(m.pcr_pid(), VIDEO_PID);
    assert_eq!(TsMuxer::new(None, Some(aac_config())).pcr_pid(), AUDIO_PID);
    assert_eq!(TsMuxer::new(None, None).pcr_pid(), 0x1FFF);
}

#[test]
fn keyframe_gets_aud_parameter_sets_pcr_and_rai() {
    let mut m = TsMuxer::new(Some(avc_config()), None);
    let idr: &[u8] = &[0x65, 0x88, 0x84, 0x00, 0x33];
    let sei: &[u8] = &[0x06, 0x05, 0x01, 0xAA];
    let f = VideoFrame {
        dts_90k: 1000,
        cts_90k: 3000,
        keyframe: true,
        data: avcc(&[sei, idr]),
    };
    let mut out = BytesMut::new();
    m.write_video(&f, &mut out).unwrap();
    let packets = parse_packets(&out);
    let pes = reassemble(&packets);
    assert_eq!(pes.len(), 1);
    assert_eq!(pes[0].es, annexb(&[SPS, PPS, sei, idr]));
    assert_eq!(pes[0].stream_id, 0xE0);
    assert_eq!(pes[0].pts, wrapped(4000));
    assert_eq!(pes[0].dts, Some(wrapped(1000)));
    assert!(pes[0].random_access);
    assert_eq!(pes[0].pcr, Some(1000), "PCR is the DTS without the offset");
}

#[test]
fn delta_frame_has_no_parameter_sets_or_rai_and_no_dts_when_equal() {
    let mut m = TsMuxer::new(Some(avc_config()), None);
    let p: &[u8] = &[0x41, 0x9A, 0x02];
    let f = VideoFrame {
        dts_90k: 3000,
        cts_90k: 0,
        keyframe: false,
        data: avcc(&[p]),
    };
    let mut out = BytesMut::new();
    m.write_video(&f, &mut out).unwrap();
    let pes = reassemble(&parse_packets(&out));
    assert_eq!(pes[0].es, annexb(&[p]));
    assert!(!pes[0].random_access);
    assert_eq!(pes[0].dts, None);
    assert_eq!(pes[0].pcr, Some(3000), "PCR on every video PES");
}

#[test]
fn in_band_parameter_sets_and_auds_are_not_duplicated() {
    let mut m = TsMuxer::new(Some(avc_config()), None);
    let aud: &[u8] = &[0x09, 0x10];
    let sps: &[u8] = &[0x67, 1, 2, 3];
    let pps: &[u8] = &[0x68, 4];
    let idr: &[u8] = &[0x65, 9, 9];
    // Flagged as not a keyframe, but it holds an IDR slice: still a random access point.
    let f = VideoFrame {
        dts_90k: 0,
        cts_90k: 0,
        keyframe: false,
        data: avcc(&[aud, sps, pps, &[], idr]),
    };
    let mut out = BytesMut::new();
    m.write_video(&f, &mut out).unwrap();
    let pes = reassemble(&parse_packets(&out));
    assert_eq!(pes[0].es, annexb(&[sps, pps, idr]));
    assert!(pes[0].random_access);
}

#[test]
fn malformed_avcc_is_rejected_without_output() {
    let mut m = TsMuxer::new(Some(avc_config()), Some(aac_config()));
    let mut out = BytesMut::new();
    m.write_tables(&mut out);
    let before = out.clone();
    let cases: [(&[u8], TsError); 3] = [
        (
            &[0, 0, 0, 5, 0x65, 1],
            TsError::MalformedAvcc {
                offset: 0,
                need: 9,
                have: 6,
            },
        ),
        (
            &[0, 0, 0, 1, 0x65, 0, 0],
            TsError::MalformedAvcc {
                offset: 5,
                need: 4,
                have: 2,
            },
        ),
        (
            &[0xFF, 0xFF, 0xFF, 0xFF],
            TsError::MalformedAvcc {
                offset: 0,
                need: 0xFFFF_FFFF + 4,
                have: 4,
            },
        ),
    ];
    for (data, err) in cases {
        let f = VideoFrame {
            dts_90k: 0,
            cts_90k: 0,
            keyframe: true,
            data: Bytes::copy_from_slice(data),
        };
        assert_eq!(m.write_video(&f, &mut out), Err(err));
        assert_eq!(out, before);
    }
    for data in [&[][..], &[0, 0, 0, 0], &[0, 0, 0, 2, 0x09, 0xF0]] {
        let f = VideoFrame {
            dts_90k: 0,
            cts_90k: 0,
            keyframe: true,
            data: Bytes::copy_from_slice(data),
        };
        assert_eq!(
            m.write_video(&f, &mut out),
            Err(TsError::EmptyAccessUnit { len: data.len() })
        );
    }
    assert_eq!(out, before);
    // The failed calls did not advance any counter or the PCR.
    let f = VideoFrame {
        dts_90k: 0,
        cts_90k: 0,
        keyframe: true,
        data: avcc(&[&[0x65, 1]]),
    };
    m.write_video(&f, &mut out).unwrap();
    check_continuity(&parse_packets(&out));
}

#[test]
fn missing_tracks_are_errors() {
    let mut out = BytesMut::new();
    let v = VideoFrame {
        dts_90k: 0,
        cts_90k: 0,
        keyframe: true,
        data: avcc(&[&[0x65]]),
    };
    let a = AudioFrame {
        pts_90k: 0,
        data: Bytes::from_static(&[1, 2]),
    };
    assert_eq!(
        TsMuxer::new(None, Some(aac_config())).write_video(&v, &mut out),
        Err(TsError::TrackNotConfigured { track: "video" })
    );
    assert_eq!(
        TsMuxer::new(Some(avc_config()), None).write_audio(&a, &mut out),
        Err(TsError::TrackNotConfigured { track: "audio" })
    );
    assert!(out.is_empty());
}

/// Decodes the fields of a 7-byte ADTS header (14496-3 1.A.2.2.1) independently of the writer.
fn parse_adts(h: &[u8]) -> (u8, u8, u8, usize) {
    assert_eq!(h[0], 0xFF);
    assert_eq!(h[1] & 0xF6, 0xF0, "syncword, MPEG-4, layer 0");
    assert_eq!(h[1] & 1, 1, "protection_absent");
    let profile = h[2] >> 6;
    let sf = (h[2] >> 2) & 0x0F;
    let ch = ((h[2] & 1) << 2) | (h[3] >> 6);
    let len = (usize::from(h[3] & 3) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
    assert_eq!(
        ((u16::from(h[5]) & 0x1F) << 6) | u16::from(h[6] >> 2),
        0x7FF,
        "VBR fullness"
    );
    assert_eq!(h[6] & 3, 0, "one raw data block");
    (profile, sf, ch, len)
}

#[test]
fn audio_gets_adts_and_pcr_when_audio_only() {
    let mut m = TsMuxer::new(
        None,
        Some(AacConfig {
            channels: 6,
            sample_rate_index: 3,
            ..aac_config()
        }),
    );
    let mut out = BytesMut::new();
    let raw: Vec<u8> = (0..300u16).map(|i| i as u8).collect();
    m.write_audio(
        &AudioFrame {
            pts_90k: -5000,
            data: Bytes::from(raw.clone()),
        },
        &mut out,
    )
    .unwrap();
    let pes = reassemble(&parse_packets(&out));
    assert_eq!(pes.len(), 1);
    assert_eq!(pes[0].stream_id, 0xC0);
    assert_eq!(pes[0].pts, wrapped(-5000));
    assert_eq!(pes[0].pcr, Some(wrap_33(-5000)));
    let (profile, sf, ch, len) = parse_adts(&pes[0].es[..7]);
    assert_eq!((profile, sf, ch, len), (1, 3, 6, 307));
    assert_eq!(&pes[0].es[7..], &raw[..]);
}

#[test]
fn adts_limits_and_unsupported_configs() {
    let a = |cfg: AacConfig, len: usize| {
        let mut out = BytesMut::new();
        let r = TsMuxer::new(None, Some(cfg)).write_audio(
            &AudioFrame {
                pts_90k: 0,
                data: Bytes::from(vec![0; len]),
            },
            &mut out,
        );
        if r.is_err() {
            assert!(out.is_empty());
        }
        r
    };
    assert!(a(aac_config(), 8184).is_ok());
    assert_eq!(
        a(aac_config(), 8185),
        Err(TsError::AudioFrameTooLarge {
            size: 8185,
            max: 8184
        })
    );
    assert_eq!(
        a(
            AacConfig {
                object_type: 42,
                ..aac_config()
            },
            10
        ),
        Err(TsError::UnsupportedAudioObjectType { object_type: 42 })
    );
    assert_eq!(
        a(
            AacConfig {
                sample_rate_index: 15,
                ..aac_config()
            },
            10
        ),
        Err(TsError::InvalidSampleRateIndex { index: 15 })
    );
    assert_eq!(
        a(
            AacConfig {
                channels: 0,
                ..aac_config()
            },
            10
        ),
        Err(TsError::InvalidChannelConfig { channels: 0 })
    );
    assert_eq!(
        a(
            AacConfig {
                channels: 8,
                ..aac_config()
            },
            10
        ),
        Err(TsError::InvalidChannelConfig { channels: 8 })
    );
    // HE-AAC rides as LC (implicit SBR signalling).
    let mut out = BytesMut::new();
    TsMuxer::new(
        None,
        Some(AacConfig {
            object_type: 5,
            ..aac_config()
        }),
    )
    .write_audio(
        &AudioFrame {
            pts_90k: 0,
            data: Bytes::from_static(&[1]),
        },
        &mut out,
    )
    .unwrap();
    let pes = reassemble(&parse_packets(&out));
    assert_eq!(parse_adts(&pes[0].es).0, 1);
}

#[test]
fn low_frame_rate_video_gets_pcr_from_audio_packets() {
    let mut m = TsMuxer::new(Some(avc_config()), Some(aac_config()));
    let mut out = BytesMut::new();
    m.write_tables(&mut out);
    let key = VideoFrame {
        dts_90k: 0,
        cts_90k: 0,
        keyframe: true,
        data: avcc(&[&[0x65, 1]]),
    };
    m.write_video(&key, &mut out).unwrap();
    // 1 fps video: audio every ~23 ms must trigger a PCR on the video PID every >= 100 ms.
    for i in 0..43i64 {
        let a = AudioFrame {
            pts_90k: i * 2090,
            data: Bytes::from_static(&[0x21, 0x10]),
        };
        m.write_audio(&a, &mut out).unwrap();
    }
    let packets = parse_packets(&out);
    check_continuity(&packets);
    let pcrs: Vec<u64> = packets
        .iter()
        .filter(|p| p.pid == VIDEO_PID)
        .filter_map(|p| p.pcr)
        .collect();
    assert!(pcrs.len() >= 10, "PCRs: {pcrs:?}");
    for w in pcrs.windows(2) {
        assert!(w[1] > w[0] && w[1] - w[0] <= 9000, "{pcrs:?}");
    }
    assert!(packets
        .iter()
        .all(|p| p.pid != AUDIO_PID || p.pcr.is_none()));
}

#[test]
fn pcr_holds_over_small_regressions_and_follows_resets() {
    let mut m = TsMuxer::new(Some(avc_config()), Some(aac_config()));
    let mut out = BytesMut::new();
    let v = |dts: i64| VideoFrame {
        dts_90k: dts,
        cts_90k: 0,
        keyframe: false,
        data: avcc(&[&[0x41, 1]]),
    };
    m.write_video(&v(100_000), &mut out).unwrap();
    // Audio ran 200 ms ahead: its PCR packet moves the clock forward ...
    m.write_audio(
        &AudioFrame {
            pts_90k: 118_000,
            data: Bytes::from_static(&[1]),
        },
        &mut out,
    )
    .unwrap();
    // ... and the next, earlier video frame does not pull it back.
    m.write_video(&v(103_000), &mut out).unwrap();
    // A jump back by more than the offset is a new timeline: follow it.
    m.write_video(&v(10_000), &mut out).unwrap();
    let pcrs: Vec<u64> = parse_packets(&out).iter().filter_map(|p| p.pcr).collect();
    assert_eq!(pcrs, [100_000, 118_000, 118_000, 10_000]);
}

#[test]
fn timestamps_wrap_into_33_bits() {
    let mut m = TsMuxer::new(Some(avc_config()), None);
    let mut out = BytesMut::new();
    for dts in [-1_000_000i64, (1 << 33) - 10_000, i64::MAX - 5, i64::MIN] {
        let f = VideoFrame {
            dts_90k: dts,
            cts_90k: 7_000,
            keyframe: true,
            data: avcc(&[&[0x65, 1]]),
        };
        m.write_video(&f, &mut out).unwrap();
    }
    let pes = reassemble(&parse_packets(&out));
    let expect = |t: i64| wrap_33(t.wrapping_add(TIMESTAMP_OFFSET_90K));
    assert_eq!(pes[0].dts, Some(expect(-1_000_000)));
    assert_eq!(pes[1].pts, expect((1 << 33) - 3_000));
    assert_eq!(pes[1].pts, 60_000, "wrapped past 2^33");
    assert_eq!(pes[2].pts, expect((i64::MAX - 5).wrapping_add(7_000)));
    assert_eq!(pes[3].dts, Some(expect(i64::MIN)));
}

/// A frame of the generated stream.
#[derive(Debug, Clone)]
enum Event {
    Video {
        nals: Vec<Vec<u8>>,
        keyframe: bool,
        cts: i32,
    },
    Audio {
        data: Vec<u8>,
        skew: i64,
    },
}

fn nal_strategy() -> impl Strategy<Value = Vec<u8>> {
    // Mostly slices, sometimes SPS/PPS/AUD/IDR/SEI or an empty NAL unit.
    let ty = prop_oneof![4 => Just(1u8), 2 => Just(5u8), 1 => Just(6u8), 1 => Just(7u8), 1 => Just(8u8), 1 => Just(9u8)];
    (
        ty,
        0u8..4,
        prop::collection::vec(any::<u8>(), 0..700),
        0u8..20,
    )
        .prop_map(|(ty, nri, body, empty)| {
            if empty == 0 {
                return Vec::new();
            }
            let mut v = vec![(nri << 5) | ty];
            v.extend(body);
            v
        })
}

fn event_strategy() -> impl Strategy<Value = Event> {
    prop_oneof![
        (
            prop::collection::vec(nal_strategy(), 1..5),
            any::<bool>(),
            0i32..9000
        )
            .prop_map(|(nals, keyframe, cts)| Event::Video {
                nals,
                keyframe,
                cts
            }),
        (prop::collection::vec(any::<u8>(), 1..900), -3000i64..3000)
            .prop_map(|(data, skew)| Event::Audio { data, skew }),
    ]
}

/// A PES the muxer must have produced.
struct Expected {
    stream_id: u8,
    pts: u64,
    dts: Option<u64>,
    es: Vec<u8>,
    random_access: bool,
}

/// What the muxer must produce for a video frame.
fn expected_annexb(nals: &[Vec<u8>], keyframe: bool) -> (Vec<u8>, bool) {
    let kept: Vec<&[u8]> = nals
        .iter()
        .map(|n| n.as_slice())
        .filter(|n| !n.is_empty() && n[0] & 0x1F != 9)
        .collect();
    let has = |t: u8| kept.iter().any(|n| n[0] & 0x1F == t);
    let key = keyframe || has(5);
    let mut all: Vec<&[u8]> = Vec::new();
    if key && !has(7) && !has(8) {
        all.push(SPS);
        all.push(PPS);
    }
    all.extend(kept.iter().copied());
    (annexb(&all), key)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn muxed_stream_keeps_every_invariant(
        start in prop_oneof![-(1i64 << 35)..(1i64 << 35), ((1i64 << 33) - 200_000)..((1i64 << 33) + 10)],
        events in prop::collection::vec((event_strategy(), 0i64..4000, 0u8..12), 1..40),
    ) {
        let mut m = TsMuxer::new(Some(avc_config()), Some(aac_config()));
        let mut out = BytesMut::new();
        m.write_tables(&mut out);
        let mut t = start;
        let mut expected: Vec<Expected> = Vec::new();
        for (ev, step, tables) in &events {
            t += step;
            if *tables == 0 {
                m.write_tables(&mut out); // a segment boundary
            }
            match ev {
                Event::Video { nals, keyframe, cts } => {
                    let refs: Vec<&[u8]> = nals.iter().map(|n| n.as_slice()).collect();
                    let f = VideoFrame { dts_90k: t, cts_90k: *cts, keyframe: *keyframe, data: avcc(&refs) };
                    let (es, key) = expected_annexb(nals, *keyframe);
                    let before = out.len();
                    match m.write_video(&f, &mut out) {
                        Ok(()) => expected.push(Expected {
                            stream_id: 0xE0,
                            pts: wrapped(t + i64::from(*cts)),
                            dts: (*cts != 0).then(|| wrapped(t)),
                            es,
                            random_access: key,
                        }),
                        Err(e) => {
                            prop_assert_eq!(e, TsError::EmptyAccessUnit { len: f.data.len() });
                            prop_assert_eq!(out.len(), before);
                        }
                    }
                }
                Event::Audio { data, skew } => {
                    let pts = t + skew;
                    m.write_audio(&AudioFrame { pts_90k: pts, data: Bytes::from(data.clone()) }, &mut out).unwrap();
                    let mut es = vec![0; 7];
                    es.extend_from_slice(data);
                    expected.push(Expected { stream_id: 0xC0, pts: wrapped(pts), dts: None, es, random_access: true });
                }
            }
        }

        // Packet layer, with our own strict demuxer.
        let packets = parse_packets(&out);
        check_continuity(&packets);
        let mut last_pcr: Option<u64> = None;
        let mut pcr_before_pes = Vec::new();
        for p in &packets {
            if let Some(pcr) = p.pcr {
                prop_assert_eq!(p.pid, VIDEO_PID, "PCR only on the PCR PID");
                if let Some(last) = last_pcr {
                    prop_assert!(not_before(pcr, last), "PCR went back: {} -> {}", last, pcr);
                }
                last_pcr = Some(pcr);
            }
            if p.pusi && (p.pid == VIDEO_PID || p.pid == AUDIO_PID) {
                pcr_before_pes.push(last_pcr);
            }
        }
        let pes = reassemble(&packets);
        prop_assert_eq!(pes.len(), expected.len());
        for ((got, want), pcr) in pes.iter().zip(&expected).zip(&pcr_before_pes) {
            prop_assert_eq!(got.stream_id, want.stream_id);
            prop_assert_eq!(got.pts, want.pts);
            prop_assert_eq!(got.dts, want.dts);
            if got.stream_id == 0xC0 {
                // ADTS header (checked field by field elsewhere) then the raw frame.
                let (_, _, _, len) = parse_adts(&got.es[..7]);
                prop_assert_eq!(len, got.es.len());
                prop_assert_eq!(&got.es[7..], &want.es[7..]);
            } else {
                prop_assert_eq!(&got.es, &want.es);
                prop_assert_eq!(got.random_access, want.random_access);
                prop_assert!(got.pcr.is_some(), "PCR on every video PES");
            }
            // Decoding never starts before the data arrived: DTS/PTS >= the current PCR.
            if let Some(pcr) = pcr {
                prop_assert!(not_before(got.dts.unwrap_or(got.pts), *pcr));
            }
        }

        // Independent third-party reader.
        use mpeg2ts::pes::{PesPacketReader, ReadPesPacket};
        use mpeg2ts::ts::TsPacketReader;
        let mut reader = PesPacketReader::new(TsPacketReader::new(&out[..]));
        let mut theirs = Vec::new();
        while let Some(p) = reader.read_pes_packet().expect("mpeg2ts reads our stream") {
            theirs.push(p);
        }
        // mpeg2ts emits unbounded (video) PES when the next one starts on that PID, so
        // compare per stream, in order.
        for sid in [0xE0u8, 0xC0] {
            let mine: Vec<_> = pes.iter().filter(|p| p.stream_id == sid).collect();
            let other: Vec<_> = theirs.iter().filter(|p| p.header.stream_id.as_u8() == sid).collect();
            prop_assert_eq!(mine.len(), other.len());
            for (a, b) in mine.iter().zip(other) {
                prop_assert_eq!(&a.es, &b.data);
                prop_assert_eq!(Some(a.pts), b.header.pts.map(|t| t.as_u64()));
                prop_assert_eq!(a.dts, b.header.dts.map(|t| t.as_u64()));
            }
        }
    }
}
