//! HTTP caching of the viewer routes: the one place that decides `Cache-Control`, `ETag`,
//! `Last-Modified`, `Vary`, gzip and the CORS headers for each kind of object a player or a CDN
//! fetches. `docs/CACHING.md` tabulates the result with the source of every value; the values
//! come from the `[cache]` config section ([`CacheSection`]) and the stream's segment target T.
//!
//! - Media objects (segments, parts, init segments) are `public, max-age=600, immutable` with a
//!   strong `ETag`, and a matching `If-None-Match` gets 304. Safe because a media object's name
//!   carries the publish session's epoch and its sequence number, and neither ever repeats under
//!   one stream: the bytes behind a URL never change.
//! - Playlists get a lifetime that matches how fast they change ([`Kind`], [`max_age`]),
//!   `Last-Modified`, and `Vary: Accept-Encoding`: [`playlist`] answers gzip when the request's
//!   `Accept-Encoding` takes it ([`accepts_gzip`]). A media playlist's gzip form is computed once
//!   per version and shared by every request of it ([`PlaylistVersion::gzip`]); a master
//!   playlist or MPD, rendered per request, is compressed per request. Media objects are never
//!   compressed and never carry `Vary`.
//! - Errors are `no-store` ([`super::error::ApiError`]) except the 404 of an unknown stream and
//!   the 410 of an ended one ([`unknown_stream`]), which absorb polling storms for a second.
//! - CORS ([`cors_layer`]): a constant `Access-Control-Allow-Origin` (so no `Vary: Origin`) and
//!   `Access-Control-Expose-Headers: Age, Date` on every viewer response.
//!
//! Not here: which object a URL names (`playback.rs`), the wait of a blocking reload, and 304s
//! on playlists: `Last-Modified` has a resolution of one second and an LL-HLS playlist changes
//! every part, so `If-Modified-Since` is ignored and playlists always answer 200.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hivecast_actors::store::PlaylistVersion;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use crate::config::CacheSection;

/// Content-Type of HLS playlists (RFC 8216bis 4: `application/vnd.apple.mpegurl`).
pub const M3U8: &str = "application/vnd.apple.mpegurl";
/// Content-Type of the DASH MPD (ISO/IEC 23009-1 Annex C).
pub const MPD: &str = "application/dash+xml";
/// Content-Type of MPEG-TS segments (RFC 8216bis 3.2).
pub const TS: &str = "video/mp2t";
/// Content-Type of CMAF segments and parts (the IANA `video/iso.segment` registration, as
/// RFC 8216bis 3.3 and DASH-IF IOP use it for fragments without a `moov`).
pub const CMAF_SEGMENT: &str = "video/iso.segment";
/// Content-Type of a video track's CMAF init segment (ISO/IEC 14496-12 `ftyp`+`moov`).
pub const INIT_VIDEO: &str = "video/mp4";
/// Content-Type of the audio track's CMAF init segment (RFC 4337).
pub const INIT_AUDIO: &str = "audio/mp4";

/// What is being served, for its `Cache-Control`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A segment, part or init segment: its name is never reused.
    Media,
    /// A multivariant (master) playlist.
    Multivariant,
    /// A live MPEG-TS HLS media playlist: a new segment every T.
    TsPlaylist,
    /// An LL-HLS media playlist without a blocking directive: changes every part.
    LlPlaylist,
    /// An LL-HLS media playlist answering a blocking reload (`_HLS_msn`, with or without
    /// `_HLS_part` and `_HLS_skip`) that it satisfies: the URL names one playlist version.
    BlockingReload,
    /// The DASH MPD, whose `@minimumUpdatePeriod` is `update_period`.
    Mpd {
        /// The MPD's `@minimumUpdatePeriod`.
        update_period: Duration,
    },
}

/// `max-age` in seconds of `kind`, for a stream whose segment target is `target` (T).
///
/// - TS media playlist: `max(1, floor(T/2))`. Apple's 1 minute for playlists would freeze a live
///   playlist at a CDN; a player reloads about every T (RFC 8216bis 6.3.4), and half of it keeps
///   a cached copy at most half a segment behind while a CDN still absorbs every reload burst.
/// - LL-HLS media playlist without directives: `cache.ll_playlist_max_age_s` (1 s): a player
///   without blocking reloads polls; a cache may only absorb simultaneous requests.
/// - Blocking reload: `cache.blocking_reload_targets` x T (12 s at T = 2 s), floored. The media
///   sequence number never restarts under one playlist URL (a new session continues it), so
///   `?_HLS_msn=M&_HLS_part=N` only ever means "the playlist once it has M.N": any copy a cache
///   holds answers it, and keeping it while players still ask for it (a few targets) is what
///   lets a CDN collapse them.
/// - MPD: `max(1, floor(min(minimumUpdatePeriod, T/2)))`: clients refetch it every
///   `minimumUpdatePeriod`; longer would hide a stream's end or restart.
pub fn max_age(cfg: &CacheSection, kind: Kind, target: Duration) -> u64 {
    let t_ms = target.as_millis().min(u128::from(u64::MAX)) as u64;
    match kind {
        Kind::Media => cfg.media_max_age_s,
        Kind::Multivariant => cfg.multivariant_max_age_s,
        Kind::TsPlaylist => (t_ms / 2_000).max(1),
        Kind::LlPlaylist => cfg.ll_playlist_max_age_s,
        Kind::BlockingReload => u64::from(cfg.blocking_reload_targets).saturating_mul(t_ms) / 1_000,
        Kind::Mpd { update_period } => {
            let mup_ms = update_period.as_millis().min(u128::from(u64::MAX)) as u64;
            (mup_ms.min(t_ms / 2) / 1_000).max(1)
        }
    }
}

/// The `Cache-Control` value of `kind` (see [`max_age`]).
pub fn cache_control(cfg: &CacheSection, kind: Kind, target: Duration) -> String {
    let age = max_age(cfg, kind, target);
    match kind {
        // RFC 8246: `immutable` tells browsers not to revalidate on reload; `public` lets shared
        // caches store it whatever the request carried.
        Kind::Media => format!("public, max-age={age}, immutable"),
        _ => format!("max-age={age}"),
    }
}

/// `Cache-Control` of the 404 for a stream this node does not know and of the 410 for an ended
/// one: `max-age=cache.unknown_stream_max_age_s` (1 s). Players and pages poll such a URL until
/// the stream (re)starts; one second of caching turns a storm into one origin request per
/// second per edge, and delays a new publish by at most that second.
pub fn unknown_stream(cfg: &CacheSection) -> HeaderValue {
    header_value(format!("max-age={}", cfg.unknown_stream_max_age_s))
}

/// A 200 with a playlist (`content_type` [`M3U8`] or [`MPD`]): `Cache-Control` of `kind`,
/// `Last-Modified` = the version's `modified_ms` (when the playlist last changed; 0 or less:
/// now), `Vary: Accept-Encoding` whether or not this answer is compressed (so a cache keeps the
/// two forms apart), and, when the request [`accepts_gzip`], the version's gzip form with
/// `Content-Encoding: gzip`.
///
/// A media playlist passes the track's current version, whose gzip form is computed by the
/// first request that wants it and shared by every later one; a master playlist or MPD passes
/// a version made for this request (compressed at most once, for this answer).
pub fn playlist(
    cfg: &CacheSection,
    request: &HeaderMap,
    kind: Kind,
    target: Duration,
    content_type: &'static str,
    version: &PlaylistVersion,
) -> Response {
    let modified = u64::try_from(version.modified_ms())
        .ok()
        .filter(|&ms| ms > 0)
        .map_or_else(SystemTime::now, |ms| UNIX_EPOCH + Duration::from_millis(ms));
    let gzip = accepts_gzip(request).then(|| version.gzip()).flatten();
    let body = gzip.unwrap_or(version.body()).clone();
    let mut response = (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                header_value(cache_control(cfg, kind, target)),
            ),
            (
                header::LAST_MODIFIED,
                header_value(httpdate::fmt_http_date(modified)),
            ),
            (header::VARY, HeaderValue::from_static("accept-encoding")),
        ],
        body,
    )
        .into_response();
    if gzip.is_some() {
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// Mark a response as one viewer's own (`private`): browsers may keep it for its `max-age`,
/// shared caches (CDNs) may not. Used for master playlists that carry the viewer's session id.
pub fn make_private(response: &mut Response) {
    let cc = response
        .headers()
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("no-cache")
        .to_owned();
    if !cc.contains("private") {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            header_value(format!("private, {cc}")),
        );
    }
}

/// Whether the request's `Accept-Encoding` (RFC 9110 12.5.3) takes gzip: `gzip` (or its alias
/// `x-gzip`) with a weight above 0, or, when neither is listed, `*` with a weight above 0. An
/// explicit `gzip;q=0` wins over `*`. No header, an empty one, or codings without gzip or `*`
/// (`identity` alone, `br`): the plain form. An element whose weight does not parse is ignored.
/// gzip is preferred whenever it is acceptable, whatever weight `identity` has (as tower-http's
/// compression did).
pub fn accepts_gzip(request: &HeaderMap) -> bool {
    let mut gzip: Option<f32> = None;
    let mut any: Option<f32> = None;
    let elements = request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    for element in elements {
        let mut parts = element.split(';');
        let coding = parts.next().unwrap_or_default().trim();
        let Some(q) = weight(parts) else {
            continue;
        };
        let slot = if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            &mut gzip
        } else if coding == "*" {
            &mut any
        } else {
            continue;
        };
        // Listed twice: the more favourable weight.
        *slot = Some(slot.map_or(q, |w| w.max(q)));
    }
    gzip.or(any).is_some_and(|q| q > 0.0)
}

/// The weight (`q`, RFC 9110 12.4.2) among an `Accept-Encoding` element's parameters: 1 when
/// absent, `None` when malformed (not digits and a dot, or above 1).
fn weight<'a>(params: impl Iterator<Item = &'a str>) -> Option<f32> {
    for param in params {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("q") {
            continue;
        }
        let value = value.trim();
        let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        return value
            .parse::<f32>()
            .ok()
            .filter(|q| digits && (0.0..=1.0).contains(q));
    }
    Some(1.0)
}

/// A media object (segment, part, init) named `file`: 200 with `public, max-age, immutable` and
/// a strong `ETag`, or 304 when the request's `If-None-Match` already names that `ETag`.
///
/// The `ETag` is `"<file>-<byte length>"`. A strong validator must change whenever the bytes
/// do (RFC 9110 8.8.1); here the bytes behind a name never change, because the name carries
/// the session's epoch and sequence number and neither repeats under one stream, so the name
/// alone would do; the length is added as a cheap guard. Validators are scoped to their URL, so
/// two renditions sharing a file name do not collide.
///
/// Never compressed, whatever `Accept-Encoding` says, and no `Vary`: segments and parts are
/// already compressed media (gzip would cost CPU for nothing), and a `Vary` on them would split
/// every CDN's cache of the heaviest objects by client.
pub fn media(
    cfg: &CacheSection,
    request: &HeaderMap,
    file: &str,
    content_type: &'static str,
    body: Bytes,
) -> Response {
    let etag = format!("\"{file}-{}\"", body.len());
    let cache = header_value(cache_control(cfg, Kind::Media, Duration::ZERO));
    let etag_value = header_value(etag.clone());
    if if_none_match(request, &etag) {
        // RFC 9110 15.4.5: a 304 carries the ETag and Cache-Control the 200 would have.
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag_value), (header::CACHE_CONTROL, cache)],
        )
            .into_response();
    }
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, cache),
            (header::ETAG, etag_value),
        ],
        body,
    )
        .into_response()
}

/// Whether `If-None-Match` lists `etag` or is `*` (RFC 9110 13.1.2: weak comparison, so a
/// `W/` prefix a cache may have added still matches).
fn if_none_match(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// CORS of the viewer routes: `Access-Control-Allow-Origin: cache.allow_origin` on every answer
/// (a constant, so nothing varies by `Origin` and no `Vary: Origin` splits CDN caches),
/// `Access-Control-Expose-Headers: Age, Date` so a web player on another origin can read how
/// old a cached playlist is (hls.js and dash.js use them for live-edge estimates), and
/// preflights (`OPTIONS`) for `GET`/`HEAD` that allow any request header, since players send
/// CMCD as `CMCD-*` headers (CTA-5004).
pub fn cors_layer(cfg: &CacheSection) -> CorsLayer {
    let origin = if cfg.allow_origin == "*" {
        AllowOrigin::any()
    } else {
        AllowOrigin::exact(header_value(cfg.allow_origin.clone()))
    };
    CorsLayer::new()
        .allow_origin(origin)
        .allow_methods([Method::GET, Method::HEAD, Method::OPTIONS])
        // Mirrored rather than `*`: `*` does not cover `Authorization`, and older Safari
        // ignores it. Preflights are not cached by HTTP caches (OPTIONS), so no Vary is needed.
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers([header::AGE, header::DATE])
        .vary(Vec::<HeaderName>::new())
}

/// What [`cors_layer`] adds to the answer of a `GET` that is not a preflight, for the viewer
/// media answered without the router ([`super::playback::fast_media`]): the same
/// `Access-Control-Allow-Origin` (whether or not the request has an `Origin`) and
/// `Access-Control-Expose-Headers`. Test: `cors_headers_match_the_layer`.
pub fn cors_headers(cfg: &CacheSection, headers: &mut HeaderMap) {
    let origin = if cfg.allow_origin == "*" {
        HeaderValue::from_static("*")
    } else {
        header_value(cfg.allow_origin.clone())
    };
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("age,date"),
    );
}

/// Whether `s` can be `cache.allow_origin`: `*` or one serialized origin
/// (`scheme://host[:port]`, RFC 6454 6.2), which is a valid header value by construction.
pub fn valid_allow_origin(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    // `[v6]:port`, `host:port`, or either without the port.
    let (host_ok, port) = match rest.strip_prefix('[') {
        Some(v6) => {
            let Some((addr, after)) = v6.split_once(']') else {
                return false;
            };
            let ok = !addr.is_empty() && addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
            match after {
                "" => (ok, None),
                _ => (ok, Some(after.strip_prefix(':').unwrap_or(after))),
            }
        }
        None => {
            let (host, port) = match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            };
            let ok = !host.is_empty()
                && host.len() <= 253
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'));
            (ok, port)
        }
    };
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u16>().is_ok()
    });
    scheme_ok && host_ok && port_ok
}

/// A header value from text this module built (numbers, quoted file names, HTTP dates, a
/// validated origin); never fails on those, and degrades to an empty value otherwise.
fn header_value(s: String) -> HeaderValue {
    HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> CacheSection {
        crate::config::Config::load(None).unwrap().cache
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn defaults_at_t_2s() {
        let c = cfg();
        let t = secs(2);
        assert_eq!(
            cache_control(&c, Kind::Media, t),
            "public, max-age=600, immutable"
        );
        assert_eq!(cache_control(&c, Kind::Multivariant, t), "max-age=60");
        assert_eq!(cache_control(&c, Kind::TsPlaylist, t), "max-age=1");
        assert_eq!(cache_control(&c, Kind::LlPlaylist, t), "max-age=1");
        assert_eq!(cache_control(&c, Kind::BlockingReload, t), "max-age=12");
        // The MPD's minimumUpdatePeriod is T: min(2, 1) = 1.
        let mpd = Kind::Mpd { update_period: t };
        assert_eq!(cache_control(&c, mpd, t), "max-age=1");
    }

    #[test]
    fn defaults_at_t_6s() {
        let c = cfg();
        let t = secs(6);
        assert_eq!(max_age(&c, Kind::TsPlaylist, t), 3);
        assert_eq!(max_age(&c, Kind::LlPlaylist, t), 1);
        assert_eq!(max_age(&c, Kind::BlockingReload, t), 36);
        assert_eq!(max_age(&c, Kind::Mpd { update_period: t }, t), 3);
        // A shorter minimumUpdatePeriod wins over T/2.
        let short = Kind::Mpd {
            update_period: secs(2),
        };
        assert_eq!(max_age(&c, short, t), 2);
        assert_eq!(max_age(&c, Kind::Media, t), 600);
        assert_eq!(max_age(&c, Kind::Multivariant, t), 60);
    }

    #[test]
    fn fractions_round_down_and_never_reach_zero() {
        let c = cfg();
        let t = Duration::from_millis(2_500);
        assert_eq!(max_age(&c, Kind::TsPlaylist, t), 1);
        assert_eq!(max_age(&c, Kind::BlockingReload, t), 15);
        assert_eq!(max_age(&c, Kind::Mpd { update_period: t }, t), 1);
        let tiny = Duration::from_millis(500);
        assert_eq!(max_age(&c, Kind::TsPlaylist, tiny), 1);
        assert_eq!(
            max_age(
                &c,
                Kind::Mpd {
                    update_period: tiny
                },
                tiny
            ),
            1
        );
        assert_eq!(max_age(&c, Kind::BlockingReload, tiny), 3);
        let t7 = Duration::from_millis(7_000);
        assert_eq!(max_age(&c, Kind::TsPlaylist, t7), 3);
    }

    #[test]
    fn configured_values_are_used() {
        let mut c = cfg();
        c.media_max_age_s = 86_400;
        c.multivariant_max_age_s = 5;
        c.ll_playlist_max_age_s = 0;
        c.blocking_reload_targets = 3;
        c.unknown_stream_max_age_s = 2;
        let t = secs(2);
        assert_eq!(
            cache_control(&c, Kind::Media, t),
            "public, max-age=86400, immutable"
        );
        assert_eq!(max_age(&c, Kind::Multivariant, t), 5);
        assert_eq!(max_age(&c, Kind::LlPlaylist, t), 0);
        assert_eq!(max_age(&c, Kind::BlockingReload, t), 6);
        assert_eq!(unknown_stream(&c), "max-age=2");
    }

    #[test]
    fn media_answers_304_to_its_etag() {
        let c = cfg();
        let body = Bytes::from_static(b"0123456789");
        let r = media(&c, &HeaderMap::new(), "3-7.m4s", CMAF_SEGMENT, body.clone());
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::ETAG], "\"3-7.m4s-10\"");
        assert_eq!(r.headers()[header::CONTENT_TYPE], CMAF_SEGMENT);
        assert!(r.headers().get(header::VARY).is_none());
        for inm in [
            "\"3-7.m4s-10\"",
            "W/\"3-7.m4s-10\"",
            "\"x\", \"3-7.m4s-10\"",
            "*",
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_static(inm));
            let r = media(&c, &h, "3-7.m4s", CMAF_SEGMENT, body.clone());
            assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "{inm}");
            assert_eq!(r.headers()[header::ETAG], "\"3-7.m4s-10\"");
            assert_eq!(
                r.headers()[header::CACHE_CONTROL],
                "public, max-age=600, immutable"
            );
        }
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"3-8.m4s-10\""),
        );
        assert_eq!(
            media(&c, &h, "3-7.m4s", CMAF_SEGMENT, body).status(),
            StatusCode::OK
        );
    }

    fn accept(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    async fn body(r: Response) -> Bytes {
        axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .expect("body")
    }

    #[test]
    fn accept_encoding_negotiation() {
        for yes in [
            "gzip",
            "GZip",
            "x-gzip",
            "gzip, deflate, br",
            "br;q=1.0, gzip;q=0.8, *;q=0.1",
            "gzip;q=0.001",
            "gzip; Q=1",
            "gzip;level=1",
            "*",
            "deflate, *;q=0.5",
            "identity;q=1, gzip;q=0.5",
            " gzip ; q = 0.5 ",
            "gzip;q=0, gzip;q=1",
        ] {
            assert!(accepts_gzip(&accept(&[yes])), "{yes:?}");
        }
        for no in [
            "",
            "identity",
            "br, deflate",
            "gzip;q=0",
            "gzip;q=0.000",
            "x-gzip;q=0",
            "*;q=0",
            "gzip;q=0, *",
            "*, gzip;q=0",
            "gzip;q=nan",
            "gzip;q=2",
            "gzip;q=-1",
            "gzip;q=",
            "gzipped",
        ] {
            assert!(!accepts_gzip(&accept(&[no])), "{no:?}");
        }
        assert!(!accepts_gzip(&HeaderMap::new()), "no header");
        // Several header lines are one list (RFC 9110 5.3).
        assert!(accepts_gzip(&accept(&["identity", "gzip"])));
        assert!(!accepts_gzip(&accept(&["*", "gzip;q=0"])));
    }

    #[tokio::test]
    async fn playlists_carry_last_modified_and_vary() {
        let c = cfg();
        // 2023-11-14T22:13:20.500Z
        let version = PlaylistVersion::new(Bytes::from_static(b"#EXTM3U\n"), 1_700_000_000_500);
        for request in [HeaderMap::new(), accept(&["gzip"]), accept(&["identity"])] {
            let r = playlist(&c, &request, Kind::LlPlaylist, secs(2), M3U8, &version);
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(
                r.headers()[header::LAST_MODIFIED],
                "Tue, 14 Nov 2023 22:13:20 GMT"
            );
            assert_eq!(r.headers()[header::VARY], "accept-encoding");
            assert_eq!(r.headers()[header::CACHE_CONTROL], "max-age=1");
            assert_eq!(r.headers()[header::CONTENT_TYPE], M3U8);
        }
        let plain = playlist(
            &c,
            &HeaderMap::new(),
            Kind::LlPlaylist,
            secs(2),
            M3U8,
            &version,
        );
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(body(plain).await, "#EXTM3U\n");
        // Media objects: never compressed, never Vary, even when gzip is offered.
        let seg = media(
            &c,
            &accept(&["gzip"]),
            "3-1.ts",
            TS,
            Bytes::from_static(b"x"),
        );
        assert!(seg.headers().get(header::CONTENT_ENCODING).is_none());
        assert!(seg.headers().get(header::VARY).is_none());
    }

    /// Two gzip requests of one playlist version get the same buffer: it was compressed once.
    #[tokio::test]
    async fn one_version_is_compressed_once_for_every_request() {
        let c = cfg();
        let text = "#EXTM3U\n#EXTINF:2.000,\n7-1.m4s\n".repeat(30);
        let version = PlaylistVersion::new(Bytes::from(text.clone()), 1);
        let mut seen = Vec::new();
        for offer in ["gzip", "br, gzip;q=0.9"] {
            let r = playlist(
                &c,
                &accept(&[offer]),
                Kind::BlockingReload,
                secs(2),
                M3U8,
                &version,
            );
            assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip", "{offer}");
            assert_eq!(r.headers()[header::VARY], "accept-encoding");
            seen.push(body(r).await);
        }
        assert_eq!(seen[0].as_ptr(), seen[1].as_ptr(), "one shared gzip buffer");
        assert_eq!(seen[0].as_ptr(), version.gzip().unwrap().as_ptr());
        assert!(seen[0].len() < text.len() / 4);
        // The plain answer of the same version is its body, not a copy either.
        let plain = playlist(
            &c,
            &accept(&["identity"]),
            Kind::BlockingReload,
            secs(2),
            M3U8,
            &version,
        );
        assert_eq!(body(plain).await.as_ptr(), version.body().as_ptr());
    }

    #[test]
    fn allow_origin_values() {
        for ok in [
            "*",
            "https://player.example.com",
            "http://localhost:8080",
            "https://[::1]:8443",
            "https://[::1]",
        ] {
            assert!(valid_allow_origin(ok), "{ok}");
        }
        for bad in [
            "",
            "player.example.com",
            "https://",
            "https://a.example/",
            "https://a.example:99999",
            "https://a.example:",
            "https://a b",
            "https://a.example, https://b.example",
            "* ",
        ] {
            assert!(!valid_allow_origin(bad), "{bad}");
        }
    }

    /// `cors_headers` adds what the CORS layer adds to a plain `GET`, with and without `Origin`,
    /// for `*` and for one configured origin.
    #[tokio::test]
    async fn cors_headers_match_the_layer() {
        use tower::ServiceExt;
        for allow in ["*", "https://player.example.com"] {
            let mut c = cfg();
            c.allow_origin = allow.into();
            for origin in [None, Some("https://elsewhere.example")] {
                let router = axum::Router::new()
                    .route("/x", axum::routing::get(|| async { "x" }))
                    .layer(cors_layer(&c));
                let mut req = axum::http::Request::get("/x");
                if let Some(o) = origin {
                    req = req.header(header::ORIGIN, o);
                }
                let layered = router
                    .oneshot(req.body(axum::body::Body::empty()).unwrap())
                    .await
                    .unwrap();
                let mut ours = HeaderMap::new();
                cors_headers(&c, &mut ours);
                let cors = |h: &HeaderMap| -> Vec<(String, String)> {
                    let mut v: Vec<_> = h
                        .iter()
                        .filter(|(k, _)| {
                            k.as_str().starts_with("access-control-") || *k == header::VARY
                        })
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
                        .collect();
                    v.sort();
                    v
                };
                assert_eq!(cors(&ours), cors(layered.headers()), "{allow} {origin:?}");
                assert!(!cors(&ours).is_empty());
            }
        }
    }
}
