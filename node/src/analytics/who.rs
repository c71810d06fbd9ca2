//! Who a viewer request comes from: the axum extractor [`Viewer`].
//!
//! In order: the CMCD session id (`CMCD-*` headers, or the `CMCD` query parameter), the `sid`
//! query parameter this node put in the master playlist's media URLs, else the client address
//! with a hash of its User-Agent (players that send nothing, such as ffplay, still count, one
//! per address and player). Malformed CMCD data never fails a request: it is ignored and
//! counted.

use std::convert::Infallible;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use hivecast_proto::cmcd::{self, Cmcd};

use super::{Hints, Who};
use crate::http::zerocopy::PeerAddr;

/// The CMCD headers of CTA-5004 (one payload each; the data is their union).
pub const CMCD_HEADERS: [&str; 4] = ["cmcd-request", "cmcd-object", "cmcd-status", "cmcd-session"];

/// The longest session id accepted in a URL.
pub const MAX_SID: usize = 64;

/// A viewer request's session and what it tells about the player.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The session.
    pub who: Who,
    /// Player state carried by the request.
    pub hints: Hints,
    /// The request's CMCD data could not be parsed.
    pub bad_cmcd: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<PeerAddr>>()
            .map(|c| c.0 .0.ip().to_string());
        Ok(identify(&parts.headers, parts.uri.query(), peer.as_deref()))
    }
}

/// Whether `s` may be a session id in a URL: 1..=64 of `[A-Za-z0-9._-]`.
pub fn valid_sid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SID
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The `sid` parameter of a query string, if valid.
pub fn url_sid(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("sid="))
        .filter(|s| valid_sid(s))
}

/// Identify a request from its headers, query and client address.
pub fn identify(headers: &HeaderMap, query: Option<&str>, peer: Option<&str>) -> Viewer {
    let mut bad_cmcd = false;
    let from_headers = {
        let values = CMCD_HEADERS
            .iter()
            .flat_map(|h| headers.get_all(*h).iter())
            .map(|v| v.as_bytes());
        match cmcd::from_headers(values) {
            Ok(c) => c,
            Err(_) => {
                bad_cmcd = true;
                None
            }
        }
    };
    let data: Option<Cmcd> = match from_headers {
        Some(c) => Some(c),
        None => match query.map(cmcd::from_query) {
            Some(Ok(c)) => c,
            Some(Err(_)) => {
                bad_cmcd = true;
                None
            }
            None => None,
        },
    };
    let hints = data
        .as_ref()
        .map(|c| Hints {
            stalled: c.bs,
            buffer_ms: c.bl,
            throughput_kbps: c.mtp,
        })
        .unwrap_or_default();
    let who = match data.and_then(|c| c.sid).filter(|s| !s.is_empty()) {
        Some(sid) => Who::Player(sid),
        None => match url_sid(query) {
            Some(sid) => Who::Url(sid.to_owned()),
            None => {
                let ua = headers
                    .get(axum::http::header::USER_AGENT)
                    .map_or(&b""[..], |v| v.as_bytes());
                let mut h: u32 = 0x811c_9dc5;
                for b in ua {
                    h = (h ^ u32::from(*b)).wrapping_mul(0x0100_0193);
                }
                Who::Address(format!("a:{}/{h:08x}", peer.unwrap_or("?")))
            }
        },
    };
    Viewer {
        who,
        hints,
        bad_cmcd,
    }
}

/// The master playlist `body` with `sid` added to every URI (variant and rendition playlists),
/// so that the media playlist requests of this viewer carry its session. Segment URIs in the
/// media playlists are relative and resolve without the query: they stay the same for all.
pub fn add_sid(body: &str, sid: &str) -> String {
    map_uris(body, |uri, out| {
        out.push_str(uri);
        out.push_str(if uri.contains('?') { "&sid=" } else { "?sid=" });
        out.push_str(sid);
    })
}

/// `body` (a playlist) with every URI written by `f`: the URI lines and the `URI="..."`
/// attributes of tags (EXT-X-MEDIA renditions, I-frame playlists, maps, parts).
pub fn map_uris(body: &str, f: impl Fn(&str, &mut String)) -> String {
    let mut out = String::with_capacity(body.len() + 256);
    for line in body.lines() {
        if line.is_empty() {
            out.push('\n');
            continue;
        }
        if line.starts_with('#') {
            let mut rest = line;
            while let Some(i) = rest.find("URI=\"") {
                let start = i + 5;
                out.push_str(&rest[..start]);
                let tail = &rest[start..];
                let end = tail.find('"').unwrap_or(tail.len());
                f(&tail[..end], &mut out);
                rest = &tail[end..];
            }
            out.push_str(rest);
        } else {
            f(line, &mut out);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn cmcd_headers_name_the_session() {
        let mut h = HeaderMap::new();
        h.insert("cmcd-session", HeaderValue::from_static("sid=\"abc-1\""));
        h.insert("cmcd-status", HeaderValue::from_static("bs"));
        h.insert("cmcd-request", HeaderValue::from_static("bl=1500,mtp=4000"));
        let v = identify(&h, Some("sid=other"), Some("127.0.0.1"));
        assert_eq!(v.who, Who::Player("abc-1".into()));
        assert!(v.hints.stalled);
        assert_eq!(v.hints.buffer_ms, Some(1500));
        assert_eq!(v.hints.throughput_kbps, Some(4000));
        assert!(!v.bad_cmcd);
    }

    #[test]
    fn cmcd_query_then_url_sid_then_address() {
        let h = HeaderMap::new();
        let v = identify(&h, Some("CMCD=sid%3D%22q1%22%2Cbs"), None);
        assert_eq!(v.who, Who::Player("q1".into()));
        assert!(v.hints.stalled);
        let v = identify(&h, Some("_HLS_msn=3&sid=u-1"), None);
        assert_eq!(v.who, Who::Url("u-1".into()));
        let v = identify(&h, Some("sid=bad/sid"), Some("10.0.0.1"));
        assert!(matches!(v.who, Who::Address(ref a) if a.starts_with("a:10.0.0.1/")));
    }

    #[test]
    fn malformed_cmcd_is_ignored_and_flagged() {
        let mut h = HeaderMap::new();
        h.insert("cmcd-request", HeaderValue::from_static("bl=notanumber"));
        let v = identify(&h, Some("sid=u-2"), None);
        assert!(v.bad_cmcd);
        assert_eq!(v.who, Who::Url("u-2".into()));
    }

    #[test]
    fn sid_goes_into_every_playlist_uri_and_nowhere_else() {
        let master = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"audio\",URI=\"audio/index.m3u8\"\n#EXT-X-STREAM-INF:BANDWIDTH=1000,AUDIO=\"a\"\n480p/index.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=2000\n720p/index.m3u8?x=1\n";
        let out = add_sid(master, "s1");
        assert_eq!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"audio\",URI=\"audio/index.m3u8?sid=s1\"\n#EXT-X-STREAM-INF:BANDWIDTH=1000,AUDIO=\"a\"\n480p/index.m3u8?sid=s1\n#EXT-X-STREAM-INF:BANDWIDTH=2000\n720p/index.m3u8?x=1&sid=s1\n"
        );
    }
}
