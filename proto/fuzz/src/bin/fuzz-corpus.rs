//! The seed-corpus tool behind `scripts/fuzz-corpus`.
//!
//! - `fuzz-corpus free-port`: prints a free TCP port on 127.0.0.1.
//! - `fuzz-corpus proxy LISTEN UPSTREAM OUT`: accepts one connection on LISTEN (127.0.0.1),
//!   relays it to UPSTREAM both ways, and records every client->server read into OUT as
//!   `len:u32 BE` + bytes, so read boundaries are kept. Exits when both directions close.
//! - `fuzz-corpus extract OUT_DIR NAME=CAPTURE... [--flv NAME=FILE...]`: derives seeds for
//!   every target from recorded publisher sessions (and from FLV files), writes them as
//!   `OUT_DIR/<target>/<name>-<what>`, and replays the session seeds through the
//!   `rtmp_session` driver to show they reach the media path.
//!
//! Captures are trusted input written by the proxy; this tool still reports malformed ones
//! as errors instead of panicking.

use std::collections::BTreeMap;
use std::error::Error;
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;

use bytes::Bytes;
use hivecast_proto::codec::aac::AacConfig;
use hivecast_proto::codec::h264::{self, AvcConfig};
use hivecast_proto::flv::file::{FlvFileReader, TAG_AUDIO, TAG_VIDEO};
use hivecast_proto::flv::{self, FlvAudio, FlvVideo};
use hivecast_proto::peer::{
    encode_frame, ErrorCode, MediaFrame, MediaFrameV1, NodeLoad, PeerNode, PeerRequest,
    PeerResponse, RaftRpc, RequestV1, ResponseV1, WireFormat, WireKind, WireTrackInfo,
};
use hivecast_proto::rtmp::RtmpLimits;
use hivecast_proto::{beacon, cmcd};
use hivecast_proto_fuzz::formats;
use hivecast_proto_fuzz::session::{self, Op, Script, FLAG_SMALL_FEEDS};
use hivecast_proto_fuzz::wire::{msg_type, HANDSHAKE_LEN};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Post-handshake bytes kept in a raw session seed: connect..publish, metadata, both
/// sequence headers, the first audio frames and the start of the first keyframe fit (about
/// 1.5 KiB precede the media); more media only slows every execution down.
const RAW_SESSION_BUDGET: usize = 6 * 1024;
/// Media messages kept in a structured session seed, and the largest body among them
/// (bigger ones, the keyframes, are skipped: the session code does not look inside them).
const STRUCTURED_MEDIA: usize = 10;
const MAX_STRUCTURED_BODY: usize = 2 * 1024;
/// Largest video frame used as a seed on its own.
const MAX_FRAME_SEED: usize = 16 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("free-port") => free_port(),
        Some("proxy") if args.len() == 4 => proxy(&args[1], &args[2], Path::new(&args[3])),
        Some("extract") if args.len() >= 3 => extract(&args[1..]),
        _ => Err(
            "usage: fuzz-corpus free-port | proxy LISTEN UPSTREAM OUT | \
                  extract OUT_DIR NAME=CAPTURE... [--flv NAME=FILE...]"
                .into(),
        ),
    };
    if let Err(e) = result {
        eprintln!("fuzz-corpus: {e}");
        std::process::exit(1);
    }
}

fn free_port() -> Result<()> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    println!("{}", l.local_addr()?.port());
    Ok(())
}

fn proxy(listen: &str, upstream: &str, out: &Path) -> Result<()> {
    let listener = TcpListener::bind(listen)?;
    eprintln!(
        "fuzz-corpus: proxy {} -> {upstream}",
        listener.local_addr()?
    );
    let (client, _) = listener.accept()?;
    let server = TcpStream::connect(upstream)?;
    let mut file = fs::File::create(out)?;
    let (mut c_read, mut s_write) = (client.try_clone()?, server.try_clone()?);
    let (mut s_read, mut c_write) = (server, client);
    let back = thread::spawn(move || {
        let _ = std::io::copy(&mut s_read, &mut c_write);
        let _ = c_write.shutdown(Shutdown::Write);
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0usize;
    loop {
        let n = match c_read.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        file.write_all(&(n as u32).to_be_bytes())?;
        file.write_all(&buf[..n])?;
        total += n;
        if s_write.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = s_write.shutdown(Shutdown::Write);
    let _ = back.join();
    file.flush()?;
    eprintln!(
        "fuzz-corpus: recorded {total} client bytes into {}",
        out.display()
    );
    Ok(())
}

/// The client->server reads of a capture file.
fn read_capture(path: &Path) -> Result<Vec<Vec<u8>>> {
    let data = fs::read(path)?;
    let mut reads = Vec::new();
    let mut rest = &data[..];
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or("capture: truncated length")?;
        let n = u32::from_be_bytes(*len) as usize;
        let read = tail.get(..n).ok_or("capture: truncated read")?;
        reads.push(read.to_vec());
        rest = &tail[n..];
    }
    Ok(reads)
}

/// One reassembled RTMP message of a capture.
#[derive(Debug, Clone)]
struct Msg {
    type_id: u8,
    msid: u32,
    timestamp: u32,
    body: Vec<u8>,
}

/// A plain RTMP dechunker (RTMP 5.3) for well-formed captures.
fn dechunk(stream: &[u8]) -> Result<Vec<Msg>> {
    #[derive(Clone, Default)]
    struct Cs {
        ts: u32,
        delta: u32,
        len: u32,
        type_id: u8,
        msid: u32,
        ext: bool,
        body: Vec<u8>,
    }
    let mut streams: BTreeMap<u32, Cs> = BTreeMap::new();
    let mut chunk_size = 128usize;
    let mut out = Vec::new();
    let mut pos = 0usize;
    let need = |pos: usize, n: usize| -> Result<&[u8]> {
        stream.get(pos..pos + n).ok_or_else(|| "eof".into())
    };
    while pos < stream.len() {
        let Ok(b0) = need(pos, 1) else { break };
        let fmt = b0[0] >> 6;
        let (csid, basic) = match b0[0] & 0x3f {
            0 => match need(pos + 1, 1) {
                Ok(b) => (64 + u32::from(b[0]), 2),
                Err(_) => break,
            },
            1 => match need(pos + 1, 2) {
                Ok(b) => (64 + u32::from(b[0]) + 256 * u32::from(b[1]), 3),
                Err(_) => break,
            },
            c => (u32::from(c), 1),
        };
        let mh = [11, 7, 3, 0][usize::from(fmt)];
        let Ok(h) = need(pos + basic, mh) else { break };
        let h = h.to_vec();
        let cs = streams.entry(csid).or_default();
        let u24 = |b: &[u8]| (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let new_message = cs.body.is_empty();
        if fmt <= 2 {
            let t = u24(&h[0..3]);
            cs.ext = t == 0xff_ffff;
            if fmt == 0 {
                cs.ts = t;
                cs.delta = 0;
            } else {
                cs.delta = t;
            }
        }
        if fmt <= 1 {
            cs.len = u24(&h[3..6]);
            cs.type_id = h[6];
        }
        if fmt == 0 {
            cs.msid = u32::from_le_bytes([h[7], h[8], h[9], h[10]]);
        }
        let mut p = pos + basic + mh;
        if cs.ext {
            let Ok(e) = need(p, 4) else { break };
            let e = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
            if fmt == 0 {
                cs.ts = e;
            } else if fmt <= 2 {
                cs.delta = e;
            }
            p += 4;
        }
        if new_message && fmt != 0 {
            cs.ts = cs.ts.wrapping_add(cs.delta);
        }
        let left = cs.len as usize - cs.body.len();
        let n = left.min(chunk_size);
        let Ok(piece) = need(p, n) else { break };
        cs.body.extend_from_slice(piece);
        pos = p + n;
        if cs.body.len() == cs.len as usize {
            let body = std::mem::take(&mut cs.body);
            if cs.type_id == msg_type::SET_CHUNK_SIZE {
                let b = body.get(..4).ok_or("short SetChunkSize")?;
                chunk_size = (u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff) as usize;
            }
            out.push(Msg {
                type_id: cs.type_id,
                msid: cs.msid,
                timestamp: cs.ts,
                body,
            });
        }
    }
    Ok(out)
}

/// AMF0 string at the start of `body`, if any.
fn amf_string(body: &[u8]) -> Option<&[u8]> {
    let (&marker, rest) = body.split_first()?;
    if marker != 2 {
        return None;
    }
    let (len, rest) = rest.split_first_chunk::<2>()?;
    rest.get(..usize::from(u16::from_be_bytes(*len)))
}

/// The string value of the `publish` command (the stream key) or of `connect`'s `app`.
fn command_arg(body: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    match name {
        b"publish" => {
            // "publish", txid (9 bytes), null, then the key string.
            let at = 3 + 7 + 9 + 1;
            amf_string(body.get(at..)?).map(<[u8]>::to_vec)
        }
        _ => {
            // connect: find the "app" property.
            let i = body.windows(5).position(|w| w == b"\x00\x03app")?;
            amf_string(&body[i + 5..]).map(<[u8]>::to_vec)
        }
    }
}

/// Seeds collected per target.
#[derive(Default)]
struct Seeds {
    by_target: BTreeMap<&'static str, Vec<(String, Vec<u8>)>>,
}

impl Seeds {
    fn add(&mut self, target: &'static str, name: String, data: Vec<u8>) {
        let list = self.by_target.entry(target).or_default();
        if list.iter().any(|(_, d)| *d == data) {
            return;
        }
        // Distinct seeds with the same label (two data messages, say) get a suffix.
        let mut unique = name.clone();
        let mut n = 1;
        while list.iter().any(|(existing, _)| *existing == unique) {
            n += 1;
            unique = format!("{name}-{n}");
        }
        list.push((unique, data));
    }

    fn write(&self, dir: &Path) -> Result<()> {
        for (target, seeds) in &self.by_target {
            let d = dir.join(target);
            fs::create_dir_all(&d)?;
            for (name, data) in seeds {
                fs::write(d.join(name), data)?;
            }
            let bytes: usize = seeds.iter().map(|(_, d)| d.len()).sum();
            println!("{target}: {} seeds, {bytes} bytes", seeds.len());
        }
        Ok(())
    }
}

/// Media bodies found in a source, in order.
#[derive(Default)]
struct Media {
    /// (type, timestamp, body) of audio/video messages.
    tags: Vec<(u8, u32, Vec<u8>)>,
}

/// Seeds for the FLV and codec targets from media bodies.
fn media_seeds(seeds: &mut Seeds, name: &str, media: &Media) {
    let mut nal_length_size = 4;
    let mut frames = 0usize;
    let mut audio_frames = 0usize;
    let mut keyframe_done = false;
    for (type_id, _, body) in &media.tags {
        let payload = Bytes::copy_from_slice(body);
        if *type_id == msg_type::VIDEO {
            match flv::parse_video(&payload) {
                Ok(FlvVideo::SequenceHeader(record)) => {
                    seeds.add("flv_video", format!("{name}-seqhdr"), body.clone());
                    seeds.add("avc_config", format!("{name}-avcc"), record.to_vec());
                    if let Ok(cfg) = AvcConfig::parse(record) {
                        nal_length_size = cfg.nal_length_size;
                        if let Some(pps) = cfg.pps.first() {
                            seeds.add(
                                "sps",
                                format!("{name}-sps-pps"),
                                formats::join_sps(&cfg.sps[0], pps),
                            );
                        }
                    }
                }
                Ok(FlvVideo::Frame { keyframe, data, .. }) => {
                    let small = body.len() <= MAX_FRAME_SEED;
                    if keyframe && !keyframe_done && small {
                        keyframe_done = true;
                        seeds.add("flv_video", format!("{name}-keyframe"), body.clone());
                        frame_seeds(seeds, &format!("{name}-keyframe"), &data, nal_length_size);
                    } else if !keyframe && frames < 3 && small {
                        frames += 1;
                        seeds.add("flv_video", format!("{name}-frame{frames}"), body.clone());
                        frame_seeds(
                            seeds,
                            &format!("{name}-frame{frames}"),
                            &data,
                            nal_length_size,
                        );
                    }
                }
                Ok(FlvVideo::EndOfSequence) => {
                    seeds.add("flv_video", format!("{name}-eos"), body.clone());
                }
                Err(_) => {}
            }
        } else if *type_id == msg_type::AUDIO {
            match flv::parse_audio(&payload) {
                Ok(FlvAudio::SequenceHeader(asc)) => {
                    seeds.add("flv_audio", format!("{name}-seqhdr"), body.clone());
                    if AacConfig::parse(asc.clone()).is_ok() {
                        seeds.add(
                            "aac_config",
                            format!("{name}-asc"),
                            formats::join_aac(371, &asc),
                        );
                    }
                }
                Ok(FlvAudio::Frame(_)) if audio_frames < 2 => {
                    audio_frames += 1;
                    seeds.add(
                        "flv_audio",
                        format!("{name}-frame{audio_frames}"),
                        body.clone(),
                    );
                }
                _ => {}
            }
        }
    }
}

/// `h264_frames` seeds: the access unit as sent, and re-prefixed with 2- and 1-byte lengths
/// when its NAL units fit.
fn frame_seeds(seeds: &mut Seeds, name: &str, au: &[u8], nal_length_size: u8) {
    seeds.add(
        "h264_frames",
        format!("{name}-avcc{nal_length_size}"),
        formats::join_frames(nal_length_size, au),
    );
    let Ok(nalus) =
        h264::avcc_nalus(au, nal_length_size).collect::<std::result::Result<Vec<_>, _>>()
    else {
        return;
    };
    for size in [2u8, 1] {
        if size == nal_length_size || nalus.iter().any(|n| n.len() >= 1 << (8 * u32::from(size))) {
            continue;
        }
        let mut out = Vec::new();
        for n in &nalus {
            out.extend_from_slice(&(n.len() as u32).to_be_bytes()[4 - usize::from(size)..]);
            out.extend_from_slice(n);
        }
        seeds.add(
            "h264_frames",
            format!("{name}-avcc{size}"),
            formats::join_frames(size, &out),
        );
    }
}

/// Seeds from one recorded publisher session.
fn capture_seeds(seeds: &mut Seeds, name: &str, reads: &[Vec<u8>]) -> Result<()> {
    let stream: Vec<u8> = reads.concat();
    if stream.len() < HANDSHAKE_LEN || stream[0] != 3 {
        return Err(format!("{name}: no RTMP handshake in the capture").into());
    }
    let end = (HANDSHAKE_LEN + 1024).min(stream.len());
    seeds.add(
        "rtmp_handshake",
        format!("{name}-c0c1c2"),
        stream[..HANDSHAKE_LEN].to_vec(),
    );
    seeds.add(
        "rtmp_handshake",
        format!("{name}-c0c1c2-connect"),
        stream[..end].to_vec(),
    );

    // The reads after the handshake, as the client split them, within the budget.
    let mut post = Vec::new();
    let mut offset = 0usize;
    let mut budget = RAW_SESSION_BUDGET;
    for r in reads {
        let skip = HANDSHAKE_LEN.saturating_sub(offset).min(r.len());
        offset += r.len();
        let mut rest = &r[skip..];
        while !rest.is_empty() && budget > 0 {
            let n = rest.len().min(0xffff).min(budget);
            post.push(&rest[..n]);
            rest = &rest[n..];
            budget -= n;
        }
    }
    let raw = Script {
        flags: 0,
        ops: post.iter().map(|r| Op::Raw(r)).collect(),
    };
    seeds.add("rtmp_session", format!("{name}-raw"), raw.encode());
    let mut small = raw.clone();
    small.flags = FLAG_SMALL_FEEDS | (15 << 4);
    seeds.add(
        "rtmp_session",
        format!("{name}-raw-16b-reads"),
        small.encode(),
    );

    let messages = dechunk(&stream[HANDSHAKE_LEN..])?;
    let mut media = Media::default();
    let mut app = b"live".to_vec();
    let mut key = b"key".to_vec();
    let mut ops_media = Vec::new();
    for m in &messages {
        match m.type_id {
            msg_type::AMF0_COMMAND | msg_type::AMF3_COMMAND => {
                let cmd = amf_string(&m.body).unwrap_or_default();
                let selector = if m.msid == 0 { 0 } else { 4 };
                let what =
                    String::from_utf8_lossy(cmd).replace(|c: char| !c.is_ascii_alphanumeric(), "_");
                seeds.add(
                    "amf0",
                    format!("{name}-{what}"),
                    formats::join_amf(selector, &m.body),
                );
                if cmd == b"connect" {
                    app = command_arg(&m.body, b"connect").unwrap_or(app);
                } else if cmd == b"publish" {
                    key = command_arg(&m.body, b"publish").unwrap_or(key);
                }
            }
            msg_type::AMF0_DATA | msg_type::AMF3_DATA => {
                seeds.add(
                    "amf0",
                    format!("{name}-data"),
                    formats::join_amf(5, &m.body),
                );
            }
            msg_type::VIDEO | msg_type::AUDIO => {
                media.tags.push((m.type_id, m.timestamp, m.body.clone()));
            }
            _ => {}
        }
    }
    media_seeds(seeds, name, &media);

    // A structured seed: the same session as ops, media bodies as they were sent.
    let small_media = media
        .tags
        .iter()
        .filter(|(_, _, body)| body.len() <= MAX_STRUCTURED_BODY);
    for (type_id, ts, body) in small_media.take(STRUCTURED_MEDIA) {
        ops_media.push(if *type_id == msg_type::VIDEO {
            Op::Video(*ts, body)
        } else {
            Op::Audio(*ts, body)
        });
    }
    let mut ops = vec![
        Op::SetChunkSize(4096),
        Op::Connect(&app),
        Op::CreateStream,
        Op::Publish(&key),
        Op::Metadata(&[]),
    ];
    ops.extend(ops_media);
    ops.push(Op::Unpublish);
    let structured = Script { flags: 0, ops };
    seeds.add(
        "rtmp_session",
        format!("{name}-structured"),
        structured.encode(),
    );

    for (label, script) in [("raw", &raw), ("structured", &structured)] {
        let d = session::run(script, RtmpLimits::default());
        println!(
            "{name} {label} session replay: error {:?}, {:?}",
            d.error, d.stats
        );
        if d.error.is_some() || d.stats.video == 0 || d.stats.avc_configs == 0 {
            return Err(
                format!("{name}: the {label} session seed does not reach the media").into(),
            );
        }
    }
    Ok(())
}

/// Seeds from an FLV file (tag bodies are what RTMP media messages carry).
fn flv_seeds(seeds: &mut Seeds, name: &str, path: &Path) -> Result<()> {
    let reader = FlvFileReader::new(Bytes::from(fs::read(path)?))?;
    let mut media = Media::default();
    for tag in reader {
        let tag = tag?;
        let type_id = match tag.tag_type {
            TAG_VIDEO => msg_type::VIDEO,
            TAG_AUDIO => msg_type::AUDIO,
            _ => continue,
        };
        media
            .tags
            .push((type_id, tag.timestamp_ms, tag.data.to_vec()));
    }
    media_seeds(seeds, name, &media);
    Ok(())
}

/// Delivery directive queries as players send them (RFC 8216bis 6.2.5, hls.js and AVPlayer
/// forms), with playlist shapes that make each decision path reachable.
fn hls_seeds(seeds: &mut Seeds) {
    // flags: bit0 ended, bit1 part-inf, bits 2-3 segments, bits 4-6 trailing parts.
    let live = [0b0011_1110, 4, 0, 0, 0, 0, 0, 10];
    let no_parts = [0b0000_1100, 0, 0, 0, 0, 0, 0, 10];
    let ended = [0b0000_1111, 4, 0, 0, 0, 0, 0, 10];
    for (i, (shape, q)) in [
        (live, "_HLS_msn=13&_HLS_part=2"),
        (live, "?_HLS_msn=12&_HLS_part=3&_HLS_skip=YES"),
        (live, "_HLS_msn=13"),
        (live, "_HLS_msn=14&_HLS_part=0"),
        (live, "_HLS_skip=v2"),
        (no_parts, "_HLS_msn=11"),
        (no_parts, "token=abc&_HLS_msn=12&CMCD=br%3D3200"),
        (ended, "_HLS_msn=99&_HLS_part=9"),
        (live, "_HLS_part=1"),
        (
            live,
            "_HLS_msn=18446744073709551615&_HLS_part=18446744073709551615",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        seeds.add(
            "hls_query",
            format!("spec-{i}"),
            formats::join_hls(shape, q),
        );
    }
}

/// CMCD (CTA-5004) as players send it: the spec's own example (section 5) as a query argument,
/// as a payload and as its four headers, the forms hls.js 1.7 writes (`URLSearchParams`, so
/// `+` for a space; v1, and v2 with inner lists and parameters), custom keys and the lenient
/// spacing some players use. The `cmcd` target reads its whole input as a payload, as a
/// query string and as header values split on `\n`; each seed is checked in the form it was
/// written for.
fn cmcd_seeds(seeds: &mut Seeds) -> Result<()> {
    const SID: &str = "6e2fb550-c457-11e9-bb97-0800200c9a66";
    const CID: &str = "faec5fc2-ac30-11eabb37-0242ac130002";
    let spec_payload = format!(
        r#"bl=21300,br=3200,bs,cid="{CID}",d=4004,dl=18500,mtp=48100,nor="..%2F300kbps%2Ftrack.m4v",nrr="12323-48763",ot=v,pr=1.08,rtp=12000,sf=d,sid="{SID}",st=v,su,tb=6000"#
    );
    let spec_headers = format!(
        "br=3200,d=4004,ot=v,tb=6000\n\
         bl=21300,dl=18500,mtp=48100,nor=\"..%2F300kbps%2Ftrack.m4v\",nrr=\"12323-48763\",su\n\
         cid=\"{CID}\",pr=1.08,sf=d,sid=\"{SID}\",st=v\n\
         bs,rtp=12000"
    );
    let parsed = cmcd::parse_payload(&spec_payload).map_err(|e| format!("spec payload: {e}"))?;
    let seeds_by_form = [
        ("query", "spec-query", cmcd::encode_query(&parsed)),
        ("payload", "spec-payload", spec_payload.clone()),
        ("headers", "spec-headers", spec_headers),
        (
            "query",
            "hlsjs-manifest-query",
            format!("CMCD=ot%3Dm%2Csf%3Dh%2Csid%3D%22{SID}%22%2Csu"),
        ),
        (
            "query",
            "hlsjs-segment-query",
            format!(
                "_HLS_msn=12&_HLS_part=3&CMCD=bl%3D1200%2Cbr%3D1465%2Cd%3D2000%2Cmtp%3D25400\
                 %2Cot%3Dav%2Csf%3Dh%2Csid%3D%22{SID}%22%2Cst%3Dl%2Ctb%3D4628"
            ),
        ),
        (
            "query",
            "urlsearchparams-plus",
            "token=abc&CMCD=cid%3D%22my+movie%2B1%22%2Cpr%3D1.5%2Cbs".to_string(),
        ),
        (
            "payload",
            "hlsjs-v2-payload",
            format!(
                r#"bl=(1200),br=(3200;ot=v 128;ot=a),msd=1234,nor=("seg2.m4s";r="100-200"),ot=v,sf=h,sid="{SID}",sn=4,sta=p,v=2"#
            ),
        ),
        (
            "payload",
            "custom-keys",
            r#"br=3200,com.example-myNumericKey=500,com.example-myStringKey="myStringValue",ot=v"#
                .to_string(),
        ),
        (
            "headers",
            "headers-whitespace",
            "bl=21300, mtp=48100, su\n br=3200;x=1, ot=v\nbs=?1, rtp=12000".to_string(),
        ),
    ];
    for (form, name, text) in seeds_by_form {
        let parsed = match form {
            "query" => cmcd::from_query(&text).map(|c| c.is_some()),
            "headers" => cmcd::from_headers(text.split('\n').map(str::as_bytes)).map(|_| true),
            _ => cmcd::parse_payload(&text).map(|_| true),
        };
        match parsed {
            Ok(true) => seeds.add("cmcd", name.into(), text.into_bytes()),
            Ok(false) => return Err(format!("CMCD seed {name}: no CMCD parameter").into()),
            Err(e) => return Err(format!("CMCD seed {name}: {e}").into()),
        }
    }
    Ok(())
}

/// Beacon bodies (`POST /v1/beacon`) in the format the player page sends: a start, a full
/// heartbeat, an error with a message, a batch of the events a hidden tab queues, and an event
/// with fields this version ignores. Each is checked to parse.
fn beacon_seeds(seeds: &mut Seeds) -> Result<()> {
    const SID: &str = "6e2fb550-c457-11e9-bb97-0800200c9a66";
    let heartbeat = format!(
        r#"{{"sid":"{SID}","stream":"demo","event":"heartbeat","rendition":"480p","bitrate_kbps":1200,"buffer_ms":1500,"latency_ms":1800.5,"stall_ms":0,"dropped_frames":3,"bytes":1843200}}"#
    );
    let bodies = [
        (
            "start",
            format!(
                r#"{{"sid":"{SID}","stream":"demo","event":"start","rendition":"720p","bitrate_kbps":2800,"buffer_ms":2000,"latency_ms":3100.25}}"#
            ),
        ),
        ("heartbeat", heartbeat.clone()),
        (
            "error",
            format!(
                r#"{{"sid":"{SID}","stream":"demo","event":"error","message":"networkError: fragLoadError (fatal) \"https://edge/hls/demo/480p/seg12.ts\""}}"#
            ),
        ),
        (
            "batch",
            format!(
                r#"[{heartbeat},
 {{"sid":"{SID}","stream":"demo","event":"switch","rendition":"720p","bitrate_kbps":2800}},
 {{"sid":"{SID}","stream":"demo","event":"stall","stall_ms":2300,"buffer_ms":0}},
 {{"sid":"{SID}","stream":"demo","event":"end","latency_ms":2000}}]"#
            ),
        ),
        (
            "unknown-fields",
            format!(
                r#"{{"v":1,"sid":"{SID}","stream":"demo_2-b","event":"end","player":{{"name":"hls.js","version":"1.7.4","levels":[240,480,720]}},"rendition":null}}"#
            ),
        ),
    ];
    for (name, body) in bodies {
        beacon::parse_beacon(body.as_bytes()).map_err(|e| format!("beacon seed {name}: {e}"))?;
        seeds.add("beacon", name.into(), body.into_bytes());
    }
    Ok(())
}

/// AudioSpecificConfigs no capture here has (every encoder above writes AAC-LC), built from
/// 14496-3 1.6.2.1: explicit HE-AAC (object type 5, SBR) and HE-AACv2 (29, PS) over an LC
/// core, an escaped object type (31 -> 32 + 6 bits), and an explicit 24-bit frequency.
fn aac_seeds(seeds: &mut Seeds) -> Result<()> {
    for (name, asc) in [
        // 5 | 24 kHz (6) | stereo | ext 48 kHz (3) | core 2 (LC)
        ("he-aac-explicit", &[0x2b, 0x11, 0x88][..]),
        // 29 | 24 kHz | mono | ext 48 kHz | core 2
        ("he-aac-v2-explicit", &[0xeb, 0x09, 0x88]),
        // 31 + 6 bits (object type 42, USAC) | 48 kHz | stereo
        ("escaped-object-type", &[0xf9, 0x46, 0x40]),
        // 2 | index 15 + 24-bit 44100 | mono
        ("explicit-frequency", &[0x17, 0x80, 0x56, 0x22, 0x08]),
    ] {
        let cfg = AacConfig::parse(Bytes::copy_from_slice(asc))
            .map_err(|e| format!("synthetic ASC {name}: {e}"))?;
        println!("synthetic ASC {name}: {}", cfg.codec_string());
        seeds.add(
            "aac_config",
            format!("synthetic-{name}"),
            formats::join_aac(371, asc),
        );
    }
    Ok(())
}

/// Node-to-node messages as a node writes them (`hivecast_proto::peer`): every request and
/// response variant, encoded whole, and replication pushes as framed `MediaFrame` streams
/// (a session snapshot with CMAF and TS tracks, then live changes and the end; a refusal).
/// The nodes' own bytes cannot be recorded here (the QUIC transport encrypts them), so the
/// messages are built from the types, with the values a small cluster uses.
fn peer_seeds(seeds: &mut Seeds) {
    let node = |name: &str, port: u16| PeerNode {
        name: name.into(),
        region: "eu-west".into(),
        quic: format!("127.0.0.1:{}", 7000 + port),
        http: format!("http://127.0.0.1:{}", 8080 + port),
        rtmp: format!("127.0.0.1:{}", 1935 + port),
    };
    // Raft and registry bodies are opaque to proto (the node encodes them with postcard).
    let raft_body = |n: u8| (0..40u8).map(|i| i.wrapping_mul(n)).collect::<Vec<u8>>();
    let requests = [
        ("hello", RequestV1::Hello { from: node("a", 0) }),
        ("join", RequestV1::Join { node: node("b", 1) }),
        (
            "raft-append-entries",
            RequestV1::Raft {
                rpc: RaftRpc::AppendEntries,
                body: raft_body(3),
            },
        ),
        (
            "raft-vote",
            RequestV1::Raft {
                rpc: RaftRpc::Vote,
                body: raft_body(5),
            },
        ),
        (
            "raft-install-snapshot",
            RequestV1::Raft {
                rpc: RaftRpc::InstallSnapshot,
                body: raft_body(7),
            },
        ),
        (
            "write",
            RequestV1::Write {
                body: b"\x01\x04demo\x2a".to_vec(),
            },
        ),
        (
            "heartbeat",
            RequestV1::Heartbeat {
                from: "c".into(),
                load: NodeLoad {
                    cpu_pct: 37.5,
                    streams: 2,
                    requests_per_s: 120.25,
                },
            },
        ),
        (
            "subscribe",
            RequestV1::Subscribe {
                stream: "demo".into(),
                epoch: 3,
            },
        ),
    ];
    for (name, r) in requests {
        let wire = PeerRequest::V1(r).encode();
        seeds.add(
            "peer_wire",
            format!("request-{name}"),
            formats::join_peer(0, &wire),
        );
    }
    let error = |code, message: &str| ResponseV1::Error {
        code,
        message: message.into(),
    };
    let responses = [
        (
            "hello",
            ResponseV1::Hello {
                node: node("b", 1),
                initialized: true,
                leader: Some(node("a", 0)),
            },
        ),
        (
            "hello-uninitialized",
            ResponseV1::Hello {
                node: node("c", 2),
                initialized: false,
                leader: None,
            },
        ),
        ("joined", ResponseV1::Joined),
        (
            "not-leader",
            ResponseV1::NotLeader {
                leader: Some(node("a", 0)),
            },
        ),
        ("not-leader-unknown", ResponseV1::NotLeader { leader: None }),
        (
            "raft",
            ResponseV1::Raft {
                body: raft_body(11),
            },
        ),
        (
            "write",
            ResponseV1::Write {
                body: b"\x00\x03".to_vec(),
            },
        ),
        ("ack", ResponseV1::Ack),
        (
            "error-version",
            error(ErrorCode::Version, "unknown message version"),
        ),
        (
            "error-unavailable",
            error(ErrorCode::Unavailable, "no leader yet"),
        ),
        ("error-invalid", error(ErrorCode::Invalid, "unknown stream")),
    ];
    for (name, r) in responses {
        let wire = PeerResponse::V1(r).encode();
        seeds.add(
            "peer_wire",
            format!("response-{name}"),
            formats::join_peer(0, &wire),
        );
    }

    let info = |codec: &str, video: bool| WireTrackInfo {
        codec: codec.into(),
        width: video.then_some(1280),
        height: video.then_some(720),
        frame_rate: video.then_some(29.97),
        sample_rate: (!video).then_some(48_000),
        channels: (!video).then_some(2),
        timescale: if video { 90_000 } else { 48_000 },
        declared_bandwidth: if video { 2_500_000 } else { 128_000 },
    };
    let part = |format, rendition: &str, msn, index, independent, len: usize| MediaFrameV1::Part {
        format,
        rendition: rendition.into(),
        msn,
        index,
        duration: 0.2,
        independent,
        data: Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>()),
    };
    let session = [
        MediaFrameV1::Session {
            epoch: 3,
            segment_target_ms: 2000,
            part_target_ms: 200,
            window_segments: 6,
            msn_base: 40,
            discontinuity_seq: 2,
        },
        MediaFrameV1::Renditions(vec!["720p".into(), "360p".into()]),
        MediaFrameV1::StartWall(1_767_225_600_000),
        MediaFrameV1::Track {
            format: WireFormat::Cmaf,
            kind: WireKind::Video,
            rendition: "720p".into(),
        },
        MediaFrameV1::Track {
            format: WireFormat::Cmaf,
            kind: WireKind::Audio,
            rendition: "audio".into(),
        },
        MediaFrameV1::Track {
            format: WireFormat::Ts,
            kind: WireKind::Video,
            rendition: "720p".into(),
        },
        MediaFrameV1::Init {
            format: WireFormat::Cmaf,
            rendition: "720p".into(),
            init: Some(Bytes::from_static(b"\0\0\0\x18ftypiso6\0\0\0\0iso6cmfc")),
            info: info("avc1.64001f", true),
        },
        MediaFrameV1::Init {
            format: WireFormat::Cmaf,
            rendition: "audio".into(),
            init: Some(Bytes::from_static(b"\0\0\0\x18ftypiso6\0\0\0\0iso6cmfc")),
            info: info("mp4a.40.2", false),
        },
        MediaFrameV1::Init {
            format: WireFormat::Ts,
            rendition: "720p".into(),
            init: None,
            info: info("avc1.64001f", true),
        },
        MediaFrameV1::Begin {
            format: WireFormat::Cmaf,
            rendition: "720p".into(),
            msn: 41,
            start: 3_690_000,
            pdt_ms: 1_767_225_641_000,
        },
        part(WireFormat::Cmaf, "720p", 41, 0, true, 3000),
        part(WireFormat::Cmaf, "720p", 41, 1, false, 600),
        MediaFrameV1::Finish {
            format: WireFormat::Cmaf,
            rendition: "720p".into(),
            msn: 41,
            end: 3_870_000,
            data: None,
        },
        MediaFrameV1::Stats {
            format: WireFormat::Cmaf,
            rendition: "720p".into(),
            max_segment_duration: 2.002,
            peak_bps: 2_730_000,
            total_bytes: 615_000,
            total_seconds: 2.002,
        },
        MediaFrameV1::SnapshotDone,
        MediaFrameV1::Begin {
            format: WireFormat::Ts,
            rendition: "720p".into(),
            msn: 42,
            start: 3_870_000,
            pdt_ms: 1_767_225_643_000,
        },
        part(WireFormat::Ts, "720p", 42, 0, true, 376),
        MediaFrameV1::Finish {
            format: WireFormat::Ts,
            rendition: "720p".into(),
            msn: 42,
            end: 4_050_000,
            data: Some(Bytes::from(vec![0x47; 376])),
        },
        MediaFrameV1::End,
    ];
    let stream = |frames: &[MediaFrameV1]| -> Vec<u8> {
        frames
            .iter()
            .flat_map(|f| encode_frame(&MediaFrame::V1(f.clone())))
            .collect()
    };
    // Cut the session stream in the middle, and early (1/255 of it: in the first frames).
    let wire = stream(&session);
    for (name, cut) in [("mid", 128), ("early", 1)] {
        seeds.add(
            "peer_wire",
            format!("media-session-cut-{name}"),
            formats::join_peer(cut, &wire),
        );
    }
    let refused = MediaFrameV1::Refused {
        reason: "no session 3 of demo here".into(),
    };
    seeds.add(
        "peer_wire",
        "media-refused".into(),
        formats::join_peer(128, &stream(&[refused])),
    );
}

fn extract(args: &[String]) -> Result<()> {
    let out = PathBuf::from(&args[0]);
    let mut seeds = Seeds::default();
    let mut flv = false;
    for a in &args[1..] {
        if a == "--flv" {
            flv = true;
            continue;
        }
        let (name, path) = a.split_once('=').ok_or("expected NAME=PATH")?;
        if flv {
            flv_seeds(&mut seeds, name, Path::new(path))?;
        } else {
            capture_seeds(&mut seeds, name, &read_capture(Path::new(path))?)?;
        }
    }
    hls_seeds(&mut seeds);
    cmcd_seeds(&mut seeds)?;
    beacon_seeds(&mut seeds)?;
    aac_seeds(&mut seeds)?;
    peer_seeds(&mut seeds);
    seeds.write(&out)
}
