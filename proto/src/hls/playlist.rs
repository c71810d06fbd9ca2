//! The Media Playlist (RFC 8216bis 4.4.3 - 4.4.5): a snapshot type, its validation, and the
//! writers for the full playlist and for Playlist Delta Updates (6.2.5.1).
//!
//! Not here: choosing which segments or parts to list (the caller's sliding window), cut
//! points, blocking (see `directives`), and caching the rendered text.
//!
//! Invariants: both writers validate first and write nothing on error; given the same
//! snapshot they produce the same bytes. Tag order is the one of the RFC 8216bis 9.11
//! example: header tags, the segments oldest first (each segment's tags, then its
//! `EXT-X-PART`s, then `EXTINF` and the URI line), the parts of the segment in progress,
//! `EXT-X-ENDLIST`, `EXT-X-PRELOAD-HINT`, and the rendition reports.

use std::fmt::Write as _;
use std::time::Duration;

use super::attr::{check_no_directives, check_uri, millis, push_millis, round_to_secs};
use super::tags::{
    check_part_hold_back, Map, PartEntry, PartInf, PreloadHint, PreloadHintType, RenditionReport,
    SegmentEntry, SegmentStart, ServerControl,
};
use super::PlaylistError;
use crate::time::write_rfc3339_ms;

/// A Media Playlist snapshot. Build one with [`MediaPlaylist::new`] and fill the optional
/// parts; [`render_media_playlist`] checks it against [`MediaPlaylist::validate`].
///
/// Media Sequence Numbers are implicit: `segments[i]` has `media_sequence + i`, and the
/// segment in progress (whose parts are `trailing_parts`) has `media_sequence +
/// segments.len()`.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaPlaylist {
    /// `EXT-X-VERSION`: 3 for the MPEG-TS playlist (decimal EXTINF), at least 6 with
    /// `EXT-X-MAP` (fMP4), at least 9 when `CAN-SKIP-UNTIL` promises delta updates
    /// (RFC 8216bis 8). hivecast uses 9 for LL-HLS.
    pub version: u8,
    /// `EXT-X-TARGETDURATION` in seconds. Every EXTINF rounded to the nearest integer must
    /// not exceed it (RFC 8216bis 4.4.3.1), and it must not change while the stream lives
    /// (6.2.1), so pick it from the configured segment length with room for late keyframes.
    pub target_duration: u32,
    /// `EXT-X-MEDIA-SEQUENCE`: the Media Sequence Number of `segments[0]`.
    pub media_sequence: u64,
    /// `EXT-X-DISCONTINUITY-SEQUENCE` (written when non-zero): how many discontinuities have
    /// slid out of the window (RFC 8216bis 4.4.3.3, 6.2.2).
    pub discontinuity_sequence: u64,
    /// `EXT-X-INDEPENDENT-SEGMENTS`: every segment starts with a keyframe.
    pub independent_segments: bool,
    /// `EXT-X-SERVER-CONTROL`.
    pub server_control: Option<ServerControl>,
    /// `EXT-X-PART-INF`; required as soon as any part or part hint is listed.
    pub part_inf: Option<PartInf>,
    /// `EXT-X-MAP` for the first segment (and the following ones until a segment brings its
    /// own `map`): `URI="init-<epoch>.mp4"`.
    pub map: Option<Map>,
    /// Complete segments, oldest first.
    pub segments: Vec<SegmentEntry>,
    /// Tags opening the segment in progress (discontinuity, program date-time, new map),
    /// written before its first part. Ignored while `trailing_parts` is empty.
    pub trailing_start: SegmentStart,
    /// Parts of the segment in progress, after the last `EXTINF`.
    pub trailing_parts: Vec<PartEntry>,
    /// `EXT-X-PRELOAD-HINT` for the next part (`TYPE=PART`) or init segment (`TYPE=MAP`).
    pub preload_hint: Option<PreloadHint>,
    /// `EXT-X-RENDITION-REPORT` for each other rendition (RFC 8216bis Appendix B.1 asks for
    /// one per rendition in the multivariant playlist, except this one).
    pub rendition_reports: Vec<RenditionReport>,
    /// `EXT-X-ENDLIST`: the stream ended; no more segments will be added.
    pub ended: bool,
}

impl MediaPlaylist {
    /// An empty playlist with its mandatory values: `EXT-X-VERSION`, `EXT-X-TARGETDURATION`
    /// and `EXT-X-MEDIA-SEQUENCE`.
    pub fn new(version: u8, target_duration: u32, media_sequence: u64) -> Self {
        Self {
            version,
            target_duration,
            media_sequence,
            discontinuity_sequence: 0,
            independent_segments: false,
            server_control: None,
            part_inf: None,
            map: None,
            segments: Vec::new(),
            trailing_start: SegmentStart::default(),
            trailing_parts: Vec::new(),
            preload_hint: None,
            rendition_reports: Vec::new(),
            ended: false,
        }
    }

    /// The lowest `EXT-X-VERSION` this snapshot allows, and the feature that sets it
    /// (RFC 8216bis 8).
    pub fn required_version(&self) -> (u8, &'static str) {
        let skip = self
            .server_control
            .is_some_and(|sc| sc.can_skip_until_ms().is_some());
        let has_map = self.map.is_some()
            || self.segments.iter().any(|s| s.map.is_some())
            || (!self.trailing_parts.is_empty() && self.trailing_start.map.is_some());
        if skip {
            (9, "CAN-SKIP-UNTIL (delta updates carry EXT-X-SKIP)")
        } else if has_map {
            (6, "EXT-X-MAP in a playlist without EXT-X-I-FRAMES-ONLY")
        } else {
            (3, "decimal-floating-point EXTINF durations")
        }
    }

    /// Media Sequence Number of the segment in progress (the parent of `trailing_parts`).
    fn next_msn(&self) -> Option<u64> {
        u64::try_from(self.segments.len())
            .ok()
            .and_then(|n| self.media_sequence.checked_add(n))
    }

    /// The newest media in this playlist as `(LAST-MSN, LAST-PART)`, the values another
    /// rendition's `EXT-X-RENDITION-REPORT` carries for it (RFC 8216bis 4.4.5.4): the last
    /// part if parts are listed at the live edge, else the last segment. `None` when the
    /// playlist lists nothing.
    pub fn last_msn_and_part(&self) -> Option<(u64, Option<u64>)> {
        if let Some(last) = u64::try_from(self.trailing_parts.len())
            .ok()
            .and_then(|n| n.checked_sub(1))
        {
            return self.next_msn().map(|msn| (msn, Some(last)));
        }
        let last_segment = self.segments.last()?;
        let msn = self.next_msn()?.checked_sub(1)?;
        let part = u64::try_from(last_segment.parts.len())
            .ok()
            .and_then(|n| n.checked_sub(1));
        Some((msn, part))
    }

    /// How long a blocking playlist request may be held before the server gives up with
    /// 503: three Target Durations (RFC 8216bis 6.2.5.2).
    pub fn blocking_reload_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.target_duration) * 3)
    }

    /// Checks every rule the writers rely on, and returns the first violation:
    /// - `EXT-X-TARGETDURATION` >= 1, and `EXT-X-VERSION` >= [`Self::required_version`];
    /// - every EXTINF, rounded to the nearest integer, <= `EXT-X-TARGETDURATION` (4.4.3.1);
    /// - `EXT-X-PART-INF` present when any part or part hint is, and then `PART-HOLD-BACK`
    ///   present and >= 3 x PART-TARGET (4.4.3.7, 4.4.3.8); every part DURATION <=
    ///   PART-TARGET (4.4.4.9);
    /// - `HOLD-BACK` >= 3 x and `CAN-SKIP-UNTIL` >= 6 x the target duration (4.4.3.8);
    /// - a program date-time on the first segment and after every discontinuity, whenever
    ///   any segment has one or the playlist has parts (6.2.1; LL-HLS needs them, B.1);
    /// - no `EXT-X-PRELOAD-HINT` and no trailing parts with `EXT-X-ENDLIST` (4.4.5.3);
    /// - every URI non-empty, without quotes, whitespace or control characters, and
    ///   rendition report URIs without `_HLS_` query parameters (4.1, 4.2, 6.2.5);
    /// - Media Sequence Numbers fit in 64 bits.
    ///
    /// Durations are compared as written (milliseconds). Not checked: the SHOULD-level 85 %
    /// lower bound on part durations (4.4.4.9), which only the cutter can honour, and
    /// whether rendition reports are complete.
    pub fn validate(&self) -> Result<(), PlaylistError> {
        if self.target_duration == 0 {
            return Err(PlaylistError::ZeroTargetDuration);
        }
        let (required, reason) = self.required_version();
        if self.version < required {
            return Err(PlaylistError::VersionTooLow {
                version: self.version,
                required,
                reason,
            });
        }
        let next_msn = self
            .next_msn()
            .and_then(|n| n.checked_add(1).map(|_| n))
            .ok_or(PlaylistError::MediaSequenceOverflow {
                media_sequence: self.media_sequence,
                segments: self.segments.len(),
            })?;
        let target_ms = u64::from(self.target_duration) * 1000;
        self.validate_server_control(target_ms)?;
        let part_target_ms = self.part_inf.map(|pi| pi.part_target_ms());

        let uses_pdt = self.part_inf.is_some()
            || self
                .segments
                .iter()
                .any(|s| s.program_date_time_ms.is_some())
            || self.trailing_start.program_date_time_ms.is_some();
        if let Some(map) = &self.map {
            check_uri("EXT-X-MAP URI", &map.uri)?;
        }
        for (msn, (i, seg)) in (self.media_sequence..).zip(self.segments.iter().enumerate()) {
            check_uri("segment URI", &seg.uri)?;
            if let Some(map) = &seg.map {
                check_uri("EXT-X-MAP URI", &map.uri)?;
            }
            let ms = millis("EXTINF", seg.duration)?;
            let rounded = round_to_secs(ms);
            if rounded > u64::from(self.target_duration) {
                return Err(PlaylistError::SegmentExceedsTargetDuration {
                    msn,
                    duration: seg.duration,
                    rounded,
                    target: self.target_duration,
                });
            }
            if uses_pdt && (i == 0 || seg.discontinuity) && seg.program_date_time_ms.is_none() {
                return Err(PlaylistError::MissingProgramDateTime { msn });
            }
            validate_parts(msn, &seg.parts, part_target_ms)?;
        }
        if !self.trailing_parts.is_empty() {
            if self.ended {
                return Err(PlaylistError::TrailingPartsAfterEndList {
                    count: self.trailing_parts.len(),
                });
            }
            let start = &self.trailing_start;
            if let Some(map) = &start.map {
                check_uri("EXT-X-MAP URI", &map.uri)?;
            }
            if uses_pdt
                && (self.segments.is_empty() || start.discontinuity)
                && start.program_date_time_ms.is_none()
            {
                return Err(PlaylistError::MissingProgramDateTime { msn: next_msn });
            }
            validate_parts(next_msn, &self.trailing_parts, part_target_ms)?;
        }
        if let Some(hint) = &self.preload_hint {
            check_uri("EXT-X-PRELOAD-HINT URI", &hint.uri)?;
            if self.ended {
                return Err(PlaylistError::PreloadHintAfterEndList {
                    uri: hint.uri.clone(),
                });
            }
            if hint.hint_type == PreloadHintType::Part && self.part_inf.is_none() {
                return Err(PlaylistError::MissingPartInf);
            }
        }
        for report in &self.rendition_reports {
            check_uri("EXT-X-RENDITION-REPORT URI", &report.uri)?;
            check_no_directives(&report.uri)?;
        }
        Ok(())
    }

    /// The EXT-X-SERVER-CONTROL / EXT-X-PART-INF relations (RFC 8216bis 4.4.3.7, 4.4.3.8).
    fn validate_server_control(&self, target_ms: u64) -> Result<(), PlaylistError> {
        let sc = self.server_control;
        if let Some(hold_back_ms) = sc.and_then(|sc| sc.hold_back_ms()) {
            if hold_back_ms < target_ms * 3 {
                return Err(PlaylistError::HoldBackTooSmall {
                    hold_back: hold_back_ms as f64 / 1000.0,
                    target: self.target_duration,
                });
            }
        }
        if let Some(skip_ms) = sc.and_then(|sc| sc.can_skip_until_ms()) {
            if skip_ms < target_ms * 6 {
                return Err(PlaylistError::SkipBoundaryTooSmall {
                    can_skip_until: skip_ms as f64 / 1000.0,
                    target: self.target_duration,
                });
            }
        }
        let has_parts =
            !self.trailing_parts.is_empty() || self.segments.iter().any(|s| !s.parts.is_empty());
        match (self.part_inf, sc.and_then(|sc| sc.part_hold_back_ms())) {
            (None, None) if has_parts => Err(PlaylistError::MissingPartInf),
            (None, None) => Ok(()),
            (None, Some(_)) => Err(PlaylistError::PartHoldBackWithoutPartInf),
            (Some(_), None) => Err(PlaylistError::MissingPartHoldBack),
            (Some(pi), Some(phb_ms)) => check_part_hold_back(phb_ms, pi.part_target_ms()),
        }
    }

    /// Writes the playlist, replacing the first `skip` segments with `EXT-X-SKIP` when
    /// `skip > 0`. Assumes `validate` passed.
    fn write(&self, out: &mut String, skip: usize) {
        out.push_str("#EXTM3U\n");
        let _ = writeln!(out, "#EXT-X-VERSION:{}", self.version);
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{}", self.target_duration);
        if let Some(sc) = &self.server_control {
            sc.write(out);
        }
        if let Some(pi) = &self.part_inf {
            pi.write(out);
        }
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", self.media_sequence);
        if self.discontinuity_sequence != 0 {
            let _ = writeln!(
                out,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_sequence
            );
        }
        if self.independent_segments {
            out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
        }
        // The map in force for the first written segment. With a delta update it is the last
        // map among the skipped segments: EXT-X-MAP applies to every later segment too, so it
        // is "not skipped" (RFC 8216bis 6.2.5.1) and must stay.
        let skipped = self.segments.get(..skip).unwrap_or_default();
        let map = skipped
            .iter()
            .rev()
            .find_map(|s| s.map.as_ref())
            .or(self.map.as_ref());
        if skip > 0 {
            let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skip}");
        }
        let first_has_own_map = self.segments.get(skip).is_some_and(|s| s.map.is_some());
        if let Some(map) = map.filter(|_| !first_has_own_map) {
            map.write(out);
        }
        let written = self.segments.get(skip..).unwrap_or_default();
        for (i, seg) in written.iter().enumerate() {
            // PDT on the first segment and after discontinuities (RFC 8216bis 6.2.1); the
            // first segment after EXT-X-SKIP also gets it, so a delta update still anchors
            // its media timeline to the wall clock.
            let pdt = if i == 0 || seg.discontinuity {
                seg.program_date_time_ms
            } else {
                None
            };
            write_segment_start(out, seg.discontinuity, seg.map.as_ref(), pdt);
            write_parts(out, &seg.parts);
            out.push_str("#EXTINF:");
            push_millis(out, millis("EXTINF", seg.duration).unwrap_or(0));
            out.push_str(",\n");
            out.push_str(&seg.uri);
            out.push('\n');
        }
        if !self.trailing_parts.is_empty() {
            let start = &self.trailing_start;
            let pdt = if written.is_empty() || start.discontinuity {
                start.program_date_time_ms
            } else {
                None
            };
            write_segment_start(out, start.discontinuity, start.map.as_ref(), pdt);
            write_parts(out, &self.trailing_parts);
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        if let Some(hint) = &self.preload_hint {
            hint.write(out);
        }
        for report in &self.rendition_reports {
            report.write(out);
        }
    }

    /// How many leading segments a Playlist Delta Update replaces: those whose end lies
    /// further than the Skip Boundary from the end of the last segment (RFC 8216bis
    /// 6.2.5.1). Zero when delta updates are not offered or the playlist has ended (the
    /// server MUST then ignore `_HLS_skip`).
    fn skippable(&self) -> usize {
        let Some(boundary_ms) = self
            .server_control
            .and_then(|sc| sc.can_skip_until_ms())
            .filter(|_| !self.ended)
        else {
            return 0;
        };
        let durations: Vec<u64> = self
            .segments
            .iter()
            .map(|s| millis("EXTINF", s.duration).unwrap_or(0))
            .collect();
        let total: u64 = durations.iter().sum();
        let mut end = 0u64;
        let mut skip = 0;
        for d in durations {
            end += d;
            if total - end > boundary_ms {
                skip += 1;
            } else {
                break;
            }
        }
        skip
    }
}

/// Checks the URIs and durations of one segment's parts.
fn validate_parts(
    msn: u64,
    parts: &[PartEntry],
    part_target_ms: Option<u64>,
) -> Result<(), PlaylistError> {
    if parts.is_empty() {
        return Ok(());
    }
    let part_target_ms = part_target_ms.ok_or(PlaylistError::MissingPartInf)?;
    for (part_index, part) in (0u64..).zip(parts) {
        check_uri("EXT-X-PART URI", &part.uri)?;
        let ms = millis("EXT-X-PART DURATION", part.duration)?;
        if ms > part_target_ms {
            return Err(PlaylistError::PartExceedsTarget {
                msn,
                part_index,
                duration: part.duration,
                part_target: part_target_ms as f64 / 1000.0,
            });
        }
    }
    Ok(())
}

/// The Media Segment tags that must precede a segment's first part (RFC 8216bis 4.4.4.9).
fn write_segment_start(out: &mut String, discontinuity: bool, map: Option<&Map>, pdt: Option<i64>) {
    if discontinuity {
        out.push_str("#EXT-X-DISCONTINUITY\n");
    }
    if let Some(map) = map {
        map.write(out);
    }
    if let Some(unix_ms) = pdt {
        out.push_str("#EXT-X-PROGRAM-DATE-TIME:");
        write_rfc3339_ms(unix_ms, out);
        out.push('\n');
    }
}

fn write_parts(out: &mut String, parts: &[PartEntry]) {
    for part in parts {
        part.write(
            out,
            millis("EXT-X-PART DURATION", part.duration).unwrap_or(0),
        );
    }
}

/// The smallest `EXT-X-TARGETDURATION` (at least 1) that admits a segment of
/// `longest_segment` seconds as it will be written: three decimals, then rounded to the
/// nearest integer with halves up (RFC 8216bis 4.4.3.1). Prefer it to `f64::round`: 2.4996 s
/// is written `2.500`, which a client rounds to 3. Non-finite or huge input gives `u32::MAX`,
/// negative input 1.
pub fn target_duration_for(longest_segment: f64) -> u32 {
    match millis("EXTINF", longest_segment) {
        Ok(ms) => u32::try_from(round_to_secs(ms)).unwrap_or(u32::MAX).max(1),
        Err(_) if longest_segment > 0.0 || longest_segment.is_nan() => u32::MAX,
        Err(_) => 1,
    }
}

/// Validates `p` and appends the full Media Playlist to `out`. On error nothing is written.
pub fn render_media_playlist(p: &MediaPlaylist, out: &mut String) -> Result<(), PlaylistError> {
    p.validate()?;
    p.write(out, 0);
    Ok(())
}

/// Validates `p` and appends the Playlist Delta Update for an `_HLS_skip=YES` (or `v2`)
/// request (RFC 8216bis 6.2.5.1): the segments further than `CAN-SKIP-UNTIL` from the end are
/// replaced by `EXT-X-SKIP:SKIPPED-SEGMENTS=<n>`. Without `CAN-SKIP-UNTIL`, with
/// `EXT-X-ENDLIST`, or when nothing lies beyond the boundary, this is the full playlist
/// (the RFC has the server ignore `_HLS_skip` in the first two cases). hivecast writes no
/// `EXT-X-DATERANGE`, so `v2` needs nothing more. On error nothing is written.
pub fn render_media_playlist_delta(
    p: &MediaPlaylist,
    out: &mut String,
) -> Result<(), PlaylistError> {
    p.validate()?;
    p.write(out, p.skippable());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 2023-11-14T22:13:20.123Z (1 700 000 000 s after the epoch, plus 123 ms).
    const PDT0: i64 = 1_700_000_000_123;

    fn part(uri: &str, duration: f64, independent: bool) -> PartEntry {
        PartEntry::new(uri, duration, independent)
    }

    /// The LL-HLS snapshot of the golden test: two complete 2 s segments (the newer still
    /// listing its four 0.5 s parts), two parts of segment 102, a hint for its third part.
    fn ll_fixture() -> MediaPlaylist {
        let part_inf = PartInf::new(0.5).expect("valid part target");
        let mut p = MediaPlaylist::new(9, 2, 100);
        p.independent_segments = true;
        p.server_control = Some(ServerControl::low_latency(&part_inf, 1.5).expect("1.5 = 3 x 0.5"));
        p.part_inf = Some(part_inf);
        p.map = Some(Map::new("init-7.mp4"));
        let mut s100 = SegmentEntry::new("seg-7-100.m4s", 2.0);
        s100.program_date_time_ms = Some(PDT0);
        let mut s101 = SegmentEntry::new("seg-7-101.m4s", 2.0);
        s101.program_date_time_ms = Some(PDT0 + 2_000);
        s101.parts = (0..4)
            .map(|i| part(&format!("p-7-101.{i}.m4s"), 0.5, i == 0))
            .collect();
        p.segments = vec![s100, s101];
        p.trailing_parts = vec![
            part("p-7-102.0.m4s", 0.5, true),
            part("p-7-102.1.m4s", 0.5, false),
        ];
        p.preload_hint = Some(PreloadHint::part("p-7-102.2.m4s"));
        p.rendition_reports = vec![RenditionReport::new("../audio/index.m3u8", 102, Some(1))];
        p
    }

    fn render(p: &MediaPlaylist) -> String {
        let mut out = String::new();
        render_media_playlist(p, &mut out).expect("valid snapshot");
        out
    }

    /// Reasoned out by hand from RFC 8216bis, following the order of its 9.11 example:
    /// - header: `#EXTM3U`, VERSION 9 (>= 6 for EXT-X-MAP, section 8), TARGETDURATION 2
    ///   (both EXTINFs round to 2, 4.4.3.1), SERVER-CONTROL with CAN-BLOCK-RELOAD=YES
    ///   (enumerated-string, unquoted) and PART-HOLD-BACK 1.500 = 3 x 0.500 (4.4.3.8),
    ///   PART-INF, MEDIA-SEQUENCE 100, INDEPENDENT-SEGMENTS, then the MAP with its URI as a
    ///   quoted-string (4.2);
    /// - segment 100: PROGRAM-DATE-TIME since it is the first segment (6.2.1; LL-HLS needs
    ///   it), 1 700 000 000.123 s = 2023-11-14T22:13:20.123Z; EXTINF with three decimals
    ///   and the comma the EXTINF syntax requires; no parts listed (caller's choice);
    /// - segment 101: no PDT (not first, no discontinuity), its four parts BEFORE its EXTINF
    ///   (a part belongs to the next EXTINF, 3.2), INDEPENDENT=YES on part 0 only;
    /// - the segment in progress (102): its two parts, no EXTINF yet;
    /// - PRELOAD-HINT TYPE=PART for part 102.2, then the audio rendition's report at
    ///   LAST-MSN 102, LAST-PART 1 (4.4.5.4).
    #[test]
    fn golden_ll_hls_media_playlist() {
        let expected = "#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500
#EXT-X-PART-INF:PART-TARGET=0.500
#EXT-X-MEDIA-SEQUENCE:100
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI=\"init-7.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.123Z
#EXTINF:2.000,
seg-7-100.m4s
#EXT-X-PART:DURATION=0.500,URI=\"p-7-101.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.500,URI=\"p-7-101.1.m4s\"
#EXT-X-PART:DURATION=0.500,URI=\"p-7-101.2.m4s\"
#EXT-X-PART:DURATION=0.500,URI=\"p-7-101.3.m4s\"
#EXTINF:2.000,
seg-7-101.m4s
#EXT-X-PART:DURATION=0.500,URI=\"p-7-102.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.500,URI=\"p-7-102.1.m4s\"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p-7-102.2.m4s\"
#EXT-X-RENDITION-REPORT:URI=\"../audio/index.m3u8\",LAST-MSN=102,LAST-PART=1
";
        assert_eq!(render(&ll_fixture()), expected);
    }

    #[test]
    fn ll_hls_round_trips_through_m3u8_rs() {
        let text = render(&ll_fixture());
        let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes()).expect("m3u8-rs parses");
        assert_eq!(parsed.version, Some(9));
        assert_eq!(parsed.target_duration, 2);
        assert_eq!(parsed.media_sequence, 100);
        assert!(parsed.independent_segments);
        assert!(!parsed.end_list);
        let uris: Vec<_> = parsed.segments.iter().map(|s| s.uri.as_str()).collect();
        assert_eq!(uris, ["seg-7-100.m4s", "seg-7-101.m4s"]);
        assert!(parsed.segments.iter().all(|s| s.duration == 2.0));
        assert_eq!(
            parsed.segments[0].map.as_ref().map(|m| m.uri.as_str()),
            Some("init-7.mp4")
        );
        assert_eq!(
            parsed.segments[0]
                .program_date_time
                .map(|t| t.timestamp_millis()),
            Some(PDT0)
        );
        assert_eq!(parsed.segments[1].program_date_time, None);
        // m3u8-rs keeps LL tags as unknown tags of the segment they precede.
        let part_tags: Vec<_> = parsed.segments[1]
            .unknown_tags
            .iter()
            .filter(|t| t.tag == "X-PART")
            .filter_map(|t| t.rest.as_deref())
            .collect();
        assert_eq!(part_tags.len(), 4);
        assert_eq!(
            part_tags[0],
            "DURATION=0.500,URI=\"p-7-101.0.m4s\",INDEPENDENT=YES"
        );
    }

    #[test]
    fn mpeg_ts_playlist_with_discontinuity_and_endlist() {
        let mut p = MediaPlaylist::new(3, 4, 7);
        p.discontinuity_sequence = 2;
        let mut a = SegmentEntry::new("a.ts", 3.9);
        a.program_date_time_ms = Some(0);
        let b = SegmentEntry::new("b.ts", 4.0);
        let mut c = SegmentEntry::new("c.ts", 4.499);
        c.discontinuity = true;
        c.program_date_time_ms = Some(60_000);
        p.segments = vec![a, b, c];
        p.ended = true;
        let text = render(&p);
        assert_eq!(
            text,
            "#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:4
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-DISCONTINUITY-SEQUENCE:2
#EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:00:00.000Z
#EXTINF:3.900,
a.ts
#EXTINF:4.000,
b.ts
#EXT-X-DISCONTINUITY
#EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:01:00.000Z
#EXTINF:4.499,
c.ts
#EXT-X-ENDLIST
"
        );
        let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes()).expect("parses");
        assert!(parsed.end_list);
        assert_eq!(parsed.discontinuity_sequence, 2);
        let flags: Vec<_> = parsed.segments.iter().map(|s| s.discontinuity).collect();
        assert_eq!(flags, [false, false, true]);
        assert_eq!(
            parsed.segments[2]
                .program_date_time
                .map(|t| t.timestamp_millis()),
            Some(60_000)
        );
    }

    #[test]
    fn new_epoch_in_progress_opens_with_discontinuity_map_and_pdt() {
        let mut p = ll_fixture();
        p.trailing_start = SegmentStart {
            discontinuity: true,
            program_date_time_ms: Some(PDT0 + 10_000),
            map: Some(Map::new("init-8.mp4")),
        };
        p.trailing_parts = vec![part("p-8-102.0.m4s", 0.5, true)];
        p.preload_hint = Some(PreloadHint::part("p-8-102.1.m4s"));
        let text = render(&p);
        assert!(text.contains(
            "seg-7-101.m4s
#EXT-X-DISCONTINUITY
#EXT-X-MAP:URI=\"init-8.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:30.123Z
#EXT-X-PART:DURATION=0.500,URI=\"p-8-102.0.m4s\",INDEPENDENT=YES
"
        ));
        // The same segment start without parts yet is not written (nothing to attach to).
        p.trailing_parts.clear();
        assert!(!render(&p).contains("init-8.mp4"));
        // Without a PDT it is rejected: a discontinuity needs one (6.2.1).
        p.trailing_parts = vec![part("p-8-102.0.m4s", 0.5, true)];
        p.trailing_start.program_date_time_ms = None;
        assert_eq!(
            p.validate(),
            Err(PlaylistError::MissingProgramDateTime { msn: 102 })
        );
    }

    #[test]
    fn playlist_with_only_parts_needs_their_pdt() {
        let mut p = ll_fixture();
        p.segments.clear();
        assert_eq!(
            p.validate(),
            Err(PlaylistError::MissingProgramDateTime { msn: 100 })
        );
        p.trailing_start.program_date_time_ms = Some(PDT0);
        let text = render(&p);
        assert!(text.contains(
            "#EXT-X-MAP:URI=\"init-7.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.123Z
#EXT-X-PART:DURATION=0.500,URI=\"p-7-102.0.m4s\""
        ));
        assert_eq!(p.last_msn_and_part(), Some((100, Some(1))));
    }

    #[test]
    fn render_writes_nothing_on_error() {
        let mut p = ll_fixture();
        p.segments[1].parts[2].duration = 0.501;
        let mut out = String::from("kept");
        assert_eq!(
            render_media_playlist(&p, &mut out),
            Err(PlaylistError::PartExceedsTarget {
                msn: 101,
                part_index: 2,
                duration: 0.501,
                part_target: 0.5
            })
        );
        assert_eq!(out, "kept");
    }

    #[test]
    fn trailing_part_over_target_is_reported_with_its_msn() {
        let mut p = ll_fixture();
        p.trailing_parts[1].duration = 0.6;
        assert!(matches!(
            p.validate(),
            Err(PlaylistError::PartExceedsTarget {
                msn: 102,
                part_index: 1,
                ..
            })
        ));
        // 0.5004 is written as 0.500: what the client reads is within the target.
        p.trailing_parts[1].duration = 0.5004;
        assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn target_duration_is_checked_on_rounded_written_values() {
        let mut p = MediaPlaylist::new(3, 2, 0);
        p.segments = vec![SegmentEntry::new("a.ts", 2.499)];
        assert_eq!(p.validate(), Ok(()));
        p.segments = vec![SegmentEntry::new("a.ts", 2.5)];
        assert_eq!(
            p.validate(),
            Err(PlaylistError::SegmentExceedsTargetDuration {
                msn: 0,
                duration: 2.5,
                rounded: 3,
                target: 2
            })
        );
        // 2.4996 s is written "2.500", which a client rounds to 3.
        p.segments = vec![SegmentEntry::new("a.ts", 2.4996)];
        assert!(matches!(
            p.validate(),
            Err(PlaylistError::SegmentExceedsTargetDuration { rounded: 3, .. })
        ));
        p.target_duration = 0;
        assert_eq!(p.validate(), Err(PlaylistError::ZeroTargetDuration));
        p.target_duration = 3;
        p.segments = vec![SegmentEntry::new("a.ts", f64::NAN)];
        assert!(matches!(
            p.validate(),
            Err(PlaylistError::InvalidDuration { what: "EXTINF", .. })
        ));
    }

    #[test]
    fn target_duration_helper_matches_validation() {
        assert_eq!(target_duration_for(0.2), 1);
        assert_eq!(target_duration_for(2.0), 2);
        assert_eq!(target_duration_for(2.4994), 2);
        assert_eq!(target_duration_for(2.4996), 3);
        assert_eq!(target_duration_for(2.5), 3);
        assert_eq!(target_duration_for(-1.0), 1);
        assert_eq!(target_duration_for(f64::NAN), u32::MAX);
        for d in [0.2, 1.9, 2.4994, 2.4996, 2.5, 5.9996, 7.25] {
            let mut p = MediaPlaylist::new(3, target_duration_for(d), 0);
            p.segments = vec![SegmentEntry::new("a.ts", d)];
            assert_eq!(p.validate(), Ok(()), "{d}");
            p.target_duration -= 1;
            if p.target_duration > 0 {
                assert!(p.validate().is_err(), "{d}");
            }
        }
    }

    #[test]
    fn version_must_cover_the_features_used() {
        let mut p = ll_fixture();
        p.version = 5;
        assert_eq!(
            p.validate(),
            Err(PlaylistError::VersionTooLow {
                version: 5,
                required: 6,
                reason: "EXT-X-MAP in a playlist without EXT-X-I-FRAMES-ONLY"
            })
        );
        p.version = 6;
        assert_eq!(p.validate(), Ok(()));
        p.server_control = p
            .server_control
            .map(|sc| sc.with_can_skip_until(12.0).expect("valid"));
        assert!(matches!(
            p.validate(),
            Err(PlaylistError::VersionTooLow { required: 9, .. })
        ));
        let mut ts = MediaPlaylist::new(2, 2, 0);
        ts.segments = vec![SegmentEntry::new("a.ts", 2.0)];
        assert!(matches!(
            ts.validate(),
            Err(PlaylistError::VersionTooLow { required: 3, .. })
        ));
    }

    #[test]
    fn low_latency_tags_must_agree() {
        let mut p = ll_fixture();
        p.part_inf = None;
        assert_eq!(p.validate(), Err(PlaylistError::PartHoldBackWithoutPartInf));
        p.server_control = None;
        assert_eq!(p.validate(), Err(PlaylistError::MissingPartInf));

        let mut p = ll_fixture();
        p.server_control = Some(ServerControl::new(true));
        assert_eq!(p.validate(), Err(PlaylistError::MissingPartHoldBack));

        // A ServerControl built for a shorter part target than the playlist's.
        let mut p = ll_fixture();
        let short = PartInf::new(0.2).expect("valid");
        p.server_control = Some(ServerControl::low_latency(&short, 0.6).expect("3 x 0.2"));
        assert_eq!(
            p.validate(),
            Err(PlaylistError::PartHoldBackTooSmall {
                part_hold_back: 0.6,
                part_target: 0.5
            })
        );

        // A TYPE=PART hint alone also needs EXT-X-PART-INF.
        let mut p = MediaPlaylist::new(6, 2, 0);
        p.segments = vec![SegmentEntry::new("a.m4s", 2.0)];
        p.preload_hint = Some(PreloadHint::part("p.m4s"));
        assert_eq!(p.validate(), Err(PlaylistError::MissingPartInf));
        p.preload_hint = Some(PreloadHint::map("init.mp4"));
        assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn hold_back_and_skip_boundary_bounds() {
        let mut p = ll_fixture();
        let sc = p.server_control.expect("fixture has one");
        p.server_control = Some(sc.with_hold_back(5.999).expect("finite"));
        assert_eq!(
            p.validate(),
            Err(PlaylistError::HoldBackTooSmall {
                hold_back: 5.999,
                target: 2
            })
        );
        p.server_control = Some(sc.with_hold_back(6.0).expect("finite"));
        assert_eq!(p.validate(), Ok(()));
        p.server_control = Some(sc.with_can_skip_until(11.9).expect("finite"));
        assert_eq!(
            p.validate(),
            Err(PlaylistError::SkipBoundaryTooSmall {
                can_skip_until: 11.9,
                target: 2
            })
        );
    }

    #[test]
    fn program_date_time_rules() {
        // LL-HLS without any PDT.
        let mut p = ll_fixture();
        p.segments[0].program_date_time_ms = None;
        assert_eq!(
            p.validate(),
            Err(PlaylistError::MissingProgramDateTime { msn: 100 })
        );
        // A discontinuity without PDT in a playlist that uses them.
        let mut p = MediaPlaylist::new(3, 2, 5);
        let mut a = SegmentEntry::new("a.ts", 2.0);
        a.program_date_time_ms = Some(PDT0);
        let mut b = SegmentEntry::new("b.ts", 2.0);
        b.discontinuity = true;
        p.segments = vec![a, b];
        assert_eq!(
            p.validate(),
            Err(PlaylistError::MissingProgramDateTime { msn: 6 })
        );
        // A legacy playlist with no PDT at all is fine.
        p.segments[0].program_date_time_ms = None;
        assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn ended_playlists_have_no_hint_and_no_trailing_parts() {
        let mut p = ll_fixture();
        p.ended = true;
        assert_eq!(
            p.validate(),
            Err(PlaylistError::TrailingPartsAfterEndList { count: 2 })
        );
        p.trailing_parts.clear();
        assert_eq!(
            p.validate(),
            Err(PlaylistError::PreloadHintAfterEndList {
                uri: "p-7-102.2.m4s".into()
            })
        );
        p.preload_hint = None;
        let text = render(&p);
        assert!(text.contains("seg-7-101.m4s\n#EXT-X-ENDLIST\n#EXT-X-RENDITION-REPORT"));
    }

    #[test]
    fn strings_that_would_break_the_format_are_rejected() {
        let mut p = ll_fixture();
        p.segments[0].uri = "seg 100.m4s".into();
        assert!(matches!(
            p.validate(),
            Err(PlaylistError::InvalidText {
                attribute: "segment URI",
                ..
            })
        ));
        let mut p = ll_fixture();
        p.map = Some(Map::new("init\".mp4"));
        assert!(matches!(
            p.validate(),
            Err(PlaylistError::InvalidText {
                attribute: "EXT-X-MAP URI",
                ..
            })
        ));
        let mut p = ll_fixture();
        p.segments[1].parts[0].uri = "p\n#EXT-X-ENDLIST".into();
        assert!(p.validate().is_err());
        let mut p = ll_fixture();
        p.rendition_reports[0].uri = "../audio/index.m3u8?_HLS_msn=102".into();
        assert_eq!(
            p.validate(),
            Err(PlaylistError::ReservedQueryParameter {
                uri: "../audio/index.m3u8?_HLS_msn=102".into()
            })
        );
    }

    #[test]
    fn media_sequence_overflow_is_an_error() {
        let mut p = MediaPlaylist::new(3, 2, u64::MAX - 1);
        p.segments = vec![SegmentEntry::new("a.ts", 2.0)];
        assert!(matches!(
            p.validate(),
            Err(PlaylistError::MediaSequenceOverflow { .. })
        ));
        p.media_sequence = u64::MAX - 2;
        assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn last_position_for_rendition_reports() {
        let mut p = ll_fixture();
        assert_eq!(p.last_msn_and_part(), Some((102, Some(1))));
        p.trailing_parts.clear();
        assert_eq!(p.last_msn_and_part(), Some((101, Some(3))));
        p.segments[1].parts.clear();
        assert_eq!(p.last_msn_and_part(), Some((101, None)));
        p.segments.clear();
        assert_eq!(p.last_msn_and_part(), None);
        assert_eq!(p.blocking_reload_timeout(), Duration::from_secs(6));
    }

    /// Ten 2 s segments and a 12 s Skip Boundary: the playlist ends at 20 s; segment i ends
    /// at 2(i + 1), so segments 100..=102 (ending 18, 16 and 14 s before the end) lie beyond
    /// the boundary and segment 103 (12 s) does not.
    fn delta_fixture() -> MediaPlaylist {
        let mut p = ll_fixture();
        p.server_control = p
            .server_control
            .map(|sc| sc.with_can_skip_until(12.0).expect("valid"));
        p.segments = (0..10)
            .map(|i| {
                let mut s = SegmentEntry::new(format!("seg-7-{}.m4s", 100 + i), 2.0);
                s.program_date_time_ms = Some(PDT0 + 2_000 * i);
                s
            })
            .collect();
        p.trailing_parts.clear();
        p.preload_hint = Some(PreloadHint::part("p-7-110.0.m4s"));
        p
    }

    #[test]
    fn delta_update_skips_segments_beyond_the_boundary() {
        let p = delta_fixture();
        let mut out = String::new();
        render_media_playlist_delta(&p, &mut out).expect("valid");
        assert!(out.contains(
            "#EXT-X-MEDIA-SEQUENCE:100
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-SKIP:SKIPPED-SEGMENTS=3
#EXT-X-MAP:URI=\"init-7.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:26.123Z
#EXTINF:2.000,
seg-7-103.m4s
"
        ));
        for skipped in ["seg-7-100.m4s", "seg-7-101.m4s", "seg-7-102.m4s"] {
            assert!(!out.contains(skipped));
        }
        // The full playlist is unchanged by the option.
        assert!(!render(&p).contains("EXT-X-SKIP"));
        // The same request on an ended playlist gets the full playlist (6.2.5.1).
        let mut ended = p.clone();
        ended.ended = true;
        ended.preload_hint = None;
        let mut out = String::new();
        render_media_playlist_delta(&ended, &mut out).expect("valid");
        assert_eq!(out, render(&ended));
    }

    #[test]
    fn delta_update_keeps_the_map_of_skipped_segments() {
        let mut p = delta_fixture();
        p.segments[1].discontinuity = true;
        p.segments[1].map = Some(Map::new("init-8.mp4"));
        let mut out = String::new();
        render_media_playlist_delta(&p, &mut out).expect("valid");
        assert!(out.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=3\n#EXT-X-MAP:URI=\"init-8.mp4\"\n"));
        assert!(!out.contains("init-7.mp4"));
        assert!(!out.contains("EXT-X-DISCONTINUITY\n"));
    }

    /// Parses `NAME=value` out of an attribute list line (test helper, no quoting support
    /// needed for numeric attributes).
    fn attribute(line: &str, name: &str) -> Option<f64> {
        let (_, list) = line.split_once(':')?;
        list.split(',')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.parse().ok())
    }

    prop_compose! {
        fn arb_playlist()(
            media_sequence in 0u64..u64::MAX - 64,
            part_target_ms in 200u64..1_000,
            segs in proptest::collection::vec(
                (100u64..6_000, proptest::collection::vec((1u64..=1_000, any::<bool>()), 0..6), any::<bool>()),
                0..12,
            ),
            trailing in proptest::collection::vec((1u64..=1_000, any::<bool>()), 0..5),
            hint in any::<bool>(),
        ) -> MediaPlaylist {
            let part_target = part_target_ms as f64 / 1000.0;
            let part_inf = PartInf::new(part_target).expect("in range");
            // Part durations are drawn as a fraction (per mille) of the part target.
            let part_dur = |permille: u64| (part_target_ms * permille / 1000).max(1) as f64 / 1000.0;
            let mut max_rounded = 1;
            let mut segments = Vec::new();
            for (i, (ms, parts, disc)) in segs.into_iter().enumerate() {
                let msn = media_sequence + i as u64;
                let mut s = SegmentEntry::new(format!("seg-{msn}.m4s"), ms as f64 / 1000.0);
                max_rounded = max_rounded.max((ms + 500) / 1000);
                s.discontinuity = disc;
                s.program_date_time_ms = Some(PDT0 + 1000 * i as i64);
                s.parts = parts
                    .into_iter()
                    .enumerate()
                    .map(|(j, (permille, ind))| PartEntry::new(format!("part-{msn}-{j}.m4s"), part_dur(permille), ind))
                    .collect();
                segments.push(s);
            }
            let next = media_sequence + segments.len() as u64;
            let mut p = MediaPlaylist::new(9, max_rounded as u32, media_sequence);
            p.server_control = Some(ServerControl::low_latency(&part_inf, part_target * 3.0).expect("3x"));
            p.part_inf = Some(part_inf);
            p.map = Some(Map::new("init.mp4"));
            p.segments = segments;
            p.trailing_start.program_date_time_ms = Some(PDT0 - 1);
            p.trailing_parts = trailing
                .into_iter()
                .enumerate()
                .map(|(j, (permille, ind))| PartEntry::new(format!("part-{next}-{j}.m4s"), part_dur(permille), ind))
                .collect();
            if hint {
                p.preload_hint = Some(PreloadHint::part(format!("part-{next}-{}.m4s", p.trailing_parts.len())));
            }
            p
        }
    }

    proptest! {
        /// For arbitrary windows of segments and parts, the written playlist keeps the RFC
        /// invariants as a client reads them, and m3u8-rs reads the same segments back.
        #[test]
        fn rendered_playlists_keep_invariants(p in arb_playlist()) {
            let text = render(&p);
            let lines: Vec<&str> = text.lines().collect();
            let target = lines.iter().find_map(|l| l.strip_prefix("#EXT-X-TARGETDURATION:"))
                .and_then(|v| v.parse::<f64>().ok()).expect("target duration");
            for l in lines.iter().filter_map(|l| l.strip_prefix("#EXTINF:")) {
                let d: f64 = l.trim_end_matches(',').parse().expect("decimal");
                prop_assert!((d + 0.5).floor() <= target, "EXTINF {} vs {}", d, target);
            }
            let part_target = lines.iter().find(|l| l.starts_with("#EXT-X-PART-INF:"))
                .and_then(|l| attribute(l, "PART-TARGET")).expect("part target");
            let phb = lines.iter().find(|l| l.starts_with("#EXT-X-SERVER-CONTROL:"))
                .and_then(|l| attribute(l, "PART-HOLD-BACK")).expect("part hold back");
            prop_assert!(phb >= 3.0 * part_target - 1e-9);
            for l in lines.iter().filter(|l| l.starts_with("#EXT-X-PART:")) {
                let d = attribute(l, "DURATION").expect("duration");
                prop_assert!(d <= part_target, "PART {} vs {}", d, part_target);
            }
            let seq = lines.iter().find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
                .and_then(|v| v.parse::<u64>().ok());
            prop_assert_eq!(seq, Some(p.media_sequence));
            for s in &p.segments {
                prop_assert_eq!(lines.iter().filter(|l| **l == s.uri).count(), 1);
                for part in &s.parts {
                    let quoted = format!("URI=\"{}\"", part.uri);
                    prop_assert_eq!(text.matches(&quoted).count(), 1);
                }
            }
            for part in &p.trailing_parts {
                prop_assert_eq!(text.matches(&format!("URI=\"{}\"", part.uri)).count(), 1);
            }
            // Every discontinuity line is followed (before the next EXTINF) by a PDT.
            for (i, l) in lines.iter().enumerate() {
                if *l == "#EXT-X-DISCONTINUITY" {
                    let next = lines.get(i + 1).copied().unwrap_or_default();
                    prop_assert!(next.starts_with("#EXT-X-PROGRAM-DATE-TIME:"));
                }
            }
            let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes()).expect("m3u8-rs parses");
            prop_assert_eq!(parsed.media_sequence, p.media_sequence);
            prop_assert_eq!(parsed.target_duration, u64::from(p.target_duration));
            prop_assert_eq!(parsed.segments.len(), p.segments.len());
            for (got, want) in parsed.segments.iter().zip(&p.segments) {
                prop_assert_eq!(&got.uri, &want.uri);
                prop_assert!((f64::from(got.duration) - want.duration).abs() < 1e-3);
                prop_assert_eq!(got.discontinuity, want.discontinuity);
            }
        }

        /// The renderer refuses exactly the snapshots with a part over PART-TARGET (as
        /// written, in milliseconds).
        #[test]
        fn over_long_parts_are_refused(p in arb_playlist(), stretch_ms in 0u64..50, pick in any::<prop::sample::Index>()) {
            let mut p = p;
            let part_target_ms = p.part_inf.map(|pi| pi.part_target_ms()).expect("has part inf");
            let total: usize = p.segments.iter().map(|s| s.parts.len()).sum::<usize>() + p.trailing_parts.len();
            prop_assume!(total > 0);
            let k = pick.index(total);
            let mut all: Vec<&mut PartEntry> = p.segments.iter_mut().flat_map(|s| s.parts.iter_mut()).chain(p.trailing_parts.iter_mut()).collect();
            let new_ms = part_target_ms + stretch_ms;
            all[k].duration = new_ms as f64 / 1000.0;
            let result = p.validate();
            if stretch_ms == 0 {
                prop_assert_eq!(result, Ok(()));
            } else {
                let is_part_error = matches!(result, Err(PlaylistError::PartExceedsTarget { .. }));
                prop_assert!(is_part_error, "{:?}", result);
            }
        }

        /// Program date-times written by `time` parse back (through m3u8-rs, i.e. chrono's
        /// RFC 3339 parser) to the same instant, for every year from 0000 to 9999.
        #[test]
        fn program_date_time_is_rfc3339(unix_ms in -62_167_219_200_000i64..253_402_300_800_000) {
            let mut p = MediaPlaylist::new(3, 2, 0);
            let mut s = SegmentEntry::new("a.ts", 2.0);
            s.program_date_time_ms = Some(unix_ms);
            p.segments = vec![s];
            let text = render(&p);
            let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes()).expect("parses");
            let got = parsed.segments[0].program_date_time.map(|t| t.timestamp_millis());
            prop_assert_eq!(got, Some(unix_ms));
        }
    }
}
