//! Black-box tests of the ABR ladder (issue 3): every live stream is transcoded in-process to the
//! configured renditions, never upscaled, with keyframes forced on the same timestamps in every
//! rendition. The real binary, real ffmpeg publishers; ffprobe, m3u8-rs and roxmltree are the
//! independent clients.
//!
//! CPU: CI has 2 cores and runs these tests in parallel, so nodes encode with x264 `ultrafast`, most
//! tests use a small custom ladder (360p + 240p from a 480p source) and publish for a few seconds.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use cluster_tests::*;
use serde_json::Value;

/// How long a stream may take to become ACTIVE after the publisher starts.
const LIVE_DEADLINE: Duration = Duration::from_secs(20);
/// How long the renditions may take to list their first segments once the stream is ACTIVE.
const MEDIA_DEADLINE: Duration = Duration::from_secs(30);

/// A 360p (main) and a 240p (baseline) rung: cheap to encode from a 480p source.
const SMALL_LADDER: &str = "\
[[transcode.ladder]]
name = \"360p\"
height = 360
video_kbps = 600
profile = \"main\"

[[transcode.ladder]]
name = \"240p\"
height = 240
video_kbps = 300
profile = \"baseline\"
";

/// `[transcode]` with `preset = "ultrafast"`, then `keys` (one `key = value` a line), then `ladder`
/// (`[[transcode.ladder]]` tables; empty keeps the default ladder).
fn transcode_toml(keys: &str, ladder: &str) -> String {
    transcode_toml_preset("ultrafast", keys, ladder)
}

/// [`transcode_toml`] with another x264 preset.
fn transcode_toml_preset(preset: &str, keys: &str, ladder: &str) -> String {
    format!("[transcode]\npreset = \"{preset}\"\n{keys}\n\n{ladder}")
}

fn ts_master(s: &str) -> String {
    format!("/hls/{s}/master.m3u8")
}
fn ts_media(s: &str, r: &str) -> String {
    format!("/hls/{s}/{r}/index.m3u8")
}
fn cmaf_master(s: &str) -> String {
    format!("/cmaf/{s}/master.m3u8")
}
fn cmaf_media(s: &str, r: &str) -> String {
    format!("/cmaf/{s}/{r}/index.m3u8")
}
fn mpd(s: &str) -> String {
    format!("/cmaf/{s}/manifest.mpd")
}

/// A 854x480 publisher at 30 fps (1 s GOP unless `extra_args` say otherwise).
fn publish_480p(node: &Node, key: &Key, duration_s: Option<f64>, extra: &[&str]) -> Publisher {
    Publisher::ffmpeg(
        &node.rtmp_url(&key.key),
        PublishOpts {
            width: 854,
            height: 480,
            duration_s,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            ..PublishOpts::default()
        },
    )
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Checks a stream status: `transcode.renditions` is `want` in master-playlist order; `renditions` has
/// the same members (it lists the stream's tracks, whose order is not specified).
fn assert_renditions(status: &Value, want: &[&str]) {
    assert_eq!(strs(&status["transcode"]["renditions"]), want, "{status}");
    let mut got = strs(&status["renditions"]);
    got.sort();
    let mut want: Vec<&str> = want.to_vec();
    want.sort();
    assert_eq!(got, want, "{status}");
}

/// The variant URIs of a master playlist, as rendition names (`720p/index.m3u8` -> `720p`).
fn variant_names(master: &m3u8_rs::MasterPlaylist) -> Vec<String> {
    master
        .variants
        .iter()
        // The master hands each viewer its session id in the URLs (`?sid=`, analytics).
        .map(|v| {
            let path = v.uri.split('?').next().unwrap_or_default();
            path.trim_end_matches("/index.m3u8").to_owned()
        })
        .collect()
}

/// Waits until both master playlists list exactly `renditions` (in any order) and every rendition's
/// TS media playlist lists at least `segments` complete segments. Returns (TS master, CMAF master).
async fn wait_renditions(
    node: &Node,
    stream: &str,
    renditions: &[&str],
    segments: usize,
) -> (m3u8_rs::MasterPlaylist, m3u8_rs::MasterPlaylist) {
    let mut want: Vec<String> = renditions.iter().map(|r| r.to_string()).collect();
    want.sort();
    // What the masters listed last, for the failure message.
    let mut seen: Vec<Vec<String>> = Vec::new();
    let found = try_wait_until(MEDIA_DEADLINE, async || {
        for r in renditions {
            fetch_playlist(node, &ts_media(stream, r))
                .await
                .filter(|p| p.segments.len() >= segments)?;
        }
        let ts = parse_master(&node.get_ok_text(&ts_master(stream)).await?).ok()?;
        let cmaf = parse_master(&node.get_ok_text(&cmaf_master(stream)).await?).ok()?;
        seen = vec![variant_names(&ts), variant_names(&cmaf)];
        for got in &mut seen {
            got.sort();
            if *got != want {
                return None;
            }
        }
        Some((ts, cmaf))
    })
    .await;
    found.unwrap_or_else(|waited| {
        panic!(
            "{stream}: after {waited:?}, the masters do not list exactly {want:?} with {segments} TS \
             segments each; last seen (TS, CMAF): {seen:?}"
        )
    })
}

/// The `avc1.PPCCLL` entry of a CODECS attribute: (profile_idc, level_idc).
fn avc1_profile_level(codecs: &str) -> Option<(u8, u8)> {
    let avc = codecs
        .split(',')
        .map(str::trim)
        .find_map(|c| c.strip_prefix("avc1."))?;
    if avc.len() != 6 || !avc.is_ascii() {
        return None;
    }
    let pp = u8::from_str_radix(&avc[0..2], 16).ok()?;
    let ll = u8::from_str_radix(&avc[4..6], 16).ok()?;
    Some((pp, ll))
}

/// H.264 profile_idc of an ffprobe profile name (ISO/IEC 14496-10 Annex A).
fn profile_idc(name: &str) -> Option<u8> {
    match name {
        "Baseline" | "Constrained Baseline" => Some(0x42),
        "Main" => Some(0x4d),
        "High" => Some(0x64),
        _ => None,
    }
}

/// Writes a CMAF init segment followed by a media segment into `dir` and returns the file's path, so
/// ffprobe reads the segment as the player would.
async fn cmaf_file(node: &Node, dir: &Path, init: &str, segment: &str) -> std::path::PathBuf {
    let mut bytes = node
        .get_ok_bytes(init)
        .await
        .unwrap_or_else(|| panic!("GET {init} is not 200"));
    bytes.extend(
        node.get_ok_bytes(segment)
            .await
            .unwrap_or_else(|| panic!("GET {segment} is not 200")),
    );
    let name = segment.trim_start_matches('/').replace('/', "_");
    let path = dir.join(format!("{name}.mp4"));
    std::fs::write(&path, bytes).expect("write CMAF probe file");
    path
}

/// What ffprobe says of one rendition, in one format.
#[derive(Debug)]
struct RenditionProbe {
    video: ProbeStream,
    audio: Option<ProbeStream>,
}

/// ffprobe on the newest complete segment of a rendition: TS directly, CMAF as init + segment.
async fn probe_rendition(
    node: &Node,
    stream: &str,
    rendition: &str,
    cmaf: bool,
    dir: &Path,
) -> RenditionProbe {
    let path = if cmaf {
        cmaf_media(stream, rendition)
    } else {
        ts_media(stream, rendition)
    };
    let p = fetch_playlist(node, &path)
        .await
        .unwrap_or_else(|| panic!("{path} is not a playlist"));
    let seg = p
        .segments
        .last()
        .unwrap_or_else(|| panic!("{path} lists no segment"));
    let input = if cmaf {
        let init = resolve(
            &path,
            p.map_uris.first().expect("CMAF playlist without a MAP"),
        );
        cmaf_file(node, dir, &init, &resolve(&path, &seg.uri))
            .await
            .to_string_lossy()
            .into_owned()
    } else {
        format!("{}{}", node.http_url(), resolve(&path, &seg.uri))
    };
    let info = ffprobe_ok(&input)
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    RenditionProbe {
        video: info
            .video()
            .cloned()
            .unwrap_or_else(|| panic!("{input}: no video stream: {info:?}")),
        audio: info.audio().cloned(),
    }
}

// ---------------------------------------------------------------------------------------------------------
// The ladder
// ---------------------------------------------------------------------------------------------------------

/// Issue 3: a 1080p source gets `source` plus the whole default ladder (1080p, 720p, 480p); both master
/// playlists describe each rendition (BANDWIDTH, AVERAGE-BANDWIDTH, RESOLUTION, FRAME-RATE, CODECS),
/// the CODECS match what ffprobe reads in the segments, the profiles are the configured ones, and the
/// MPD has one video AdaptationSet with a Representation per rendition and one audio AdaptationSet.
#[tokio::test]
async fn ladder_1080p_source() {
    // x264's `profile` is a ceiling: the profile it signals is the lowest one the tools in use need,
    // and `ultrafast` turns off CABAC and the 8x8 transform, which makes every rendition Constrained
    // Baseline. `superfast` keeps both, so High and Main rungs come out as High and Main.
    let node = Node::start(NodeOpts {
        extra_toml: transcode_toml_preset("superfast", "", ""),
        ..NodeOpts::default()
    })
    .await;
    let stream = "big";
    let key = node.create_key(stream).await;
    // 15 fps: half the encoding work on both sides; GOP 30 frames = 2 s, the segment target.
    let _publisher = Publisher::ffmpeg(
        &node.rtmp_url(&key.key),
        PublishOpts {
            width: 1920,
            height: 1080,
            frame_rate: 15,
            ..PublishOpts::default()
        },
    );
    node.wait_stream_state(stream, "ACTIVE", LIVE_DEADLINE)
        .await;
    let renditions = ["source", "1080p", "720p", "480p"];
    let (ts, cmaf) = wait_renditions(&node, stream, &renditions, 1).await;

    let status = node.stream_status(stream).await;
    assert_renditions(&status, &renditions);
    assert_eq!(status["transcode"]["mode"], "transcoding", "{status}");

    // (rendition, width, height, profile_idc expected; None = the publisher's own)
    let expected: [(&str, u64, u64, Option<u8>); 4] = [
        ("source", 1920, 1080, None),
        ("1080p", 1920, 1080, Some(0x64)),
        ("720p", 1280, 720, Some(0x64)),
        ("480p", 854, 480, Some(0x4d)),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    for (format, master, cmaf) in [("HLS (TS)", &ts, false), ("LL-HLS (CMAF)", &cmaf, true)] {
        for (name, w, h, want_profile) in expected {
            let v = master
                .variants
                .iter()
                .find(|v| v.uri.split('?').next() == Some(&format!("{name}/index.m3u8")))
                .unwrap_or_else(|| panic!("{format}: no variant {name}: {master:?}"));
            let ctx = format!("{format} variant {name}: {v:?}");
            let avg = v
                .average_bandwidth
                .unwrap_or_else(|| panic!("{ctx}: no AVERAGE-BANDWIDTH"));
            assert!(
                avg > 0 && v.bandwidth >= avg,
                "{ctx}: BANDWIDTH must be >= AVERAGE-BANDWIDTH > 0"
            );
            let res = v
                .resolution
                .unwrap_or_else(|| panic!("{ctx}: no RESOLUTION"));
            assert_eq!((res.width, res.height), (w, h), "{ctx}");
            let fps = v
                .frame_rate
                .unwrap_or_else(|| panic!("{ctx}: no FRAME-RATE"));
            assert!((fps - 15.0).abs() < 0.01, "{ctx}: FRAME-RATE {fps}");
            let codecs = v
                .codecs
                .as_deref()
                .unwrap_or_else(|| panic!("{ctx}: no CODECS"));
            assert!(
                codecs.split(',').any(|c| c.trim() == "mp4a.40.2"),
                "{ctx}: audio is not mp4a.40.2"
            );
            let (pp, ll) =
                avc1_profile_level(codecs).unwrap_or_else(|| panic!("{ctx}: no avc1.PPCCLL"));

            let probe = probe_rendition(&node, stream, name, cmaf, dir.path()).await;
            let pv = &probe.video;
            let ctx = format!("{ctx}\nffprobe: {probe:?}");
            assert_eq!(pv.codec_name, "h264", "{ctx}");
            assert_eq!((pv.width, pv.height), (Some(w), Some(h)), "{ctx}");
            let probed_pp = pv
                .profile
                .as_deref()
                .and_then(profile_idc)
                .unwrap_or_else(|| panic!("{ctx}: unknown profile"));
            assert_eq!(pp, probed_pp, "{ctx}: CODECS profile");
            if let Some(want) = want_profile {
                assert_eq!(probed_pp, want, "{ctx}: configured profile");
            }
            let probed_level = pv.level.unwrap_or_else(|| panic!("{ctx}: no level"));
            assert_eq!(i64::from(ll), probed_level, "{ctx}: CODECS level");
            if !cmaf {
                // TS renditions carry the audio muxed in; in CMAF it is its own rendition (below).
                let audio = probe
                    .audio
                    .as_ref()
                    .unwrap_or_else(|| panic!("{ctx}: no audio in the segment"));
                assert_eq!(audio.codec_name, "aac", "{ctx}");
                assert_eq!(audio.profile.as_deref(), Some("LC"), "{ctx}");
            }
        }
    }
    // CMAF audio: its own rendition, AAC-LC (mp4a.40.2).
    let path = cmaf_media(stream, "audio");
    let p = fetch_playlist(&node, &path)
        .await
        .unwrap_or_else(|| panic!("{path} is not a playlist"));
    let seg = p.segments.last().expect("an audio segment");
    let init = resolve(&path, p.map_uris.first().expect("audio MAP"));
    let file = cmaf_file(&node, dir.path(), &init, &resolve(&path, &seg.uri)).await;
    let info = ffprobe_ok(&file.to_string_lossy())
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let a = info.audio().unwrap_or_else(|| panic!("{path}: {info:?}"));
    assert_eq!(
        (a.codec_name.as_str(), a.profile.as_deref()),
        ("aac", Some("LC")),
        "{path}: {info:?}"
    );

    let info = wait_until("an MPD with every rendition", MEDIA_DEADLINE, async || {
        let m = MpdInfo::parse(&node.get_ok_text(&mpd(stream)).await?).ok()?;
        (m.set("video")?.representations.len() == renditions.len()).then_some(m)
    })
    .await;
    let video: Vec<&MpdAdaptationSet> = info
        .adaptation_sets
        .iter()
        .filter(|a| a.content_type == "video")
        .collect();
    let audio = info
        .adaptation_sets
        .iter()
        .filter(|a| a.content_type == "audio")
        .count();
    assert_eq!(video.len(), 1, "one video AdaptationSet: {info:#?}");
    assert_eq!(audio, 1, "one audio AdaptationSet: {info:#?}");
    for (name, w, h, _) in expected {
        let r = video[0]
            .representations
            .iter()
            .find(|r| r.id == name)
            .unwrap_or_else(|| panic!("MPD: no Representation {name}: {info:#?}"));
        assert_eq!((r.width, r.height), (Some(w), Some(h)), "MPD {r:?}");
        assert!(r.bandwidth.is_some_and(|b| b > 0), "MPD {r:?}");
    }
}

/// Issue 3: never upscale. A 1280x720 source gets source, 720p and 480p; an 854x480 source gets source
/// and 480p. The rungs above the source are in no master playlist and their playlists are 404.
#[tokio::test]
async fn never_upscales_720p_and_480p_sources() {
    let node = Node::start(NodeOpts {
        extra_toml: transcode_toml("capacity = 2", ""),
        ..NodeOpts::default()
    })
    .await;
    // (stream, source width, source height, renditions, rungs that must not exist)
    type Case = (
        &'static str,
        u32,
        u32,
        &'static [&'static str],
        &'static [&'static str],
    );
    let cases: [Case; 2] = [
        ("hd", 1280, 720, &["source", "720p", "480p"], &["1080p"]),
        ("sd", 854, 480, &["source", "480p"], &["1080p", "720p"]),
    ];
    let mut publishers = Vec::new();
    for (stream, width, height, _, _) in cases {
        let key = node.create_key(stream).await;
        publishers.push(Publisher::ffmpeg(
            &node.rtmp_url(&key.key),
            PublishOpts {
                width,
                height,
                frame_rate: 15,
                ..PublishOpts::default()
            },
        ));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    for (stream, width, height, renditions, absent) in cases {
        node.wait_stream_state(stream, "ACTIVE", LIVE_DEADLINE)
            .await;
        let (ts, cmaf) = wait_renditions(&node, stream, renditions, 1).await;
        let status = node.stream_status(stream).await;
        assert_renditions(&status, renditions);
        assert_eq!(status["transcode"]["mode"], "transcoding", "{status}");
        for r in renditions {
            let (w, h) = match *r {
                "source" => (width, height),
                "720p" => (1280, 720),
                "480p" => (854, 480),
                other => panic!("unexpected rendition {other}"),
            };
            for (format, master) in [("HLS (TS)", &ts), ("LL-HLS (CMAF)", &cmaf)] {
                let v = master
                    .variants
                    .iter()
                    .find(|v| v.uri.split('?').next() == Some(&format!("{r}/index.m3u8")))
                    .unwrap_or_else(|| panic!("{stream} {format}: no variant {r}: {master:?}"));
                let res = v.resolution.map(|res| (res.width, res.height));
                assert_eq!(
                    res,
                    Some((u64::from(w), u64::from(h))),
                    "{stream} {format} {v:?}"
                );
            }
            let probe = probe_rendition(&node, stream, r, false, dir.path()).await;
            assert_eq!(
                (probe.video.width, probe.video.height),
                (Some(u64::from(w)), Some(u64::from(h))),
                "{stream}/{r}: {probe:?}"
            );
        }
        for r in absent {
            for path in [ts_media(stream, r), cmaf_media(stream, r)] {
                let (code, _) = node.get_text(&path).await;
                assert_eq!(code, 404, "{path}: a rung above the source must not exist");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Alignment
// ---------------------------------------------------------------------------------------------------------

/// Waits until the publisher has exited, the stream is ENDED_GRACEFULLY and every rendition's TS and
/// CMAF playlists carry EXT-X-ENDLIST. Returns the TS playlists by rendition.
async fn wait_ended(
    node: &Node,
    publisher: &mut Publisher,
    stream: &str,
    renditions: &[&str],
    publish_s: f64,
) -> BTreeMap<String, LlHlsPlaylist> {
    publisher
        .wait_exit(Duration::from_secs_f64(publish_s + 30.0))
        .await
        .expect("publisher ends by itself");
    node.wait_stream_state(stream, "ENDED_GRACEFULLY", Duration::from_secs(15))
        .await;
    let mut out = BTreeMap::new();
    for r in renditions {
        for path in [ts_media(stream, r), cmaf_media(stream, r)] {
            let p = wait_until(
                &format!("{path} with EXT-X-ENDLIST"),
                Duration::from_secs(10),
                async || fetch_playlist(node, &path).await.filter(|p| p.endlist),
            )
            .await;
            if path.starts_with("/hls/") {
                out.insert(r.to_string(), p);
            }
        }
    }
    out
}

/// For each rendition, the first video packet of every segment its media playlist lists, by media
/// sequence number: TS segments straight from the node, CMAF segments as init + segment files.
async fn first_packets(
    node: &Node,
    stream: &str,
    renditions: &[&str],
    cmaf: bool,
    dir: &Path,
) -> BTreeMap<String, Vec<(u64, ProbePacket)>> {
    let mut out = BTreeMap::new();
    for r in renditions {
        let path = if cmaf {
            cmaf_media(stream, r)
        } else {
            ts_media(stream, r)
        };
        let p = fetch_playlist(node, &path)
            .await
            .unwrap_or_else(|| panic!("{path} is not a playlist"));
        let mut firsts = Vec::new();
        for seg in &p.segments {
            let uri = resolve(&path, &seg.uri);
            let input = if cmaf {
                let init = resolve(
                    &path,
                    p.map_uris.first().expect("CMAF playlist without a MAP"),
                );
                cmaf_file(node, dir, &init, &uri)
                    .await
                    .to_string_lossy()
                    .into_owned()
            } else {
                format!("{}{uri}", node.http_url())
            };
            let packets = ffprobe_video_packets(&input)
                .await
                .unwrap_or_else(|e| panic!("{uri}: {e}"));
            firsts.push((seg.msn, packets[0]));
        }
        out.insert(r.to_string(), firsts);
    }
    out
}

/// Every rendition lists the same media sequence numbers (at least `min_segments`), and segment N
/// starts with a keyframe at the same PTS in every rendition. Returns the segments' start PTS (90 kHz
/// for TS) in order.
fn assert_aligned(
    what: &str,
    firsts: &BTreeMap<String, Vec<(u64, ProbePacket)>>,
    min_segments: usize,
) -> Vec<i64> {
    let (first_name, reference) = firsts.iter().next().expect("at least one rendition");
    let msns: Vec<u64> = reference.iter().map(|(m, _)| *m).collect();
    assert!(
        msns.len() >= min_segments,
        "{what}: {first_name} lists {} segments, want >= {min_segments}: {msns:?}",
        msns.len()
    );
    for (name, list) in firsts {
        let theirs: Vec<u64> = list.iter().map(|(m, _)| *m).collect();
        assert_eq!(
            theirs, msns,
            "{what}: {name} vs {first_name}: media sequence numbers"
        );
        for ((msn, p), (_, r)) in list.iter().zip(reference) {
            assert!(
                p.keyframe,
                "{what}: {name} segment {msn} starts with a non-key packet {p:?}"
            );
            assert_eq!(
                p.pts, r.pts,
                "{what}: segment {msn} starts at PTS {} in {name}, {} in {first_name}",
                p.pts, r.pts
            );
        }
    }
    reference.iter().map(|(_, p)| p.pts).collect()
}

/// Segment starts (seconds from the first) that the ingest's rule gives for source keyframes at
/// `keys` (seconds): the first segment at the first keyframe, the second at the first keyframe at
/// least half the target later, each further one at the first keyframe at least the target later.
fn expected_cuts(keys: &[f64], target: f64) -> Vec<f64> {
    let mut cuts = vec![keys[0]];
    for &k in &keys[1..] {
        let last = *cuts.last().expect("non-empty");
        let need = if cuts.len() == 1 {
            target / 2.0
        } else {
            target
        };
        if k - last >= need - 1e-9 {
            cuts.push(k);
        }
    }
    cuts
}

/// Issue 3: keyframes are forced on the same PTS in every rendition. The source's keyframes are
/// irregular (forced at odd times, and one 4 s GOP from `-g 120`); with a 1 s target the segments are
/// cut at source keyframes at least 1 s apart, and every rendition, `source` included, has the same
/// segments, each starting with a keyframe at the same PTS, in TS and in CMAF.
#[tokio::test]
async fn renditions_aligned_irregular_source_gop() {
    let node = Node::start(NodeOpts {
        segment_target_ms: 1000,
        window_segments: 40,
        extra_toml: transcode_toml("", SMALL_LADDER),
        ..NodeOpts::default()
    })
    .await;
    let stream = "irregular";
    let key = node.create_key(stream).await;
    // Keyframes where ffmpeg is told to put them, plus the one x264 adds 120 frames (4 s) after 8.6.
    let forced = "0,1.3,2.9,3.4,4.6,5.8,6.1,7.5,8.6,13.7,14.8";
    let keys = [
        0.0, 1.3, 2.9, 3.4, 4.6, 5.8, 6.1, 7.5, 8.6, 12.6, 13.7, 14.8,
    ];
    let publish_s = 16.0;
    let mut publisher = publish_480p(
        &node,
        &key,
        Some(publish_s),
        &[
            "-g",
            "120",
            "-sc_threshold",
            "0",
            "-force_key_frames",
            forced,
        ],
    );
    let renditions = ["source", "360p", "240p"];
    node.wait_stream_state(stream, "ACTIVE", LIVE_DEADLINE)
        .await;
    let (ts_master_pl, _) = wait_renditions(&node, stream, &renditions, 1).await;
    assert_eq!(variant_names(&ts_master_pl).len(), 3);
    let ts = wait_ended(&node, &mut publisher, stream, &renditions, publish_s).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let ts_firsts = first_packets(&node, stream, &renditions, false, dir.path()).await;
    let starts = assert_aligned("TS", &ts_firsts, 10);
    let cmaf_firsts = first_packets(&node, stream, &renditions, true, dir.path()).await;
    let cmaf_starts = assert_aligned("CMAF", &cmaf_firsts, 10);

    // LL-HLS parts: where a playlist still lists the parts of a segment, its part 0 is INDEPENDENT and
    // starts with the segment's keyframe.
    let cmaf_start: BTreeMap<u64, i64> = cmaf_firsts["source"]
        .iter()
        .map(|(m, p)| (*m, p.pts))
        .collect();
    let mut parts_checked = 0;
    for r in renditions {
        let path = cmaf_media(stream, r);
        let p = fetch_playlist(&node, &path)
            .await
            .unwrap_or_else(|| panic!("{path} is not a playlist"));
        let init = resolve(
            &path,
            p.map_uris.first().expect("CMAF playlist without a MAP"),
        );
        for part in p.parts().filter(|part| part.index == 0) {
            let Some(&want) = cmaf_start.get(&part.msn) else {
                continue;
            };
            assert!(part.independent, "{path}: {part:?} is not INDEPENDENT");
            let file = cmaf_file(&node, dir.path(), &init, &resolve(&path, &part.uri)).await;
            let packets = ffprobe_video_packets(&file.to_string_lossy())
                .await
                .unwrap_or_else(|e| panic!("{path} {part:?}: {e}"));
            assert!(packets[0].keyframe, "{path} {part:?}: {:?}", packets[0]);
            assert_eq!(
                packets[0].pts, want,
                "{path} {part:?}: part 0 starts at {}, segment {} at {want}",
                packets[0].pts, part.msn
            );
            parts_checked += 1;
        }
    }
    assert!(
        parts_checked >= renditions.len(),
        "only {parts_checked} listed first parts checked: the playlists list no parts?"
    );

    // The cuts are where the rule puts them, in both formats.
    let want = expected_cuts(&keys, 1.0);
    for (format, starts, scale) in [("TS", &starts, 90_000.0), ("CMAF", &cmaf_starts, 90_000.0)] {
        let got: Vec<f64> = starts
            .iter()
            .map(|p| (p - starts[0]) as f64 / scale)
            .collect();
        assert_eq!(
            got.len(),
            want.len(),
            "{format}: segment starts {got:?}, want {want:?}"
        );
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() < 0.002,
                "{format}: segment starts {got:?}, want {want:?}"
            );
        }
    }
    // EXTINF agrees across renditions.
    let reference = &ts["source"];
    for (name, p) in &ts {
        for (a, b) in p.segments.iter().zip(&reference.segments) {
            assert!(
                (a.duration - b.duration).abs() < 0.05,
                "{name} segment {}: EXTINF {} vs source {}",
                a.msn,
                a.duration,
                b.duration
            );
        }
    }
    eprintln!(
        "aligned segments: {:?}",
        reference
            .segments
            .iter()
            .map(|s| (s.msn, s.duration))
            .collect::<Vec<_>>()
    );
}

/// Issue 3: with `offer_source = false` the renditions are the ladder only, and segments follow a
/// regular grid of the segment target (the transcoder forces keyframes there) although the source's
/// GOP is 4 s: EXTINF 1.0 +- 0.2 s except the first (half the target) and the last; aligned across
/// renditions as in `renditions_aligned_irregular_source_gop`.
#[tokio::test]
async fn ladder_grid_without_source() {
    let node = Node::start(NodeOpts {
        segment_target_ms: 1000,
        window_segments: 40,
        extra_toml: transcode_toml("offer_source = false", SMALL_LADDER),
        ..NodeOpts::default()
    })
    .await;
    let stream = "grid";
    let key = node.create_key(stream).await;
    let publish_s = 8.0;
    // 4 s GOP: 120 frames at 30 fps, no scene-cut keyframes.
    let mut publisher = publish_480p(
        &node,
        &key,
        Some(publish_s),
        &["-g", "120", "-sc_threshold", "0"],
    );
    let renditions = ["360p", "240p"];
    node.wait_stream_state(stream, "ACTIVE", LIVE_DEADLINE)
        .await;
    wait_renditions(&node, stream, &renditions, 1).await;
    let status = node.stream_status(stream).await;
    assert_renditions(&status, &renditions);
    assert_eq!(status["transcode"]["mode"], "transcoding", "{status}");
    let reason = status["transcode"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("disabled"),
        "transcode.reason should say source passthrough is disabled: {status}"
    );
    for path in [ts_media(stream, "source"), cmaf_media(stream, "source")] {
        let (code, _) = node.get_text(&path).await;
        assert_eq!(code, 404, "{path}: source is not offered");
    }
    let ts = wait_ended(&node, &mut publisher, stream, &renditions, publish_s).await;

    for (name, p) in &ts {
        let n = p.segments.len();
        assert!(n >= 7, "{name}: {n} segments in {publish_s} s: {p:?}");
        assert!(
            (p.segments[0].duration - 0.5).abs() <= 0.1,
            "{name}: first segment {} s, want half the target",
            p.segments[0].duration
        );
        for s in &p.segments[1..n - 1] {
            assert!(
                (s.duration - 1.0).abs() <= 0.2,
                "{name}: segment {} lasts {} s, want 1.0 +- 0.2 (GOP 4 s): {:?}",
                s.msn,
                s.duration,
                p.segments
                    .iter()
                    .map(|s| (s.msn, s.duration))
                    .collect::<Vec<_>>()
            );
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let firsts = first_packets(&node, stream, &renditions, false, dir.path()).await;
    let starts = assert_aligned("TS", &firsts, 7);
    let cmaf = first_packets(&node, stream, &renditions, true, dir.path()).await;
    assert_aligned("CMAF", &cmaf, 7);
    // On the grid: 0, 0.5, 1.5, 2.5, ... s.
    for (i, pts) in starts.iter().enumerate().skip(1) {
        let t = (pts - starts[0]) as f64 / 90_000.0;
        let want = 0.5 + (i - 1) as f64;
        assert!(
            (t - want).abs() <= 0.05,
            "segment {i} starts at {t} s, want {want} s: {starts:?}"
        );
    }
}

/// Issue 3: a source above the caps is served through the ladder only. A 480p source on a node with
/// `source_max_height = 360`, and a 360p source declaring 3 Mbit/s (`-b:v 3M`: ffmpeg's FLV muxer
/// announces `videodatarate` 2929.7 kbit/s in onMetaData) with `source_max_kbps = 1000`: `source` is
/// in neither master, its playlists are 404, and `transcode.reason` names the cap.
#[tokio::test]
async fn source_capped() {
    let node = Node::start(NodeOpts {
        extra_toml: transcode_toml(
            "capacity = 2\nsource_max_height = 360\nsource_max_kbps = 1000",
            SMALL_LADDER,
        ),
        ..NodeOpts::default()
    })
    .await;
    let tall = node.create_key("tall").await;
    let _p1 = publish_480p(&node, &tall, None, &[]);
    let rich = node.create_key("rich").await;
    let _p2 = Publisher::ffmpeg(
        &node.rtmp_url(&rich.key),
        PublishOpts {
            width: 640,
            height: 360,
            extra_args: ["-b:v", "3M"].map(String::from).to_vec(),
            ..PublishOpts::default()
        },
    );
    for (stream, cap_word) in [("tall", "resolution"), ("rich", "bitrate")] {
        node.wait_stream_state(stream, "ACTIVE", LIVE_DEADLINE)
            .await;
        let renditions = ["360p", "240p"];
        wait_renditions(&node, stream, &renditions, 1).await;
        let status = node.stream_status(stream).await;
        assert_renditions(&status, &renditions);
        assert_eq!(status["transcode"]["mode"], "transcoding", "{status}");
        let reason = status["transcode"]["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("cap") && reason.contains(cap_word),
            "{stream}: transcode.reason should name the {cap_word} cap: {status}"
        );
        for path in [ts_media(stream, "source"), cmaf_media(stream, "source")] {
            let (code, _) = node.get_text(&path).await;
            assert_eq!(code, 404, "{path}: a capped source is not offered");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Failures and capacity
// ---------------------------------------------------------------------------------------------------------

/// `transcode.restarts` of a stream.
async fn restarts(node: &Node, stream: &str) -> u64 {
    let s = node.stream_status(stream).await;
    s["transcode"]["restarts"]
        .as_u64()
        .unwrap_or_else(|| panic!("no transcode.restarts in {s}"))
}

/// `POST /v1/debug/streams/{stream}/panic?{query}` with the admin token; panics unless 202.
async fn inject(node: &Node, stream: &str, query: &str) {
    let url = format!(
        "{}/v1/debug/streams/{stream}/panic?{query}",
        node.http_url()
    );
    let resp = node
        .http()
        .post(&url)
        .bearer_auth(node.admin_token())
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(status, 202, "POST {url}: {body}");
}

/// Injects a transcoder fault and measures how long until `transcode.restarts` goes past `before`.
async fn restart_after(node: &Node, stream: &str, query: &str, before: u64) -> Duration {
    let asked = Instant::now();
    inject(node, stream, query).await;
    let what = format!("{stream}: transcode.restarts > {before} after {query}");
    wait_until(&what, Duration::from_secs(10), async || {
        (restarts(node, stream).await > before).then(|| asked.elapsed())
    })
    .await
}

/// Waits until every rendition's TS playlist lists a segment numbered `after + 2` or more (one that
/// began after `after` was listed: so media made after a restart).
async fn wait_advance(
    node: &Node,
    stream: &str,
    renditions: &[&str],
    after: &BTreeMap<String, u64>,
) {
    for r in renditions {
        let path = ts_media(stream, r);
        let next = after[*r];
        wait_until(
            &format!(
                "{path} to list segment {} (it listed up to {next} before)",
                next + 1
            ),
            Duration::from_secs(15),
            async || {
                fetch_playlist(node, &path)
                    .await
                    .filter(|p| p.next_msn() > next + 1)
            },
        )
        .await;
    }
}

/// The next media sequence number of each rendition's TS playlist.
async fn next_msns(node: &Node, stream: &str, renditions: &[&str]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for r in renditions {
        let path = ts_media(stream, r);
        let p = fetch_playlist(node, &path)
            .await
            .unwrap_or_else(|| panic!("{path} is not a playlist"));
        out.insert(r.to_string(), p.next_msn());
    }
    out
}

/// How long a transcoder restart may take to show in the status: the 2 s of the issue, plus the
/// status poll's interval and round trip.
const RESTART_LIMIT: Duration = Duration::from_millis(2300);

/// Issue 3: the transcoder is supervised. (a) A panic is restarted within 2 s and the stream stays
/// ACTIVE; (b) a hung decoder is noticed by the watchdog (`hang_timeout_ms` 1000) and restarted within
/// 2 s of the fault; after each, the ladder's playlists keep advancing. (c) A transcoder that fails at
/// every start uses up the restart budget: the stream goes to ERROR within 5 s with an error naming
/// the transcoder, and the ladder's playlists stop announcing parts (no preload hint) while staying
/// open (no EXT-X-ENDLIST: since the cluster issue a failed session's playlists wait for a new
/// session to continue them, see `cluster.rs`).
#[tokio::test]
async fn transcoder_fault_recovery() {
    let node = Node::start(NodeOpts {
        fault_injection: true,
        segment_target_ms: 1000,
        extra_toml: transcode_toml("", SMALL_LADDER),
        ..NodeOpts::default()
    })
    .await;
    let stream = "faulty";
    let key = node.create_key(stream).await;
    let mut publisher = publish_480p(&node, &key, None, &[]);
    let renditions = ["source", "360p", "240p"];
    let ladder = ["360p", "240p"];
    node.wait_stream_state(stream, "ACTIVE", LIVE_DEADLINE)
        .await;
    wait_renditions(&node, stream, &renditions, 1).await;
    assert_eq!(restarts(&node, stream).await, 0);

    // (a) panic
    let took = restart_after(&node, stream, "actor=transcoder", 0).await;
    eprintln!("transcoder panic: restarted after {took:?}");
    assert!(took <= RESTART_LIMIT, "panic: restart took {took:?}");
    let s = node.stream_status(stream).await;
    assert_eq!(s["status"], "ACTIVE", "{s}");
    let listed = next_msns(&node, stream, &ladder).await;
    wait_advance(&node, stream, &ladder, &listed).await;

    // (b) hang: only the watchdog can notice it.
    let took = restart_after(&node, stream, "actor=transcoder&fault=hang", 1).await;
    eprintln!("transcoder hang: restarted after {took:?}");
    assert!(took <= RESTART_LIMIT, "hang: restart took {took:?}");
    let s = node.stream_status(stream).await;
    assert_eq!(s["status"], "ACTIVE", "{s}");
    let listed = next_msns(&node, stream, &ladder).await;
    wait_advance(&node, stream, &ladder, &listed).await;
    assert!(
        publisher.is_running(),
        "the publisher was cut:\n{}",
        publisher.log()
    );

    // (c) crash loop: the budget (3 restarts in 30 s) runs out.
    let asked = Instant::now();
    inject(&node, stream, "actor=transcoder&fault=crash-loop").await;
    let s = node
        .wait_stream_state(stream, "ERROR", Duration::from_secs(5))
        .await;
    eprintln!("transcoder crash loop: ERROR after {:?}", asked.elapsed());
    let error = s["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("transcoder"),
        "the error should name the transcoder: {s}"
    );
    // The ladder's playlists say that nothing more will come in this session: no preload hint
    // (CMAF), and they stay open for a new session (no ENDLIST).
    for r in ladder {
        let path = cmaf_media(stream, r);
        let p = wait_until(
            &format!("{path} without a preload hint after ERROR"),
            Duration::from_secs(5),
            async || {
                fetch_playlist(&node, &path)
                    .await
                    .filter(|p| p.preload_hints.is_empty())
            },
        )
        .await;
        assert!(!p.endlist, "{path}: a failed session is not a clean end");
        let ts = fetch_playlist(&node, &ts_media(stream, r))
            .await
            .expect("TS playlist");
        assert!(
            !ts.endlist,
            "{}: a failed session is not a clean end",
            ts_media(stream, r)
        );
    }
}

/// Issue 3: segment N starts at the same PTS in every rendition, also across transcoder restarts (a
/// restarted transcoder "resumes at the next segment start"): after a hang and a panic, every
/// rendition still lists the same media sequence numbers, each starting with a keyframe at the same
/// PTS as in `source`.
#[tokio::test]
async fn renditions_stay_aligned_across_transcoder_restarts() {
    let node = Node::start(NodeOpts {
        fault_injection: true,
        segment_target_ms: 1000,
        window_segments: 40,
        extra_toml: transcode_toml("", SMALL_LADDER),
        ..NodeOpts::default()
    })
    .await;
    let stream = "realigned";
    let key = node.create_key(stream).await;
    let publish_s = 12.0;
    let mut publisher = publish_480p(&node, &key, Some(publish_s), &[]);
    let renditions = ["source", "360p", "240p"];
    let ladder = ["360p", "240p"];
    node.wait_stream_state(stream, "ACTIVE", LIVE_DEADLINE)
        .await;
    wait_renditions(&node, stream, &renditions, 2).await;
    restart_after(&node, stream, "actor=transcoder&fault=hang", 0).await;
    let listed = next_msns(&node, stream, &ladder).await;
    wait_advance(&node, stream, &ladder, &listed).await;
    restart_after(&node, stream, "actor=transcoder", 1).await;
    let listed = next_msns(&node, stream, &ladder).await;
    wait_advance(&node, stream, &ladder, &listed).await;
    let ts = wait_ended(&node, &mut publisher, stream, &renditions, publish_s).await;
    let durations: BTreeMap<&String, Vec<(u64, f64)>> = ts
        .iter()
        .map(|(r, p)| (r, p.segments.iter().map(|s| (s.msn, s.duration)).collect()))
        .collect();
    eprintln!("segments after two restarts: {durations:?}");

    let dir = tempfile::tempdir().expect("tempdir");
    let firsts = first_packets(&node, stream, &renditions, false, dir.path()).await;
    let starts: BTreeMap<&String, Vec<(u64, i64)>> = firsts
        .iter()
        .map(|(r, l)| (r, l.iter().map(|(m, p)| (*m, p.pts)).collect()))
        .collect();
    eprintln!("segment start PTS: {starts:?}");
    // Diagnostics for a failure: how much video a segment longer than 1.5 s (one that swallowed a
    // missed cut) really holds.
    for (r, p) in &ts {
        for seg in p.segments.iter().filter(|s| s.duration > 1.5) {
            let url = format!(
                "{}{}",
                node.http_url(),
                resolve(&ts_media(stream, r), &seg.uri)
            );
            if let Ok(packets) = ffprobe_video_packets(&url).await {
                eprintln!(
                    "{r} segment {}: EXTINF {} s but {} video packets ({} at 30 fps)",
                    seg.msn,
                    seg.duration,
                    packets.len(),
                    (seg.duration * 30.0).round()
                );
            }
        }
    }
    assert_aligned("TS after transcoder restarts", &firsts, 8);
}

/// Issue 3: `capacity = 1`. The first stream is transcoded; a second one at the same time gets
/// passthrough only (`transcode.mode` "passthrough", a reason naming the capacity, masters with
/// `source` only); once the first has ended, a new stream is transcoded again.
#[tokio::test]
async fn capacity_degrades_to_passthrough() {
    let node = Node::start(NodeOpts {
        extra_toml: transcode_toml("capacity = 1", SMALL_LADDER),
        ..NodeOpts::default()
    })
    .await;
    let ladder = ["source", "360p", "240p"];
    let first_key = node.create_key("first").await;
    let mut first = publish_480p(&node, &first_key, None, &[]);
    node.wait_stream_state("first", "ACTIVE", LIVE_DEADLINE)
        .await;
    wait_renditions(&node, "first", &ladder, 1).await;
    let s = node.stream_status("first").await;
    assert_eq!(s["transcode"]["mode"], "transcoding", "{s}");

    let second_key = node.create_key("second").await;
    let _second = publish_480p(&node, &second_key, None, &[]);
    node.wait_stream_state("second", "ACTIVE", LIVE_DEADLINE)
        .await;
    wait_renditions(&node, "second", &["source"], 1).await;
    let s = node.stream_status("second").await;
    assert_eq!(s["transcode"]["mode"], "passthrough", "{s}");
    let reason = s["transcode"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("capacity"),
        "transcode.reason should name the capacity: {s}"
    );
    assert_renditions(&s, &["source"]);
    for r in ["360p", "240p"] {
        for path in [ts_media("second", r), cmaf_media("second", r)] {
            let (code, _) = node.get_text(&path).await;
            assert_eq!(code, 404, "{path}: a passthrough stream has no ladder");
        }
    }
    // The first stream is still transcoded, untouched.
    let s = node.stream_status("first").await;
    assert_eq!(
        (s["status"].as_str(), s["transcode"]["mode"].as_str()),
        (Some("ACTIVE"), Some("transcoding")),
        "{s}"
    );

    first
        .stop_gracefully()
        .await
        .expect("stop the first publisher");
    node.wait_stream_state("first", "ENDED_GRACEFULLY", Duration::from_secs(15))
        .await;
    let third_key = node.create_key("third").await;
    let _third = publish_480p(&node, &third_key, None, &[]);
    node.wait_stream_state("third", "ACTIVE", LIVE_DEADLINE)
        .await;
    wait_renditions(&node, "third", &ladder, 1).await;
    let s = node.stream_status("third").await;
    assert_eq!(s["transcode"]["mode"], "transcoding", "{s}");
    assert_renditions(&s, &ladder);
}

// ---------------------------------------------------------------------------------------------------------
// Bitrate
// ---------------------------------------------------------------------------------------------------------

/// Runs ffmpeg to completion (time-limited) with `flags` (split on whitespace) and then `output`;
/// panics with its stderr if it fails.
async fn ffmpeg(flags: &str, output: &Path) {
    let mut args: Vec<String> = flags.split_whitespace().map(str::to_owned).collect();
    args.push(output.to_string_lossy().into_owned());
    let mut cmd = tokio::process::Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(&args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("ffmpeg {args:?} did not finish within 120 s"))
        .unwrap_or_else(|e| panic!("spawn ffmpeg: {e}"));
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 3: the ladder's bitrate is the rung's, whatever the ingest does. The source is a prepared FLV
/// of three 4 s parts of noisy 480p video at 6, 1 and 6 Mbit/s (same encoder settings, 1 s GOP, joined
/// with the concat demuxer), published as is: the `source` rendition's bitrate (TS segment bytes over
/// EXTINF) drops several-fold in the middle part while the 360p rung's stays within a tolerance.
#[tokio::test]
async fn ladder_ignores_ingest_bitrate_swings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut list = String::new();
    for (i, rate) in ["6M", "1M", "6M"].iter().enumerate() {
        let part = dir.path().join(format!("part{i}.mp4"));
        // The level is pinned so every part has the same SPS (x264 derives it from the VBV rate).
        let flags = format!(
            "-f lavfi -i testsrc2=size=854x480:rate=30 -f lavfi -i sine=frequency=440 -t 4 \
             -vf noise=alls=30:allf=t -c:v libx264 -preset ultrafast -tune zerolatency -g 30 \
             -pix_fmt yuv420p -level 31 -b:v {rate} -maxrate {rate} -bufsize {rate} \
             -c:a aac -ar 44100"
        );
        ffmpeg(&flags, &part).await;
        list.push_str(&format!("file '{}'\n", part.to_string_lossy()));
    }
    let list_path = dir.path().join("parts.txt");
    std::fs::write(&list_path, list).expect("write concat list");
    let source = dir.path().join("swing.flv");
    let flags = format!(
        "-f concat -safe 0 -i {} -c copy",
        list_path.to_string_lossy()
    );
    ffmpeg(&flags, &source).await;

    let rung = "[[transcode.ladder]]\nname = \"360p\"\nheight = 360\nvideo_kbps = 600\nprofile = \"main\"\n";
    let node = Node::start(NodeOpts {
        segment_target_ms: 1000,
        window_segments: 40,
        extra_toml: transcode_toml("", rung),
        ..NodeOpts::default()
    })
    .await;
    let stream = "swing";
    let key = node.create_key(stream).await;
    let mut publisher = Publisher::ffmpeg_file(&node.rtmp_url(&key.key), &source);
    let renditions = ["source", "360p"];
    node.wait_stream_state(stream, "ACTIVE", LIVE_DEADLINE)
        .await;
    let ts = wait_ended(&node, &mut publisher, stream, &renditions, 12.0).await;

    // kbit/s of each segment, by the second its media starts at.
    let mut rates: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for r in renditions {
        let path = ts_media(stream, r);
        let mut start = 0.0;
        for seg in &ts[r].segments {
            let bytes = node
                .get_ok_bytes(&resolve(&path, &seg.uri))
                .await
                .unwrap_or_else(|| panic!("{path}: segment {} is not 200", seg.msn));
            let kbps = bytes.len() as f64 * 8.0 / seg.duration / 1000.0;
            rates.entry(r).or_default().push((start, kbps));
            start += seg.duration;
        }
    }
    eprintln!("segment kbit/s by start second: {rates:?}");
    // The average of the segments that start inside the middle of each part, away from its edges.
    let phase = |r: &str, from: f64, to: f64| -> f64 {
        let v: Vec<f64> = rates[r]
            .iter()
            .filter(|(t, _)| *t >= from - 0.05 && *t < to - 0.05)
            .map(|(_, k)| *k)
            .collect();
        assert!(
            !v.is_empty(),
            "{r}: no segment starts in [{from}, {to}): {rates:?}"
        );
        v.iter().sum::<f64>() / v.len() as f64
    };
    let phases = [(1.0, 3.0), (5.0, 7.0), (9.0, 11.0)];
    let src: Vec<f64> = phases
        .iter()
        .map(|(a, b)| phase("source", *a, *b))
        .collect();
    let lad: Vec<f64> = phases.iter().map(|(a, b)| phase("360p", *a, *b)).collect();
    eprintln!("phase averages kbit/s: source {src:?}, 360p {lad:?}");
    assert!(
        src[0] >= 3.0 * src[1] && src[2] >= 3.0 * src[1],
        "the source's bitrate should drop several-fold in the 1 Mbit/s part: {src:?}"
    );
    let (lo, hi) = lad
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), k| (lo.min(*k), hi.max(*k)));
    assert!(
        hi <= 1.5 * lo,
        "the 360p rung's bitrate should not follow the ingest: {lad:?} (source {src:?})"
    );
}
