//! One version of a rendered playlist: its bytes, when they last changed, and their gzip form,
//! computed at most once and shared by every reader of that version.
//!
//! A media playlist is rendered once per change ([`super::TrackStore`] keeps the current version
//! behind an `Arc`), and thousands of viewers then fetch that same version, most of them with
//! `Accept-Encoding: gzip`. Compressing per request would cost one deflate per viewer per reload;
//! here the first reader that wants gzip pays for it and every later one clones the same
//! [`Bytes`]. A re-render with identical bytes keeps the version (and its gzip form).
//!
//! Not here: whether a request gets gzip (the HTTP layer negotiates `Accept-Encoding`), and any
//! other content coding.

use std::io::Write;
use std::sync::OnceLock;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use tracing::warn;

/// One rendered version of a playlist (or of a master playlist or MPD rendered for one request).
#[derive(Debug)]
pub struct PlaylistVersion {
    body: Bytes,
    modified_ms: i64,
    /// The gzip form of `body`, filled on the first [`Self::gzip`]; `None` inside if compression
    /// failed (then readers get the plain form).
    gzip: OnceLock<Option<Bytes>>,
}

impl PlaylistVersion {
    /// A version of `body`, last changed at `modified_ms` (wall clock, Unix ms; 0: unknown).
    pub fn new(body: Bytes, modified_ms: i64) -> Self {
        Self {
            body,
            modified_ms,
            gzip: OnceLock::new(),
        }
    }

    /// The playlist as rendered.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// When these bytes became the current playlist (Unix ms; 0: unknown), for `Last-Modified`.
    pub fn modified_ms(&self) -> i64 {
        self.modified_ms
    }

    /// The body gzip-compressed (RFC 1952), computed on the first call and shared by every
    /// later one: clones of the returned `Bytes` point at one buffer. Concurrent first callers
    /// wait for one compression (a few tens of microseconds for a playlist) rather than each
    /// doing it. `None` if compression failed, which writing into a `Vec` does not do in practice.
    pub fn gzip(&self) -> Option<&Bytes> {
        self.gzip.get_or_init(|| gzip(&self.body)).as_ref()
    }
}

/// `data` gzip-compressed at the default level: playlists are text of a few KiB that compress
/// about 5:1, and each version is compressed once, so a faster level would buy nothing noticeable.
fn gzip(data: &[u8]) -> Option<Bytes> {
    let mut enc = GzEncoder::new(
        Vec::with_capacity(data.len() / 3 + 64),
        Compression::default(),
    );
    match enc.write_all(data).and_then(|()| enc.finish()) {
        Ok(out) => Some(Bytes::from(out)),
        Err(e) => {
            warn!(error = %e, len = data.len(), "gzip of a playlist failed: serving it plain");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn gunzip(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(b)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    }

    #[test]
    fn gzip_is_computed_once_and_decodes_to_the_body() {
        let body = Bytes::from("#EXTM3U\n#EXT-X-VERSION:9\n".repeat(50));
        let v = PlaylistVersion::new(body.clone(), 42);
        assert_eq!(v.modified_ms(), 42);
        let first = v.gzip().expect("gzip").clone();
        let second = v.gzip().expect("gzip").clone();
        assert_eq!(first.as_ptr(), second.as_ptr(), "one shared buffer");
        assert!(first.len() < body.len() / 4, "{} bytes", first.len());
        assert_eq!(gunzip(&first), body);
        assert_eq!(v.body(), &body);
    }

    #[test]
    fn empty_body_still_gzips() {
        let v = PlaylistVersion::new(Bytes::new(), 0);
        assert!(gunzip(v.gzip().expect("gzip")).is_empty());
    }
}
