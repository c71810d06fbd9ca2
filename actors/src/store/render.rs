//! Rendering playlists and the MPD from the store's state, through `hivecast_proto`'s writers.
//!
//! Called by the packager after each change (once per part), never per request, so a playlist
//! request is a `Bytes` clone.

use bytes::Bytes;
use hivecast_proto::{dash, hls};

use super::naming::MediaName;
use super::track::{TrackFormat, TrackKind, TrackStore};
use super::StreamMedia;

/// How many of the newest complete segments keep their parts listed. RFC 8216bis 4.4.4.9:
/// parts older than three target durations from the live edge should be removed; two segments
/// of about one target duration each plus the open one stay inside that.
const SEGMENTS_WITH_PARTS: usize = 2;

/// Render a track's media playlist; `None` until its first segment is complete (players such
/// as ffmpeg treat a playlist without segments as an error).
pub(crate) fn media_playlist(
    track: &TrackStore,
    siblings: &[std::sync::Arc<TrackStore>],
) -> Option<Bytes> {
    let g = track.read();
    if g.segments.is_empty() {
        return None;
    }
    let epoch = track.epoch;
    let window = track.config.window_segments.max(1);
    let skip = g.segments.len().saturating_sub(window);
    let listed: Vec<_> = g.segments.iter().skip(skip).collect();
    let target_duration = target_duration(
        track.config.segment_target.as_secs_f64(),
        g.max_segment_duration,
    );
    let part_target = track.config.part_target.as_secs_f64();
    let ll = track.format == TrackFormat::Cmaf;

    let clamp = |d: f64| if d > part_target { part_target } else { d };
    // Relative to the playlist, or absolute under the CDN base.
    let url = |name: MediaName| match &track.stream_url {
        Some(dir) => format!("{dir}/{}/{}", track.rendition, name.file_name()),
        None => name.file_name(),
    };
    let parts_from = listed.len().saturating_sub(SEGMENTS_WITH_PARTS);
    let mut segments = Vec::with_capacity(listed.len());
    for (i, s) in listed.iter().enumerate() {
        let uri = url(match track.format {
            TrackFormat::Cmaf => MediaName::Segment { epoch, msn: s.msn },
            TrackFormat::Ts => MediaName::TsSegment { epoch, msn: s.msn },
        });
        let parts = if ll && i >= parts_from {
            s.parts
                .iter()
                .map(|p| hls::PartEntry {
                    uri: url(MediaName::Part {
                        epoch,
                        msn: s.msn,
                        part: p.index,
                    }),
                    duration: clamp(p.duration),
                    independent: p.independent,
                })
                .collect()
        } else {
            Vec::new()
        };
        segments.push(hls::SegmentEntry {
            uri,
            duration: s.duration,
            program_date_time_ms: Some(s.pdt_ms),
            parts,
            discontinuity: false,
            map: None,
        });
    }

    let mut trailing_parts = Vec::new();
    let mut preload_hint = None;
    let mut rendition_reports = Vec::new();
    let mut server_control = None;
    let mut part_inf = None;
    let mut map = None;
    if ll {
        if let Some(open) = g.open.as_ref() {
            for p in &open.parts {
                trailing_parts.push(hls::PartEntry {
                    uri: url(MediaName::Part {
                        epoch,
                        msn: open.msn,
                        part: p.index,
                    }),
                    duration: clamp(p.duration),
                    independent: p.independent,
                });
            }
        }
        if !g.ended && !g.interrupted {
            let (msn, part) = match g.open.as_ref() {
                Some(o) => (o.msn, o.parts.len() as u64),
                None => (g.next_msn, 0),
            };
            preload_hint = Some(hls::PreloadHint::part(url(MediaName::Part {
                epoch,
                msn,
                part,
            })));
        }
        let pi = match hls::PartInf::new(part_target) {
            Ok(pi) => pi,
            Err(error) => {
                tracing::error!(%error, "invalid part target");
                return None;
            }
        };
        // 3 x PART-TARGET, computed on the written milliseconds (RFC 8216bis 4.4.3.8).
        server_control = hls::ServerControl::low_latency(&pi, pi.min_part_hold_back()).ok();
        part_inf = Some(pi);
        map = Some(hls::Map::new(url(MediaName::Init { epoch })));
        drop(g);
        for s in siblings {
            if std::ptr::eq(s.as_ref(), track) {
                continue;
            }
            if let Some((msn, part)) = s.last_position() {
                rendition_reports.push(hls::RenditionReport {
                    uri: match &track.stream_url {
                        Some(dir) => format!("{dir}/{}/index.m3u8", s.rendition),
                        None => format!("../{}/index.m3u8", s.rendition),
                    },
                    last_msn: msn,
                    last_part: part,
                });
            }
        }
    } else {
        drop(g);
    }
    let g = track.read();
    let playlist = hls::MediaPlaylist {
        version: if ll { 9 } else { 3 },
        target_duration,
        media_sequence: listed_first_msn(&g, skip),
        discontinuity_sequence: track.config.discontinuity_seq,
        independent_segments: true,
        server_control,
        part_inf,
        map,
        segments,
        trailing_start: hls::SegmentStart::default(),
        trailing_parts,
        preload_hint,
        rendition_reports,
        ended: g.ended,
    };
    let mut out = String::with_capacity(4096);
    if let Err(error) = hls::render_media_playlist(&playlist, &mut out) {
        tracing::error!(%error, "media playlist rejected");
        return None;
    }
    Some(Bytes::from(out))
}

fn listed_first_msn(g: &super::track::TrackInner, skip: usize) -> u64 {
    g.segments.get(skip).map_or(0, |s| s.msn)
}

/// EXT-X-TARGETDURATION: the configured target, raised to cover the longest segment seen
/// (a passthrough source's GOP decides where segments can be cut). RFC 8216bis 4.4.3.1 asks
/// for every EXTINF rounded to the nearest integer to be <= this.
fn target_duration(configured: f64, longest: f64) -> u32 {
    hls::target_duration_for(configured.max(longest))
}

/// Render a stream's master playlist for `format`, once every track has its codec info.
/// Video renditions are variants; in CMAF the audio track is an `EXT-X-MEDIA` group `aud`.
pub fn master_playlist(media: &StreamMedia, format: TrackFormat) -> Option<Bytes> {
    let tracks = match format {
        TrackFormat::Cmaf => media.cmaf_tracks(),
        TrackFormat::Ts => media.ts_tracks(),
    };
    let audio = media
        .cmaf_tracks()
        .into_iter()
        .find(|t| t.kind == TrackKind::Audio)
        .and_then(|t| t.info().map(|i| (t, i)));
    let audio_codec = audio.as_ref().map(|(_, i)| i.codec.clone());
    let audio_bw = audio
        .as_ref()
        .map(|(t, i)| t.measured_bandwidth().map_or(i.declared_bandwidth, |m| m.0))
        .unwrap_or(0);
    let dir = media
        .stream_url(format)
        .map_or_else(String::new, |d| d + "/");
    let mut variants = Vec::new();
    for t in media.ordered_video(&tracks)? {
        let info = t.info()?;
        t.playlist()?;
        let (peak, avg) = t
            .measured_bandwidth()
            .unwrap_or((info.declared_bandwidth, info.declared_bandwidth));
        let (peak, avg) = match format {
            // TS segments already contain the audio.
            TrackFormat::Ts => (peak, avg),
            TrackFormat::Cmaf => (peak + audio_bw, avg + audio_bw),
        };
        let codecs = match &audio_codec {
            Some(a) => format!("{},{}", info.codec, a),
            None => info.codec.clone(),
        };
        variants.push(hls::VariantStream {
            uri: format!("{dir}{}/index.m3u8", t.rendition),
            bandwidth: peak.max(1),
            average_bandwidth: Some(avg.max(1)),
            codecs: Some(codecs),
            resolution: info.width.zip(info.height),
            frame_rate: info.frame_rate,
            audio_group: match (format, &audio) {
                (TrackFormat::Cmaf, Some(_)) => Some("aud".to_owned()),
                _ => None,
            },
        });
    }
    if variants.is_empty() {
        return None;
    }
    let mut media_tags = Vec::new();
    if format == TrackFormat::Cmaf {
        if let Some((t, i)) = &audio {
            t.playlist()?;
            media_tags.push(hls::MediaTag {
                group_id: "aud".to_owned(),
                name: "audio".to_owned(),
                uri: Some(format!("{dir}{}/index.m3u8", t.rendition)),
                default: true,
                autoselect: true,
                channels: i.channels.map(|c| c.to_string()),
            });
        }
    }
    let m = hls::MasterPlaylist {
        version: if format == TrackFormat::Cmaf { 9 } else { 3 },
        independent_segments: true,
        media: media_tags,
        variants,
    };
    let mut out = String::with_capacity(1024);
    if let Err(error) = hls::render_master_playlist(&m, &mut out) {
        tracing::error!(%error, "master playlist rejected");
        return None;
    }
    Some(Bytes::from(out))
}

/// Render the dynamic MPD over the CMAF tracks; `None` until every track has a segment.
pub(crate) fn mpd(
    media: &StreamMedia,
    start_wall_ms: i64,
    tracks: &[std::sync::Arc<TrackStore>],
    ended: bool,
) -> Option<Bytes> {
    let epoch = media.epoch;
    let window = media.config.window_segments.max(1);
    let mut sets = Vec::new();
    let mut max_seg: f64 = media.config.segment_target.as_secs_f64();
    let mut last_end_ms: i64 = 0;
    for (kind, content_type, mime) in [
        (TrackKind::Video, dash::ContentType::Video, "video/mp4"),
        (TrackKind::Audio, dash::ContentType::Audio, "audio/mp4"),
    ] {
        let mut reps = Vec::new();
        let of_kind = match kind {
            TrackKind::Video => media.ordered_video(tracks)?,
            TrackKind::Audio => tracks.iter().filter(|t| t.kind == kind).cloned().collect(),
        };
        for t in of_kind {
            let info = t.info()?;
            let g = t.read();
            if g.segments.is_empty() {
                return None;
            }
            let skip = g.segments.len().saturating_sub(window);
            let segs: Vec<_> = g.segments.iter().skip(skip).collect();
            max_seg = max_seg.max(g.max_segment_duration);
            if let Some(last) = segs.last() {
                let end_ms = ((last.start + last.duration_ticks) as f64 * 1000.0
                    / f64::from(info.timescale.max(1))) as i64;
                last_end_ms = last_end_ms.max(end_ms);
            }
            let start_number = segs.first().map_or(0, |s| s.msn);
            let timeline = dash::compact_timeline(segs.iter().map(|s| (s.start, s.duration_ticks)));
            drop(g);
            let bandwidth = t
                .measured_bandwidth()
                .map_or(info.declared_bandwidth, |m| m.0)
                .max(1);
            reps.push(dash::Representation {
                id: t.rendition.to_string(),
                codecs: info.codec.clone(),
                bandwidth,
                width: info.width,
                height: info.height,
                frame_rate: info.frame_rate,
                audio_sampling_rate: info.sample_rate,
                audio_channels: info.channels,
                template: dash::SegmentTemplate {
                    timescale: info.timescale,
                    initialization: format!(
                        "{}/{}",
                        t.rendition,
                        MediaName::Init { epoch }.file_name()
                    ),
                    media: format!("{}/{}-$Number$.m4s", t.rendition, epoch),
                    start_number,
                    presentation_time_offset: 0,
                    timeline,
                },
            });
        }
        if !reps.is_empty() {
            sets.push(dash::AdaptationSet {
                id: sets.len() as u32,
                content_type,
                mime_type: mime.to_owned(),
                segment_alignment: true,
                lang: None,
                representations: reps,
            });
        }
    }
    if sets.is_empty() {
        return None;
    }
    let seg = std::time::Duration::from_secs_f64(max_seg);
    let m = dash::Mpd {
        availability_start_unix_ms: start_wall_ms,
        publish_unix_ms: start_wall_ms + last_end_ms,
        minimum_update_period: media.mpd_update_period(),
        time_shift_buffer_depth: seg * window as u32,
        suggested_presentation_delay: seg * 2,
        min_buffer_time: seg,
        max_segment_duration: seg,
        // Absolute under the CDN base (the player may come from another origin), else the
        // node's own path.
        utc_timing: Some(dash::UtcTiming::http_iso(
            media
                .config
                .url_base
                .as_deref()
                .map_or_else(|| "/v1/time".to_owned(), |b| format!("{b}/v1/time")),
        )),
        base_url: media.stream_url(TrackFormat::Cmaf).map(|d| d + "/"),
        ended,
        adaptation_sets: sets,
    };
    let mut out = String::with_capacity(4096);
    if let Err(error) = dash::render_mpd(&m, &mut out) {
        tracing::error!(%error, "MPD rejected");
        return None;
    }
    Some(Bytes::from(out))
}
