//! MPEG-DASH manifests (ISO/IEC 23009-1, DASH-IF IOP live profile): a dynamic MPD writer
//! with `SegmentTemplate` + `SegmentTimeline` addressing, and the timeline run-length helpers.
//!
//! Layout:
//! - `mpd`: the snapshot types ([`Mpd`], [`AdaptationSet`], [`Representation`],
//!   [`SegmentTemplate`]), [`Mpd::validate`] and [`render_mpd`].
//! - `timeline`: [`TimelineEntry`], [`compact_timeline`] (run-length `r` compaction) and
//!   [`expand_timeline`].
//!
//! What this module does not do: no I/O, no clock (`availabilityStartTime` and `publishTime`
//! are `unix_ms` fields chosen by the caller), no XML parsing (tests use `roxmltree` as an
//! independent reader), and no low-latency DASH signalling (`availabilityTimeOffset`,
//! `ServiceDescription`): segments are announced once complete.
//!
//! Invariants: [`render_mpd`] validates first and writes nothing on error; every attribute
//! value is XML-escaped and free of characters XML 1.0 cannot carry; the output is a single
//! `Period` starting at `PT0S` whose `SegmentTimeline`s are written exactly as given, with the
//! availability start time (in Unix milliseconds) as its `@id`.

mod mpd;
mod timeline;

pub use mpd::{
    render_mpd, AdaptationSet, ContentType, Mpd, Representation, SegmentTemplate, UtcTiming,
    UtcTimingScheme,
};
pub use timeline::{compact_timeline, expand_timeline, TimelineEntry};

/// A snapshot that would produce an invalid MPD (a server bug, never a viewer's fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MpdError {
    /// The MPD has no adaptation set, or an adaptation set has no representation.
    #[error("dash: {what} is empty")]
    Empty {
        /// `MPD` or `AdaptationSet <id>`.
        what: String,
    },
    /// A `SegmentTimeline` without any `S` element (the schema needs at least one): publish
    /// the MPD only once every representation has a segment.
    #[error("dash: representation {representation:?} has an empty SegmentTimeline")]
    EmptyTimeline {
        /// The representation's id.
        representation: String,
    },
    /// An `S@d` of zero, or a `timescale` of zero.
    #[error("dash: representation {representation:?} has a zero {what}")]
    Zero {
        /// The representation's id.
        representation: String,
        /// `timescale` or `S@d`.
        what: &'static str,
    },
    /// A timeline whose end time does not fit in 64 bits.
    #[error("dash: representation {representation:?} has a SegmentTimeline beyond 2^64 ticks")]
    TimelineOverflow {
        /// The representation's id.
        representation: String,
    },
    /// `SegmentTemplate@media` has neither `$Number$` nor `$Time$` (with or without a
    /// width format), so every segment would have the same URL.
    #[error("dash: media template {media:?} of {representation:?} has no $Number$ or $Time$")]
    MediaTemplateWithoutAddress {
        /// The representation's id.
        representation: String,
        /// The template.
        media: String,
    },
    /// A value XML 1.0 cannot carry (control characters, U+FFFE, U+FFFF), an empty value, or
    /// whitespace in a `Representation@id` (ISO 23009-1 5.3.5.2).
    #[error("dash: invalid {attribute} value {value:?}: {reason}")]
    InvalidText {
        /// The attribute.
        attribute: &'static str,
        /// The offending value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two representations of the period share an id (ISO 23009-1 5.3.5.2: unique within the
    /// Period).
    #[error("dash: duplicate Representation@id {id:?}")]
    DuplicateRepresentationId {
        /// The repeated id.
        id: String,
    },
    /// Two adaptation sets of the period share an id.
    #[error("dash: duplicate AdaptationSet@id {id}")]
    DuplicateAdaptationSetId {
        /// The repeated id.
        id: u32,
    },
    /// Video attributes (width, height, frame rate) in an audio adaptation set, or audio ones
    /// in a video adaptation set.
    #[error(
        "dash: representation {representation:?} does not match its AdaptationSet contentType"
    )]
    ContentTypeMismatch {
        /// The representation's id.
        representation: String,
    },
    /// A video representation without width and height, an audio one without sampling rate,
    /// a frame rate that is not finite and positive, or a zero dimension, rate or channel
    /// count.
    #[error("dash: representation {representation:?} has an invalid {what}")]
    InvalidMediaAttribute {
        /// The representation's id.
        representation: String,
        /// Which attribute.
        what: &'static str,
    },
}
