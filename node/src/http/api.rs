//! The JSON API: keys (admin), streams, audit (admin), health, the time source for DASH
//! clients (`UTCTiming`), and the test-only fault hook.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use hivecast_actors::stream::supervisor::Role;
use hivecast_actors::transcode::TranscoderFault;
use hivecast_actors::types::{unix_ms_now, StreamName};
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::error::{ApiError, ApiJson, ApiPath};
use crate::app::App;
use crate::cluster::state::StreamRecord;
use crate::keys;

/// Routes of this module.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/v1/cluster", get(cluster))
        .route("/v1/time", get(time))
        .route("/v1/keys", post(create_key).get(list_keys))
        .route("/v1/keys/{key_id}", delete(revoke_key))
        .route("/v1/playback-tokens", post(create_playback_token))
        .route("/v1/streams", get(list_streams))
        .route("/v1/streams/{stream}", get(get_stream))
        .route("/v1/audit", get(audit))
        .route("/v1/debug/streams/{stream}/panic", post(inject_panic))
}

/// Ready once the registry has a leader and this node is a member (publishing works).
async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.registry.ready() {
        Json(json!({"status": "ready"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "joining", "message": "registry has no leader yet or this node is not a member yet"})),
        )
            .into_response()
    }
}

/// `GET /v1/cluster`: members, roles, region, health and load.
async fn cluster(State(app): State<Arc<App>>) -> Json<crate::cluster::ClusterView> {
    Json(app.registry.view())
}

/// Check the admin bearer token, in constant time.
pub fn require_admin(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let ok: bool = given.as_bytes().ct_eq(app.admin_token.as_bytes()).into();
    if ok && !app.admin_token.is_empty() {
        Ok(())
    } else {
        Err(ApiError::unauthorized())
    }
}

/// Validate a stream name from a path or body.
pub fn stream_name(s: &str) -> Result<StreamName, ApiError> {
    StreamName::new(s).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// `GET /v1/time`: ISO 8601 wall clock, for DASH `UTCTiming` (urn:mpeg:dash:utc:http-iso:2014).
async fn time() -> Response {
    let body = hivecast_proto::time::format_rfc3339_ms(unix_ms_now());
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/plain"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
            (axum::http::header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        body,
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct CreateKey {
    stream: String,
}

async fn create_key(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateKey>,
) -> Result<Response, ApiError> {
    require_admin(&app, &headers)?;
    let name = stream_name(&body.stream)?;
    let (key_id, key) = keys::generate();
    app.registry.create_key(&key_id, &key, &name).await?;
    app.storage
        .audit(name.as_str(), "key_created", &format!("key {key_id}"), None);
    Ok((
        StatusCode::CREATED,
        Json(json!({"key_id": key_id, "key": key, "stream": name.as_str()})),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
struct CreatePlaybackToken {
    stream: String,
    /// Validity in seconds (at most 30 days).
    ttl_s: u64,
}

/// `POST /v1/playback-tokens` (admin): a playback token for a stream and the URLs that carry
/// it. The expiry is rounded up to a multiple of `min(ttl, 5 min)`, so every token made for one
/// stream and TTL within that step is the same string: a CDN keying on the token's path
/// segment then keeps one copy per object for all those viewers (`crate::tokens`).
async fn create_playback_token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreatePlaybackToken>,
) -> Result<Response, ApiError> {
    require_admin(&app, &headers)?;
    let name = stream_name(&body.stream)?;
    if body.ttl_s == 0 || body.ttl_s > crate::tokens::MAX_TTL_S {
        return Err(ApiError::bad_request(format!(
            "ttl_s must be within 1..={}",
            crate::tokens::MAX_TTL_S
        )));
    }
    let step = body.ttl_s.min(300);
    let expires = (crate::tokens::now_s() + body.ttl_s).div_ceil(step) * step;
    let token = app.playback.sign(name.as_str(), expires);
    let base = app.config.url_base();
    let url = |path: String| match &base {
        Some(b) => format!("{b}{path}"),
        None => path,
    };
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "stream": name.as_str(),
            "token": token,
            "expires_at": expires,
            "protected": app.config.playback.is_protected(name.as_str()),
            "urls": {
                "ll_hls": url(format!("/cmaf/{name}/master.m3u8?token={token}")),
                "hls": url(format!("/hls/{name}/master.m3u8?token={token}")),
                "dash": url(format!("/cmaf/{name}/manifest.mpd?token={token}")),
                "watch": format!("/watch/{name}?token={token}"),
            },
        })),
    )
        .into_response())
}

async fn list_keys(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    require_admin(&app, &headers)?;
    let keys = app.registry.keys();
    Ok(Json(Value::Array(
        keys.into_iter()
            .map(|k| json!({"key_id": k.key_id, "stream": k.stream, "created_at_ms": k.created_at_ms, "revoked": k.revoked}))
            .collect(),
    )))
}

async fn revoke_key(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    ApiPath(key_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&app, &headers)?;
    if key_id.len() > 64 {
        return Err(ApiError::bad_request("key id too long"));
    }
    if app.registry.revoke_key(&key_id).await? {
        let stream = app
            .registry
            .keys()
            .into_iter()
            .find(|k| k.key_id == key_id)
            .map(|k| k.stream)
            .unwrap_or_default();
        app.storage
            .audit(&stream, "key_revoked", &format!("key {key_id}"), None);
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no key {key_id}")))
    }
}

fn stream_json(app: &App, rec: &StreamRecord) -> Value {
    let stats = app.stats_of(&rec.stream);
    let transcode = stats.as_ref().map(|s| {
        let t = s.transcode_status();
        json!({"mode": t.mode, "reason": t.reason, "renditions": t.renditions, "restarts": t.restarts})
    });
    // The analytics' newest sample (audience over every node, ingest, health); before the
    // first one, the ingest counters alone.
    let latest = app
        .analytics
        .latest(&rec.stream)
        .filter(|_| rec.status().is_live())
        .map(|m| super::ws::metrics_json(&m));
    let metrics = latest.or_else(|| {
        stats.map(|s| {
            let m = s.snapshot();
            json!({
                "ingress_bitrate_kbps": m.ingress_bitrate_kbps,
                "fps": m.fps,
                "video_codec": m.video_codec,
                "audio_codec": m.audio_codec,
                "width": m.width,
                "height": m.height,
                "frames": m.frames,
                "dropped_frames": m.dropped_frames,
            })
        })
    });
    let renditions: Vec<String> = app
        .store
        .get(&rec.stream)
        .filter(|m| m.epoch.0 == rec.epoch)
        .map(|m| match m.video_renditions() {
            // The decided set, in master-playlist order.
            Some(ids) => ids.iter().map(ToString::to_string).collect(),
            None => m
                .ts_tracks()
                .iter()
                .map(|t| t.rendition.to_string())
                .collect(),
        })
        // A node that does not hold the session knows its renditions from the registry.
        .unwrap_or_else(|| rec.renditions.clone());
    json!({
        "stream": rec.stream,
        "status": rec.status,
        "epoch": rec.epoch,
        "origin": rec.origin,
        "renditions": renditions,
        "transcode": transcode,
        "started_at_ms": rec.started_at_ms,
        "ended_at_ms": rec.ended_at_ms,
        "error": rec.error,
        "metrics": metrics,
    })
}

async fn list_streams(State(app): State<Arc<App>>) -> Result<Json<Value>, ApiError> {
    let recs = app.registry.streams();
    Ok(Json(Value::Array(
        recs.iter().map(|r| stream_json(&app, r)).collect(),
    )))
}

async fn get_stream(
    State(app): State<Arc<App>>,
    ApiPath(stream): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let name = stream_name(&stream)?;
    match app.registry.stream(name.as_str()) {
        Some(rec) => Ok(Json(stream_json(&app, &rec))),
        None => Err(ApiError::not_found(format!("no stream {name}"))),
    }
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    stream: Option<String>,
    limit: Option<usize>,
}

async fn audit(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&app, &headers)?;
    if let Some(s) = &q.stream {
        stream_name(s)?;
    }
    let entries = app
        .storage
        .audit_log(q.stream.as_deref(), q.limit.unwrap_or(1000).min(10_000))?;
    Ok(Json(
        serde_json::to_value(entries).map_err(ApiError::internal)?,
    ))
}

#[derive(Debug, Deserialize)]
struct PanicQuery {
    actor: Option<String>,
    /// For `actor=transcoder`: `panic` (default), `hang` (once), `crash-loop` (every start).
    fault: Option<String>,
}

async fn inject_panic(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    ApiPath(stream): ApiPath<String>,
    Query(q): Query<PanicQuery>,
) -> Result<StatusCode, ApiError> {
    if !app.config.debug.fault_injection {
        return Err(ApiError::not_found("fault injection is disabled"));
    }
    require_admin(&app, &headers)?;
    let role = match q.actor.as_deref().unwrap_or("packager") {
        "packager" => Role::Packager,
        "ingest" => Role::Ingest,
        "notifier" => Role::Notifier,
        "transcoder" => Role::Transcoder,
        other => return Err(ApiError::bad_request(format!("unknown actor {other}"))),
    };
    let fault = match (role, q.fault.as_deref().unwrap_or("panic")) {
        (_, "panic") => None,
        (Role::Transcoder, "hang") => Some(TranscoderFault::Hang),
        (Role::Transcoder, "crash-loop") => Some(TranscoderFault::CrashLoop),
        (_, other) => {
            return Err(ApiError::bad_request(format!(
                "unknown fault {other} for this actor"
            )))
        }
    };
    let done = match fault {
        Some(f) => app.inject_transcoder_fault(&stream, f),
        None => app.inject_panic(&stream, role),
    };
    if done {
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(ApiError::not_found(format!(
            "stream {stream} is not live here"
        )))
    }
}
