//! The soak (issue 8 §3): `streams` streams whose publishers reconnect every `republish_every`
//! (staggered, so some stream is always starting or ending), each with its share of `viewers`
//! simulated players (even streams LL-HLS, odd ones TS HLS) that play while the stream is live,
//! for `duration`; meanwhile the node's memory, CPU, open descriptors, threads and tokio tasks
//! are sampled every `sample_every`.
//!
//! Growth is judged after `warmup`: the median of the samples in the first window after it
//! against the median of the samples in the last window (a window is `republish_every`, at least
//! three samples), so the sawtooth of streams starting and ending does not read as a trend; a
//! least-squares slope over every sample after the warm-up is reported beside it.
//!
//! Used by `scripts/soak` (release build, an hour) and `tests/soak.rs` (CI, three minutes).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hivecast_proto::flv::file::FlvTag;
use serde_json::{json, Value};

use crate::load::cli::{create_key, round1};
use crate::load::http::{body_text, Conn};
use crate::load::m3u8::parse_media;
use crate::load::procstat::{cpu_seconds, memory_bytes, open_fds, rss_bytes};
use crate::load::publish::spawn_publisher;
use crate::load::{run, LoadConfig, Mode};

/// What to run.
#[derive(Clone)]
pub struct SoakConfig {
    /// The node's HTTP address.
    pub http: SocketAddr,
    /// The node's RTMP address.
    pub rtmp: String,
    /// Its admin token (to create the streams' keys).
    pub admin_token: String,
    /// Its process id (for `/proc`).
    pub node_pid: u32,
    /// Streams published at once.
    pub streams: usize,
    /// Viewers in all, spread evenly over the streams.
    pub viewers: usize,
    /// Whole run.
    pub duration: Duration,
    /// Each publisher disconnects (unpublishes) and publishes again this often.
    pub republish_every: Duration,
    /// Sampling period of the node's resources.
    pub sample_every: Duration,
    /// Samples before this are not judged (rings filling, first sessions).
    pub warmup: Duration,
    /// The FLV tags the publishers loop.
    pub tags: Arc<Vec<FlvTag>>,
}

/// One sample of the node.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// Seconds since the soak started.
    pub t_s: f64,
    /// RSS without shared memory, plus memfd segments (MB).
    pub memory_mb: f64,
    /// Plain VmRSS (MB).
    pub rss_mb: f64,
    /// Share of one core used since the previous sample.
    pub cpu_share: f64,
    /// Open file descriptors.
    pub fds: f64,
    /// OS threads.
    pub threads: f64,
    /// Alive tokio tasks (`hivecast_tokio_alive_tasks` on `/metrics`).
    pub tasks: f64,
    /// Streams the node originates (`hivecast_live_streams`).
    pub live_streams: f64,
    /// Viewer sessions it tracks (`hivecast_analytics_sessions`).
    pub sessions: f64,
}

/// The outcome.
#[derive(Debug, Clone)]
pub struct SoakReport {
    /// Everything, as printed by `scripts/soak`.
    pub json: Value,
    /// Viewer request errors.
    pub errors: u64,
    /// Viewers whose buffer ran dry after they started.
    pub viewers_with_stall: usize,
    /// Viewers that never received media.
    pub viewers_never_started: usize,
    /// Publishes that failed (refused, or the connection broke).
    pub publish_failures: usize,
    /// Publish cycles that completed.
    pub cycles: usize,
    /// Growth of the median memory from the first window after warm-up to the last, percent.
    pub memory_growth_pct: f64,
    /// The same for open descriptors.
    pub fds_growth_pct: f64,
    /// The same for tokio tasks.
    pub tasks_growth_pct: f64,
    /// The same for OS threads.
    pub threads_growth_pct: f64,
}

#[derive(Default)]
struct StreamTotals {
    cycles: usize,
    requests: u64,
    errors: BTreeMap<String, u64>,
    stalled: usize,
    never: usize,
    viewer_runs: usize,
    publish_failures: Vec<String>,
    media_age_p95_max: f64,
}

/// `hivecast_*` gauges from the node's Prometheus page (unlabelled or node-labelled lines).
async fn node_gauges(conn: &mut Conn) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(a) = conn.get("/metrics", "", true, Duration::from_secs(5)).await else {
        return out;
    };
    let text = body_text(&a).unwrap_or_default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = name.split('{').next().unwrap_or(name);
        if let Ok(v) = value.parse::<f64>() {
            *out.entry(name.to_owned()).or_default() += v;
        }
    }
    out
}

fn threads(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Threads:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// The media playlist of `stream` as its viewers play it.
fn media_path(stream: &str, mode: Mode) -> String {
    match mode {
        Mode::LowLatency => format!("/cmaf/{stream}/source/index.m3u8"),
        Mode::Ts => format!("/hls/{stream}/source/index.m3u8"),
    }
}

fn master_path(stream: &str, mode: Mode) -> String {
    match mode {
        Mode::LowLatency => format!("/cmaf/{stream}/master.m3u8"),
        Mode::Ts => format!("/hls/{stream}/master.m3u8"),
    }
}

/// The status of `stream` on the node (`ACTIVE`, `ENDED_GRACEFULLY`, ...).
async fn stream_status(conn: &mut Conn, stream: &str) -> Option<String> {
    let a = conn
        .get(
            &format!("/v1/streams/{stream}"),
            "",
            true,
            Duration::from_secs(5),
        )
        .await
        .ok()?;
    let v: Value = serde_json::from_slice(&a.body).ok()?;
    v["status"].as_str().map(str::to_owned)
}

/// Whether the media playlist at `path` is live with 3 segments within `limit` (polled every
/// 100 ms).
async fn playable(conn: &mut Conn, path: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(a) = conn.get(path, "", true, Duration::from_secs(5)).await {
            let text = body_text(&a).unwrap_or_default();
            // Not the previous publish's playlist, still served with ENDLIST for a while.
            if parse_media(&text).segments.len() >= 3 && !text.contains("#EXT-X-ENDLIST") {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await; // poll period
    }
    false
}

/// Whether `stream` leaves ACTIVE / PENDING_INGEST within `limit` (polled every 100 ms).
async fn ended(conn: &mut Conn, stream: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match stream_status(conn, stream).await.as_deref() {
            Some("ACTIVE" | "PENDING_INGEST") | None => {}
            Some(_) => return true,
        }
        tokio::time::sleep(Duration::from_millis(100)).await; // poll period
    }
    false
}

/// One stream's publish cycles until `end`.
async fn stream_loop(cfg: Arc<SoakConfig>, i: usize, t0: Instant, end: Instant) -> StreamTotals {
    let mut tot = StreamTotals::default();
    let stream = format!("soak{i:02}");
    let mode = if i.is_multiple_of(2) {
        Mode::LowLatency
    } else {
        Mode::Ts
    };
    let per = cfg.viewers / cfg.streams.max(1) + usize::from(i < cfg.viewers % cfg.streams.max(1));
    let key = match create_key(cfg.http, &cfg.admin_token, &stream).await {
        Ok(k) => k,
        Err(e) => {
            tot.publish_failures.push(format!("{stream}: key: {e:#}"));
            return tot;
        }
    };
    let mut conn = Conn::new(cfg.http, &cfg.http.to_string());
    // Staggered first cycles: stream i first republishes after (i + 1) / streams of a period.
    let mut cycle_end = t0
        + cfg
            .republish_every
            .mul_f64((i + 1) as f64 / cfg.streams.max(1) as f64);
    while Instant::now() + Duration::from_secs(5) < end {
        cycle_end = cycle_end.min(end);
        let publisher = spawn_publisher(cfg.rtmp.clone(), key.clone(), cfg.tags.clone(), cycle_end);
        let path = media_path(&stream, mode);
        let playable = playable(&mut conn, &path, Duration::from_secs(20)).await;
        if !playable {
            *tot.errors
                .entry("stream_not_playable_within_20s".into())
                .or_default() += 1;
        }
        // Viewers play while the stream is live and leave half a second before it ends.
        let left = cycle_end.saturating_duration_since(Instant::now());
        if playable && per > 0 && left > Duration::from_secs(5) {
            let mut c = LoadConfig::new(cfg.http, &master_path(&stream, mode), mode, per);
            c.ramp = Duration::from_secs(2);
            c.duration = left - Duration::from_millis(500);
            c.cmcd = true;
            let r = run(c).await;
            tot.viewer_runs += 1;
            tot.requests += r.requests;
            tot.stalled += r.viewers_with_stall;
            tot.never += r.viewers_never_started;
            if let Some(errs) = r.json["errors"].as_object() {
                for (k, v) in errs {
                    *tot.errors.entry(k.clone()).or_default() += v.as_u64().unwrap_or(0);
                }
            }
            if let Some(p) = r.json["media_age_ms"]["p95"].as_f64() {
                tot.media_age_p95_max = tot.media_age_p95_max.max(p);
            }
        }
        match publisher.await {
            Ok(Ok(())) => tot.cycles += 1,
            Ok(Err(e)) => tot.publish_failures.push(format!("{stream}: {e:#}")),
            Err(e) => tot.publish_failures.push(format!("{stream}: task: {e}")),
        }
        // The unpublish is through the registry before the next publish of the same key.
        let ended = ended(&mut conn, &stream, Duration::from_secs(10)).await;
        if !ended {
            *tot.errors
                .entry("stream_not_ended_within_10s".into())
                .or_default() += 1;
        }
        cycle_end = Instant::now() + cfg.republish_every;
    }
    tot
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// Least-squares slope of `(x, y)`, per unit of x.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 3 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// First-window and last-window medians of one series after the warm-up, their growth in
/// percent, and the slope per hour.
fn trend(samples: &[Sample], warmup_s: f64, window_s: f64, f: impl Fn(&Sample) -> f64) -> Value {
    let after: Vec<&Sample> = samples.iter().filter(|s| s.t_s >= warmup_s).collect();
    let (Some(first), Some(last)) = (after.first(), after.last()) else {
        return json!(null);
    };
    let (t_first, t_last) = (first.t_s, last.t_s);
    let early = median(
        after
            .iter()
            .filter(|s| s.t_s <= t_first + window_s)
            .map(|s| f(s))
            .collect(),
    );
    let late = median(
        after
            .iter()
            .filter(|s| s.t_s >= t_last - window_s)
            .map(|s| f(s))
            .collect(),
    );
    let growth = match (early, late) {
        (Some(e), Some(l)) if e > 0.0 => Some(((l - e) / e * 10_000.0).round() / 100.0),
        _ => None,
    };
    let per_hour = slope(
        &after
            .iter()
            .map(|s| (s.t_s / 3600.0, f(s)))
            .collect::<Vec<_>>(),
    );
    json!({
        "first_window_median": early.map(round1),
        "last_window_median": late.map(round1),
        "growth_pct": growth,
        "slope_per_hour": per_hour.map(round1),
        "min": after.iter().map(|s| f(s)).fold(f64::INFINITY, f64::min),
        "max": after.iter().map(|s| f(s)).fold(f64::NEG_INFINITY, f64::max),
    })
}

/// Runs the soak.
pub async fn soak(cfg: SoakConfig) -> SoakReport {
    let cfg = Arc::new(cfg);
    let t0 = Instant::now();
    let end = t0 + cfg.duration;
    let mut streams = tokio::task::JoinSet::new();
    for i in 0..cfg.streams {
        streams.spawn(stream_loop(cfg.clone(), i, t0, end));
    }
    let mut samples: Vec<Sample> = Vec::new();
    let mut conn = Conn::new(cfg.http, &cfg.http.to_string());
    let mut tick = tokio::time::interval(cfg.sample_every);
    let mut last_cpu = (cpu_seconds(cfg.node_pid).unwrap_or(0.0), Instant::now());
    let mut totals = Vec::new();
    loop {
        tokio::select! {
            r = streams.join_next() => match r {
                Some(Ok(t)) => totals.push(t),
                Some(Err(e)) => panic!("soak stream task failed: {e}"),
                None => break,
            },
            _ = tick.tick() => {
                let pid = cfg.node_pid;
                let cpu = cpu_seconds(pid).unwrap_or(last_cpu.0);
                let now = Instant::now();
                let dt = (now - last_cpu.1).as_secs_f64();
                let share = if dt > 0.0 { (cpu - last_cpu.0) / dt } else { 0.0 };
                last_cpu = (cpu, now);
                let g = node_gauges(&mut conn).await;
                samples.push(Sample {
                    t_s: round1((now - t0).as_secs_f64()),
                    memory_mb: round1(memory_bytes(pid) as f64 / 1e6),
                    rss_mb: round1(rss_bytes(pid).map_or(0, |r| r.0) as f64 / 1e6),
                    cpu_share: (share * 1000.0).round() / 1000.0,
                    fds: open_fds(pid).unwrap_or(0) as f64,
                    threads: threads(pid),
                    tasks: g.get("hivecast_tokio_alive_tasks").copied().unwrap_or(0.0),
                    live_streams: g.get("hivecast_live_streams").copied().unwrap_or(0.0),
                    sessions: g.get("hivecast_analytics_sessions").copied().unwrap_or(0.0),
                });
            }
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let warmup_s = cfg.warmup.as_secs_f64();
    let window_s = cfg
        .republish_every
        .as_secs_f64()
        .max(cfg.sample_every.as_secs_f64() * 3.0);
    let mem = trend(&samples, warmup_s, window_s, |s| s.memory_mb);
    let rss = trend(&samples, warmup_s, window_s, |s| s.rss_mb);
    let fds = trend(&samples, warmup_s, window_s, |s| s.fds);
    let tasks = trend(&samples, warmup_s, window_s, |s| s.tasks);
    let thr = trend(&samples, warmup_s, window_s, |s| s.threads);
    let cpu_mean = {
        let v: Vec<f64> = samples
            .iter()
            .filter(|s| s.t_s >= warmup_s)
            .map(|s| s.cpu_share)
            .collect();
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let (mut requests, mut stalled, mut never, mut cycles, mut runs) = (0, 0, 0, 0, 0);
    let mut failures = Vec::new();
    let mut age_max: f64 = 0.0;
    for t in totals {
        requests += t.requests;
        stalled += t.stalled;
        never += t.never;
        cycles += t.cycles;
        runs += t.viewer_runs;
        failures.extend(t.publish_failures);
        age_max = age_max.max(t.media_age_p95_max);
        for (k, v) in t.errors {
            *errors.entry(k).or_default() += v;
        }
    }
    let n_errors: u64 = errors.values().sum();
    let growth = |v: &Value| v["growth_pct"].as_f64().unwrap_or(0.0);
    let series: Vec<Value> = samples
        .iter()
        .map(|s| {
            json!([
                s.t_s,
                s.memory_mb,
                s.rss_mb,
                s.cpu_share,
                s.fds,
                s.threads,
                s.tasks,
                s.live_streams,
                s.sessions
            ])
        })
        .collect();
    let json = json!({
        "streams": cfg.streams,
        "viewers": cfg.viewers,
        "duration_s": round1(elapsed),
        "republish_every_s": cfg.republish_every.as_secs_f64(),
        "sample_every_s": cfg.sample_every.as_secs_f64(),
        "warmup_s": warmup_s,
        "judging_window_s": window_s,
        "publish_cycles": cycles,
        "viewer_runs": runs,
        "requests": requests,
        "errors": errors,
        "viewers_with_stall": stalled,
        "viewers_never_started": never,
        "publish_failures": failures,
        "media_age_p95_ms_worst_run": age_max,
        "node_cpu_share_of_one_core_mean": (cpu_mean * 1000.0).round() / 1000.0,
        "memory_mb": mem,
        "rss_mb": rss,
        "open_fds": fds,
        "tokio_tasks": tasks,
        "threads": thr,
        "samples_columns": ["t_s", "memory_mb", "rss_mb", "cpu_share_of_one_core", "fds", "threads", "tokio_tasks", "live_streams", "sessions"],
        "samples": series,
    });
    SoakReport {
        errors: n_errors,
        viewers_with_stall: stalled,
        viewers_never_started: never,
        publish_failures: json["publish_failures"].as_array().map_or(0, Vec::len),
        cycles,
        memory_growth_pct: growth(&json["memory_mb"]),
        fds_growth_pct: growth(&json["open_fds"]),
        tasks_growth_pct: growth(&json["tokio_tasks"]),
        threads_growth_pct: growth(&json["threads"]),
        json,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: f64, m: f64) -> Sample {
        Sample {
            t_s: t,
            memory_mb: m,
            ..Sample::default()
        }
    }

    #[test]
    fn trend_compares_window_medians_after_the_warmup() {
        // Warm-up ramp, then a sawtooth around 100 that ends around 110.
        let mut v = vec![s(0.0, 10.0), s(10.0, 50.0)];
        for (i, m) in [100.0, 104.0, 98.0, 101.0, 103.0, 109.0, 112.0, 110.0]
            .iter()
            .enumerate()
        {
            v.push(s(20.0 + 10.0 * i as f64, *m));
        }
        let t = trend(&v, 20.0, 20.0, |s| s.memory_mb);
        assert_eq!(t["first_window_median"], json!(100.0));
        assert_eq!(t["last_window_median"], json!(110.0));
        assert_eq!(t["growth_pct"], json!(10.0));
        assert!(t["slope_per_hour"].as_f64().unwrap() > 0.0);
        assert_eq!(t["min"], json!(98.0));
    }

    #[test]
    fn trend_without_samples_after_the_warmup_is_null() {
        assert_eq!(
            trend(&[s(1.0, 1.0)], 5.0, 5.0, |s| s.memory_mb),
            json!(null)
        );
    }

    #[test]
    fn slope_of_a_line() {
        let pts: Vec<(f64, f64)> = (0..10)
            .map(|x| (f64::from(x), 2.0 * f64::from(x) + 1.0))
            .collect();
        assert!((slope(&pts).unwrap() - 2.0).abs() < 1e-9);
        assert_eq!(slope(&pts[..2]), None);
    }
}
