//! The dynamic MPD (ISO/IEC 23009-1 5.3, DASH-IF IOP live profile): snapshot types,
//! validation and the XML writer.
//!
//! Not here: timeline bookkeeping (the caller lists its window, typically compacted with
//! `compact_timeline`), segment availability arithmetic (clients derive it from
//! `availabilityStartTime`, the timeline and `timeShiftBufferDepth`), and the UTC time source
//! that `UTCTiming` points at.
//!
//! Invariants: output is one XML document in UTF-8, elements in schema order (`Period` before
//! `UTCTiming`; in a `Representation`, `AudioChannelConfiguration` before `SegmentTemplate`),
//! every attribute value escaped; `type` is always `dynamic`.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::time::Duration;

use super::timeline::TimelineEntry;
use super::MpdError;
use crate::time::{write_rfc3339_ms, write_xs_duration};

/// The `@schemeIdUri` of a `UTCTiming` element (ISO 23009-1 5.8.5.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UtcTimingScheme {
    /// `urn:mpeg:dash:utc:http-iso:2014`: an HTTP GET of the value returns an ISO 8601 time.
    HttpIso,
    /// `urn:mpeg:dash:utc:http-xsdate:2014`: an HTTP GET of the value returns an
    /// `xs:dateTime`.
    HttpXsdate,
}

impl UtcTimingScheme {
    fn urn(self) -> &'static str {
        match self {
            Self::HttpIso => "urn:mpeg:dash:utc:http-iso:2014",
            Self::HttpXsdate => "urn:mpeg:dash:utc:http-xsdate:2014",
        }
    }
}

/// A `UTCTiming` element: where clients synchronise their clock. DASH-IF IOP requires one for
/// dynamic MPDs, since segment availability is computed from wall-clock time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UtcTiming {
    /// `@schemeIdUri`.
    pub scheme: UtcTimingScheme,
    /// `@value`: the URL of the time source.
    pub value: String,
}

impl UtcTiming {
    /// `urn:mpeg:dash:utc:http-iso:2014` at `url`.
    pub fn http_iso(url: impl Into<String>) -> Self {
        Self {
            scheme: UtcTimingScheme::HttpIso,
            value: url.into(),
        }
    }

    /// `urn:mpeg:dash:utc:http-xsdate:2014` at `url`.
    pub fn http_xsdate(url: impl Into<String>) -> Self {
        Self {
            scheme: UtcTimingScheme::HttpXsdate,
            value: url.into(),
        }
    }
}

/// `AdaptationSet@contentType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentType {
    /// `video`.
    Video,
    /// `audio`.
    Audio,
}

impl ContentType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Video => "video",
            Self::Audio => "audio",
        }
    }
}

/// A `SegmentTemplate` with a `SegmentTimeline` (ISO 23009-1 5.3.9.4, 5.3.9.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentTemplate {
    /// `@timescale`: ticks per second of every time below.
    pub timescale: u32,
    /// `@initialization`: the init segment URL (e.g. `init-<epoch>-$RepresentationID$.mp4`).
    pub initialization: String,
    /// `@media`: the segment URL template; must contain `$Number$` (or `$Time$`).
    pub media: String,
    /// `@startNumber`: the `$Number$` of the first segment of `timeline`.
    pub start_number: u64,
    /// `@presentationTimeOffset`: the media time that maps to the Period start.
    pub presentation_time_offset: u64,
    /// The `S` entries, oldest first (see `compact_timeline`).
    pub timeline: Vec<TimelineEntry>,
}

/// A `Representation`.
#[derive(Debug, Clone, PartialEq)]
pub struct Representation {
    /// `@id`: unique in the Period, no whitespace.
    pub id: String,
    /// `@codecs` (RFC 6381, e.g. `avc1.64001f`, `mp4a.40.2`).
    pub codecs: String,
    /// `@bandwidth` in bits per second.
    pub bandwidth: u64,
    /// `@width` in pixels; required for video, absent for audio.
    pub width: Option<u32>,
    /// `@height` in pixels; required for video, absent for audio.
    pub height: Option<u32>,
    /// `@frameRate` in frames per second (video only). Written as the integer or fraction
    /// `FrameRateType` needs: `25`, `30000/1001` for 29.97, else thousandths (`12500/1000`
    /// reduced to `25/2`).
    pub frame_rate: Option<f64>,
    /// `@audioSamplingRate` in Hz; required for audio, absent for video.
    pub audio_sampling_rate: Option<u32>,
    /// Channel count, written as an `AudioChannelConfiguration`
    /// (`urn:mpeg:dash:23003:3:audio_channel_configuration:2011`); audio only.
    pub audio_channels: Option<u8>,
    /// How segments are addressed.
    pub template: SegmentTemplate,
}

/// An `AdaptationSet`.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptationSet {
    /// `@id`, unique in the Period.
    pub id: u32,
    /// `@contentType`; every representation must be of this kind.
    pub content_type: ContentType,
    /// `@mimeType` (`video/mp4`, `audio/mp4` for CMAF).
    pub mime_type: String,
    /// `@segmentAlignment="true"`: segments of all representations start at the same times
    /// (hivecast forces keyframes on the same timestamps in every rendition).
    pub segment_alignment: bool,
    /// `@lang` (RFC 5646), if known.
    pub lang: Option<String>,
    /// The representations, in order.
    pub representations: Vec<Representation>,
}

/// A dynamic MPD snapshot with one Period.
#[derive(Debug, Clone, PartialEq)]
pub struct Mpd {
    /// `@availabilityStartTime`: the wall-clock time of media time 0 of the Period (with
    /// `presentationTimeOffset` subtracted).
    pub availability_start_unix_ms: i64,
    /// `@publishTime`: when this version of the MPD was made.
    pub publish_unix_ms: i64,
    /// `@minimumUpdatePeriod`: how long clients may keep this MPD before refetching.
    pub minimum_update_period: Duration,
    /// `@timeShiftBufferDepth`: how far behind the live edge segments stay available.
    pub time_shift_buffer_depth: Duration,
    /// `@suggestedPresentationDelay`: how far behind the live edge to play.
    pub suggested_presentation_delay: Duration,
    /// `@minBufferTime`.
    pub min_buffer_time: Duration,
    /// `@maxSegmentDuration`.
    pub max_segment_duration: Duration,
    /// `UTCTiming`, strongly recommended for dynamic MPDs (DASH-IF IOP).
    pub utc_timing: Option<UtcTiming>,
    /// The MPD-level `BaseURL` every segment template resolves against (a CDN's absolute URL
    /// of the stream's directory, ending in `/`); `None`: relative to the MPD's own URL.
    pub base_url: Option<String>,
    /// The live presentation is over. The MPD stays `type="dynamic"`, gains
    /// `@mediaPresentationDuration` (the end of the longest timeline) and loses
    /// `@minimumUpdatePeriod`, as DASH-IF IOP prescribes for the end of a live session:
    /// absent `minimumUpdatePeriod` tells clients the MPD will not change again, and the
    /// duration tells them where the content ends. Switching to `type="static"` instead would
    /// change the meaning of `availabilityStartTime` under a client that is playing, and
    /// players (dash.js among them) reset rather than finish the session.
    pub ended: bool,
    /// The adaptation sets, in order.
    pub adaptation_sets: Vec<AdaptationSet>,
}

const PROFILE_LIVE: &str = "urn:mpeg:dash:profile:isoff-live:2011";
const AUDIO_CHANNEL_SCHEME: &str = "urn:mpeg:dash:23003:3:audio_channel_configuration:2011";

impl Mpd {
    /// Checks that the snapshot makes a valid MPD: at least one adaptation set, each with at
    /// least one representation matching its `contentType`; unique ids; every timeline
    /// non-empty with non-zero durations and a timescale, its end within 64 bits; media
    /// templates containing `$Number$` or `$Time$`; non-zero video and audio attributes; and
    /// every string representable in XML 1.0.
    pub fn validate(&self) -> Result<(), MpdError> {
        if self.adaptation_sets.is_empty() {
            return Err(MpdError::Empty { what: "MPD".into() });
        }
        if let Some(utc) = &self.utc_timing {
            check_text("UTCTiming@value", &utc.value)?;
        }
        if let Some(base) = &self.base_url {
            check_text("BaseURL", base)?;
        }
        let mut set_ids = HashSet::new();
        let mut rep_ids = HashSet::new();
        for set in &self.adaptation_sets {
            if !set_ids.insert(set.id) {
                return Err(MpdError::DuplicateAdaptationSetId { id: set.id });
            }
            if set.representations.is_empty() {
                return Err(MpdError::Empty {
                    what: format!("AdaptationSet {}", set.id),
                });
            }
            check_text("AdaptationSet@mimeType", &set.mime_type)?;
            if let Some(lang) = &set.lang {
                check_text("AdaptationSet@lang", lang)?;
            }
            for rep in &set.representations {
                if !rep_ids.insert(rep.id.as_str()) {
                    return Err(MpdError::DuplicateRepresentationId { id: rep.id.clone() });
                }
                validate_representation(set.content_type, rep)?;
            }
        }
        Ok(())
    }

    /// The end of the presentation: the latest timeline end over all representations, minus
    /// its `presentationTimeOffset`. Assumes `validate` passed.
    fn media_presentation_duration(&self) -> Duration {
        self.adaptation_sets
            .iter()
            .flat_map(|set| &set.representations)
            .filter_map(|rep| {
                let t = &rep.template;
                let end = t.timeline.last()?.end()?;
                let ticks = end.saturating_sub(t.presentation_time_offset);
                let nanos = u128::from(ticks) * 1_000_000_000 / u128::from(t.timescale.max(1));
                Some(Duration::from_nanos(
                    u64::try_from(nanos).unwrap_or(u64::MAX),
                ))
            })
            .max()
            .unwrap_or(Duration::ZERO)
    }
}

fn validate_representation(
    content_type: ContentType,
    rep: &Representation,
) -> Result<(), MpdError> {
    check_text("Representation@id", &rep.id)?;
    if rep.id.chars().any(char::is_whitespace) {
        return Err(MpdError::InvalidText {
            attribute: "Representation@id",
            value: rep.id.clone(),
            reason: "contains whitespace",
        });
    }
    check_text("Representation@codecs", &rep.codecs)?;
    let invalid = |what| MpdError::InvalidMediaAttribute {
        representation: rep.id.clone(),
        what,
    };
    let video_fields = rep.width.is_some() || rep.height.is_some() || rep.frame_rate.is_some();
    let audio_fields = rep.audio_sampling_rate.is_some() || rep.audio_channels.is_some();
    match content_type {
        ContentType::Video => {
            if audio_fields {
                return Err(MpdError::ContentTypeMismatch {
                    representation: rep.id.clone(),
                });
            }
            if !matches!((rep.width, rep.height), (Some(w), Some(h)) if w > 0 && h > 0) {
                return Err(invalid("width/height"));
            }
            if rep
                .frame_rate
                .is_some_and(|f| !f.is_finite() || !(0.001..=10_000.0).contains(&f))
            {
                return Err(invalid("frameRate"));
            }
        }
        ContentType::Audio => {
            if video_fields {
                return Err(MpdError::ContentTypeMismatch {
                    representation: rep.id.clone(),
                });
            }
            if rep.audio_sampling_rate.is_none_or(|r| r == 0) {
                return Err(invalid("audioSamplingRate"));
            }
            if rep.audio_channels == Some(0) {
                return Err(invalid("AudioChannelConfiguration"));
            }
        }
    }
    let t = &rep.template;
    check_text("SegmentTemplate@initialization", &t.initialization)?;
    check_text("SegmentTemplate@media", &t.media)?;
    // $Number$ or $Time$, optionally with a width format ($Number%05d$): ISO 23009-1 5.3.9.4.4.
    let addressed = ["$Number$", "$Number%", "$Time$", "$Time%"]
        .iter()
        .any(|id| t.media.contains(id));
    if !addressed {
        return Err(MpdError::MediaTemplateWithoutAddress {
            representation: rep.id.clone(),
            media: t.media.clone(),
        });
    }
    if t.timescale == 0 {
        return Err(MpdError::Zero {
            representation: rep.id.clone(),
            what: "timescale",
        });
    }
    if t.timeline.is_empty() {
        return Err(MpdError::EmptyTimeline {
            representation: rep.id.clone(),
        });
    }
    for entry in &t.timeline {
        if entry.d == 0 {
            return Err(MpdError::Zero {
                representation: rep.id.clone(),
                what: "S@d",
            });
        }
        if entry.end().is_none() {
            return Err(MpdError::TimelineOverflow {
                representation: rep.id.clone(),
            });
        }
    }
    Ok(())
}

/// A string XML 1.0 can carry in an attribute: non-empty, no control characters (C0 ones are
/// not XML characters at all; tabs and newlines would be normalised to spaces by attribute
/// value normalisation), no U+FFFE or U+FFFF.
fn check_text(attribute: &'static str, value: &str) -> Result<(), MpdError> {
    let reason = if value.is_empty() {
        Some("empty")
    } else if value
        .chars()
        .any(|c| c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}')
    {
        Some("contains a character XML cannot carry")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(MpdError::InvalidText {
            attribute,
            value: value.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Writes ` name="value"` with the value escaped for a double-quoted attribute.
fn attr(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    escape_into(out, value);
    out.push('"');
}

/// XML-escape `value` into `out` (attribute values and text alike).
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

/// Writes ` name="<number>"`.
fn attr_num(out: &mut String, name: &str, value: impl std::fmt::Display) {
    let _ = write!(out, " {name}=\"{value}\"");
}

fn attr_duration(out: &mut String, name: &str, d: Duration) {
    let _ = write!(out, " {name}=\"");
    write_xs_duration(d, out);
    out.push('"');
}

fn attr_datetime(out: &mut String, name: &str, unix_ms: i64) {
    let _ = write!(out, " {name}=\"");
    write_rfc3339_ms(unix_ms, out);
    out.push('"');
}

/// Writes a frame rate as the `FrameRateType` of the ISO 23009-1 schema (`[0-9]+(/[1-9][0-9]*)?`,
/// no decimals): an integer when within 1/1000 of one, `N*1000/1001` for the NTSC rates (29.97,
/// 59.94, 23.976), else thousandths reduced by their greatest common divisor.
fn write_frame_rate(out: &mut String, fps: f64) {
    let whole = fps.round();
    if (fps - whole).abs() < 1e-3 {
        let _ = write!(out, "{}", whole as u64);
        return;
    }
    let ntsc = (fps * 1.001).round();
    if (fps - ntsc * 1000.0 / 1001.0).abs() < 1e-3 {
        let _ = write!(out, "{}/1001", ntsc as u64 * 1000);
        return;
    }
    let thousandths = (fps * 1000.0).round() as u64;
    let g = gcd(thousandths, 1000);
    let _ = write!(out, "{}/{}", thousandths / g, 1000 / g);
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

/// Validates `m` and appends the MPD to `out`. On error nothing is written.
pub fn render_mpd(m: &Mpd, out: &mut String) -> Result<(), MpdError> {
    m.validate()?;
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<MPD");
    attr(out, "xmlns", "urn:mpeg:dash:schema:mpd:2011");
    attr(out, "profiles", PROFILE_LIVE);
    attr(out, "type", "dynamic");
    attr_datetime(out, "availabilityStartTime", m.availability_start_unix_ms);
    attr_datetime(out, "publishTime", m.publish_unix_ms);
    if m.ended {
        attr_duration(
            out,
            "mediaPresentationDuration",
            m.media_presentation_duration(),
        );
    } else {
        attr_duration(out, "minimumUpdatePeriod", m.minimum_update_period);
    }
    attr_duration(out, "timeShiftBufferDepth", m.time_shift_buffer_depth);
    attr_duration(
        out,
        "suggestedPresentationDelay",
        m.suggested_presentation_delay,
    );
    attr_duration(out, "minBufferTime", m.min_buffer_time);
    attr_duration(out, "maxSegmentDuration", m.max_segment_duration);
    out.push_str(">\n");
    if let Some(base) = &m.base_url {
        // ISO/IEC 23009-1 5.3.1.2: BaseURL comes before Period.
        out.push_str("  <BaseURL>");
        escape_into(out, base);
        out.push_str("</BaseURL>\n");
    }
    out.push_str("  <Period");
    // Period@id must be present in a dynamic MPD and stable across updates (clients match
    // Periods by id). The availability start time is exactly as stable: it changes only when
    // the whole timeline is re-anchored, which is when clients should see a new Period.
    attr_num(out, "id", m.availability_start_unix_ms);
    attr(out, "start", "PT0S");
    out.push_str(">\n");
    for set in &m.adaptation_sets {
        write_adaptation_set(out, set);
    }
    out.push_str("  </Period>\n");
    if let Some(utc) = &m.utc_timing {
        out.push_str("  <UTCTiming");
        attr(out, "schemeIdUri", utc.scheme.urn());
        attr(out, "value", &utc.value);
        out.push_str("/>\n");
    }
    out.push_str("</MPD>\n");
    Ok(())
}

fn write_adaptation_set(out: &mut String, set: &AdaptationSet) {
    out.push_str("    <AdaptationSet");
    attr_num(out, "id", set.id);
    attr(out, "contentType", set.content_type.as_str());
    attr(out, "mimeType", &set.mime_type);
    if set.segment_alignment {
        attr(out, "segmentAlignment", "true");
    }
    // Every hivecast segment starts with an IDR picture (video) or a raw AAC frame (audio):
    // a SAP of type 1, which DASH-IF IOP asks live profiles to declare.
    attr(out, "startWithSAP", "1");
    if let Some(lang) = &set.lang {
        attr(out, "lang", lang);
    }
    out.push_str(">\n");
    for rep in &set.representations {
        write_representation(out, rep);
    }
    out.push_str("    </AdaptationSet>\n");
}

fn write_representation(out: &mut String, rep: &Representation) {
    out.push_str("      <Representation");
    attr(out, "id", &rep.id);
    attr(out, "codecs", &rep.codecs);
    attr_num(out, "bandwidth", rep.bandwidth);
    if let Some(width) = rep.width {
        attr_num(out, "width", width);
    }
    if let Some(height) = rep.height {
        attr_num(out, "height", height);
    }
    if let Some(fps) = rep.frame_rate {
        out.push_str(" frameRate=\"");
        write_frame_rate(out, fps);
        out.push('"');
    }
    if let Some(rate) = rep.audio_sampling_rate {
        attr_num(out, "audioSamplingRate", rate);
    }
    out.push_str(">\n");
    if let Some(channels) = rep.audio_channels {
        out.push_str("        <AudioChannelConfiguration");
        attr(out, "schemeIdUri", AUDIO_CHANNEL_SCHEME);
        attr_num(out, "value", channels);
        out.push_str("/>\n");
    }
    let t = &rep.template;
    out.push_str("        <SegmentTemplate");
    attr_num(out, "timescale", t.timescale);
    attr(out, "initialization", &t.initialization);
    attr(out, "media", &t.media);
    attr_num(out, "startNumber", t.start_number);
    attr_num(out, "presentationTimeOffset", t.presentation_time_offset);
    out.push_str(">\n          <SegmentTimeline>\n");
    let mut expected_t = None;
    for entry in &t.timeline {
        out.push_str("            <S");
        // @t only where the timeline does not simply continue (the first entry, gaps).
        if expected_t != Some(entry.t) {
            attr_num(out, "t", entry.t);
        }
        attr_num(out, "d", entry.d);
        if entry.r != 0 {
            attr_num(out, "r", entry.r);
        }
        out.push_str("/>\n");
        expected_t = entry.end();
    }
    out.push_str(
        "          </SegmentTimeline>\n        </SegmentTemplate>\n      </Representation>\n",
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dash::{compact_timeline, expand_timeline};
    use proptest::prelude::*;

    const AST: i64 = 1_700_000_000_000;

    fn video_template(timeline: Vec<TimelineEntry>) -> SegmentTemplate {
        SegmentTemplate {
            timescale: 90_000,
            initialization: "init-7-$RepresentationID$.mp4".into(),
            media: "seg-7-$RepresentationID$-$Number$.m4s".into(),
            start_number: 100,
            presentation_time_offset: 0,
            timeline,
        }
    }

    fn fixture() -> Mpd {
        let video = Representation {
            id: "720p".into(),
            codecs: "avc1.64001f".into(),
            bandwidth: 3_000_000,
            width: Some(1280),
            height: Some(720),
            frame_rate: Some(30_000.0 / 1_001.0),
            audio_sampling_rate: None,
            audio_channels: None,
            template: video_template(compact_timeline([
                (9_000_000, 180_000),
                (9_180_000, 180_000),
                (9_360_000, 180_000),
                (9_540_000, 183_003),
            ])),
        };
        let audio = Representation {
            id: "audio".into(),
            codecs: "mp4a.40.2".into(),
            bandwidth: 128_000,
            width: None,
            height: None,
            frame_rate: None,
            audio_sampling_rate: Some(48_000),
            audio_channels: Some(2),
            template: SegmentTemplate {
                timescale: 48_000,
                initialization: "init-7-audio.mp4".into(),
                media: "seg-7-audio-$Number$.m4s".into(),
                start_number: 100,
                presentation_time_offset: 0,
                // 47, 46, 47 and 47 AAC frames of 1024 samples.
                timeline: compact_timeline([
                    (4_800_000, 96_256),
                    (4_896_256, 95_232),
                    (4_991_488, 96_256),
                    (5_087_744, 96_256),
                ]),
            },
        };
        Mpd {
            availability_start_unix_ms: AST,
            publish_unix_ms: AST + 20_500,
            minimum_update_period: Duration::from_secs(2),
            time_shift_buffer_depth: Duration::from_secs(30),
            suggested_presentation_delay: Duration::from_secs(6),
            min_buffer_time: Duration::from_secs(2),
            max_segment_duration: Duration::from_millis(2_006),
            utc_timing: Some(UtcTiming::http_iso("https://time.example/v1/time?iso&x=1")),
            base_url: None,
            ended: false,
            adaptation_sets: vec![
                AdaptationSet {
                    id: 0,
                    content_type: ContentType::Video,
                    mime_type: "video/mp4".into(),
                    segment_alignment: true,
                    lang: None,
                    representations: vec![video],
                },
                AdaptationSet {
                    id: 1,
                    content_type: ContentType::Audio,
                    mime_type: "audio/mp4".into(),
                    segment_alignment: true,
                    lang: Some("en".into()),
                    representations: vec![audio],
                },
            ],
        }
    }

    fn render(m: &Mpd) -> String {
        let mut out = String::new();
        render_mpd(m, &mut out).expect("valid");
        out
    }

    /// Reasoned out by hand from ISO/IEC 23009-1 and DASH-IF IOP:
    /// - `MPD`: the 2011 namespace, the isoff-live profile, `type="dynamic"`; AST
    ///   1 700 000 000 s = 2023-11-14T22:13:20.000Z, publishTime 20.5 s later; durations as
    ///   `xs:duration` (whole seconds without a fraction, 2.006 s with three decimals);
    /// - one `Period` starting at PT0S, its id the AST in Unix milliseconds;
    /// - video: 3 x 2 s (180 000 ticks at 90 kHz) contiguous segments collapse into one `S`
    ///   with `r="2"`; the 2.0334 s segment after them continues the timeline, so its `S`
    ///   has no `t`; `frameRate` is the fraction `30000/1001` (FrameRateType has no
    ///   decimals);
    /// - audio: `AudioChannelConfiguration` comes before `SegmentTemplate` (schema order);
    ///   durations 96 256, 95 232, 96 256, 96 256 give three `S` elements, the last `r="1"`;
    /// - `UTCTiming` after the `Period` (schema order), its `&` escaped as `&amp;`.
    #[test]
    fn golden_dynamic_mpd() {
        let expected = r#"<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011" type="dynamic" availabilityStartTime="2023-11-14T22:13:20.000Z" publishTime="2023-11-14T22:13:40.500Z" minimumUpdatePeriod="PT2S" timeShiftBufferDepth="PT30S" suggestedPresentationDelay="PT6S" minBufferTime="PT2S" maxSegmentDuration="PT2.006S">
  <Period id="1700000000000" start="PT0S">
    <AdaptationSet id="0" contentType="video" mimeType="video/mp4" segmentAlignment="true" startWithSAP="1">
      <Representation id="720p" codecs="avc1.64001f" bandwidth="3000000" width="1280" height="720" frameRate="30000/1001">
        <SegmentTemplate timescale="90000" initialization="init-7-$RepresentationID$.mp4" media="seg-7-$RepresentationID$-$Number$.m4s" startNumber="100" presentationTimeOffset="0">
          <SegmentTimeline>
            <S t="9000000" d="180000" r="2"/>
            <S d="183003"/>
          </SegmentTimeline>
        </SegmentTemplate>
      </Representation>
    </AdaptationSet>
    <AdaptationSet id="1" contentType="audio" mimeType="audio/mp4" segmentAlignment="true" startWithSAP="1" lang="en">
      <Representation id="audio" codecs="mp4a.40.2" bandwidth="128000" audioSamplingRate="48000">
        <AudioChannelConfiguration schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011" value="2"/>
        <SegmentTemplate timescale="48000" initialization="init-7-audio.mp4" media="seg-7-audio-$Number$.m4s" startNumber="100" presentationTimeOffset="0">
          <SegmentTimeline>
            <S t="4800000" d="96256"/>
            <S d="95232"/>
            <S d="96256" r="1"/>
          </SegmentTimeline>
        </SegmentTemplate>
      </Representation>
    </AdaptationSet>
  </Period>
  <UTCTiming schemeIdUri="urn:mpeg:dash:utc:http-iso:2014" value="https://time.example/v1/time?iso&amp;x=1"/>
</MPD>
"#;
        assert_eq!(render(&fixture()), expected);
    }

    /// Ended: video ends at 9 000 000 + 3 x 180 000 + 183 003 = 9 723 003 ticks
    /// = 108.0334 s, audio at 5 184 000 / 48 000 = 108 s; the longer one, to the
    /// millisecond, is the presentation duration. minimumUpdatePeriod disappears.
    #[test]
    fn ended_mpd_stays_dynamic_with_a_duration() {
        let mut m = fixture();
        m.ended = true;
        let text = render(&m);
        assert!(text.contains(
            r#"type="dynamic" availabilityStartTime="2023-11-14T22:13:20.000Z" publishTime="2023-11-14T22:13:40.500Z" mediaPresentationDuration="PT108.033S" timeShiftBufferDepth="PT30S""#
        ));
        assert!(!text.contains("minimumUpdatePeriod"));
        // The presentation time offset is subtracted.
        m.adaptation_sets[0].representations[0]
            .template
            .presentation_time_offset = 9_000_000;
        m.adaptation_sets[1].representations[0]
            .template
            .presentation_time_offset = 4_800_000;
        assert!(render(&m).contains(r#"mediaPresentationDuration="PT8.033S""#));
    }

    fn attr_u64(node: roxmltree::Node<'_, '_>, name: &str) -> Option<u64> {
        node.attribute(name).and_then(|v| v.parse().ok())
    }

    /// Rebuilds `(start, duration)` pairs from `S` elements the way a DASH client does:
    /// a missing `@t` continues from the previous end, `@r` repeats.
    fn read_timeline(template: roxmltree::Node<'_, '_>) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut next = 0;
        let timeline = template
            .children()
            .find(|n| n.has_tag_name("SegmentTimeline"))
            .expect("SegmentTimeline");
        for s in timeline.children().filter(|n| n.has_tag_name("S")) {
            let d = attr_u64(s, "d").expect("S@d");
            let mut t = attr_u64(s, "t").unwrap_or(next);
            for _ in 0..=attr_u64(s, "r").unwrap_or(0) {
                out.push((t, d));
                t += d;
            }
            next = t;
        }
        out
    }

    /// A CDN's `BaseURL` is the first child of `MPD` (schema order: before `Period`), escaped;
    /// an empty one is refused.
    #[test]
    fn base_url_comes_first_and_escaped() {
        let mut m = fixture();
        m.base_url = Some("https://cdn.example/cmaf/a&b/".into());
        let text = render(&m);
        let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
        let first = doc
            .root_element()
            .children()
            .find(|n| n.is_element())
            .unwrap();
        assert_eq!(first.tag_name().name(), "BaseURL");
        assert_eq!(first.text(), Some("https://cdn.example/cmaf/a&b/"));
        m.base_url = Some(String::new());
        assert!(render_mpd(&m, &mut String::new()).is_err());
    }

    #[test]
    fn structure_as_read_by_roxmltree() {
        let m = fixture();
        let text = render(&m);
        let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
        let mpd = doc.root_element();
        assert!(mpd.has_tag_name(("urn:mpeg:dash:schema:mpd:2011", "MPD")));
        assert_eq!(mpd.attribute("type"), Some("dynamic"));
        assert_eq!(
            mpd.attribute("profiles"),
            Some("urn:mpeg:dash:profile:isoff-live:2011")
        );
        let elements: Vec<_> = mpd
            .children()
            .filter(|n| n.is_element())
            .map(|n| n.tag_name().name())
            .collect();
        assert_eq!(elements, ["Period", "UTCTiming"]);
        let utc = mpd
            .children()
            .find(|n| n.has_tag_name("UTCTiming"))
            .expect("UTCTiming");
        assert_eq!(
            utc.attribute("value"),
            Some("https://time.example/v1/time?iso&x=1")
        );
        let period = mpd
            .children()
            .find(|n| n.has_tag_name("Period"))
            .expect("Period");
        assert_eq!(period.attribute("id"), Some("1700000000000"));
        assert_eq!(period.attribute("start"), Some("PT0S"));
        let sets: Vec<_> = period
            .children()
            .filter(|n| n.has_tag_name("AdaptationSet"))
            .collect();
        assert_eq!(sets.len(), 2);
        for (node, set) in sets.iter().zip(&m.adaptation_sets) {
            assert_eq!(attr_u64(*node, "id"), Some(u64::from(set.id)));
            assert_eq!(node.attribute("mimeType"), Some(set.mime_type.as_str()));
            let reps: Vec<_> = node
                .children()
                .filter(|n| n.has_tag_name("Representation"))
                .collect();
            assert_eq!(reps.len(), set.representations.len());
            for (rnode, rep) in reps.iter().zip(&set.representations) {
                assert_eq!(rnode.attribute("id"), Some(rep.id.as_str()));
                assert_eq!(attr_u64(*rnode, "bandwidth"), Some(rep.bandwidth));
                let children: Vec<_> = rnode
                    .children()
                    .filter(|n| n.is_element())
                    .map(|n| n.tag_name().name())
                    .collect();
                let template = rnode
                    .children()
                    .find(|n| n.has_tag_name("SegmentTemplate"))
                    .expect("SegmentTemplate");
                assert_eq!(
                    attr_u64(template, "startNumber"),
                    Some(rep.template.start_number)
                );
                assert_eq!(
                    read_timeline(template),
                    expand_timeline(&rep.template.timeline).collect::<Vec<_>>()
                );
                match set.content_type {
                    ContentType::Audio => {
                        assert_eq!(children, ["AudioChannelConfiguration", "SegmentTemplate"]);
                        let acc = rnode.first_element_child().expect("channel config");
                        assert_eq!(attr_u64(acc, "value"), rep.audio_channels.map(u64::from));
                        assert_eq!(
                            attr_u64(*rnode, "audioSamplingRate"),
                            rep.audio_sampling_rate.map(u64::from)
                        );
                        assert_eq!(rnode.attribute("width"), None);
                    }
                    ContentType::Video => {
                        assert_eq!(children, ["SegmentTemplate"]);
                        assert_eq!(attr_u64(*rnode, "width"), rep.width.map(u64::from));
                        assert_eq!(rnode.attribute("audioSamplingRate"), None);
                    }
                }
            }
        }
    }

    #[test]
    fn invalid_snapshots_are_refused_and_nothing_is_written() {
        let check = |edit: &dyn Fn(&mut Mpd), want: MpdError| {
            let mut m = fixture();
            edit(&mut m);
            let mut out = String::new();
            assert_eq!(render_mpd(&m, &mut out), Err(want));
            assert!(out.is_empty());
        };
        check(
            &|m| {
                m.adaptation_sets[0].representations[0]
                    .template
                    .timeline
                    .clear()
            },
            MpdError::EmptyTimeline {
                representation: "720p".into(),
            },
        );
        check(
            &|m| m.adaptation_sets[0].representations[0].template.media = "seg.m4s".into(),
            MpdError::MediaTemplateWithoutAddress {
                representation: "720p".into(),
                media: "seg.m4s".into(),
            },
        );
        check(
            &|m| m.adaptation_sets[1].representations[0].id = "720p".into(),
            MpdError::DuplicateRepresentationId { id: "720p".into() },
        );
        check(
            &|m| m.adaptation_sets[1].id = 0,
            MpdError::DuplicateAdaptationSetId { id: 0 },
        );
        check(
            &|m| m.adaptation_sets[1].content_type = ContentType::Video,
            MpdError::ContentTypeMismatch {
                representation: "audio".into(),
            },
        );
        check(
            &|m| m.adaptation_sets[0].representations[0].audio_channels = Some(2),
            MpdError::ContentTypeMismatch {
                representation: "720p".into(),
            },
        );
        check(
            &|m| m.adaptation_sets[0].representations[0].height = None,
            MpdError::InvalidMediaAttribute {
                representation: "720p".into(),
                what: "width/height",
            },
        );
        check(
            &|m| m.adaptation_sets[1].representations[0].audio_sampling_rate = None,
            MpdError::InvalidMediaAttribute {
                representation: "audio".into(),
                what: "audioSamplingRate",
            },
        );
        check(
            &|m| m.adaptation_sets[0].representations[0].id = "720 p".into(),
            MpdError::InvalidText {
                attribute: "Representation@id",
                value: "720 p".into(),
                reason: "contains whitespace",
            },
        );
        check(
            &|m| m.adaptation_sets[0].representations[0].codecs = "avc1\u{1}".into(),
            MpdError::InvalidText {
                attribute: "Representation@codecs",
                value: "avc1\u{1}".into(),
                reason: "contains a character XML cannot carry",
            },
        );
        check(
            &|m| m.adaptation_sets[0].representations[0].template.timeline[0].d = 0,
            MpdError::Zero {
                representation: "720p".into(),
                what: "S@d",
            },
        );
        check(
            &|m| m.adaptation_sets[0].representations[0].template.timescale = 0,
            MpdError::Zero {
                representation: "720p".into(),
                what: "timescale",
            },
        );
        check(
            &|m| {
                m.adaptation_sets[0].representations[0].template.timeline = vec![TimelineEntry {
                    t: u64::MAX - 10,
                    d: 10,
                    r: 1,
                }]
            },
            MpdError::TimelineOverflow {
                representation: "720p".into(),
            },
        );
        check(
            &|m| m.adaptation_sets[0].representations[0].frame_rate = Some(f64::INFINITY),
            MpdError::InvalidMediaAttribute {
                representation: "720p".into(),
                what: "frameRate",
            },
        );
        check(
            &|m| m.adaptation_sets[1].representations.clear(),
            MpdError::Empty {
                what: "AdaptationSet 1".into(),
            },
        );
        check(
            &|m| m.adaptation_sets.clear(),
            MpdError::Empty { what: "MPD".into() },
        );
    }

    #[test]
    fn frame_rates_are_integers_or_fractions() {
        let written = |fps: f64| {
            let mut out = String::new();
            write_frame_rate(&mut out, fps);
            out
        };
        assert_eq!(written(25.0), "25");
        assert_eq!(written(29.999_9), "30");
        assert_eq!(written(30_000.0 / 1_001.0), "30000/1001");
        assert_eq!(written(29.97), "30000/1001");
        assert_eq!(written(60_000.0 / 1_001.0), "60000/1001");
        assert_eq!(written(24_000.0 / 1_001.0), "24000/1001");
        assert_eq!(written(12.5), "25/2");
        // 14.985 is within 1/1000 of 15000/1001 (14.98501...), so it is taken as that.
        assert_eq!(written(14.985), "15000/1001");
        assert_eq!(written(14.3), "143/10");
    }

    #[test]
    fn number_format_templates_are_addressed() {
        let mut m = fixture();
        m.adaptation_sets[0].representations[0].template.media = "seg-$Number%05d$.m4s".into();
        assert!(render(&m).contains(r#"media="seg-$Number%05d$.m4s""#));
    }

    proptest! {
        /// Attribute values survive XML escaping: whatever (valid) text goes in, an
        /// independent XML parser reads the same text back.
        #[test]
        fn attribute_values_round_trip(
            id in "[A-Za-z0-9&<>\"'_.é-]{1,16}",
            url in "[ A-Za-z0-9&<>\"'/?=%;:#é-]{0,24}",
            lang in "[ -~]{1,8}",
        ) {
            let mut m = fixture();
            m.adaptation_sets[1].lang = Some(lang.clone());
            let rep = &mut m.adaptation_sets[0].representations[0];
            rep.id = id.clone();
            rep.template.media = format!("{url}$Number$");
            let text = render(&m);
            let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
            let rep_node = doc.descendants().find(|n| n.has_tag_name("Representation")).expect("rep");
            prop_assert_eq!(rep_node.attribute("id"), Some(id.as_str()));
            let template = rep_node.children().find(|n| n.has_tag_name("SegmentTemplate")).expect("template");
            let media = format!("{url}$Number$");
            prop_assert_eq!(template.attribute("media"), Some(media.as_str()));
            let audio_set = doc.descendants().filter(|n| n.has_tag_name("AdaptationSet")).nth(1).expect("audio set");
            prop_assert_eq!(audio_set.attribute("lang"), Some(lang.as_str()));
        }

        /// A compacted timeline written into the MPD and read back by the DASH rules (missing
        /// `@t` continues, `@r` repeats) gives the original segment list.
        #[test]
        fn timeline_survives_the_mpd(
            start in 0u64..1u64 << 40,
            steps in proptest::collection::vec((0u64..3, 1u64..4), 1..100),
        ) {
            let mut t = start;
            let mut input = Vec::new();
            for (gap, d) in steps {
                t += gap * 1_000;
                input.push((t, d * 90_000));
                t += d * 90_000;
            }
            let mut m = fixture();
            m.adaptation_sets[0].representations[0].template = video_template(compact_timeline(input.iter().copied()));
            let text = render(&m);
            let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
            let template = doc.descendants().find(|n| n.has_tag_name("SegmentTemplate")).expect("template");
            prop_assert_eq!(read_timeline(template), input);
        }
    }
}
