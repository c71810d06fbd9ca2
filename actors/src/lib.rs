//! hivecast's actors and the state they share.
//!
//! Layout:
//! - [`stream`]: the per-stream supervised tree: [`stream::supervisor::StreamSupervisor`] with
//!   [`stream::ingest::Ingest`], one [`stream::packager::Packager`] per rendition (plus one for the
//!   shared audio track) and [`stream::notifier::Notifier`].
//! - [`store`]: the in-memory [`store::SegmentStore`] that HTTP handlers read directly.
//! - [`registry`]: the trait through which every stream state change goes (local redb today,
//!   the Raft log in a cluster).
//! - [`events`]: the node-wide hub of status and metrics events that WebSocket clients follow.
//!
//! **Architecture Invariant:** no media byte passes through an actor mailbox. Actors carry control;
//! frames travel on bounded `tokio::sync::mpsc` channels the supervisor creates, and viewers read
//! the store without any actor hop.
//!
//! **Architecture Invariant:** this crate knows nothing of HTTP, JSON, config files or the CLI.

pub mod events;
pub mod registry;
pub mod store;
pub mod stream;
pub mod transcode;
pub mod types;
