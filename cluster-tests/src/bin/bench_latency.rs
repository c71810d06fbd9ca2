//! `bench_latency`: how long a frame takes from the publisher's socket to a viewer.
//!
//! Publishes a pre-encoded FLV file (made by `scripts/bench-latency` with ffmpeg) over RTMP at
//! real-time pace with the load generator's RTMP publisher (rml_rtmp's client session), and
//! records when each video frame was written to the socket. Meanwhile it follows the stream like a player:
//! - LL-HLS (CMAF): blocking playlist reloads (`_HLS_msn`/`_HLS_part`) on the `--rendition`
//!   rendition (default `source`), fetching each new part; a part's frames are read from its `tfdt`/`trun`.
//! - HLS (MPEG-TS): playlist polling every 20 ms, fetching each new segment; a segment's frames
//!   are the span of its EXTINF from the stream start.
//!
//! For every frame: latency = (time the part/segment holding it was fully fetched) - (time the
//! frame was written). Prints one JSON object with p50/p95 per format and the time from the
//! RTMP connect to the first playable master + media playlist.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use cluster_tests::load::publish::{read_flv, RtmpPublisher};
use cluster_tests::try_wait_every;
use hivecast_proto::flv::file::TAG_VIDEO;
use serde_json::json;

/// (tfdt, sum of sample durations) of the first traf of a CMAF chunk.
fn part_span(b: &[u8]) -> Option<(u64, u64)> {
    fn boxes(b: &[u8]) -> impl Iterator<Item = (&[u8; 4], &[u8])> {
        let mut pos = 0;
        std::iter::from_fn(move || {
            if pos + 8 > b.len() {
                return None;
            }
            let size = u32::from_be_bytes(b[pos..pos + 4].try_into().ok()?) as usize;
            if size < 8 || pos + size > b.len() {
                return None;
            }
            let kind: &[u8; 4] = b[pos + 4..pos + 8].try_into().ok()?;
            let body = &b[pos + 8..pos + size];
            pos += size;
            Some((kind, body))
        })
    }
    let moof = boxes(b).find(|(k, _)| *k == b"moof")?.1;
    let traf = boxes(moof).find(|(k, _)| *k == b"traf")?.1;
    let mut tfdt = None;
    let mut total = 0u64;
    let mut default_dur = 0u32;
    for (k, body) in boxes(traf) {
        match k {
            b"tfhd" => {
                let flags = u32::from_be_bytes([0, body[1], body[2], body[3]]);
                let mut p = 8;
                if flags & 0x1 != 0 {
                    p += 8;
                }
                if flags & 0x2 != 0 {
                    p += 4;
                }
                if flags & 0x8 != 0 {
                    default_dur = u32::from_be_bytes(body.get(p..p + 4)?.try_into().ok()?);
                }
            }
            b"tfdt" => {
                tfdt = Some(if body[0] == 1 {
                    u64::from_be_bytes(body.get(4..12)?.try_into().ok()?)
                } else {
                    u64::from(u32::from_be_bytes(body.get(4..8)?.try_into().ok()?))
                });
            }
            b"trun" => {
                let flags = u32::from_be_bytes([0, body[1], body[2], body[3]]);
                let count = u32::from_be_bytes(body.get(4..8)?.try_into().ok()?);
                let mut p = 8;
                if flags & 0x1 != 0 {
                    p += 4;
                }
                if flags & 0x4 != 0 {
                    p += 4;
                }
                let per = [0x100, 0x200, 0x400, 0x800]
                    .iter()
                    .filter(|f| flags & **f != 0)
                    .count()
                    * 4;
                for _ in 0..count {
                    let d = if flags & 0x100 != 0 {
                        u32::from_be_bytes(body.get(p..p + 4)?.try_into().ok()?)
                    } else {
                        default_dur
                    };
                    total += u64::from(d);
                    p += per;
                }
            }
            _ => {}
        }
    }
    Some((tfdt?, total))
}

fn percentile(v: &mut [f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    Some((v[i] * 10.0).round() / 10.0)
}

/// dts (90 kHz, from the first keyframe) -> when that frame was written.
type Sent = Arc<Mutex<HashMap<i64, Instant>>>;

/// Latencies of the frames written at or after `from` (to leave out the start-up, where frames
/// wait for the first complete segment).
fn latencies(sent: &Sent, spans: &[(u64, u64, Instant)], from: Option<Instant>) -> Vec<f64> {
    let sent = sent.lock().unwrap();
    let mut out = Vec::new();
    for (start, dur, at) in spans {
        for (dts, t) in sent.iter() {
            let d = *dts as u64;
            if from.is_some_and(|f| *t < f) {
                continue;
            }
            if *dts >= 0 && d >= *start && d < start + dur {
                out.push(at.saturating_duration_since(*t).as_secs_f64() * 1000.0);
            }
        }
    }
    out
}

async fn follow_cmaf(
    http: reqwest::Client,
    base: String,
    rendition: String,
    until: Instant,
) -> Vec<(u64, u64, Instant)> {
    let mut spans = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let url = format!("{base}/{rendition}/index.m3u8");
    let mut next: Option<(u64, u64)> = None;
    while Instant::now() < until {
        let q = match next {
            Some((m, p)) => format!("{url}?_HLS_msn={m}&_HLS_part={p}"),
            None => url.clone(),
        };
        let r = match http.get(&q).send().await {
            Ok(r) if r.status().is_success() => r,
            _ => {
                // No playlist (yet): wait for one, then start over with a plain reload.
                if !playlist_exists(&http, &url, until).await {
                    break;
                }
                next = None;
                continue;
            }
        };
        let text = r.text().await.unwrap_or_default();
        let mut last: Option<(u64, u64)> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("#EXT-X-PART:") {
                let Some(uri) = rest
                    .split("URI=\"")
                    .nth(1)
                    .and_then(|s| s.split('"').next())
                else {
                    continue;
                };
                let stem = uri.trim_end_matches(".m4s");
                let mut it = stem.split(['-', '.']);
                let (_, m, p) = (it.next(), it.next(), it.next());
                let (Some(m), Some(p)) = (
                    m.and_then(|x| x.parse().ok()),
                    p.and_then(|x| x.parse().ok()),
                ) else {
                    continue;
                };
                last = Some((m, p));
                if seen.insert(uri.to_owned()) {
                    if let Ok(pr) = http.get(format!("{base}/{rendition}/{uri}")).send().await {
                        if let Ok(body) = pr.bytes().await {
                            let at = Instant::now();
                            if let Some((t, d)) = part_span(&body) {
                                spans.push((t, d, at));
                            }
                        }
                    }
                }
            }
        }
        next = last.map(|(m, p)| (m, p + 1));
        if text.contains("#EXT-X-ENDLIST") {
            break;
        }
    }
    spans
}

async fn follow_ts(
    http: reqwest::Client,
    base: String,
    rendition: String,
    until: Instant,
) -> Vec<(u64, u64, Instant)> {
    let mut spans = Vec::new();
    let mut starts: HashMap<u64, u64> = HashMap::new();
    starts.insert(0, 0);
    let url = format!("{base}/{rendition}/index.m3u8");
    while Instant::now() < until {
        let Ok(r) = http.get(&url).send().await else {
            continue;
        };
        let text = if r.status().is_success() {
            r.text().await.unwrap_or_default()
        } else {
            String::new()
        };
        let mut dur: f64 = 0.0;
        for line in text.lines() {
            if let Some(d) = line.strip_prefix("#EXTINF:") {
                dur = d
                    .trim_end_matches(',')
                    .split(',')
                    .next()
                    .and_then(|x| x.parse().ok())
                    .unwrap_or(0.0);
            } else if line.ends_with(".ts") {
                let msn: u64 = line
                    .trim_end_matches(".ts")
                    .split('-')
                    .nth(1)
                    .and_then(|x| x.parse().ok())
                    .unwrap_or(0);
                let d90 = (dur * 90_000.0).round() as u64;
                let Some(start) = starts.get(&msn).copied() else {
                    continue;
                };
                if starts.contains_key(&(msn + 1)) {
                    continue; // already fetched
                }
                if http
                    .get(format!("{base}/{rendition}/{line}"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
                {
                    spans.push((start, d90, Instant::now()));
                    starts.insert(msn + 1, start + d90);
                }
            }
        }
        if text.contains("#EXT-X-ENDLIST") {
            break;
        }
        // A legacy HLS player polls its playlist; 20 ms is the measurement's resolution.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    spans
}

async fn first_playable(
    http: reqwest::Client,
    url: String,
    media: String,
    t0: Instant,
) -> Option<f64> {
    let ok = |r: reqwest::Result<reqwest::Response>| r.is_ok_and(|r| r.status().is_success());
    // The measured quantity is when polling first succeeds; 10 ms is its resolution.
    let deadline = Duration::from_secs(30).saturating_sub(t0.elapsed());
    try_wait_every(Duration::from_millis(10), deadline, async || {
        (ok(http.get(&url).send().await) && ok(http.get(&media).send().await))
            .then(|| t0.elapsed().as_secs_f64() * 1000.0)
    })
    .await
    .ok()
}

/// Wait (polling like a player, every 20 ms) until `url` answers 200, at the latest until
/// `until`: before the first segment a playlist is 404 and cannot block.
async fn playlist_exists(http: &reqwest::Client, url: &str, until: Instant) -> bool {
    let deadline = until.saturating_duration_since(Instant::now());
    try_wait_every(Duration::from_millis(20), deadline, async || {
        http.get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
            .then_some(())
    })
    .await
    .is_ok()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
            .with_context(|| format!("missing {name}"))
    };
    let rtmp_addr = arg("--rtmp-addr")?; // 127.0.0.1:1935
    let key = arg("--key")?;
    let http_base = arg("--http")?; // http://127.0.0.1:8080
    let stream = arg("--stream")?;
    let flv = arg("--flv")?;
    // The rendition followed (default `source`; a ladder rung measures the transcoder's latency).
    let rendition = arg("--rendition").unwrap_or_else(|_| "source".to_owned());
    let tags = read_flv(std::path::Path::new(&flv))?;
    let media_secs = tags.last().map_or(0, |t| t.timestamp_ms) as f64 / 1000.0;

    let t0 = Instant::now();
    let mut publisher = RtmpPublisher::connect(&rtmp_addr, &key, Duration::from_secs(10)).await?;

    let http = reqwest::Client::new();
    let cmaf_base = format!("{http_base}/cmaf/{stream}");
    let hls_base = format!("{http_base}/hls/{stream}");
    let until = Instant::now() + Duration::from_secs_f64(media_secs + 10.0);
    // Followed in this task, beside the publisher: their waits use `try_wait_every`, whose
    // async closures make the futures unfit for `tokio::spawn`.
    let first_ll = first_playable(
        http.clone(),
        format!("{cmaf_base}/master.m3u8"),
        format!("{cmaf_base}/{rendition}/index.m3u8"),
        t0,
    );
    let first_hls = first_playable(
        http.clone(),
        format!("{hls_base}/master.m3u8"),
        format!("{hls_base}/{rendition}/index.m3u8"),
        t0,
    );
    let cmaf = follow_cmaf(http.clone(), cmaf_base, rendition.clone(), until);
    let ts = tokio::spawn(follow_ts(http.clone(), hls_base, rendition.clone(), until));

    let sent: Sent = Arc::new(Mutex::new(HashMap::new()));
    let base_ts = tags
        .iter()
        .find(|t| {
            t.tag_type == TAG_VIDEO && t.data.len() > 1 && t.data[0] >> 4 == 1 && t.data[1] == 1
        })
        .map_or(0, |t| t.timestamp_ms);
    let publish = async {
        let start = Instant::now();
        for tag in &tags {
            let due = start + Duration::from_millis(u64::from(tag.timestamp_ms));
            tokio::time::sleep_until(due.into()).await;
            publisher.send(tag, tag.timestamp_ms).await?;
            if tag.tag_type == TAG_VIDEO && tag.data.len() > 1 && tag.data[1] == 1 {
                let dts = (i64::from(tag.timestamp_ms) - i64::from(base_ts)) * 90;
                sent.lock().unwrap().insert(dts, Instant::now());
            }
        }
        publisher.stop().await
    };
    let (published, first_ll, first_hls, cmaf_spans) =
        tokio::join!(publish, first_ll, first_hls, cmaf);
    published?;
    let ts_spans = ts.await?;
    let after = |ms: Option<f64>| ms.map(|ms| t0 + Duration::from_secs_f64(ms / 1000.0));
    let mut ll = latencies(&sent, &cmaf_spans, None);
    let mut hls = latencies(&sent, &ts_spans, None);
    let mut ll_steady = latencies(&sent, &cmaf_spans, after(first_ll));
    let mut hls_steady = latencies(&sent, &ts_spans, after(first_hls));
    let followed = json!({
        "ll_hls_part": {"frames": ll.len(), "p50_ms": percentile(&mut ll, 0.5), "p95_ms": percentile(&mut ll, 0.95), "parts": cmaf_spans.len(),
            "steady": {"frames": ll_steady.len(), "p50_ms": percentile(&mut ll_steady, 0.5), "p95_ms": percentile(&mut ll_steady, 0.95)}},
        "hls_ts_segment": {"frames": hls.len(), "p50_ms": percentile(&mut hls, 0.5), "p95_ms": percentile(&mut hls, 0.95), "segments": ts_spans.len(),
            "steady": {"frames": hls_steady.len(), "p50_ms": percentile(&mut hls_steady, 0.5), "p95_ms": percentile(&mut hls_steady, 0.95)}},
    });
    let mut renditions = serde_json::Map::new();
    renditions.insert(rendition.clone(), followed);
    let out = json!({
        "bench": "latency",
        "rendition": rendition,
        "source": {"file": flv, "media_seconds": media_secs, "video_frames": sent.lock().unwrap().len()},
        "renditions": renditions,
        "first_playable_ms": {"ll_hls": first_ll, "hls_ts": first_hls},
        "note": "latency = part/segment fully fetched by a client - frame written to the RTMP socket; 'steady' leaves out frames written before the first playable playlist",
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
