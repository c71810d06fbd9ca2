//! StreamSupervisor: the root of one stream's tree (one publish session, one epoch).
//!
//! Starts Ingest, one Packager per rendition plus the audio Packager, and the Notifier as linked
//! children, wiring them with bounded channels it creates. It owns the stream's fate:
//! - the ingest reports its outcome (ended / failed with a reason);
//! - on a graceful end it waits (bounded) for the packagers to flush, so playlists carry
//!   `EXT-X-ENDLIST` before the registry says `ENDED_GRACEFULLY`;
//! - any child failure (an error, a panic) moves the stream to `ERROR` with the child's name.
//!
//! - the transcoder (when the stream is transcoded) is restarted when it fails or hangs, at
//!   most `max_restarts` times within `restart_window`; past that the stream goes to ERROR.
//!
//! A failure never escapes the tree: it ends this stream only, and the supervisor stops with a
//! reason instead of panicking. Other children are not restarted: a restarted packager would
//! have lost its open segment, and the ingest owns the publisher's connection.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use super::ingest::{IngestInput, IngestOutputs, IngestTask};
use super::notifier::NotifierTask;
use super::packager::{self, AudioPackager, PackagerInput, VideoPackager};
use super::worker::{Worker, WorkerArgs, WorkerMsg};
use super::{IngestStats, StreamOutcome, StreamSettings};
use crate::events::EventHub;
use crate::registry::Registry;
use crate::store::StreamMedia;
use crate::transcode::{TranscoderFault, TranscoderShared, TranscoderTask};
use crate::types::{RenditionId, StreamStatus};

/// The supervisor actor.
#[derive(Debug, Default)]
pub struct StreamSupervisor;

/// What a stream's tree needs.
pub struct SupervisorArgs {
    /// The session's media store (name and epoch inside).
    pub media: Arc<StreamMedia>,
    /// Frames from the listener.
    pub input: mpsc::Receiver<IngestInput>,
    /// Ingest counters (shared with the API).
    pub stats: Arc<IngestStats>,
    /// Status changes.
    pub registry: Arc<dyn Registry>,
    /// Metrics publishing.
    pub hub: EventHub,
    /// Timeouts and queue sizes.
    pub settings: StreamSettings,
    /// The stream's span (`stream`, `epoch`).
    pub span: tracing::Span,
}

/// Which child a cell is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The ingest.
    Ingest,
    /// A packager.
    Packager,
    /// The notifier.
    Notifier,
    /// The transcoder.
    Transcoder,
}

/// Messages to the supervisor.
#[derive(Debug)]
pub enum SupervisorMsg {
    /// The ingest's outcome.
    IngestOutcome(StreamOutcome),
    /// The packagers had their time to flush.
    FlushDeadline,
    /// Test-only: make a child panic.
    InjectPanic(Role),
    /// Test-only: a transcoder fault (hang once, or fail at every start).
    InjectTranscoderFault(TranscoderFault),
    /// Stop the stream (operator or shutdown) with a reason; it ends in ERROR.
    Abort(String),
}

/// The supervisor's state.
pub struct SupervisorState {
    media: Arc<StreamMedia>,
    registry: Arc<dyn Registry>,
    children: HashMap<ActorId, (Role, ActorRef<WorkerMsg>)>,
    packagers_left: usize,
    outcome: Option<StreamOutcome>,
    finished: bool,
    transcoder: Option<TranscoderSpawner>,
    span: tracing::Span,
}

/// Everything needed to (re)start the transcoder, and its restart history.
struct TranscoderSpawner {
    shared: Arc<TranscoderShared>,
    plan: super::TranscodePlan,
    outputs: Vec<mpsc::Sender<PackagerInput>>,
    stats: Arc<IngestStats>,
    failures: VecDeque<Instant>,
}

impl TranscoderSpawner {
    fn work(&self) -> super::worker::Work {
        let task = TranscoderTask {
            shared: self.shared.clone(),
            ladder: self.plan.ladder.clone(),
            outputs: self.outputs.clone(),
            settings: self.plan.settings.clone(),
            stats: self.stats.clone(),
        };
        Box::pin(task.run())
    }
}

async fn spawn_child(
    cell: &ActorCell,
    name: String,
    work: super::worker::Work,
    span: &tracing::Span,
) -> Result<ActorRef<WorkerMsg>, ActorProcessingErr> {
    let (r, _) = Actor::spawn_linked(
        None,
        Worker,
        WorkerArgs {
            role: name,
            work,
            span: span.clone(),
        },
        cell.clone(),
    )
    .await?;
    Ok(r)
}

impl Actor for StreamSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let media = args.media;
        let cap = args.settings.packager_queue.max(8);
        let (vtx, vrx) = mpsc::channel(cap);
        let (atx, arx) = mpsc::channel(cap);
        let (otx, orx) = oneshot::channel();
        let cell: ActorCell = myself.get_cell();
        let mut children = HashMap::new();
        let mut specs: Vec<(Role, String, super::worker::Work)> = Vec::new();

        // Transcoded renditions: one packager per configured rung (those that do not apply
        // to the source get End from the transcoder and never create a track).
        let mut transcoder = None;
        let mut tc_tx = None;
        let mut rung_txs = Vec::new();
        if let Some(plan) = args.settings.transcode.clone() {
            for rung in plan.ladder.iter() {
                let (tx, rx) = mpsc::channel(cap);
                let p = VideoPackager::new(media.clone(), RenditionId(rung.name.clone()));
                specs.push((
                    Role::Packager,
                    format!("packager:{}", rung.name),
                    Box::pin(packager::run(Box::new(p), rx)),
                ));
                rung_txs.push(tx);
            }
            let (tx, rx) = mpsc::channel(cap);
            tc_tx = Some(tx);
            let spawner = TranscoderSpawner {
                shared: TranscoderShared::new(rx, rung_txs.len()),
                plan,
                outputs: rung_txs.clone(),
                stats: args.stats.clone(),
                failures: VecDeque::new(),
            };
            specs.push((Role::Transcoder, "transcoder".into(), spawner.work()));
            transcoder = Some(spawner);
        }

        let ingest = IngestTask {
            name: media.name.clone(),
            media: media.clone(),
            input: args.input,
            outputs: IngestOutputs {
                video: vec![vtx],
                audio: Some(atx),
                transcoder: tc_tx,
                rung_audio: rung_txs,
                plan: args.settings.transcode.clone(),
            },
            stats: args.stats.clone(),
            registry: args.registry.clone(),
            media_timeout: args.settings.media_timeout,
            outcome: otx,
        };
        let video = packager::run(
            Box::new(VideoPackager::new(media.clone(), RenditionId::source())),
            vrx,
        );
        let audio = packager::run(Box::new(AudioPackager::new(media.clone())), arx);
        let notifier = NotifierTask {
            name: media.name.clone(),
            epoch: media.epoch,
            stats: args.stats.clone(),
            period: Duration::from_secs(1),
        };
        specs.extend([
            (
                Role::Packager,
                "packager:source".to_owned(),
                Box::pin(video) as super::worker::Work,
            ),
            (Role::Packager, "packager:audio".into(), Box::pin(audio)),
            (Role::Notifier, "notifier".into(), Box::pin(notifier.run())),
            (Role::Ingest, "ingest".into(), Box::pin(ingest.run())),
        ]);
        let mut packagers = 0;
        for (role, name, work) in specs {
            let r = spawn_child(&cell, name, work, &args.span).await?;
            if role == Role::Packager {
                packagers += 1;
            }
            children.insert(r.get_id(), (role, r));
        }
        let me = myself.clone();
        tokio::spawn(async move {
            if let Ok(outcome) = orx.await {
                let _ = me.cast(SupervisorMsg::IngestOutcome(outcome));
            }
        });
        Ok(SupervisorState {
            media,
            registry: args.registry,
            children,
            packagers_left: packagers,
            outcome: None,
            finished: false,
            transcoder,
            span: args.span,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::IngestOutcome(StreamOutcome::Ended) => {
                state.outcome = Some(StreamOutcome::Ended);
                if state.packagers_left == 0 {
                    finish(&myself, state).await;
                } else {
                    myself.send_after(Duration::from_secs(2), || SupervisorMsg::FlushDeadline);
                }
            }
            SupervisorMsg::IngestOutcome(failed) => {
                state.outcome = Some(failed);
                finish(&myself, state).await;
            }
            SupervisorMsg::FlushDeadline => finish(&myself, state).await,
            SupervisorMsg::InjectPanic(role) => {
                if let Some((_, r)) = state.children.values().find(|(r, _)| *r == role) {
                    let _ = r.cast(WorkerMsg::InjectPanic);
                }
            }
            SupervisorMsg::InjectTranscoderFault(fault) => {
                if let Some(t) = &state.transcoder {
                    t.shared.inject(fault);
                    if fault == TranscoderFault::CrashLoop {
                        if let Some((_, r)) = state
                            .children
                            .values()
                            .find(|(r, _)| *r == Role::Transcoder)
                        {
                            let _ = r.cast(WorkerMsg::InjectPanic);
                        }
                    }
                }
            }
            SupervisorMsg::Abort(reason) => {
                state.outcome = Some(StreamOutcome::Failed(reason));
                finish(&myself, state).await;
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorFailed(cell, err) => {
                let role = state.children.remove(&cell.get_id()).map(|(r, _)| r);
                if role == Some(Role::Transcoder) && state.outcome.is_none() {
                    match restart_transcoder(&myself, state, &err.to_string()).await {
                        Ok(()) => return Ok(()),
                        Err(reason) => {
                            error!(error = %err, "transcoder keeps failing: stream to ERROR");
                            state.outcome = Some(StreamOutcome::Failed(reason));
                            finish(&myself, state).await;
                            return Ok(());
                        }
                    }
                }
                error!(?role, error = %err, "stream actor failed");
                if state.outcome.is_none()
                    || state.outcome == Some(StreamOutcome::Ended) && !state.finished
                {
                    state.outcome = Some(StreamOutcome::Failed(format!("internal fault: {err}")));
                }
                finish(&myself, state).await;
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if let Some((Role::Packager, _)) = state.children.remove(&cell.get_id()) {
                    state.packagers_left = state.packagers_left.saturating_sub(1);
                    if state.packagers_left == 0 && state.outcome.is_some() {
                        finish(&myself, state).await;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        if !state.media.is_over() {
            state.media.interrupt();
        }
        Ok(())
    }
}

/// Restart the transcoder if its budget allows; `Err` carries the stream's failure reason.
async fn restart_transcoder(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    err: &str,
) -> Result<(), String> {
    let Some(t) = state.transcoder.as_mut() else {
        return Err(format!("internal fault: {err}"));
    };
    let now = Instant::now();
    let window = t.plan.settings.restart_window;
    t.failures.push_back(now);
    while t
        .failures
        .front()
        .is_some_and(|f| now.duration_since(*f) > window)
    {
        t.failures.pop_front();
    }
    let failures = t.failures.len() as u32;
    if failures > t.plan.settings.max_restarts {
        return Err(format!(
            "transcoder failed {failures} times within {} s: {err}",
            window.as_secs()
        ));
    }
    warn!(error = %err, attempt = failures, "transcoder failed: restarting it");
    t.stats.update_transcode(|s| s.restarts += 1);
    let work = t.work();
    let r = spawn_child(&myself.get_cell(), "transcoder".into(), work, &state.span)
        .await
        .map_err(|e| format!("transcoder could not be restarted: {e}"))?;
    state.children.insert(r.get_id(), (Role::Transcoder, r));
    Ok(())
}

/// Publish the final status once, stop the children, stop.
async fn finish(myself: &ActorRef<SupervisorMsg>, state: &mut SupervisorState) {
    if state.finished {
        return;
    }
    state.finished = true;
    let (status, reason) = match state.outcome.clone() {
        Some(StreamOutcome::Ended) => (StreamStatus::EndedGracefully, None),
        Some(StreamOutcome::Failed(r)) => (StreamStatus::Error, Some(r)),
        None => (StreamStatus::Error, Some("stream stopped".to_owned())),
    };
    // Viewers see the end in the playlists before (or with) the status change: ENDLIST for a
    // clean end; for a failure the playlists stay open without announcing more parts, so a
    // reconnecting broadcaster's new session continues them.
    if status == StreamStatus::EndedGracefully {
        state.media.end();
    } else {
        state.media.interrupt();
    }
    let name = state.media.name.clone();
    if let Err(e) = state
        .registry
        .set_status(name, state.media.epoch, status, reason.clone())
        .await
    {
        error!(error = %e, "could not record the stream's final status");
    }
    info!(%status, ?reason, "stream finished");
    for (_, (_, child)) in state.children.drain() {
        child.stop(None);
    }
    myself.stop(reason);
}
