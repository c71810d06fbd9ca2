//! Replication of a session's media: the origin's change feed and its idempotent replay on an
//! edge.
//!
//! Every writer call the packagers make (and the session-level setters) is published, after it
//! took effect, as a [`MediaOp`] on the session's bounded broadcast feed. An edge that wants the
//! session:
//!
//! 1. subscribes with [`StreamMedia::follow`] **first**,
//! 2. takes [`StreamMedia::snapshot_ops`] and applies them with [`StreamMedia::apply`] to an
//!    empty [`StreamMedia`] created with the origin's name, epoch and [`MediaConfig`],
//! 3. applies every op the feed delivers, in order.
//!
//! Ops already covered by the snapshot are recognised by their MSN and part index and skipped,
//! so the overlap needs no bookkeeping. A follower that falls [`FEED_CAPACITY`] ops behind gets
//! `RecvError::Lagged`: it subscribes again and applies a new snapshot onto the same replica (a
//! replica's segments that the new snapshot still lists are kept; if it missed segments the
//! origin no longer holds, its older segments are dropped so MSNs stay consecutive).
//!
//! The replica ends with the origin's playlists, init segments, parts and segments, byte for
//! byte. Two things settle only with later ops: `EXT-X-RENDITION-REPORT`s (and the MPD), which
//! show the other tracks' positions as of the moment each playlist was rendered; and, during the
//! overlap with a snapshot, a re-applied older `Init` is briefly visible if the origin replaced
//! the init segment meanwhile (the newer one follows on the feed).
//!
//! [`MediaConfig`]: super::MediaConfig

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::broadcast;

use super::track::{Part, TrackFormat, TrackInfo, TrackKind, TrackStore};
use super::StreamMedia;
use crate::types::RenditionId;

/// Ops a session's feed buffers for its slowest follower. A follower further behind gets
/// `RecvError::Lagged` and must take a new snapshot. (A stalled follower keeps up to this many
/// ops, with their `Bytes`, alive: drop followers that stop reading.)
pub const FEED_CAPACITY: usize = 4096;

/// A snapshot re-creates at most this many consecutive segments that the origin dropped as empty
/// (so the replica's MSNs match); a longer run makes the replica drop its older segments instead.
const MAX_DROPPED_RUN: u64 = 64;

/// One change to a session's media, as the packagers made it (origin) or as an edge replays it.
#[derive(Debug, Clone)]
pub enum MediaOp {
    /// The session's video renditions in master-playlist order (StreamMedia::set_video_renditions).
    Renditions(Vec<RenditionId>),
    /// Wall clock of media time zero (StreamMedia::set_start_wall_ms).
    StartWall(i64),
    /// A track was created (StreamMedia::track).
    Track {
        /// Its format.
        format: TrackFormat,
        /// Video or audio.
        kind: TrackKind,
        /// Its rendition.
        rendition: RenditionId,
    },
    /// TrackStore::set_init.
    Init {
        /// The track's format.
        format: TrackFormat,
        /// The track's rendition.
        rendition: RenditionId,
        /// The init segment (CMAF).
        init: Option<Bytes>,
        /// The track description.
        info: TrackInfo,
    },
    /// TrackStore::begin_segment (with the msn it returned).
    Begin {
        /// The track's format.
        format: TrackFormat,
        /// The track's rendition.
        rendition: RenditionId,
        /// The new segment's media sequence number.
        msn: u64,
        /// Its start, track timescale.
        start: u64,
        /// Its program date-time, Unix ms.
        pdt_ms: i64,
    },
    /// TrackStore::push_part into segment `msn` (part.index is its index in the segment).
    Part {
        /// The track's format.
        format: TrackFormat,
        /// The track's rendition.
        rendition: RenditionId,
        /// The segment it belongs to.
        msn: u64,
        /// The part.
        part: Part,
    },
    /// TrackStore::finish_segment of segment `msn`; `data` is the TS segment (None for CMAF,
    /// whose bytes are the parts).
    Finish {
        /// The track's format.
        format: TrackFormat,
        /// The track's rendition.
        rendition: RenditionId,
        /// The segment.
        msn: u64,
        /// Its end, track timescale.
        end: u64,
        /// The whole segment (TS).
        data: Option<Bytes>,
    },
    /// Snapshot only (the origin never sends it on the feed): the track's measurements so far,
    /// which also cover segments that left the ring. They decide EXT-X-TARGETDURATION (longest
    /// segment ever) and the BANDWIDTH attributes; without this op the replica measures only
    /// the segments the snapshot still lists. Comes after the track's complete segments.
    Stats {
        /// The track's format.
        format: TrackFormat,
        /// The track's rendition.
        rendition: RenditionId,
        /// The measurements.
        stats: TrackStats,
    },
    /// StreamMedia::end (publisher gone; ENDLIST).
    End,
}

/// A track's measurements over every segment it completed (see [`MediaOp::Stats`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackStats {
    /// Longest segment, seconds (EXT-X-TARGETDURATION).
    pub max_segment_duration: f64,
    /// Highest per-segment bitrate, bit/s (BANDWIDTH).
    pub peak_bps: u64,
    /// Bytes of all segments (AVERAGE-BANDWIDTH).
    pub total_bytes: u64,
    /// Seconds of all segments (AVERAGE-BANDWIDTH).
    pub total_seconds: f64,
}

/// Why an op cannot be applied on a replica.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The op is for a track that no `Track` op created.
    #[error(
        "no {format:?} track for rendition {rendition}: an op for it came before the Track op \
         that creates it (ops lost or reordered; take a new snapshot)"
    )]
    UnknownTrack {
        /// The op's format.
        format: TrackFormat,
        /// The op's rendition.
        rendition: RenditionId,
    },
    /// A `Track` op names an existing track with another kind.
    #[error(
        "the {format:?} track of rendition {rendition} is {existing:?}, the op says {requested:?}"
    )]
    KindMismatch {
        /// The track's format.
        format: TrackFormat,
        /// The track's rendition.
        rendition: RenditionId,
        /// The replica's track kind.
        existing: TrackKind,
        /// The op's kind.
        requested: TrackKind,
    },
}

/// Publish an op (built only if someone follows). Errors are normal: nobody follows.
pub(crate) fn emit(feed: &broadcast::Sender<MediaOp>, op: impl FnOnce() -> MediaOp) {
    if feed.receiver_count() > 0 {
        let _ = feed.send(op());
    }
}

impl StreamMedia {
    /// Follow this session's changes from now on. Bounded (tokio broadcast, capacity
    /// [`FEED_CAPACITY`] ops): a follower that falls that far behind gets `RecvError::Lagged` and
    /// must resubscribe (snapshot again).
    pub fn follow(&self) -> broadcast::Receiver<MediaOp> {
        self.feed.subscribe()
    }

    /// The ops that rebuild the current state on an empty replica, in order: Renditions (if
    /// decided), StartWall (if set), then per track (CMAF tracks in order, then TS tracks):
    /// Track, Init (if set), for each retained complete segment Begin + its Parts + Finish (TS:
    /// with its data), Stats (if it has complete segments), then the open segment's Begin +
    /// Parts so far; finally End if ended. Segments the origin dropped as empty between them
    /// (or after the last one) appear as a Begin + Finish of zero duration, so the replica's
    /// next MSN matches. Call [`Self::follow`] BEFORE this: ops that arrive on the feed and are
    /// already covered by the snapshot are skipped by [`Self::apply`] (idempotent).
    pub fn snapshot_ops(&self) -> Vec<MediaOp> {
        let mut ops = Vec::new();
        if let Some(ids) = self.video_renditions() {
            ops.push(MediaOp::Renditions(ids));
        }
        if let Some(ms) = self.start_wall_ms() {
            ops.push(MediaOp::StartWall(ms));
        }
        for t in self.cmaf_tracks().iter().chain(self.ts_tracks().iter()) {
            snapshot_track(t, &mut ops);
        }
        if self.is_ended() {
            ops.push(MediaOp::End);
        }
        ops
    }

    /// Apply one op on a replica, exactly as the packager would have done it, including
    /// re-rendering the track's playlist after Init/Begin/Part/Finish/Stats and End, and the
    /// MPD after a CMAF Finish or Stats and after End, so HTTP handlers and blocking reloads work
    /// unchanged on the edge. Idempotent: a Begin for an msn below the track's next msn, a Part
    /// whose index is not the next one of the open segment `msn`, a Finish for a segment that is
    /// not the open one, are ignored (Ok). A Begin for msn >= next msn while another segment is
    /// open drops that open segment (it will never complete here) and opens the new one, with
    /// next_msn = msn + 1; when that loses segments (an open one dropped, or msn above the next
    /// msn), the track's complete segments are dropped too, since a playlist's MSNs must be
    /// consecutive. Applied ops go out on this replica's own feed.
    pub fn apply(self: &Arc<Self>, op: MediaOp) -> Result<(), ReplicaError> {
        match op {
            MediaOp::Renditions(ids) => self.set_video_renditions(ids),
            MediaOp::StartWall(ms) => self.set_start_wall_ms(ms),
            MediaOp::Track {
                format,
                kind,
                rendition,
            } => {
                let t = self.track(rendition, format, kind);
                if t.kind != kind {
                    return Err(ReplicaError::KindMismatch {
                        format,
                        rendition: t.rendition.clone(),
                        existing: t.kind,
                        requested: kind,
                    });
                }
            }
            MediaOp::Init {
                format,
                rendition,
                init,
                info,
            } => {
                let t = self.replica_track(format, rendition)?;
                t.set_init(init, info);
                self.render(&t);
            }
            MediaOp::Begin {
                format,
                rendition,
                msn,
                start,
                pdt_ms,
            } => {
                let t = self.replica_track(format, rendition)?;
                if t.replay_begin(msn, start, pdt_ms) {
                    self.render(&t);
                }
            }
            MediaOp::Part {
                format,
                rendition,
                msn,
                part,
            } => {
                let t = self.replica_track(format, rendition)?;
                if t.replay_part(msn, part) {
                    self.render(&t);
                }
            }
            MediaOp::Finish {
                format,
                rendition,
                msn,
                end,
                data,
            } => {
                let t = self.replica_track(format, rendition)?;
                if t.replay_finish(msn, end, data) {
                    self.render(&t);
                    if format == TrackFormat::Cmaf {
                        self.render_mpd();
                    }
                }
            }
            MediaOp::Stats {
                format,
                rendition,
                stats,
            } => {
                let t = self.replica_track(format, rendition)?;
                t.replay_stats(stats);
                self.render(&t);
                if format == TrackFormat::Cmaf {
                    self.render_mpd();
                }
            }
            MediaOp::End => self.end(),
        }
        Ok(())
    }

    fn replica_track(
        &self,
        format: TrackFormat,
        rendition: RenditionId,
    ) -> Result<Arc<TrackStore>, ReplicaError> {
        self.find(format, rendition.as_str())
            .ok_or(ReplicaError::UnknownTrack { format, rendition })
    }
}

/// Append the ops that rebuild `t` (read under one lock, so they are consistent).
fn snapshot_track(t: &TrackStore, ops: &mut Vec<MediaOp>) {
    let format = t.format;
    let rendition = &t.rendition;
    ops.push(MediaOp::Track {
        format,
        kind: t.kind,
        rendition: rendition.clone(),
    });
    let g = t.read();
    if let Some(info) = &g.info {
        ops.push(MediaOp::Init {
            format,
            rendition: rendition.clone(),
            init: g.init.clone(),
            info: info.clone(),
        });
    }
    let mut prev: Option<u64> = None;
    for s in &g.segments {
        if let Some(p) = prev {
            dropped_segments(t, ops, p + 1, s.msn);
        }
        ops.push(MediaOp::Begin {
            format,
            rendition: rendition.clone(),
            msn: s.msn,
            start: s.start,
            pdt_ms: s.pdt_ms,
        });
        for p in &s.parts {
            ops.push(MediaOp::Part {
                format,
                rendition: rendition.clone(),
                msn: s.msn,
                part: p.clone(),
            });
        }
        // The packagers pass the bytes for TS and None for CMAF (bytes = the parts); send the
        // bytes whenever the parts would not rebuild them.
        let parts_len: usize = s.parts.iter().map(|p| p.data.len()).sum();
        let data = (s.parts.is_empty() || parts_len != s.data.len()).then(|| s.data.clone());
        ops.push(MediaOp::Finish {
            format,
            rendition: rendition.clone(),
            msn: s.msn,
            end: s.start + s.duration_ticks,
            data,
        });
        prev = Some(s.msn);
    }
    if !g.segments.is_empty() {
        ops.push(MediaOp::Stats {
            format,
            rendition: rendition.clone(),
            stats: TrackStore::stats(&g),
        });
    }
    match &g.open {
        Some(open) => {
            if let Some(p) = prev {
                dropped_segments(t, ops, p + 1, open.msn);
            }
            ops.push(MediaOp::Begin {
                format,
                rendition: rendition.clone(),
                msn: open.msn,
                start: open.start,
                pdt_ms: open.pdt_ms,
            });
            for p in &open.parts {
                ops.push(MediaOp::Part {
                    format,
                    rendition: rendition.clone(),
                    msn: open.msn,
                    part: p.clone(),
                });
            }
        }
        None => {
            let from = prev.map_or(t.config.msn_base, |p| p + 1);
            dropped_segments(t, ops, from, g.next_msn);
        }
    }
}

/// Segments `from..to` were opened and then dropped (empty, or still open at the end): replay
/// each as a zero-duration Begin + Finish, which a replica drops the same way.
fn dropped_segments(t: &TrackStore, ops: &mut Vec<MediaOp>, from: u64, to: u64) {
    for msn in from.max(to.saturating_sub(MAX_DROPPED_RUN))..to {
        ops.push(MediaOp::Begin {
            format: t.format,
            rendition: t.rendition.clone(),
            msn,
            start: 0,
            pdt_ms: 0,
        });
        ops.push(MediaOp::Finish {
            format: t.format,
            rendition: t.rendition.clone(),
            msn,
            end: 0,
            data: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{master_playlist, MediaConfig, PartLookup};
    use crate::types::{Epoch, StreamName};
    use std::time::Duration;
    use tokio::sync::broadcast::error::TryRecvError;

    const START_WALL: i64 = 1_700_000_000_000;

    fn config() -> MediaConfig {
        MediaConfig {
            segment_target: Duration::from_secs(1),
            part_target: Duration::from_millis(200),
            window_segments: 3,
            ..MediaConfig::default()
        }
    }

    fn session(config: MediaConfig) -> Arc<StreamMedia> {
        StreamMedia::new(StreamName::new("live").unwrap(), Epoch(7), config)
    }

    /// An empty replica of `origin` (same name, epoch and config, as the edge creates it).
    fn replica_of(origin: &StreamMedia) -> Arc<StreamMedia> {
        StreamMedia::new(origin.name.clone(), origin.epoch, origin.config.clone())
    }

    fn video_info() -> TrackInfo {
        TrackInfo {
            codec: "avc1.64001f".to_owned(),
            width: Some(1280),
            height: Some(720),
            frame_rate: Some(30.0),
            sample_rate: None,
            channels: None,
            timescale: 90_000,
            declared_bandwidth: 3_000_000,
        }
    }

    fn audio_info() -> TrackInfo {
        TrackInfo {
            codec: "mp4a.40.2".to_owned(),
            width: None,
            height: None,
            frame_rate: None,
            sample_rate: Some(48_000),
            channels: Some(2),
            timescale: 48_000,
            declared_bandwidth: 128_000,
        }
    }

    /// Drives a session the way the packagers do: CMAF video `source`, TS video `source` and the
    /// CMAF audio track, 0.2 s parts; the first segment is 3 s (15 parts, and fat, so it sets
    /// TARGETDURATION and the peak bitrate long after it left the ring), the others 1 s.
    struct Origin {
        media: Arc<StreamMedia>,
        video: Arc<TrackStore>,
        ts: Arc<TrackStore>,
        audio: Arc<TrackStore>,
        /// Parts pushed so far (0.2 s each).
        tick: u64,
        in_segment: u64,
        open: bool,
        ts_buf: Vec<u8>,
    }

    impl Origin {
        fn new(media: Arc<StreamMedia>) -> Self {
            media.set_video_renditions(vec![RenditionId::source()]);
            let video = media.track(RenditionId::source(), TrackFormat::Cmaf, TrackKind::Video);
            let ts = media.track(RenditionId::source(), TrackFormat::Ts, TrackKind::Video);
            video.set_init(Some(Bytes::from_static(b"init-video")), video_info());
            ts.set_init(None, video_info());
            let audio = media.track(RenditionId::audio(), TrackFormat::Cmaf, TrackKind::Audio);
            audio.set_init(Some(Bytes::from_static(b"init-audio")), audio_info());
            media.set_start_wall_ms(START_WALL);
            Self {
                media,
                video,
                ts,
                audio,
                tick: 0,
                in_segment: 0,
                open: false,
                ts_buf: Vec::new(),
            }
        }

        fn segment_parts(&self) -> u64 {
            if self.video.next_msn() == self.media.config.msn_base + 1 {
                15
            } else {
                5
            }
        }

        /// A segment boundary at the current tick, as the video and audio packagers cut it.
        fn cut(&mut self) {
            let (v, a) = (self.tick * 18_000, self.tick * 9_600);
            let pdt = START_WALL + self.tick as i64 * 200;
            let m = &self.media;
            if self.open {
                self.video.finish_segment(v, None);
            }
            self.video.begin_segment(v, pdt);
            m.render(&self.video);
            m.render_mpd();
            if self.open {
                let data = Bytes::from(std::mem::take(&mut self.ts_buf));
                self.ts.finish_segment(v, Some(data));
            }
            self.ts.begin_segment(v, pdt);
            self.ts_buf.extend_from_slice(b"PAT+PMT;");
            m.render(&self.ts);
            if self.open {
                self.audio.finish_segment(a, None);
            }
            self.audio.begin_segment(a, pdt);
            m.render(&self.audio);
            m.render_mpd();
            self.open = true;
            self.in_segment = 0;
        }

        /// One 0.2 s part on every track (cutting a segment first when it is due).
        fn part(&mut self) {
            if !self.open || self.in_segment == self.segment_parts() {
                self.cut();
            }
            let fat = if self.video.next_msn() == self.media.config.msn_base + 1 {
                40
            } else {
                4
            };
            let t = self.tick;
            let m = &self.media;
            let v = Bytes::from(format!("v{t:05};").repeat(fat));
            self.video.push_part(0.2, self.in_segment == 0, v);
            m.render(&self.video);
            self.audio
                .push_part(0.2, true, Bytes::from(format!("a{t:05};").repeat(fat / 4)));
            m.render(&self.audio);
            self.ts_buf
                .extend_from_slice(format!("ts{t:05};").repeat(fat).as_bytes());
            self.tick += 1;
            self.in_segment += 1;
        }

        fn parts(&mut self, n: u64) {
            for _ in 0..n {
                self.part();
            }
        }

        /// The packagers' End, then the supervisor's StreamMedia::end.
        fn end(&mut self) {
            let (v, a) = (self.tick * 18_000, self.tick * 9_600);
            let m = &self.media;
            if std::mem::take(&mut self.open) {
                self.video.finish_segment(v, None);
                let data = Bytes::from(std::mem::take(&mut self.ts_buf));
                self.ts.finish_segment(v, Some(data));
            }
            self.video.end();
            self.ts.end();
            m.render(&self.video);
            m.render(&self.ts);
            m.render_mpd();
            self.audio.finish_segment(a, None);
            self.audio.end();
            m.render(&self.audio);
            m.render_mpd();
            m.end();
        }
    }

    /// Apply everything the feed holds now.
    fn drain(rx: &mut broadcast::Receiver<MediaOp>, replica: &Arc<StreamMedia>) -> usize {
        let mut n = 0;
        loop {
            match rx.try_recv() {
                Ok(op) => {
                    replica.apply(op).unwrap();
                    n += 1;
                }
                Err(TryRecvError::Empty) => return n,
                Err(e) => panic!("feed: {e}"),
            }
        }
    }

    fn text(b: Option<Bytes>) -> String {
        b.map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|| "<none>".to_owned())
    }

    fn assert_parts_eq(o: &[Part], r: &[Part]) {
        assert_eq!(o.len(), r.len());
        for (o, r) in o.iter().zip(r) {
            assert_eq!(
                (o.index, o.duration, o.independent, &o.data),
                (r.index, r.duration, r.independent, &r.data)
            );
        }
    }

    fn part_lookup(l: PartLookup) -> Option<Option<Bytes>> {
        match l {
            PartLookup::Found(b) => Some(Some(b)),
            PartLookup::Pending => Some(None),
            PartLookup::Missing => None,
        }
    }

    /// Everything a viewer (or a downstream follower) can see is the same.
    fn assert_same(origin: &StreamMedia, replica: &StreamMedia) {
        assert_eq!(origin.video_renditions(), replica.video_renditions());
        assert_eq!(origin.start_wall_ms(), replica.start_wall_ms());
        assert_eq!(origin.is_ended(), replica.is_ended());
        assert_eq!(text(origin.mpd()), text(replica.mpd()));
        for format in [TrackFormat::Cmaf, TrackFormat::Ts] {
            assert_eq!(
                text(master_playlist(origin, format)),
                text(master_playlist(replica, format))
            );
            let (ot, rt) = match format {
                TrackFormat::Cmaf => (origin.cmaf_tracks(), replica.cmaf_tracks()),
                TrackFormat::Ts => (origin.ts_tracks(), replica.ts_tracks()),
            };
            assert_eq!(ot.len(), rt.len());
            for (o, r) in ot.iter().zip(&rt) {
                let what = format!("{format:?} {}", o.rendition);
                assert_eq!((&o.rendition, o.kind), (&r.rendition, r.kind));
                assert_eq!(text(o.playlist()), text(r.playlist()), "{what}");
                assert_eq!(o.init(), r.init(), "{what}");
                assert_eq!(o.info(), r.info(), "{what}");
                assert_eq!(o.next_msn(), r.next_msn(), "{what}");
                assert_eq!(o.is_ended(), r.is_ended(), "{what}");
                assert_eq!(o.last_position(), r.last_position(), "{what}");
                assert_eq!(o.measured_bandwidth(), r.measured_bandwidth(), "{what}");
                let (og, rg) = (o.read(), r.read());
                assert_eq!(TrackStore::stats(&og), TrackStore::stats(&rg), "{what}");
                assert_eq!(og.segments.len(), rg.segments.len(), "{what}");
                for (os, rs) in og.segments.iter().zip(&rg.segments) {
                    assert_eq!(
                        (os.msn, os.start, os.duration_ticks, os.duration, os.pdt_ms),
                        (rs.msn, rs.start, rs.duration_ticks, rs.duration, rs.pdt_ms),
                        "{what}"
                    );
                    assert_eq!(os.data, rs.data, "{what} segment {}", os.msn);
                    assert_parts_eq(&os.parts, &rs.parts);
                }
                match (&og.open, &rg.open) {
                    (None, None) => {}
                    (Some(oo), Some(ro)) => {
                        assert_eq!((oo.msn, oo.start, oo.pdt_ms), (ro.msn, ro.start, ro.pdt_ms));
                        assert_parts_eq(&oo.parts, &ro.parts);
                    }
                    (oo, ro) => panic!("{what}: open {oo:?} vs {ro:?}"),
                }
                drop((og, rg));
                // And through the readers' API, around the live edge.
                let next = o.next_msn();
                for msn in next.saturating_sub(12)..next + 2 {
                    assert_eq!(o.segment(msn), r.segment(msn), "{what} {msn}");
                    for p in 0..17 {
                        assert_eq!(
                            part_lookup(o.part(msn, p)),
                            part_lookup(r.part(msn, p)),
                            "{what} {msn}.{p}"
                        );
                        assert_eq!(o.has(msn, Some(p)), r.has(msn, Some(p)));
                    }
                    assert_eq!(o.has(msn, None), r.has(msn, None));
                }
            }
        }
    }

    fn assert_ended(media: &StreamMedia) {
        for t in media.cmaf_tracks().into_iter().chain(media.ts_tracks()) {
            let pl = text(t.playlist());
            assert!(pl.contains("#EXT-X-ENDLIST\n"), "{pl}");
        }
        assert!(text(media.mpd()).contains("mediaPresentationDuration="));
    }

    #[test]
    fn snapshot_mid_segment_then_the_feed_rebuilds_the_origin() {
        let mut o = Origin::new(session(config()));
        // The 3 s segment, eight 1 s ones, and two parts into the next.
        o.parts(15 + 8 * 5 + 2);
        let mut rx = o.media.follow();
        let replica = replica_of(&o.media);
        for op in o.media.snapshot_ops() {
            replica.apply(op).unwrap();
        }
        // The MPD (with the origin's maxSegmentDuration and bandwidths) is there at once; the
        // playlists' rendition reports settle with each track's next op.
        assert_eq!(text(o.media.mpd()), text(replica.mpd()));
        o.parts(13);
        assert!(drain(&mut rx, &replica) > 13 * 2);
        assert_same(&o.media, &replica);
        let pl = text(
            replica
                .find(TrackFormat::Cmaf, "source")
                .unwrap()
                .playlist(),
        );
        // The first (3 s) segment left the ring long ago, and still decides TARGETDURATION.
        assert!(pl.contains("#EXT-X-TARGETDURATION:3\n"), "{pl}");
        assert!(pl.contains("#EXT-X-MEDIA-SEQUENCE:8\n"), "{pl}");
        assert!(pl.contains("#EXT-X-RENDITION-REPORT:URI=\"../audio/index.m3u8\""));

        o.end();
        drain(&mut rx, &replica);
        assert_same(&o.media, &replica);
        assert_ended(&o.media);
        assert_ended(&replica);
    }

    #[test]
    fn feed_ops_covered_by_the_snapshot_are_skipped() {
        let mut o = Origin::new(session(config()));
        o.parts(20);
        let mut rx = o.media.follow();
        // These changes are on the feed and in the snapshot.
        o.parts(7);
        let snapshot = o.media.snapshot_ops();
        // These only on the feed.
        o.parts(9);
        let replica = replica_of(&o.media);
        for op in snapshot.clone() {
            replica.apply(op).unwrap();
        }
        let mut feed = Vec::new();
        while let Ok(op) = rx.try_recv() {
            feed.push(op);
        }
        for op in feed.clone() {
            replica.apply(op).unwrap();
        }
        assert_same(&o.media, &replica);

        // Every op applied twice in a row: the second changes nothing.
        let twice = replica_of(&o.media);
        for op in snapshot.iter().chain(&feed) {
            twice.apply(op.clone()).unwrap();
            twice.apply(op.clone()).unwrap();
        }
        assert_same(&o.media, &twice);
        // And the whole feed again, once it is all in: nothing moves.
        for op in feed.clone() {
            replica.apply(op).unwrap();
        }
        assert_same(&o.media, &replica);

        // Follow to the end, then replay the end again.
        o.parts(6);
        o.end();
        let mut tail = Vec::new();
        while let Ok(op) = rx.try_recv() {
            tail.push(op);
        }
        for op in tail.iter().chain(&tail) {
            replica.apply(op.clone()).unwrap();
        }
        assert_same(&o.media, &replica);
        assert_ended(&replica);
    }

    #[test]
    fn a_follower_that_does_not_read_lags_and_recovers_with_a_new_snapshot() {
        // A short ring (the replica's segments are all gone from the origin when it comes
        // back) and a long one (they are still there and the new snapshot continues them).
        for window in [3, 2_000] {
            let mut o = Origin::new(session(MediaConfig {
                window_segments: window,
                ..config()
            }));
            o.parts(8);
            let mut rx = o.media.follow();
            let replica = replica_of(&o.media);
            for op in o.media.snapshot_ops() {
                replica.apply(op).unwrap();
            }
            o.parts(2);
            drain(&mut rx, &replica);
            assert_same(&o.media, &replica);
            // At least three ops a part: far more than the feed holds.
            o.parts(FEED_CAPACITY as u64 / 2);
            match rx.try_recv() {
                Err(TryRecvError::Lagged(n)) => assert!(n > 0),
                other => panic!("expected Lagged, got {other:?}"),
            }
            // Resubscribe, snapshot again onto the same replica.
            let mut rx = o.media.follow();
            for op in o.media.snapshot_ops() {
                replica.apply(op).unwrap();
            }
            o.parts(4);
            drain(&mut rx, &replica);
            assert_same(&o.media, &replica);
            o.end();
            drain(&mut rx, &replica);
            assert_same(&o.media, &replica);
        }
    }

    #[test]
    fn begin_past_the_next_msn_opens_that_segment() {
        let mut o = Origin::new(session(config()));
        o.parts(15 + 5 + 2);
        let replica = replica_of(&o.media);
        for op in o.media.snapshot_ops() {
            replica.apply(op).unwrap();
        }
        let t = replica.find(TrackFormat::Cmaf, "source").unwrap();
        assert_eq!(t.next_msn(), 3);
        assert!(t.segment(1).is_some());
        let source = || RenditionId::source();
        let cmaf = TrackFormat::Cmaf;
        // The replica missed segments 2 (open here), 3 and 4.
        replica
            .apply(MediaOp::Begin {
                format: cmaf,
                rendition: source(),
                msn: 5,
                start: 900_000,
                pdt_ms: START_WALL + 10_000,
            })
            .unwrap();
        assert_eq!(t.next_msn(), 6);
        assert!(matches!(t.part(2, 0), PartLookup::Missing));
        assert!(matches!(t.part(5, 0), PartLookup::Pending));
        // 0 and 1 cannot be listed before 5 (MSNs in a playlist are consecutive): they are
        // gone, and the playlist waits for segment 5. (In a snapshot, the origin's complete
        // segments from 5 on follow at once.)
        assert!(t.segment(1).is_none());
        assert!(t.playlist().is_none());
        // Stale and out-of-order ops are ignored.
        for op in [
            MediaOp::Begin {
                format: cmaf,
                rendition: source(),
                msn: 4,
                start: 0,
                pdt_ms: 0,
            },
            MediaOp::Part {
                format: cmaf,
                rendition: source(),
                msn: 5,
                part: Part {
                    index: 1,
                    duration: 0.2,
                    independent: false,
                    data: Bytes::from_static(b"too early"),
                },
            },
            MediaOp::Finish {
                format: cmaf,
                rendition: source(),
                msn: 2,
                end: 1,
                data: None,
            },
        ] {
            replica.apply(op).unwrap();
        }
        assert!(matches!(t.part(5, 0), PartLookup::Pending));
        assert_eq!(t.next_msn(), 6);
        for index in 0..5 {
            replica
                .apply(MediaOp::Part {
                    format: cmaf,
                    rendition: source(),
                    msn: 5,
                    part: Part {
                        index,
                        duration: 0.2,
                        independent: index == 0,
                        data: Bytes::from(format!("p{index}")),
                    },
                })
                .unwrap();
        }
        replica
            .apply(MediaOp::Finish {
                format: cmaf,
                rendition: source(),
                msn: 5,
                end: 990_000,
                data: None,
            })
            .unwrap();
        assert_eq!(t.segment(5).as_deref(), Some(&b"p0p1p2p3p4"[..]));
        let pl = text(t.playlist());
        assert!(pl.contains("#EXT-X-MEDIA-SEQUENCE:5\n"), "{pl}");
        assert!(pl.contains("#EXTINF:1.000,\n7-5.m4s"), "{pl}");
        assert!(
            pl.contains("PRELOAD-HINT:TYPE=PART,URI=\"7-6.0.m4s\""),
            "{pl}"
        );

        // An op for a track nobody created is an error.
        let err = replica
            .apply(MediaOp::Begin {
                format: cmaf,
                rendition: RenditionId("720p".to_owned()),
                msn: 0,
                start: 0,
                pdt_ms: 0,
            })
            .unwrap_err();
        assert!(matches!(err, ReplicaError::UnknownTrack { .. }), "{err}");
        assert!(err.to_string().contains("720p"), "{err}");
    }

    #[test]
    fn an_interrupted_session_stops_hinting_but_stays_open() {
        let media = session(config());
        let mut o = Origin::new(media.clone());
        o.parts(15 + 5 + 2);
        assert!(text(o.video.playlist()).contains("#EXT-X-PRELOAD-HINT"));
        let next = o.video.next_msn();
        assert!(
            !o.video.has(next + 1, Some(0)),
            "a future part blocks while live"
        );
        media.interrupt();
        assert!(media.is_interrupted() && media.is_over() && !media.is_ended());
        for t in [&o.video, &o.audio, &o.ts] {
            let pl = text(t.playlist());
            assert!(!pl.contains("#EXT-X-PRELOAD-HINT"), "{pl}");
            assert!(!pl.contains("#EXT-X-ENDLIST"), "{pl}");
        }
        assert!(
            o.video.has(next + 1, Some(0)),
            "blocking reloads answer at once"
        );
        // A clean end afterwards still ends it.
        media.end();
        assert!(text(o.video.playlist()).contains("#EXT-X-ENDLIST"));
    }

    #[test]
    fn a_session_continues_the_previous_sessions_timeline() {
        let config = MediaConfig {
            msn_base: 40,
            discontinuity_seq: 2,
            ..config()
        };
        let media = StreamMedia::new(StreamName::new("live").unwrap(), Epoch(8), config);
        let mut rx = media.follow();
        let mut o = Origin::new(media.clone());
        assert_eq!(o.video.next_msn(), 40);
        assert!(matches!(o.video.part(40, 0), PartLookup::Pending));
        o.parts(15 + 5 + 1);
        for t in [&o.video, &o.audio, &o.ts] {
            let pl = text(t.playlist());
            assert!(pl.contains("#EXT-X-MEDIA-SEQUENCE:40\n"), "{pl}");
            assert!(pl.contains("#EXT-X-DISCONTINUITY-SEQUENCE:2\n"), "{pl}");
        }
        let pl = text(o.video.playlist());
        assert!(pl.contains("8-40.m4s") && pl.contains("8-41.m4s"), "{pl}");
        assert!(pl.contains("URI=\"8-40.0.m4s\""), "{pl}");
        assert!(
            pl.contains("PRELOAD-HINT:TYPE=PART,URI=\"8-42.1.m4s\""),
            "{pl}"
        );
        assert!(text(o.ts.playlist()).contains("8-40.ts"));
        assert!(text(media.mpd()).contains("startNumber=\"40\""));
        // The window moves on from there.
        o.parts(5 * 5);
        let pl = text(o.video.playlist());
        assert!(pl.contains("#EXT-X-MEDIA-SEQUENCE:44\n"), "{pl}");
        assert!(pl.contains("#EXT-X-DISCONTINUITY-SEQUENCE:2\n"), "{pl}");
        // A replica created with the same config follows it exactly.
        let replica = replica_of(&media);
        drain(&mut rx, &replica);
        assert_same(&media, &replica);
    }

    #[test]
    fn empty_segments_are_dropped_the_same_way() {
        let media = session(config());
        let mut rx = media.follow();
        media.set_start_wall_ms(START_WALL);
        let t = media.track(RenditionId::source(), TrackFormat::Cmaf, TrackKind::Video);
        t.set_init(Some(Bytes::from_static(b"init")), video_info());
        let segment = |start: u64, end: u64| {
            t.begin_segment(start, START_WALL);
            media.render(&t);
            t.push_part(0.2, true, Bytes::from(format!("{start}")));
            media.render(&t);
            t.finish_segment(end, None);
            media.render(&t);
            media.render_mpd();
        };
        segment(0, 90_000);
        // Opened and closed at its start: not listed, but its MSN is used up.
        t.begin_segment(90_000, START_WALL);
        t.finish_segment(90_000, None);
        media.render(&t);
        assert_eq!((t.next_msn(), t.segment(1)), (2, None));
        let followed = replica_of(&media);
        drain(&mut rx, &followed);
        assert_same(&media, &followed);
        // A snapshot taken now rebuilds the used-up MSN too.
        let from_snapshot = replica_of(&media);
        for op in media.snapshot_ops() {
            from_snapshot.apply(op).unwrap();
        }
        assert_same(&media, &from_snapshot);
        // The next segment continues after it, everywhere (the ring now skips msn 1).
        segment(90_000, 180_000);
        drain(&mut rx, &followed);
        assert_same(&media, &followed);
        let later = replica_of(&media);
        for op in media.snapshot_ops() {
            later.apply(op).unwrap();
        }
        assert_same(&media, &later);
        assert!(later
            .find(TrackFormat::Cmaf, "source")
            .unwrap()
            .segment(0)
            .is_some());
    }
}
