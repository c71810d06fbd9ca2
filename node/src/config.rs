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
    /// Region label (routing, later).
    #[allow(dead_code)] // used by routing (cluster issue)
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
}

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
pub struct HttpSection {
    /// Listen address.
    pub listen: SocketAddr,
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
        }
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
