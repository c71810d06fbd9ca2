//! The in-memory segment store: what viewers are served from.
//!
//! Per stream ([`StreamMedia`], one publish session = one epoch) and per rendition and format
//! ([`TrackStore`]): the init segment, a ring of recent segments and LL-HLS parts as
//! [`bytes::Bytes`], and the media playlist rendered once per new part (a [`PlaylistVersion`],
//! whose gzip form is computed at most once). HTTP handlers look a
//! track up in a concurrent map and clone the `Bytes` they need; a blocking playlist reload waits
//! on the track's `watch` channel. Nothing here is an actor: the packagers write, handlers read.
//!
//! Invariants: a track's media sequence numbers only grow (from [`MediaConfig::msn_base`], so a
//! broadcaster's next session continues the timeline); a segment's bytes never change once
//! published; URIs carry the epoch (`{epoch}-{msn}.m4s`), so names never repeat across
//! publish sessions.
//!
//! Replication: every change is also published on the session's bounded feed as a [`MediaOp`];
//! an edge node rebuilds the session from [`StreamMedia::snapshot_ops`] and then the feed
//! ([`StreamMedia::follow`]), replaying both with [`StreamMedia::apply`] (see `replica.rs`).

mod naming;
mod render;
mod replica;
pub mod sealed;
mod track;
mod version;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::broadcast;

pub use naming::{parse_media_name, MediaName};
pub use render::master_playlist;
pub use replica::{MediaOp, ReplicaError, TrackStats, FEED_CAPACITY};
pub use track::{Part, PartLookup, Segment, TrackFormat, TrackInfo, TrackKind, TrackStore};
pub use version::PlaylistVersion;

use crate::types::{Epoch, RenditionId, StreamName};

/// Packaging parameters shared by every track of a stream.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Segments are cut at the first keyframe at or after this duration.
    pub segment_target: Duration,
    /// LL-HLS PART-TARGET.
    pub part_target: Duration,
    /// Complete segments listed in playlists (the live window).
    pub window_segments: usize,
    /// Media sequence number of this session's first segment: a broadcaster's sessions continue
    /// one timeline at the same URLs, so a new session starts where the previous one stopped.
    pub msn_base: u64,
    /// EXT-X-DISCONTINUITY-SEQUENCE of every media playlist of this session (how many session
    /// changes the timeline went through before it).
    pub discontinuity_seq: u64,
    /// A CDN's base URL (`https://cdn.example.com`, no trailing slash): when set, every URL in
    /// the playlists and the MPD is absolute under it (`{base}/hls/{stream}/480p/...`);
    /// otherwise URLs are relative. Each node renders with its own setting.
    pub url_base: Option<Arc<str>>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            segment_target: Duration::from_secs(2),
            part_target: Duration::from_millis(200),
            window_segments: 6,
            msn_base: 0,
            discontinuity_seq: 0,
            url_base: None,
        }
    }
}

/// All tracks of one publish session of one stream.
#[derive(Debug)]
pub struct StreamMedia {
    /// The stream.
    pub name: StreamName,
    /// The publish session.
    pub epoch: Epoch,
    /// Packaging parameters.
    pub config: MediaConfig,
    /// Wall clock (Unix ms) at media time zero; 0 until the first keyframe arrived.
    start_wall_ms: AtomicI64,
    /// CMAF tracks (video renditions and the shared audio track), in master-playlist order.
    cmaf: RwLock<Vec<Arc<TrackStore>>>,
    /// MPEG-TS renditions.
    ts: RwLock<Vec<Arc<TrackStore>>>,
    /// The DASH MPD, re-rendered whenever a CMAF segment completes.
    mpd: Mutex<Option<Bytes>>,
    /// The publisher is gone; playlists carry ENDLIST.
    ended: AtomicBool,
    /// The session failed; see [`StreamMedia::interrupt`].
    interrupted: AtomicBool,
    /// The registry closed this session while it was still live here; see
    /// [`StreamMedia::revoke`].
    revoked: AtomicBool,
    /// The video renditions this session will have, in master-playlist order, once decided
    /// (source passthrough and/or the transcoded ladder). Masters and the MPD wait for all.
    video_renditions: RwLock<Option<Vec<RenditionId>>>,
    /// Every change, for replication ([`StreamMedia::follow`]); each track holds a clone.
    feed: broadcast::Sender<MediaOp>,
    /// The session this one replaced, kept (once it is over) until this one has a full window
    /// of segments: see [`StreamMedia::previous`].
    previous: Mutex<Option<Arc<StreamMedia>>>,
}

impl StreamMedia {
    /// A new, empty session.
    pub fn new(name: StreamName, epoch: Epoch, config: MediaConfig) -> Arc<Self> {
        Arc::new(Self {
            name,
            epoch,
            config,
            start_wall_ms: AtomicI64::new(0),
            cmaf: RwLock::new(Vec::new()),
            ts: RwLock::new(Vec::new()),
            mpd: Mutex::new(None),
            ended: AtomicBool::new(false),
            interrupted: AtomicBool::new(false),
            revoked: AtomicBool::new(false),
            video_renditions: RwLock::new(None),
            feed: broadcast::channel(FEED_CAPACITY).0,
            previous: Mutex::new(None),
        })
    }

    /// The stream's previous session, while this one is young: between a re-publish and this
    /// session's first segment the stream's playlist URLs answer with the previous session's
    /// last playlist (players, Safari above all, give up on a child playlist that answers
    /// 404), and a player still working through the previous session's last segments gets
    /// them (their names carry that session's epoch, so no cache can mix them up). Dropped,
    /// with its media, once every track of this session has a full live window.
    /// A revoked session (see [`StreamMedia::revoke`]) is never offered.
    pub fn previous(&self) -> Option<Arc<StreamMedia>> {
        self.previous
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .filter(|p| !p.is_revoked())
    }

    /// Keep `old` as [`StreamMedia::previous`] (never a chain: `old` lets go of its own).
    fn set_previous(&self, old: Arc<StreamMedia>) {
        old.previous
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        *self.previous.lock().unwrap_or_else(|e| e.into_inner()) = Some(old);
    }

    /// Drop [`StreamMedia::previous`] once every track has a full window of this session's
    /// segments.
    fn release_previous(&self) {
        let mut g = self.previous.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            return;
        }
        let full = self.config.msn_base + self.config.window_segments as u64;
        let tracks: Vec<_> = self
            .cmaf_tracks()
            .into_iter()
            .chain(self.ts_tracks())
            .collect();
        if !tracks.is_empty() && tracks.iter().all(|t| t.next_msn() >= full) {
            g.take();
        }
    }

    /// Add (or return the existing) track for `rendition` in `format`.
    pub fn track(
        self: &Arc<Self>,
        rendition: RenditionId,
        format: TrackFormat,
        kind: TrackKind,
    ) -> Arc<TrackStore> {
        let list = match format {
            TrackFormat::Cmaf => &self.cmaf,
            TrackFormat::Ts => &self.ts,
        };
        let mut guard = list.write().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = guard.iter().find(|t| t.rendition == rendition) {
            return t.clone();
        }
        let t = Arc::new(TrackStore::new(
            rendition,
            format,
            kind,
            self.epoch,
            self.config.clone(),
            self.feed.clone(),
            self.stream_url(format),
        ));
        guard.push(t.clone());
        // Sent with the list locked (not the track): no op of this track can reach the feed
        // before the op that creates it, even if another thread gets the track meanwhile.
        replica::emit(&self.feed, || MediaOp::Track {
            format,
            kind,
            rendition: t.rendition.clone(),
        });
        t
    }

    /// The absolute URL of this stream's directory in `format` under the CDN base
    /// (`{base}/hls/{stream}` or `{base}/cmaf/{stream}`), when one is configured.
    pub fn stream_url(&self, format: TrackFormat) -> Option<String> {
        let base = self.config.url_base.as_deref()?;
        let dir = match format {
            TrackFormat::Cmaf => "cmaf",
            TrackFormat::Ts => "hls",
        };
        Some(format!("{base}/{dir}/{}", self.name))
    }

    /// Fix the session's video renditions (in master-playlist order).
    pub fn set_video_renditions(&self, ids: Vec<RenditionId>) {
        *self
            .video_renditions
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(ids.clone());
        replica::emit(&self.feed, || MediaOp::Renditions(ids));
    }

    /// The session's video renditions, once decided.
    pub fn video_renditions(&self) -> Option<Vec<RenditionId>> {
        self.video_renditions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The video tracks among `tracks` in master-playlist order; `None` while a decided
    /// rendition has no track yet (so no manifest lists a partial rendition set).
    pub(crate) fn ordered_video(&self, tracks: &[Arc<TrackStore>]) -> Option<Vec<Arc<TrackStore>>> {
        let video = tracks.iter().filter(|t| t.kind == TrackKind::Video);
        match self.video_renditions() {
            None => Some(video.cloned().collect()),
            Some(ids) => ids
                .iter()
                .map(|id| video.clone().find(|t| &t.rendition == id).cloned())
                .collect(),
        }
    }

    /// The CMAF tracks, in order.
    pub fn cmaf_tracks(&self) -> Vec<Arc<TrackStore>> {
        self.cmaf.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The MPEG-TS tracks, in order.
    pub fn ts_tracks(&self) -> Vec<Arc<TrackStore>> {
        self.ts.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Look up a track by rendition id.
    pub fn find(&self, format: TrackFormat, rendition: &str) -> Option<Arc<TrackStore>> {
        let list = match format {
            TrackFormat::Cmaf => &self.cmaf,
            TrackFormat::Ts => &self.ts,
        };
        list.read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|t| t.rendition.as_str() == rendition)
            .cloned()
    }

    /// Record the wall clock of media time zero (first keyframe). Only the first call counts.
    pub fn set_start_wall_ms(&self, ms: i64) {
        let set = self
            .start_wall_ms
            .compare_exchange(0, ms, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if set && ms != 0 {
            replica::emit(&self.feed, || MediaOp::StartWall(ms));
        }
    }

    /// Wall clock of media time zero, if media has started.
    pub fn start_wall_ms(&self) -> Option<i64> {
        match self.start_wall_ms.load(Ordering::Acquire) {
            0 => None,
            v => Some(v),
        }
    }

    /// Mark the session ended: every track gets ENDLIST and blocked readers wake.
    /// (The one [`MediaOp::End`] of the feed comes from here, not from [`TrackStore::end`].)
    pub fn end(&self) {
        self.ended.store(true, Ordering::Release);
        for t in self.cmaf_tracks().into_iter().chain(self.ts_tracks()) {
            t.end();
        }
        for t in self.cmaf_tracks().into_iter().chain(self.ts_tracks()) {
            self.render(&t);
        }
        self.render_mpd();
        replica::emit(&self.feed, || MediaOp::End);
    }

    /// Whether the publisher is gone.
    pub fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// The session failed (publisher dropped, origin lost, fenced): playlists stop announcing
    /// parts that will not come (no preload hint; blocking reloads answer at once) but get no
    /// ENDLIST, so players keep reloading and a new session of the stream continues the same
    /// URLs (higher media sequence numbers, next discontinuity sequence). Not replicated: edges
    /// interrupt their replicas when the registry says ERROR.
    pub fn interrupt(&self) {
        if self.is_ended() {
            return;
        }
        self.interrupted.store(true, Ordering::Release);
        for t in self.cmaf_tracks().into_iter().chain(self.ts_tracks()) {
            t.interrupt();
            self.render(&t);
        }
        self.render_mpd();
    }

    /// The registry closed or superseded this session while it was still live on this node
    /// (the node was frozen or cut off and has just caught up): what it recorded since the
    /// cluster gave up on it is not the stream's, so besides being interrupted it is never
    /// offered as a newer session's [`StreamMedia::previous`].
    pub fn revoke(&self) {
        self.revoked.store(true, Ordering::Release);
        self.interrupt();
    }

    /// Whether the session was revoked (see [`StreamMedia::revoke`]).
    pub fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }

    /// Whether the session failed (see [`StreamMedia::interrupt`]).
    pub fn is_interrupted(&self) -> bool {
        self.interrupted.load(Ordering::Acquire)
    }

    /// Ended or interrupted: no more media will come.
    pub fn is_over(&self) -> bool {
        self.is_ended() || self.is_interrupted()
    }

    /// The MPD's `@minimumUpdatePeriod` while live: one segment target (the MPD only changes
    /// when a segment completes). HTTP caching of the MPD is bounded by it.
    pub fn mpd_update_period(&self) -> Duration {
        self.config.segment_target
    }

    /// The current DASH MPD, once the first segment of every CMAF track exists.
    pub fn mpd(&self) -> Option<Bytes> {
        self.mpd.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-render `track`'s media playlist (after the packager changed it) and wake its readers.
    pub fn render(&self, track: &TrackStore) {
        let siblings = match track.format {
            TrackFormat::Cmaf => self.cmaf_tracks(),
            TrackFormat::Ts => Vec::new(),
        };
        let playlist = render::media_playlist(track, &siblings);
        track.publish_playlist(playlist);
        self.release_previous();
    }

    /// Re-render the DASH MPD from every CMAF track.
    pub fn render_mpd(&self) {
        let Some(start) = self.start_wall_ms() else {
            return;
        };
        let tracks = self.cmaf_tracks();
        let rendered = render::mpd(self, start, &tracks, self.is_ended());
        *self.mpd.lock().unwrap_or_else(|e| e.into_inner()) = rendered;
    }
}

/// Every live (and recently ended) stream on this node, by name.
#[derive(Debug, Default)]
pub struct SegmentStore {
    streams: RwLock<HashMap<StreamName, Arc<StreamMedia>>>,
}

impl SegmentStore {
    /// An empty store.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Install a new publish session, replacing any older one of the same stream (which the
    /// new one keeps as its [`StreamMedia::previous`] for a while).
    pub fn insert(&self, media: Arc<StreamMedia>) {
        let mut g = self.streams.write().unwrap_or_else(|e| e.into_inner());
        match g.get(&media.name) {
            Some(old) if old.epoch > media.epoch => {}
            Some(old) if old.epoch == media.epoch => {
                g.insert(media.name.clone(), media);
            }
            old => {
                if let Some(old) = old {
                    media.set_previous(old.clone());
                }
                g.insert(media.name.clone(), media);
            }
        }
    }

    /// The current session of a stream.
    pub fn get(&self, name: &str) -> Option<Arc<StreamMedia>> {
        let g = self.streams.read().unwrap_or_else(|e| e.into_inner());
        g.get(name).cloned()
    }

    /// Drop a session, unless a newer one replaced it.
    pub fn remove(&self, name: &StreamName, epoch: Epoch) {
        let mut g = self.streams.write().unwrap_or_else(|e| e.into_inner());
        if g.get(name).is_some_and(|m| m.epoch == epoch) {
            g.remove(name);
        }
    }

    /// Session `epoch` of a stream, whether it is the current one or already the previous
    /// of a newer one (revoked or not).
    pub fn session(&self, name: &str, epoch: Epoch) -> Option<Arc<StreamMedia>> {
        let current = self.get(name)?;
        if current.epoch == epoch {
            return Some(current);
        }
        let previous = current
            .previous
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        previous.filter(|p| p.epoch == epoch)
    }

    /// All sessions.
    pub fn all(&self) -> Vec<Arc<StreamMedia>> {
        self.streams
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::{MediaConfig, SegmentStore, StreamMedia, TrackFormat, TrackKind};
    use crate::types::{Epoch, RenditionId, StreamName};

    fn session(epoch: u64, msn_base: u64) -> Arc<StreamMedia> {
        StreamMedia::new(
            StreamName::new("live").unwrap(),
            Epoch(epoch),
            MediaConfig {
                msn_base,
                window_segments: 3,
                ..MediaConfig::default()
            },
        )
    }

    /// One segment of one part on `media`'s source track, rendered as the packager does.
    fn segment(media: &StreamMedia, track: &super::TrackStore, at: u64) {
        track.begin_segment(at, 1);
        assert!(track.push_part(2.0, true, Bytes::from_static(b"media")));
        track.finish_segment(at + 180_000, None);
        media.render(track);
    }

    /// A new session keeps the one it replaced (never a chain) until each of its tracks has a
    /// full live window; an older session never replaces a newer one.
    #[test]
    fn a_new_session_keeps_the_previous_until_its_window_is_full() {
        let store = SegmentStore::new();
        let first = session(1, 0);
        store.insert(first.clone());
        assert!(first.previous().is_none());
        let t1 = first.track(RenditionId::source(), TrackFormat::Cmaf, TrackKind::Video);
        segment(&first, &t1, 0);
        first.interrupt();

        let second = session(2, 5);
        store.insert(second.clone());
        assert_eq!(second.previous().map(|p| p.epoch), Some(Epoch(1)));
        // The older session inserted again (a late replica, say) changes nothing.
        store.insert(first.clone());
        assert_eq!(store.get("live").map(|m| m.epoch), Some(Epoch(2)));

        let third = session(3, 10);
        store.insert(third.clone());
        assert_eq!(third.previous().map(|p| p.epoch), Some(Epoch(2)));
        assert!(second.previous().is_none(), "no chain of sessions");

        let t3 = third.track(RenditionId::source(), TrackFormat::Cmaf, TrackKind::Video);
        for i in 0..2 {
            segment(&third, &t3, i * 180_000);
            assert!(
                third.previous().is_some(),
                "released after {} segments",
                i + 1
            );
        }
        segment(&third, &t3, 2 * 180_000);
        assert!(third.previous().is_none(), "kept past a full window");
    }

    /// A session the registry closed while it was live here is never offered as the previous
    /// session, whether it is revoked before or after the newer session arrives.
    #[test]
    fn a_revoked_session_is_never_the_previous() {
        let store = SegmentStore::new();
        let first = session(1, 0);
        store.insert(first.clone());
        let second = session(2, 5);
        store.insert(second.clone());
        assert!(second.previous().is_some());
        store
            .session("live", Epoch(1))
            .expect("the previous")
            .revoke();
        assert!(first.is_over() && first.is_revoked());
        assert!(second.previous().is_none());

        let third = session(3, 10);
        store.insert(third.clone());
        store
            .session("live", Epoch(3))
            .expect("the current")
            .revoke();
        let fourth = session(4, 15);
        store.insert(fourth.clone());
        assert!(fourth.previous().is_none());
        assert!(
            store.session("live", Epoch(9)).is_none(),
            "an unknown epoch"
        );
        assert!(store.session("live", Epoch(1)).is_none(), "no chain");
    }
}
