//! The viewer load generator (`scripts/bench-viewers`, `scripts/bench-streams` and the scale
//! tests): thousands of simulated players on keep-alive HTTP/1.1 connections in one tokio
//! process, RTMP publishers that loop an FLV file, and `/proc` readings of the server measured.

pub mod cli;
pub mod http;
pub mod m3u8;
pub mod procstat;
pub mod publish;
pub mod viewer;

pub use viewer::{run, LoadConfig, LoadReport, Mode};
