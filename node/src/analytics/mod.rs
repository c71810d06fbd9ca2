//! Viewer analytics: playback sessions from viewer requests and beacons, and the per-second
//! metrics of every live stream, summed over every node serving it.
//!
//! A session is named by, in order: the CMCD session id (`sid`, from `CMCD-*` headers or the
//! `CMCD` query parameter, as hls.js and dash.js send it), the `sid` this node put in the media
//! playlist URLs of the master playlist it handed out, or else the client address and
//! User-Agent. Segment URLs never carry a session, so a CDN caches them for everyone.
//!
//! The viewer path only touches this module through [`Analytics::request`]: one lock of one
//! of 16 shards of the stream's session map when the request starts and one when its response
//! is dropped (sent, or the client went away), plus relaxed counters. A session is playing
//! while it has a request in flight (an LL-HLS blocking reload held by the server counts) or
//! made one within the session timeout; a beacon `end` ends it at once.
//!
//! Once a second [`Analytics::run`] samples each stream: the local audience is sent to the
//! other nodes (`cluster::Cluster::set_audience`), the latest audience of every other node is
//! added, the origin's ingest counters joined, a health score computed (see [`health`]), the
//! sample kept for `GET /v1/streams/{stream}/metrics` and published on the event hub.

pub mod health;
pub mod who;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hivecast_actors::events::{AudienceMetrics, IngressMetrics, StreamEvent, StreamMetrics};
use hivecast_actors::types::{unix_ms_now, Epoch, StreamName};
use hivecast_proto::beacon::{BeaconEvent, BeaconKind};
use hivecast_proto::peer::{IngressSummary, StreamAudience};
use tracing::info;

use crate::app::App;

const SHARDS: usize = 16;
/// An ended session is remembered this long, so that a late request of a closed page does not
/// count as a new viewer.
const TOMBSTONE: Duration = Duration::from_secs(30);
/// A stall counts towards the stall rate for this long.
const STALL_WINDOW: Duration = Duration::from_secs(30);
/// Audiences of other nodes older than this are ignored (a node that stopped sending).
const REMOTE_MAX_AGE: Duration = Duration::from_secs(3);
/// Streams whose audience a node sends to its peers at most.
pub const MAX_SHARED_STREAMS: usize = 1_000;
/// Quality switches are audited per stream at most once per this period, in aggregate.
const SWITCH_AUDIT_EVERY: Duration = Duration::from_secs(10);

/// Who is asking, as far as a request tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// A player's own session id (CMCD `sid`, or a beacon's `sid`).
    Player(String),
    /// The session id this node put in the playlist URLs (`?sid=`).
    Url(String),
    /// No session id: the client's address and a hash of its User-Agent.
    Address(String),
}

impl Who {
    fn key(&self) -> &str {
        match self {
            Self::Player(s) | Self::Url(s) | Self::Address(s) => s,
        }
    }
}

/// What one request tells about its session besides who it is.
#[derive(Debug, Clone, Default)]
pub struct Hints {
    /// The player reported buffer starvation since its last request (CMCD `bs`).
    pub stalled: bool,
    /// Buffer length, ms (CMCD `bl`).
    pub buffer_ms: Option<u32>,
    /// Measured throughput, kbit/s (CMCD `mtp`).
    pub throughput_kbps: Option<u32>,
}

#[derive(Debug)]
struct Session {
    rendition: Option<Arc<str>>,
    joined_ms: i64,
    last_seen: Instant,
    in_flight: u32,
    bytes: u64,
    switches: u32,
    stalls: u32,
    last_stall: Option<Instant>,
    /// Set when the session ended (beacon `end`, or timed out): a tombstone.
    left: Option<Instant>,
    buffer_ms: Option<u32>,
    latency_ms: Option<f64>,
    throughput_kbps: Option<u32>,
    left_ms: Option<i64>,
}

/// One viewer session as the API shows it (entity ViewerSession).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionView {
    /// Session id (CMCD/URL sid, or `a:<address>/<ua hash>`).
    pub id: String,
    /// The video rendition it plays.
    pub rendition: Option<String>,
    /// Joined, Unix ms.
    pub joined_ms: i64,
    /// Left (beacon `end` or timeout), Unix ms; `None` while playing.
    pub left_ms: Option<i64>,
    /// Bytes sent to it by this node.
    pub bytes: u64,
    /// Rendition switches.
    pub quality_switches: u32,
    /// Buffering (stall) events it reported.
    pub stalls: u32,
    /// Its last reported buffer length, ms.
    pub buffer_ms: Option<u32>,
    /// Its last reported live latency, ms.
    pub latency_ms: Option<f64>,
    /// Its last reported throughput, kbit/s (CMCD `mtp`).
    pub throughput_kbps: Option<u32>,
    /// Requests in flight now (held blocking reloads included).
    pub in_flight: u32,
}

impl Session {
    fn new(now: Instant) -> Self {
        Self {
            rendition: None,
            joined_ms: unix_ms_now(),
            last_seen: now,
            in_flight: 0,
            bytes: 0,
            switches: 0,
            stalls: 0,
            last_stall: None,
            left: None,
            buffer_ms: None,
            latency_ms: None,
            throughput_kbps: None,
            left_ms: None,
        }
    }

    fn leave(&mut self, now: Instant) {
        self.left = Some(now);
        self.left_ms = Some(unix_ms_now());
    }

    fn playing(&self, now: Instant, timeout: Duration) -> bool {
        self.left.is_none()
            && (self.in_flight > 0 || now.saturating_duration_since(self.last_seen) < timeout)
    }
}

/// The viewers of one stream on this node.
struct Audience {
    shards: [Mutex<HashMap<Box<str>, Session>>; SHARDS],
    egress_bytes: AtomicU64,
    joined: AtomicU64,
    stalls: AtomicU64,
    switches: AtomicU64,
    /// Switches not yet audited, with a few examples.
    pending_switches: Mutex<(u64, Vec<String>, Instant)>,
    last_egress: Mutex<(Instant, u64)>,
    /// Samples, oldest first.
    history: Mutex<VecDeque<Arc<StreamMetrics>>>,
    /// Last time the stream was live or had a viewer (for pruning).
    last_active: Mutex<Instant>,
}

impl Audience {
    fn new(now: Instant) -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            egress_bytes: AtomicU64::new(0),
            joined: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
            switches: AtomicU64::new(0),
            pending_switches: Mutex::new((0, Vec::new(), now)),
            last_egress: Mutex::new((now, 0)),
            history: Mutex::new(VecDeque::new()),
            last_active: Mutex::new(now),
        }
    }

    fn shard(&self, key: &str) -> &Mutex<HashMap<Box<str>, Session>> {
        // FNV-1a: stable across threads, cheap for short keys.
        let mut fnv: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key.bytes() {
            fnv = (fnv ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        &self.shards[(fnv as usize) % SHARDS]
    }
}

/// The node's analytics.
pub struct Analytics {
    enabled: bool,
    timeout: Duration,
    max_sessions: usize,
    history_len: usize,
    streams: RwLock<HashMap<String, Arc<Audience>>>,
    tracked: AtomicUsize,
    /// Requests whose session could not be tracked (over `max_sessions`).
    pub untracked_requests: AtomicU64,
    /// Beacon events accepted.
    pub beacons: AtomicU64,
    /// Malformed CMCD data or beacons.
    pub rejected: AtomicU64,
}

/// One request in flight; dropping it (response sent or abandoned) ends it.
pub struct RequestGuard {
    audience: Option<Arc<Audience>>,
    key: Option<Box<str>>,
    bytes: u64,
}

impl RequestGuard {
    /// The response carries `n` body bytes.
    pub fn sent(&mut self, n: u64) {
        self.bytes = self.bytes.saturating_add(n);
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let Some(audience) = &self.audience else {
            return;
        };
        audience
            .egress_bytes
            .fetch_add(self.bytes, Ordering::Relaxed);
        if let Some(key) = &self.key {
            let mut shard = audience
                .shard(key)
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(s) = shard.get_mut(key) {
                s.in_flight = s.in_flight.saturating_sub(1);
                s.bytes = s.bytes.saturating_add(self.bytes);
                s.last_seen = Instant::now();
            }
        }
    }
}

/// This node's view of one stream's audience in one sample.
#[derive(Debug, Default, Clone)]
struct LocalSample {
    concurrent: u32,
    quality: HashMap<Arc<str>, u32>,
    egress_kbps: f64,
    stalled_recent: u32,
}

impl Analytics {
    /// Analytics with `cfg`; `segment_target` sets the least session timeout (1.5 x T).
    pub fn new(cfg: &crate::config::AnalyticsSection, segment_target: Duration) -> Self {
        let timeout = Duration::from_millis(cfg.session_timeout_ms).max(segment_target * 3 / 2);
        Self {
            enabled: cfg.enabled,
            timeout,
            max_sessions: cfg.max_sessions,
            history_len: cfg.history_seconds.max(1),
            streams: RwLock::new(HashMap::new()),
            tracked: AtomicUsize::new(0),
            untracked_requests: AtomicU64::new(0),
            beacons: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        }
    }

    /// The session timeout in force.
    pub fn session_timeout(&self) -> Duration {
        self.timeout
    }

    fn find(&self, stream: &str) -> Option<Arc<Audience>> {
        self.streams
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(stream)
            .cloned()
    }

    fn audience(&self, stream: &str) -> Arc<Audience> {
        if let Some(a) = self.find(stream) {
            return a;
        }
        self.streams
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(stream.to_owned())
            .or_insert_with(|| Arc::new(Audience::new(Instant::now())))
            .clone()
    }

    /// A viewer request for `stream` starts. `rendition`: the video rendition it is for, if
    /// any (audio and master requests say `None` and leave the session's rendition alone).
    pub fn request(
        &self,
        stream: &str,
        rendition: Option<&str>,
        who: &Who,
        hints: &Hints,
    ) -> RequestGuard {
        if !self.enabled {
            return RequestGuard {
                audience: None,
                key: None,
                bytes: 0,
            };
        }
        let audience = self.audience(stream);
        let now = Instant::now();
        let key = who.key();
        let mut shard = audience
            .shard(key)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let tracked = match shard.get_mut(key) {
            Some(s) => Some(s),
            None if self.tracked.load(Ordering::Relaxed) < self.max_sessions => {
                self.tracked.fetch_add(1, Ordering::Relaxed);
                audience.joined.fetch_add(1, Ordering::Relaxed);
                Some(shard.entry(key.into()).or_insert_with(|| Session::new(now)))
            }
            None => None,
        };
        let Some(s) = tracked else {
            self.untracked_requests.fetch_add(1, Ordering::Relaxed);
            drop(shard);
            return RequestGuard {
                audience: Some(audience),
                key: None,
                bytes: 0,
            };
        };
        if s.left.is_some() {
            // A late request of an ended session: bytes count, the viewer does not.
            drop(shard);
            return RequestGuard {
                audience: Some(audience),
                key: None,
                bytes: 0,
            };
        }
        s.in_flight += 1;
        s.last_seen = now;
        if hints.buffer_ms.is_some() {
            s.buffer_ms = hints.buffer_ms;
        }
        if hints.throughput_kbps.is_some() {
            s.throughput_kbps = hints.throughput_kbps;
        }
        if hints.stalled {
            s.stalls += 1;
            s.last_stall = Some(now);
            audience.stalls.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(r) = rendition {
            let switched = match &s.rendition {
                Some(old) if &**old != r => Some(old.clone()),
                Some(_) => None,
                None => {
                    s.rendition = Some(r.into());
                    None
                }
            };
            if let Some(old) = switched {
                s.rendition = Some(r.into());
                s.switches += 1;
                audience.switches.fetch_add(1, Ordering::Relaxed);
                let mut p = audience
                    .pending_switches
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                p.0 += 1;
                if p.1.len() < 5 {
                    p.1.push(format!("{}: {old} -> {r}", short(key)));
                }
            }
        }
        drop(shard);
        RequestGuard {
            audience: Some(audience),
            key: Some(key.into()),
            bytes: 0,
        }
    }

    /// Apply a player's beacon events.
    pub fn beacon(&self, events: &[BeaconEvent]) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        for ev in events {
            self.beacons.fetch_add(1, Ordering::Relaxed);
            let audience = self.audience(&ev.stream);
            let key = ev.sid.as_str();
            let mut shard = audience
                .shard(key)
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let known = shard.contains_key(key);
            if !known {
                if matches!(ev.kind, BeaconKind::End)
                    || self.tracked.load(Ordering::Relaxed) >= self.max_sessions
                {
                    continue;
                }
                self.tracked.fetch_add(1, Ordering::Relaxed);
                audience.joined.fetch_add(1, Ordering::Relaxed);
                shard.insert(key.into(), Session::new(now));
            }
            let Some(s) = shard.get_mut(key) else {
                continue;
            };
            if s.left.is_some() {
                continue;
            }
            s.last_seen = now;
            if ev.buffer_ms.is_some() {
                s.buffer_ms = ev.buffer_ms;
            }
            if ev.latency_ms.is_some() {
                s.latency_ms = ev.latency_ms;
            }
            match ev.kind {
                BeaconKind::End => s.leave(now),
                BeaconKind::Stall => {
                    s.stalls += 1;
                    s.last_stall = Some(now);
                    audience.stalls.fetch_add(1, Ordering::Relaxed);
                }
                BeaconKind::Switch => {
                    // The player's own word for its rendition (behind a CDN the node sees no
                    // playlist request).
                    if let Some(r) = &ev.rendition {
                        if s.rendition.as_deref() != Some(r.as_str()) {
                            if s.rendition.is_some() {
                                s.switches += 1;
                                audience.switches.fetch_add(1, Ordering::Relaxed);
                            }
                            s.rendition = Some(r.as_str().into());
                        }
                    }
                }
                BeaconKind::Start | BeaconKind::Heartbeat | BeaconKind::Error => {
                    if s.rendition.is_none() {
                        s.rendition = ev.rendition.as_deref().map(Into::into);
                    }
                }
            }
        }
    }

    /// Local audience of `stream` now, pruning ended and timed-out sessions.
    fn sample_local(&self, audience: &Audience, now: Instant) -> LocalSample {
        let mut out = LocalSample::default();
        let mut removed = 0usize;
        for shard in &audience.shards {
            let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
            map.retain(|_, s| {
                if let Some(left) = s.left {
                    let keep = now.saturating_duration_since(left) < TOMBSTONE;
                    removed += usize::from(!keep);
                    return keep;
                }
                if !s.playing(now, self.timeout) {
                    // Timed out: it left; remember it for a while as a tombstone.
                    s.leave(now);
                    return true;
                }
                out.concurrent += 1;
                if let Some(r) = &s.rendition {
                    *out.quality.entry(r.clone()).or_default() += 1;
                }
                if s.last_stall
                    .is_some_and(|t| now.saturating_duration_since(t) < STALL_WINDOW)
                {
                    out.stalled_recent += 1;
                }
                true
            });
        }
        if removed > 0 {
            self.tracked.fetch_sub(
                removed.min(self.tracked.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
        }
        let bytes = audience.egress_bytes.load(Ordering::Relaxed);
        let mut last = audience
            .last_egress
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let secs = now.saturating_duration_since(last.0).as_secs_f64();
        if secs > 0.0 {
            out.egress_kbps = round1(bytes.saturating_sub(last.1) as f64 * 8.0 / 1000.0 / secs);
        }
        *last = (now, bytes);
        out
    }

    /// The sessions of `stream` on this node (playing, and ended within 30 s), at most `limit`.
    pub fn sessions(&self, stream: &str, limit: usize) -> Vec<SessionView> {
        let Some(a) = self.find(stream) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for shard in &a.shards {
            let map = shard.lock().unwrap_or_else(|e| e.into_inner());
            for (id, s) in map.iter() {
                if out.len() >= limit {
                    break;
                }
                out.push(SessionView {
                    id: id.to_string(),
                    rendition: s.rendition.as_deref().map(str::to_owned),
                    joined_ms: s.joined_ms,
                    left_ms: s.left_ms,
                    bytes: s.bytes,
                    quality_switches: s.switches,
                    stalls: s.stalls,
                    buffer_ms: s.buffer_ms,
                    latency_ms: s.latency_ms,
                    throughput_kbps: s.throughput_kbps,
                    in_flight: s.in_flight,
                });
            }
        }
        out.sort_by_key(|s| s.joined_ms);
        out
    }

    /// Samples kept for `stream` over the last `seconds`, oldest first.
    pub fn history(&self, stream: &str, seconds: usize) -> Vec<Arc<StreamMetrics>> {
        let Some(a) = self.find(stream) else {
            return Vec::new();
        };
        let h = a.history.lock().unwrap_or_else(|e| e.into_inner());
        let skip = h.len().saturating_sub(seconds);
        h.iter().skip(skip).cloned().collect()
    }

    /// The newest sample of `stream`, if any.
    pub fn latest(&self, stream: &str) -> Option<Arc<StreamMetrics>> {
        self.history(stream, 1).pop()
    }

    /// Sessions tracked on this node.
    pub fn tracked_sessions(&self) -> usize {
        self.tracked.load(Ordering::Relaxed)
    }

    /// Every stream with samples, and its newest sample.
    pub fn all_latest(&self) -> Vec<(String, Arc<StreamMetrics>)> {
        let streams: Vec<(String, Arc<Audience>)> = self
            .streams
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        streams
            .into_iter()
            .filter_map(|(k, a)| {
                let h = a.history.lock().unwrap_or_else(|e| e.into_inner());
                h.back().cloned().map(|m| (k, m))
            })
            .collect()
    }

    /// Sample every stream once a second, for the life of the node.
    pub async fn run(app: Arc<App>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            app.analytics.tick(&app);
        }
    }

    fn tick(&self, app: &App) {
        let now = Instant::now();
        let at_ms = unix_ms_now();
        // Streams to sample: live in the registry, or with an audience here.
        let mut names: Vec<String> = app
            .registry
            .streams()
            .into_iter()
            .filter(|r| r.status().is_live())
            .map(|r| r.stream)
            .collect();
        let live: std::collections::HashSet<String> = names.iter().cloned().collect();
        let audiences: Vec<(String, Arc<Audience>)> = self
            .streams
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, _) in &audiences {
            if !live.contains(k) {
                names.push(k.clone());
            }
        }
        // This node's audience of each stream, shared with the other nodes.
        let mut local: HashMap<String, (LocalSample, Arc<Audience>)> = HashMap::new();
        for (name, a) in &audiences {
            local.insert(name.clone(), (self.sample_local(a, now), a.clone()));
        }
        let mut shared = Vec::new();
        for name in &names {
            let rec = app.registry.stream(name);
            let epoch = rec.as_ref().map_or(0, |r| r.epoch);
            let ingress = app
                .live
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(name.as_str())
                .map(|l| l.epoch)
                .and_then(|_| app.stats_of(name))
                .map(|s| summary_of(&s.snapshot()));
            let (sample, audience) = match local.get(name) {
                Some((s, a)) => (s.clone(), Some(a)),
                None => (LocalSample::default(), None),
            };
            if audience.is_none() && ingress.is_none() {
                continue;
            }
            let mut quality: Vec<(String, u32)> = sample
                .quality
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect();
            quality.sort();
            quality.truncate(16);
            shared.push(StreamAudience {
                stream: name.clone(),
                epoch,
                concurrent: sample.concurrent,
                joined: audience.map_or(0, |a| a.joined.load(Ordering::Relaxed)),
                egress_kbps: sample.egress_kbps as f32,
                quality,
                stalls: audience.map_or(0, |a| a.stalls.load(Ordering::Relaxed)),
                stalled_recent: sample.stalled_recent,
                switches: audience.map_or(0, |a| a.switches.load(Ordering::Relaxed)),
                ingress,
            });
        }
        shared.truncate(MAX_SHARED_STREAMS);
        let remote = app.registry.remote_audience(REMOTE_MAX_AGE);
        app.registry.set_audience(shared.clone());

        for mine in &shared {
            let name = &mine.stream;
            let Some(rec) = app.registry.stream(name) else {
                continue;
            };
            if !rec.status().is_live() {
                continue;
            }
            let others: Vec<&StreamAudience> = remote
                .iter()
                .filter(|r| &r.stream == name && r.epoch == rec.epoch)
                .collect();
            let media_age_ms = app
                .store
                .get(name)
                .filter(|m| m.epoch.0 == rec.epoch)
                .and_then(|m| {
                    m.cmaf_tracks()
                        .iter()
                        .filter_map(|t| t.playlist_modified_ms())
                        .min()
                })
                .map(|t| (at_ms - t).max(0) as u64);
            let mut metrics = aggregate(at_ms, mine, &others, app, name, media_age_ms);
            let audience = self.audience(name);
            *audience
                .last_active
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = now;
            {
                let mut h = audience.history.lock().unwrap_or_else(|e| e.into_inner());
                let skip = h.len().saturating_sub(health::WINDOW);
                let before: Vec<Arc<StreamMetrics>> = h.iter().skip(skip).cloned().collect();
                metrics.health = health::score(&metrics, &before).score;
                if h.len() >= self.history_len {
                    h.pop_front();
                }
                h.push_back(Arc::new(metrics.clone()));
            }
            let Ok(stream) = StreamName::new(name) else {
                continue;
            };
            app.hub.publish(StreamEvent::Metrics {
                stream,
                epoch: Epoch(rec.epoch),
                metrics: Box::new(metrics),
            });
        }
        // Quality switches, in aggregate; those of a stream that is not live any more at once.
        for (name, a) in &audiences {
            self.audit_switches(app, name, a, now, !live.contains(name));
        }
        // Forget streams that are neither live nor watched for a while (their history too).
        let mut streams = self.streams.write().unwrap_or_else(|e| e.into_inner());
        streams.retain(|name, a| {
            if live.contains(name) {
                return true;
            }
            let idle = a
                .shards
                .iter()
                .all(|s| s.lock().unwrap_or_else(|e| e.into_inner()).is_empty());
            let last = *a.last_active.lock().unwrap_or_else(|e| e.into_inner());
            !(idle && now.saturating_duration_since(last) > Duration::from_secs(600))
        });
    }

    /// Quality switches go to the audit log in aggregate: at most one entry per stream per
    /// [`SWITCH_AUDIT_EVERY`], with the count and a few examples (`now` when the stream ended).
    fn audit_switches(
        &self,
        app: &App,
        stream: &str,
        audience: &Audience,
        now: Instant,
        now_anyway: bool,
    ) {
        let mut p = audience
            .pending_switches
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if p.0 == 0 || (!now_anyway && now.saturating_duration_since(p.2) < SWITCH_AUDIT_EVERY) {
            return;
        }
        let detail = format!("{} quality switch(es): {}", p.0, p.1.join(", "));
        info!(stream, switches = p.0, examples = %p.1.join(", "), "viewer quality switches");
        app.storage.audit(stream, "quality_switch", &detail, None);
        *p = (0, Vec::new(), now);
    }
}

fn aggregate(
    at_ms: i64,
    mine: &StreamAudience,
    others: &[&StreamAudience],
    app: &App,
    name: &str,
    media_age_ms: Option<u64>,
) -> StreamMetrics {
    let all: Vec<&StreamAudience> = std::iter::once(mine)
        .chain(others.iter().copied())
        .collect();
    let mut quality: HashMap<String, u64> = HashMap::new();
    for a in &all {
        for (r, n) in &a.quality {
            *quality.entry(r.clone()).or_default() += u64::from(*n);
        }
    }
    let mut quality: Vec<(String, u64)> = quality.into_iter().collect();
    quality.sort();
    let concurrent: u64 = all.iter().map(|a| u64::from(a.concurrent)).sum();
    let stalled: u64 = all.iter().map(|a| u64::from(a.stalled_recent)).sum();
    let audience = AudienceMetrics {
        concurrent_viewers: concurrent,
        total_viewers: all.iter().map(|a| a.joined).sum(),
        egress_bitrate_kbps: round1(all.iter().map(|a| f64::from(a.egress_kbps)).sum()),
        quality,
        buffering_events: all.iter().map(|a| a.stalls).sum(),
        stall_rate: if concurrent == 0 {
            0.0
        } else {
            (stalled as f64 / concurrent as f64).min(1.0)
        },
        quality_switches: all.iter().map(|a| a.switches).sum(),
        nodes: all.len() as u32,
    };
    // Ingest: the local tree's full sample, or the origin's summary.
    let ingress = match app.stats_of(name).filter(|_| mine.ingress.is_some()) {
        Some(s) => s.snapshot(),
        None => all
            .iter()
            .find_map(|a| a.ingress.as_ref())
            .map(ingress_of)
            .unwrap_or_default(),
    };
    StreamMetrics {
        at_ms,
        ingress,
        audience,
        media_age_ms,
        health: 0.0,
    }
}

fn summary_of(m: &IngressMetrics) -> IngressSummary {
    IngressSummary {
        bitrate_kbps: m.ingress_bitrate_kbps as f32,
        fps: m.fps as f32,
        frames: m.frames,
        dropped_frames: m.dropped_frames,
        width: m.width.unwrap_or(0),
        height: m.height.unwrap_or(0),
        video_codec: m.video_codec.clone().unwrap_or_default(),
        audio_codec: m.audio_codec.clone().unwrap_or_default(),
    }
}

fn ingress_of(s: &IngressSummary) -> IngressMetrics {
    let opt = |v: &str| (!v.is_empty()).then(|| v.to_owned());
    IngressMetrics {
        ingress_bitrate_kbps: f64::from(s.bitrate_kbps),
        fps: f64::from(s.fps),
        video_codec: opt(&s.video_codec),
        audio_codec: opt(&s.audio_codec),
        width: (s.width > 0).then_some(s.width),
        height: (s.height > 0).then_some(s.height),
        frames: s.frames,
        dropped_frames: s.dropped_frames,
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// A session id shortened for logs.
fn short(key: &str) -> &str {
    let end = key.char_indices().nth(12).map_or(key.len(), |(i, _)| i);
    &key[..end]
}
