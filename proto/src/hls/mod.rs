//! LEAD-STUB
#![allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
pub enum PlaylistError {
    #[error("x")]
    X,
}
pub struct MediaPlaylist {
    pub version: u8,
    pub target_duration: u32,
    pub media_sequence: u64,
    pub independent_segments: bool,
    pub server_control: Option<ServerControl>,
    pub part_inf: Option<PartInf>,
    pub map: Option<Map>,
    pub segments: Vec<SegmentEntry>,
    pub trailing_parts: Vec<PartEntry>,
    pub preload_hint: Option<PreloadHint>,
    pub rendition_reports: Vec<RenditionReport>,
    pub ended: bool,
}
pub struct SegmentEntry {
    pub uri: String,
    pub duration: f64,
    pub program_date_time_ms: Option<i64>,
    pub parts: Vec<PartEntry>,
    pub discontinuity: bool,
}
pub struct PartEntry {
    pub uri: String,
    pub duration: f64,
    pub independent: bool,
}
pub struct ServerControl;
impl ServerControl {
    pub fn low_latency(_phb: f64) -> Self {
        ServerControl
    }
}
pub struct PartInf;
impl PartInf {
    pub fn new(_t: f64) -> Self {
        PartInf
    }
}
pub struct Map;
impl Map {
    pub fn new(_u: String) -> Self {
        Map
    }
}
pub struct PreloadHint;
impl PreloadHint {
    pub fn part(_u: String) -> Self {
        PreloadHint
    }
}
pub struct RenditionReport {
    pub uri: String,
    pub last_msn: u64,
    pub last_part: Option<u64>,
}
pub fn render_media_playlist(_p: &MediaPlaylist, _o: &mut String) {
    unimplemented!()
}
pub struct MasterPlaylist {
    pub version: u8,
    pub independent_segments: bool,
    pub media: Vec<MediaTag>,
    pub variants: Vec<VariantStream>,
}
pub struct MediaTag {
    pub group_id: String,
    pub name: String,
    pub uri: Option<String>,
    pub default: bool,
    pub autoselect: bool,
    pub channels: Option<String>,
}
pub struct VariantStream {
    pub uri: String,
    pub bandwidth: u64,
    pub average_bandwidth: Option<u64>,
    pub codecs: Option<String>,
    pub resolution: Option<(u32, u32)>,
    pub frame_rate: Option<f64>,
    pub audio_group: Option<String>,
}
pub fn render_master_playlist(_m: &MasterPlaylist, _o: &mut String) {
    unimplemented!()
}
pub struct BlockingRequest {
    pub msn: u64,
    pub part: Option<u64>,
    pub skip: bool,
}
pub fn parse_blocking_request(_q: &str) -> Result<Option<BlockingRequest>, PlaylistError> {
    unimplemented!()
}
