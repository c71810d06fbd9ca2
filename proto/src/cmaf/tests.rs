//! Tests for the CMAF writer: a test-only box walker checks the structure and offsets, and the
//! `mp4-atom` crate decodes every box as an independent reader.

use bytes::{Bytes, BytesMut};
use mp4_atom::{Any, Decode, Ftyp, Moof, Moov, Styp};
use proptest::prelude::*;

use super::fragment::{SAMPLE_FLAGS_NON_SYNC, SAMPLE_FLAGS_SYNC};
use super::*;

const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x0D, 0xAC, 0xD9, 0x41, 0x41, 0x9F, 0x9E, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
    0x00, 0x00, 0x03, 0x03, 0xC0, 0xF1, 0x42, 0x99, 0x60,
];
const PPS: &[u8] = &[0x68, 0xEB, 0xE3, 0xCB, 0x22, 0xC0];

/// An avcC record as an encoder sends it, with `nal_length_size` NAL lengths and the High
/// profile extension (chroma_format_idc etc.) at the end.
fn avc_config(nal_length_size: u8) -> AvcConfig {
    let mut record = vec![1, 0x64, 0x00, 0x0D, 0xFC | (nal_length_size - 1), 0xE1];
    record.extend_from_slice(&(SPS.len() as u16).to_be_bytes());
    record.extend_from_slice(SPS);
    record.push(1);
    record.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
    record.extend_from_slice(PPS);
    record.extend_from_slice(&[0xFD, 0xF8, 0xF8, 0x00]); // 4:2:0, 8-bit, no SPS ext
    AvcConfig {
        record: Bytes::from(record),
        sps: vec![Bytes::from_static(SPS)],
        pps: vec![Bytes::from_static(PPS)],
        profile_idc: 0x64,
        constraint_flags: 0,
        level_idc: 0x0D,
        nal_length_size,
        width: 320,
        height: 180,
    }
}

fn aac_config() -> AacConfig {
    AacConfig {
        asc: Bytes::from_static(&[0x12, 0x10]),
        object_type: 2,
        sample_rate: 44_100,
        sample_rate_index: 4,
        channels: 2,
    }
}

/// A box found by the walker: type, absolute offset, header size and total size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BoxRef {
    kind: [u8; 4],
    offset: usize,
    header: usize,
    size: usize,
}

impl BoxRef {
    fn body<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.offset + self.header..self.offset + self.size]
    }
}

/// Lists the boxes laid end to end in `buf[start..end]`, failing on any size that does not
/// tile the range exactly.
fn walk(buf: &[u8], start: usize, end: usize) -> Vec<BoxRef> {
    let mut v = Vec::new();
    let mut pos = start;
    while pos < end {
        assert!(end - pos >= 8, "truncated box header at {pos}");
        let size32 = u32::from_be_bytes(buf[pos..pos + 4].try_into().unwrap());
        let kind: [u8; 4] = buf[pos + 4..pos + 8].try_into().unwrap();
        let (header, size) = match size32 {
            1 => (
                16,
                u64::from_be_bytes(buf[pos + 8..pos + 16].try_into().unwrap()) as usize,
            ),
            0 => panic!("size 0 (to end of file) is never written"),
            n => (8, n as usize),
        };
        assert!(
            size >= header && pos + size <= end,
            "box {kind:?} overruns its parent"
        );
        v.push(BoxRef {
            kind,
            offset: pos,
            header,
            size,
        });
        pos += size;
    }
    assert_eq!(pos, end);
    v
}

fn children(buf: &[u8], parent: &BoxRef, skip: usize) -> Vec<BoxRef> {
    walk(
        buf,
        parent.offset + parent.header + skip,
        parent.offset + parent.size,
    )
}

fn find(boxes: &[BoxRef], kind: &[u8; 4]) -> BoxRef {
    let found: Vec<_> = boxes.iter().filter(|b| &b.kind == kind).collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one {:?}",
        std::str::from_utf8(kind)
    );
    *found[0]
}

fn kinds(boxes: &[BoxRef]) -> Vec<&str> {
    boxes
        .iter()
        .map(|b| std::str::from_utf8(&b.kind).unwrap())
        .collect()
}

/// Descends a path of container boxes from the top level.
fn path(buf: &[u8], names: &[&[u8; 4]]) -> BoxRef {
    let mut level = walk(buf, 0, buf.len());
    let mut b = find(&level, names[0]);
    for name in &names[1..] {
        level = children(buf, &b, 0);
        b = find(&level, name);
    }
    b
}

fn decode_init(buf: &[u8]) -> (Ftyp, Moov) {
    let mut cursor = buf;
    let ftyp = Ftyp::decode(&mut cursor).expect("mp4-atom decodes ftyp");
    let moov = Moov::decode(&mut cursor).expect("mp4-atom decodes moov");
    assert!(cursor.is_empty());
    (ftyp, moov)
}

#[test]
fn video_init_segment_structure() {
    let cfg = avc_config(4);
    let mut out = BytesMut::new();
    write_init_segment(&CmafTrack::Video(&cfg), &mut out);
    let top = walk(&out, 0, out.len());
    assert_eq!(kinds(&top), ["ftyp", "moov"]);
    assert_eq!(kinds(&children(&out, &top[1], 0)), ["mvhd", "trak", "mvex"]);
    let minf = path(&out, &[b"moov", b"trak", b"mdia", b"minf"]);
    assert_eq!(kinds(&children(&out, &minf, 0)), ["vmhd", "dinf", "stbl"]);
    let stbl = path(&out, &[b"moov", b"trak", b"mdia", b"minf", b"stbl"]);
    assert_eq!(
        kinds(&children(&out, &stbl, 0)),
        ["stsd", "stts", "stsc", "stsz", "stco"]
    );

    let (ftyp, moov) = decode_init(&out);
    assert_eq!(ftyp.major_brand, b"iso6".into());
    assert!(ftyp.compatible_brands.contains(&b"cmfc".into()));
    assert!(ftyp.compatible_brands.contains(&b"iso6".into()));
    assert_eq!(moov.trak.len(), 1);
    let trak = &moov.trak[0];
    assert_eq!(trak.tkhd.track_id, TRACK_ID);
    assert!(trak.tkhd.enabled && trak.tkhd.in_movie);
    assert_eq!(trak.tkhd.width.integer(), 320);
    assert_eq!(trak.tkhd.height.integer(), 180);
    assert_eq!(trak.mdia.mdhd.timescale, VIDEO_TIMESCALE);
    assert_eq!(trak.mdia.mdhd.language, "und");
    assert_eq!(trak.mdia.hdlr.handler, b"vide".into());
    assert!(trak.mdia.minf.vmhd.is_some());
    let stbl = &trak.mdia.minf.stbl;
    assert!(stbl.stts.entries.is_empty());
    assert_eq!(stbl.stsd.codecs.len(), 1);
    let mp4_atom::Codec::Avc1(avc1) = &stbl.stsd.codecs[0] else {
        panic!("expected avc1, got {:?}", stbl.stsd.codecs[0]);
    };
    assert_eq!(avc1.visual.width, 320);
    assert_eq!(avc1.visual.height, 180);
    assert_eq!(avc1.visual.data_reference_index, 1);
    assert_eq!(avc1.avcc.length_size, 4);
    assert_eq!(avc1.avcc.avc_profile_indication, 0x64);
    assert_eq!(avc1.avcc.sequence_parameter_sets, [SPS.to_vec()]);
    assert_eq!(avc1.avcc.picture_parameter_sets, [PPS.to_vec()]);
    let ext = avc1.avcc.ext.as_ref().expect("High profile extension kept");
    assert_eq!(
        (ext.chroma_format, ext.bit_depth_luma, ext.bit_depth_chroma),
        (1, 8, 8)
    );
    let mvex = moov.mvex.as_ref().expect("mvex");
    assert_eq!(mvex.trex.len(), 1);
    assert_eq!(mvex.trex[0].track_id, TRACK_ID);
    assert_eq!(mvex.trex[0].default_sample_description_index, 1);
}

#[test]
fn avcc_always_declares_four_byte_lengths() {
    for n in [1u8, 2, 4] {
        let cfg = avc_config(n);
        let mut out = BytesMut::new();
        write_init_segment(&CmafTrack::Video(&cfg), &mut out);
        let avcc = path(&out, &[b"moov", b"trak", b"mdia", b"minf", b"stbl"]);
        let stsd = find(&children(&out, &avcc, 0), b"stsd");
        // stsd: version/flags + entry_count, then avc1 (78-byte VisualSampleEntry body).
        let avc1 = find(&children(&out, &stsd, 8), b"avc1");
        let avcc = find(&children(&out, &avc1, 78), b"avcC");
        let body = avcc.body(&out);
        assert_eq!(
            body[4], 0xFF,
            "lengthSizeMinusOne = 3 for input length size {n}"
        );
        // Everything else is the record as received.
        assert_eq!(&body[..4], &cfg.record[..4]);
        assert_eq!(&body[5..], &cfg.record[5..]);
    }
}

#[test]
fn avcc_is_rebuilt_from_fields_when_record_is_missing() {
    let cfg = AvcConfig {
        record: Bytes::new(),
        ..avc_config(4)
    };
    let mut out = BytesMut::new();
    write_init_segment(&CmafTrack::Video(&cfg), &mut out);
    let (_, moov) = decode_init(&out);
    let mp4_atom::Codec::Avc1(avc1) = &moov.trak[0].mdia.minf.stbl.stsd.codecs[0] else {
        panic!("expected avc1");
    };
    assert_eq!(avc1.avcc.length_size, 4);
    assert_eq!(avc1.avcc.avc_level_indication, 0x0D);
    assert_eq!(avc1.avcc.sequence_parameter_sets, [SPS.to_vec()]);
    assert_eq!(avc1.avcc.picture_parameter_sets, [PPS.to_vec()]);
}

#[test]
fn audio_init_segment_structure() {
    let cfg = aac_config();
    let track = CmafTrack::Audio(&cfg);
    assert_eq!(timescale(&track), 44_100);
    let mut out = BytesMut::new();
    write_init_segment(&track, &mut out);
    let minf = path(&out, &[b"moov", b"trak", b"mdia", b"minf"]);
    assert_eq!(kinds(&children(&out, &minf, 0)), ["smhd", "dinf", "stbl"]);

    let (_, moov) = decode_init(&out);
    let trak = &moov.trak[0];
    assert_eq!(trak.mdia.mdhd.timescale, 44_100);
    assert_eq!(trak.mdia.hdlr.handler, b"soun".into());
    assert!(trak.mdia.minf.smhd.is_some());
    let mp4_atom::Codec::Mp4a(mp4a) = &trak.mdia.minf.stbl.stsd.codecs[0] else {
        panic!("expected mp4a");
    };
    assert_eq!(mp4a.audio.channel_count, 2);
    assert_eq!(mp4a.audio.sample_size, 16);
    assert_eq!(mp4a.audio.sample_rate.integer(), 44_100);
    let dc = &mp4a.esds.es_desc.dec_config;
    assert_eq!(dc.object_type_indication, 0x40);
    assert_eq!(dc.stream_type, 0x05);
    let dsi = dc.dec_specific.as_ref().expect("DecoderSpecificInfo");
    assert_eq!(dsi.raw, cfg.asc.to_vec());
    assert_eq!((dsi.profile, dsi.freq_index, dsi.chan_conf), (2, 4, 2));
}

#[test]
fn audio_asc_is_rebuilt_when_missing() {
    let cfg = AacConfig {
        asc: Bytes::new(),
        channels: 1,
        sample_rate_index: 3,
        sample_rate: 48_000,
        ..aac_config()
    };
    let mut out = BytesMut::new();
    write_init_segment(&CmafTrack::Audio(&cfg), &mut out);
    let (_, moov) = decode_init(&out);
    let mp4_atom::Codec::Mp4a(mp4a) = &moov.trak[0].mdia.minf.stbl.stsd.codecs[0] else {
        panic!("expected mp4a");
    };
    let dsi = mp4a.esds.es_desc.dec_config.dec_specific.as_ref().unwrap();
    assert_eq!((dsi.profile, dsi.freq_index, dsi.chan_conf), (2, 3, 1));
}

#[test]
fn styp_brands() {
    let mut out = BytesMut::new();
    write_styp(&mut out);
    let styp = Styp::decode(&mut &out[..]).unwrap();
    assert_eq!(styp.major_brand, b"msdh".into());
    assert_eq!(styp.compatible_brands, [b"msdh".into(), b"cmfs".into()]);
}

#[test]
fn small_fragment_uses_32_bit_mdat_header() {
    // The 64-bit form is only chosen above 4 GiB; check the walker's and mp4-atom's view of a
    // normal fragment instead, and the arithmetic of the header choice on the boundary.
    let samples = [CmafSample {
        duration: 1,
        cts_offset: 0,
        keyframe: true,
        data: Bytes::from_static(b"abc"),
    }];
    let mut out = BytesMut::new();
    write_fragment(1, 0, &samples, &mut out);
    let top = walk(&out, 0, out.len());
    assert_eq!(top[1].header, 8);
    assert_eq!(top[1].body(&out), b"abc");
}

/// Checks one `moof`+`mdat` pair starting at `at` against what was written; returns the
/// offset after the `mdat`.
fn check_fragment(buf: &[u8], at: usize, seq: u32, base: u64, samples: &[CmafSample]) -> usize {
    let top = walk(buf, at, buf.len());
    assert!(top.len() >= 2);
    let (moof, mdat) = (top[0], top[1]);
    assert_eq!(&moof.kind, b"moof");
    assert_eq!(&mdat.kind, b"mdat");
    assert_eq!(kinds(&children(buf, &moof, 0)), ["mfhd", "traf"]);
    let traf = find(&children(buf, &moof, 0), b"traf");
    assert_eq!(kinds(&children(buf, &traf, 0)), ["tfhd", "tfdt", "trun"]);

    // Our own reading of the trun.
    let trun = find(&children(buf, &traf, 0), b"trun").body(buf);
    assert_eq!(trun[0], 1, "trun version 1");
    let count = u32::from_be_bytes(trun[4..8].try_into().unwrap()) as usize;
    assert_eq!(count, samples.len());
    let data_offset = i32::from_be_bytes(trun[8..12].try_into().unwrap());
    assert_eq!(
        moof.offset + data_offset as usize,
        mdat.offset + mdat.header,
        "data_offset -> mdat payload"
    );
    let payload: usize = samples.iter().map(|s| s.data.len()).sum();
    assert_eq!(
        mdat.size,
        mdat.header + payload,
        "mdat size = sum of sample sizes"
    );

    // The independent reader.
    let moof_atom = Moof::decode(&mut &buf[moof.offset..moof.offset + moof.size])
        .expect("mp4-atom decodes moof");
    assert_eq!(moof_atom.mfhd.sequence_number, seq);
    assert_eq!(moof_atom.traf.len(), 1);
    let traf = &moof_atom.traf[0];
    assert_eq!(traf.tfhd.track_id, TRACK_ID);
    assert!(traf.tfhd.default_base_is_moof);
    assert_eq!(traf.tfhd.base_data_offset, None);
    assert_eq!(
        traf.tfdt.as_ref().map(|t| t.base_media_decode_time),
        Some(base)
    );
    assert_eq!(traf.trun.len(), 1);
    assert_eq!(traf.trun[0].data_offset, Some(data_offset));
    let entries = &traf.trun[0].entries;
    assert_eq!(entries.len(), samples.len());
    let mut pos = mdat.offset + mdat.header;
    for (e, s) in entries.iter().zip(samples) {
        assert_eq!(e.duration, Some(s.duration));
        assert_eq!(e.size, Some(s.data.len() as u32));
        assert_eq!(e.cts, Some(s.cts_offset));
        let flags = e.flags.unwrap();
        assert_eq!(
            flags,
            if s.keyframe {
                SAMPLE_FLAGS_SYNC
            } else {
                SAMPLE_FLAGS_NON_SYNC
            }
        );
        // sample_depends_on / sample_is_non_sync_sample, read field by field (8.8.3.1).
        assert_eq!((flags >> 24) & 3, if s.keyframe { 2 } else { 1 });
        assert_eq!((flags >> 16) & 1, u32::from(!s.keyframe));
        assert_eq!(
            &buf[pos..pos + s.data.len()],
            &s.data[..],
            "sample bytes in order"
        );
        pos += s.data.len();
    }
    mdat.offset + mdat.size
}

#[test]
fn fragment_layout_and_flags() {
    let samples = vec![
        CmafSample {
            duration: 3000,
            cts_offset: 6000,
            keyframe: true,
            data: Bytes::from_static(&[0, 0, 0, 2, 0x65, 1]),
        },
        CmafSample {
            duration: 3000,
            cts_offset: -3000,
            keyframe: false,
            data: Bytes::from_static(&[0, 0, 0, 1, 0x41]),
        },
        CmafSample {
            duration: 2999,
            cts_offset: 0,
            keyframe: false,
            data: Bytes::new(),
        },
    ];
    let mut out = BytesMut::from(&b"prefix"[..]);
    write_fragment(7, 1 << 40, &samples, &mut out);
    let out = &out[6..];
    let end = check_fragment(out, 0, 7, 1 << 40, &samples);
    assert_eq!(end, out.len());
}

fn sample_strategy() -> impl Strategy<Value = CmafSample> {
    (
        any::<u32>(),
        any::<i32>(),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(duration, cts_offset, keyframe, data)| CmafSample {
            duration,
            cts_offset,
            keyframe,
            data: Bytes::from(data),
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// A segment built from parts (optionally behind a styp) walks cleanly, each chunk's
    /// trun/mdat/data_offset agree, and tfdt is exactly the base time given, here the running
    /// sum of durations like the packager computes it.
    #[test]
    fn segment_of_chunks_round_trips(
        first_seq in any::<u32>(),
        start in any::<u64>(),
        parts in prop::collection::vec(prop::collection::vec(sample_strategy(), 0..12), 1..6),
        styp in any::<bool>(),
    ) {
        let mut out = BytesMut::new();
        if styp {
            write_styp(&mut out);
        }
        let mut base = start;
        let mut bases = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            write_fragment(first_seq.wrapping_add(i as u32), base, part, &mut out);
            bases.push(base);
            base = base.wrapping_add(part.iter().map(|s| u64::from(s.duration)).sum::<u64>());
        }
        let mut pos = 0;
        if styp {
            let top = walk(&out, 0, out.len());
            prop_assert_eq!(&top[0].kind, b"styp");
            pos = top[0].size;
        }
        for (i, part) in parts.iter().enumerate() {
            pos = check_fragment(&out, pos, first_seq.wrapping_add(i as u32), bases[i], part);
        }
        prop_assert_eq!(pos, out.len());

        // mp4-atom also reads the whole segment as a flat list of top-level boxes.
        let mut cursor = &out[..];
        let mut n = 0;
        while !cursor.is_empty() {
            let atom = Any::decode(&mut cursor).expect("mp4-atom decodes every top-level box");
            match atom {
                Any::Moof(_) | Any::Mdat(_) | Any::Styp(_) => n += 1,
                other => prop_assert!(false, "unexpected box {:?}", other),
            }
        }
        prop_assert_eq!(n, parts.len() * 2 + usize::from(styp));
    }

    /// Any config yields an init segment that both readers accept.
    #[test]
    fn any_init_segment_decodes(
        width in any::<u32>(),
        height in any::<u32>(),
        nal_len in prop_oneof![Just(1u8), Just(2u8), Just(4u8)],
        channels in 0u8..8,
        asc in prop::collection::vec(any::<u8>(), 2..6),
        rate in any::<u32>(),
    ) {
        let v = AvcConfig { width, height, ..avc_config(nal_len) };
        let a = AacConfig { channels, asc: Bytes::from(asc), sample_rate: rate, ..aac_config() };
        for track in [CmafTrack::Video(&v), CmafTrack::Audio(&a)] {
            let mut out = BytesMut::new();
            write_init_segment(&track, &mut out);
            walk(&out, 0, out.len());
            let (_, moov) = decode_init(&out);
            prop_assert_eq!(moov.trak[0].mdia.mdhd.timescale, timescale(&track));
        }
    }
}
