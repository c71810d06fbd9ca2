//! Viewer routes: HLS (MPEG-TS) under `/hls/`, LL-HLS and DASH (CMAF) under `/cmaf/`.
//!
//! Every handler reads the [`SegmentStore`](hivecast_actors::store::SegmentStore) directly and
//! returns a clone of the `Bytes` it finds: no actor hop, no filesystem. Blocking playlist reloads
//! and preload-hinted part requests wait on the track's `watch` channel with a deadline.
//! Every answer's cache headers and content coding come from [`super::cache`]; this module only
//! says what kind of object it serves and hands media playlists over as the track's current
//! [`PlaylistVersion`], whose gzip form is shared by every request of that version.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use hivecast_actors::store::{
    master_playlist, parse_media_name, MediaName, PartLookup, PlaylistVersion, StreamMedia,
    TrackFormat, TrackKind, TrackStore,
};
use hivecast_proto::hls;

use super::api::stream_name;
use super::cache::{self, Kind};
use super::error::{ApiError, ApiPath};
use crate::analytics::who::{self, Viewer};
use crate::analytics::{RequestGuard, Who};
use crate::app::App;

/// Routes of this module.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/hls/{stream}/master.m3u8", get(hls_master))
        .route("/hls/{stream}/{rendition}/{file}", get(hls_file))
        .route("/cmaf/{stream}/master.m3u8", get(cmaf_master))
        .route("/cmaf/{stream}/manifest.mpd", get(mpd))
        .route("/cmaf/{stream}/{rendition}/{file}", get(cmaf_file))
        // Signed playback (`crate::tokens`): `~{token}` between the stream and the rendition.
        .route(
            "/hls/{stream}/{signed}/{rendition}/{file}",
            get(hls_signed_file),
        )
        .route(
            "/cmaf/{stream}/{signed}/{rendition}/{file}",
            get(cmaf_signed_file),
        )
}

/// The playback token a multivariant playlist or MPD request presents (`?token=`).
fn query_token(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
}

/// May this request play `stream`? Streams not in `playback.protected_streams` need nothing;
/// the others need a valid token (403 JSON otherwise, never cached). The token, if good.
fn check_token<'a>(
    app: &App,
    stream: &str,
    token: Option<&'a str>,
) -> Result<Option<&'a str>, ApiError> {
    use crate::tokens::TokenError;
    use axum::http::StatusCode;
    if !app.config.playback.is_protected(stream) {
        return Ok(None);
    }
    let Some(token) = token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "token_required",
            format!("stream {stream} needs a playback token (?token= on its multivariant playlist or MPD)"),
        ));
    };
    match app.playback.verify(stream, token, crate::tokens::now_s()) {
        Ok(_) => Ok(Some(token)),
        Err(e @ TokenError::Expired { .. }) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "token_expired",
            e.to_string(),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "token_invalid",
            e.to_string(),
        )),
    }
}

/// Where the children of a protected stream's multivariant playlist or MPD live for the holder
/// of `token`: `~{token}/` below the stream's directory, absolute under the CDN base if set.
fn signed_dir(app: &App, media: &StreamMedia, format: TrackFormat, token: &str) -> String {
    let kind = match format {
        TrackFormat::Cmaf => "cmaf",
        TrackFormat::Ts => "hls",
    };
    match app.config.url_base() {
        Some(base) => format!("{base}/{kind}/{}/~{token}/", media.name),
        None => format!("~{token}/"),
    }
}

/// How long a request on an edge waits for the first replication snapshot of a stream.
const REPLICA_WAIT: Duration = Duration::from_secs(3);

/// The newest change among `tracks`' media playlists (Unix ms; 0 if none): the `Last-Modified`
/// of a master playlist or MPD, which are rendered from those tracks (their bandwidths and
/// segment lists move when the tracks' playlists do).
fn newest_change(tracks: &[Arc<TrackStore>]) -> i64 {
    tracks
        .iter()
        .filter_map(|t| t.playlist_modified_ms())
        .max()
        .unwrap_or(0)
}

/// The current session of a stream, or the right error: 410 if it ended, 404 otherwise.
async fn media_of(app: &Arc<App>, stream: &str) -> Result<Arc<StreamMedia>, ApiError> {
    app.requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = stream_name(stream)?;
    let held = app.store.get(name.as_str());
    let current = app.registry.session(name.as_str());
    // Not held here, or held in an older session than the registry's live one: replicate it
    // from its origin (a few hundred ms on first request; later requests are local).
    let stale = match (&held, current) {
        (Some(m), Some((epoch, status))) => m.epoch.0 < epoch && status.is_live(),
        (None, Some((_, status))) => status.is_live(),
        _ => false,
    };
    if stale {
        if let Some(m) = app.replicas.fetch(&name, REPLICA_WAIT).await {
            return Ok(m);
        }
        if let Some(m) = &held {
            // The newer session was claimed on this node a moment ago and is being installed
            // (`App::start_stream`): until it is, the session it replaces answers, as it will
            // as that one's previous (`StreamMedia::previous`).
            let claimed_here = app
                .registry
                .stream(name.as_str())
                .is_some_and(|r| r.origin == app.registry.me.name);
            if claimed_here && m.is_over() && !m.is_revoked() {
                return Ok(m.clone());
            }
            // Never fall back to an older session while a newer one is live elsewhere.
            return Err(ApiError::unavailable(
                "the stream's current session is not reachable from this node yet; retry",
            ));
        }
    }
    // A superseded session still held here (kept for a moment as the next one's previous, see
    // `App::sweep_ended`) is never the answer: the stream's newer session is over too.
    let held = held.filter(|m| current.is_none_or(|(epoch, _)| m.epoch.0 >= epoch));
    app.replicas.touch(name.as_str());
    if let (Some(m), Some((epoch, status))) = (&held, current) {
        if m.epoch.0 == epoch && !status.is_live() && !m.is_over() {
            // The registry closed this session (a fenced origin, a replica whose origin died)
            // and the local fencing has not run yet: it is not live any more. A local tree's
            // is revoked, as the fencing would (see `App::fence`).
            let local = app
                .live
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&name)
                .is_some_and(|l| l.epoch == m.epoch);
            if local {
                m.revoke();
            } else {
                m.interrupt();
            }
        }
    }
    if let Some(m) = held {
        if !m.is_over() && !app.registry.in_contact() {
            // Thawed after a freeze: what this node holds may be superseded. Catching up
            // takes a Raft round trip; players retry a 503.
            return Err(ApiError::unavailable(
                "this node is catching up with the cluster; retry",
            ));
        }
        if m.is_revoked() {
            // This node went on recording the session after the cluster had given up on it
            // (`StreamMedia::revoke`): its copy is not the stream's. Players retry a 503 and
            // get the stream's next session here once it exists.
            return Err(ApiError::unavailable(
                "this node's copy of the stream was superseded while it was cut off; retry",
            ));
        }
        return Ok(m);
    }
    // An unknown or ended stream answers the same to everyone for a while: a short
    // max-age absorbs polling storms (http::cache). A live stream whose media is not here yet
    // is about to exist: no-store.
    let unknown = cache::unknown_stream(&app.config.cache);
    match app.registry.stream(name.as_str()) {
        Some(rec) if !rec.status().is_live() => {
            Err(ApiError::ended(name.as_str()).with_cache(unknown))
        }
        Some(_) => Err(ApiError::not_found(format!(
            "stream {name} has no media yet"
        ))),
        None => Err(ApiError::not_found(format!("no stream {name}")).with_cache(unknown)),
    }
}

/// How long a blocking request may wait: RFC 8216bis 6.2.5.2 lets a server answer 503 only
/// after three times the target duration.
fn block_deadline(media: &StreamMedia) -> Duration {
    media.config.segment_target * 3
}

async fn hls_master(
    State(app): State<Arc<App>>,
    ApiPath(stream): ApiPath<String>,
    RawQuery(query): RawQuery,
    viewer: Viewer,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = check_token(&app, &stream, query_token(query.as_deref()))?;
    master(&app, &stream, TrackFormat::Ts, &headers, &viewer, token).await
}

async fn cmaf_master(
    State(app): State<Arc<App>>,
    ApiPath(stream): ApiPath<String>,
    RawQuery(query): RawQuery,
    viewer: Viewer,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = check_token(&app, &stream, query_token(query.as_deref()))?;
    master(&app, &stream, TrackFormat::Cmaf, &headers, &viewer, token).await
}

/// Start tracking a viewer request (see [`crate::analytics`]).
fn track_request(
    app: &App,
    stream: &str,
    rendition: Option<&str>,
    viewer: &Viewer,
) -> RequestGuard {
    if viewer.bad_cmcd {
        app.analytics
            .rejected
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    app.analytics
        .request(stream, rendition, &viewer.who, &viewer.hints)
}

/// Count the body of `resp` as sent to the request's viewer.
fn sent(mut guard: RequestGuard, resp: Response) -> Response {
    guard.sent(
        axum::body::HttpBody::size_hint(resp.body())
            .exact()
            .unwrap_or(0),
    );
    resp
}

/// A master playlist, rendered (and, if asked, gzip-compressed) per request: it is small,
/// requested once per viewer session, and carries the bandwidths measured so far.
async fn master(
    app: &Arc<App>,
    stream: &str,
    format: TrackFormat,
    headers: &HeaderMap,
    viewer: &Viewer,
    token: Option<&str>,
) -> Result<Response, ApiError> {
    let media = media_of(app, stream).await?;
    let guard = track_request(app, media.name.as_str(), None, viewer);
    // Between a re-publish and the new session's first segments: the previous session's
    // master (the same child URLs, see `track_for`).
    let (media, mut body) = match master_playlist(&media, format) {
        Some(body) => (media, body),
        None => media
            .previous()
            .filter(|p| p.is_over())
            .and_then(|p| master_playlist(&p, format).map(|body| (p, body)))
            .ok_or_else(|| ApiError::not_found(format!("stream {stream} has no segment yet")))?,
    };
    let tracks = match format {
        TrackFormat::Ts => media.ts_tracks(),
        TrackFormat::Cmaf => media.cmaf_tracks(),
    };
    // A protected stream's children live under the token's directory; the master itself is
    // the same for every holder of the token (tokens are shared: see `crate::tokens`).
    if let Some(token) = token {
        let dir = signed_dir(app, &media, format, token);
        if let Ok(text) = std::str::from_utf8(&body) {
            body = Bytes::from(who::map_uris(text, |uri, out| {
                out.push_str(&dir);
                out.push_str(uri);
            }));
        }
    }
    // The viewer's session in its media playlist URLs: the player's own CMCD session id, the
    // one it came with, or a new one. Such a master is this viewer's alone (private).
    let per_viewer = app.config.session_in_urls();
    if per_viewer {
        let sid = match &viewer.who {
            Who::Player(s) | Who::Url(s) if who::valid_sid(s) => s.clone(),
            _ => format!("{:016x}", rand::random::<u64>()),
        };
        if let Ok(text) = std::str::from_utf8(&body) {
            body = Bytes::from(who::add_sid(text, &sid));
        }
    }
    let mut resp = cache::playlist(
        &app.config.cache,
        headers,
        Kind::Multivariant,
        media.config.segment_target,
        cache::M3U8,
        &PlaylistVersion::new(body, newest_change(&tracks)),
    );
    if per_viewer {
        cache::make_private(&mut resp);
    }
    Ok(sent(guard, resp))
}

/// The DASH MPD, made absolute per request (see [`absolute_utc_timing`]) and so gzip-compressed
/// per request when asked: clients fetch it about once per `minimumUpdatePeriod`.
async fn mpd(
    State(app): State<Arc<App>>,
    ApiPath(stream): ApiPath<String>,
    RawQuery(query): RawQuery,
    viewer: Viewer,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = check_token(&app, &stream, query_token(query.as_deref()))?;
    let media = media_of(&app, &stream).await?;
    let guard = track_request(&app, media.name.as_str(), None, &viewer);
    // Between a re-publish and the new session's first segments: the previous session's.
    let media = match media.mpd() {
        None => media.previous().filter(|p| p.is_over()).unwrap_or(media),
        Some(_) => media,
    };
    let mut mpd = media
        .mpd()
        .ok_or_else(|| ApiError::not_found(format!("stream {stream} has no segment yet")))?;
    if let Some(token) = token {
        mpd = with_base_url(mpd, &signed_dir(&app, &media, TrackFormat::Cmaf, token));
    }
    let version = PlaylistVersion::new(
        absolute_utc_timing(mpd, &headers),
        newest_change(&media.cmaf_tracks()),
    );
    Ok(sent(
        guard,
        cache::playlist(
            &app.config.cache,
            &headers,
            Kind::Mpd {
                update_period: media.mpd_update_period(),
            },
            media.config.segment_target,
            cache::MPD,
            &version,
        ),
    ))
}

/// A protected stream's MPD (rendered without a `BaseURL`) with `base` as its `BaseURL`, so that
/// every segment URL carries the viewer's token.
fn with_base_url(mpd: Bytes, base: &str) -> Bytes {
    const PERIOD: &str = "\n  <Period";
    let Ok(text) = std::str::from_utf8(&mpd) else {
        return mpd;
    };
    let Some(at) = text.find(PERIOD) else {
        return mpd;
    };
    // The token and the CDN base are checked text ([0-9a-f.] and a validated URL): nothing to
    // escape in XML.
    let mut out = String::with_capacity(text.len() + base.len() + 24);
    out.push_str(&text[..at]);
    out.push_str("\n  <BaseURL>");
    out.push_str(base);
    out.push_str("</BaseURL>");
    out.push_str(&text[at..]);
    Bytes::from(out)
}

/// The MPD is rendered once with `UTCTiming value="/v1/time"`; DASH clients resolve that value
/// on their own (GStreamer's dashdemux does not resolve it against the MPD URL), so make it
/// absolute with the Host the client used. Hosts with characters outside a hostname/port are
/// left alone (the header is client input and ends up in XML).
fn absolute_utc_timing(mpd: Bytes, headers: &HeaderMap) -> Bytes {
    const REL: &str = "value=\"/v1/time\"";
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return mpd;
    };
    let safe = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    let Ok(text) = std::str::from_utf8(&mpd) else {
        return mpd;
    };
    if !safe || !text.contains(REL) {
        return mpd;
    }
    Bytes::from(text.replacen(REL, &format!("value=\"http://{host}/v1/time\""), 1))
}

/// The `~{token}` path segment of a signed request, checked for `stream`.
fn signed_segment(app: &App, stream: &str, signed: &str) -> Result<(), ApiError> {
    let Some(token) = signed.strip_prefix('~') else {
        return Err(ApiError::not_found("no such route"));
    };
    check_token(app, stream, Some(token)).map(|_| ())
}

async fn hls_signed_file(
    State(app): State<Arc<App>>,
    ApiPath((stream, signed, rendition, file)): ApiPath<(String, String, String, String)>,
    RawQuery(query): RawQuery,
    viewer: Viewer,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    signed_segment(&app, &stream, &signed)?;
    hls_object(&app, &stream, &rendition, &file, query, &viewer, &headers).await
}

async fn hls_file(
    State(app): State<Arc<App>>,
    ApiPath((stream, rendition, file)): ApiPath<(String, String, String)>,
    RawQuery(query): RawQuery,
    viewer: Viewer,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_token(&app, &stream, None)?;
    hls_object(&app, &stream, &rendition, &file, query, &viewer, &headers).await
}

async fn hls_object(
    app: &Arc<App>,
    stream: &str,
    rendition: &str,
    file: &str,
    query: Option<String>,
    viewer: &Viewer,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let media = media_of(app, stream).await?;
    let name = parse_media_name(file);
    let (media, track) = track_for(&media, TrackFormat::Ts, rendition, name.as_ref(), false)
        .ok_or_else(|| ApiError::not_found(format!("no rendition {rendition}")))?;
    let guard = track_file(app, &media, &track, viewer);
    let cfg = &app.config.cache;
    let resp = match name {
        Some(MediaName::Playlist) => playlist(app, &media, &track, query.as_deref(), headers).await,
        Some(MediaName::TsSegment { epoch, msn }) if epoch == media.epoch => track
            .segment(msn)
            .map(|b| cache::media(cfg, headers, file, cache::TS, b))
            .ok_or_else(|| ApiError::not_found(format!("no segment {file}"))),
        _ => Err(ApiError::not_found(format!("no file {file}"))),
    };
    resp.map(|r| sent(guard, r))
}

/// A viewer's media request, answered without the router (issue 7: at 10,000 viewers the router's
/// boxed route, CORS and trace futures were a tenth of the node's CPU). `None` unless the request
/// is a `GET` of `/hls/{stream}/{rendition}/{file}` or `/cmaf/{stream}/{rendition}/{file}` whose path
/// needs no percent-decoding and that carries no `Authorization` (which `tls.admin_https_only`
/// refuses on the plain port); everything else goes through the router. The answer is the one
/// `hls_file`/`cmaf_file` give behind the CORS layer (`cache::cors_headers`), without the trace
/// layer's per-request span and the router's 30 s timeout (every wait here has its own deadline,
/// [`block_deadline`]). Tests: `fast_path_*` below, and every black-box viewer test.
pub async fn fast_media<B>(
    app: &Arc<App>,
    req: &axum::http::Request<B>,
    peer: std::net::SocketAddr,
) -> Option<Response> {
    let (format, stream, rendition, file) = fast_route(req)?;
    let query = req.uri().query();
    let headers = req.headers();
    let viewer = who::identify(headers, query, Some(&peer.ip().to_string()));
    let answer = match check_token(app, stream, None) {
        Err(e) => Err(e),
        Ok(_) => {
            let query = query.map(str::to_owned);
            match format {
                TrackFormat::Ts => {
                    hls_object(app, stream, rendition, file, query, &viewer, headers).await
                }
                TrackFormat::Cmaf => {
                    cmaf_object(app, stream, rendition, file, query, &viewer, headers).await
                }
            }
        }
    };
    let mut resp = answer.unwrap_or_else(axum::response::IntoResponse::into_response);
    cache::cors_headers(&app.config.cache, resp.headers_mut());
    Some(resp)
}

/// The format, stream, rendition and file a request for [`fast_media`] names.
fn fast_route<B>(req: &axum::http::Request<B>) -> Option<(TrackFormat, &str, &str, &str)> {
    if req.method() != axum::http::Method::GET || req.headers().contains_key(header::AUTHORIZATION)
    {
        return None;
    }
    let path = req.uri().path();
    if path.contains('%') {
        return None;
    }
    let (format, rest) = if let Some(rest) = path.strip_prefix("/hls/") {
        (TrackFormat::Ts, rest)
    } else {
        (TrackFormat::Cmaf, path.strip_prefix("/cmaf/")?)
    };
    let mut parts = rest.split('/');
    let (stream, rendition, file) = (parts.next()?, parts.next()?, parts.next()?);
    let plain = |s: &str| !s.is_empty() && !s.starts_with('~');
    (parts.next().is_none() && plain(stream) && plain(rendition) && plain(file))
        .then_some((format, stream, rendition, file))
}

/// The session and track that answer for `file` (already parsed as `name`) of `rendition`:
/// the current session's, except across a re-publish (see [`StreamMedia::previous`]):
/// - a media object named with the previous session's epoch comes from the previous session;
/// - the media playlist, while the current session has none yet, is the previous session's
///   last one (over, so briefly cacheable), except for a `blocking` reload: its URL names a
///   version the previous session never had, so it waits for the current one.
fn track_for(
    media: &Arc<StreamMedia>,
    format: TrackFormat,
    rendition: &str,
    name: Option<&MediaName>,
    blocking: bool,
) -> Option<(Arc<StreamMedia>, Arc<TrackStore>)> {
    let epoch = match name {
        Some(
            MediaName::Init { epoch }
            | MediaName::Segment { epoch, .. }
            | MediaName::Part { epoch, .. }
            | MediaName::TsSegment { epoch, .. },
        ) => Some(*epoch),
        _ => None,
    };
    let previous = || media.previous().filter(|p| p.is_over());
    if let Some(epoch) = epoch.filter(|e| *e != media.epoch) {
        let p = previous().filter(|p| p.epoch == epoch)?;
        let t = p.find(format, rendition)?;
        return Some((p, t));
    }
    let current = media.find(format, rendition);
    let answers = |t: &Arc<TrackStore>| t.playlist_version().is_some();
    let plain_reload = matches!(name, Some(MediaName::Playlist)) && !blocking;
    if plain_reload && !current.as_ref().is_some_and(answers) {
        let last = previous().and_then(|p| {
            let t = p.find(format, rendition).filter(answers)?;
            Some((p, t))
        });
        if last.is_some() {
            return last;
        }
    }
    current.map(|t| (media.clone(), t))
}

/// Track a request for a file of `track`: a video rendition names the viewer's quality.
fn track_file(app: &App, media: &StreamMedia, track: &TrackStore, viewer: &Viewer) -> RequestGuard {
    let rendition = match track.kind {
        TrackKind::Video => Some(track.rendition.as_str()),
        TrackKind::Audio => None,
    };
    track_request(app, media.name.as_str(), rendition, viewer)
}

async fn cmaf_signed_file(
    State(app): State<Arc<App>>,
    ApiPath((stream, signed, rendition, file)): ApiPath<(String, String, String, String)>,
    RawQuery(query): RawQuery,
    viewer: Viewer,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    signed_segment(&app, &stream, &signed)?;
    cmaf_object(&app, &stream, &rendition, &file, query, &viewer, &headers).await
}

async fn cmaf_file(
    State(app): State<Arc<App>>,
    ApiPath((stream, rendition, file)): ApiPath<(String, String, String)>,
    RawQuery(query): RawQuery,
    viewer: Viewer,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_token(&app, &stream, None)?;
    cmaf_object(&app, &stream, &rendition, &file, query, &viewer, &headers).await
}

async fn cmaf_object(
    app: &Arc<App>,
    stream: &str,
    rendition: &str,
    file: &str,
    query: Option<String>,
    viewer: &Viewer,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let media = media_of(app, stream).await?;
    let name = parse_media_name(file);
    let blocking = query
        .as_deref()
        .is_some_and(|q| matches!(hls::parse_blocking_request(q), Ok(Some(_))));
    let (media, track) = track_for(
        &media,
        TrackFormat::Cmaf,
        rendition,
        name.as_ref(),
        blocking,
    )
    .ok_or_else(|| ApiError::not_found(format!("no rendition {rendition}")))?;
    let guard = track_file(app, &media, &track, viewer);
    let cfg = &app.config.cache;
    let init_type = match track.kind {
        TrackKind::Video => cache::INIT_VIDEO,
        TrackKind::Audio => cache::INIT_AUDIO,
    };
    let resp = match name {
        Some(MediaName::Playlist) => playlist(app, &media, &track, query.as_deref(), headers).await,
        Some(MediaName::Init { epoch }) if epoch == media.epoch => track
            .init()
            .map(|b| cache::media(cfg, headers, file, init_type, b))
            .ok_or_else(|| ApiError::not_found("no init segment yet")),
        Some(MediaName::Segment { epoch, msn }) if epoch == media.epoch => track
            .segment(msn)
            .map(|b| cache::media(cfg, headers, file, cache::CMAF_SEGMENT, b))
            .ok_or_else(|| ApiError::not_found(format!("no segment {file}"))),
        Some(MediaName::Part { epoch, msn, part }) if epoch == media.epoch => {
            let found = part_file(&media, &track, msn, part).await?;
            Ok(cache::media(cfg, headers, file, cache::CMAF_SEGMENT, found))
        }
        _ => Err(ApiError::not_found(format!("no file {file}"))),
    };
    resp.map(|r| sent(guard, r))
}

/// A part's bytes; a request for the part named in the PRELOAD-HINT waits until it exists.
/// One that does not exist (yet) is a `no-store` 404: it will exist in a moment, or never.
async fn part_file(
    media: &StreamMedia,
    track: &TrackStore,
    msn: u64,
    part: u64,
) -> Result<Bytes, ApiError> {
    let mut rx = track.subscribe();
    let deadline = tokio::time::Instant::now() + block_deadline(media);
    loop {
        match track.part(msn, part) {
            PartLookup::Found(b) => return Ok(b),
            PartLookup::Missing => {
                return Err(ApiError::not_found(format!("no part {msn}.{part}")))
            }
            PartLookup::Pending => {}
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(ApiError::not_found("track closed")),
            Err(_) => {
                return Err(ApiError::unavailable(format!(
                    "part {msn}.{part} not produced in time"
                )))
            }
        }
    }
}

/// A media playlist, with LL-HLS blocking reload (`_HLS_msn`, `_HLS_part`). The track's current
/// version is served as is: every request of one version shares its bytes and its gzip form.
async fn playlist(
    app: &App,
    media: &StreamMedia,
    track: &TrackStore,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let req = match query {
        Some(q) if track.format == TrackFormat::Cmaf => {
            hls::parse_blocking_request(q).map_err(|e| ApiError::bad_request(e.to_string()))?
        }
        _ => None,
    };
    if let Some(req) = req {
        // RFC 8216bis 6.2.5.2: a request more than two segments past the last one in the
        // playlist gets 400 at once rather than a long wait.
        let last = track.next_msn().saturating_sub(1);
        if req.msn > last + 2 {
            return Err(ApiError::bad_request(format!(
                "_HLS_msn={} is more than two segments ahead of {last}",
                req.msn
            )));
        }
        // `_HLS_msn` without `_HLS_part` (Safari sends it) waits for part 0 of segment M, as
        // a low-latency player wants: the segment's first part, not its last.
        let part = Some(req.part.unwrap_or(0));
        let mut rx = track.subscribe();
        let deadline = tokio::time::Instant::now() + block_deadline(media);
        while !track.has(req.msn, part) {
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(_) => {
                    return Err(ApiError::unavailable(format!(
                        "segment {} part {:?} not produced in time",
                        req.msn, req.part
                    )))
                }
            }
        }
    }
    // A blocking reload's URL names one playlist version, unless it was answered because no
    // more media will come (ended or interrupted: a new session continues the same URLs, so
    // that answer must not outlive a plain reload's). `_HLS_skip` alone blocks for nothing.
    let kind = match (track.format, req) {
        (TrackFormat::Ts, _) => Kind::TsPlaylist,
        (TrackFormat::Cmaf, Some(_)) if !media.is_over() && !track.is_ended() => {
            Kind::BlockingReload
        }
        (TrackFormat::Cmaf, _) => Kind::LlPlaylist,
    };
    let version = track
        .playlist_version()
        .ok_or_else(|| ApiError::not_found("no segment yet"))?;
    Ok(cache::playlist(
        &app.config.cache,
        headers,
        kind,
        media.config.segment_target,
        cache::M3U8,
        &version,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: &str, uri: &str, auth: bool) -> Option<(TrackFormat, String, String, String)> {
        let mut req = axum::http::Request::builder().method(method).uri(uri);
        if auth {
            req = req.header(header::AUTHORIZATION, "Bearer x");
        }
        let req = req.body(()).unwrap();
        fast_route(&req).map(|(f, s, r, n)| (f, s.into(), r.into(), n.into()))
    }

    /// The media objects of both formats take the fast path, query and all; masters, MPDs,
    /// signed URLs, percent-encoded paths, other methods and credentials go to the router.
    #[test]
    fn fast_path_takes_only_plain_media_gets() {
        let own = |f, s: &str, r: &str, n: &str| Some((f, s.into(), r.into(), n.into()));
        assert_eq!(
            route("GET", "/hls/demo/480p/1-2.ts", false),
            own(TrackFormat::Ts, "demo", "480p", "1-2.ts")
        );
        assert_eq!(
            route(
                "GET",
                "/cmaf/demo/source/index.m3u8?_HLS_msn=3&_HLS_part=1",
                false
            ),
            own(TrackFormat::Cmaf, "demo", "source", "index.m3u8")
        );
        for (method, uri, auth) in [
            ("GET", "/hls/demo/master.m3u8", false),
            ("GET", "/cmaf/demo/manifest.mpd", false),
            ("GET", "/cmaf/demo/~tok/source/1-2.m4s", false),
            ("GET", "/cmaf/demo/source/~x", false),
            ("GET", "/hls/de%6Do/480p/1-2.ts", false),
            ("GET", "/hls/demo//1-2.ts", false),
            ("GET", "/hls/demo/480p/1-2.ts/", false),
            ("GET", "/hls/demo/480p/", false),
            ("HEAD", "/hls/demo/480p/1-2.ts", false),
            ("OPTIONS", "/cmaf/demo/source/1-2.m4s", false),
            ("GET", "/hls/demo/480p/1-2.ts", true),
            ("GET", "/v1/streams/demo/x", false),
            ("GET", "/hlsx/demo/480p/1-2.ts", false),
        ] {
            assert_eq!(route(method, uri, auth), None, "{method} {uri} auth={auth}");
        }
    }
}
