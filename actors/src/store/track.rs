//! One rendition in one format: init segment, a ring of segments and parts, the rendered playlist.
//!
//! Written by exactly one packager; read by any number of HTTP handlers. The lock is a std
//! `RwLock` held only to copy `Bytes` handles in or out (never across an `.await`). Every change
//! bumps the `watch` version so blocking reloads (`_HLS_msn`/`_HLS_part`) wake up.

use std::collections::VecDeque;
use std::sync::RwLock;

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use super::MediaConfig;
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
    pub(crate) playlist: Option<Bytes>,
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
}

impl TrackStore {
    pub(crate) fn new(
        rendition: RenditionId,
        format: TrackFormat,
        kind: TrackKind,
        epoch: Epoch,
        config: MediaConfig,
    ) -> Self {
        Self {
            rendition,
            format,
            kind,
            epoch,
            config,
            inner: RwLock::new(TrackInner::default()),
            version: watch::channel(0).0,
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
        let mut g = self.write();
        g.init = init;
        g.info = Some(info);
    }

    /// Open a new segment starting at `start` (track timescale), returns its MSN.
    pub fn begin_segment(&self, start: u64, pdt_ms: i64) -> u64 {
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
    }

    /// Append a finished part to the open segment. Returns false if no segment is open.
    pub fn push_part(&self, duration: f64, independent: bool, data: Bytes) -> bool {
        let mut g = self.write();
        let Some(open) = g.open.as_mut() else {
            return false;
        };
        let index = open.parts.len() as u64;
        open.parts.push(Part {
            index,
            duration,
            independent,
            data,
        });
        true
    }

    /// Close the open segment at `end` (track timescale). For CMAF the segment's bytes are its
    /// parts concatenated; for TS pass the whole segment in `data`.
    pub fn finish_segment(&self, end: u64, data: Option<Bytes>) {
        let timescale = self.read().info.as_ref().map_or(90_000, |i| i.timescale);
        let mut g = self.write();
        let Some(open) = g.open.take() else {
            return;
        };
        let data = data.unwrap_or_else(|| {
            let len = open.parts.iter().map(|p| p.data.len()).sum();
            let mut buf = BytesMut::with_capacity(len);
            for p in &open.parts {
                buf.extend_from_slice(&p.data);
            }
            buf.freeze()
        });
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

    /// The publisher is gone: no more parts will come.
    pub fn end(&self) {
        let mut g = self.write();
        g.ended = true;
        g.open = None;
    }

    pub(crate) fn publish_playlist(&self, playlist: Option<Bytes>) {
        self.write().playlist = playlist;
        self.version.send_modify(|v| *v += 1);
    }

    // ---- reader side (HTTP handlers) ----

    /// The rendered media playlist, once the first segment is complete.
    pub fn playlist(&self) -> Option<Bytes> {
        self.read().playlist.clone()
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
        if g.ended {
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
