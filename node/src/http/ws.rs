//! WebSocket events: `/v1/streams/{stream}/events` (one stream) and `/v1/events` (all).
//!
//! On connect a stream subscriber gets the current status at once, then every committed status
//! change and the per-second metrics. A subscriber that falls behind the hub's buffer skips the
//! missed events (and is told with a `lagged` message) rather than growing memory.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use hivecast_actors::events::{StreamEvent, StreamMetrics};
use hivecast_actors::types::unix_ms_now;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use super::api::stream_name;
use super::error::{ApiError, ApiPath};
use crate::app::App;
use crate::cluster::state::StreamRecord;

/// Routes of this module.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/streams/{stream}/events", get(stream_events))
        .route("/v1/events", get(all_events))
}

/// The JSON of an event (the wire format of the WebSocket API).
pub fn event_json(ev: &StreamEvent) -> Value {
    match ev {
        StreamEvent::Status {
            stream,
            status,
            epoch,
            at_ms,
            reason,
        } => {
            json!({"type": "status", "stream": stream.as_str(), "status": status.as_str(), "epoch": epoch.0, "at_ms": at_ms, "reason": reason})
        }
        StreamEvent::Metrics {
            stream,
            epoch,
            metrics,
        } => {
            let mut v = metrics_json(metrics);
            v["type"] = json!("metrics");
            v["stream"] = json!(stream.as_str());
            v["epoch"] = json!(epoch.0);
            v
        }
    }
}

/// One metrics sample as JSON (the WebSocket `metrics` message without `type`/`stream`/`epoch`,
/// and the elements of `GET /v1/streams/{stream}/metrics`).
pub fn metrics_json(m: &StreamMetrics) -> Value {
    let (i, a) = (&m.ingress, &m.audience);
    let quality: serde_json::Map<String, Value> = a
        .quality
        .iter()
        .map(|(r, n)| (r.clone(), json!(n)))
        .collect();
    json!({
        "at_ms": m.at_ms,
        "concurrent_viewers": a.concurrent_viewers,
        "total_viewers": a.total_viewers,
        "ingress_bitrate_kbps": i.ingress_bitrate_kbps,
        "egress_bitrate_kbps": a.egress_bitrate_kbps,
        "fps": i.fps,
        "quality": quality,
        "dropped_frames": i.dropped_frames,
        "buffering_events": a.buffering_events,
        "stall_rate": a.stall_rate,
        "quality_switches": a.quality_switches,
        "health": m.health,
        "media_age_ms": m.media_age_ms,
        "nodes": a.nodes,
        "video_codec": i.video_codec, "audio_codec": i.audio_codec,
        "width": i.width, "height": i.height, "frames": i.frames,
    })
}

fn status_json(rec: &StreamRecord) -> Value {
    json!({"type": "status", "stream": rec.stream, "status": rec.status, "epoch": rec.epoch, "at_ms": unix_ms_now(), "reason": rec.error})
}

async fn stream_events(
    State(app): State<Arc<App>>,
    ApiPath(stream): ApiPath<String>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let name = stream_name(&stream)?;
    // Known streams only: ever published, or a key issued for it (a viewer may wait for a
    // stream that has not started yet).
    let rec = app.registry.stream(name.as_str());
    if rec.is_none() && !app.registry.stream_has_key(name.as_str()) {
        return Err(ApiError::not_found(format!("no stream {name}")));
    }
    Ok(ws.on_upgrade(move |socket| follow(app, socket, Some(name.to_string()))))
}

async fn all_events(State(app): State<Arc<App>>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| follow(app, socket, None))
}

async fn follow(app: Arc<App>, mut socket: WebSocket, stream: Option<String>) {
    // Subscribe before reading the current state, so no change can fall in between.
    let mut rx = app.hub.subscribe();
    let initial: Vec<Value> = match &stream {
        Some(s) => app.registry.stream(s).iter().map(status_json).collect(),
        None => app.registry.streams().iter().map(status_json).collect(),
    };
    for v in initial {
        if socket
            .send(Message::Text(v.to_string().into()))
            .await
            .is_err()
        {
            return;
        }
    }
    let mut ping = tokio::time::interval(Duration::from_secs(15));
    ping.tick().await;
    loop {
        tokio::select! {
            ev = rx.recv() => {
                let text = match ev {
                    Ok(ev) => {
                        if stream.as_deref().is_some_and(|s| s != ev.stream().as_str()) {
                            continue;
                        }
                        event_json(&ev).to_string()
                    }
                    Err(RecvError::Lagged(n)) => json!({"type": "lagged", "missed": n}).to_string(),
                    Err(RecvError::Closed) => return,
                };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
        }
    }
}
