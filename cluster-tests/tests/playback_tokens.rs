//! Signed playback URLs (issue 9 §6): a stream listed in `playback.protected_streams` plays only
//! with a token from `hivecast token create` (or `POST /v1/playback-tokens`); the token given on
//! the multivariant playlist or the MPD survives every follow-up request (media playlists, parts,
//! segments, init) through the `~{token}` path segment, checked here by real players (ffprobe on
//! HLS, LL-HLS and DASH) and by following every URL by hand; missing, forged, foreign and expired
//! tokens get 403 JSON that no cache keeps.

use std::time::Duration;

use cluster_tests::*;
use serde_json::Value;

const STREAM: &str = "priv-a";
const LIVE_DEADLINE: Duration = Duration::from_secs(15);
const MEDIA_DEADLINE: Duration = Duration::from_secs(25);

/// `GET path` on the node: status, `Cache-Control`, body.
async fn fetch(node: &Node, path: &str) -> (u16, String, String) {
    let resp = node.get(path).await;
    let status = resp.status().as_u16();
    let cache = resp
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, cache, resp.text().await.unwrap_or_default())
}

/// A 403 with `code` in its JSON body and `no-store`.
async fn assert_refused(node: &Node, path: &str, code: &str) {
    let (status, cache, body) = fetch(node, path).await;
    assert_eq!(status, 403, "{path}: {body}");
    assert_eq!(cache, "no-store", "{path}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    assert_eq!(v["error"], code, "{path}: {body}");
}

/// The URI lines and `URI="..."` attributes of a playlist.
fn uris(playlist: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in playlist.lines() {
        if line.starts_with('#') {
            let mut rest = line;
            while let Some(i) = rest.find("URI=\"") {
                let tail = &rest[i + 5..];
                let end = tail.find('"').unwrap_or(tail.len());
                out.push(tail[..end].to_owned());
                rest = &tail[end..];
            }
        } else if !line.is_empty() {
            out.push(line.to_owned());
        }
    }
    out
}

/// `base` (a path ending in `/`) joined with a relative `uri`, `..` resolved.
fn resolve(base: &str, uri: &str) -> String {
    let mut parts: Vec<&str> = base.trim_end_matches('/').split('/').collect();
    for seg in uri.split('/') {
        match seg {
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

async fn create_token(node: &Node, stream: &str, ttl: &str) -> Value {
    let url = node.http_url();
    let (status, out, err) = node
        .cli(&[
            "token", "create", "--stream", stream, "--ttl", ttl, "--url", &url,
        ])
        .await;
    assert!(status.success(), "token create: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("token create printed {out:?}: {e}"))
}

#[tokio::test]
async fn a_protected_stream_plays_only_with_a_token_that_follows_every_request() {
    let node = Node::start(NodeOpts {
        extra_toml: "[playback]\nprotected_streams = [\"priv-*\"]\n".into(),
        ..NodeOpts::default()
    })
    .await;
    let key = node.create_key(STREAM).await;
    let _publisher = Publisher::ffmpeg(&node.rtmp_url(&key.key), PublishOpts::default());
    node.wait_stream_state(STREAM, "ACTIVE", LIVE_DEADLINE)
        .await;

    // Without a token nothing of the stream is served, whatever the path.
    for path in [
        "/cmaf/priv-a/master.m3u8",
        "/hls/priv-a/master.m3u8",
        "/cmaf/priv-a/manifest.mpd",
        "/cmaf/priv-a/source/index.m3u8",
        "/hls/priv-a/source/index.m3u8",
        "/cmaf/priv-a/source/init-1.mp4",
    ] {
        assert_refused(&node, path, "token_required").await;
    }

    let created = create_token(&node, STREAM, "1h").await;
    let token = created["token"].as_str().expect("token").to_owned();
    assert_eq!(created["protected"], true);
    assert_eq!(
        created["urls"]["ll_hls"],
        format!("/cmaf/priv-a/master.m3u8?token={token}")
    );
    // Tokens made within one expiry step are one string (one CDN copy for all their viewers).
    let again = create_token(&node, STREAM, "1h").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expires = created["expires_at"].as_u64().unwrap();
    assert!(
        expires >= now + 3600 && expires <= now + 3600 + 300,
        "{created}"
    );
    if again["expires_at"] == created["expires_at"] {
        assert_eq!(again["token"], created["token"]);
    }

    // The master hands out children under ~{token}/; following every URL by hand works.
    let master_path = format!("/cmaf/priv-a/master.m3u8?token={token}");
    let master = wait_until(
        "the protected master with a token",
        MEDIA_DEADLINE,
        async || {
            let (s, _, body) = fetch(&node, &master_path).await;
            (s == 200).then_some(body)
        },
    )
    .await;
    let children = uris(&master);
    assert!(!children.is_empty(), "{master}");
    for c in &children {
        assert!(c.starts_with(&format!("~{token}/")), "{c} in\n{master}");
    }
    let video = resolve(
        "/cmaf/priv-a/",
        children.iter().find(|c| c.contains("source")).unwrap(),
    );
    let video = video.split('?').next().unwrap().to_owned();
    let (s, _, media) = fetch(&node, &video).await;
    assert_eq!(s, 200, "{video}: {media}");
    let dir = format!("{}/", video.rsplit_once('/').unwrap().0);
    let objects = uris(&media);
    assert!(
        objects.iter().any(|u| u.contains("init-")) && objects.iter().any(|u| u.ends_with(".m4s")),
        "{media}"
    );
    for u in objects
        .iter()
        .filter(|u| !u.contains("index.m3u8"))
        .take(12)
    {
        let path = resolve(&dir, u);
        assert!(path.contains(&format!("/~{token}/")), "{path}");
        let resp = node.get(&path).await;
        assert_eq!(resp.status().as_u16(), 200, "{path}");
    }
    // Rendition reports resolve under the token too.
    for u in objects.iter().filter(|u| u.contains("index.m3u8")) {
        let path = resolve(&dir, u);
        assert!(
            path.starts_with(&format!("/cmaf/priv-a/~{token}/")),
            "{path}"
        );
    }

    // Real players: each is given only the top-level URL with the token.
    let base = node.http_url();
    for (url, format) in [
        (
            format!("{base}/cmaf/priv-a/master.m3u8?token={token}"),
            "hls",
        ),
        (
            format!("{base}/hls/priv-a/master.m3u8?token={token}"),
            "hls",
        ),
        (
            format!("{base}/cmaf/priv-a/manifest.mpd?token={token}"),
            "dash",
        ),
    ] {
        let info = ffprobe_ok(&url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e:#}"));
        assert_eq!(info.format_name, format, "{url}");
        assert_eq!(
            info.video().map(|v| v.codec_name.as_str()),
            Some("h264"),
            "{url}"
        );
    }
    let (s, _, mpd) = fetch(&node, &format!("/cmaf/priv-a/manifest.mpd?token={token}")).await;
    assert_eq!(s, 200);
    assert!(
        mpd.contains(&format!("<BaseURL>~{token}/</BaseURL>")),
        "{mpd}"
    );

    // Forged, foreign and malformed tokens: 403 on the master and on every child path.
    let (exp, mac) = token.split_once('.').unwrap();
    let flipped = format!(
        "{exp}.{}{}",
        &mac[..mac.len() - 1],
        if mac.ends_with('0') { '1' } else { '0' }
    );
    let later = format!("{}.{mac}", exp.parse::<u64>().unwrap() + 3600);
    let other = create_token(&node, "priv-b", "1h").await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for bad in [&flipped, &later, &other] {
        assert_refused(
            &node,
            &format!("/cmaf/priv-a/master.m3u8?token={bad}"),
            "token_invalid",
        )
        .await;
        assert_refused(
            &node,
            &video.replace(&format!("~{token}"), &format!("~{bad}")),
            "token_invalid",
        )
        .await;
    }
    assert_refused(&node, "/hls/priv-a/master.m3u8?token=xyz", "token_invalid").await;

    // An expired token stops working (a 1 s token expires within about 2 s).
    let short = create_token(&node, STREAM, "1s").await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let short_video = video.replace(&format!("~{token}"), &format!("~{short}"));
    wait_until(
        "the 1 s token to expire",
        Duration::from_secs(5),
        async || {
            let (s, _, body) = fetch(&node, &short_video).await;
            (s == 403 && body.contains("token_expired")).then_some(())
        },
    )
    .await;
    assert_refused(
        &node,
        &format!("/cmaf/priv-a/master.m3u8?token={short}"),
        "token_expired",
    )
    .await;

    // Streams not listed need no token and get none in their URLs.
    let open = node.create_key("open").await;
    let _open_pub = Publisher::ffmpeg(&node.rtmp_url(&open.key), PublishOpts::default());
    node.wait_stream_state("open", "ACTIVE", LIVE_DEADLINE)
        .await;
    let open_master = wait_until("the open stream's master", MEDIA_DEADLINE, async || {
        let (s, _, body) = fetch(&node, "/cmaf/open/master.m3u8").await;
        (s == 200).then_some(body)
    })
    .await;
    assert!(!open_master.contains('~'), "{open_master}");
}

/// With `cdn.base_url` (given with a trailing slash, which the node drops), the multivariant playlist, the MPD and `/v1/route` point at the CDN,
/// a protected stream's children keep the token under the CDN's URL, and masters carry no
/// per-viewer `?sid=` (it would defeat the CDN's request collapsing).
#[tokio::test]
async fn behind_a_cdn_urls_are_absolute_and_keep_the_token() {
    const CDN: &str = "https://cdn.example.com";
    let node = Node::start(NodeOpts {
        extra_toml: format!(
            "[cdn]\nbase_url = \"{CDN}/\"\n[playback]\nprotected_streams = [\"priv-a\"]\n"
        ),
        ..NodeOpts::default()
    })
    .await;
    let mut publishers = Vec::new();
    for stream in [STREAM, "open"] {
        let key = node.create_key(stream).await;
        publishers.push(Publisher::ffmpeg(
            &node.rtmp_url(&key.key),
            PublishOpts::default(),
        ));
    }
    node.wait_stream_state(STREAM, "ACTIVE", LIVE_DEADLINE)
        .await;
    node.wait_stream_state("open", "ACTIVE", LIVE_DEADLINE)
        .await;

    // An open stream: absolute URLs everywhere, the same for every viewer.
    let master = wait_until("the open master", MEDIA_DEADLINE, async || {
        let (s, _, body) = fetch(&node, "/cmaf/open/master.m3u8").await;
        (s == 200).then_some(body)
    })
    .await;
    for u in uris(&master) {
        assert!(u.starts_with(&format!("{CDN}/cmaf/open/")), "{u}");
        assert!(!u.contains("sid="), "{u}");
    }
    let media = wait_until("the open media playlist", MEDIA_DEADLINE, async || {
        let (s, _, body) = fetch(&node, "/cmaf/open/source/index.m3u8").await;
        (s == 200).then_some(body)
    })
    .await;
    for u in uris(&media) {
        assert!(u.starts_with(&format!("{CDN}/cmaf/open/")), "{u}");
    }
    let mpd = wait_until("the open MPD", MEDIA_DEADLINE, async || {
        let (s, _, body) = fetch(&node, "/cmaf/open/manifest.mpd").await;
        (s == 200).then_some(body)
    })
    .await;
    assert!(
        mpd.contains(&format!("<BaseURL>{CDN}/cmaf/open/</BaseURL>")),
        "{mpd}"
    );
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/v1/route/open", node.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers().get("location").and_then(|v| v.to_str().ok()),
        Some(format!("{CDN}/cmaf/open/master.m3u8").as_str())
    );

    // A protected stream: the master's children are the CDN's URLs with the token's directory;
    // the media playlists below stay relative so that every object inherits it.
    let created = create_token(&node, STREAM, "10m").await;
    let token = created["token"].as_str().unwrap().to_owned();
    assert_eq!(
        created["urls"]["dash"],
        format!("{CDN}/cmaf/priv-a/manifest.mpd?token={token}")
    );
    let master = wait_until("the protected master", MEDIA_DEADLINE, async || {
        let (s, _, body) = fetch(&node, &format!("/hls/priv-a/master.m3u8?token={token}")).await;
        (s == 200).then_some(body)
    })
    .await;
    for u in uris(&master) {
        assert!(u.starts_with(&format!("{CDN}/hls/priv-a/~{token}/")), "{u}");
    }
    let (s, _, media) = fetch(&node, &format!("/hls/priv-a/~{token}/source/index.m3u8")).await;
    assert_eq!(s, 200, "{media}");
    for u in uris(&media) {
        assert!(!u.contains("://") && u.ends_with(".ts"), "{u}");
    }
    let mpd = wait_until("the protected MPD", MEDIA_DEADLINE, async || {
        let (s, _, body) = fetch(&node, &format!("/cmaf/priv-a/manifest.mpd?token={token}")).await;
        (s == 200).then_some(body)
    })
    .await;
    assert!(
        mpd.contains(&format!("<BaseURL>{CDN}/cmaf/priv-a/~{token}/</BaseURL>")),
        "{mpd}"
    );
}
