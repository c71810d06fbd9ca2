//! Sans-IO wire and media formats for hivecast.
//!
//! Layout (mirrors mediacommon's codecs/formats split):
//! - [`codec`]: H.264 (avcC, SPS, AVCC <-> Annex B) and AAC (AudioSpecificConfig, ADTS).
//! - [`rtmp`] and [`flv`]: the ingest side: an RTMP server session and FLV tag bodies.
//! - [`media`]: the protocol-independent frames that flow from ingest to packaging.
//! - [`ts`] and [`cmaf`]: the muxers (MPEG-TS for legacy HLS, fMP4/CMAF for LL-HLS and DASH).
//! - [`hls`] and [`dash`]: playlist and MPD writers, pure functions of a snapshot.
//! - [`peer`]: node-to-node messages (versioned, postcard) and their framing.
//! - [`cmcd`] and [`beacon`]: what players report: CMCD (CTA-5004) from query strings and
//!   headers, and the JSON body of the player page's `POST /v1/beacon`.
//! - [`time`]: wall-clock formatting helpers (the clock itself is always an argument).
//!
//! **Architecture Invariant:** this crate performs no I/O, spawns no tasks and reads no clock.
//! Bytes or typed values go in; events and bytes come out into buffers the caller owns.
#![warn(missing_docs, unreachable_pub)]

pub mod beacon;
pub mod cmaf;
pub mod cmcd;
pub mod codec;
pub mod dash;
pub mod flv;
pub mod hls;
pub mod media;
pub mod peer;
pub mod rtmp;
pub mod time;
pub mod ts;
