//! The registry: where every stream state change goes.
//!
//! On one node it is a redb-backed table (in the `hivecast` binary); in a cluster it will be the
//! Raft log. Actors see only this trait, so the single-node and cluster builds share the tree.
//! Implementations publish the committed change on the [`crate::events::EventHub`].

use futures_util::future::BoxFuture;

use crate::types::{Epoch, StreamName, StreamStatus};

/// Registry failures.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The stream is already live under another publisher.
    #[error("stream {stream} is already live (epoch {epoch})")]
    AlreadyLive {
        /// The stream.
        stream: StreamName,
        /// The live session's epoch.
        epoch: Epoch,
    },
    /// The change refers to an older publish session than the registry's (fencing).
    #[error("stale epoch {got} for stream {stream}: current is {current}")]
    StaleEpoch {
        /// The stream.
        stream: StreamName,
        /// The epoch in the request.
        got: Epoch,
        /// The registry's epoch.
        current: Epoch,
    },
    /// The lifecycle does not allow the move.
    #[error("stream {stream}: cannot move from {from} to {to}")]
    BadTransition {
        /// The stream.
        stream: StreamName,
        /// Current status.
        from: StreamStatus,
        /// Requested status.
        to: StreamStatus,
    },
    /// Storage failure.
    #[error("registry storage: {0}")]
    Storage(String),
}

/// The stream-state registry.
pub trait Registry: Send + Sync + 'static {
    /// Claim a stream for a new publish session: bumps and returns the epoch and sets
    /// `PENDING_INGEST`. Fails with [`RegistryError::AlreadyLive`] if it is live.
    fn claim(&self, stream: StreamName) -> BoxFuture<'_, Result<Epoch, RegistryError>>;

    /// Move a stream of the given epoch to `status`, with an optional reason.
    fn set_status(
        &self,
        stream: StreamName,
        epoch: Epoch,
        status: StreamStatus,
        reason: Option<String>,
    ) -> BoxFuture<'_, Result<(), RegistryError>>;
}
