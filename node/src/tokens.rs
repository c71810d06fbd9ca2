//! Signed playback URLs: an HMAC-SHA256 token with an expiry, bound to one stream.
//!
//! A token is `{expires}.{mac}`: `expires` in Unix seconds (decimal), `mac` the first 16 bytes
//! of HMAC-SHA256(secret, "hivecast-playback-v1\n{stream}\n{expires}") in lowercase hex. The
//! stream is not in the token: it is the stream of the URL the token comes with, so a token of
//! one stream opens no other.
//!
//! A viewer presents it on the multivariant playlist or the MPD (`?token=`); the node then hands
//! out child URLs under a path segment `~{token}` (`/cmaf/{stream}/~{token}/480p/index.m3u8`),
//! so every relative URL below resolves with the token in it: media playlists, parts, segments
//! and init segments keep it without being rewritten per viewer. A CDN caches one copy per
//! object for all viewers when its cache key drops that one path segment (docs/CACHING.md).

use std::io::Write;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Domain separation of the MAC input (a new scheme gets a new label).
const LABEL: &str = "hivecast-playback-v1";
/// MAC bytes kept in a token (128 bits).
const MAC_LEN: usize = 16;
/// The longest token accepted (digits of a u64 expiry, a dot, the MAC in hex).
pub const MAX_TOKEN_LEN: usize = 20 + 1 + MAC_LEN * 2;
/// The longest validity a token may be created with (30 days).
pub const MAX_TTL_S: u64 = 30 * 24 * 3600;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not of the form `{expires}.{mac}`.
    #[error("malformed playback token")]
    Malformed,
    /// The MAC does not match: forged, altered, for another stream, or from another secret.
    #[error("invalid playback token")]
    Invalid,
    /// Valid but past its expiry.
    #[error("playback token expired at {expired_at} (Unix seconds)")]
    Expired {
        /// The token's expiry.
        expired_at: u64,
    },
}

/// Why the secret could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Reading or writing `<data_dir>/playback_secret`.
    #[error("playback secret {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The stored secret is not usable.
    #[error("playback secret {path} is empty or shorter than 16 characters")]
    TooShort {
        /// The file.
        path: String,
    },
}

/// Signs and checks playback tokens with one secret.
#[derive(Clone)]
pub struct PlaybackTokens {
    secret: Vec<u8>,
}

impl std::fmt::Debug for PlaybackTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlaybackTokens { .. }")
    }
}

impl PlaybackTokens {
    /// With `secret` as the HMAC key.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            secret: secret.to_vec(),
        }
    }

    /// The configured secret (`playback.token_secret`), else the one in
    /// `<data_dir>/playback_secret`, generated there (32 random bytes, hex, mode 0600) if absent.
    pub fn load(configured: &str, data_dir: &Path) -> Result<Self, SecretError> {
        if !configured.is_empty() {
            return Ok(Self::new(configured.as_bytes()));
        }
        let path = data_dir.join("playback_secret");
        let shown = path.display().to_string();
        let io = |source| SecretError::Io {
            path: shown.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(s) => {
                let s = s.trim();
                if s.len() < 16 {
                    return Err(SecretError::TooShort { path: shown });
                }
                Ok(Self::new(s.as_bytes()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secret = hex::encode(rand::random::<[u8; 32]>());
                std::fs::create_dir_all(data_dir).map_err(io)?;
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let mut f = opts.open(&path).map_err(io)?;
                f.write_all(secret.as_bytes()).map_err(io)?;
                tracing::info!(path = %shown, "generated the playback token secret");
                Ok(Self::new(secret.as_bytes()))
            }
            Err(e) => Err(io(e)),
        }
    }

    fn mac(&self, stream: &str, expires: u64) -> [u8; MAC_LEN] {
        // HMAC takes a key of any length.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
        m.update(LABEL.as_bytes());
        m.update(b"\n");
        m.update(stream.as_bytes());
        m.update(b"\n");
        m.update(expires.to_string().as_bytes());
        let full = m.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// A token for `stream` valid until `expires` (Unix seconds).
    pub fn sign(&self, stream: &str, expires: u64) -> String {
        format!("{expires}.{}", hex::encode(self.mac(stream, expires)))
    }

    /// Check `token` for `stream` at `now` (Unix seconds); its expiry if good.
    pub fn verify(&self, stream: &str, token: &str, now: u64) -> Result<u64, TokenError> {
        let expires = parse(token).ok_or(TokenError::Malformed)?;
        let (_, mac_hex) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let mut given = [0u8; MAC_LEN];
        hex::decode_to_slice(mac_hex, &mut given).map_err(|_| TokenError::Malformed)?;
        let good: bool = given.ct_eq(&self.mac(stream, expires)).into();
        if !good {
            return Err(TokenError::Invalid);
        }
        if now >= expires {
            return Err(TokenError::Expired {
                expired_at: expires,
            });
        }
        Ok(expires)
    }
}

/// The expiry of a well-formed token: 1 to 20 digits, a dot, 32 lowercase hex digits.
fn parse(token: &str) -> Option<u64> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let (exp, mac) = token.split_once('.')?;
    let digits = !exp.is_empty() && exp.len() <= 20 && exp.bytes().all(|b| b.is_ascii_digit());
    let hexed = mac.len() == MAC_LEN * 2
        && mac
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !(digits && hexed) {
        return None;
    }
    exp.parse().ok()
}

/// Unix seconds now.
pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A duration as people write it on a command line: `90`, `90s`, `15m`, `1h`, `7d`.
pub fn parse_ttl(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num.parse().ok()?;
    let mul = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(mul).filter(|&t| t > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tokens() -> PlaybackTokens {
        PlaybackTokens::new(b"test-secret-0123456789")
    }

    #[test]
    fn a_token_opens_its_stream_until_it_expires() {
        let t = tokens();
        let tok = t.sign("live1", 2_000);
        assert_eq!(tok.len(), 4 + 1 + 32, "{tok}");
        assert_eq!(t.verify("live1", &tok, 1_999), Ok(2_000));
        assert_eq!(
            t.verify("live1", &tok, 2_000),
            Err(TokenError::Expired { expired_at: 2_000 })
        );
        assert_eq!(t.verify("live2", &tok, 10), Err(TokenError::Invalid));
        let other = PlaybackTokens::new(b"another-secret-0123456");
        assert_eq!(other.verify("live1", &tok, 10), Err(TokenError::Invalid));
    }

    #[test]
    fn altered_tokens_are_refused() {
        let t = tokens();
        let tok = t.sign("s", 5_000);
        let (exp, mac) = tok.split_once('.').unwrap();
        // A later expiry with the old MAC.
        assert_eq!(
            t.verify("s", &format!("9{exp}.{mac}"), 0),
            Err(TokenError::Invalid)
        );
        // One MAC digit changed.
        let mut bad = tok.clone().into_bytes();
        let last = bad.len() - 1;
        bad[last] = if bad[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            t.verify("s", std::str::from_utf8(&bad).unwrap(), 0),
            Err(TokenError::Invalid)
        );
        for malformed in [
            "",
            ".",
            "5000",
            "5000.",
            ".00112233445566778899aabbccddeeff",
            "5000.00112233445566778899AABBCCDDEEFF",
            "5000.00112233445566778899aabbccddee",
            "-1.00112233445566778899aabbccddeeff",
            "99999999999999999999999.00112233445566778899aabbccddeeff",
            "5000.00112233445566778899aabbccddeeff.x",
        ] {
            assert_eq!(
                t.verify("s", malformed, 0),
                Err(TokenError::Malformed),
                "{malformed:?}"
            );
        }
    }

    #[test]
    fn ttls_parse_as_written() {
        assert_eq!(parse_ttl("90"), Some(90));
        assert_eq!(parse_ttl("90s"), Some(90));
        assert_eq!(parse_ttl("15m"), Some(900));
        assert_eq!(parse_ttl("1h"), Some(3600));
        assert_eq!(parse_ttl("7d"), Some(7 * 86_400));
        for bad in ["", "h", "1x", "0", "-1h", "1.5h", "99999999999999999999d"] {
            assert_eq!(parse_ttl(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_generated_secret_is_kept_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = PlaybackTokens::load("", dir.path()).unwrap();
        let b = PlaybackTokens::load("", dir.path()).unwrap();
        assert_eq!(
            a.sign("s", 9),
            b.sign("s", 9),
            "the same secret after a restart"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("playback_secret"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "mode {mode:o}");
        }
        let c = PlaybackTokens::load("configured-secret-value", dir.path()).unwrap();
        assert_ne!(a.sign("s", 9), c.sign("s", 9));
    }

    proptest! {
        /// Arbitrary input never panics and is never accepted.
        #[test]
        fn arbitrary_tokens_are_refused(s in ".{0,80}", stream in "[a-z]{1,8}") {
            prop_assert!(tokens().verify(&stream, &s, 0).is_err());
        }

        /// Every signed token verifies for its stream before its expiry, and for no other stream.
        #[test]
        fn signed_tokens_round_trip(exp in 1u64.., stream in "[a-z0-9_-]{1,16}") {
            let t = tokens();
            let tok = t.sign(&stream, exp);
            prop_assert!(tok.len() <= MAX_TOKEN_LEN);
            prop_assert_eq!(t.verify(&stream, &tok, exp - 1), Ok(exp));
            let other = format!("{stream}x");
            prop_assert_eq!(t.verify(&other, &tok, 0), Err(TokenError::Invalid));
        }
    }
}
