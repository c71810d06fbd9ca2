//! Black-box tests of one hivecast node (issue 2) against `CONTRACT.md`: the real binary, real ffmpeg and
//! GStreamer publishers, and independent clients (ffprobe, ffmpeg, GStreamer playbin, m3u8-rs, roxmltree,
//! tokio-tungstenite). Each test starts its own node on its own ports, so they run in parallel.
//!
//! Sources are small (320x180, x264 ultrafast, 1 s GOP) so the suite stays cheap on 2 cores.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use cluster_tests::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STREAM: &str = "demo";

/// How long a stream may take to become ACTIVE after the publisher starts (process start included).
const LIVE_DEADLINE: Duration = Duration::from_secs(15);
/// How long a publisher that the node refuses may take to exit.
const REFUSE_DEADLINE: Duration = Duration::from_secs(20);

fn ts_master(s: &str) -> String {
    format!("/hls/{s}/master.m3u8")
}
fn ts_media(s: &str) -> String {
    format!("/hls/{s}/source/index.m3u8")
}
fn cmaf_master(s: &str) -> String {
    format!("/cmaf/{s}/master.m3u8")
}
fn cmaf_video(s: &str) -> String {
    format!("/cmaf/{s}/source/index.m3u8")
}
fn cmaf_audio(s: &str) -> String {
    format!("/cmaf/{s}/audio/index.m3u8")
}
fn mpd(s: &str) -> String {
    format!("/cmaf/{s}/manifest.mpd")
}

/// Starts a node, creates a key for `stream`, starts an ffmpeg publisher and waits for ACTIVE.
async fn start_live(opts: NodeOpts, stream: &str) -> (Node, Key, Publisher) {
    let node = Node::start(opts).await;
    let key = node.create_key(stream).await;
    let publisher = Publisher::ffmpeg(&node.rtmp_url(&key.key), PublishOpts::default());
    node.wait_stream_state(stream, "ACTIVE", LIVE_DEADLINE)
        .await;
    (node, key, publisher)
}

/// Waits until the media playlist at `path` lists at least `n` complete segments.
async fn wait_segments(node: &Node, path: &str, n: usize) -> LlHlsPlaylist {
    wait_until(
        &format!("{path} to list {n} segments"),
        Duration::from_secs(25),
        async || {
            fetch_playlist(node, path)
                .await
                .filter(|p| p.segments.len() >= n)
        },
    )
    .await
}

/// Waits until the media playlist at `path` has a segment with sequence number >= `msn`.
async fn wait_msn(node: &Node, path: &str, msn: u64, deadline: Duration) -> LlHlsPlaylist {
    wait_until(
        &format!("{path} to reach media sequence {msn}"),
        deadline,
        async || {
            fetch_playlist(node, path)
                .await
                .filter(|p| p.next_msn() > msn)
        },
    )
    .await
}

/// The `error` code of a JSON error body, checking the contract's shape `{"error","message"}`.
fn error_code(body: &Value) -> String {
    assert!(
        body.get("message").and_then(Value::as_str).is_some(),
        "error body without a message: {body}"
    );
    body.get("error")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("not an error body: {body}"))
        .to_owned()
}

async fn post_json(node: &Node, path: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let mut req = node
        .http()
        .post(format!("{}{path}", node.http_url()))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("POST");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn as_str<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------------------
// Playback
// ---------------------------------------------------------------------------------------------------------

/// Issue 2 §4: viewers play within 3 s of the publisher starting, from HLS (TS), LL-HLS and DASH.
#[tokio::test]
async fn plays_hls_llhls_and_dash_within_3s_of_publish() {
    let node = Node::start_default().await;
    let key = node.create_key(STREAM).await;
    let publisher = Publisher::ffmpeg(&node.rtmp_url(&key.key), PublishOpts::default());
    let t0 = publisher.started_at();
    let deadline = Duration::from_secs(15);

    // When each format first offers something a player can start from, polled side by side.
    let hls_ready = async {
        wait_until("HLS (TS) master + a segment", deadline, async || {
            node.get_ok_text(&ts_master(STREAM)).await?;
            fetch_playlist(&node, &ts_media(STREAM))
                .await
                .filter(|p| !p.segments.is_empty())?;
            Some(t0.elapsed())
        })
        .await
    };
    let ll_ready = async {
        wait_until("LL-HLS master + a part", deadline, async || {
            node.get_ok_text(&cmaf_master(STREAM)).await?;
            fetch_playlist(&node, &cmaf_video(STREAM))
                .await
                .filter(|p| p.parts().next().is_some())?;
            Some(t0.elapsed())
        })
        .await
    };
    let dash_ready = async {
        wait_until("DASH MPD with a segment", deadline, async || {
            let text = node.get_ok_text(&mpd(STREAM)).await?;
            let m = MpdInfo::parse(&text).ok()?;
            (m.set("video")?.timeline_segments >= 1).then(|| t0.elapsed())
        })
        .await
    };
    let (hls_t, ll_t, dash_t) = tokio::join!(hls_ready, ll_ready, dash_ready);
    eprintln!(
        "first playable after publisher start: HLS {hls_t:?}, LL-HLS {ll_t:?}, DASH {dash_t:?}"
    );

    // Independent clients decode each format.
    for (name, path) in [
        ("HLS", ts_master(STREAM)),
        ("LL-HLS", cmaf_master(STREAM)),
        ("DASH", mpd(STREAM)),
    ] {
        let url = format!("{}{path}", node.http_url());
        let probe = ffprobe_ok(&url)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let v = probe
            .video()
            .unwrap_or_else(|| panic!("{name}: no video stream: {probe:?}"));
        assert_eq!(
            (v.codec_name.as_str(), v.width, v.height),
            ("h264", Some(320), Some(180)),
            "{name}"
        );
        assert_eq!(
            probe.audio().map(|a| a.codec_name.as_str()),
            Some("aac"),
            "{name}: {probe:?}"
        );
        let decoded = ffmpeg_decode(&url, 2)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            decoded.frames >= 30,
            "{name}: decoded only {} frames in 2 s",
            decoded.frames
        );
    }

    let limit = Duration::from_secs(3);
    assert!(
        hls_t <= limit,
        "HLS (TS) first playable {hls_t:?} after publish (limit {limit:?})"
    );
    assert!(
        ll_t <= limit,
        "LL-HLS first playable {ll_t:?} after publish (limit {limit:?})"
    );
    assert!(
        dash_t <= limit,
        "DASH first playable {dash_t:?} after publish (limit {limit:?})"
    );
}

/// Issue 2 §4: LL-HLS media playlists carry SERVER-CONTROL (CAN-BLOCK-RELOAD=YES, PART-HOLD-BACK >=
/// 3x PART-TARGET), PART-INF, PART, PRELOAD-HINT, PROGRAM-DATE-TIME, RENDITION-REPORT; the master has the
/// audio rendition group; URIs carry the epoch.
#[tokio::test]
async fn llhls_playlists_have_the_low_latency_tags() {
    let (node, _key, _publisher) = start_live(NodeOpts::default(), STREAM).await;
    let status = node.stream_status(STREAM).await;
    let epoch = status["epoch"]
        .as_u64()
        .unwrap_or_else(|| panic!("no epoch in {status}"));

    // Master: EXT-X-MEDIA audio group and a variant that references it (m3u8-rs parses it).
    // The master appears once every track has its first segment (it carries CODECS and the
    // audio group's URI), not at ACTIVE: the audio track's first CMAF segment can close a
    // moment after the video's (CI saw a 404 between the two).
    wait_segments(&node, &cmaf_video(STREAM), 1).await;
    let master_text = wait_until("the CMAF master", Duration::from_secs(10), async || {
        node.get_ok_text(&cmaf_master(STREAM)).await
    })
    .await;
    let master = parse_master(&master_text).expect("m3u8-rs parses the CMAF master");
    let audio = master
        .alternatives
        .iter()
        .find(|a| a.media_type == m3u8_rs::AlternativeMediaType::Audio)
        .unwrap_or_else(|| panic!("no EXT-X-MEDIA TYPE=AUDIO:\n{master_text}"));
    assert_eq!(audio.group_id, "aud", "{master_text}");
    assert_eq!(
        audio.uri.as_deref().and_then(|u| u.split('?').next()),
        Some("audio/index.m3u8"),
        "{master_text}"
    );
    let variant = master
        .variants
        .iter()
        .find(|v| v.uri.split('?').next() == Some("source/index.m3u8"))
        .unwrap_or_else(|| panic!("no variant source/index.m3u8:\n{master_text}"));
    assert_eq!(variant.audio.as_deref(), Some("aud"), "{master_text}");
    let ts_master_text = wait_until("the HLS master", Duration::from_secs(10), async || {
        node.get_ok_text(&ts_master(STREAM)).await
    })
    .await;
    let ts_master = parse_master(&ts_master_text).expect("m3u8-rs parses the HLS master");
    assert!(
        ts_master
            .variants
            .iter()
            .any(|v| v.uri.split('?').next() == Some("source/index.m3u8")),
        "{ts_master_text}"
    );

    for path in [cmaf_video(STREAM), cmaf_audio(STREAM)] {
        wait_segments(&node, &path, 1).await;
        let text = node
            .get_ok_text(&path)
            .await
            .unwrap_or_else(|| panic!("{path} 200"));
        parse_media(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        let p = LlHlsPlaylist::parse(&text).unwrap();
        let sc = p
            .server_control
            .as_ref()
            .unwrap_or_else(|| panic!("{path}: no EXT-X-SERVER-CONTROL:\n{text}"));
        assert_eq!(
            sc.get("CAN-BLOCK-RELOAD").map(String::as_str),
            Some("YES"),
            "{path}:\n{text}"
        );
        let part_target = p
            .part_target
            .unwrap_or_else(|| panic!("{path}: no EXT-X-PART-INF:\n{text}"));
        let hold_back: f64 = sc
            .get("PART-HOLD-BACK")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{path}: no PART-HOLD-BACK:\n{text}"));
        // RFC 8216bis 4.4.3.8: PART-HOLD-BACK MUST be at least twice the Part Target; the issue asks 3x.
        assert!(
            hold_back + 1e-9 >= 3.0 * part_target,
            "{path}: PART-HOLD-BACK {hold_back} < 3 x {part_target}"
        );
        assert!(p.parts().next().is_some(), "{path}: no EXT-X-PART:\n{text}");
        // RFC 8216bis 4.4.4.9: a Partial Segment's duration MUST be <= the Part Target Duration.
        for part in p.parts() {
            assert!(
                part.duration <= part_target + 1e-3,
                "{path}: part {part:?} longer than PART-TARGET {part_target}"
            );
        }
        let hint = p
            .preload_hints
            .first()
            .unwrap_or_else(|| panic!("{path}: no EXT-X-PRELOAD-HINT:\n{text}"));
        assert_eq!(
            hint.get("TYPE").map(String::as_str),
            Some("PART"),
            "{path}:\n{text}"
        );
        assert!(
            p.program_date_times >= 1,
            "{path}: no EXT-X-PROGRAM-DATE-TIME:\n{text}"
        );
        assert!(
            !p.rendition_reports.is_empty(),
            "{path}: no EXT-X-RENDITION-REPORT:\n{text}"
        );
        // URIs: init-{epoch}.mp4, {epoch}-{msn}.m4s, {epoch}-{msn}.{part}.m4s.
        assert_eq!(
            p.map_uris,
            vec![format!("init-{epoch}.mp4")],
            "{path}:\n{text}"
        );
        for s in &p.segments {
            assert_eq!(s.uri, format!("{epoch}-{}.m4s", s.msn), "{path}:\n{text}");
        }
        for part in p.parts() {
            assert_eq!(
                part.uri,
                format!("{epoch}-{}.{}.m4s", part.msn, part.index),
                "{path}:\n{text}"
            );
        }
    }

    // The MPEG-TS playlist names its segments {epoch}-{msn}.ts.
    let ts = wait_segments(&node, &ts_media(STREAM), 1).await;
    for s in &ts.segments {
        assert_eq!(s.uri, format!("{epoch}-{}.ts", s.msn));
    }
}

/// Issue 2 §4: a blocking reload for the next part returns once that part exists; one far ahead is 400.
#[tokio::test]
async fn llhls_blocking_reload_waits_for_the_part_and_rejects_far_future() {
    let (node, _key, _publisher) = start_live(NodeOpts::default(), STREAM).await;
    let path = cmaf_video(STREAM);
    let mut playlist = wait_segments(&node, &path, 1).await;
    let part_target = playlist.part_target.expect("PART-INF");

    // Five chained reloads, each for the part after the newest one listed: each answer must contain a part
    // that did not exist when it was asked for, so the server must have waited for it.
    let start = Instant::now();
    for _ in 0..5 {
        let (msn, part) = playlist.next_part();
        assert!(!playlist.has_part(msn, part));
        let asked = Instant::now();
        let (status, text) = node
            .get_text(&format!("{path}?_HLS_msn={msn}&_HLS_part={part}"))
            .await;
        let blocked = asked.elapsed();
        assert_eq!(status, 200, "blocking reload {msn}.{part}: {text}");
        let next = LlHlsPlaylist::parse(&text).unwrap();
        // RFC 8216bis 6.2.5.2: if the segment ended with fewer parts, part 0 of the next one satisfies it.
        assert!(
            next.has_part(msn, part) || next.has_part(msn + 1, 0),
            "reload for {msn}.{part} returned after {blocked:?} without it:\n{text}"
        );
        assert!(blocked > Duration::ZERO);
        eprintln!("blocking reload {msn}.{part} answered after {blocked:?}");
        playlist = next;
    }
    // Five new parts take at least four part durations of real-time media.
    let total = start.elapsed();
    assert!(
        total.as_secs_f64() >= 2.0 * part_target,
        "five blocking reloads took {total:?}: the server did not wait for new parts"
    );

    // Far ahead: 400 at once (RFC 8216bis 6.2.5.2).
    let far = playlist.next_msn() + 10;
    let asked = Instant::now();
    let (status, v) = node
        .get_json(&format!("{path}?_HLS_msn={far}&_HLS_part=0"))
        .await;
    assert_eq!(status, 400, "reload 10 segments ahead: {v}");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "the 400 took {:?}",
        asked.elapsed()
    );
    assert_eq!(error_code(&v), "bad_request");
}

/// Issue 2 tests: GStreamer playbin plays HLS (TS) and LL-HLS (CMAF).
#[tokio::test]
async fn gstreamer_plays_hls_and_llhls() {
    let (node, _key, _publisher) = start_live(NodeOpts::default(), STREAM).await;
    wait_segments(&node, &ts_media(STREAM), 2).await;
    wait_segments(&node, &cmaf_video(STREAM), 2).await;
    for path in [ts_master(STREAM), cmaf_master(STREAM)] {
        let url = format!("{}{path}", node.http_url());
        let played = gst_play_within(&url, GST_FRAMES, GST_LIMIT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        eprintln!("gst playbin {path}: {played:?}");
    }
}

/// Issue 2 tests: GStreamer playbin (dashdemux) plays the DASH manifest, which roxmltree reads as a dynamic
/// MPD with SegmentTemplate/$Number$, a video and an audio set and UTCTiming.
#[tokio::test]
async fn gstreamer_plays_dash() {
    let (node, _key, _publisher) = start_live(NodeOpts::default(), STREAM).await;
    let info = wait_until(
        "MPD with 2 video segments",
        Duration::from_secs(25),
        async || {
            let m = MpdInfo::parse(&node.get_ok_text(&mpd(STREAM)).await?).ok()?;
            (m.set("video")?.timeline_segments >= 2).then_some(m)
        },
    )
    .await;
    assert_eq!(info.mpd_type, "dynamic");
    assert!(
        info.availability_start_time.is_some(),
        "no availabilityStartTime: {info:?}"
    );
    assert!(
        info.utc_timing.iter().any(|(_, v)| v.contains("/v1/time")),
        "UTCTiming: {info:?}"
    );
    let video = info.set("video").expect("video AdaptationSet");
    assert!(
        video.representation_ids.iter().any(|r| r == "source"),
        "{info:?}"
    );
    assert!(
        video
            .media_template
            .as_deref()
            .unwrap_or_default()
            .contains("$Number$"),
        "{info:?}"
    );
    assert!(
        info.set("audio").is_some(),
        "no audio AdaptationSet: {info:?}"
    );

    let url = format!("{}{}", node.http_url(), mpd(STREAM));
    let played = gst_play_within(&url, GST_FRAMES, GST_LIMIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("gst playbin DASH: {played:?}");
}

/// Issue 2 tests, a viewer joining a stream that has run longer than its playlist window (the usual
/// case; the tests above join a stream seconds old): GStreamer plays the HLS (TS) playlists with
/// `playbin`, and both HLS and LL-HLS with `playbin3`.
///
/// Not covered, because GStreamer 1.22 (Debian bookworm) cannot: `playbin`'s hlsdemux with CMAF
/// segments keeps the media's decode times (tfdt) under a segment that starts at 0, so its clocked
/// sinks wait as long as the stream has run; and both dashdemux versions, joining a SegmentTimeline
/// whose first entry is not at time 0 (any sliding window), add that entry's start twice and wait
/// for a segment that far in the future (`gst_mpd_client_stream_seek`). README, "Watch".
#[tokio::test]
async fn gstreamer_joins_a_stream_older_than_its_window() {
    let opts = NodeOpts {
        segment_target_ms: 1000,
        window_segments: 3,
        ..NodeOpts::default()
    };
    let (node, _key, _publisher) = start_live(opts, STREAM).await;
    // Segment 6 complete in a window of 3: segments 0 to 2 (at least) have left the playlists.
    for path in [ts_media(STREAM), cmaf_video(STREAM)] {
        let playlist = wait_msn(&node, &path, 6, Duration::from_secs(30)).await;
        assert!(playlist.media_sequence >= 3, "{path}: {playlist:?}");
    }
    for (element, path) in [
        ("playbin", ts_master(STREAM)),
        ("playbin3", ts_master(STREAM)),
        ("playbin3", cmaf_master(STREAM)),
    ] {
        let url = format!("{}{path}", node.http_url());
        let played = gst_play_with(element, &url, GST_FRAMES, GST_LIMIT)
            .await
            .unwrap_or_else(|e| panic!("{element}: {e}"));
        eprintln!("gst {element} {path}: {played:?}");
    }
}

/// Issue 2 §3: a GStreamer `rtmp2sink` publisher is accepted; its stop unpublishes cleanly.
#[tokio::test]
async fn gstreamer_rtmp2sink_publisher_works() {
    let node = Node::start_default().await;
    let key = node.create_key(STREAM).await;
    let mut publisher = Publisher::gstreamer(&node.rtmp_url(&key.key));
    node.wait_stream_state(STREAM, "ACTIVE", LIVE_DEADLINE)
        .await;
    wait_segments(&node, &ts_media(STREAM), 1).await;
    let status = wait_until(
        "metrics for the GStreamer stream",
        Duration::from_secs(10),
        async || {
            let s = node.stream_status(STREAM).await;
            (s["metrics"]["width"].as_u64() == Some(320)).then_some(s)
        },
    )
    .await;
    assert!(
        status["metrics"]["video_codec"]
            .as_str()
            .unwrap_or_default()
            .starts_with("avc1"),
        "{status}"
    );
    assert!(
        status["metrics"]["audio_codec"]
            .as_str()
            .unwrap_or_default()
            .starts_with("mp4a"),
        "{status}"
    );
    let probe = ffprobe_ok(&format!("{}{}", node.http_url(), ts_master(STREAM)))
        .await
        .expect("ffprobe");
    assert_eq!(probe.video().map(|v| v.codec_name.as_str()), Some("h264"));
    publisher.stop_gracefully().await.expect("stop gst-launch");
    node.wait_stream_state(STREAM, "ENDED_GRACEFULLY", Duration::from_secs(10))
        .await;
}

// ---------------------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------------------

/// Issue 2 §2: keys are created, listed without the secret, and revoked through the API; audited.
#[tokio::test]
async fn keys_create_list_revoke_via_api() {
    let node = Node::start_default().await;
    let a = node.create_key(STREAM).await;
    let b = node.create_key(STREAM).await;
    assert_eq!(a.stream, STREAM);
    assert_ne!(a.key, b.key);
    assert_ne!(a.key_id, b.key_id);
    // >= 128 random bits: at least 22 characters in any text encoding of them (base64: 22, hex: 32).
    assert!(a.key.len() >= 22, "key too short for 128 bits: {:?}", a.key);

    let listed = node.list_keys().await;
    let body = serde_json::to_string(&listed).unwrap();
    assert!(
        !body.contains(&a.key) && !body.contains(&b.key),
        "GET /v1/keys leaks a key: {body}"
    );
    let entry = listed
        .iter()
        .find(|k| as_str(k, "key_id") == a.key_id)
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(as_str(entry, "stream"), STREAM);
    assert_eq!(entry["revoked"], Value::Bool(false), "{entry}");
    assert!(entry["created_at_ms"].as_u64().is_some(), "{entry}");
    assert!(entry.get("key").is_none(), "{entry}");

    assert_eq!(node.revoke_key(&a.key_id).await, 204);
    let listed = node.list_keys().await;
    let entry = listed
        .iter()
        .find(|k| as_str(k, "key_id") == a.key_id)
        .expect("revoked key still listed");
    assert_eq!(entry["revoked"], Value::Bool(true), "{entry}");
    let other = listed
        .iter()
        .find(|k| as_str(k, "key_id") == b.key_id)
        .expect("second key");
    assert_eq!(other["revoked"], Value::Bool(false), "{other}");
    assert_eq!(node.revoke_key("no-such-key-id").await, 404);

    let audit = node.audit(STREAM).await;
    let events: Vec<&str> = audit.iter().map(|e| as_str(e, "event")).collect();
    assert!(events.contains(&"key_created"), "{audit:?}");
    assert!(events.contains(&"key_revoked"), "{audit:?}");
}

/// Issue 2 §2: `hivecast key create/list/revoke` against the running node, token from the environment;
/// the key the CLI printed publishes.
#[tokio::test]
async fn keys_via_cli() {
    let node = Node::start_default().await;
    let url = node.http_url();
    let (status, out, err) = node
        .cli(&["key", "create", "--stream", "clidemo", "--url", &url])
        .await;
    assert!(
        status.success(),
        "key create: {status}\nstdout: {out}\nstderr: {err}"
    );
    let created: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("key create prints JSON ({e}): {out}"));
    let key = Key::from_json(&created).expect("key JSON");
    assert_eq!(key.stream, "clidemo");

    let (status, out, err) = node.cli(&["key", "list", "--url", &url]).await;
    assert!(status.success(), "key list: {status}\n{out}\n{err}");
    assert!(
        out.contains(&key.key_id),
        "key list does not show {}: {out}",
        key.key_id
    );
    assert!(!out.contains(&key.key), "key list leaks the key: {out}");

    // The CLI's key is a real key.
    let publisher = Publisher::ffmpeg(&node.rtmp_url(&key.key), PublishOpts::default());
    node.wait_stream_state("clidemo", "ACTIVE", LIVE_DEADLINE)
        .await;
    drop(publisher);

    let (status, out, err) = node
        .cli(&["key", "revoke", &key.key_id, "--url", &url])
        .await;
    assert!(status.success(), "key revoke: {status}\n{out}\n{err}");
    let listed = node.list_keys().await;
    let entry = listed
        .iter()
        .find(|k| as_str(k, "key_id") == key.key_id)
        .expect("listed");
    assert_eq!(entry["revoked"], Value::Bool(true), "{entry}");
}

/// Finds an audit entry with `event` (and `stream`, if given).
fn find_audit<'a>(audit: &'a [Value], event: &str, stream: Option<&str>) -> Option<&'a Value> {
    audit
        .iter()
        .find(|e| as_str(e, "event") == event && stream.is_none_or(|s| as_str(e, "stream") == s))
}

/// Issue 2 "bad input": a wrong key is refused (ffmpeg fails), audited as publish_rejected.
#[tokio::test]
async fn wrong_key_is_refused_and_audited() {
    let node = Node::start_default().await;
    node.create_key(STREAM).await;
    let mut publisher = Publisher::ffmpeg(
        &node.rtmp_url("not-a-valid-key-0123456789"),
        PublishOpts::default(),
    );
    let status = publisher
        .wait_exit(REFUSE_DEADLINE)
        .await
        .expect("ffmpeg refused");
    assert!(
        !status.success(),
        "ffmpeg with a wrong key exited {status}\n{}",
        publisher.log()
    );
    let audit = wait_until(
        "publish_rejected in the audit log",
        Duration::from_secs(5),
        async || {
            let (code, v) = node.get_json_admin("/v1/audit").await;
            assert_eq!(code, 200, "GET /v1/audit: {v}");
            let list = v.as_array()?.clone();
            find_audit(&list, "publish_rejected", None).cloned()
        },
    )
    .await;
    assert!(
        audit["remote"]
            .as_str()
            .unwrap_or_default()
            .starts_with("127.0.0.1"),
        "{audit}"
    );
    assert_ne!(node.stream_state(STREAM).await.as_deref(), Some("ACTIVE"));
}

/// Issue 2 "bad input": a revoked key is refused, audited as publish_rejected.
#[tokio::test]
async fn revoked_key_is_refused() {
    let node = Node::start_default().await;
    let key = node.create_key(STREAM).await;
    assert_eq!(node.revoke_key(&key.key_id).await, 204);
    let mut publisher = Publisher::ffmpeg(&node.rtmp_url(&key.key), PublishOpts::default());
    let status = publisher
        .wait_exit(REFUSE_DEADLINE)
        .await
        .expect("ffmpeg refused");
    assert!(
        !status.success(),
        "ffmpeg with a revoked key exited {status}\n{}",
        publisher.log()
    );
    wait_until(
        "publish_rejected in the audit log",
        Duration::from_secs(5),
        async || {
            let (_, v) = node.get_json_admin("/v1/audit").await;
            find_audit(v.as_array()?, "publish_rejected", None).map(|_| ())
        },
    )
    .await;
    assert_ne!(node.stream_state(STREAM).await.as_deref(), Some("ACTIVE"));
}

/// Issue 2 "bad input": a second publisher on a live stream is refused; the first keeps going.
#[tokio::test]
async fn second_publisher_is_refused_while_the_first_continues() {
    let (node, key, mut first) = start_live(NodeOpts::default(), STREAM).await;
    let before = wait_segments(&node, &ts_media(STREAM), 1).await;
    let epoch = node.stream_status(STREAM).await["epoch"].clone();

    let mut second = Publisher::ffmpeg(&node.rtmp_url(&key.key), PublishOpts::default());
    let status = second
        .wait_exit(REFUSE_DEADLINE)
        .await
        .expect("second publisher refused");
    assert!(
        !status.success(),
        "second publisher exited {status}\n{}",
        second.log()
    );

    // The first publisher's stream keeps advancing, same epoch, still ACTIVE.
    wait_msn(
        &node,
        &ts_media(STREAM),
        before.next_msn() + 1,
        Duration::from_secs(15),
    )
    .await;
    assert!(first.is_running(), "first publisher died:\n{}", first.log());
    let s = node.stream_status(STREAM).await;
    assert_eq!(as_str(&s, "status"), "ACTIVE", "{s}");
    assert_eq!(s["epoch"], epoch, "{s}");
}

/// Whether the stream's status error or one of its audit entries names the codec.
async fn codec_named(node: &Node, stream: &str, needles: &[&str]) -> Option<String> {
    let status = node.get_json(&format!("/v1/streams/{stream}")).await.1;
    let audit = node
        .get_json_admin(&format!("/v1/audit?stream={stream}"))
        .await
        .1;
    let mut texts = vec![status["error"].as_str().unwrap_or_default().to_owned()];
    if let Some(a) = audit.as_array() {
        texts.extend(a.iter().map(|e| as_str(e, "detail").to_owned()));
    }
    texts.into_iter().find(|t| {
        let l = t.to_lowercase();
        needles.iter().any(|n| l.contains(n))
    })
}

/// Publishes with `opts` and checks the refusal: the publisher exits non-zero, the stream goes
/// to ERROR, and its error (or the audit log) names the codec with one of `needles`.
async fn refused_naming_codec(opts: PublishOpts, what: &str, needles: &[&str]) {
    let node = Node::start_default().await;
    let key = node.create_key(STREAM).await;
    let mut publisher = Publisher::ffmpeg(&node.rtmp_url(&key.key), opts);
    let status = publisher
        .wait_exit(REFUSE_DEADLINE)
        .await
        .unwrap_or_else(|e| panic!("{what} publisher not disconnected: {e}"));
    assert!(
        !status.success(),
        "{what} publisher exited {status}\n{}",
        publisher.log()
    );
    let s = node
        .wait_stream_state(STREAM, "ERROR", Duration::from_secs(10))
        .await;
    let msg = wait_until(
        &format!("an error naming {what}"),
        Duration::from_secs(5),
        async || codec_named(&node, STREAM, needles).await,
    )
    .await;
    eprintln!("{what} refusal: {msg:?} (status {s})");
}

/// Issue 2 "bad input" (FR-001): FLV1 video is refused with a message naming the codec.
#[tokio::test]
async fn flv1_video_is_refused_naming_the_codec() {
    let opts = PublishOpts {
        video_codec: Some("flv1".into()),
        ..PublishOpts::default()
    };
    refused_naming_codec(
        opts,
        "FLV1 / Sorenson H.263",
        &["flv1", "h.263", "sorenson"],
    )
    .await;
}

/// Issue 2 "bad input" (FR-001): MP3 audio is refused with a message naming the codec.
#[tokio::test]
async fn mp3_audio_is_refused_naming_the_codec() {
    let opts = PublishOpts {
        audio_codec: Some("libmp3lame".into()),
        ..PublishOpts::default()
    };
    refused_naming_codec(opts, "MP3", &["mp3"]).await;
}

// ---------------------------------------------------------------------------------------------------------
// Lifecycle
// ---------------------------------------------------------------------------------------------------------

/// Issue 2 §6/§7: a clean stop ends the stream: WebSocket says ENDED_GRACEFULLY within 1 s of ffmpeg's exit,
/// playlists end with EXT-X-ENDLIST, and after `ended_retention_ms` they answer 410 `stream_ended`.
#[tokio::test]
async fn clean_stop_ends_gracefully_with_endlist_then_410() {
    let opts = NodeOpts {
        ended_retention_ms: 4000,
        ..NodeOpts::default()
    };
    let (node, _key, mut publisher) = start_live(opts, STREAM).await;
    wait_segments(&node, &ts_media(STREAM), 1).await;
    wait_segments(&node, &cmaf_video(STREAM), 1).await;

    let ws_url = format!(
        "ws://127.0.0.1:{}/v1/streams/{STREAM}/events",
        node.http_url().rsplit(':').next().unwrap()
    );
    let mut ws = WsClient::connect(&ws_url).await.expect("WebSocket connect");
    let first = ws
        .next_json(Duration::from_secs(5))
        .await
        .expect("status on connect");
    assert_eq!(
        (as_str(&first, "type"), as_str(&first, "status")),
        ("status", "ACTIVE"),
        "{first}"
    );

    let (exit, exited_at) = publisher.stop_gracefully().await.expect("stop ffmpeg");
    assert!(
        exit.success(),
        "ffmpeg after q: {exit}\n{}",
        publisher.log()
    );
    let ended = ws
        .wait_for("status ENDED_GRACEFULLY", Duration::from_secs(5), |v| {
            as_str(v, "type") == "status" && as_str(v, "status") == "ENDED_GRACEFULLY"
        })
        .await;
    let lag = exited_at.elapsed();
    assert_eq!(as_str(&ended, "stream"), STREAM, "{ended}");
    assert!(
        lag <= Duration::from_secs(1),
        "ENDED_GRACEFULLY arrived {lag:?} after ffmpeg exited"
    );

    let s = node.stream_status(STREAM).await;
    assert_eq!(as_str(&s, "status"), "ENDED_GRACEFULLY", "{s}");
    assert!(s["ended_at_ms"].as_u64().is_some(), "{s}");
    for path in [ts_media(STREAM), cmaf_video(STREAM), cmaf_audio(STREAM)] {
        let text = node
            .get_ok_text(&path)
            .await
            .unwrap_or_else(|| panic!("{path} after the end"));
        let p = LlHlsPlaylist::parse(&text).unwrap();
        assert!(
            p.endlist,
            "{path} has no EXT-X-ENDLIST after a clean stop:\n{text}"
        );
        assert!(!p.segments.is_empty(), "{path}:\n{text}");
    }

    for path in [
        ts_master(STREAM),
        ts_media(STREAM),
        cmaf_master(STREAM),
        cmaf_video(STREAM),
        mpd(STREAM),
    ] {
        let v = wait_until(
            &format!("{path} to answer 410"),
            Duration::from_secs(15),
            async || {
                let (status, v) = node.get_json(&path).await;
                (status == 410).then_some(v)
            },
        )
        .await;
        assert_eq!(error_code(&v), "stream_ended", "{path}");
    }
}

/// Issue 2 §6: a publisher killed without unpublish (TCP drop) puts the stream in ERROR.
#[tokio::test]
async fn killed_publisher_puts_the_stream_in_error() {
    let (node, _key, mut publisher) = start_live(NodeOpts::default(), STREAM).await;
    wait_segments(&node, &ts_media(STREAM), 1).await;
    publisher.kill();
    let s = node
        .wait_stream_state(STREAM, "ERROR", Duration::from_secs(10))
        .await;
    assert!(
        s["error"].as_str().is_some_and(|e| !e.is_empty()),
        "ERROR without a reason: {s}"
    );
    let v = wait_until(
        "the HLS master to answer 410",
        Duration::from_secs(40),
        async || {
            let (status, v) = node.get_json(&ts_master(STREAM)).await;
            (status == 410).then_some(v)
        },
    )
    .await;
    assert!(v.get("error").is_some(), "{v}");
}

/// `EXT-X-DISCONTINUITY-SEQUENCE` of a media playlist (0 if absent).
fn discontinuity_seq(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Issue 9 §1: during a short publisher gap (the connection drops, the broadcaster reconnects)
/// every playlist URL keeps answering 200, also between the new session's start and its first
/// segment (Safari gives up on a child playlist that answers 404), the new session continues
/// the timeline (next media sequence number, next discontinuity sequence), and the previous
/// session's last segments stay fetchable for players still working through them.
#[tokio::test]
async fn playlists_keep_answering_through_a_publisher_reconnect() {
    let (node, key, mut publisher) = start_live(NodeOpts::default(), STREAM).await;
    let playlists = [
        ts_master(STREAM),
        ts_media(STREAM),
        cmaf_master(STREAM),
        cmaf_video(STREAM),
        cmaf_audio(STREAM),
        mpd(STREAM),
    ];
    for path in [ts_media(STREAM), cmaf_video(STREAM), cmaf_audio(STREAM)] {
        wait_segments(&node, &path, 2).await;
    }
    let epoch1 = node.stream_status(STREAM).await["epoch"].as_u64().unwrap();
    publisher.kill();
    node.wait_stream_state(STREAM, "ERROR", Duration::from_secs(10))
        .await;
    let mut last_old = Vec::new();
    for path in [ts_media(STREAM), cmaf_video(STREAM)] {
        let (code, text) = node.get_text(&path).await;
        assert_eq!(code, 200, "{path} after the drop: {text}");
        let p = LlHlsPlaylist::parse(&text).unwrap();
        assert!(
            !p.endlist,
            "{path}: ENDLIST after a dropped connection:\n{text}"
        );
        last_old.push((path, p, discontinuity_seq(&text)));
    }

    // Poll every playlist every 50 ms from before the reconnect until the new session's
    // segments are listed everywhere.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut pollers = Vec::new();
    for path in playlists.clone() {
        let url = format!("{}{path}", node.http_url());
        let http = node.http().clone();
        let stop = stop.clone();
        pollers.push(tokio::spawn(async move {
            let mut answers: Vec<u16> = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let code = match http.get(&url).send().await {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                };
                answers.push(code);
                tokio::time::sleep(Duration::from_millis(50)).await; // pacing of the poll
            }
            (path, answers)
        }));
    }
    // Measurement window: the pollers see the gap itself before the broadcaster comes back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _publisher = Publisher::ffmpeg(&node.rtmp_url(&key.key), PublishOpts::default());
    let epoch2 = wait_until("a new ACTIVE session", LIVE_DEADLINE, async || {
        let s = node.stream_status(STREAM).await;
        let e = s["epoch"].as_u64()?;
        (as_str(&s, "status") == "ACTIVE" && e > epoch1).then_some(e)
    })
    .await;
    for (path, old, old_dseq) in &last_old {
        let (text, p) = wait_until(
            &format!("{path} to list a segment of epoch {epoch2}"),
            Duration::from_secs(20),
            async || {
                let (code, text) = node.get_text(path).await;
                let p = LlHlsPlaylist::parse(&text).ok()?;
                let new = p
                    .segments
                    .iter()
                    .any(|s| s.uri.contains(&format!("{epoch2}-")));
                (code == 200 && new).then_some((text, p))
            },
        )
        .await;
        let old_last = old.segments.last().unwrap().msn;
        assert!(
            p.media_sequence > old_last,
            "{path}: the new session restarted the media sequence ({} after {old_last}):\n{text}",
            p.media_sequence
        );
        assert_eq!(
            discontinuity_seq(&text),
            old_dseq + 1,
            "{path}: discontinuity sequence after one new session:\n{text}"
        );
        // The previous session's last segments are still served (immutable names).
        for seg in old.segments.iter().rev().take(2) {
            let dir = path.rsplit_once('/').unwrap().0;
            let (code, _) = node.get_text(&format!("{dir}/{}", seg.uri)).await;
            assert_eq!(code, 200, "{dir}/{} after the re-publish", seg.uri);
        }
    }
    // Measurement window: a few more polls once the new session is listed everywhere.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for p in pollers {
        let (path, answers) = p.await.unwrap();
        let bad: Vec<&u16> = answers.iter().filter(|c| **c != 200).collect();
        assert!(
            answers.len() > 20 && bad.is_empty(),
            "{path}: {} of {} polls through the reconnect did not answer 200: {bad:?}",
            bad.len(),
            answers.len()
        );
    }
}

/// Issue 2 §6: no media for `media_timeout_ms` puts the stream in ERROR (the publisher stays connected).
#[tokio::test]
async fn media_timeout_puts_the_stream_in_error() {
    let opts = NodeOpts {
        media_timeout_ms: 2000,
        ..NodeOpts::default()
    };
    let (node, _key, mut publisher) = start_live(opts, STREAM).await;
    wait_segments(&node, &ts_media(STREAM), 1).await;
    // SIGSTOP freezes ffmpeg: the TCP connection stays open, no bytes flow.
    publisher.freeze().expect("SIGSTOP");
    let stopped_at = Instant::now();
    let s = node
        .wait_stream_state(STREAM, "ERROR", Duration::from_secs(10))
        .await;
    let after = stopped_at.elapsed();
    publisher.thaw().expect("SIGCONT");
    assert!(
        after >= Duration::from_millis(1500),
        "ERROR after {after:?}, before the 2 s media timeout: {s}"
    );
}

/// Issue 2 §6: a panic inside stream A's actors leaves stream B untouched.
#[tokio::test]
async fn panic_in_one_stream_does_not_affect_another() {
    let opts = NodeOpts {
        fault_injection: true,
        ..NodeOpts::default()
    };
    let (node, _ka, _pa) = start_live(opts, "alpha").await;
    let kb = node.create_key("beta").await;
    let mut pb = Publisher::ffmpeg(&node.rtmp_url(&kb.key), PublishOpts::default());
    node.wait_stream_state("beta", "ACTIVE", LIVE_DEADLINE)
        .await;
    wait_segments(&node, &ts_media("alpha"), 1).await;
    let before = wait_segments(&node, &ts_media("beta"), 1).await;
    let beta_epoch = node.stream_status("beta").await["epoch"].clone();

    let (unauth, _) = post_json(&node, "/v1/debug/streams/alpha/panic", None, "").await;
    assert_eq!(unauth, 401, "the panic endpoint needs the admin token");
    let (status, body) = post_json(
        &node,
        "/v1/debug/streams/alpha/panic",
        Some(node.admin_token()),
        "",
    )
    .await;
    assert!(
        (200..300).contains(&status),
        "inject panic: {status} {body}"
    );

    node.wait_stream_state("alpha", "ERROR", Duration::from_secs(10))
        .await;
    // B keeps producing segments and parts, same epoch, still ACTIVE, its publisher still connected.
    wait_msn(
        &node,
        &ts_media("beta"),
        before.next_msn() + 1,
        Duration::from_secs(15),
    )
    .await;
    let parts_before = fetch_playlist(&node, &cmaf_video("beta"))
        .await
        .expect("beta LL-HLS");
    let (m, p) = parts_before.next_part();
    let (code, _) = node
        .get_text(&format!(
            "{}?_HLS_msn={m}&_HLS_part={p}",
            cmaf_video("beta")
        ))
        .await;
    assert_eq!(code, 200);
    let s = node.stream_status("beta").await;
    assert_eq!(as_str(&s, "status"), "ACTIVE", "{s}");
    assert_eq!(s["epoch"], beta_epoch);
    assert!(pb.is_running(), "beta's publisher was cut:\n{}", pb.log());
    assert!(node_running(&node).await, "the node died");
}

async fn node_running(node: &Node) -> bool {
    node.get_text("/healthz").await.0 == 200
}

/// Issue 2 §5: segment URIs never repeat, across a re-publish and across a node restart.
#[tokio::test]
async fn segment_uris_never_repeat_across_republish_and_restart() {
    let node_opts = NodeOpts {
        ended_retention_ms: 2000,
        ..NodeOpts::default()
    };
    let mut node = Node::start(node_opts).await;
    let key = node.create_key(STREAM).await;
    let playlists = [ts_media(STREAM), cmaf_video(STREAM), cmaf_audio(STREAM)];
    let refs: Vec<&str> = playlists.iter().map(String::as_str).collect();
    let mut runs: Vec<(u64, HashSet<String>)> = Vec::new();

    for run in 0..3 {
        if run == 2 {
            node.restart().await;
        }
        let prev_epoch = runs.last().map(|(e, _)| *e).unwrap_or(0);
        let mut publisher = Publisher::ffmpeg(&node.rtmp_url(&key.key), PublishOpts::default());
        let status = wait_until(
            &format!("run {run}: ACTIVE with a new epoch"),
            LIVE_DEADLINE,
            async || {
                let s = node.get_json(&format!("/v1/streams/{STREAM}")).await.1;
                let epoch = s["epoch"].as_u64()?;
                (as_str(&s, "status") == "ACTIVE" && epoch > prev_epoch).then_some(s)
            },
        )
        .await;
        let epoch = status["epoch"].as_u64().unwrap();
        let mut uris = HashSet::new();
        // Until the new session's first segments, its playlist URLs answer with the previous
        // session's last playlist (see `playlists_keep_answering_through_a_publisher_reconnect`).
        for path in &playlists {
            wait_until(
                &format!("run {run}: {path} to list 2 segments of epoch {epoch}"),
                Duration::from_secs(25),
                async || {
                    fetch_playlist(&node, path).await.filter(|p| {
                        let own = format!("{epoch}-");
                        p.segments
                            .iter()
                            .filter(|s| s.uri.starts_with(&own))
                            .count()
                            >= 2
                    })
                },
            )
            .await;
        }
        collect_uris(&node, &refs, &mut uris).await;
        let (exit, _) = publisher.stop_gracefully().await.expect("stop");
        assert!(exit.success(), "{}", publisher.log());
        node.wait_stream_state(STREAM, "ENDED_GRACEFULLY", Duration::from_secs(10))
            .await;
        collect_uris(&node, &refs, &mut uris).await;
        assert!(
            uris.len() >= 6,
            "run {run}: too few URIs collected: {uris:?}"
        );
        for u in &uris {
            assert!(
                u.contains(&epoch.to_string()),
                "run {run}: URI {u} does not carry epoch {epoch}"
            );
        }
        runs.push((epoch, uris));
    }
    for i in 0..runs.len() {
        for j in i + 1..runs.len() {
            let common: Vec<&String> = runs[i].1.intersection(&runs[j].1).collect();
            assert!(
                common.is_empty(),
                "runs {i} and {j} share segment URIs: {common:?}"
            );
        }
    }
}

/// Issue 2 §7: status and metrics over HTTP and WebSocket while live.
#[tokio::test]
async fn status_and_metrics_over_http_and_websocket() {
    let (node, _key, _publisher) = start_live(NodeOpts::default(), STREAM).await;
    let port = node.http_url().rsplit(':').next().unwrap().to_owned();
    let mut ws = WsClient::connect(&format!("ws://127.0.0.1:{port}/v1/streams/{STREAM}/events"))
        .await
        .expect("ws");
    let mut all = WsClient::connect(&format!("ws://127.0.0.1:{port}/v1/events"))
        .await
        .expect("ws all");
    let first = ws
        .next_json(Duration::from_secs(5))
        .await
        .expect("status on connect");
    assert_eq!(as_str(&first, "type"), "status", "{first}");
    assert_eq!(as_str(&first, "status"), "ACTIVE", "{first}");
    assert_eq!(as_str(&first, "stream"), STREAM, "{first}");
    assert!(first["at_ms"].as_u64().is_some(), "{first}");
    let metrics = ws
        .wait_for("a metrics message", Duration::from_secs(5), |v| {
            as_str(v, "type") == "metrics"
        })
        .await;
    assert_eq!(as_str(&metrics, "stream"), STREAM, "{metrics}");
    let any = all
        .wait_for(
            "a message about demo on /v1/events",
            Duration::from_secs(5),
            |v| as_str(v, "stream") == STREAM,
        )
        .await;
    assert!(
        matches!(as_str(&any, "type"), "status" | "metrics"),
        "{any}"
    );

    // Let a few seconds of media in, then read the status object.
    wait_segments(&node, &ts_media(STREAM), 2).await;
    let s = node.stream_status(STREAM).await;
    assert_eq!(as_str(&s, "stream"), STREAM);
    assert_eq!(as_str(&s, "status"), "ACTIVE");
    assert_eq!(as_str(&s, "origin"), "node1");
    assert!(s["epoch"].as_u64().is_some_and(|e| e >= 1), "{s}");
    assert!(
        s["renditions"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x == "source")),
        "{s}"
    );
    assert!(s["started_at_ms"].as_u64().is_some(), "{s}");
    assert!(s["ended_at_ms"].is_null() && s["error"].is_null(), "{s}");
    let m = &s["metrics"];
    assert!(as_str(m, "video_codec").starts_with("avc1."), "{s}");
    assert_eq!(as_str(m, "audio_codec"), "mp4a.40.2", "{s}");
    assert_eq!(
        (m["width"].as_u64(), m["height"].as_u64()),
        (Some(320), Some(180)),
        "{s}"
    );
    let fps = m["fps"].as_f64().unwrap_or(0.0);
    assert!((25.0..=35.0).contains(&fps), "fps {fps}: {s}");
    assert!(
        m["ingress_bitrate_kbps"].as_f64().is_some_and(|b| b > 0.0),
        "{s}"
    );
    let frames = m["frames"].as_u64().unwrap_or(0);
    assert!(frames > 0, "{s}");
    wait_until(
        "the frame counter to grow",
        Duration::from_secs(5),
        async || {
            (node.stream_status(STREAM).await["metrics"]["frames"].as_u64()? > frames).then_some(())
        },
    )
    .await;

    let (code, list) = node.get_json("/v1/streams").await;
    assert_eq!(code, 200);
    assert!(
        list.as_array()
            .is_some_and(|a| a.iter().any(|x| as_str(x, "stream") == STREAM)),
        "{list}"
    );
}

// ---------------------------------------------------------------------------------------------------------
// HTTP errors
// ---------------------------------------------------------------------------------------------------------

/// Issue 2 "bad input": unknown streams are 404 `not_found` in JSON, on the API, playback and WebSocket.
#[tokio::test]
async fn unknown_stream_is_404_json() {
    let node = Node::start_default().await;
    let (code, body) = node.get_json("/healthz").await;
    assert_eq!((code, as_str(&body, "status")), (200, "ok"), "{body}");
    for path in [
        "/v1/streams/nosuch".to_string(),
        ts_master("nosuch"),
        ts_media("nosuch"),
        cmaf_master("nosuch"),
        cmaf_video("nosuch"),
        mpd("nosuch"),
    ] {
        let (code, body) = node.get_json(&path).await;
        assert_eq!(code, 404, "{path}: {body}");
        assert_eq!(error_code(&body), "not_found", "{path}");
    }
    let port = node.http_url().rsplit(':').next().unwrap().to_owned();
    assert_eq!(
        ws_upgrade_status(&format!("ws://127.0.0.1:{port}/v1/streams/nosuch/events")).await,
        Some(404)
    );
}

/// Issue 2 "bad input": malformed requests are 400 `bad_request` in JSON.
#[tokio::test]
async fn malformed_requests_are_400_json() {
    let node = Node::start_default().await;
    let long = "x".repeat(65);
    for path in [
        "/v1/streams/bad.name".to_string(),
        format!("/v1/streams/{long}"),
        ts_master("bad.name"),
    ] {
        let (code, body) = node.get_json(&path).await;
        assert_eq!(code, 400, "{path}: {body}");
        assert_eq!(error_code(&body), "bad_request", "{path}");
    }
    let token = Some(node.admin_token());
    for body in [
        r#"{"stream":"bad name"}"#.to_string(),
        format!(r#"{{"stream":"{long}"}}"#),
        "{not json".into(),
        "{}".into(),
    ] {
        let (code, v) = post_json(&node, "/v1/keys", token, &body).await;
        assert_eq!(code, 400, "POST /v1/keys {body}: {v}");
        assert_eq!(error_code(&v), "bad_request", "POST /v1/keys {body}");
    }
    // A stream name of exactly 64 allowed characters is fine.
    let (code, v) = post_json(
        &node,
        "/v1/keys",
        token,
        &format!(r#"{{"stream":"{}"}}"#, "A-_9".repeat(16)),
    )
    .await;
    assert_eq!(code, 201, "{v}");
}

/// Issue 2 §2: admin endpoints answer 401 `unauthorized` without the right token.
#[tokio::test]
async fn admin_endpoints_require_the_token() {
    let node = Node::start_default().await;
    let url = node.http_url();
    let http = node.http();
    let reqs = [
        http.post(format!("{url}/v1/keys"))
            .json(&serde_json::json!({"stream": "demo"})),
        http.post(format!("{url}/v1/keys"))
            .bearer_auth("wrong-token")
            .json(&serde_json::json!({"stream": "demo"})),
        http.get(format!("{url}/v1/keys")),
        http.get(format!("{url}/v1/keys"))
            .bearer_auth("wrong-token"),
        http.delete(format!("{url}/v1/keys/some-id")),
        http.get(format!("{url}/v1/audit?stream=demo")),
    ];
    for req in reqs {
        let resp = req.send().await.expect("request");
        let what = format!("{} {}", resp.url().path(), resp.status());
        assert_eq!(resp.status().as_u16(), 401, "{what}");
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(error_code(&v), "unauthorized", "{what}");
    }
    assert!(
        node.list_keys().await.is_empty(),
        "a refused request created a key"
    );
}

// ---------------------------------------------------------------------------------------------------------
// Hostile RTMP peers
// ---------------------------------------------------------------------------------------------------------

/// Reads until the server closes the connection; returns how long that took, or `None` if still open
/// after `limit`.
async fn closed_within(tcp: &mut tokio::net::TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 8192];
    loop {
        let left = limit.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, tcp.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

/// Deterministic garbage (xorshift), so a failure can be replayed.
fn garbage(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

/// Issue 2 "bad input": TCP garbage and a slowloris on the RTMP port are dropped (handshake timeout) and
/// do not disturb a live stream.
#[tokio::test]
async fn rtmp_garbage_and_slowloris_do_not_disturb_a_live_stream() {
    let opts = NodeOpts {
        handshake_timeout_ms: 1000,
        ..NodeOpts::default()
    };
    let (node, _key, mut publisher) = start_live(opts, STREAM).await;
    let before = wait_segments(&node, &ts_media(STREAM), 1).await;

    // A slowloris: connects and sends nothing.
    let mut slow = tokio::net::TcpStream::connect(node.rtmp_addr())
        .await
        .expect("connect");
    // A peer with a wrong version byte, then garbage.
    let mut bad_version = tokio::net::TcpStream::connect(node.rtmp_addr())
        .await
        .expect("connect");
    let mut g = vec![0x42];
    g.extend(garbage(4096, 1));
    let _ = bad_version.write_all(&g).await;
    // A peer with a valid C0 (version 3) and C1, then garbage where C2 and chunks belong.
    let mut bad_chunks = tokio::net::TcpStream::connect(node.rtmp_addr())
        .await
        .expect("connect");
    let mut g = vec![0x03];
    g.extend(garbage(1536 + 1536 + 16 * 1024, 2));
    let _ = bad_chunks.write_all(&g).await;
    // A peer that starts a handshake (C0 + half of C1) and stalls.
    let mut half = tokio::net::TcpStream::connect(node.rtmp_addr())
        .await
        .expect("connect");
    let mut g = vec![0x03];
    g.extend(garbage(700, 3));
    let _ = half.write_all(&g).await;

    let limit = Duration::from_secs(5);
    for (name, tcp) in [
        ("bad version", &mut bad_version),
        ("garbage chunks", &mut bad_chunks),
    ] {
        let t = closed_within(tcp, limit).await;
        assert!(t.is_some(), "{name}: connection still open after {limit:?}");
    }
    for (name, tcp) in [("slowloris", &mut slow), ("half handshake", &mut half)] {
        let t = closed_within(tcp, limit)
            .await
            .unwrap_or_else(|| panic!("{name}: still open after {limit:?}"));
        eprintln!("{name} dropped after {t:?} (handshake timeout 1 s)");
    }

    wait_msn(
        &node,
        &ts_media(STREAM),
        before.next_msn() + 1,
        Duration::from_secs(15),
    )
    .await;
    assert!(
        publisher.is_running(),
        "publisher dropped:\n{}",
        publisher.log()
    );
    assert_eq!(node.stream_state(STREAM).await.as_deref(), Some("ACTIVE"));
    assert!(node_running(&node).await);
}
