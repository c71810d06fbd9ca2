//! One rendition in one format: init segment, a ring of segments and parts, the rendered playlist.
//!
//! Written by exactly one packager; read by any number of HTTP handlers. The lock is a std
//! `RwLock` held only to copy `Bytes` handles in or out (never across an `.await`). Every change
//! bumps the `watch` version so blocking reloads (`_HLS_msn`/`_HLS_part`) wake up, and, once the
//! lock is released, goes out on the session's replication feed as a [`MediaOp`].
//!
//! The media playlist is kept as one [`PlaylistVersion`] per change behind an `Arc`: readers
//! take the `Arc` and serve it (and its gzip form, computed once per version) without copying.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};

use bytes::{Bytes, BytesMut};
use tokio::sync::{broadcast, watch};

use super::replica::{emit, MediaOp, TrackStats};
use super::{MediaConfig, PlaylistVersion};
use crate::types::{Epoch, RenditionId};

/// The container format of a track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackFormat {
    /// CMAF fMP4: LL-HLS and DASH.
    Cmaf,
    /// MPEG-TS: legacy HLS.
    Ts,
}

/// Video or audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackKind {
    /// A video rendition (in TS, muxed with the audio).
    Video,
    /// The shared audio track.
    Audio,
}

/// What a master playlist / MPD needs to know about a track.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackInfo {
    /// RFC 6381 codec string (`avc1.64001f`, `mp4a.40.2`).
    pub codec: String,
    /// Video: width in pixels.
    pub width: Option<u32>,
    /// Video: height in pixels.
    pub height: Option<u32>,
    /// Video: frames per second, if known.
    pub frame_rate: Option<f64>,
    /// Audio: sampling rate in Hz.
    pub sample_rate: Option<u32>,
    /// Audio: channel count.
    pub channels: Option<u8>,
    /// Media timescale of the track (90 000 for video, the sampling rate for CMAF audio).
    pub timescale: u32,
    /// Declared bandwidth (bit/s) before measurements exist.
    pub declared_bandwidth: u64,
}

/// An LL-HLS part (one CMAF chunk, `moof`+`mdat`).
#[derive(Debug, Clone)]
pub struct Part {
    /// Index within its segment, from 0.
    pub index: u64,
    /// Duration in seconds.
    pub duration: f64,
    /// Starts with a keyframe.
    pub independent: bool,
    /// The bytes.
    pub data: Bytes,
}

/// A complete segment.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Media sequence number.
    pub msn: u64,
    /// Start, in the track's timescale.
    pub start: u64,
    /// Duration, in the track's timescale.
    pub duration_ticks: u64,
    /// Duration in seconds.
    pub duration: f64,
    /// Wall clock of its first frame (EXT-X-PROGRAM-DATE-TIME), Unix ms.
    pub pdt_ms: i64,
    /// Its parts (CMAF only; empty for TS).
    pub parts: Vec<Part>,
    /// The whole segment.
    pub data: Bytes,
}

#[derive(Debug)]
pub(crate) struct OpenSegment {
    pub(crate) msn: u64,
    pub(crate) start: u64,
    pub(crate) pdt_ms: i64,
    pub(crate) parts: Vec<Part>,
}

#[derive(Debug, Default)]
pub(crate) struct TrackInner {
    pub(crate) info: Option<TrackInfo>,
    pub(crate) init: Option<Bytes>,
    pub(crate) segments: VecDeque<Segment>,
    pub(crate) open: Option<OpenSegment>,
    pub(crate) next_msn: u64,
    pub(crate) ended: bool,
    /// The session failed (publisher or origin lost): no preload hint, blocking reloads are
    /// answered at once, but no ENDLIST either: a new session may continue the playlist.
    pub(crate) interrupted: bool,
    /// The current media playlist with the wall clock (Unix ms) at which its content last
    /// changed, for the HTTP `Last-Modified`; replaced only when the bytes change.
    pub(crate) playlist: Option<Arc<PlaylistVersion>>,
    /// Longest segment seen, seconds (for TARGETDURATION).
    pub(crate) max_segment_duration: f64,
    /// Highest per-segment bitrate seen, bit/s (BANDWIDTH).
    pub(crate) peak_bps: u64,
    /// Sum of bytes and seconds of the segments seen (AVERAGE-BANDWIDTH).
    pub(crate) total_bytes: u64,
    pub(crate) total_seconds: f64,
}

/// The answer to a part request.
#[derive(Debug, Clone)]
pub enum PartLookup {
    /// Here it is.
    Found(Bytes),
    /// Not produced yet, but it is the next one: worth waiting for (preload hint).
    Pending,
    /// Unknown, expired, or will never exist.
    Missing,
}

/// One rendition in one format.
#[derive(Debug)]
pub struct TrackStore {
    /// The rendition.
    pub rendition: RenditionId,
    /// The container format.
    pub format: TrackFormat,
    /// Video or audio.
    pub kind: TrackKind,
    /// The publish session.
    pub epoch: Epoch,
    pub(crate) config: MediaConfig,
    pub(crate) inner: RwLock<TrackInner>,
    version: watch::Sender<u64>,
    /// The session's replication feed.
    feed: broadcast::Sender<MediaOp>,
    /// The stream directory's absolute URL under a CDN base ([`super::StreamMedia::stream_url`]).
    pub(crate) stream_url: Option<String>,
}

impl TrackStore {
    pub(crate) fn new(
        rendition: RenditionId,
        format: TrackFormat,
        kind: TrackKind,
        epoch: Epoch,
        config: MediaConfig,
        feed: broadcast::Sender<MediaOp>,
        stream_url: Option<String>,
    ) -> Self {
        let inner = TrackInner {
            next_msn: config.msn_base,
            ..TrackInner::default()
        };
        Self {
            rendition,
            format,
            kind,
            epoch,
            config,
            inner: RwLock::new(inner),
            version: watch::channel(0).0,
            feed,
            stream_url,
        }
    }

    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, TrackInner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, TrackInner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    // ---- writer side (the packager) ----

    /// Set the init segment (CMAF) and the track description.
    pub fn set_init(&self, init: Option<Bytes>, info: TrackInfo) {
        {
            let mut g = self.write();
            g.init = init.clone();
            g.info = Some(info.clone());
        }
        emit(&self.feed, || MediaOp::Init {
            format: self.format,
            rendition: self.rendition.clone(),
            init,
            info,
        });
    }

    /// Open a new segment starting at `start` (track timescale), returns its MSN.
    pub fn begin_segment(&self, start: u64, pdt_ms: i64) -> u64 {
        let msn = {
            let mut g = self.write();
            let msn = g.next_msn;
            g.next_msn += 1;
            g.open = Some(OpenSegment {
                msn,
                start,
                pdt_ms,
                parts: Vec::new(),
            });
            msn
        };
        self.emit_begin(msn, start, pdt_ms);
        msn
    }

    /// Replica side of [`Self::begin_segment`]: open segment `msn` unless it is below the next
    /// MSN (already seen). An open segment is dropped (it can no longer complete here), and if
    /// that or a jump past the next MSN loses segments, the complete ones go too: a playlist's
    /// segments must have consecutive MSNs. Returns whether it applied.
    pub(crate) fn replay_begin(&self, msn: u64, start: u64, pdt_ms: i64) -> bool {
        {
            let mut g = self.write();
            if msn < g.next_msn {
                return false;
            }
            if msn > g.next_msn || g.open.is_some() {
                g.segments.clear();
            }
            g.next_msn = msn + 1;
            g.open = Some(OpenSegment {
                msn,
                start,
                pdt_ms,
                parts: Vec::new(),
            });
        }
        self.emit_begin(msn, start, pdt_ms);
        true
    }

    fn emit_begin(&self, msn: u64, start: u64, pdt_ms: i64) {
        emit(&self.feed, || MediaOp::Begin {
            format: self.format,
            rendition: self.rendition.clone(),
            msn,
            start,
            pdt_ms,
        });
    }

    /// Append a finished part to the open segment. Returns false if no segment is open.
    pub fn push_part(&self, duration: f64, independent: bool, data: Bytes) -> bool {
        let pushed = {
            let mut g = self.write();
            let Some(open) = g.open.as_mut() else {
                return false;
            };
            let part = Part {
                index: open.parts.len() as u64,
                duration,
                independent,
                data,
            };
            open.parts.push(part.clone());
            (open.msn, part)
        };
        self.emit_part(pushed.0, pushed.1);
        true
    }

    /// Replica side of [`Self::push_part`]: append `part` if segment `msn` is open and `part` is
    /// its next part. Returns whether it applied.
    pub(crate) fn replay_part(&self, msn: u64, part: Part) -> bool {
        {
            let mut g = self.write();
            let Some(open) = g.open.as_mut() else {
                return false;
            };
            if open.msn != msn || part.index != open.parts.len() as u64 {
                return false;
            }
            open.parts.push(part.clone());
        }
        self.emit_part(msn, part);
        true
    }

    fn emit_part(&self, msn: u64, part: Part) {
        emit(&self.feed, || MediaOp::Part {
            format: self.format,
            rendition: self.rendition.clone(),
            msn,
            part,
        });
    }

    /// Close the open segment at `end` (track timescale). For CMAF the segment's bytes are its
    /// parts concatenated; for TS pass the whole segment in `data`.
    pub fn finish_segment(&self, end: u64, data: Option<Bytes>) {
        self.finish(None, end, data);
    }

    /// Replica side of [`Self::finish_segment`]: close segment `msn` if it is the open one
    /// (making the same keep-or-drop decision). Returns whether it applied.
    pub(crate) fn replay_finish(&self, msn: u64, end: u64, data: Option<Bytes>) -> bool {
        self.finish(Some(msn), end, data)
    }

    /// Close the open segment (only if it is `expect`, when given) and publish the op.
    fn finish(&self, expect: Option<u64>, end: u64, data: Option<Bytes>) -> bool {
        let msn = {
            let mut g = self.write();
            let open = match g.open.take() {
                Some(o) if expect.is_none_or(|m| m == o.msn) => o,
                other => {
                    g.open = other;
                    return false;
                }
            };
            let msn = open.msn;
            self.close(&mut g, open, end, data.clone());
            msn
        };
        emit(&self.feed, || MediaOp::Finish {
            format: self.format,
            rendition: self.rendition.clone(),
            msn,
            end,
            data,
        });
        true
    }

    /// List the segment that was open, unless it is empty.
    fn close(&self, g: &mut TrackInner, open: OpenSegment, end: u64, data: Option<Bytes>) {
        let timescale = g.info.as_ref().map_or(90_000, |i| i.timescale);
        let mut open = open;
        let from_parts = data.is_none();
        let data = data.unwrap_or_else(|| {
            let len = open.parts.iter().map(|p| p.data.len()).sum();
            let mut buf = BytesMut::with_capacity(len);
            for p in &open.parts {
                buf.extend_from_slice(&p.data);
            }
            buf.freeze()
        });
        // Finished bytes never change: seal them into a file the HTTP layer can `sendfile`
        // (store::sealed), or keep them on the heap when sealing is off.
        let data = super::sealed::seal(&data).unwrap_or(data);
        if from_parts {
            // The parts become views of the whole segment: one copy of the bytes per segment
            // in the ring, not two (a part's own buffer is freed once no request holds it).
            let mut at = 0;
            for p in &mut open.parts {
                let n = p.data.len();
                p.data = data.slice(at..at + n);
                at += n;
            }
        }
        let duration_ticks = end.saturating_sub(open.start);
        if duration_ticks == 0 || open.parts.is_empty() && data.is_empty() {
            // An empty segment (the publisher stopped right at a boundary) is not listed:
            // EXTINF:0 and a DASH S@d of 0 are both invalid.
            return;
        }
        let duration = duration_ticks as f64 / f64::from(timescale.max(1));
        if duration > 0.0 {
            let bps = (data.len() as f64 * 8.0 / duration) as u64;
            g.peak_bps = g.peak_bps.max(bps);
            g.total_bytes += data.len() as u64;
            g.total_seconds += duration;
        }
        g.max_segment_duration = g.max_segment_duration.max(duration);
        g.segments.push_back(Segment {
            msn: open.msn,
            start: open.start,
            duration_ticks,
            duration,
            pdt_ms: open.pdt_ms,
            parts: open.parts,
            data,
        });
        // Keep a few segments beyond the advertised window for players that are still
        // downloading the oldest ones (RFC 8216bis 6.2.2: a segment must stay available for a
        // while after it leaves the playlist).
        let keep = self.config.window_segments + 4;
        while g.segments.len() > keep {
            g.segments.pop_front();
        }
    }

    /// The measurements behind TARGETDURATION and the bandwidths.
    pub(crate) fn stats(g: &TrackInner) -> TrackStats {
        TrackStats {
            max_segment_duration: g.max_segment_duration,
            peak_bps: g.peak_bps,
            total_bytes: g.total_bytes,
            total_seconds: g.total_seconds,
        }
    }

    /// Replica side of a snapshot's [`MediaOp::Stats`]: take over the origin's measurements.
    pub(crate) fn replay_stats(&self, stats: TrackStats) {
        {
            let mut g = self.write();
            g.max_segment_duration = stats.max_segment_duration;
            g.peak_bps = stats.peak_bps;
            g.total_bytes = stats.total_bytes;
            g.total_seconds = stats.total_seconds;
        }
        emit(&self.feed, || MediaOp::Stats {
            format: self.format,
            rendition: self.rendition.clone(),
            stats,
        });
    }

    /// The publisher is gone: no more parts will come. (Nothing goes out on the feed: the
    /// session's [`MediaOp::End`] comes from `StreamMedia::end`.)
    pub fn end(&self) {
        let mut g = self.write();
        g.ended = true;
        g.open = None;
    }

    /// The session failed: stop announcing parts that will not come, keep the playlist open
    /// (see [`crate::store::StreamMedia::interrupt`]).
    pub fn interrupt(&self) {
        self.write().interrupted = true;
    }

    pub(crate) fn publish_playlist(&self, playlist: Option<Bytes>) {
        {
            let mut g = self.write();
            // A re-render with the same bytes (a sibling's rendition report did not move) is
            // not a change: Last-Modified and the gzip form already computed stay put.
            if g.playlist.as_deref().map(PlaylistVersion::body) != playlist.as_ref() {
                let now = crate::types::unix_ms_now();
                g.playlist = playlist.map(|p| Arc::new(PlaylistVersion::new(p, now)));
            }
        }
        self.version.send_modify(|v| *v += 1);
    }

    // ---- reader side (HTTP handlers) ----

    /// The rendered media playlist, once the first segment is complete.
    pub fn playlist(&self) -> Option<Bytes> {
        self.read().playlist.as_ref().map(|v| v.body().clone())
    }

    /// The current version of the media playlist: its bytes, the wall clock (Unix ms) of its
    /// last change (the HTTP `Last-Modified` describes exactly these bytes) and its gzip form,
    /// computed at most once per version and shared by every reader.
    pub fn playlist_version(&self) -> Option<Arc<PlaylistVersion>> {
        self.read().playlist.clone()
    }

    /// When the media playlist last changed (Unix ms), once it exists.
    pub fn playlist_modified_ms(&self) -> Option<i64> {
        self.read().playlist.as_ref().map(|v| v.modified_ms())
    }

    /// The init segment (CMAF).
    pub fn init(&self) -> Option<Bytes> {
        self.read().init.clone()
    }

    /// The track description.
    pub fn info(&self) -> Option<TrackInfo> {
        self.read().info.clone()
    }

    /// A complete segment by MSN.
    pub fn segment(&self, msn: u64) -> Option<Bytes> {
        self.read()
            .segments
            .iter()
            .find(|s| s.msn == msn)
            .map(|s| s.data.clone())
    }

    /// A part by MSN and index.
    pub fn part(&self, msn: u64, part: u64) -> PartLookup {
        let g = self.read();
        if let Some(open) = g.open.as_ref() {
            if open.msn == msn {
                return match open.parts.get(part as usize) {
                    Some(p) => PartLookup::Found(p.data.clone()),
                    None if part == open.parts.len() as u64 => PartLookup::Pending,
                    None => PartLookup::Missing,
                };
            }
            if msn == open.msn + 1 && part == 0 && !g.ended {
                return PartLookup::Pending;
            }
        }
        match g.segments.iter().find(|s| s.msn == msn) {
            Some(s) => match s.parts.get(part as usize) {
                Some(p) => PartLookup::Found(p.data.clone()),
                None => PartLookup::Missing,
            },
            None if g.open.is_none() && !g.ended && msn == g.next_msn && part == 0 => {
                PartLookup::Pending
            }
            None => PartLookup::Missing,
        }
    }

    /// Whether the playlist already holds part `part` of segment `msn` (or, without a part,
    /// the whole segment `msn`), or the track ended: the condition of a blocking reload
    /// (RFC 8216bis 6.2.5.2).
    pub fn has(&self, msn: u64, part: Option<u64>) -> bool {
        let g = self.read();
        if g.ended || g.interrupted {
            return true;
        }
        if g.playlist.is_none() {
            return false;
        }
        let last_complete = g.segments.back().map(|s| s.msn);
        match part {
            None => last_complete.is_some_and(|m| m >= msn),
            Some(p) => {
                if last_complete.is_some_and(|m| m >= msn) {
                    return true;
                }
                g.open
                    .as_ref()
                    .is_some_and(|o| o.msn > msn || (o.msn == msn && (o.parts.len() as u64) > p))
            }
        }
    }

    /// The next MSN the playlist will have (last complete + 1, or the open one).
    pub fn next_msn(&self) -> u64 {
        self.read().next_msn
    }

    /// Last MSN and part index listed, for EXT-X-RENDITION-REPORT.
    pub fn last_position(&self) -> Option<(u64, Option<u64>)> {
        let g = self.read();
        if let Some(o) = g.open.as_ref() {
            if !o.parts.is_empty() {
                return Some((o.msn, Some(o.parts.len() as u64 - 1)));
            }
        }
        g.segments
            .back()
            .map(|s| (s.msn, s.parts.len().checked_sub(1).map(|p| p as u64)))
    }

    /// Whether the publisher is gone.
    pub fn is_ended(&self) -> bool {
        self.read().ended
    }

    /// Peak and average bitrate measured over the segments so far, bit/s.
    pub fn measured_bandwidth(&self) -> Option<(u64, u64)> {
        let g = self.read();
        if g.total_seconds <= 0.0 {
            return None;
        }
        Some((
            g.peak_bps,
            (g.total_bytes as f64 * 8.0 / g.total_seconds) as u64,
        ))
    }

    /// Follow changes (a version number bumped on every new playlist).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use crate::store::{MediaConfig, PlaylistVersion, StreamMedia, TrackFormat, TrackKind};
    use crate::types::{Epoch, RenditionId, StreamName};

    fn video_track() -> Arc<super::TrackStore> {
        let media: Arc<StreamMedia> = StreamMedia::new(
            StreamName::new("live").unwrap(),
            Epoch(1),
            MediaConfig::default(),
        );
        media.track(RenditionId::source(), TrackFormat::Cmaf, TrackKind::Video)
    }

    /// Last-Modified follows content: a re-render with identical bytes keeps the old stamp.
    #[test]
    fn playlist_stamp_moves_only_when_the_bytes_change() {
        let t = video_track();
        assert_eq!(t.playlist_modified_ms(), None);
        t.publish_playlist(Some(Bytes::from_static(b"#EXTM3U\n1")));
        assert!(t.playlist_modified_ms().is_some_and(|ms| ms > 0));
        t.write().playlist = Some(Arc::new(PlaylistVersion::new(
            Bytes::from_static(b"#EXTM3U\n1"),
            1,
        )));
        t.publish_playlist(Some(Bytes::from_static(b"#EXTM3U\n1")));
        assert_eq!(t.playlist_version().map(|v| v.modified_ms()), Some(1));
        t.publish_playlist(Some(Bytes::from_static(b"#EXTM3U\n2")));
        assert!(t.playlist_modified_ms().is_some_and(|ms| ms > 1));
    }

    /// Every reader of one playlist version gets the same gzip buffer; a re-render with the same
    /// bytes keeps it, new bytes get a new one.
    #[test]
    fn readers_of_one_version_share_its_gzip_form() {
        let t = video_track();
        assert!(t.playlist_version().is_none());
        t.publish_playlist(Some(Bytes::from(
            "#EXTM3U\n#EXTINF:2.0,\n1-0.m4s\n".repeat(20),
        )));
        let (a, b) = (t.playlist_version().unwrap(), t.playlist_version().unwrap());
        assert!(Arc::ptr_eq(&a, &b));
        let gz = a.gzip().unwrap().as_ptr();
        assert_eq!(b.gzip().unwrap().as_ptr(), gz);
        assert_eq!(b.body(), &t.playlist().unwrap());

        t.publish_playlist(Some(a.body().clone()));
        let same = t.playlist_version().unwrap();
        assert_eq!(
            same.gzip().unwrap().as_ptr(),
            gz,
            "unchanged bytes keep the gzip"
        );

        t.publish_playlist(Some(Bytes::from_static(b"#EXTM3U\n2")));
        let next = t.playlist_version().unwrap();
        assert_ne!(next.gzip().unwrap().as_ptr(), gz);
        // An older version a slow request still holds is unaffected.
        assert_eq!(a.gzip().unwrap().as_ptr(), gz);
        t.publish_playlist(None);
        assert!(t.playlist_version().is_none());
    }

    /// A finished CMAF segment holds its bytes once: its parts are views of the segment.
    #[test]
    fn parts_of_a_finished_segment_share_the_segment_bytes() {
        let t = video_track();
        let msn = t.begin_segment(0, 1);
        assert!(t.push_part(0.2, true, Bytes::from_static(b"abc")));
        assert!(t.push_part(0.2, false, Bytes::from_static(b"defg")));
        t.finish_segment(36_000, None);
        let whole = t.segment(msn).expect("segment listed");
        assert_eq!(&whole[..], b"abcdefg");
        for (i, want) in [(0u64, 0usize), (1, 3)] {
            let super::PartLookup::Found(p) = t.part(msn, i) else {
                panic!("part {i} missing");
            };
            assert_eq!(p.as_ptr(), whole[want..].as_ptr(), "part {i} is a view");
        }
    }
}
