//! A supervised worker: an actor whose work is one async task.
//!
//! The actor starts the task in `pre_start` and keeps an abort-on-drop handle in its state, so the
//! task dies with the actor whatever the way out (stop, kill, panic in a handler). A watcher
//! reports the task's end to the actor: `Ok` stops the actor normally (`ActorTerminated`), an
//! error or a panic fails it (`ActorFailed`), which is how the supervisor learns of it.
//! `Inject(Fault::Panic)` panics inside the actor's handler: the test-only fault hook.

use futures_util::future::BoxFuture;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::AbortHandle;
use tracing::Instrument;

/// The work of a worker: runs to completion; `Err` is a failure of the stream.
pub type Work = BoxFuture<'static, Result<(), String>>;

/// A generic worker actor.
#[derive(Debug, Default)]
pub struct Worker;

/// Arguments: the role name (for logs) and the work.
pub struct WorkerArgs {
    /// `ingest`, `packager:source`, `packager:audio`, `notifier`.
    pub role: String,
    /// The task to run.
    pub work: Work,
    /// The stream's span; the task runs inside it.
    pub span: tracing::Span,
}

/// Messages to a worker.
#[derive(Debug)]
pub enum WorkerMsg {
    /// The task ended (from the watcher).
    Done(Result<(), String>),
    /// Test-only fault injection: panic in the handler.
    InjectPanic,
}

/// Aborts the task when dropped.
#[derive(Debug)]
pub struct AbortOnDrop(Vec<AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// The worker's state.
#[derive(Debug)]
pub struct WorkerState {
    role: String,
    _task: AbortOnDrop,
}

impl Actor for Worker {
    type Msg = WorkerMsg;
    type State = WorkerState;
    type Arguments = WorkerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: WorkerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let work = tokio::spawn(args.work.instrument(args.span.clone()));
        let work_abort = work.abort_handle();
        let watcher = tokio::spawn(async move {
            let result = match work.await {
                Ok(r) => r,
                Err(e) if e.is_panic() => Err(format!("panicked: {}", panic_text(e.into_panic()))),
                Err(_) => Err("cancelled".to_owned()),
            };
            let _ = myself.cast(WorkerMsg::Done(result));
        });
        Ok(WorkerState {
            role: args.role,
            _task: AbortOnDrop(vec![work_abort, watcher.abort_handle()]),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: WorkerMsg,
        state: &mut WorkerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WorkerMsg::Done(Ok(())) => {
                myself.stop(None);
                Ok(())
            }
            WorkerMsg::Done(Err(e)) => Err(format!("{}: {e}", state.role).into()),
            WorkerMsg::InjectPanic => panic!("injected fault in {}", state.role),
        }
    }
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}
