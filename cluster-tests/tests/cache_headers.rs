//! Black-box tests of the viewer routes' cache headers (issue 9 §1, `docs/CACHING.md`): one node with
//! the default harness options (segment target T = 2 s, part target 200 ms) and one ffmpeg publisher;
//! every kind of object is fetched and its headers compared with the table.
//!
//! Expected values at T = 2 s: masters `private, max-age=60` (they carry the viewer's session id); TS media playlist `max-age=max(1, floor(T/2))` = 1;
//! LL-HLS media playlist `max-age=1`; blocking reload `max-age=6xT` = 12; MPD `max-age=min(MUP, T/2)` = 1;
//! segments, parts and init `public, max-age=600, immutable` with a strong ETag; errors `no-store`,
//! except an unknown stream's 404 and an ended stream's 410 (`max-age=1`).

use std::io::Read;
use std::time::{Duration, SystemTime};

use cluster_tests::*;

const STREAM: &str = "demo";
const LIVE_DEADLINE: Duration = Duration::from_secs(15);
const MEDIA_DEADLINE: Duration = Duration::from_secs(25);

const TS_MASTER: &str = "/hls/demo/master.m3u8";
const TS_MEDIA: &str = "/hls/demo/source/index.m3u8";
const CMAF_MASTER: &str = "/cmaf/demo/master.m3u8";
const CMAF_VIDEO: &str = "/cmaf/demo/source/index.m3u8";
const CMAF_AUDIO: &str = "/cmaf/demo/audio/index.m3u8";
const MPD: &str = "/cmaf/demo/manifest.mpd";

const M3U8_TYPE: &str = "application/vnd.apple.mpegurl";
const MEDIA_CACHE: &str = "public, max-age=600, immutable";
/// A web player's origin, different from the node's.
const ORIGIN: &str = "https://player.example";

/// Starts a node, creates a key for `stream`, starts an ffmpeg publisher and waits for ACTIVE.
async fn start_live(opts: NodeOpts) -> (Node, Publisher) {
    let node = Node::start(opts).await;
    let key = node.create_key(STREAM).await;
    let publisher = Publisher::ffmpeg(&node.rtmp_url(&key.key), PublishOpts::default());
    node.wait_stream_state(STREAM, "ACTIVE", LIVE_DEADLINE)
        .await;
    (node, publisher)
}

/// `GET path` with extra request headers (reqwest here sends no Accept-Encoding of its own).
async fn get_with(node: &Node, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let url = format!("{}{path}", node.http_url());
    let mut req = node.http().get(&url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// A response header as text, if present.
fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().expect("ASCII header").to_owned())
}

/// Every `Vary` value, lowercased and split at commas.
fn vary(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all("vary")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or_default().split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Status and `Cache-Control` of `path` fetched with `headers`; also checks the CORS headers
/// every viewer answer carries, whatever its status.
async fn status_and_cache(node: &Node, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let r = get_with(node, path, headers).await;
    assert_cors(&r, path);
    let cache = header(&r, "cache-control").unwrap_or_default();
    (r.status().as_u16(), cache)
}

/// `Access-Control-Allow-Origin: *`, `Access-Control-Expose-Headers: Age, Date`, no `Vary: Origin`.
fn assert_cors(r: &reqwest::Response, what: &str) {
    assert_eq!(
        header(r, "access-control-allow-origin").as_deref(),
        Some("*"),
        "{what}: ACAO"
    );
    let exposed: Vec<String> = header(r, "access-control-expose-headers")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    assert!(
        exposed.contains(&"age".to_owned()) && exposed.contains(&"date".to_owned()),
        "{what}: Access-Control-Expose-Headers {exposed:?}"
    );
    assert!(
        !vary(r).contains(&"origin".to_owned()),
        "{what}: Vary {:?}",
        vary(r)
    );
}

/// A playlist answer: 200, its content type, `cache`, `Vary: Accept-Encoding`, a `Last-Modified` that
/// parses and is recent, CORS. Returns the body.
async fn assert_playlist(node: &Node, path: &str, content_type: &str, cache: &str) -> String {
    let r = get_with(node, path, &[("origin", ORIGIN)]).await;
    assert_eq!(r.status().as_u16(), 200, "{path}");
    assert_cors(&r, path);
    assert_eq!(
        header(&r, "content-type").as_deref(),
        Some(content_type),
        "{path}"
    );
    assert_eq!(
        header(&r, "cache-control").as_deref(),
        Some(cache),
        "{path}"
    );
    assert_eq!(vary(&r), ["accept-encoding"], "{path}: Vary");
    assert_eq!(header(&r, "content-encoding"), None, "{path}");
    let lm = header(&r, "last-modified").unwrap_or_else(|| panic!("{path}: no Last-Modified"));
    let at = httpdate::parse_http_date(&lm)
        .unwrap_or_else(|e| panic!("{path}: Last-Modified {lm:?}: {e}"));
    let now = SystemTime::now();
    assert!(
        at <= now + Duration::from_secs(1)
            && now.duration_since(at).unwrap_or_default() < Duration::from_secs(60),
        "{path}: Last-Modified {lm} is not the recent past"
    );
    r.text().await.expect("playlist body")
}

/// A media object answer: 200, its content type, `public, max-age=600, immutable`, the strong ETag
/// `"<file>-<length>"`, no Vary and no Content-Encoding even when gzip is offered, CORS; then 304 to
/// `If-None-Match` with that ETag.
async fn assert_media(node: &Node, path: &str, content_type: &str) {
    let r = get_with(
        node,
        path,
        &[("origin", ORIGIN), ("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(r.status().as_u16(), 200, "{path}");
    assert_cors(&r, path);
    assert_eq!(
        header(&r, "content-type").as_deref(),
        Some(content_type),
        "{path}"
    );
    assert_eq!(
        header(&r, "cache-control").as_deref(),
        Some(MEDIA_CACHE),
        "{path}"
    );
    assert_eq!(
        vary(&r),
        Vec::<String>::new(),
        "{path}: Vary on a media object"
    );
    assert_eq!(
        header(&r, "content-encoding"),
        None,
        "{path}: media objects are not compressed"
    );
    let etag = header(&r, "etag").unwrap_or_else(|| panic!("{path}: no ETag"));
    let body = r.bytes().await.expect("media body");
    assert!(!body.is_empty(), "{path}: empty");
    let file = path.rsplit('/').next().unwrap();
    assert_eq!(etag, format!("\"{file}-{}\"", body.len()), "{path}: ETag");

    let again = get_with(node, path, &[("if-none-match", &etag)]).await;
    assert_eq!(again.status().as_u16(), 304, "{path}: If-None-Match {etag}");
    assert_eq!(header(&again, "etag").as_deref(), Some(etag.as_str()));
    assert_eq!(
        header(&again, "cache-control").as_deref(),
        Some(MEDIA_CACHE),
        "{path}: 304"
    );
    assert!(again.bytes().await.unwrap().is_empty(), "{path}: 304 body");
    let other = get_with(node, path, &[("if-none-match", "\"other\"")]).await;
    assert_eq!(other.status().as_u16(), 200, "{path}: other ETag");
}

/// Fetches `path` with and without `Accept-Encoding: gzip` until two identity copies around the gzip
/// one are equal (a live playlist may change in between); then the decoded gzip body must be the same.
async fn assert_gzip_matches_identity(node: &Node, path: &str, cache: &str) {
    wait_until(
        &format!("{path}: a gzip copy between two equal identity copies"),
        Duration::from_secs(20),
        async || {
            let before = get_with(node, path, &[]).await.text().await.ok()?;
            let r = get_with(node, path, &[("accept-encoding", "gzip")]).await;
            assert_eq!(r.status().as_u16(), 200, "{path} gzip");
            assert_eq!(
                header(&r, "content-encoding").as_deref(),
                Some("gzip"),
                "{path}"
            );
            assert_eq!(vary(&r), ["accept-encoding"], "{path}: Vary (gzip)");
            assert_eq!(
                header(&r, "cache-control").as_deref(),
                Some(cache),
                "{path}: gzip"
            );
            assert_cors(&r, path);
            let zipped = r.bytes().await.ok()?;
            let mut decoded = String::new();
            flate2::read::GzDecoder::new(&zipped[..])
                .read_to_string(&mut decoded)
                .unwrap_or_else(|e| panic!("{path}: not gzip: {e}"));
            let after = get_with(node, path, &[]).await.text().await.ok()?;
            if before != after {
                return None;
            }
            assert_eq!(decoded, before, "{path}: gzip body differs from identity");
            Some(())
        },
    )
    .await;
}

/// The epoch in a media object name (`{epoch}-{msn}.m4s`, `{epoch}-{msn}.{part}.m4s`, `{epoch}-{msn}.ts`).
fn epoch_of(uri: &str) -> &str {
    uri.rsplit('/')
        .next()
        .and_then(|f| f.split('-').next())
        .expect("epoch-prefixed name")
}

/// Issue 9 §1: every kind of viewer object, at T = 2 s.
#[tokio::test]
async fn every_viewer_object_carries_its_cache_headers() {
    let (node, _publisher) = start_live(NodeOpts::default()).await;
    let ll = wait_until(
        "LL-HLS playlist with a segment",
        MEDIA_DEADLINE,
        async || {
            fetch_playlist(&node, CMAF_VIDEO)
                .await
                .filter(|p| !p.segments.is_empty() && !p.map_uris.is_empty())
        },
    )
    .await;
    let ts = wait_until("TS playlist with a segment", MEDIA_DEADLINE, async || {
        fetch_playlist(&node, TS_MEDIA)
            .await
            .filter(|p| !p.segments.is_empty())
    })
    .await;
    let audio = wait_until(
        "audio playlist with a segment",
        MEDIA_DEADLINE,
        async || {
            fetch_playlist(&node, CMAF_AUDIO)
                .await
                .filter(|p| !p.segments.is_empty() && !p.map_uris.is_empty())
        },
    )
    .await;
    wait_until("masters and MPD", MEDIA_DEADLINE, async || {
        node.get_ok_text(TS_MASTER).await?;
        node.get_ok_text(CMAF_MASTER).await?;
        node.get_ok_text(MPD).await
    })
    .await;

    // Playlists.
    // A master hands each viewer its session id in the media playlist URLs (analytics), so it is
    // the viewer's own: private (a browser may keep it, a shared cache may not).
    let master = assert_playlist(&node, TS_MASTER, M3U8_TYPE, "private, max-age=60").await;
    assert!(
        master
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .all(|l| l.contains("/index.m3u8?sid=")),
        "every media playlist URL carries the session:\n{master}"
    );
    let cmaf_master = assert_playlist(&node, CMAF_MASTER, M3U8_TYPE, "private, max-age=60").await;
    assert!(
        cmaf_master.contains("URI=\"audio/index.m3u8?sid="),
        "{cmaf_master}"
    );
    let again = assert_playlist(
        &node,
        &format!("{TS_MASTER}?sid=viewer-7"),
        M3U8_TYPE,
        "private, max-age=60",
    )
    .await;
    assert!(
        again.contains("/index.m3u8?sid=viewer-7\n"),
        "a given session id is kept:\n{again}"
    );
    assert_playlist(&node, TS_MEDIA, M3U8_TYPE, "max-age=1").await;
    assert_playlist(&node, CMAF_VIDEO, M3U8_TYPE, "max-age=1").await;
    assert_playlist(&node, CMAF_AUDIO, M3U8_TYPE, "max-age=1").await;
    let mpd = assert_playlist(&node, MPD, "application/dash+xml", "max-age=1").await;
    assert!(mpd.contains("minimumUpdatePeriod=\"PT2S\""), "{mpd}");
    // TS HLS has no delivery directives: a query changes nothing.
    let (status, cache) = status_and_cache(&node, &format!("{TS_MEDIA}?_HLS_msn=0"), &[]).await;
    assert_eq!(
        (status, cache.as_str()),
        (200, "max-age=1"),
        "TS with _HLS_msn"
    );

    // Blocking reloads: 6 x T. With `_HLS_part`, and with `_HLS_msn` alone (Safari's form).
    let fresh = fetch_playlist(&node, CMAF_VIDEO).await.expect("playlist");
    let (msn, part) = fresh.next_part();
    let blocking = format!("{CMAF_VIDEO}?_HLS_msn={msn}&_HLS_part={part}");
    let body = assert_playlist(&node, &blocking, M3U8_TYPE, "max-age=12").await;
    let answered = LlHlsPlaylist::parse(&body).unwrap();
    assert!(
        answered.has_part(msn, part) || answered.has_part(msn + 1, 0),
        "{blocking} answered without it:\n{body}"
    );
    let msn_only = format!("{CMAF_VIDEO}?_HLS_msn={}", answered.next_msn());
    assert_playlist(&node, &msn_only, M3U8_TYPE, "max-age=12").await;
    let with_skip = format!("{CMAF_VIDEO}?_HLS_msn={msn}&_HLS_part={part}&_HLS_skip=YES");
    assert_playlist(&node, &with_skip, M3U8_TYPE, "max-age=12").await;

    // gzip on request, for playlists only; the decoded body is the identity body.
    assert_gzip_matches_identity(&node, TS_MEDIA, "max-age=1").await;
    assert_gzip_matches_identity(&node, MPD, "max-age=1").await;
    assert_gzip_matches_identity(
        &node,
        &format!("{TS_MASTER}?sid=gz-1"),
        "private, max-age=60",
    )
    .await;
    let r = get_with(&node, CMAF_VIDEO, &[("accept-encoding", "gzip;q=0")]).await;
    assert_eq!(
        header(&r, "content-encoding"),
        None,
        "gzip;q=0 means not gzip"
    );

    // Media objects: segments, parts, init segments.
    let ts_seg = resolve(TS_MEDIA, &ts.segments.last().unwrap().uri);
    assert_media(&node, &ts_seg, "video/mp2t").await;
    let cmaf_seg = resolve(CMAF_VIDEO, &ll.segments.last().unwrap().uri);
    assert_media(&node, &cmaf_seg, "video/iso.segment").await;
    let part = resolve(CMAF_VIDEO, &ll.parts().last().expect("a part").uri);
    assert_media(&node, &part, "video/iso.segment").await;
    assert_media(&node, &resolve(CMAF_VIDEO, &ll.map_uris[0]), "video/mp4").await;
    assert_media(&node, &resolve(CMAF_AUDIO, &audio.map_uris[0]), "audio/mp4").await;
    let audio_seg = resolve(CMAF_AUDIO, &audio.segments.last().unwrap().uri);
    assert_media(&node, &audio_seg, "video/iso.segment").await;

    // A part far in the future (not the preload hint, so not waited for): 404 no-store.
    let epoch = epoch_of(&ll.segments[0].uri);
    let future = format!(
        "/cmaf/{STREAM}/source/{epoch}-{}.0.m4s",
        fresh.next_msn() + 1000
    );
    assert_eq!(
        status_and_cache(&node, &future, &[("origin", ORIGIN)]).await,
        (404, "no-store".to_owned()),
        "{future}"
    );
    let future_seg = format!(
        "/cmaf/{STREAM}/source/{epoch}-{}.m4s",
        fresh.next_msn() + 1000
    );
    assert_eq!(
        status_and_cache(&node, &future_seg, &[]).await,
        (404, "no-store".to_owned()),
        "{future_seg}"
    );

    // Bad queries: 400 no-store (the `_HLS_msn` far ahead is RFC 8216bis 6.2.5.2's 400 for playlists).
    for query in [
        "_HLS_part=1".to_owned(),
        "_HLS_msn=abc".to_owned(),
        format!("_HLS_msn={}&_HLS_part=0", fresh.next_msn() + 10),
    ] {
        let path = format!("{CMAF_VIDEO}?{query}");
        assert_eq!(
            status_and_cache(&node, &path, &[]).await,
            (400, "no-store".to_owned()),
            "{path}"
        );
    }
}

/// Issue 9 §1: errors that do not depend on a live stream, and CORS preflights.
#[tokio::test]
async fn unknown_streams_bad_requests_and_preflights() {
    let node = Node::start_default().await;
    // An unknown stream: 404 max-age=1 on every playlist and the MPD (absorbs polling storms).
    for path in [
        "/hls/nosuch/master.m3u8",
        "/hls/nosuch/source/index.m3u8",
        "/cmaf/nosuch/master.m3u8",
        "/cmaf/nosuch/source/index.m3u8",
        "/cmaf/nosuch/manifest.mpd",
    ] {
        assert_eq!(
            status_and_cache(&node, path, &[("origin", ORIGIN)]).await,
            (404, "max-age=1".to_owned()),
            "{path}"
        );
    }
    // A malformed stream name: 400 no-store.
    assert_eq!(
        status_and_cache(&node, "/hls/bad.name/master.m3u8", &[]).await,
        (400, "no-store".to_owned())
    );

    // A preflight as a web player sending CMCD headers makes it.
    let url = format!("{}{CMAF_MASTER}", node.http_url());
    let r = node
        .http()
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", ORIGIN)
        .header("access-control-request-method", "GET")
        .header(
            "access-control-request-headers",
            "cmcd-request,cmcd-object,cmcd-session",
        )
        .send()
        .await
        .expect("OPTIONS");
    assert!(r.status().is_success(), "preflight: {}", r.status());
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    let methods = header(&r, "access-control-allow-methods").unwrap_or_default();
    for m in ["GET", "HEAD", "OPTIONS"] {
        assert!(methods.contains(m), "Allow-Methods {methods:?}");
    }
    let allowed = header(&r, "access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for h in ["cmcd-request", "cmcd-object", "cmcd-session"] {
        assert!(allowed.contains(h), "Allow-Headers {allowed:?}");
    }
    assert!(vary(&r).is_empty(), "preflight Vary {:?}", vary(&r));
}

/// Issue 9 §1: during a publisher gap (ERROR) child playlists keep answering, and a blocking reload
/// answered only because no more media comes is not cached as a version; after the retention the
/// stream's 410 is `max-age=1`.
#[tokio::test]
async fn publisher_gap_keeps_playlists_and_ended_stream_is_410_max_age_1() {
    let opts = NodeOpts {
        ended_retention_ms: 3000,
        ..NodeOpts::default()
    };
    let (node, mut publisher) = start_live(opts).await;
    let before = wait_until(
        "LL-HLS playlist with a segment",
        MEDIA_DEADLINE,
        async || {
            fetch_playlist(&node, CMAF_VIDEO)
                .await
                .filter(|p| !p.segments.is_empty())
        },
    )
    .await;
    publisher.kill();
    node.wait_stream_state(STREAM, "ERROR", Duration::from_secs(10))
        .await;

    // Still answering (Safari does not retry a 404 on a child playlist), at the live values, once the
    // session is marked stopped (no more PRELOAD-HINT: no part will come), and open (no ENDLIST: a
    // failed session is not a clean end; the next session continues these URLs).
    wait_until(
        "the LL-HLS playlist to drop its preload hint",
        Duration::from_secs(10),
        async || {
            fetch_playlist(&node, CMAF_VIDEO)
                .await
                .filter(|p| p.preload_hints.is_empty())
        },
    )
    .await;
    for path in [CMAF_VIDEO, TS_MEDIA] {
        assert_eq!(
            status_and_cache(&node, path, &[]).await,
            (200, "max-age=1".to_owned()),
            "{path} during the gap"
        );
        let p = fetch_playlist(&node, path)
            .await
            .expect("playlist during the gap");
        assert!(!p.endlist, "{path}: ENDLIST after a dropped publisher");
    }
    // The media sequence continues in the next session under this URL: an answer for a part that will
    // not come in this session must not be cached for 6 x T.
    let (msn, part) = before.next_part();
    let far_part = format!("{CMAF_VIDEO}?_HLS_msn={}&_HLS_part={part}", msn + 1);
    let (status, cache) = status_and_cache(&node, &far_part, &[]).await;
    assert_eq!((status, cache.as_str()), (200, "max-age=1"), "{far_part}");

    for path in [TS_MASTER, CMAF_VIDEO, MPD] {
        let cache = wait_until(
            &format!("{path} to answer 410"),
            Duration::from_secs(20),
            async || {
                let (status, cache) = status_and_cache(&node, path, &[]).await;
                (status == 410).then_some(cache)
            },
        )
        .await;
        assert_eq!(cache, "max-age=1", "{path}");
    }
}

/// Issue 9 §1: `_HLS_msn` without `_HLS_part` (Safari) is a blocking reload that waits for part 0
/// of segment M, not for the whole segment: the answer lists M's first part while M is still in
/// progress.
#[tokio::test]
async fn hls_msn_alone_waits_for_part_zero() {
    let (node, _publisher) = start_live(NodeOpts::default()).await;
    let p = wait_until(
        "LL-HLS playlist with a segment",
        MEDIA_DEADLINE,
        async || {
            fetch_playlist(&node, CMAF_VIDEO)
                .await
                .filter(|p| !p.segments.is_empty() && !p.trailing_parts.is_empty())
        },
    )
    .await;
    // The segment after the one in progress.
    let m = p.trailing_parts[0].msn + 1;
    let (code, body) = node.get_text(&format!("{CMAF_VIDEO}?_HLS_msn={m}")).await;
    assert_eq!(code, 200, "{body}");
    let answer = LlHlsPlaylist::parse(&body).expect("playlist");
    assert!(
        answer
            .trailing_parts
            .iter()
            .any(|x| x.msn == m && x.index == 0),
        "part 0 of {m} listed: {body}"
    );
    assert!(
        answer.segments.iter().all(|s| s.msn < m),
        "answered only when segment {m} was complete (a whole segment late): {body}"
    );
}
