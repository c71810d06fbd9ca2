//! Shared code of the `hivecast-proto` fuzz targets (`fuzz_targets/`) and of the seed-corpus
//! tool (`src/bin/fuzz-corpus.rs`).
//!
//! Layout: [`wire`] writes what a publisher sends (handshake, chunks, AMF0); [`session`] is
//! the `rtmp_session` input format and the driver that plays a session into
//! `hivecast_proto::rtmp::ServerConnection`; [`formats`] holds the small input layouts of
//! the other targets, so the tool writes seeds in exactly the layout the targets read.
//!
//! Invariant: everything here is deterministic given the input (no clock, no randomness);
//! the only nondeterminism left is inside rml_rtmp (random S1 bytes, its clock for outbound
//! timestamps), which never changes what the server decides.

pub mod checks;
pub mod formats;
pub mod session;
pub mod wire;
