//! Configuration: the embedded `config/default.toml`, then an optional file, then the
//! environment (`HIVECAST_<SECTION>__<KEY>`), merged by figment. Only this crate reads config.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;

/// The embedded default (single node, no external services).
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Parsing or merging failed (figment's message names the key and the source).
    #[error(transparent)]
    Load(Box<figment::Error>),
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Identity and storage.
    pub node: NodeSection,
    /// The RTMP listener.
    pub rtmp: RtmpSection,
    /// The HTTP listener.
    pub http: HttpSection,
    /// Admin authentication.
    pub auth: AuthSection,
    /// Packaging.
    pub media: MediaSection,
    /// The ABR ladder.
    pub transcode: TranscodeSection,
    /// Peers, the registry and routing.
    pub cluster: ClusterSection,
    /// HTTP caching and CORS of the viewer routes.
    pub cache: CacheSection,
    /// Viewer sessions and stream metrics.
    #[serde(default)]
    pub analytics: AnalyticsSection,
    /// The audit log.
    #[serde(default)]
    pub audit: AuditSection,
    /// A CDN in front of the viewer routes.
    #[serde(default)]
    pub cdn: CdnSection,
    /// HTTPS (HTTP/2) and RTMPS.
    #[serde(default)]
    pub tls: TlsSection,
    /// Signed playback URLs.
    #[serde(default)]
    pub playback: PlaybackSection,
    /// Test hooks.
    #[serde(default)]
    pub debug: DebugSection,
}

/// `[node]`
#[derive(Debug, Clone, Deserialize)]
pub struct NodeSection {
    /// Node id (shown as a stream's origin).
    pub id: String,
    /// Where the redb file and the generated admin token live.
    pub data_dir: PathBuf,
    /// Region label: routing sends a viewer of this region here first.
    pub region: String,
}

/// `[rtmp]`
#[derive(Debug, Clone, Deserialize)]
pub struct RtmpSection {
    /// Listen address.
    pub listen: SocketAddr,
    /// Handshake + connect + publish deadline.
    pub handshake_timeout_ms: u64,
    /// Idle deadline.
    pub idle_timeout_ms: u64,
    /// Largest accepted chunk size.
    pub max_chunk_size: u32,
    /// Largest accepted message.
    pub max_message_len: u32,
    /// Concurrent RTMP connections.
    pub max_connections: usize,
    /// Streams this node originates at once: live publish sessions accepted by this node's RTMP
    /// listener (0: no limit). A publish beyond it is refused before the stream is claimed (its
    /// state does not change) with `NetStream.Publish.Denied` "node stream limit (N) reached",
    /// so the publisher can go to another node. A slot is freed when its publish ends: the
    /// publisher unpublishes or its connection closes, whatever closed it.
    pub max_streams: usize,
    /// Concurrent RTMP/RTMPS connections from one address (0: no limit); beyond, a new one is
    /// closed at once.
    #[serde(default = "default_per_address")]
    pub max_connections_per_address: usize,
    /// Failed publishes (unknown or revoked keys) one address may make per minute before each
    /// further failure is answered only after `auth_failure_delay_ms` and audited in aggregate
    /// (0: no limit). A right key is never delayed.
    #[serde(default = "default_auth_failures")]
    pub auth_failures_per_minute: u32,
    /// See `auth_failures_per_minute`.
    #[serde(default = "default_auth_delay")]
    pub auth_failure_delay_ms: u64,
}

fn default_per_address() -> usize {
    50
}

fn default_auth_failures() -> u32 {
    10
}

fn default_auth_delay() -> u64 {
    1000
}

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
pub struct HttpSection {
    /// Listen address.
    pub listen: SocketAddr,
    /// Keep finished segments in sealed in-memory files and send them with `sendfile(2)`
    /// (Linux), sparing a copy per viewer request; one descriptor per segment in the rings.
    #[serde(default = "default_zero_copy")]
    pub zero_copy: bool,
    /// Where the web pages find the JavaScript libraries installed from the npm registry
    /// (`npm ci` in this directory puts them in `node_modules/`). Empty: `HIVECAST_ASSETS_DIR`,
    /// else `node/assets` of the source tree the binary was built from, else `./node/assets`.
    #[serde(default)]
    pub assets_dir: String,
    /// A request head must arrive within this (per port: HTTP and HTTPS): a client dripping
    /// its headers (slowloris) is closed after it, and so is a keep-alive connection idle
    /// that long.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_ms: u64,
    /// Connections served at once per port; beyond, new ones are closed at once. Keep it under
    /// the open-files limit (the node raises its soft limit to the hard one at start).
    #[serde(default = "default_http_connections")]
    pub max_connections: usize,
    /// Threads that serve the plain HTTP port's connections, each with its own single-threaded
    /// runtime (`http::server::ConnThreads`); 0: half the cores, at least one. Viewers' media
    /// requests are answered there; other requests on those connections hop to the node's
    /// shared runtime, which also serves the HTTPS port.
    #[serde(default)]
    pub threads: usize,
}

fn default_header_read_timeout() -> u64 {
    10_000
}

fn default_http_connections() -> usize {
    16_000
}

fn default_zero_copy() -> bool {
    true
}

/// `[auth]`
#[derive(Debug, Clone, Deserialize)]
pub struct AuthSection {
    /// Bearer token for the admin API; empty = generated.
    pub admin_token: String,
}

/// `[media]`
#[derive(Debug, Clone, Deserialize)]
pub struct MediaSection {
    /// Segment target duration.
    pub segment_target_ms: u64,
    /// LL-HLS part target.
    pub part_target_ms: u64,
    /// Segments listed.
    pub window_segments: usize,
    /// Media inactivity timeout.
    pub media_timeout_ms: u64,
    /// How long an ended stream keeps serving.
    pub ended_retention_ms: u64,
}

/// `[transcode]`: the ABR ladder and the transcoder's limits.
#[derive(Debug, Clone, Deserialize)]
pub struct TranscodeSection {
    /// Transcode at all (false: every stream is passthrough).
    pub enabled: bool,
    /// Streams this node transcodes at once; more get passthrough only.
    pub capacity: usize,
    /// Offer the `source` passthrough rendition beside the ladder.
    pub offer_source: bool,
    /// A source taller than this is served through the ladder only.
    pub source_max_height: u32,
    /// A source declaring a higher video bitrate (kbit/s) is served through the ladder only.
    pub source_max_kbps: u32,
    /// x264 preset.
    pub preset: String,
    /// x264 tune.
    pub tune: String,
    /// x264 threads per encoder (0: automatic).
    pub encoder_threads: u32,
    /// Pictures queued per encoder before frames are skipped for it.
    pub queue_frames: usize,
    /// A transcoder stage with queued work and no progress this long is restarted.
    pub hang_timeout_ms: u64,
    /// Restarts allowed within `restart_window_ms` before the stream goes to ERROR.
    pub max_restarts: u32,
    /// See `max_restarts`.
    pub restart_window_ms: u64,
    /// The rungs, tallest first.
    pub ladder: Vec<RungSection>,
}

/// One `[[transcode.ladder]]` rung.
#[derive(Debug, Clone, Deserialize)]
pub struct RungSection {
    /// Rendition name (URL path component).
    pub name: String,
    /// Output height.
    pub height: u32,
    /// Video bitrate, kbit/s.
    pub video_kbps: u32,
    /// x264 profile.
    #[serde(default = "default_profile")]
    pub profile: String,
}

fn default_profile() -> String {
    "high".into()
}

/// `[cluster]`: peers, the Raft registry, failure detection and routing.
#[derive(Debug, Clone, Deserialize)]
pub struct ClusterSection {
    /// QUIC address (UDP) for node-to-node traffic; empty: a standalone node (its registry is a
    /// one-node Raft group and no peer can join).
    pub listen: String,
    /// Address other nodes use to reach this one (empty: `listen`).
    pub advertise: String,
    /// QUIC addresses of seed nodes. A node not yet in a cluster asks them to let it join; the
    /// first seed, finding no cluster among the others, starts one.
    pub seeds: Vec<String>,
    /// Public HTTP base URL viewers are sent to (empty: `http://<advertise host>:<http port>`).
    pub public_http: String,
    /// Directory of the shared cluster certificate (`cert.pem`, `key.pem`); generated there by
    /// the first node to start if absent. Empty: `<data_dir>/cluster-tls`.
    pub tls_dir: String,
    /// Raft voters; further nodes are learners (they still serve, publish and route).
    pub max_voters: usize,
    /// Raft leader heartbeat.
    pub raft_heartbeat_ms: u64,
    /// Raft election timeout range (a new leader within about this after the old one dies).
    pub election_min_ms: u64,
    /// See `election_min_ms`.
    pub election_max_ms: u64,
    /// Node heartbeats (liveness and load) to every member.
    pub heartbeat_ms: u64,
    /// A member not heard from for this long is down: routing skips it and the leader moves the
    /// streams it originates to ERROR.
    pub dead_after_ms: u64,
    /// Timeout of one node-to-node request.
    pub rpc_timeout_ms: u64,
    /// Viewer address ranges to regions, for routing when no `X-Viewer-Region` header is sent.
    #[serde(default)]
    pub regions: Vec<RegionCidr>,
}

/// One `[[cluster.regions]]` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct RegionCidr {
    /// `10.1.0.0/16` or `2001:db8::/32`.
    pub cidr: String,
    /// Region name.
    pub region: String,
}

impl ClusterSection {
    /// The QUIC listen address, if clustered.
    pub fn listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.listen.is_empty() {
            return Ok(None);
        }
        self.listen.parse().map(Some).map_err(|_| {
            ConfigError::Invalid(format!(
                "cluster.listen: {:?} is not an address",
                self.listen
            ))
        })
    }

    /// Seed addresses.
    pub fn seed_addrs(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        self.seeds
            .iter()
            .map(|s| {
                s.parse().map_err(|_| {
                    ConfigError::Invalid(format!("cluster.seeds: {s:?} is not an address"))
                })
            })
            .collect()
    }
}

/// `[cache]`: the HTTP cache headers of the viewer routes (`/hls/`, `/cmaf/`), decided in
/// `http::cache` and tabulated with their sources in `docs/CACHING.md`. The live media playlist
/// of TS HLS and the DASH MPD have no key of their own: they follow the segment target
/// (`media.segment_target_ms`), since a longer lifetime would hide new segments.
#[derive(Debug, Clone, Deserialize)]
pub struct CacheSection {
    /// `max-age` of segments, parts and init segments (sent as `public, max-age=N, immutable`):
    /// their names carry the session's epoch and never repeat, so the bytes behind a name never
    /// change. 600 is the 10 minutes of Apple's HLS authoring spec.
    pub media_max_age_s: u64,
    /// `max-age` of multivariant (master) playlists: their child URLs stay the same across
    /// re-publishes and the rendition set is fixed per stream. 60 is the spec's 1 minute.
    pub multivariant_max_age_s: u64,
    /// `max-age` of an LL-HLS media playlist requested without delivery directives: it changes
    /// every part, so a cache may only absorb bursts.
    pub ll_playlist_max_age_s: u64,
    /// `max-age` of a blocking playlist reload (`_HLS_msn`), in segment targets: such a URL
    /// names one playlist version (media sequence numbers never restart under one URL).
    pub blocking_reload_targets: u32,
    /// `max-age` of the 404 for a stream this node does not know and the 410 for an ended one:
    /// short enough that a new publish shows up, long enough to absorb polling storms.
    pub unknown_stream_max_age_s: u64,
    /// `Access-Control-Allow-Origin` on every viewer response: `*` or one origin
    /// (`https://player.example.com`). Constant, so no `Vary: Origin` is needed.
    pub allow_origin: String,
}

/// `[analytics]`: viewer sessions (CMCD, session ids in playlist URLs, beacons) and the
/// per-second stream metrics built from them.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AnalyticsSection {
    /// Track viewer sessions at all (off: no per-request work; metrics carry the ingest only).
    pub enabled: bool,
    /// A session with no request in flight and none for this long has left (at least 1.5 x the
    /// segment target is used, so a TS player between reloads is not counted as gone).
    pub session_timeout_ms: u64,
    /// Sessions tracked per node at most; beyond, new sessions are counted but not tracked.
    pub max_sessions: usize,
    /// Per-second samples kept per stream for `GET /v1/streams/{stream}/metrics`.
    pub history_seconds: usize,
    /// Hand each viewer of a master playlist a session id in its media playlist URLs
    /// (`?sid=`). Off behind a CDN: per-viewer playlist URLs defeat its request collapsing
    /// (players there send CMCD and beacons instead). Unset: on, unless `cdn.base_url` is set
    /// (see [`Config::session_in_urls`]).
    pub session_in_urls: Option<bool>,
}

impl Default for AnalyticsSection {
    fn default() -> Self {
        Self {
            enabled: true,
            session_timeout_ms: 3000,
            max_sessions: 50_000,
            history_seconds: 600,
            session_in_urls: None,
        }
    }
}

/// `[audit]`: the node's audit log (`GET /v1/audit`) in its redb file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AuditSection {
    /// Entries kept at most; the oldest are dropped first.
    pub max_entries: u64,
}

impl Default for AuditSection {
    fn default() -> Self {
        Self {
            max_entries: crate::storage::DEFAULT_MAX_AUDIT,
        }
    }
}

/// `[cdn]`: a CDN (or any caching proxy) in front of the viewer routes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CdnSection {
    /// Base URL of the CDN (`https://cdn.example.com`, no trailing slash needed; env
    /// `HIVECAST_CDN_BASE_URL`). When set, every URL in HLS playlists and the MPD's `BaseURL`
    /// is absolute under it (`{base}/hls/{stream}/480p/...`), `GET /v1/route/{stream}` answers
    /// with it, and `analytics.session_in_urls` defaults to off. Empty: relative URLs.
    pub base_url: String,
}

/// `[tls]`: HTTPS with HTTP/2 and RTMPS. Active when `cert` and `key` are set, or when
/// `self_signed` is on (development: a certificate for localhost is generated in
/// `<data_dir>/tls/` at first start and reused after).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct TlsSection {
    /// PEM certificate chain (env `HIVECAST_TLS_CERT`). Reloaded on SIGHUP or when it changes.
    pub cert: String,
    /// PEM private key (env `HIVECAST_TLS_KEY`).
    pub key: String,
    /// HTTPS listen address: HTTP/2 and HTTP/1.1 (ALPN), every route of the HTTP port.
    pub https_listen: SocketAddr,
    /// RTMPS listen address: `rtmps://HOST:1936/live/{key}`.
    pub rtmps_listen: SocketAddr,
    /// Generate a self-signed certificate when `cert`/`key` are empty (development only).
    pub self_signed: bool,
    /// Refuse the admin API (`/v1/keys`, `/v1/audit`, sessions, tokens, debug) over plain
    /// HTTP with 403: the admin token then only travels encrypted.
    pub admin_https_only: bool,
}

impl Default for TlsSection {
    fn default() -> Self {
        Self {
            cert: String::new(),
            key: String::new(),
            https_listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            rtmps_listen: SocketAddr::from(([0, 0, 0, 0], 1936)),
            self_signed: false,
            admin_https_only: false,
        }
    }
}

impl TlsSection {
    /// TLS listeners are to be started.
    pub fn enabled(&self) -> bool {
        self.self_signed || (!self.cert.is_empty() && !self.key.is_empty())
    }
}

/// `[playback]`: signed playback URLs (off unless a stream is listed in `protected_streams`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PlaybackSection {
    /// HMAC-SHA256 key of playback tokens (env `HIVECAST_PLAYBACK__TOKEN_SECRET`). Empty: one
    /// is generated in `<data_dir>/playback_secret` at first start; every node of a cluster
    /// must then be given the same value.
    pub token_secret: String,
    /// Streams whose playback needs a token: names, or a prefix ending in `*` (`private-*`),
    /// or `*` for all.
    pub protected_streams: Vec<String>,
}

impl PlaybackSection {
    /// Does `stream` need a playback token?
    pub fn is_protected(&self, stream: &str) -> bool {
        self.protected_streams
            .iter()
            .any(|p| match p.strip_suffix('*') {
                Some(prefix) => stream.starts_with(prefix),
                None => p == stream,
            })
    }
}

/// `[debug]`
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DebugSection {
    /// Enable the fault-injection endpoint.
    #[serde(default)]
    pub fault_injection: bool,
}

impl Config {
    /// Load the default, then `file`, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(f) = file {
            fig = fig.merge(Toml::file_exact(f));
        }
        fig = fig.merge(
            Env::prefixed("HIVECAST_")
                .split("__")
                .ignore(&["admin_token", "bin"]),
        );
        let mut cfg: Config = fig.extract().map_err(|e| ConfigError::Load(Box::new(e)))?;
        if let Ok(t) = std::env::var("HIVECAST_ADMIN_TOKEN") {
            if !t.is_empty() {
                cfg.auth.admin_token = t;
            }
        }
        // The contract's short names for the CDN and TLS settings.
        for (var, slot) in [
            ("HIVECAST_CDN_BASE_URL", &mut cfg.cdn.base_url),
            ("HIVECAST_TLS_CERT", &mut cfg.tls.cert),
            ("HIVECAST_TLS_KEY", &mut cfg.tls.key),
        ] {
            if let Ok(v) = std::env::var(var) {
                if !v.is_empty() {
                    *slot = v;
                }
            }
        }
        cfg.cdn.base_url = cfg.cdn.base_url.trim_end_matches('/').to_owned();
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.media.part_target_ms < 50 || self.media.part_target_ms > 5000 {
            return bad("media.part_target_ms must be within 50..=5000");
        }
        if self.media.segment_target_ms < self.media.part_target_ms {
            return bad("media.segment_target_ms must be >= media.part_target_ms");
        }
        if self.media.window_segments < 2 {
            return bad("media.window_segments must be >= 2");
        }
        let mut names = std::collections::HashSet::new();
        for r in &self.transcode.ladder {
            let ok_name = !r.name.is_empty()
                && r.name.len() <= 32
                && r.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !ok_name || r.name == "source" || r.name == "audio" || !names.insert(&r.name) {
                return bad(
                    "transcode.ladder: names must be unique, [A-Za-z0-9_-]{1,32}, not source/audio",
                );
            }
            if !(64..=4320).contains(&r.height) || !(50..=100_000).contains(&r.video_kbps) {
                return bad("transcode.ladder: height must be within 64..=4320 and video_kbps within 50..=100000");
            }
            if !matches!(r.profile.as_str(), "baseline" | "main" | "high") {
                return bad("transcode.ladder: profile must be baseline, main or high");
            }
        }
        if self.transcode.queue_frames == 0 || self.transcode.hang_timeout_ms < 100 {
            return bad("transcode.queue_frames must be >= 1 and transcode.hang_timeout_ms >= 100");
        }
        let c = &self.cluster;
        let listen = c.listen_addr()?;
        c.seed_addrs()?;
        if !c.advertise.is_empty() && c.advertise.parse::<SocketAddr>().is_err() {
            return bad("cluster.advertise must be an address (host:port)");
        }
        if listen.is_none() && !c.seeds.is_empty() {
            return bad("cluster.seeds needs cluster.listen");
        }
        if !(1..=7).contains(&c.max_voters) {
            return bad("cluster.max_voters must be within 1..=7");
        }
        if c.election_min_ms <= c.raft_heartbeat_ms * 2 || c.election_max_ms <= c.election_min_ms {
            return bad("cluster: need raft_heartbeat_ms * 2 < election_min_ms < election_max_ms");
        }
        if c.dead_after_ms < c.heartbeat_ms * 3 {
            return bad("cluster.dead_after_ms must be at least 3 heartbeats");
        }
        for r in &c.regions {
            if r.cidr.parse::<ipnet::IpNet>().is_err() {
                return bad("cluster.regions: cidr must look like 10.0.0.0/8 or 2001:db8::/32");
            }
        }
        if !crate::http::cache::valid_allow_origin(&self.cache.allow_origin) {
            return bad("cache.allow_origin must be \"*\" or one origin (scheme://host[:port])");
        }
        if self.cache.blocking_reload_targets == 0 {
            return bad("cache.blocking_reload_targets must be >= 1");
        }
        if !self.cdn.base_url.is_empty() && !valid_base_url(&self.cdn.base_url) {
            return bad("cdn.base_url must be an absolute http(s) URL without query or fragment, e.g. https://cdn.example.com");
        }
        if self.tls.cert.is_empty() != self.tls.key.is_empty() {
            return bad("tls.cert and tls.key must be set together");
        }
        for p in &self.playback.protected_streams {
            if p.is_empty() || p[..p.len() - usize::from(p.ends_with('*'))].contains('*') {
                return bad("playback.protected_streams: a name, a prefix ending in *, or *");
            }
        }
        if self.rtmp.max_chunk_size < 128 {
            return bad("rtmp.max_chunk_size must be >= 128 (the RTMP default)");
        }
        Ok(())
    }

    /// Packaging parameters for the store.
    pub fn media_config(&self) -> hivecast_actors::store::MediaConfig {
        hivecast_actors::store::MediaConfig {
            segment_target: Duration::from_millis(self.media.segment_target_ms),
            part_target: Duration::from_millis(self.media.part_target_ms),
            window_segments: self.media.window_segments,
            ..Default::default()
        }
    }

    /// The base URL `stream`'s playlists are rendered under: the CDN's, except for a stream
    /// that needs a playback token, whose media playlists stay relative so that the `~{token}`
    /// path segment of their own URL carries over to every object (`crate::tokens`); its
    /// multivariant playlist and MPD, rewritten per viewer anyway, are absolute.
    pub fn url_base_for(&self, stream: &str) -> Option<std::sync::Arc<str>> {
        if self.playback.is_protected(stream) {
            return None;
        }
        self.url_base()
    }

    /// The CDN base URL playlists are rendered under, if one is configured.
    pub fn url_base(&self) -> Option<std::sync::Arc<str>> {
        (!self.cdn.base_url.is_empty()).then(|| self.cdn.base_url.as_str().into())
    }

    /// Whether master playlists hand out `?sid=` media playlist URLs: as configured, else on
    /// unless a CDN base URL is set (per-viewer URLs would defeat the CDN's request collapsing).
    pub fn session_in_urls(&self) -> bool {
        self.analytics
            .session_in_urls
            .unwrap_or(self.cdn.base_url.is_empty())
    }
}

/// `scheme://host[:port][/path]` with scheme http or https, no query, fragment or whitespace.
fn valid_base_url(s: &str) -> bool {
    let Some(rest) = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
    else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or("");
    !host.is_empty()
        && !s.contains(['?', '#', '"', '<', '>', '\\'])
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl TranscodeSection {
    /// The stream tree's transcoding plan (`None` when disabled or the ladder is empty).
    pub fn plan(&self) -> Option<hivecast_actors::stream::TranscodePlan> {
        use hivecast_actors::transcode::ladder::{Rung, SourcePolicy};
        if !self.enabled || self.ladder.is_empty() {
            return None;
        }
        Some(hivecast_actors::stream::TranscodePlan {
            ladder: std::sync::Arc::new(
                self.ladder
                    .iter()
                    .map(|r| Rung {
                        name: r.name.clone(),
                        height: r.height,
                        video_kbps: r.video_kbps,
                        profile: r.profile.clone(),
                    })
                    .collect(),
            ),
            source: SourcePolicy {
                offer: self.offer_source,
                max_height: self.source_max_height,
                max_kbps: self.source_max_kbps,
            },
            settings: hivecast_actors::transcode::TranscodeSettings {
                preset: self.preset.clone(),
                tune: self.tune.clone(),
                encoder_threads: self.encoder_threads,
                queue_frames: self.queue_frames,
                hang_timeout: Duration::from_millis(self.hang_timeout_ms),
                max_restarts: self.max_restarts,
                restart_window: Duration::from_millis(self.restart_window_ms),
                ..Default::default()
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_loads() {
        let c = Config::load(None).unwrap();
        assert_eq!(c.rtmp.listen.port(), 1935);
        assert_eq!(c.http.listen.port(), 8080);
        assert_eq!(c.media.part_target_ms, 200);
        let plan = c.transcode.plan().expect("transcoding on by default");
        let names: Vec<_> = plan.ladder.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["1080p", "720p", "480p"]);
        assert_eq!(plan.ladder[0].video_kbps, 5000);
        assert_eq!(c.cache.media_max_age_s, 600);
        assert_eq!(c.cache.multivariant_max_age_s, 60);
        assert_eq!(c.cache.ll_playlist_max_age_s, 1);
        assert_eq!(c.cache.blocking_reload_targets, 6);
        assert_eq!(c.cache.unknown_stream_max_age_s, 1);
        assert_eq!(c.cache.allow_origin, "*");
        assert_eq!(c.rtmp.max_streams, 0, "no stream limit by default");
    }

    #[test]
    fn max_streams_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[rtmp]\nmax_streams = 100\n").unwrap();
        let c = Config::load(Some(&f)).unwrap();
        assert_eq!(c.rtmp.max_streams, 100);
        assert_eq!(
            c.rtmp.max_connections, 1000,
            "the rest of [rtmp] keeps its defaults"
        );
    }

    #[test]
    fn bad_allow_origin_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        for bad in [
            "",
            "example.com",
            "https://a.example, https://b.example",
            "https://x/\n",
        ] {
            std::fs::write(&f, format!("[cache]\nallow_origin = {bad:?}\n")).unwrap();
            let err = Config::load(Some(&f)).unwrap_err();
            assert!(err.to_string().contains("allow_origin"), "{bad:?}: {err}");
        }
        std::fs::write(
            &f,
            "[cache]\nallow_origin = \"https://player.example:8443\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&f)).unwrap();
        assert_eq!(c.cache.allow_origin, "https://player.example:8443");
    }

    #[test]
    fn cdn_base_url_is_checked_and_turns_session_urls_off() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        let c = Config::load(None).unwrap();
        assert!(c.url_base().is_none() && c.session_in_urls());
        for bad in [
            "cdn.example.com",
            "ftp://cdn.example.com",
            "https://",
            "https://cdn.example.com/?a=1",
            "https://cdn example.com",
        ] {
            std::fs::write(&f, format!("[cdn]\nbase_url = {bad:?}\n")).unwrap();
            let err = Config::load(Some(&f)).unwrap_err();
            assert!(err.to_string().contains("cdn.base_url"), "{bad:?}: {err}");
        }
        std::fs::write(&f, "[cdn]\nbase_url = \"https://cdn.example.com/live/\"\n").unwrap();
        let c = Config::load(Some(&f)).unwrap();
        assert_eq!(
            c.url_base().as_deref(),
            Some("https://cdn.example.com/live")
        );
        assert!(!c.session_in_urls(), "off by default behind a CDN");
        std::fs::write(
            &f,
            "[cdn]\nbase_url = \"https://cdn.example.com\"\n[analytics]\nsession_in_urls = true\n\
             [playback]\nprotected_streams = [\"vip-*\", \"one\"]\n",
        )
        .unwrap();
        let c = Config::load(Some(&f)).unwrap();
        assert!(c.session_in_urls(), "an explicit setting wins");
        assert!(c.playback.is_protected("vip-1") && c.playback.is_protected("one"));
        assert!(!c.playback.is_protected("onex") && !c.playback.is_protected("open"));
        assert!(c.url_base_for("vip-1").is_none(), "protected: relative");
        assert!(c.url_base_for("open").is_some());
        std::fs::write(&f, "[playback]\nprotected_streams = [\"a*b\"]\n").unwrap();
        assert!(Config::load(Some(&f)).is_err());
    }

    #[test]
    fn bad_ladder_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[[transcode.ladder]]\nname = \"source\"\nheight = 720\nvideo_kbps = 2000\n",
        )
        .unwrap();
        let err = Config::load(Some(&f)).unwrap_err();
        assert!(err.to_string().contains("transcode.ladder"), "{err}");
    }

    #[test]
    fn file_overrides_default() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[http]\nlisten = \"127.0.0.1:9999\"\n[media]\npart_target_ms = 10\n",
        )
        .unwrap();
        let err = Config::load(Some(&f)).unwrap_err();
        assert!(err.to_string().contains("part_target_ms"), "{err}");
        std::fs::write(&f, "[http]\nlisten = \"127.0.0.1:9999\"\n").unwrap();
        assert_eq!(Config::load(Some(&f)).unwrap().http.listen.port(), 9999);
    }
}
