//! Domain types shared by the actors, the store and the node.

use std::fmt;

/// A stream's public name (`demo` in `/hls/demo/master.m3u8`), independent of the protocol that
/// brought it in. Validated: 1 to 64 characters from `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamName(String);

/// Why a string is not a valid [`StreamName`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid stream name {name:?}: use 1 to 64 characters from [A-Za-z0-9_-]")]
pub struct InvalidStreamName {
    /// The rejected input (truncated to 80 characters).
    pub name: String,
}

impl StreamName {
    /// Longest accepted name, in bytes.
    pub const MAX_LEN: usize = 64;

    /// Validate and wrap a name.
    pub fn new(name: &str) -> Result<Self, InvalidStreamName> {
        let ok = !name.is_empty()
            && name.len() <= Self::MAX_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(InvalidStreamName {
                name: name.chars().take(80).collect(),
            })
        }
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for StreamName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A publish session's number for one stream. Bumped on every claim (each publish), persisted,
/// never reused: segment URIs carry it, so a cache can never serve an older session's segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The lifecycle of a stream. Moves only forward:
/// `PendingIngest -> Active -> EndedGracefully | Error` (and `PendingIngest -> Error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamStatus {
    /// Publisher accepted, no decodable media yet.
    PendingIngest,
    /// Media is flowing and being packaged.
    Active,
    /// The publisher unpublished cleanly.
    EndedGracefully,
    /// The stream failed: connection dropped, media timeout, bad codec or an internal fault.
    Error,
}

impl StreamStatus {
    /// The wire spelling used by the API and WebSocket events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingIngest => "PENDING_INGEST",
            Self::Active => "ACTIVE",
            Self::EndedGracefully => "ENDED_GRACEFULLY",
            Self::Error => "ERROR",
        }
    }

    /// Parse the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "PENDING_INGEST" => Self::PendingIngest,
            "ACTIVE" => Self::Active,
            "ENDED_GRACEFULLY" => Self::EndedGracefully,
            "ERROR" => Self::Error,
            _ => return None,
        })
    }

    /// Whether the stream can still produce media.
    pub fn is_live(self) -> bool {
        matches!(self, Self::PendingIngest | Self::Active)
    }

    /// Whether moving from `self` to `next` is allowed by the lifecycle.
    pub fn can_move_to(self, next: StreamStatus) -> bool {
        matches!(
            (self, next),
            (Self::PendingIngest, Self::Active)
                | (Self::PendingIngest, Self::Error)
                | (Self::PendingIngest, Self::EndedGracefully)
                | (Self::Active, Self::EndedGracefully)
                | (Self::Active, Self::Error)
        )
    }
}

impl fmt::Display for StreamStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rendition's identifier: `source`, `1080p`, `720p`, `480p`, or `audio` for the shared audio track.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RenditionId(pub String);

impl RenditionId {
    /// The passthrough rendition.
    pub fn source() -> Self {
        Self("source".into())
    }
    /// The shared audio track (CMAF packaging only; muxed into every TS rendition).
    pub fn audio() -> Self {
        Self("audio".into())
    }
    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RenditionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn unix_ms_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names() {
        assert!(StreamName::new("demo").is_ok());
        assert!(StreamName::new("a-b_C9").is_ok());
        assert!(StreamName::new("").is_err());
        assert!(StreamName::new("a/b").is_err());
        assert!(StreamName::new("..").is_err());
        assert!(StreamName::new(&"x".repeat(65)).is_err());
        assert!(StreamName::new(&"x".repeat(64)).is_ok());
    }

    #[test]
    fn lifecycle_moves_forward_only() {
        use StreamStatus::*;
        assert!(PendingIngest.can_move_to(Active));
        assert!(Active.can_move_to(EndedGracefully));
        assert!(Active.can_move_to(Error));
        assert!(!EndedGracefully.can_move_to(Active));
        assert!(!Error.can_move_to(Active));
        assert!(!Active.can_move_to(PendingIngest));
        for s in [PendingIngest, Active, EndedGracefully, Error] {
            assert_eq!(StreamStatus::parse(s.as_str()), Some(s));
        }
    }
}
