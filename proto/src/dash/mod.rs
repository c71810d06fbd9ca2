//! LEAD-STUB
#![allow(missing_docs)]
use std::time::Duration;
pub enum ContentType {
    Video,
    Audio,
}
pub struct UtcTiming;
impl UtcTiming {
    pub fn http_iso(_u: String) -> Self {
        UtcTiming
    }
}
pub struct Mpd {
    pub availability_start_unix_ms: i64,
    pub publish_unix_ms: i64,
    pub minimum_update_period: Duration,
    pub time_shift_buffer_depth: Duration,
    pub suggested_presentation_delay: Duration,
    pub min_buffer_time: Duration,
    pub max_segment_duration: Duration,
    pub utc_timing: Option<UtcTiming>,
    pub ended: bool,
    pub adaptation_sets: Vec<AdaptationSet>,
}
pub struct AdaptationSet {
    pub id: u32,
    pub content_type: ContentType,
    pub mime_type: String,
    pub segment_alignment: bool,
    pub lang: Option<String>,
    pub representations: Vec<Representation>,
}
pub struct Representation {
    pub id: String,
    pub codecs: String,
    pub bandwidth: u64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub frame_rate: Option<f64>,
    pub audio_sampling_rate: Option<u32>,
    pub audio_channels: Option<u8>,
    pub template: SegmentTemplate,
}
pub struct SegmentTemplate {
    pub timescale: u32,
    pub initialization: String,
    pub media: String,
    pub start_number: u64,
    pub presentation_time_offset: u64,
    pub timeline: Vec<TimelineEntry>,
}
pub struct TimelineEntry {
    pub t: u64,
    pub d: u64,
    pub r: u32,
}
pub fn compact_timeline(_i: impl Iterator<Item = (u64, u64)>) -> Vec<TimelineEntry> {
    unimplemented!()
}
pub fn render_mpd(_m: &Mpd, _o: &mut String) {
    unimplemented!()
}
