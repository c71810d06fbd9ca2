//! Media playlist tags, one type per tag (RFC 8216bis 4.4.3 - 4.4.5), each with the
//! attributes the RFC makes mandatory as constructor arguments, and its own writer.
//!
//! Not here: the rules that relate several tags (PART DURATION vs PART-TARGET, HOLD-BACK vs
//! TARGETDURATION, program date-times after discontinuities): those need the whole snapshot
//! and live in `MediaPlaylist::validate`.
//!
//! Invariants: [`PartInf`] and [`ServerControl`] keep their fields private and store the
//! milliseconds they will write, so a value of either type always holds finite, in-range
//! numbers, and a `ServerControl` built by [`ServerControl::low_latency`] always has
//! PART-HOLD-BACK >= 3 x PART-TARGET. Writers assume their strings were checked by
//! `MediaPlaylist::validate` (URIs without quotes, whitespace or control characters).

use super::attr::{millis, push_millis, push_quoted};
use super::PlaylistError;

/// `EXT-X-PART-INF` (RFC 8216bis 4.4.3.7): the Part Target Duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartInf {
    part_target_ms: u64,
}

impl PartInf {
    /// `PART-TARGET` in seconds. Fails unless it is finite and at least 1 ms once written
    /// with three decimals.
    pub fn new(part_target: f64) -> Result<Self, PlaylistError> {
        let part_target_ms = millis("PART-TARGET", part_target)?;
        if part_target_ms == 0 {
            return Err(PlaylistError::InvalidDuration {
                what: "PART-TARGET",
                value: part_target,
            });
        }
        Ok(Self { part_target_ms })
    }

    /// `PART-TARGET` in seconds, as written (millisecond precision).
    pub fn part_target(&self) -> f64 {
        self.part_target_ms as f64 / 1000.0
    }

    /// The smallest PART-HOLD-BACK [`ServerControl::low_latency`] accepts: three times the
    /// written PART-TARGET, computed in milliseconds so that `f64` rounding cannot make
    /// `3.0 * part_target` fall a millisecond short.
    pub fn min_part_hold_back(&self) -> f64 {
        (self.part_target_ms * 3) as f64 / 1000.0
    }

    pub(super) fn part_target_ms(&self) -> u64 {
        self.part_target_ms
    }

    pub(super) fn write(&self, out: &mut String) {
        out.push_str("#EXT-X-PART-INF:PART-TARGET=");
        push_millis(out, self.part_target_ms);
        out.push('\n');
    }
}

/// `EXT-X-SERVER-CONTROL` (RFC 8216bis 4.4.3.8): which delivery directives the server honours
/// and how far behind the live edge clients should play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerControl {
    can_block_reload: bool,
    part_hold_back_ms: Option<u64>,
    hold_back_ms: Option<u64>,
    can_skip_until_ms: Option<u64>,
}

impl ServerControl {
    /// A tag with only `CAN-BLOCK-RELOAD` (`YES` when `can_block_reload`), for playlists
    /// without partial segments. Add hold-backs with the `with_*` methods.
    pub fn new(can_block_reload: bool) -> Self {
        Self {
            can_block_reload,
            part_hold_back_ms: None,
            hold_back_ms: None,
            can_skip_until_ms: None,
        }
    }

    /// The Low-Latency HLS form: `CAN-BLOCK-RELOAD=YES` and `PART-HOLD-BACK`, which must be at
    /// least three times `part_inf`'s PART-TARGET (RFC 8216bis 4.4.3.8 says MUST be twice and
    /// SHOULD be three times; three parts of slack is what lets a client ride out one late
    /// part without stalling, so hivecast enforces the SHOULD).
    pub fn low_latency(part_inf: &PartInf, part_hold_back: f64) -> Result<Self, PlaylistError> {
        let phb_ms = millis("PART-HOLD-BACK", part_hold_back)?;
        check_part_hold_back(phb_ms, part_inf.part_target_ms())?;
        Ok(Self {
            part_hold_back_ms: Some(phb_ms),
            ..Self::new(true)
        })
    }

    /// Adds `HOLD-BACK` in seconds. The RFC's lower bound (three Target Durations) is checked
    /// by `MediaPlaylist::validate`, which knows the target duration.
    pub fn with_hold_back(mut self, hold_back: f64) -> Result<Self, PlaylistError> {
        self.hold_back_ms = Some(millis("HOLD-BACK", hold_back)?);
        Ok(self)
    }

    /// Adds `CAN-SKIP-UNTIL` (the Skip Boundary) in seconds: a promise to answer `_HLS_skip`
    /// with a Playlist Delta Update (`render_media_playlist_delta`). Its lower bound (six
    /// Target Durations) is checked by `MediaPlaylist::validate`.
    pub fn with_can_skip_until(mut self, can_skip_until: f64) -> Result<Self, PlaylistError> {
        self.can_skip_until_ms = Some(millis("CAN-SKIP-UNTIL", can_skip_until)?);
        Ok(self)
    }

    /// Whether `CAN-BLOCK-RELOAD=YES` is advertised.
    pub fn can_block_reload(&self) -> bool {
        self.can_block_reload
    }

    /// `PART-HOLD-BACK` in seconds, if any.
    pub fn part_hold_back(&self) -> Option<f64> {
        self.part_hold_back_ms.map(|ms| ms as f64 / 1000.0)
    }

    /// `HOLD-BACK` in seconds, if any.
    pub fn hold_back(&self) -> Option<f64> {
        self.hold_back_ms.map(|ms| ms as f64 / 1000.0)
    }

    /// `CAN-SKIP-UNTIL` in seconds, if any.
    pub fn can_skip_until(&self) -> Option<f64> {
        self.can_skip_until_ms.map(|ms| ms as f64 / 1000.0)
    }

    pub(super) fn part_hold_back_ms(&self) -> Option<u64> {
        self.part_hold_back_ms
    }

    pub(super) fn hold_back_ms(&self) -> Option<u64> {
        self.hold_back_ms
    }

    pub(super) fn can_skip_until_ms(&self) -> Option<u64> {
        self.can_skip_until_ms
    }

    /// Writes the tag, or nothing when it would have no attribute.
    pub(super) fn write(&self, out: &mut String) {
        let attrs = [
            ("CAN-SKIP-UNTIL", self.can_skip_until_ms),
            ("HOLD-BACK", self.hold_back_ms),
            ("PART-HOLD-BACK", self.part_hold_back_ms),
        ];
        if !self.can_block_reload && attrs.iter().all(|(_, v)| v.is_none()) {
            return;
        }
        out.push_str("#EXT-X-SERVER-CONTROL:");
        let mut first = true;
        if self.can_block_reload {
            out.push_str("CAN-BLOCK-RELOAD=YES");
            first = false;
        }
        for (name, value) in attrs {
            if let Some(ms) = value {
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str(name);
                out.push('=');
                push_millis(out, ms);
            }
        }
        out.push('\n');
    }
}

/// PART-HOLD-BACK >= 3 x PART-TARGET, on written milliseconds.
pub(super) fn check_part_hold_back(phb_ms: u64, part_target_ms: u64) -> Result<(), PlaylistError> {
    if phb_ms < part_target_ms.saturating_mul(3) {
        return Err(PlaylistError::PartHoldBackTooSmall {
            part_hold_back: phb_ms as f64 / 1000.0,
            part_target: part_target_ms as f64 / 1000.0,
        });
    }
    Ok(())
}

/// `EXT-X-MAP` (RFC 8216bis 4.4.4.5): the Media Initialization Section (the fMP4 init
/// segment, e.g. `init-<epoch>.mp4`) for the segments that follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Map {
    /// `URI`, relative to the playlist.
    pub uri: String,
}

impl Map {
    /// An `EXT-X-MAP` with its mandatory `URI`.
    pub fn new(uri: impl Into<String>) -> Self {
        Self { uri: uri.into() }
    }

    pub(super) fn write(&self, out: &mut String) {
        out.push_str("#EXT-X-MAP:");
        push_quoted(out, "URI", &self.uri);
        out.push('\n');
    }
}

/// `EXT-X-PART` (RFC 8216bis 4.4.4.9): one partial segment.
#[derive(Debug, Clone, PartialEq)]
pub struct PartEntry {
    /// `URI`, relative to the playlist.
    pub uri: String,
    /// `DURATION` in seconds; at most the playlist's PART-TARGET.
    pub duration: f64,
    /// `INDEPENDENT=YES`: the part starts with an independent (IDR) frame. RFC 8216bis
    /// 4.4.4.9 says every such part SHOULD carry it, so clients can join and switch there.
    pub independent: bool,
}

impl PartEntry {
    /// An `EXT-X-PART` with its mandatory `URI` and `DURATION`.
    pub fn new(uri: impl Into<String>, duration: f64, independent: bool) -> Self {
        Self {
            uri: uri.into(),
            duration,
            independent,
        }
    }

    pub(super) fn write(&self, out: &mut String, duration_ms: u64) {
        out.push_str("#EXT-X-PART:DURATION=");
        push_millis(out, duration_ms);
        out.push(',');
        push_quoted(out, "URI", &self.uri);
        if self.independent {
            out.push_str(",INDEPENDENT=YES");
        }
        out.push('\n');
    }
}

/// One complete Media Segment: its `EXTINF` and URI line, the Media Segment tags that apply to
/// it, and the partial segments it was published as (if they are still listed).
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentEntry {
    /// The URI line, relative to the playlist.
    pub uri: String,
    /// `EXTINF` duration in seconds (written with three decimals, so version >= 3).
    pub duration: f64,
    /// Wall-clock time of the segment's first sample. Kept for every segment so that any of
    /// them can become the first of the window as it slides; written only where the RFC needs
    /// it: on the first segment and after a discontinuity (see `MediaPlaylist`).
    pub program_date_time_ms: Option<i64>,
    /// The segment's `EXT-X-PART` tags, in order (Part Index 0 first). Whether parts are
    /// still listed for a segment is the caller's choice (RFC 8216bis 6.2.2 suggests dropping
    /// them three Target Durations behind the live edge); the writer lists what it is given.
    pub parts: Vec<PartEntry>,
    /// `EXT-X-DISCONTINUITY` before this segment (e.g. the first segment of a new epoch).
    pub discontinuity: bool,
    /// An `EXT-X-MAP` that takes effect from this segment on (a new init segment, normally
    /// together with `discontinuity`). `None` keeps the previous one.
    pub map: Option<Map>,
}

impl SegmentEntry {
    /// A segment with its mandatory URI and `EXTINF` duration and nothing else.
    pub fn new(uri: impl Into<String>, duration: f64) -> Self {
        Self {
            uri: uri.into(),
            duration,
            program_date_time_ms: None,
            parts: Vec::new(),
            discontinuity: false,
            map: None,
        }
    }
}

/// The Media Segment tags that open a segment: what must precede its first `EXT-X-PART`
/// (RFC 8216bis 4.4.4.9). Used for the segment still in progress, which has parts but no
/// `EXTINF` yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentStart {
    /// `EXT-X-DISCONTINUITY` before the segment.
    pub discontinuity: bool,
    /// Wall-clock time of the segment's first sample; needed when it is the first segment of
    /// the playlist or follows a discontinuity.
    pub program_date_time_ms: Option<i64>,
    /// An `EXT-X-MAP` taking effect from this segment on.
    pub map: Option<Map>,
}

/// The `TYPE` of an `EXT-X-PRELOAD-HINT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreloadHintType {
    /// `TYPE=PART`: the next partial segment.
    Part,
    /// `TYPE=MAP`: the next Media Initialization Section.
    Map,
}

/// `EXT-X-PRELOAD-HINT` (RFC 8216bis 4.4.5.3): a resource the client may request before it
/// exists; the server holds the request until it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreloadHint {
    /// `TYPE`.
    pub hint_type: PreloadHintType,
    /// `URI`; it MUST be the URI the resource will have once listed.
    pub uri: String,
}

impl PreloadHint {
    /// `TYPE=PART` with the URI the next part will have.
    pub fn part(uri: impl Into<String>) -> Self {
        Self {
            hint_type: PreloadHintType::Part,
            uri: uri.into(),
        }
    }

    /// `TYPE=MAP` with the URI the next init segment will have.
    pub fn map(uri: impl Into<String>) -> Self {
        Self {
            hint_type: PreloadHintType::Map,
            uri: uri.into(),
        }
    }

    pub(super) fn write(&self, out: &mut String) {
        out.push_str(match self.hint_type {
            PreloadHintType::Part => "#EXT-X-PRELOAD-HINT:TYPE=PART,",
            PreloadHintType::Map => "#EXT-X-PRELOAD-HINT:TYPE=MAP,",
        });
        push_quoted(out, "URI", &self.uri);
        out.push('\n');
    }
}

/// `EXT-X-RENDITION-REPORT` (RFC 8216bis 4.4.5.4): the live edge of another rendition, so a
/// client can switch to it without a tune-in round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenditionReport {
    /// `URI` of the other rendition's media playlist, relative to this playlist, without
    /// delivery directives.
    pub uri: String,
    /// `LAST-MSN`: the Media Sequence Number of its last segment, or of its last partial
    /// segment if it has parts (see `MediaPlaylist::last_msn_and_part`).
    pub last_msn: u64,
    /// `LAST-PART`: the Part Index of its last partial segment; REQUIRED when it has parts.
    pub last_part: Option<u64>,
}

impl RenditionReport {
    /// A report with its mandatory `URI` and `LAST-MSN`, and `LAST-PART` when the rendition
    /// has partial segments.
    pub fn new(uri: impl Into<String>, last_msn: u64, last_part: Option<u64>) -> Self {
        Self {
            uri: uri.into(),
            last_msn,
            last_part,
        }
    }

    pub(super) fn write(&self, out: &mut String) {
        use std::fmt::Write as _;
        out.push_str("#EXT-X-RENDITION-REPORT:");
        push_quoted(out, "URI", &self.uri);
        let _ = write!(out, ",LAST-MSN={}", self.last_msn);
        if let Some(part) = self.last_part {
            let _ = write!(out, ",LAST-PART={part}");
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_inf_rejects_zero_and_nan() {
        assert!(PartInf::new(0.0).is_err());
        assert!(PartInf::new(0.0004).is_err());
        assert!(PartInf::new(f64::NAN).is_err());
        assert_eq!(PartInf::new(0.5).map(|p| p.part_target()), Ok(0.5));
    }

    #[test]
    fn part_hold_back_must_be_three_part_targets() {
        let pi = PartInf::new(0.334).expect("valid part target");
        // 3 x 0.334 = 1.002: 1.001 is one millisecond short.
        assert_eq!(
            ServerControl::low_latency(&pi, 1.001),
            Err(PlaylistError::PartHoldBackTooSmall {
                part_hold_back: 1.001,
                part_target: 0.334
            })
        );
        let sc = ServerControl::low_latency(&pi, 1.002).expect("exactly 3x is enough");
        assert_eq!(sc.part_hold_back(), Some(1.002));
        assert!(sc.can_block_reload());
    }

    #[test]
    fn min_part_hold_back_is_always_accepted() {
        // 0.3335 is written 0.334; 3 x 0.3335 in f64 is 1.0005 (just under), written 1.000
        // or 1.001 depending on rounding: both below 3 x 0.334 = 1.002.
        let pi = PartInf::new(0.3335).expect("valid");
        assert!(ServerControl::low_latency(&pi, 0.3335 * 3.0).is_err());
        assert_eq!(pi.min_part_hold_back(), 1.002);
        for ms in 1..2_000u64 {
            let pi = PartInf::new(ms as f64 / 1000.0 + 0.0004).expect("valid");
            assert!(ServerControl::low_latency(&pi, pi.min_part_hold_back()).is_ok());
        }
    }

    #[test]
    fn server_control_attribute_order() {
        let pi = PartInf::new(0.5).expect("valid");
        let sc = ServerControl::low_latency(&pi, 1.5)
            .and_then(|s| s.with_hold_back(6.0))
            .and_then(|s| s.with_can_skip_until(12.0))
            .expect("valid");
        let mut out = String::new();
        sc.write(&mut out);
        assert_eq!(
            out,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12.000,HOLD-BACK=6.000,PART-HOLD-BACK=1.500\n"
        );
        let mut empty = String::new();
        ServerControl::new(false).write(&mut empty);
        assert_eq!(empty, "");
        let mut hold_back_only = String::new();
        ServerControl::new(false)
            .with_hold_back(6.0)
            .expect("valid")
            .write(&mut hold_back_only);
        assert_eq!(hold_back_only, "#EXT-X-SERVER-CONTROL:HOLD-BACK=6.000\n");
    }

    #[test]
    fn tag_lines() {
        let mut out = String::new();
        PartEntry::new("p-7-12.0.m4s", 0.5, true).write(&mut out, 500);
        PartEntry::new("p-7-12.1.m4s", 0.5, false).write(&mut out, 500);
        PreloadHint::part("p-7-12.2.m4s").write(&mut out);
        PreloadHint::map("init-8.mp4").write(&mut out);
        RenditionReport::new("../a/index.m3u8", 12, Some(1)).write(&mut out);
        RenditionReport::new("../b/index.m3u8", 11, None).write(&mut out);
        Map::new("init-7.mp4").write(&mut out);
        assert_eq!(
            out,
            "#EXT-X-PART:DURATION=0.500,URI=\"p-7-12.0.m4s\",INDEPENDENT=YES\n\
             #EXT-X-PART:DURATION=0.500,URI=\"p-7-12.1.m4s\"\n\
             #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p-7-12.2.m4s\"\n\
             #EXT-X-PRELOAD-HINT:TYPE=MAP,URI=\"init-8.mp4\"\n\
             #EXT-X-RENDITION-REPORT:URI=\"../a/index.m3u8\",LAST-MSN=12,LAST-PART=1\n\
             #EXT-X-RENDITION-REPORT:URI=\"../b/index.m3u8\",LAST-MSN=11\n\
             #EXT-X-MAP:URI=\"init-7.mp4\"\n"
        );
    }
}
