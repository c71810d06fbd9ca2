//! Analytics routes: `POST /v1/beacon` (players), `GET /v1/streams/{stream}/metrics` (the last
//! minutes at 1 s resolution) and `GET /metrics` (Prometheus text exposition).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hivecast_proto::beacon::{self, MAX_BEACON_BYTES};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::stream_name;
use super::error::{ApiError, ApiPath};
use super::ws::metrics_json;
use crate::app::App;

/// Routes of this module.
pub fn routes(app: &App) -> Router<Arc<App>> {
    // Players on another origin post beacons too (sendBeacon, fetch keepalive).
    let beacon = Router::new()
        .route("/v1/beacon", post(beacon))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BEACON_BYTES))
        .layer(
            super::cache::cors_layer(&app.config.cache)
                .allow_methods([Method::POST, Method::OPTIONS]),
        );
    Router::new()
        .merge(beacon)
        .route("/v1/streams/{stream}/metrics", get(stream_metrics))
        .route("/v1/streams/{stream}/sessions", get(stream_sessions))
        .route("/metrics", get(prometheus))
}

async fn beacon(State(app): State<Arc<App>>, body: Bytes) -> Result<StatusCode, ApiError> {
    match beacon::parse_beacon(&body) {
        Ok(events) => {
            app.analytics.beacon(&events);
            Ok(StatusCode::NO_CONTENT)
        }
        Err(e) => {
            app.analytics.rejected.fetch_add(1, Ordering::Relaxed);
            Err(ApiError::bad_request(format!("beacon: {e}")))
        }
    }
}

#[derive(Debug, Deserialize)]
struct MetricsQuery {
    seconds: Option<usize>,
}

async fn stream_metrics(
    State(app): State<Arc<App>>,
    ApiPath(stream): ApiPath<String>,
    Query(q): Query<MetricsQuery>,
) -> Result<Json<Value>, ApiError> {
    let name = stream_name(&stream)?;
    if app.registry.stream(name.as_str()).is_none() {
        return Err(ApiError::not_found(format!("no stream {name}")));
    }
    let seconds = q.seconds.unwrap_or(300).clamp(1, 86_400);
    let samples: Vec<Value> = app
        .analytics
        .history(name.as_str(), seconds)
        .iter()
        .map(|m| metrics_json(m))
        .collect();
    Ok(Json(json!({
        "stream": name.as_str(),
        "interval_ms": 1000,
        "session_timeout_ms": app.analytics.session_timeout().as_millis() as u64,
        "samples": samples,
    })))
}

#[derive(Debug, Deserialize)]
struct SessionsQuery {
    limit: Option<usize>,
}

/// The viewer sessions of a stream on this node (admin: session ids carry client addresses).
async fn stream_sessions(
    State(app): State<Arc<App>>,
    ApiPath(stream): ApiPath<String>,
    headers: axum::http::HeaderMap,
    Query(q): Query<SessionsQuery>,
) -> Result<Json<Value>, ApiError> {
    super::api::require_admin(&app, &headers)?;
    let name = stream_name(&stream)?;
    if app.registry.stream(name.as_str()).is_none() {
        return Err(ApiError::not_found(format!("no stream {name}")));
    }
    let sessions = app
        .analytics
        .sessions(name.as_str(), q.limit.unwrap_or(1000).min(10_000));
    Ok(Json(json!({
        "stream": name.as_str(),
        "node": app.config.node.id,
        "sessions": sessions,
    })))
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn line(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", label(val));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {v}");
    }
}

/// The node's metrics in the Prometheus text format 0.0.4: per live stream (cluster-wide
/// audience, the origin's ingest) and per node (requests, sessions, process).
async fn prometheus(State(app): State<Arc<App>>) -> Response {
    let mut out = String::with_capacity(4096);
    let mut f = Family { out: &mut out };
    let node = app.config.node.id.as_str();
    let latest = app.analytics.all_latest();
    let live: Vec<_> = latest
        .iter()
        .filter(|(s, _)| app.registry.stream(s).is_some_and(|r| r.status().is_live()))
        .collect();
    type Get = fn(&hivecast_actors::events::StreamMetrics) -> f64;
    let per_stream: [(&str, &str, &str, Get); 10] = [
        (
            "hivecast_stream_viewers",
            "gauge",
            "Viewer sessions playing now, summed over the nodes serving the stream.",
            |m| m.audience.concurrent_viewers as f64,
        ),
        (
            "hivecast_stream_viewers_total",
            "counter",
            "Viewer sessions that joined the stream.",
            |m| m.audience.total_viewers as f64,
        ),
        (
            "hivecast_stream_ingress_kbps",
            "gauge",
            "Ingest bitrate over the last second, kbit/s.",
            |m| m.ingress.ingress_bitrate_kbps,
        ),
        (
            "hivecast_stream_egress_kbps",
            "gauge",
            "Bytes sent to the stream's viewers over the last second, kbit/s.",
            |m| m.audience.egress_bitrate_kbps,
        ),
        (
            "hivecast_stream_fps",
            "gauge",
            "Ingest video frames per second.",
            |m| m.ingress.fps,
        ),
        (
            "hivecast_stream_dropped_frames_total",
            "counter",
            "Frames dropped by the ingest queue or the encoders.",
            |m| m.ingress.dropped_frames as f64,
        ),
        (
            "hivecast_stream_buffering_events_total",
            "counter",
            "Stalls reported by players (CMCD bs, beacons).",
            |m| m.audience.buffering_events as f64,
        ),
        (
            "hivecast_stream_stall_rate",
            "gauge",
            "Share of the viewers that stalled in the last 30 s.",
            |m| m.audience.stall_rate,
        ),
        (
            "hivecast_stream_quality_switches_total",
            "counter",
            "Rendition switches of the stream's viewers.",
            |m| m.audience.quality_switches as f64,
        ),
        (
            "hivecast_stream_health",
            "gauge",
            "Health score 0..100 (docs/ANALYTICS.md).",
            |m| m.health,
        ),
    ];
    for (name, kind, help, get) in per_stream {
        f.head(name, kind, help);
        for (s, m) in &live {
            f.line(name, &[("stream", s)], get(m));
        }
    }
    f.head(
        "hivecast_stream_rendition_viewers",
        "gauge",
        "Viewers playing each rendition of the stream.",
    );
    for (s, m) in &live {
        for (r, n) in &m.audience.quality {
            f.line(
                "hivecast_stream_rendition_viewers",
                &[("stream", s), ("rendition", r)],
                *n as f64,
            );
        }
    }
    let originated = app.live.lock().unwrap_or_else(|e| e.into_inner()).len() as f64;
    let a = &app.analytics;
    let node_label = [("node", node)];
    let per_node: [(&str, &str, &str, f64); 7] = [
        (
            "hivecast_live_streams",
            "gauge",
            "Streams this node originates now.",
            originated,
        ),
        (
            "hivecast_viewer_requests_total",
            "counter",
            "Viewer requests (playlists, segments, parts) served by this node.",
            app.requests.load(Ordering::Relaxed) as f64,
        ),
        (
            "hivecast_analytics_sessions",
            "gauge",
            "Viewer sessions tracked by this node (playing, or ended within 30 s).",
            a.tracked_sessions() as f64,
        ),
        (
            "hivecast_tokio_alive_tasks",
            "gauge",
            "Tasks alive in the node's tokio runtime (connections, requests, streams, timers).",
            super::server::alive_tasks() as f64,
        ),
        (
            "hivecast_beacons_total",
            "counter",
            "Player beacon events accepted.",
            a.beacons.load(Ordering::Relaxed) as f64,
        ),
        (
            "hivecast_analytics_rejected_total",
            "counter",
            "Malformed CMCD data or beacons (ignored).",
            a.rejected.load(Ordering::Relaxed) as f64,
        ),
        (
            "hivecast_analytics_untracked_requests_total",
            "counter",
            "Viewer requests of new sessions beyond analytics.max_sessions (served, not tracked).",
            a.untracked_requests.load(Ordering::Relaxed) as f64,
        ),
    ];
    for (name, kind, help, v) in per_node {
        f.head(name, kind, help);
        f.line(name, &node_label, v);
    }
    if let Some((cpu, rss, fds)) = process_stats() {
        for (name, kind, help, v) in [
            (
                "process_cpu_seconds_total",
                "counter",
                "User and system CPU time of this process, seconds.",
                cpu,
            ),
            (
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory of this process, bytes.",
                rss,
            ),
            ("process_open_fds", "gauge", "Open file descriptors.", fds),
        ] {
            f.head(name, kind, help);
            f.line(name, &[], v);
        }
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        out,
    )
        .into_response()
}

/// CPU seconds, RSS bytes and open descriptors of this process (Linux `/proc`).
fn process_stats() -> Option<(f64, f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let rss_pages = f.get(21)?.parse::<f64>().ok()?;
    let fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as f64;
    // Clock ticks are 100 per second and pages 4 KiB on the Linux targets this runs on.
    Some((ticks / 100.0, rss_pages * 4096.0, fds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn families_render_in_the_text_format() {
        let mut out = String::new();
        let mut f = Family { out: &mut out };
        f.head("x_total", "counter", "Things.");
        f.line("x_total", &[("stream", "demo"), ("rendition", "480p")], 3.0);
        f.line("x_total", &[], 1.5);
        assert_eq!(
            out,
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total{stream=\"demo\",rendition=\"480p\"} 3\nx_total 1.5\n"
        );
    }
}
