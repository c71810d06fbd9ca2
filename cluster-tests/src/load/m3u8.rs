//! A small, fast reader of the live playlists the load generator follows: the few tags a player
//! needs to pick its next request (sequence numbers, segment and part URIs and durations,
//! program date-time, preload hint, end). It reads what any RFC 8216bis server writes, not only
//! hivecast's; unknown tags are skipped. Strict validation is `proto::hls`'s job, not this one's.

/// A variant of a multivariant playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// `BANDWIDTH`.
    pub bandwidth: u64,
    /// The media playlist URI, as written (relative or absolute).
    pub uri: String,
}

/// The variants of a multivariant playlist, in order.
pub fn parse_master(text: &str) -> Vec<Variant> {
    let mut out = Vec::new();
    let mut pending: Option<u64> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(attrs) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            pending = attr(attrs, "BANDWIDTH")
                .and_then(|b| b.parse().ok())
                .or(Some(0));
        } else if !line.is_empty() && !line.starts_with('#') {
            if let Some(bandwidth) = pending.take() {
                out.push(Variant {
                    bandwidth,
                    uri: line.to_owned(),
                });
            }
        }
    }
    out
}

/// One segment or part of a media playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Media sequence number of the segment (of the part's segment).
    pub msn: u64,
    /// Part index within the segment; `None` for a whole segment.
    pub part: Option<u64>,
    /// URI as written.
    pub uri: String,
    /// Duration in seconds.
    pub duration: f64,
    /// Wall-clock end of the media it holds (Unix ms), when the playlist anchors its timeline
    /// with `EXT-X-PROGRAM-DATE-TIME`.
    pub end_wall_ms: Option<f64>,
    /// `INDEPENDENT=YES` (parts) — whole segments start with a keyframe.
    pub independent: bool,
}

/// What a player needs of a media playlist.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaPlaylist {
    /// `EXT-X-TARGETDURATION` in seconds.
    pub target_duration: f64,
    /// `EXT-X-PART-INF:PART-TARGET`, if low-latency.
    pub part_target: Option<f64>,
    /// Whole segments, in order.
    pub segments: Vec<Item>,
    /// Parts (of complete segments and of the one in progress), in order.
    pub parts: Vec<Item>,
    /// `EXT-X-PRELOAD-HINT TYPE=PART` URI.
    pub preload_hint: Option<String>,
    /// `EXT-X-MAP` URI (the last one).
    pub map: Option<String>,
    /// `EXT-X-ENDLIST`.
    pub ended: bool,
}

impl MediaPlaylist {
    /// The (msn, part) a blocking reload asks for next: the part after the last one listed
    /// (RFC 8216bis 6.2.5.2), or the segment after the last one without parts.
    pub fn next_blocking(&self) -> Option<(u64, u64)> {
        let last_seg = self.segments.last().map(|s| s.msn);
        match self.parts.last() {
            // The last part belongs to a complete segment: the next segment's part 0.
            Some(p) if Some(p.msn) == last_seg => Some((p.msn + 1, 0)),
            Some(p) => Some((p.msn, p.part.unwrap_or(0) + 1)),
            None => last_seg.map(|m| (m + 1, 0)),
        }
    }
}

/// Reads a media playlist.
pub fn parse_media(text: &str) -> MediaPlaylist {
    let mut p = MediaPlaylist::default();
    let mut msn: u64 = 0;
    let mut part_index: u64 = 0;
    // Wall-clock start (Unix ms) of the current segment, and of its next part.
    let mut seg_start: Option<f64> = None;
    let mut part_start: Option<f64> = None;
    let mut extinf: Option<f64> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if !line.starts_with('#') {
            let duration = extinf.take().unwrap_or(0.0);
            let end = seg_start.map(|s| s + duration * 1000.0);
            p.segments.push(Item {
                msn,
                part: None,
                uri: line.to_owned(),
                duration,
                end_wall_ms: end,
                independent: true,
            });
            msn += 1;
            part_index = 0;
            seg_start = end;
            part_start = end;
            continue;
        }
        let Some((tag, value)) = line.split_once(':').or(Some((line, ""))) else {
            continue;
        };
        match tag {
            "#EXT-X-TARGETDURATION" => p.target_duration = value.parse().unwrap_or(0.0),
            "#EXT-X-MEDIA-SEQUENCE" => msn = value.parse().unwrap_or(0),
            "#EXT-X-PART-INF" => {
                p.part_target = attr(value, "PART-TARGET").and_then(|v| v.parse().ok())
            }
            "#EXT-X-PROGRAM-DATE-TIME" => {
                seg_start = parse_rfc3339_ms(value).map(|ms| ms as f64);
                part_start = seg_start;
            }
            "#EXTINF" => extinf = value.split(',').next().and_then(|d| d.parse().ok()),
            "#EXT-X-MAP" => p.map = attr(value, "URI").map(str::to_owned),
            "#EXT-X-PART" => {
                let duration: f64 = attr(value, "DURATION")
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(0.0);
                let end = part_start.map(|s| s + duration * 1000.0);
                if let Some(uri) = attr(value, "URI") {
                    p.parts.push(Item {
                        msn,
                        part: Some(part_index),
                        uri: uri.to_owned(),
                        duration,
                        end_wall_ms: end,
                        independent: attr(value, "INDEPENDENT") == Some("YES"),
                    });
                }
                part_index += 1;
                part_start = end;
            }
            "#EXT-X-PRELOAD-HINT" if attr(value, "TYPE") == Some("PART") => {
                p.preload_hint = attr(value, "URI").map(str::to_owned)
            }
            "#EXT-X-ENDLIST" => p.ended = true,
            _ => {}
        }
    }
    p
}

/// The value of attribute `name` in an attribute list (quotes removed).
pub fn attr<'a>(list: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = list;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], q[end + 1..].trim_start_matches(','))
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v, n),
                None => (after, ""),
            }
        };
        if key.trim() == name {
            return Some(value);
        }
        rest = next;
    }
    None
}

/// `YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM|-HH:MM)` -> Unix milliseconds.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut i = 19;
    let mut ms = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let frac = s.get(start..i)?;
        let digits: String = frac.chars().chain("000".chars()).take(3).collect();
        ms = digits.parse().ok()?;
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' => 0,
        sign @ (b'+' | b'-') => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let m = oh * 60 + om;
            if *sign == b'+' {
                m
            } else {
                -m
            }
        }
        _ => return None,
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // Days from the civil date (H. Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + mi - offset_min) * 60_000 + sec * 1000 + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_what_the_server_writes() {
        for ms in [
            0i64,
            1,
            999,
            86_399_999,
            951_782_400_000,
            1_795_000_000_123,
            4_102_444_800_000,
        ] {
            let text = hivecast_proto::time::format_rfc3339_ms(ms);
            assert_eq!(parse_rfc3339_ms(&text), Some(ms), "{text}");
        }
        assert_eq!(
            parse_rfc3339_ms("1970-01-01T01:00:00.5+01:00"),
            Some(500),
            "offset and short fraction"
        );
        assert_eq!(parse_rfc3339_ms("1970-01-01 00:00:00Z"), None);
    }

    #[test]
    fn reads_a_low_latency_playlist() {
        let text = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n\
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6\n#EXT-X-PART-INF:PART-TARGET=0.2\n\
#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-MAP:URI=\"init-1.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:00:10.000Z\n\
#EXT-X-PART:DURATION=0.2,URI=\"1-7.0.m4s\",INDEPENDENT=YES\n#EXT-X-PART:DURATION=0.2,URI=\"1-7.1.m4s\"\n\
#EXTINF:0.4,\n1-7.m4s\n#EXT-X-PART:DURATION=0.2,URI=\"1-8.0.m4s\",INDEPENDENT=YES\n\
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"1-8.1.m4s\"\n";
        let p = parse_media(text);
        assert_eq!(p.target_duration, 2.0);
        assert_eq!(p.part_target, Some(0.2));
        assert_eq!(p.map.as_deref(), Some("init-1.mp4"));
        assert_eq!(p.segments.len(), 1);
        assert_eq!(p.segments[0].msn, 7);
        assert_eq!(p.segments[0].end_wall_ms, Some(10_400.0));
        assert_eq!(p.parts.len(), 3);
        assert_eq!((p.parts[2].msn, p.parts[2].part), (8, Some(0)));
        assert!(p.parts[2].independent && !p.parts[1].independent);
        assert_eq!(p.parts[2].end_wall_ms, Some(10_600.0));
        assert_eq!(p.preload_hint.as_deref(), Some("1-8.1.m4s"));
        assert_eq!(p.next_blocking(), Some((8, 1)));
        assert!(!p.ended);
    }

    #[test]
    fn reads_a_ts_playlist_and_a_master() {
        let p = parse_media(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:3\n#EXTINF:2.000,\na.ts\n#EXTINF:1.5,\nb.ts\n#EXT-X-ENDLIST\n",
        );
        assert_eq!(p.segments.iter().map(|s| s.msn).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(p.segments[1].duration, 1.5);
        assert_eq!(p.next_blocking(), Some((5, 0)));
        assert!(p.ended);
        let m = parse_master(
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=854x480\n480p/index.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=3000000\nsource/index.m3u8\n",
        );
        assert_eq!(
            m,
            [
                Variant {
                    bandwidth: 800_000,
                    uri: "480p/index.m3u8".into()
                },
                Variant {
                    bandwidth: 3_000_000,
                    uri: "source/index.m3u8".into()
                }
            ]
        );
        assert_eq!(attr("A=1,B=\"x,y\",C=3", "C"), Some("3"));
        assert_eq!(attr("A=1,B=\"x,y\",C=3", "B"), Some("x,y"));
    }
}
