//! Simulated viewers that behave like players, and what they measured.
//!
//! Each viewer is one tokio task with one keep-alive connection ([`Conn`]):
//! - opens the multivariant playlist and picks a rendition (by name, or the first);
//! - TS HLS: reloads the media playlist every target duration (half of it when nothing changed,
//!   as hls.js does) and fetches each new segment, starting `live_sync_segments` segments from
//!   the live edge;
//! - LL-HLS: fetches the init segment, starts at the last independent part at least three parts
//!   from the edge (about PART-HOLD-BACK), then issues blocking reloads (`_HLS_msn`/`_HLS_part`
//!   for the part after the last one listed) and fetches each new part;
//! - keeps a buffer that fills with the media it fetched and drains in real time once the first
//!   segment (or part) is in; a stall is the buffer running dry after that start.
//!
//! Media URIs may be absolute (`http://cdn.example/cmaf/...`, a node behind a CDN): the viewer
//! fetches their path from the server it targets, and counts those whose authority is not the
//! one it sends as `Host` (`urls_from_other_authority`).
//!
//! Measured per viewer and merged: fetch time per object kind (and, behind a cache that sends
//! `X-Cache-Status`, split into hits and misses), startup (first request -> first whole segment
//! or part, and -> the head of the first media answer), stalls, errors by kind, media age
//! (received - the wall-clock end of the media, from `EXT-X-PROGRAM-DATE-TIME`, after the
//! start-up fetches; for LL-HLS parts this is the part latency a player sees), and for blocking
//! reloads the wake-up spread: each answer's arrival minus the first arrival of the same playlist
//! version, counting only requests that were already waiting when that first answer arrived.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{json, Value};

use super::http::{body_text, Answer, Conn, FetchError};
use super::m3u8::{parse_master, parse_media, MediaPlaylist};

/// Which protocol the viewers play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// MPEG-TS HLS, playlist polling.
    Ts,
    /// Low-Latency HLS, blocking reloads and parts.
    LowLatency,
}

/// A load run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The server.
    pub addr: SocketAddr,
    /// `Host` header.
    pub host: String,
    /// Path of the multivariant playlist, e.g. `/hls/bench/master.m3u8`.
    pub master_path: String,
    /// Protocol.
    pub mode: Mode,
    /// Rendition to play (the first path component of its media playlist URI); first if `None`.
    pub rendition: Option<String>,
    /// Number of viewers.
    pub viewers: usize,
    /// Viewers start evenly spread over this time.
    pub ramp: Duration,
    /// Whole run, from the first viewer's start.
    pub duration: Duration,
    /// Ask for gzip-encoded playlists, as browsers do.
    pub gzip: bool,
    /// Send CMCD headers (`CMCD-Session: sid`, `CMCD-Request: bl`, `CMCD-Object: br`).
    pub cmcd: bool,
    /// TS: segments from the live edge a viewer starts at (hls.js `liveSyncDurationCount`).
    pub live_sync_segments: usize,
    /// Per-request timeout (blocking reloads included).
    pub request_timeout: Duration,
}

impl LoadConfig {
    /// Defaults for `viewers` of `master_path` at `addr`.
    pub fn new(addr: SocketAddr, master_path: &str, mode: Mode, viewers: usize) -> LoadConfig {
        LoadConfig {
            addr,
            host: addr.to_string(),
            master_path: master_path.to_owned(),
            mode,
            rendition: None,
            viewers,
            ramp: Duration::from_secs(5),
            duration: Duration::from_secs(30),
            gzip: true,
            cmcd: false,
            live_sync_segments: 3,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Object kinds timed separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Master = 0,
    Playlist = 1,
    Blocking = 2,
    Init = 3,
    Segment = 4,
    Part = 5,
}
const KINDS: [&str; 6] = [
    "master",
    "playlist",
    "blocking_reload",
    "init",
    "segment",
    "part",
];

/// The buffer model: media fetched vs. real time since playback started.
#[derive(Debug, Default)]
struct Playback {
    started: Option<Instant>,
    buffered_s: f64,
    stall_s: f64,
    stalls: u32,
}

impl Playback {
    /// `dur` seconds of media arrived at `now`.
    fn on_media(&mut self, now: Instant, dur: f64) {
        if let Some(dry) = self.dry_at() {
            if now > dry {
                self.stalls += 1;
                self.stall_s += (now - dry).as_secs_f64();
            }
        } else {
            self.started = Some(now);
        }
        self.buffered_s += dur;
    }

    /// When the buffer runs (ran) dry at the current fill.
    fn dry_at(&self) -> Option<Instant> {
        self.started
            .map(|s| s + Duration::from_secs_f64(self.stall_s + self.buffered_s))
    }

    /// Seconds of media buffered ahead of the playhead at `now`.
    fn level(&self, now: Instant) -> f64 {
        self.dry_at()
            .map_or(0.0, |d| d.saturating_duration_since(now).as_secs_f64())
    }

    /// Close the books at `now`: a buffer that is dry now is a stall in progress.
    fn finish(&mut self, now: Instant) -> f64 {
        let Some(started) = self.started else {
            return 0.0;
        };
        if let Some(dry) = self.dry_at().filter(|d| now > *d) {
            self.stalls += 1;
            self.stall_s += (now - dry).as_secs_f64();
            self.buffered_s = (now - started).as_secs_f64() - self.stall_s;
        }
        (now - started).as_secs_f64()
    }
}

/// What one viewer measured.
#[derive(Debug, Default)]
struct ViewerStats {
    fetch_ms: [Vec<f32>; 6],
    requests: u64,
    bytes: u64,
    errors: BTreeMap<String, u64>,
    startup_ms: Option<f32>,
    stalls: u32,
    stall_s: f64,
    watch_s: f64,
    latency_ms: Vec<f32>,
    /// (playlist version, sent, received) of blocking reloads.
    wakes: Vec<(u64, Instant, Instant)>,
    connects: u64,
    /// First request -> head of the first media answer.
    first_byte_ms: Option<f32>,
    /// Fetch times by (object kind, `X-Cache-Status`), when a cache in between sends it.
    cache_ms: HashMap<(usize, &'static str), Vec<f32>>,
    /// Absolute URIs whose authority is not the `Host` this viewer sends.
    foreign_urls: u64,
}

fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// The authority of an absolute `http(s)://` URI.
fn authority(uri: &str) -> Option<&str> {
    let rest = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"))?;
    Some(rest.split(['/', '?']).next().unwrap_or(rest))
}

/// `uri` resolved against the directory of `base` (a path), as an absolute path.
fn resolve(base: &str, uri: &str) -> String {
    if let Some(rest) = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"))
    {
        return rest
            .find('/')
            .map_or("/".to_owned(), |i| rest[i..].to_owned());
    }
    if uri.starts_with('/') {
        return uri.to_owned();
    }
    let dir = base.rsplit_once('/').map_or("", |(d, _)| d);
    format!("{dir}/{uri}")
}

struct Viewer {
    cfg: Arc<LoadConfig>,
    conn: Conn,
    stats: ViewerStats,
    play: Playback,
    t0: Instant,
    end: Instant,
    sid: String,
    bitrate_kbps: u64,
    /// Past the start-up fetches (which are behind the live edge on purpose): media ages count.
    steady: bool,
}

impl Viewer {
    /// [`resolve`], counting absolute URIs that name another server than the one targeted.
    fn resolve(&mut self, base: &str, uri: &str) -> String {
        if authority(uri).is_some_and(|a| a != self.cfg.host) {
            self.stats.foreign_urls += 1;
        }
        resolve(base, uri)
    }

    fn headers(&self, playlist: bool) -> String {
        let mut h = String::new();
        if playlist && self.cfg.gzip {
            h.push_str("Accept-Encoding: gzip\r\n");
        }
        if self.cfg.cmcd {
            let bl = (self.play.level(Instant::now()) * 1000.0) as u64;
            h.push_str(&format!(
                "CMCD-Session: sid=\"{}\",st=l\r\nCMCD-Request: bl={bl}\r\nCMCD-Object: br={}\r\n",
                self.sid, self.bitrate_kbps
            ));
        }
        h
    }

    /// One timed request; errors are counted and returned.
    async fn fetch(&mut self, kind: Kind, path: &str, keep: bool) -> Result<Answer, FetchError> {
        let playlist = matches!(kind, Kind::Master | Kind::Playlist | Kind::Blocking);
        let headers = self.headers(playlist);
        let sent = Instant::now();
        self.stats.requests += 1;
        match self
            .conn
            .get(path, &headers, keep, self.cfg.request_timeout)
            .await
        {
            Ok(a) => {
                let ms = sent.elapsed().as_secs_f32() * 1000.0;
                self.stats.fetch_ms[kind as usize].push(ms);
                if let Some(c) = a.cache {
                    self.stats
                        .cache_ms
                        .entry((kind as usize, c))
                        .or_default()
                        .push(ms);
                }
                self.stats.bytes += a.len as u64;
                Ok(a)
            }
            Err(e) => {
                *self.stats.errors.entry(e.name()).or_default() += 1;
                Err(e)
            }
        }
    }

    /// A media playlist, parsed, and when its answer arrived.
    async fn fetch_playlist(
        &mut self,
        kind: Kind,
        path: &str,
    ) -> Result<(MediaPlaylist, Instant), FetchError> {
        let a = self.fetch(kind, path, true).await?;
        let at = a.at.unwrap_or_else(Instant::now);
        Ok((parse_media(&body_text(&a)?), at))
    }

    /// Fetch a segment or part and feed the buffer.
    async fn fetch_media(
        &mut self,
        kind: Kind,
        path: &str,
        duration: f64,
        end_wall_ms: Option<f64>,
    ) -> Result<(), FetchError> {
        let a = self.fetch(kind, path, false).await?;
        let now = Instant::now();
        if self.stats.startup_ms.is_none() {
            self.stats.startup_ms = Some((now - self.t0).as_secs_f32() * 1000.0);
            let head = a.head_at.unwrap_or(now);
            self.stats.first_byte_ms = Some((head - self.t0).as_secs_f32() * 1000.0);
        }
        self.play.on_media(now, duration);
        if let Some(end) = end_wall_ms.filter(|_| self.steady) {
            self.stats.latency_ms.push((wall_ms() - end) as f32);
        }
        Ok(())
    }

    /// Pause after an error (a player retries, not in a tight loop).
    async fn backoff(&self) {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    /// Master playlist -> the chosen media playlist's path.
    async fn open(&mut self) -> Option<String> {
        while Instant::now() < self.end {
            let master = self.cfg.master_path.clone();
            let text = match self.fetch(Kind::Master, &master, true).await {
                Ok(a) => body_text(&a).unwrap_or_default(),
                Err(_) => {
                    self.backoff().await;
                    continue;
                }
            };
            let variants = parse_master(&text);
            let chosen = match &self.cfg.rendition {
                Some(r) => variants.iter().find(|v| {
                    v.uri.starts_with(&format!("{r}/")) || v.uri.contains(&format!("/{r}/"))
                }),
                None => variants.first(),
            };
            match chosen {
                Some(v) => {
                    self.bitrate_kbps = v.bandwidth / 1000;
                    let uri = v.uri.clone();
                    return Some(self.resolve(&master, &uri));
                }
                None => {
                    *self.stats.errors.entry("no_variant".into()).or_default() += 1;
                    self.backoff().await;
                }
            }
        }
        None
    }

    async fn run_ts(&mut self, path: String) {
        let mut next_msn: Option<u64> = None;
        while Instant::now() < self.end {
            let asked = Instant::now();
            let p = match self.fetch_playlist(Kind::Playlist, &path).await {
                Ok((p, _)) => p,
                Err(_) => {
                    self.backoff().await;
                    continue;
                }
            };
            let from = next_msn.unwrap_or_else(|| {
                let n = p.segments.len();
                p.segments
                    .get(n.saturating_sub(self.cfg.live_sync_segments))
                    .map_or(0, |s| s.msn)
            });
            let mut changed = false;
            for seg in p.segments.iter().filter(|s| s.msn >= from) {
                if Instant::now() >= self.end {
                    break;
                }
                let uri = self.resolve(&path, &seg.uri);
                if self
                    .fetch_media(Kind::Segment, &uri, seg.duration, seg.end_wall_ms)
                    .await
                    .is_err()
                {
                    break;
                }
                next_msn = Some(seg.msn + 1);
                changed = true;
            }
            self.steady = next_msn.is_some();
            if p.ended {
                break;
            }
            let target = Duration::from_secs_f64(p.target_duration.max(0.5));
            let wait = if changed { target } else { target / 2 };
            tokio::time::sleep_until((asked + wait).min(self.end).into()).await;
        }
    }

    async fn run_ll(&mut self, path: String) {
        // The first, plain playlist: where to start.
        let mut p = loop {
            if Instant::now() >= self.end {
                return;
            }
            match self.fetch_playlist(Kind::Playlist, &path).await {
                Ok((p, _)) if !p.parts.is_empty() || p.ended => break p,
                Ok(_) => {
                    *self.stats.errors.entry("no_parts".into()).or_default() += 1;
                    self.backoff().await;
                }
                Err(_) => self.backoff().await,
            }
        };
        if let Some(map) = p.map.clone() {
            let uri = self.resolve(&path, &map);
            while self.fetch(Kind::Init, &uri, false).await.is_err() {
                if Instant::now() >= self.end {
                    return;
                }
                self.backoff().await;
            }
        }
        let edge = p.parts.len().saturating_sub(3);
        let start = (0..=edge)
            .rev()
            .find(|&i| p.parts.get(i).is_some_and(|x| x.independent))
            .unwrap_or(0);
        let mut last: Option<(u64, u64)> = None;
        loop {
            for part in p.parts.iter().skip(if last.is_none() { start } else { 0 }) {
                let key = (part.msn, part.part.unwrap_or(0));
                if last.is_some_and(|l| key <= l) {
                    continue;
                }
                if Instant::now() >= self.end {
                    return;
                }
                let uri = self.resolve(&path, &part.uri);
                if self
                    .fetch_media(Kind::Part, &uri, part.duration, part.end_wall_ms)
                    .await
                    .is_err()
                {
                    break;
                }
                last = Some(key);
            }
            self.steady = last.is_some();
            if p.ended || Instant::now() >= self.end {
                return;
            }
            let Some((msn, part)) = p.next_blocking() else {
                self.backoff().await;
                continue;
            };
            // The master may hand out media URLs with a query (the session id): add to it.
            let sep = if path.contains('?') { '&' } else { '?' };
            let q = format!("{path}{sep}_HLS_msn={msn}&_HLS_part={part}");
            let sent = Instant::now();
            match self.fetch_playlist(Kind::Blocking, &q).await {
                Ok((next, at)) => {
                    self.stats.wakes.push(((msn << 20) | part, sent, at));
                    p = next;
                }
                Err(_) => {
                    self.backoff().await;
                    // Re-anchor on a plain reload.
                    if let Ok((next, _)) = self.fetch_playlist(Kind::Playlist, &path).await {
                        p = next;
                    }
                }
            }
        }
    }
}

async fn run_viewer(cfg: Arc<LoadConfig>, id: usize, start: Instant, end: Instant) -> ViewerStats {
    tokio::time::sleep_until(start.into()).await;
    let mut v = Viewer {
        conn: Conn::new(cfg.addr, &cfg.host),
        stats: ViewerStats::default(),
        play: Playback::default(),
        t0: Instant::now(),
        end,
        sid: format!("{:08x}-{id:06}", std::process::id()),
        bitrate_kbps: 0,
        steady: false,
        cfg,
    };
    if let Some(path) = v.open().await {
        match v.cfg.mode {
            Mode::Ts => v.run_ts(path).await,
            Mode::LowLatency => v.run_ll(path).await,
        }
    }
    v.stats.watch_s = v.play.finish(Instant::now().min(end));
    v.stats.stalls = v.play.stalls;
    v.stats.stall_s = v.play.stall_s;
    v.stats.connects = v.conn.connects;
    v.stats
}

/// Sorted-sample percentile (nearest rank), rounded to 0.1.
pub fn percentile(sorted: &[f32], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Some((f64::from(sorted[i]) * 10.0).round() / 10.0)
}

/// `{count, p50, p95, p99, max}` of samples (ms).
pub fn summary(mut v: Vec<f32>) -> Value {
    v.sort_by(f32::total_cmp);
    json!({
        "count": v.len(),
        "p50": percentile(&v, 0.5),
        "p95": percentile(&v, 0.95),
        "p99": percentile(&v, 0.99),
        "max": percentile(&v, 1.0),
    })
}

/// The merged result of a run.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// The JSON form (see [`run`]).
    pub json: Value,
    /// Requests answered or failed.
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// Viewers whose buffer ran dry at least once after they started.
    pub viewers_with_stall: usize,
    /// Viewers that never received any media.
    pub viewers_never_started: usize,
}

/// Run `cfg.viewers` viewers for `cfg.duration` and merge what they measured.
pub async fn run(cfg: LoadConfig) -> LoadReport {
    let cfg = Arc::new(cfg);
    let t0 = Instant::now();
    let end = t0 + cfg.duration;
    let n = cfg.viewers.max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..cfg.viewers {
        let start = t0 + cfg.ramp.mul_f64(i as f64 / n as f64);
        tasks.spawn(run_viewer(cfg.clone(), i, start, end));
    }
    let mut all = Vec::with_capacity(cfg.viewers);
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(s) => all.push(s),
            Err(e) => panic!("viewer task failed: {e}"),
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    merge(&cfg, all, elapsed)
}

fn merge(cfg: &LoadConfig, all: Vec<ViewerStats>, elapsed: f64) -> LoadReport {
    let mut fetch: [Vec<f32>; 6] = Default::default();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let (mut requests, mut bytes, mut connects) = (0u64, 0u64, 0u64);
    let mut startup = Vec::new();
    let mut latency = Vec::new();
    let (mut with_stall, mut never, mut stall_s, mut watch_s) = (0usize, 0usize, 0.0, 0.0);
    let mut first_answer: HashMap<u64, Instant> = HashMap::new();
    for s in &all {
        for (k, _, recv) in &s.wakes {
            let e = first_answer.entry(*k).or_insert(*recv);
            *e = (*e).min(*recv);
        }
    }
    let mut wake = Vec::new();
    let mut first_byte = Vec::new();
    let mut foreign = 0u64;
    let mut cache_ms: BTreeMap<(usize, &'static str), Vec<f32>> = BTreeMap::new();
    for s in all {
        first_byte.extend(s.first_byte_ms);
        foreign += s.foreign_urls;
        for (k, v) in s.cache_ms {
            cache_ms.entry(k).or_default().extend(v);
        }
        for (i, v) in s.fetch_ms.into_iter().enumerate() {
            fetch[i].extend(v);
        }
        for (k, v) in s.errors {
            *errors.entry(k).or_default() += v;
        }
        requests += s.requests;
        bytes += s.bytes;
        connects += s.connects;
        match s.startup_ms {
            Some(ms) => startup.push(ms),
            None => never += 1,
        }
        if s.stalls > 0 {
            with_stall += 1;
        }
        stall_s += s.stall_s;
        watch_s += s.watch_s;
        latency.extend(s.latency_ms);
        for (k, sent, recv) in s.wakes {
            let first = first_answer[&k];
            if sent <= first {
                wake.push((recv - first).as_secs_f32() * 1000.0);
            }
        }
    }
    let n_errors: u64 = errors.values().sum();
    let mut fetch_json = serde_json::Map::new();
    for (i, v) in fetch.into_iter().enumerate() {
        if !v.is_empty() {
            fetch_json.insert(KINDS[i].to_owned(), summary(v));
        }
    }
    let mut json = json!({
        "mode": cfg.mode,
        "viewers": cfg.viewers,
        "duration_s": (elapsed * 10.0).round() / 10.0,
        "ramp_s": cfg.ramp.as_secs_f64(),
        "gzip_playlists": cfg.gzip,
        "requests": requests,
        "requests_per_s": (requests as f64 / elapsed).round(),
        "mb_per_s": ((bytes as f64 / elapsed / 1e6) * 10.0).round() / 10.0,
        "tcp_connects": connects,
        "fetch_ms": fetch_json,
        "startup_ms": summary(startup),
        "startup_first_byte_ms": summary(first_byte),
        "viewers_never_started": never,
        "viewers_with_stall": with_stall,
        "stall_share": with_stall as f64 / cfg.viewers.max(1) as f64,
        "stall_time_over_watch_time": if watch_s > 0.0 { stall_s / watch_s } else { 0.0 },
        "media_age_ms": summary(latency),
        "blocking_wake_spread_ms": summary(wake),
        "errors": errors,
        "urls_from_other_authority": foreign,
    });
    if !cache_ms.is_empty() {
        json["fetch_ms_by_cache"] = by_cache(cache_ms);
    }
    LoadReport {
        json,
        requests,
        errors: n_errors,
        viewers_with_stall: with_stall,
        viewers_never_started: never,
    }
}

/// Whether an `X-Cache-Status` means the answer came from the cache's copy (a hit, possibly
/// stale or just revalidated) rather than from an origin request made for it.
pub fn is_cache_hit(status: &str) -> bool {
    matches!(status, "HIT" | "STALE" | "UPDATING" | "REVALIDATED")
}

/// `{kind: {"hit": summary, "miss": summary, "statuses": {STATUS: count}}}`.
fn by_cache(cache_ms: BTreeMap<(usize, &'static str), Vec<f32>>) -> Value {
    let mut out = serde_json::Map::new();
    for (i, kind) in KINDS.iter().enumerate() {
        let (mut hit, mut miss) = (Vec::new(), Vec::new());
        let mut statuses = serde_json::Map::new();
        for ((k, status), v) in &cache_ms {
            if *k != i {
                continue;
            }
            statuses.insert((*status).to_owned(), json!(v.len()));
            if is_cache_hit(status) {
                hit.extend_from_slice(v);
            } else {
                miss.extend_from_slice(v);
            }
        }
        if !statuses.is_empty() {
            out.insert(
                (*kind).to_owned(),
                json!({"hit": summary(hit), "miss": summary(miss), "statuses": statuses}),
            );
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_model_counts_a_dry_buffer_as_one_stall() {
        let t = Instant::now();
        let mut p = Playback::default();
        p.on_media(t, 2.0);
        p.on_media(t + Duration::from_millis(1500), 2.0);
        assert_eq!(p.stalls, 0);
        // Buffer holds 4 s from t: media arriving at 5 s is a 1 s stall.
        p.on_media(t + Duration::from_secs(5), 2.0);
        assert_eq!(p.stalls, 1);
        assert!((p.stall_s - 1.0).abs() < 1e-6);
        // Playhead resumed at 5 s with 2 s of media: dry at 7 s; at 6 s nothing is owed.
        assert!((p.level(t + Duration::from_secs(6)) - 1.0).abs() < 1e-6);
        let watched = p.finish(t + Duration::from_secs(8));
        assert_eq!(p.stalls, 2, "dry at the end is a stall in progress");
        assert!((watched - 8.0).abs() < 1e-6);
    }

    #[test]
    fn resolves_relative_and_absolute_uris() {
        assert_eq!(
            resolve("/hls/s/master.m3u8", "480p/index.m3u8"),
            "/hls/s/480p/index.m3u8"
        );
        assert_eq!(
            resolve("/hls/s/480p/index.m3u8", "1-3.ts"),
            "/hls/s/480p/1-3.ts"
        );
        assert_eq!(
            resolve("/a/b.m3u8", "https://cdn.example/x/y.ts"),
            "/x/y.ts"
        );
        assert_eq!(resolve("/a/b.m3u8", "/z.ts"), "/z.ts");
        assert_eq!(
            resolve(
                "/cmaf/s/source/index.m3u8",
                "http://127.0.0.1:8090/cmaf/s/source/3-7.1.m4s"
            ),
            "/cmaf/s/source/3-7.1.m4s"
        );
        assert_eq!(
            authority("http://127.0.0.1:8090/cmaf/s/source/index.m3u8"),
            Some("127.0.0.1:8090")
        );
        assert_eq!(authority("https://cdn.example?x"), Some("cdn.example"));
        assert_eq!(authority("3-7.1.m4s"), None);
    }

    #[test]
    fn cache_statuses_split_into_hits_and_misses() {
        let mut m = BTreeMap::new();
        m.insert((Kind::Part as usize, "HIT"), vec![1.0, 2.0]);
        m.insert((Kind::Part as usize, "UPDATING"), vec![3.0]);
        m.insert((Kind::Part as usize, "MISS"), vec![80.0]);
        let j = by_cache(m);
        assert_eq!(j["part"]["hit"]["count"], 3);
        assert_eq!(j["part"]["miss"]["count"], 1);
        assert_eq!(j["part"]["statuses"]["UPDATING"], 1);
        assert!(j.get("segment").is_none());
    }
}
