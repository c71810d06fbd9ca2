//! `bench_viewers`: the load behind `scripts/bench-viewers` and `scripts/bench-streams`.
//!
//! `bench_viewers viewers ...`: one stream published from an FLV file (looped, real-time pace)
//! to a running node; then, in this order and in the same run:
//! 1. the node idle with the stream (baseline CPU),
//! 2. `--viewers` TS-HLS viewers against the node,
//! 3. the same viewers against nginx serving the same playlists and segments from disk (a mirror
//!    task copies the node's playlist and segments into `--nginx-root` as they appear, segment
//!    first, playlist by atomic rename, as nginx-rtmp writes them), when `--nginx-port` is given,
//! 4. LL-HLS viewers against the node for each count in `--ll-viewers`.
//!
//! `bench_viewers streams ...`: `--streams` keys and publishers, each stream with
//! `--viewers-per-stream` LL-HLS viewers; node CPU, per-stream part latency, errors; then one
//! more publish, which must be refused when the node has a stream limit.
//!
//! Prints one JSON object on stdout.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cluster_tests::load::cli::{create_key, machine, round1, Args};
use cluster_tests::load::http::{body_text, Conn};
use cluster_tests::load::m3u8::{parse_master, parse_media};
use cluster_tests::load::procstat::{memory_bytes, open_fds, CpuWindow};
use cluster_tests::load::publish::{read_flv, spawn_publisher, RtmpPublisher};
use cluster_tests::load::{run, LoadConfig, LoadReport, Mode};
use cluster_tests::try_wait_every;
use serde_json::{json, Value};

/// GET `path` on `addr` (a fresh connection), body as text.
async fn get_text(addr: SocketAddr, path: &str) -> Option<String> {
    let mut c = Conn::new(addr, &addr.to_string());
    let a = c.get(path, "", true, Duration::from_secs(5)).await.ok()?;
    body_text(&a).ok()
}

/// Wait until the media playlist at `path` lists at least `n` segments.
async fn wait_segments(
    addr: SocketAddr,
    path: &str,
    n: usize,
    limit: Duration,
) -> anyhow::Result<()> {
    try_wait_every(Duration::from_millis(200), limit, async || {
        let t = get_text(addr, path).await?;
        (parse_media(&t).segments.len() >= n).then_some(())
    })
    .await
    .map_err(|_| anyhow::anyhow!("{path} did not list {n} segments within {limit:?}"))
}

/// Copy the node's multivariant playlist, one rendition's media playlist and its segments under
/// `root` as they appear (what nginx-rtmp's `hls` module does on disk): each new segment is
/// written before the playlist that names it, the playlist by atomic rename; segments that left
/// the playlist are deleted a little later.
async fn mirror(addr: SocketAddr, stream: String, rendition: String, root: PathBuf) {
    let dir = root.join("hls").join(&stream);
    let rdir = dir.join(&rendition);
    if let Err(e) = std::fs::create_dir_all(&rdir) {
        eprintln!("mirror: {e}");
        return;
    }
    let master_path = format!("/hls/{stream}/master.m3u8");
    let media_path = format!("/hls/{stream}/{rendition}/index.m3u8");
    let mut conn = Conn::new(addr, &addr.to_string());
    let mut have: std::collections::VecDeque<String> = Default::default();
    let mut last_playlist = String::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let write = |path: &Path, bytes: &[u8]| -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)
    };
    loop {
        tick.tick().await;
        if !dir.join("master.m3u8").exists() {
            if let Ok(a) = conn
                .get(&master_path, "", true, Duration::from_secs(5))
                .await
            {
                // Keep only the mirrored rendition in the copy's master.
                let text = body_text(&a).unwrap_or_default();
                if parse_master(&text)
                    .iter()
                    .any(|v| v.uri.starts_with(&format!("{rendition}/")))
                {
                    let _ = write(&dir.join("master.m3u8"), text.as_bytes());
                }
            }
        }
        let Ok(a) = conn
            .get(&media_path, "", true, Duration::from_secs(5))
            .await
        else {
            continue;
        };
        let text = body_text(&a).unwrap_or_default();
        if text == last_playlist {
            continue;
        }
        let p = parse_media(&text);
        let mut ok = true;
        for seg in &p.segments {
            if have.contains(&seg.uri) {
                continue;
            }
            let path = format!("/hls/{stream}/{rendition}/{}", seg.uri);
            match conn.get(&path, "", true, Duration::from_secs(5)).await {
                Ok(a) => {
                    if write(&rdir.join(&seg.uri), &a.body).is_err() {
                        ok = false;
                    }
                    have.push_back(seg.uri.clone());
                }
                Err(_) => ok = false,
            }
        }
        if ok && write(&rdir.join("index.m3u8"), text.as_bytes()).is_ok() {
            last_playlist = text;
        }
        // Keep a few segments beyond the window for viewers still fetching them.
        while have.len() > p.segments.len() + 4 {
            if let Some(old) = have.pop_front() {
                let _ = std::fs::remove_file(rdir.join(old));
            }
        }
    }
}

/// Run a load while sampling the server's CPU and memory; returns the load's JSON with a
/// `server` section.
async fn measured(cfg: LoadConfig, pids: &[u32], baseline_cpu_per_s: f64) -> (LoadReport, Value) {
    let w = CpuWindow::start(pids);
    let rss0 = w.rss();
    let own = CpuWindow::start(&[std::process::id()]);
    // Memory every 5 s while the load runs (flat is the goal).
    let mut load = tokio::spawn(run(cfg));
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let report = loop {
        tokio::select! {
            r = &mut load => break r.expect("load task"),
            _ = tick.tick() => samples.push(w.rss()),
        }
    };
    let (cpu, wall) = w.read();
    let (own_cpu, _) = own.read();
    let rss_end = w.rss();
    let req = report.requests.max(1) as f64;
    let net = (cpu - baseline_cpu_per_s * wall).max(0.0);
    let server = json!({
        "cpu_s": round1(cpu * 100.0) / 100.0,
        "cpu_share_of_one_core": round1(cpu / wall * 1000.0) / 1000.0,
        "cpu_us_per_request": round1(cpu / req * 1e6),
        "cpu_s_per_1000_requests": round1(cpu / req * 1000.0 * 1000.0) / 1000.0,
        "cpu_us_per_request_minus_idle": round1(net / req * 1e6),
        "memory_mb_start": round1(rss0 as f64 / 1e6),
        "memory_mb_end": round1(rss_end as f64 / 1e6),
        "memory_mb_peak_sampled": round1(samples.iter().copied().max().unwrap_or(rss_end).max(rss_end) as f64 / 1e6),
        "memory_mb_every_5s": samples.iter().map(|r| round1(*r as f64 / 1e6)).collect::<Vec<_>>(),
        "load_generator_cpu_s": round1(own_cpu * 10.0) / 10.0,
        "open_fds_end": pids.iter().filter_map(|p| open_fds(*p)).sum::<usize>(),
    });
    (report, server)
}

async fn viewers(a: &Args) -> anyhow::Result<Value> {
    let http: SocketAddr = a.req("--http")?.parse()?;
    let rtmp = a.req("--rtmp")?;
    let key = a.req("--key")?;
    let stream = a.req("--stream")?;
    let rendition = a.get("--rendition").unwrap_or_else(|| "source".into());
    let node_pid: u32 = a.req("--node-pid")?.parse()?;
    let n: usize = a.num("--viewers", 10_000)?;
    let secs: u64 = a.num("--duration", 60)?;
    let ramp: u64 = a.num("--ramp", 10)?;
    let ll_counts: Vec<usize> = a
        .get("--ll-viewers")
        .unwrap_or_default()
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let ll_secs: u64 = a.num("--ll-duration", 30)?;
    let tags = Arc::new(read_flv(Path::new(&a.req("--flv")?))?);

    let nginx = match a.get("--nginx-port") {
        Some(p) => Some((
            SocketAddr::from(([127, 0, 0, 1], p.parse()?)),
            PathBuf::from(a.req("--nginx-root")?),
            a.req("--nginx-pids")?
                .split(',')
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>(),
        )),
        None => None,
    };
    let phases = 1 + u64::from(nginx.is_some()) + ll_counts.len() as u64;
    let budget =
        Duration::from_secs(60 + phases * (secs + ramp + 20) + ll_counts.len() as u64 * ll_secs);
    let publisher = spawn_publisher(rtmp, key, tags, Instant::now() + budget);
    let media = format!("/hls/{stream}/{rendition}/index.m3u8");
    wait_segments(http, &media, 4, Duration::from_secs(60)).await?;

    // Baseline: the node ingesting and packaging, nobody watching.
    // A fixed measurement window, not a wait for anything.
    let idle = CpuWindow::start(&[node_pid]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (idle_cpu, idle_wall) = idle.read();
    let idle_rate = idle_cpu / idle_wall;

    let mk = |addr: SocketAddr, mode: Mode, viewers: usize, secs: u64| {
        let prefix = if mode == Mode::Ts { "hls" } else { "cmaf" };
        let mut c = LoadConfig::new(
            addr,
            &format!("/{prefix}/{stream}/master.m3u8"),
            mode,
            viewers,
        );
        c.rendition = Some(rendition.clone());
        c.ramp = Duration::from_secs(ramp);
        c.duration = Duration::from_secs(ramp + secs);
        c
    };

    let mut mirror_task = None;
    if let Some((_, root, _)) = &nginx {
        mirror_task = Some(tokio::spawn(mirror(
            http,
            stream.clone(),
            rendition.clone(),
            root.clone(),
        )));
    }

    let (hc, hc_server) = measured(mk(http, Mode::Ts, n, secs), &[node_pid], idle_rate).await;
    eprintln!("hivecast TS: {}", hc.json);
    let mut out = json!({
        "bench": "viewers",
        "machine": machine(),
        "stream": {"name": stream, "rendition": rendition},
        "node_idle_cpu_share_of_one_core": round1(idle_rate * 1000.0) / 1000.0,
        "hivecast_ts": {"load": hc.json, "server": hc_server},
    });

    if let Some((addr, root, pids)) = &nginx {
        wait_segments(addr.to_owned(), &media, 4, Duration::from_secs(30))
            .await
            .with_context(|| format!("nginx at {addr} serving {}", root.display()))?;
        let (ng, ng_server) = measured(mk(*addr, Mode::Ts, n, secs), pids, 0.0).await;
        eprintln!("nginx TS: {}", ng.json);
        let ratio = |path: &[&str]| -> Option<f64> {
            let get = |v: &Value| {
                path.iter()
                    .try_fold(v, |v, k| v.get(*k))
                    .and_then(Value::as_f64)
            };
            let h = get(&out["hivecast_ts"])?;
            let g = get(&json!({"load": ng.json, "server": ng_server}))?;
            (g > 0.0).then(|| (h / g * 1000.0).round() / 1000.0)
        };
        let ratios = json!({
            "cpu_per_request": ratio(&["server", "cpu_us_per_request"]),
            "cpu_per_request_minus_idle": ratio(&["server", "cpu_us_per_request_minus_idle"]),
            "segment_fetch_p99": ratio(&["load", "fetch_ms", "segment", "p99"]),
            "playlist_fetch_p99": ratio(&["load", "fetch_ms", "playlist", "p99"]),
        });
        out["nginx_ts"] = json!({"load": ng.json, "server": ng_server});
        out["ratio_hivecast_over_nginx"] = ratios;
    }
    if let Some(t) = mirror_task {
        t.abort();
    }

    let mut ll = Vec::new();
    for &count in &ll_counts {
        let (r, server) = measured(
            mk(http, Mode::LowLatency, count, ll_secs),
            &[node_pid],
            idle_rate,
        )
        .await;
        eprintln!("hivecast LL-HLS {count}: {}", r.json);
        ll.push(json!({"load": r.json, "server": server}));
    }
    out["hivecast_ll_hls"] = Value::Array(ll);
    publisher.abort();
    Ok(out)
}

/// p50/p95/max of `v` (ms).
fn spread(mut v: Vec<f64>) -> Value {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        v.get(((v.len() as f64 - 1.0) * q).round() as usize)
            .copied()
    };
    json!({"count": v.len(), "p50": at(0.5).map(round1), "p95": at(0.95).map(round1), "max": v.last().copied().map(round1)})
}

/// Analytics benchmark (issue 5): (1) event-to-visible delay: `--joins` viewers join one at a
/// time (one playlist request with a CMCD session id) and leave (beacon `end`); each time, the
/// delay until the stream's WebSocket `metrics` shows the count go up, and down; (2) with
/// `--viewers` > 0, that many TS viewers sending CMCD for `--duration` s: the node's CPU per 1,000
/// requests (the script runs this against a node with analytics on and one with it off).
async fn analytics(a: &Args) -> anyhow::Result<Value> {
    use futures_util::StreamExt;
    let http: SocketAddr = a.req("--http")?.parse()?;
    let rtmp = a.req("--rtmp")?;
    let token = a.req("--admin-token")?;
    let node_pid: u32 = a.req("--node-pid")?.parse()?;
    let joins: usize = a.num("--joins", 0)?;
    let n: usize = a.num("--viewers", 0)?;
    let secs: u64 = a.num("--duration", 30)?;
    let stream = "analytics";
    let tags = Arc::new(read_flv(Path::new(&a.req("--flv")?))?);
    let key = create_key(http, &token, stream).await?;
    let budget = Duration::from_secs(120 + secs + joins as u64 * 5);
    let _publisher = spawn_publisher(rtmp, key, tags, Instant::now() + budget);
    wait_segments(
        http,
        &format!("/hls/{stream}/source/index.m3u8"),
        4,
        Duration::from_secs(60),
    )
    .await?;
    let mut out = json!({"bench": "analytics", "machine": machine()});

    if joins > 0 {
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("ws://{http}/v1/streams/{stream}/events"))
                .await?;
        // The newest viewer count, from a task that reads the socket.
        let (tx, mut rx) = tokio::sync::watch::channel((Instant::now(), u64::MAX));
        tokio::spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
                    let v: Value = serde_json::from_str(&t).unwrap_or_default();
                    if v["type"] == "metrics" {
                        let c = v["concurrent_viewers"].as_u64().unwrap_or(u64::MAX);
                        let _ = tx.send((Instant::now(), c));
                    }
                }
            }
        });
        let client = reqwest::Client::new();
        let (mut join_ms, mut leave_ms) = (Vec::new(), Vec::new());
        for i in 0..joins {
            // From a quiet state: 0 viewers.
            tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|(_, c)| *c == 0))
                .await
                .context("the count back at 0")??;
            // Joins at a uniformly spread phase of the 1 s sampling: without it every join would
            // follow a sample by the same few ms (the previous leave was seen at a sample).
            // (379 is prime to 1000: 20 joins land on 20 different phases in [0, 1 s).)
            tokio::time::sleep(Duration::from_millis((i as u64 * 379) % 1000)).await;
            let sid = format!("bench-{i}-{}", std::process::id());
            let t0 = Instant::now();
            client
                .get(format!("http://{http}/hls/{stream}/source/index.m3u8"))
                .header("CMCD-Session", format!("sid=\"{sid}\""))
                .send()
                .await?;
            let (at, _) = *tokio::time::timeout(
                Duration::from_secs(10),
                rx.wait_for(|(at, c)| *at > t0 && *c == 1),
            )
            .await
            .context("join visible")??;
            join_ms.push((at - t0).as_secs_f64() * 1000.0);
            let t1 = Instant::now();
            client
                .post(format!("http://{http}/v1/beacon"))
                .body(json!({"sid": sid, "stream": stream, "event": "end"}).to_string())
                .send()
                .await?;
            let (at, _) = *tokio::time::timeout(
                Duration::from_secs(10),
                rx.wait_for(|(at, c)| *at > t1 && *c == 0),
            )
            .await
            .context("leave visible")??;
            leave_ms.push((at - t1).as_secs_f64() * 1000.0);
        }
        out["join_to_visible_ms"] = spread(join_ms);
        out["leave_to_visible_ms"] = spread(leave_ms);
    }

    if n > 0 {
        let idle = CpuWindow::start(&[node_pid]);
        tokio::time::sleep(Duration::from_secs(5)).await; // a fixed measurement window
        let (idle_cpu, idle_wall) = idle.read();
        let mut c = LoadConfig::new(http, &format!("/hls/{stream}/master.m3u8"), Mode::Ts, n);
        c.rendition = Some("source".into());
        c.cmcd = true;
        c.ramp = Duration::from_secs(5);
        c.duration = Duration::from_secs(5 + secs);
        let (report, server) = measured(c, &[node_pid], idle_cpu / idle_wall).await;
        out["viewers"] = json!({"viewers": n, "load": report.json, "server": server});
        let metrics = reqwest::get(format!("http://{http}/metrics"))
            .await?
            .text()
            .await?;
        out["sessions_tracked_at_end"] = json!(metrics
            .lines()
            .find_map(|l| l.strip_prefix("hivecast_analytics_sessions{node=\"node1\"} "))
            .and_then(|v| v.parse::<f64>().ok()));
    }
    Ok(out)
}

async fn streams(a: &Args) -> anyhow::Result<Value> {
    let http: SocketAddr = a.req("--http")?.parse()?;
    let rtmp = a.req("--rtmp")?;
    let token = a.req("--admin-token")?;
    let node_pid: u32 = a.req("--node-pid")?.parse()?;
    let count: usize = a.num("--streams", 100)?;
    let per: usize = a.num("--viewers-per-stream", 3)?;
    let secs: u64 = a.num("--duration", 60)?;
    let ramp: u64 = a.num("--ramp", 20)?;
    let limit: usize = a.num("--limit", 0)?;
    let tags = Arc::new(read_flv(Path::new(&a.req("--flv")?))?);

    let mut keys = Vec::new();
    for i in 0..=count {
        keys.push(create_key(http, &token, &format!("s{i:03}")).await?);
    }
    let idle = CpuWindow::start(&[node_pid]);
    let rss_before = memory_bytes(node_pid);
    // A fixed measurement window (the node's idle CPU), not a wait for anything.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_rate = {
        let (c, w) = idle.read();
        c / w
    };
    let until = Instant::now() + Duration::from_secs(ramp + secs + 60);
    let mut pubs = Vec::new();
    let t0 = Instant::now();
    for (i, key) in keys.iter().take(count).enumerate() {
        tokio::time::sleep_until(
            (t0 + Duration::from_secs(ramp).mul_f64(i as f64 / count as f64)).into(),
        )
        .await;
        pubs.push(spawn_publisher(
            rtmp.clone(),
            key.clone(),
            tags.clone(),
            until,
        ));
    }
    // Every stream playable.
    for i in 0..count {
        wait_segments(
            http,
            &format!("/cmaf/s{i:03}/source/index.m3u8"),
            2,
            Duration::from_secs(60),
        )
        .await?;
    }
    let all_live_after_s = round1(t0.elapsed().as_secs_f64());
    let rss_streams = memory_bytes(node_pid);

    // The viewers of every stream, concurrently, while the node's CPU is measured.
    let w = CpuWindow::start(&[node_pid]);
    let mut runs = tokio::task::JoinSet::new();
    for i in 0..count {
        let mut c = LoadConfig::new(
            http,
            &format!("/cmaf/s{i:03}/master.m3u8"),
            Mode::LowLatency,
            per,
        );
        c.ramp = Duration::from_secs(2);
        c.duration = Duration::from_secs(secs);
        runs.spawn(async move { (i, run(c).await) });
    }
    let mut per_stream = Vec::new();
    let mut rss_series = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            r = runs.join_next() => match r {
                Some(r) => per_stream.push(r?),
                None => break,
            },
            _ = tick.tick() => rss_series.push(round1(w.rss() as f64 / 1e6)),
        }
    }
    let (cpu, wall) = w.read();
    let rss_end = memory_bytes(node_pid);
    per_stream.sort_by_key(|(i, _)| *i);
    let p95s: Vec<f64> = per_stream
        .iter()
        .filter_map(|(_, r)| r.json["media_age_ms"]["p95"].as_f64())
        .collect();
    let errors: u64 = per_stream.iter().map(|(_, r)| r.errors).sum();
    let stalled: usize = per_stream.iter().map(|(_, r)| r.viewers_with_stall).sum();
    let never: usize = per_stream
        .iter()
        .map(|(_, r)| r.viewers_never_started)
        .sum();
    let requests: u64 = per_stream.iter().map(|(_, r)| r.requests).sum();
    let worst = per_stream
        .iter()
        .max_by(|a, b| {
            let f = |r: &LoadReport| r.json["media_age_ms"]["p95"].as_f64().unwrap_or(f64::MAX);
            f(&a.1).total_cmp(&f(&b.1))
        })
        .map(|(i, r)| json!({"stream": format!("s{i:03}"), "load": r.json}));

    // One stream more than the limit.
    let extra = match RtmpPublisher::connect(&rtmp, &keys[count], Duration::from_secs(10)).await {
        Ok(mut p) => {
            let _ = p.stop().await;
            json!({"refused": false})
        }
        Err(e) => json!({"refused": true, "reason": e.to_string()}),
    };
    let mut publishers_failed = 0;
    for p in pubs {
        p.abort();
        if let Ok(Err(e)) = p.await {
            eprintln!("publisher: {e:#}");
            publishers_failed += 1;
        }
    }
    let mut sorted = p95s.clone();
    sorted.sort_by(f64::total_cmp);
    let p95_max = sorted.last().copied();
    let p95_median = sorted.get(sorted.len() / 2).copied();
    let machine_cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    Ok(json!({
        "bench": "streams",
        "machine": machine(),
        "streams": count,
        "viewers_per_stream": per,
        "duration_s": round1(wall),
        "all_live_after_s": all_live_after_s,
        "node_cpu_share_of_machine": round1(cpu / wall / machine_cores * 1000.0) / 1000.0,
        "node_idle_cpu_share_of_machine_before": round1(idle_rate / machine_cores * 1000.0) / 1000.0,
        "node_memory_mb": {"before": round1(rss_before as f64 / 1e6), "streams_live": round1(rss_streams as f64 / 1e6), "end": round1(rss_end as f64 / 1e6)},
        "node_memory_mb_every_5s": rss_series,
        "node_open_fds_end": open_fds(node_pid),
        "memory_mb_per_stream_window_full": round1((rss_end.saturating_sub(rss_before)) as f64 / 1e6 / count.max(1) as f64),
        "part_latency_p95_ms": {"max_over_streams": p95_max, "median_over_streams": p95_median},
        "requests": requests,
        "errors": errors,
        "viewers_with_stall": stalled,
        "viewers_never_started": never,
        "publishers_failed": publishers_failed,
        "stream_over_limit": extra,
        "limit": limit,
        "worst_stream": worst,
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::from_env();
    let out = match args.0.get(1).map(String::as_str) {
        Some("viewers") => viewers(&args).await?,
        Some("streams") => streams(&args).await?,
        Some("analytics") => analytics(&args).await?,
        _ => bail!("usage: bench_viewers viewers|streams|analytics --http ADDR --rtmp ADDR ..."),
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
