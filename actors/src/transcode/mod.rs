//! Transcoder: decode the source once, scale and encode it per rendition, with keyframes
//! forced on the same presentation timestamps in every rendition.
//!
//! ```text
//!  ingest --(bounded, async)--> TranscoderTask --(bounded)--> decode thread
//!                                   | watchdog                 |  one H.264 decode
//!                                   |                          +--(bounded, per rung)--> encode thread x R
//!                                   |                                 swscale + libx264  |
//!                                   '------------------------------------------------- packager x R
//! ```
//!
//! Where segments start is decided by the ingest (the `segment_start` flag on a source frame).
//! The decode thread turns that flag into a forced IDR on the decoded picture with the same
//! presentation timestamp in every encoder, so segment N starts at the same PTS in every
//! rendition (and at the source's keyframe, so `source` is aligned too).
//!
//! Drop policy (the pipeline never grows latency without bound):
//! - the decode thread's input is bounded; when it is full the task waits, its own input
//!   (from the ingest) fills, and the ingest drops source video until the next keyframe;
//!   a segment start that was dropped moves to the next decodable keyframe;
//! - each encoder's input holds `queue_frames` pictures; when an encoder falls behind, the
//!   pictures it cannot take are skipped for that rendition only and counted in
//!   `dropped_frames`, except pictures that open a segment, which wait up to
//!   `boundary_wait` so every rendition keeps its keyframes on the same timestamps;
//! - an encoded frame that the packager cannot take is dropped, and that rendition drops
//!   until its next segment start (a decoder cannot use frames whose references are gone).
//!
//! Failure: a thread that returns an error or panics, or a stage that has work queued but
//! makes no progress for `hang_timeout`, fails the task; the stream supervisor restarts it
//! within its budget. Frames queued inside a failed incarnation are lost with it, so the task
//! keeps a replay buffer of source frames (from the keyframe before the oldest segment start
//! that some rendition has not yet emitted): a restarted transcoder replays it, and each
//! rendition resumes at its first segment start after the last one it emitted. Every rendition
//! thus keeps the same segment numbering across restarts (the media between the failure and
//! the resume point is a freeze in the segment that was open). A hung FFmpeg call cannot be interrupted: its thread is abandoned (it exits
//! if the call ever returns) and a new one takes over.

pub mod codec;
pub mod ladder;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel as cb;
use ffmpeg_next::util::frame::video::Video as RawFrame;
use hivecast_proto::codec::aac::AacConfig;
use hivecast_proto::codec::h264::AvcConfig;
use hivecast_proto::media::{TrackConfigs, VideoFrame};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::stream::packager::PackagerInput;
use crate::stream::IngestStats;
use ladder::{RenditionPlan, Rung};

/// Encoder and pipeline settings (from the node's config).
#[derive(Debug, Clone)]
pub struct TranscodeSettings {
    /// x264 preset.
    pub preset: String,
    /// x264 tune.
    pub tune: String,
    /// x264 threads per encoder (0: x264 decides).
    pub encoder_threads: u32,
    /// Pictures queued per encoder before the drop policy applies.
    pub queue_frames: usize,
    /// How long a segment-opening picture may wait for room in an encoder's queue.
    pub boundary_wait: Duration,
    /// A stage with queued work and no progress for this long is hung.
    pub hang_timeout: Duration,
    /// Restarts allowed within `restart_window` before the stream goes to ERROR.
    pub max_restarts: u32,
    /// See `max_restarts`.
    pub restart_window: Duration,
}

impl Default for TranscodeSettings {
    fn default() -> Self {
        Self {
            preset: "veryfast".into(),
            tune: "zerolatency".into(),
            encoder_threads: 0,
            queue_frames: 15,
            boundary_wait: Duration::from_secs(1),
            hang_timeout: Duration::from_millis(1000),
            max_restarts: 3,
            restart_window: Duration::from_secs(30),
        }
    }
}

/// Test-only faults, injected through the supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TranscoderFault {
    /// The decode thread stops making progress once (the watchdog must notice).
    Hang,
    /// Every start of the transcoder fails from now on (the restart budget must run out).
    CrashLoop,
}

const FAULT_NONE: u8 = 0;
const FAULT_HANG: u8 = 1;
const FAULT_CRASH_LOOP: u8 = 2;

/// State that outlives one incarnation of the transcoder: its input and what it learned.
pub struct TranscoderShared {
    input: tokio::sync::Mutex<mpsc::Receiver<PackagerInput>>,
    learned: Mutex<Learned>,
    fault: AtomicU8,
    /// Source frames a restarted incarnation replays (see the module doc).
    replay: Mutex<VecDeque<(VideoFrame, bool)>>,
    /// Per configured rung: PTS of the last segment start it handed to its packager.
    emitted: Vec<AtomicI64>,
}

/// Replay buffer bound: 30 s of 30 fps video.
const MAX_REPLAY_FRAMES: usize = 900;

#[derive(Default)]
struct Learned {
    tracks: Option<TrackConfigs>,
    frame_rate: Option<f64>,
    plan: Option<Vec<RenditionPlan>>,
}

impl TranscoderShared {
    /// Shared state around the transcoder's input channel.
    pub fn new(input: mpsc::Receiver<PackagerInput>, rungs: usize) -> Arc<Self> {
        Arc::new(Self {
            input: tokio::sync::Mutex::new(input),
            learned: Mutex::new(Learned::default()),
            fault: AtomicU8::new(FAULT_NONE),
            replay: Mutex::new(VecDeque::new()),
            emitted: (0..rungs).map(|_| AtomicI64::new(i64::MIN)).collect(),
        })
    }

    /// Remember a frame for a possible restart, and forget what every rendition is past.
    fn remember(&self, frame: &VideoFrame, segment_start: bool, rungs: &[usize]) {
        let safe = rungs
            .iter()
            .filter_map(|r| self.emitted.get(*r))
            .map(|e| e.load(Ordering::Acquire))
            .min()
            .unwrap_or(i64::MIN);
        let mut q = self.replay.lock().unwrap_or_else(|e| e.into_inner());
        // Keep from the last keyframe at or before `safe`: a decoder can start there, and
        // every segment start after `safe` lies after it.
        if let Some(k) = q
            .iter()
            .rposition(|(f, _)| f.keyframe && f.pts_90k() <= safe)
        {
            q.drain(..k);
        }
        q.push_back((frame.clone(), segment_start));
        while q.len() > MAX_REPLAY_FRAMES {
            q.pop_front();
        }
    }

    fn replay_frames(&self) -> Vec<(VideoFrame, bool)> {
        self.replay
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Arm a test fault.
    pub fn inject(&self, fault: TranscoderFault) {
        let v = match fault {
            TranscoderFault::Hang => FAULT_HANG,
            TranscoderFault::CrashLoop => FAULT_CRASH_LOOP,
        };
        self.fault.store(v, Ordering::SeqCst);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Learned> {
        self.learned.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One incarnation of the transcoder (the work of the `transcoder` worker).
pub struct TranscoderTask {
    /// Input and learned state, shared across restarts.
    pub shared: Arc<TranscoderShared>,
    /// The configured ladder.
    pub ladder: Arc<Vec<Rung>>,
    /// One packager input per configured rung, in ladder order.
    pub outputs: Vec<mpsc::Sender<PackagerInput>>,
    /// Settings.
    pub settings: TranscodeSettings,
    /// Where drops are counted.
    pub stats: Arc<IngestStats>,
}

/// What the decode thread consumes.
enum DecodeMsg {
    Config(TrackConfigs),
    Frame(VideoFrame, bool),
    End,
}

/// What an encode thread consumes.
enum EncodeMsg {
    Audio(Option<AacConfig>),
    Picture {
        picture: Arc<RawFrame>,
        pts: i64,
        boundary: bool,
    },
    End,
}

impl TranscoderTask {
    /// Run until the ingest's `End` (then flush and end the rendition packagers), or fail.
    pub async fn run(self) -> Result<(), String> {
        if self.shared.fault.load(Ordering::SeqCst) == FAULT_CRASH_LOOP {
            return Err("injected fault: the transcoder fails at start".into());
        }
        let mut rx = self.shared.input.lock().await;
        // The source's parameters: known from an earlier incarnation, or the first Config.
        loop {
            if self
                .shared
                .lock()
                .tracks
                .as_ref()
                .is_some_and(|t| t.video.is_some())
            {
                break;
            }
            match rx.recv().await {
                Some(PackagerInput::Config {
                    tracks, frame_rate, ..
                }) => self.learn(tracks, frame_rate),
                Some(PackagerInput::End) | None => {
                    self.end_outputs(&self.outputs).await;
                    return Ok(());
                }
                Some(_) => {}
            }
        }
        let (tracks, fps, plan) = self.plan().await;
        if plan.is_empty() {
            // The source is smaller than every rung: nothing to do but wait for the end.
            while let Some(item) = rx.recv().await {
                if matches!(item, PackagerInput::End) {
                    break;
                }
            }
            return Ok(());
        }
        let mut pipeline = Pipeline::start(&self, &plan, tracks, fps)?;
        let rungs: Vec<usize> = plan.iter().map(|p| p.rung).collect();
        // A restart: what the failed incarnation may have lost goes through again.
        for (frame, segment_start) in self.shared.replay_frames() {
            pipeline
                .send(DecodeMsg::Frame(frame, segment_start))
                .await?;
        }
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = tick.tick() => pipeline.check(false)?,
                item = rx.recv() => match item {
                    Some(PackagerInput::Config { tracks, frame_rate, .. }) => {
                        self.learn(tracks.clone(), frame_rate);
                        pipeline.send(DecodeMsg::Config(tracks)).await?;
                    }
                    Some(PackagerInput::Video { frame, segment_start }) => {
                        self.shared.remember(&frame, segment_start, &rungs);
                        pipeline.send(DecodeMsg::Frame(frame, segment_start)).await?;
                    }
                    Some(PackagerInput::End) => {
                        pipeline.send(DecodeMsg::End).await?;
                        return pipeline.finish().await;
                    }
                    Some(_) => {}
                    // The ingest is gone without an End: the supervisor decides the outcome.
                    None => return Ok(()),
                },
            }
        }
    }

    fn learn(&self, tracks: TrackConfigs, frame_rate: Option<f64>) {
        let mut l = self.shared.lock();
        if tracks.video.is_some() || l.tracks.is_none() {
            l.tracks = Some(tracks);
        } else if let Some(t) = l.tracks.as_mut() {
            t.audio = tracks.audio;
        }
        if frame_rate.is_some() {
            l.frame_rate = frame_rate;
        }
    }

    /// The plan (made once per stream, from the first video config); the first time, rungs
    /// that do not apply get `End` so their packagers finish without a track.
    async fn plan(&self) -> (TrackConfigs, f64, Vec<RenditionPlan>) {
        let (tracks, fps, plan, fresh) = {
            let mut l = self.shared.lock();
            let tracks = l.tracks.clone().unwrap_or_default();
            let fps = l
                .frame_rate
                .filter(|f| f.is_finite() && *f >= 1.0 && *f <= 240.0)
                .unwrap_or(30.0);
            let (w, h) = tracks
                .video
                .as_ref()
                .map_or((0, 0), |v| (v.width, v.height));
            let fresh = l.plan.is_none();
            let plan = l
                .plan
                .get_or_insert_with(|| ladder::plan(&self.ladder, w, h))
                .clone();
            (tracks, fps, plan, fresh)
        };
        if fresh {
            let unused: Vec<_> = self
                .outputs
                .iter()
                .enumerate()
                .filter(|(i, _)| !plan.iter().any(|p| p.rung == *i))
                .map(|(_, tx)| tx.clone())
                .collect();
            self.end_outputs(&unused).await;
            let names: Vec<String> = plan
                .iter()
                .map(|p| format!("{}:{}x{}@{}k", p.id, p.width, p.height, p.video_kbps))
                .collect();
            info!(renditions = ?names, fps, "transcoding ladder");
        }
        (tracks, fps, plan)
    }

    async fn end_outputs(&self, outputs: &[mpsc::Sender<PackagerInput>]) {
        for tx in outputs {
            let _ = tokio::time::timeout(Duration::from_secs(1), tx.send(PackagerInput::End)).await;
        }
    }
}

/// Work counters of one stage, for the watchdog.
#[derive(Debug, Default)]
struct Progress {
    sent: AtomicU64,
    done: AtomicU64,
}

struct Stage {
    name: String,
    progress: Arc<Progress>,
    handle: Option<JoinHandle<Result<(), String>>>,
    last_done: u64,
    last_change: Instant,
}

/// The running threads of one incarnation. Dropping it closes the decode thread's input,
/// which ends the decode thread and then the encoders.
struct Pipeline {
    tx: mpsc::Sender<DecodeMsg>,
    decode: Arc<Progress>,
    stages: Vec<Stage>,
    stop: Arc<AtomicBool>,
    hang_timeout: Duration,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Pipeline {
    fn start(
        task: &TranscoderTask,
        plan: &[RenditionPlan],
        tracks: TrackConfigs,
        fps: f64,
    ) -> Result<Self, String> {
        let avc = tracks.video.clone().ok_or("no video configuration")?;
        let stop = Arc::new(AtomicBool::new(false));
        let span = tracing::Span::current();
        let mut stages = Vec::new();
        let mut encoders = Vec::new();
        for p in plan {
            let Some(out) = task.outputs.get(p.rung).cloned() else {
                continue;
            };
            let (etx, erx) = cb::bounded(task.settings.queue_frames.max(1));
            let progress = Arc::new(Progress::default());
            let emitted = task
                .shared
                .emitted
                .get(p.rung)
                .map_or(i64::MIN, |e| e.load(Ordering::Acquire));
            let job = EncodeJob {
                input: erx,
                out,
                shared: task.shared.clone(),
                resume_after: (emitted != i64::MIN).then_some(emitted),
                stop: stop.clone(),
                plan: p.clone(),
                settings: task.settings.clone(),
                fps,
                audio: tracks.audio.clone(),
                progress: progress.clone(),
                stats: task.stats.clone(),
            };
            let span = span.clone();
            let handle = std::thread::Builder::new()
                .name(format!("enc-{}", p.id))
                .spawn(move || span.in_scope(|| job.run()))
                .map_err(|e| format!("spawning an encoder thread: {e}"))?;
            stages.push(Stage {
                name: format!("encoder {}", p.id),
                progress: progress.clone(),
                handle: Some(handle),
                last_done: 0,
                last_change: Instant::now(),
            });
            encoders.push((etx, progress));
        }
        let (tx, rx) = mpsc::channel(32);
        let decode = Arc::new(Progress::default());
        let job = DecodeJob {
            input: rx,
            avc,
            encoders,
            boundary_wait: task.settings.boundary_wait,
            progress: decode.clone(),
            stats: task.stats.clone(),
            shared: task.shared.clone(),
            stop: stop.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("decode".into())
            .spawn(move || span.in_scope(|| job.run()))
            .map_err(|e| format!("spawning the decoder thread: {e}"))?;
        stages.insert(
            0,
            Stage {
                name: "decoder".into(),
                progress: decode.clone(),
                handle: Some(handle),
                last_done: 0,
                last_change: Instant::now(),
            },
        );
        Ok(Self {
            tx,
            decode,
            stages,
            stop,
            hang_timeout: task.settings.hang_timeout,
        })
    }

    /// Hand a message to the decode thread, waiting (bounded) for room.
    async fn send(&mut self, msg: DecodeMsg) -> Result<(), String> {
        let deadline = tokio::time::sleep(self.hang_timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let send = self.tx.send(msg);
        tokio::pin!(send);
        loop {
            tokio::select! {
                r = &mut send => {
                    r.map_err(|_| "the decoder thread is gone".to_owned())?;
                    self.decode.sent.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                _ = &mut deadline => {
                    return Err(format!(
                        "decoder input full for {} ms",
                        self.hang_timeout.as_millis()
                    ));
                }
                _ = tick.tick() => {
                    // Encoders stalling behind a blocked decoder show up here.
                    let stages = &mut self.stages;
                    check_stages(stages, self.hang_timeout, false)?;
                }
            }
        }
    }

    fn check(&mut self, ending: bool) -> Result<(), String> {
        check_stages(&mut self.stages, self.hang_timeout, ending)
    }

    /// After `End`: wait (bounded) for every thread to flush and finish.
    async fn finish(mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(3);
        while self
            .stages
            .iter()
            .any(|s| s.handle.as_ref().is_some_and(|h| !h.is_finished()))
        {
            if Instant::now() > deadline {
                return Err("transcoder threads did not finish after the end".into());
            }
            self.check(true)?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.check(true)
    }
}

fn check_stages(stages: &mut [Stage], hang: Duration, ending: bool) -> Result<(), String> {
    let now = Instant::now();
    for s in stages.iter_mut() {
        if s.handle.as_ref().is_some_and(JoinHandle::is_finished) {
            let Some(h) = s.handle.take() else { continue };
            match h.join() {
                Ok(Ok(())) if ending => {}
                Ok(Ok(())) => return Err(format!("{} stopped unexpectedly", s.name)),
                Ok(Err(e)) => return Err(format!("{}: {e}", s.name)),
                Err(p) => return Err(format!("{} panicked: {}", s.name, panic_text(&p))),
            }
            continue;
        }
        if s.handle.is_none() {
            continue;
        }
        let done = s.progress.done.load(Ordering::Relaxed);
        let sent = s.progress.sent.load(Ordering::Relaxed);
        if done != s.last_done || sent <= done {
            s.last_done = done;
            s.last_change = now;
        } else if now.duration_since(s.last_change) >= hang {
            return Err(format!(
                "{} made no progress for {} ms ({} items queued)",
                s.name,
                hang.as_millis(),
                sent - done
            ));
        }
    }
    Ok(())
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

fn count_drop(stats: &IngestStats, what: &str) {
    let n = stats.dropped_frames.fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_power_of_two() {
        warn!(dropped = n, "{what}");
    }
}

struct DecodeJob {
    input: mpsc::Receiver<DecodeMsg>,
    avc: AvcConfig,
    encoders: Vec<(cb::Sender<EncodeMsg>, Arc<Progress>)>,
    boundary_wait: Duration,
    progress: Arc<Progress>,
    stats: Arc<IngestStats>,
    shared: Arc<TranscoderShared>,
    stop: Arc<AtomicBool>,
}

/// The decode thread's picture routing state.
struct Router {
    boundaries: VecDeque<i64>,
    started: bool,
    error: Option<String>,
}

impl DecodeJob {
    fn run(mut self) -> Result<(), String> {
        let mut dec = codec::Decoder::new(&self.avc).map_err(|e| e.to_string())?;
        let mut decodable = false;
        let mut pending_boundary = false;
        let mut router = Router {
            boundaries: VecDeque::new(),
            started: false,
            error: None,
        };
        while let Some(msg) = self.input.blocking_recv() {
            if self
                .shared
                .fault
                .compare_exchange(FAULT_HANG, FAULT_NONE, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                warn!("injected fault: the decoder thread hangs");
                while !self.stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                return Ok(());
            }
            match msg {
                DecodeMsg::Config(tracks) => {
                    if let Some(v) = tracks.video.as_ref() {
                        dec.set_config(v);
                    }
                    for (tx, p) in &self.encoders {
                        if tx
                            .send_timeout(
                                EncodeMsg::Audio(tracks.audio.clone()),
                                self.boundary_wait,
                            )
                            .is_ok()
                        {
                            p.sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                DecodeMsg::Frame(frame, segment_start) => {
                    if !decodable && !frame.keyframe {
                        pending_boundary |= segment_start;
                        self.progress.done.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    decodable = true;
                    if segment_start || std::mem::take(&mut pending_boundary) {
                        router.boundaries.push_back(frame.pts_90k());
                    }
                    let r = dec.decode(&frame, |pic, pts| self.route(&mut router, pic, pts));
                    if let Err(e) = r {
                        return Err(e.to_string());
                    }
                }
                DecodeMsg::End => {
                    dec.finish(|pic, pts| self.route(&mut router, pic, pts))
                        .map_err(|e| e.to_string())?;
                    for (tx, p) in &self.encoders {
                        if tx
                            .send_timeout(EncodeMsg::End, Duration::from_secs(2))
                            .is_ok()
                        {
                            p.sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    self.progress.done.fetch_add(1, Ordering::Relaxed);
                    return router.error.map_or(Ok(()), Err);
                }
            }
            if let Some(e) = router.error.take() {
                return Err(e);
            }
            self.progress.done.fetch_add(1, Ordering::Relaxed);
        }
        Ok(()) // input closed: this incarnation was replaced or stopped
    }

    /// Send one decoded picture to every encoder, forcing a keyframe on segment starts.
    fn route(&self, r: &mut Router, pic: RawFrame, pts: i64) {
        let mut boundary = false;
        while r.boundaries.front().is_some_and(|b| *b <= pts) {
            r.boundaries.pop_front();
            boundary = true;
        }
        r.started |= boundary;
        if !r.started {
            return; // renditions begin at a segment start
        }
        let picture = Arc::new(pic);
        for (tx, p) in &self.encoders {
            let msg = EncodeMsg::Picture {
                picture: picture.clone(),
                pts,
                boundary,
            };
            let sent = if boundary {
                match tx.send_timeout(msg, self.boundary_wait) {
                    Ok(()) => true,
                    Err(cb::SendTimeoutError::Timeout(_)) => {
                        r.error = Some(format!(
                            "an encoder took no picture for {} ms",
                            self.boundary_wait.as_millis()
                        ));
                        false
                    }
                    Err(cb::SendTimeoutError::Disconnected(_)) => false,
                }
            } else {
                match tx.try_send(msg) {
                    Ok(()) => true,
                    Err(cb::TrySendError::Full(_)) => {
                        count_drop(&self.stats, "encoder behind: skipping pictures for it");
                        false
                    }
                    Err(cb::TrySendError::Disconnected(_)) => false,
                }
            };
            if sent {
                p.sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

struct EncodeJob {
    input: cb::Receiver<EncodeMsg>,
    out: mpsc::Sender<PackagerInput>,
    shared: Arc<TranscoderShared>,
    resume_after: Option<i64>,
    stop: Arc<AtomicBool>,
    plan: RenditionPlan,
    settings: TranscodeSettings,
    fps: f64,
    audio: Option<AacConfig>,
    progress: Arc<Progress>,
    stats: Arc<IngestStats>,
}

impl EncodeJob {
    fn run(self) -> Result<(), String> {
        let mut enc =
            codec::Encoder::new(&self.plan, &self.settings, self.fps).map_err(|e| e.to_string())?;
        let mut out = RenditionOutput {
            out: self.out,
            shared: self.shared,
            rung: self.plan.rung,
            resume_after: self.resume_after,
            stop: self.stop,
            stats: self.stats,
            fps: self.fps,
            kbps: self.plan.video_kbps,
            audio: self.audio,
            video: None,
            boundaries: VecDeque::new(),
            need_boundary: false,
        };
        let mut last_pts: Option<i64> = None;
        while let Ok(msg) = self.input.recv() {
            match msg {
                EncodeMsg::Audio(a) => out.set_audio(a),
                EncodeMsg::Picture {
                    picture,
                    pts,
                    boundary,
                } => {
                    // libx264 needs strictly increasing timestamps.
                    if last_pts.is_none_or(|l| pts > l) {
                        last_pts = Some(pts);
                        if boundary {
                            out.boundaries.push_back(pts);
                        }
                        enc.encode(&picture, pts, boundary, &mut |e| out.emit(e))
                            .map_err(|e| e.to_string())?;
                    }
                }
                EncodeMsg::End => {
                    enc.finish(&mut |e| out.emit(e))
                        .map_err(|e| e.to_string())?;
                    let _ = out.out.blocking_send(PackagerInput::End);
                    self.progress.done.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
            }
            self.progress.done.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// An encode thread's side towards its packager.
struct RenditionOutput {
    out: mpsc::Sender<PackagerInput>,
    shared: Arc<TranscoderShared>,
    rung: usize,
    /// After a restart: output starts at the first segment start after this PTS (the last one
    /// this rendition emitted before the failure).
    resume_after: Option<i64>,
    /// Set when this incarnation is replaced: its late output must not reach the packager.
    stop: Arc<AtomicBool>,
    stats: Arc<IngestStats>,
    fps: f64,
    kbps: u32,
    audio: Option<AacConfig>,
    video: Option<AvcConfig>,
    /// Forced keyframes not yet out of the encoder.
    boundaries: VecDeque<i64>,
    /// A frame was dropped: skip until the next segment start.
    need_boundary: bool,
}

impl RenditionOutput {
    fn set_audio(&mut self, audio: Option<AacConfig>) {
        if audio != self.audio {
            self.audio = audio;
            if self.video.is_some() {
                self.send_config();
            }
        }
    }

    fn emit(&mut self, e: codec::Encoded) {
        if self.stop.load(Ordering::Acquire) {
            return;
        }
        let pts = e.frame.pts_90k();
        let mut segment_start = false;
        while self.boundaries.front().is_some_and(|b| *b <= pts) {
            segment_start |= self.boundaries.pop_front() == Some(pts);
        }
        if let Some(cfg) = e.new_config {
            self.video = Some(cfg);
            self.send_config();
        }
        if let Some(after) = self.resume_after {
            if !segment_start || pts <= after {
                return; // already delivered, or inside the segment the failure interrupted
            }
            self.resume_after = None;
        }
        if self.need_boundary && !segment_start {
            count_drop(
                &self.stats,
                "packager behind: rendition waits for its next segment",
            );
            return;
        }
        self.need_boundary = false;
        let item = PackagerInput::Video {
            frame: e.frame,
            segment_start,
        };
        match self.out.try_send(item) {
            Ok(()) if segment_start => {
                if let Some(e) = self.shared.emitted.get(self.rung) {
                    e.store(pts, Ordering::Release);
                }
            }
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.need_boundary = true;
                count_drop(
                    &self.stats,
                    "packager behind: rendition waits for its next segment",
                );
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn send_config(&self) {
        let _ = self.out.blocking_send(PackagerInput::Config {
            tracks: TrackConfigs {
                video: self.video.clone(),
                audio: self.audio.clone(),
            },
            frame_rate: Some(self.fps),
            declared_kbps: f64::from(self.kbps),
        });
    }
}
