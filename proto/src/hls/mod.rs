//! HLS playlists (draft-pantos-hls-rfc8216bis, "RFC 8216bis"; written against draft -13 and
//! later, including Low-Latency HLS): typed tags, a media playlist writer (full and Playlist
//! Delta Update), a multivariant ("master") playlist writer, and the delivery directives of a
//! playlist request (`_HLS_msn`, `_HLS_part`, `_HLS_skip`).
//!
//! Layout:
//! - `tags`: one type per tag; constructors take the attributes the RFC makes mandatory, and
//!   the two tags with numeric invariants ([`PartInf`], [`ServerControl`]) check them there.
//! - `playlist`: [`MediaPlaylist`], [`MediaPlaylist::validate`], [`render_media_playlist`],
//!   [`render_media_playlist_delta`] and [`target_duration_for`].
//! - `master`: [`MasterPlaylist`], its tags ([`MediaTag`], [`VariantStream`]) and
//!   [`render_master_playlist`].
//! - `directives`: [`parse_delivery_directives`] (and its shortcut
//!   [`parse_blocking_request`]) and the blocking-reload decisions
//!   ([`BlockingRequest::is_satisfied_by`], [`BlockingRequest::check_advance`]).
//!
//! What this module does not do: it performs no I/O, reads no clock (program date-times are
//! `unix_ms` fields), and chooses no cut points or window sizes. It never decides which parts
//! or segments to list: it renders exactly the snapshot it is given, after checking that the
//! snapshot satisfies the RFC rules listed on [`MediaPlaylist::validate`]. It does not parse
//! playlists (tests use `m3u8-rs` as an independent reader).
//!
//! Invariants: a render either writes a complete playlist that passed validation or writes
//! nothing and returns the first violated rule; every duration is written with exactly three
//! decimals (milliseconds), and all numeric checks are made on those written values, so what
//! a client reads satisfies the rules even where `f64` arithmetic would be borderline.

mod attr;
mod directives;
mod master;
mod playlist;
mod tags;

pub use directives::{
    parse_blocking_request, parse_delivery_directives, BlockingRequest, DeliveryDirectives,
};
pub use master::{render_master_playlist, MasterPlaylist, MediaTag, VariantStream};
pub use playlist::{
    render_media_playlist, render_media_playlist_delta, target_duration_for, MediaPlaylist,
};
pub use tags::{
    Map, PartEntry, PartInf, PreloadHint, PreloadHintType, RenditionReport, SegmentEntry,
    SegmentStart, ServerControl,
};

/// A snapshot that would produce an invalid playlist. Rendering errors are server bugs (an
/// HTTP edge would answer 500), never caused by a viewer's request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlaylistError {
    /// `EXT-X-VERSION` is lower than a feature in the playlist requires (RFC 8216bis 8).
    #[error("hls: EXT-X-VERSION {version} is below {required}, required by {reason}")]
    VersionTooLow {
        /// The version in the snapshot.
        version: u8,
        /// The lowest version the content allows.
        required: u8,
        /// The feature that needs it.
        reason: &'static str,
    },
    /// `EXT-X-TARGETDURATION` is zero (a live playlist's reload and hold-back timing is
    /// derived from it).
    #[error("hls: EXT-X-TARGETDURATION must be at least 1 s")]
    ZeroTargetDuration,
    /// A duration attribute is negative, not finite, or absurdly large.
    #[error("hls: invalid {what}: {value} s")]
    InvalidDuration {
        /// Which attribute.
        what: &'static str,
        /// The offending value, in seconds.
        value: f64,
    },
    /// A segment's EXTINF, rounded to the nearest integer, exceeds `EXT-X-TARGETDURATION`
    /// (RFC 8216bis 4.4.3.1).
    #[error("hls: segment {msn} lasts {duration} s (rounds to {rounded}), above EXT-X-TARGETDURATION {target}")]
    SegmentExceedsTargetDuration {
        /// Media Sequence Number of the segment.
        msn: u64,
        /// Its EXTINF duration, in seconds.
        duration: f64,
        /// The duration rounded to the nearest integer.
        rounded: u64,
        /// The playlist's target duration.
        target: u32,
    },
    /// A partial segment is longer than `PART-TARGET` (RFC 8216bis 4.4.4.9).
    #[error("hls: part {part_index} of segment {msn} lasts {duration} s, above PART-TARGET {part_target} s")]
    PartExceedsTarget {
        /// Media Sequence Number of the parent segment.
        msn: u64,
        /// Part Index within the parent segment.
        part_index: u64,
        /// The part's DURATION, in seconds.
        duration: f64,
        /// The playlist's PART-TARGET, in seconds.
        part_target: f64,
    },
    /// Partial segments (or a TYPE=PART preload hint) without `EXT-X-PART-INF`, which is
    /// REQUIRED once any `EXT-X-PART` is present (RFC 8216bis 4.4.3.7).
    #[error("hls: EXT-X-PART or PRELOAD-HINT TYPE=PART without EXT-X-PART-INF")]
    MissingPartInf,
    /// `EXT-X-PART-INF` without `PART-HOLD-BACK` in `EXT-X-SERVER-CONTROL` (RFC 8216bis 4.4.3.8).
    #[error("hls: EXT-X-PART-INF requires PART-HOLD-BACK in EXT-X-SERVER-CONTROL")]
    MissingPartHoldBack,
    /// `PART-HOLD-BACK` without `EXT-X-PART-INF`: the hold-back would refer to nothing.
    #[error("hls: PART-HOLD-BACK without EXT-X-PART-INF")]
    PartHoldBackWithoutPartInf,
    /// `PART-HOLD-BACK` below three Part Target Durations (RFC 8216bis 4.4.3.8: MUST be at
    /// least twice, SHOULD be at least three times; hivecast holds itself to the SHOULD).
    #[error("hls: PART-HOLD-BACK {part_hold_back} s is below 3 x PART-TARGET {part_target} s")]
    PartHoldBackTooSmall {
        /// The PART-HOLD-BACK, in seconds.
        part_hold_back: f64,
        /// The PART-TARGET, in seconds.
        part_target: f64,
    },
    /// `HOLD-BACK` below three Target Durations (RFC 8216bis 4.4.3.8, MUST).
    #[error("hls: HOLD-BACK {hold_back} s is below 3 x EXT-X-TARGETDURATION {target}")]
    HoldBackTooSmall {
        /// The HOLD-BACK, in seconds.
        hold_back: f64,
        /// The target duration, in seconds.
        target: u32,
    },
    /// `CAN-SKIP-UNTIL` below six Target Durations (RFC 8216bis 4.4.3.8, MUST).
    #[error("hls: CAN-SKIP-UNTIL {can_skip_until} s is below 6 x EXT-X-TARGETDURATION {target}")]
    SkipBoundaryTooSmall {
        /// The CAN-SKIP-UNTIL, in seconds.
        can_skip_until: f64,
        /// The target duration, in seconds.
        target: u32,
    },
    /// A segment that needs `EXT-X-PROGRAM-DATE-TIME` has none: the first segment and every
    /// segment after a discontinuity, whenever the playlist uses program date-times at all or
    /// is a Low-Latency playlist (RFC 8216bis 6.2.1, and Appendix B.1 for LL-HLS).
    #[error("hls: segment {msn} needs EXT-X-PROGRAM-DATE-TIME")]
    MissingProgramDateTime {
        /// Media Sequence Number of the segment.
        msn: u64,
    },
    /// `EXT-X-PRELOAD-HINT` in a playlist with `EXT-X-ENDLIST` (RFC 8216bis 4.4.5.3, MUST NOT).
    #[error("hls: EXT-X-PRELOAD-HINT {uri:?} in an ended playlist")]
    PreloadHintAfterEndList {
        /// The hint's URI.
        uri: String,
    },
    /// Partial segments after the last EXTINF of an ended playlist: their parent segment
    /// would never be completed.
    #[error("hls: {count} trailing parts in an ended playlist")]
    TrailingPartsAfterEndList {
        /// How many trailing parts there are.
        count: usize,
    },
    /// A string cannot be written as an HLS value: a quoted-string must not contain `"`, CR
    /// or LF, a URI line must not contain whitespace, nothing may contain control characters
    /// (RFC 8216bis 4.1, 4.2), and no value may be empty.
    #[error("hls: invalid {attribute} value {value:?}: {reason}")]
    InvalidText {
        /// The attribute or line the value is for.
        attribute: &'static str,
        /// The offending value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A playlist URI carries a reserved `_HLS_` query parameter (RFC 8216bis 6.2.5): the
    /// delivery directives belong to the client's request, never to a URI we publish.
    #[error("hls: URI {uri:?} carries a reserved _HLS_ query parameter")]
    ReservedQueryParameter {
        /// The offending URI.
        uri: String,
    },
    /// `EXT-X-MEDIA-SEQUENCE` plus the number of segments overflows `u64`.
    #[error("hls: EXT-X-MEDIA-SEQUENCE {media_sequence} + {segments} segments overflows")]
    MediaSequenceOverflow {
        /// The first Media Sequence Number.
        media_sequence: u64,
        /// The number of segments listed.
        segments: usize,
    },
    /// A multivariant playlist without any variant stream.
    #[error("hls: multivariant playlist without EXT-X-STREAM-INF")]
    NoVariants,
    /// A variant refers to an `AUDIO` group no `EXT-X-MEDIA` tag defines (RFC 8216bis 4.4.6.2).
    #[error("hls: variant {uri:?} refers to unknown AUDIO group {group_id:?}")]
    UnknownAudioGroup {
        /// The variant's URI.
        uri: String,
        /// The missing GROUP-ID.
        group_id: String,
    },
    /// Two renditions of one group share a NAME (RFC 8216bis 4.4.6.1.1, MUST NOT).
    #[error("hls: NAME {name:?} appears twice in group {group_id:?}")]
    DuplicateRenditionName {
        /// The group.
        group_id: String,
        /// The repeated NAME.
        name: String,
    },
    /// Two renditions of one group are both DEFAULT=YES (RFC 8216bis 4.4.6.1.1, MUST NOT).
    #[error("hls: group {group_id:?} has more than one DEFAULT=YES rendition")]
    MultipleDefaults {
        /// The group.
        group_id: String,
    },
    /// DEFAULT=YES with AUTOSELECT=NO (RFC 8216bis 4.4.6.1: AUTOSELECT MUST be YES then).
    #[error("hls: rendition {name:?} is DEFAULT=YES but AUTOSELECT=NO")]
    DefaultWithoutAutoselect {
        /// The rendition's NAME.
        name: String,
    },
    /// A zero width or height in RESOLUTION, or a FRAME-RATE that is not finite and positive.
    #[error("hls: variant {uri:?} has invalid {what}")]
    InvalidVideoAttribute {
        /// The variant's URI.
        uri: String,
        /// `RESOLUTION` or `FRAME-RATE`.
        what: &'static str,
    },
}

/// A playlist request whose delivery directives are malformed or ask for something the
/// server must refuse at once: each variant is a Bad Request (HTTP 400) per RFC 8216bis
/// 6.2.5.2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectiveError {
    /// `_HLS_part` without `_HLS_msn` (RFC 8216bis 6.2.5.2: MUST return Bad Request).
    #[error("hls: _HLS_part without _HLS_msn")]
    PartWithoutMsn,
    /// A directive whose value is not what the RFC defines (a decimal-integer that fits in
    /// 64 bits for `_HLS_msn`/`_HLS_part`, `YES` or `v2` for `_HLS_skip`).
    #[error("hls: invalid {name} value {value:?}")]
    InvalidValue {
        /// The directive's name.
        name: &'static str,
        /// The offending value (truncated to 32 bytes).
        value: String,
    },
    /// The same directive twice: the request is ambiguous.
    #[error("hls: {name} given more than once")]
    Duplicate {
        /// The directive's name.
        name: &'static str,
    },
    /// `_HLS_msn` beyond the last segment's Media Sequence Number plus two
    /// (RFC 8216bis 6.2.5.2: SHOULD return Bad Request).
    #[error("hls: _HLS_msn={msn} is too far ahead (limit {limit})")]
    MsnTooFarAhead {
        /// The requested Media Sequence Number.
        msn: u64,
        /// The highest acceptable one.
        limit: u64,
    },
    /// `_HLS_part` more than the Advance Part Limit past the last partial segment
    /// (RFC 8216bis 6.2.5.2: SHOULD return Bad Request).
    #[error("hls: _HLS_msn={msn}&_HLS_part={part} is {ahead} parts ahead, above the limit {limit_parts}")]
    PartTooFarAhead {
        /// The requested Media Sequence Number.
        msn: u64,
        /// The requested Part Index.
        part: u64,
        /// How many parts past the newest one the request is (a lower bound).
        ahead: u64,
        /// The Advance Part Limit, in parts, rounded down.
        limit_parts: u64,
    },
}
