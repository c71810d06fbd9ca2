//! `bench_cdn`: the load behind `scripts/bench-cdn` (issue 9 §4, SC-010: a CDN cuts viewer
//! fetch time and startup by at least 30 %).
//!
//! One stream is published from an FLV file (looped at real-time pace) to a running node whose
//! `cdn.base_url` is the "near" address below. This process then builds two paths to it on
//! loopback with the delay proxy ([`cluster_tests::delay`]; these machines have no `tc netem`):
//! - direct: viewer -(far: `--far-ms` each way)- origin;
//! - edge: viewer -(near: `--near-ms`)- nginx edge (`scripts/nginx-cdn.conf`, started here with
//!   [`cluster_tests::edge`]) -(far)- origin.
//!
//! For each viewer count in `--viewers` and each mode (LL-HLS parts, TS HLS segments) it runs the
//! load generator on the direct path, then on the edge path, and reports per run: part or
//! segment fetch time (through the edge split into hits and misses by `X-Cache-Status`), startup
//! (first request -> head of the first media answer), live latency as the simulated player sees
//! it (arrival minus the media's wall-clock end from `EXT-X-PROGRAM-DATE-TIME`), requests that
//! reached the origin per second (through the edge: from the edge's access log) and the origin's
//! CPU (from `/proc`); then the reduction through the edge in percent.
//!
//! Prints one JSON object on stdout.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use cluster_tests::delay::{DelayOpts, DelayProxy};
use cluster_tests::edge::{origin_fetches_per_uri, Edge, EdgeOpts};
use cluster_tests::load::cli::{round1, Args};
use cluster_tests::load::http::{body_text, Conn};
use cluster_tests::load::m3u8::parse_media;
use cluster_tests::load::procstat::{raise_nofile_limit, CpuWindow};
use cluster_tests::load::publish::{read_flv, spawn_publisher};
use cluster_tests::load::{run, LoadConfig, Mode};
use cluster_tests::try_wait_every;
use serde_json::{json, Value};

/// `(direct - edge) / direct` in percent, one decimal.
fn reduction(direct: Option<f64>, edge: Option<f64>) -> Option<f64> {
    let (d, e) = (direct?, edge?);
    (d > 0.0).then(|| round1((d - e) / d * 100.0))
}

/// A value at a JSON path.
fn at(v: &Value, path: &[&str]) -> Option<f64> {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .and_then(Value::as_f64)
}

/// Waits until the media playlist at `path` (through `addr`) lists at least `n` segments.
async fn wait_segments(addr: SocketAddr, path: &str, n: usize) -> anyhow::Result<()> {
    try_wait_every(
        Duration::from_millis(200),
        Duration::from_secs(60),
        async || {
            let mut c = Conn::new(addr, &addr.to_string());
            let a = c.get(path, "", true, Duration::from_secs(5)).await.ok()?;
            (parse_media(&body_text(&a).ok()?).segments.len() >= n).then_some(())
        },
    )
    .await
    .map_err(|_| anyhow::anyhow!("{path} did not list {n} segments via {addr}"))
}

/// The two paths to the origin.
struct Topology {
    far_direct: DelayProxy,
    near: DelayProxy,
    /// Kept alive for the edge's upstream connections.
    _far_edge: DelayProxy,
    edge: Edge,
}

/// One load run on one path, with the origin's (and the edge's) CPU and origin requests.
async fn measured(cfg: LoadConfig, node_pid: u32, edge: Option<&Edge>) -> Value {
    let log_from = edge.map(Edge::access_log_len);
    let node_cpu = CpuWindow::start(&[node_pid]);
    let edge_cpu = edge.map(|e| CpuWindow::start(&e.pids()));
    let own_cpu = CpuWindow::start(&[std::process::id()]);
    let report = run(cfg).await;
    let (cpu, wall) = node_cpu.read();
    let (own, _) = own_cpu.read();
    let mut out = json!({
        "load": report.json,
        "origin": {
            "cpu_s": round1(cpu * 100.0) / 100.0,
            "cpu_share_of_one_core": round1(cpu / wall * 1000.0) / 1000.0,
        },
        "bench_process_cpu_share_of_one_core": round1(own / wall * 1000.0) / 1000.0,
    });
    let origin_requests = match (edge, log_from) {
        (Some(e), Some(from)) => {
            let lines = e.access_log_since(from);
            let fetched: Vec<_> = lines.iter().filter(|l| l.origin_fetch()).collect();
            let media: Vec<_> = lines.iter().filter(|l| l.is_media()).cloned().collect();
            let per_uri = origin_fetches_per_uri(&media);
            let mut statuses = serde_json::Map::new();
            for l in &lines {
                let k = if l.cache.is_empty() { "-" } else { &l.cache };
                let n = statuses.get(k).and_then(Value::as_u64).unwrap_or(0);
                statuses.insert(k.to_owned(), json!(n + 1));
            }
            let (ecpu, ewall) = edge_cpu.map_or((0.0, wall), |w| w.read());
            out["edge"] = json!({
                "log_lines": lines.len(),
                "cache_statuses": statuses,
                "media_objects": per_uri.len(),
                "origin_fetches_per_media_object_mean": if per_uri.is_empty() { 0.0 } else {
                    round1(per_uri.values().sum::<u32>() as f64 / per_uri.len() as f64 * 100.0) / 100.0
                },
                "origin_fetches_per_media_object_max": per_uri.values().max(),
                "nginx_cpu_share_of_one_core": round1(ecpu / ewall * 1000.0) / 1000.0,
            });
            fetched.len() as u64
        }
        _ => report.requests,
    };
    out["origin"]["requests"] = json!(origin_requests);
    out["origin"]["requests_per_s"] = json!(round1(origin_requests as f64 / wall));
    out
}

/// The figures of one run that the comparison uses.
fn figures(run: &Value, object: &str) -> Value {
    let l = &run["load"];
    let mut f = json!({
        "fetch_ms_p50": at(l, &["fetch_ms", object, "p50"]),
        "fetch_ms_p95": at(l, &["fetch_ms", object, "p95"]),
        "startup_ms_p50": at(l, &["startup_first_byte_ms", "p50"]),
        "startup_ms_p95": at(l, &["startup_first_byte_ms", "p95"]),
        "live_latency_ms_p50": at(l, &["media_age_ms", "p50"]),
        "live_latency_ms_p95": at(l, &["media_age_ms", "p95"]),
        "origin_requests_per_s": at(run, &["origin", "requests_per_s"]),
        "origin_cpu_share_of_one_core": at(run, &["origin", "cpu_share_of_one_core"]),
        "errors": l["errors"].clone(),
        "viewers_never_started": l["viewers_never_started"].clone(),
        "viewers_with_stall": l["viewers_with_stall"].clone(),
    });
    if let Some(c) = l.get("fetch_ms_by_cache").and_then(|c| c.get(object)) {
        let hits = at(c, &["hit", "count"]).unwrap_or(0.0);
        let misses = at(c, &["miss", "count"]).unwrap_or(0.0);
        f["fetch_ms_hit_p50"] = json!(at(c, &["hit", "p50"]));
        f["fetch_ms_hit_p95"] = json!(at(c, &["hit", "p95"]));
        f["fetch_ms_miss_p50"] = json!(at(c, &["miss", "p50"]));
        f["fetch_ms_miss_p95"] = json!(at(c, &["miss", "p95"]));
        f["hit_share"] = json!(round1(hits / (hits + misses).max(1.0) * 1000.0) / 1000.0);
    }
    f
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::from_env();
    let http: SocketAddr = a.req("--http")?.parse()?;
    let rtmp = a.req("--rtmp")?;
    let key = a.req("--key")?;
    let stream = a.req("--stream")?;
    let node_pid: u32 = a.req("--node-pid")?.parse()?;
    let near_port: u16 = a.req("--near-port")?.parse()?;
    let counts: Vec<usize> = a
        .get("--viewers")
        .unwrap_or_else(|| "1,100,1000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let modes: Vec<Mode> = a
        .get("--modes")
        .unwrap_or_else(|| "ll,ts".into())
        .split(',')
        .map(|m| match m.trim() {
            "ll" => Ok(Mode::LowLatency),
            "ts" => Ok(Mode::Ts),
            other => bail!("unknown mode {other} (ll, ts)"),
        })
        .collect::<anyhow::Result<_>>()?;
    let secs: u64 = a.num("--duration", 20)?;
    let ramp: u64 = a.num("--ramp", 5)?;
    let far = Duration::from_millis(a.num("--far-ms", 40)?);
    let near = Duration::from_millis(a.num("--near-ms", 5)?);
    let lock_s: u64 = a.num("--lock-s", 8)?;
    let tags = Arc::new(read_flv(Path::new(&a.req("--flv")?))?);
    let nofile = raise_nofile_limit();

    let far_opts = DelayOpts::new(far);
    let far_edge = DelayProxy::start(http, far_opts).await?;
    let edge = Edge::start(EdgeOpts {
        lock_s,
        ..EdgeOpts::new(far_edge.addr())
    })
    .await?;
    let topo = Topology {
        far_direct: DelayProxy::start(http, far_opts).await?,
        near: DelayProxy::bind(near_port, edge.addr(), DelayOpts::new(near)).await?,
        _far_edge: far_edge,
        edge,
    };

    let runs_total = (counts.len() * modes.len() * 2) as u64;
    let budget = Duration::from_secs(120 + runs_total * (secs + ramp + 15));
    let publisher = spawn_publisher(rtmp, key, tags, Instant::now() + budget);
    wait_segments(http, &format!("/cmaf/{stream}/source/index.m3u8"), 4).await?;

    // The origin idle with its stream (ingest and packaging only): a fixed measurement window.
    let idle = CpuWindow::start(&[node_pid]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (idle_cpu, idle_wall) = idle.read();

    let mut results = Vec::new();
    for &mode in &modes {
        let (prefix, object, name) = match mode {
            Mode::LowLatency => ("cmaf", "part", "ll_hls"),
            Mode::Ts => ("hls", "segment", "ts_hls"),
        };
        for &n in &counts {
            let cfg = |addr: SocketAddr| {
                let mut c =
                    LoadConfig::new(addr, &format!("/{prefix}/{stream}/master.m3u8"), mode, n);
                c.rendition = Some("source".into());
                c.ramp = Duration::from_secs(if n > 1 { ramp } else { 0 });
                c.duration = c.ramp + Duration::from_secs(secs);
                c
            };
            let direct = measured(cfg(topo.far_direct.addr()), node_pid, None).await;
            eprintln!("{name} {n} direct: {}", direct["load"]);
            let via_edge = measured(cfg(topo.near.addr()), node_pid, Some(&topo.edge)).await;
            eprintln!("{name} {n} edge: {}", via_edge["load"]);
            let (d, e) = (figures(&direct, object), figures(&via_edge, object));
            let mut red = serde_json::Map::new();
            for k in [
                "fetch_ms_p50",
                "fetch_ms_p95",
                "startup_ms_p50",
                "startup_ms_p95",
                "live_latency_ms_p50",
                "live_latency_ms_p95",
                "origin_requests_per_s",
                "origin_cpu_share_of_one_core",
            ] {
                red.insert(k.into(), json!(reduction(d[k].as_f64(), e[k].as_f64())));
            }
            let met = [
                "fetch_ms_p50",
                "fetch_ms_p95",
                "startup_ms_p50",
                "startup_ms_p95",
            ]
            .iter()
            .all(|k| red[*k].as_f64().is_some_and(|r| r >= 30.0));
            results.push(json!({
                "mode": name,
                "object": object,
                "viewers": n,
                "direct": d,
                "edge": e,
                "reduction_pct": red,
                "sc010_fetch_and_startup_at_least_30_pct_lower": met,
                "detail": {"direct": direct, "edge": via_edge},
            }));
        }
    }
    publisher.abort();

    let out = json!({
        "bench": "cdn",
        "machine": {
            "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
            "nofile": nofile,
        },
        "topology": {
            "direct": format!("viewer -({} ms each way)- origin", far.as_millis()),
            "edge": format!(
                "viewer -({} ms)- nginx edge -({} ms)- origin",
                near.as_millis(),
                far.as_millis()
            ),
            "delay_proxy": "tokio, per direction: reader stamps chunks (<= 16 KiB) with arrival + delay into a bounded channel (512 chunks), writer releases each at its time; no bandwidth cap; a new connection pays one round trip (handshake); no slow start, loss, jitter or reordering",
            "edge_config": "scripts/nginx-cdn.conf, 1 worker",
            "edge_lock_s": lock_s,
        },
        "duration_s_per_run": secs,
        "ramp_s": ramp,
        "origin_idle_cpu_share_of_one_core": round1(idle_cpu / idle_wall * 1000.0) / 1000.0,
        "results": results,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
