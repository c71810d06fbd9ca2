//! The body of `POST /v1/beacon`: playback events that hivecast's player page sends with
//! `navigator.sendBeacon` or `fetch` (as `text/plain` or `application/json`; the body is JSON
//! either way): one event object, or an array of at most [`MAX_EVENTS`] of them.
//!
//! ```json
//! {"sid":"6e2fb550-c457","stream":"demo","event":"heartbeat","rendition":"480p",
//!  "bitrate_kbps":1200,"buffer_ms":1500,"latency_ms":1800.5,"stall_ms":0,
//!  "dropped_frames":0,"bytes":12345}
//! ```
//!
//! `sid`, `stream` and `event` are required, the other fields optional, and fields this version
//! does not know are ignored (so the page can add fields before the server reads them).
//!
//! Not here: the content type and the HTTP status (the edge answers 400 for any
//! [`BeaconError`]), and what is done with the events (counters, the session table).
//!
//! Invariants: parsing never panics; the body is checked against [`MAX_BEACON_BYTES`] before
//! any JSON is read, so the work and the memory are O([`MAX_BEACON_BYTES`]); nesting in ignored
//! fields is skipped by serde_json with a loop (no recursion), and every other place refuses
//! a nested value at its first bracket; every returned event passes the checks listed on
//! [`BeaconEvent`].

use serde::Deserialize;

/// Largest body accepted, in bytes. A heartbeat is about 250 bytes, so a full batch of
/// [`MAX_EVENTS`] with a long error message each fits; `sendBeacon` itself caps the data a page
/// may queue at 64 KiB, so a well-behaved page never needs more.
pub const MAX_BEACON_BYTES: usize = 16 * 1024;

/// Most events in one body (the page batches what it could not send while the tab was hidden).
pub const MAX_EVENTS: usize = 32;

/// Longest `sid`, in characters (a UUID is 36).
pub const MAX_SID_LEN: usize = 64;

/// Longest stream name, in characters (the same rule as the stream names the node accepts).
pub const MAX_STREAM_LEN: usize = 64;

/// Longest rendition id, in characters (`source`, `1080p`, `audio`).
pub const MAX_RENDITION_LEN: usize = 32;

/// Characters of `message` kept; the rest is cut off (not an error: an error text from the
/// browser can be long, and its start is what matters).
pub const MAX_MESSAGE_CHARS: usize = 256;

/// Characters of an offending value echoed in a [`BeaconError`].
pub const MAX_ECHO_CHARS: usize = 64;

/// One playback event, validated:
/// - `sid`: 1 to [`MAX_SID_LEN`] characters from `[A-Za-z0-9._-]`;
/// - `stream`: 1 to [`MAX_STREAM_LEN`] characters from `[A-Za-z0-9_-]` (as stream names are);
/// - `rendition`: 1 to [`MAX_RENDITION_LEN`] characters from `[A-Za-z0-9_-]`;
/// - `latency_ms`: finite and not negative;
/// - `message`: at most [`MAX_MESSAGE_CHARS`] characters (longer ones are cut). It is the
///   page's text, unchecked otherwise: escape it before logging or displaying it.
#[derive(Debug, Clone, PartialEq)]
pub struct BeaconEvent {
    /// The playback session (the page reuses hls.js's CMCD session id).
    pub sid: String,
    /// The stream played.
    pub stream: String,
    /// What happened.
    pub kind: BeaconKind,
    /// The rendition playing.
    pub rendition: Option<String>,
    /// The bitrate of that rendition, in kbps.
    pub bitrate_kbps: Option<u32>,
    /// Media buffered ahead of the playhead, in ms.
    pub buffer_ms: Option<u32>,
    /// Distance from the live edge, in ms.
    pub latency_ms: Option<f64>,
    /// Time spent stalled (for `stall`: this stall; otherwise since the previous event), in ms.
    pub stall_ms: Option<u32>,
    /// Frames the video element dropped since playback started.
    pub dropped_frames: Option<u64>,
    /// Media bytes downloaded since playback started.
    pub bytes: Option<u64>,
    /// Free text, for `error` (the player's error details).
    pub message: Option<String>,
}

/// What a [`BeaconEvent`] reports (its `event` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BeaconKind {
    /// `start`: the first frame played.
    Start,
    /// `heartbeat`: still playing (sent periodically).
    Heartbeat,
    /// `switch`: the player changed rendition.
    Switch,
    /// `stall`: playback stalled (buffer empty) and resumed.
    Stall,
    /// `end`: the viewer left or the stream ended.
    End,
    /// `error`: a fatal player error.
    Error,
}

impl BeaconKind {
    /// Every kind.
    pub const ALL: [BeaconKind; 6] = [
        Self::Start,
        Self::Heartbeat,
        Self::Switch,
        Self::Stall,
        Self::End,
        Self::Error,
    ];

    /// The `event` value on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Heartbeat => "heartbeat",
            Self::Switch => "switch",
            Self::Stall => "stall",
            Self::End => "end",
            Self::Error => "error",
        }
    }

    /// The kind an `event` value names.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Why a beacon body was refused. Values echoed from the body are cut to [`MAX_ECHO_CHARS`].
#[derive(Debug, thiserror::Error)]
pub enum BeaconError {
    /// The body is larger than [`MAX_BEACON_BYTES`].
    #[error("beacon body of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// The body's length.
        len: usize,
        /// [`MAX_BEACON_BYTES`].
        max: usize,
    },
    /// The body is not UTF-8.
    #[error("beacon body is not UTF-8")]
    NotUtf8,
    /// The body is not a JSON event object or array of them (syntax, a missing required
    /// field, a field of the wrong type or out of its integer range, a duplicated field).
    #[error("malformed beacon: {0}")]
    Json(#[from] serde_json::Error),
    /// The array holds more than [`MAX_EVENTS`] events.
    #[error("beacon batch of {count} events is over the limit of {max}")]
    TooManyEvents {
        /// Events in the array.
        count: usize,
        /// [`MAX_EVENTS`].
        max: usize,
    },
    /// An `event` value this version does not know.
    #[error("beacon event {index}: unknown event {event:?}")]
    UnknownEvent {
        /// Position of the event in the batch (0 for a single object).
        index: usize,
        /// The value.
        event: String,
    },
    /// A field's value breaks its rule (see [`BeaconEvent`]).
    #[error("beacon event {index}: invalid {field} {value:?}")]
    InvalidField {
        /// Position of the event in the batch (0 for a single object).
        index: usize,
        /// `sid`, `stream`, `rendition` or `latency_ms`.
        field: &'static str,
        /// The value, as text.
        value: String,
    },
}

/// Parses and validates a beacon body: one event object, or an array of at most
/// [`MAX_EVENTS`] (an empty array gives no events).
pub fn parse_beacon(body: &[u8]) -> Result<Vec<BeaconEvent>, BeaconError> {
    if body.len() > MAX_BEACON_BYTES {
        return Err(BeaconError::TooLarge {
            len: body.len(),
            max: MAX_BEACON_BYTES,
        });
    }
    let text = std::str::from_utf8(body).map_err(|_| BeaconError::NotUtf8)?;
    // JSON whitespace (RFC 8259 section 2) before the first value tells object from array.
    let raws = if text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('[')
    {
        // Bounded by the body size: an event takes at least 30 bytes.
        let raws: Vec<RawEvent> = serde_json::from_str(text)?;
        if raws.len() > MAX_EVENTS {
            return Err(BeaconError::TooManyEvents {
                count: raws.len(),
                max: MAX_EVENTS,
            });
        }
        raws
    } else {
        vec![serde_json::from_str::<RawEvent>(text)?]
    };
    raws.into_iter()
        .enumerate()
        .map(|(index, raw)| raw.validate(index))
        .collect()
}

/// An event as sent, before validation.
#[derive(Deserialize)]
struct RawEvent {
    sid: String,
    stream: String,
    event: String,
    rendition: Option<String>,
    bitrate_kbps: Option<u32>,
    buffer_ms: Option<u32>,
    latency_ms: Option<f64>,
    stall_ms: Option<u32>,
    dropped_frames: Option<u64>,
    bytes: Option<u64>,
    message: Option<String>,
}

impl RawEvent {
    fn validate(self, index: usize) -> Result<BeaconEvent, BeaconError> {
        let invalid = |field, value: &str| BeaconError::InvalidField {
            index,
            field,
            value: echo(value),
        };
        let kind = BeaconKind::parse(&self.event).ok_or_else(|| BeaconError::UnknownEvent {
            index,
            event: echo(&self.event),
        })?;
        if !name_ok(&self.sid, MAX_SID_LEN, true) {
            return Err(invalid("sid", &self.sid));
        }
        // Mirrors `hivecast_actors::types::StreamName::new` (proto cannot depend on actors).
        if !name_ok(&self.stream, MAX_STREAM_LEN, false) {
            return Err(invalid("stream", &self.stream));
        }
        if let Some(r) = &self.rendition {
            if !name_ok(r, MAX_RENDITION_LEN, false) {
                return Err(invalid("rendition", r));
            }
        }
        let latency_ms = match self.latency_ms {
            // `+ 0.0` turns -0 into 0.
            Some(l) if l.is_finite() && l >= 0.0 => Some(l + 0.0),
            Some(l) => return Err(invalid("latency_ms", &l.to_string())),
            None => None,
        };
        let message = self.message.map(|mut m| {
            if let Some((cut, _)) = m.char_indices().nth(MAX_MESSAGE_CHARS) {
                m.truncate(cut);
            }
            m
        });
        Ok(BeaconEvent {
            sid: self.sid,
            stream: self.stream,
            kind,
            rendition: self.rendition,
            bitrate_kbps: self.bitrate_kbps,
            buffer_ms: self.buffer_ms,
            latency_ms,
            stall_ms: self.stall_ms,
            dropped_frames: self.dropped_frames,
            bytes: self.bytes,
            message,
        })
    }
}

/// 1 to `max` characters from `[A-Za-z0-9_-]`, and `.` when `dot` is set.
fn name_ok(s: &str, max: usize, dot: bool) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (dot && b == b'.'))
}

fn echo(s: &str) -> String {
    s.chars().take(MAX_ECHO_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEARTBEAT: &str = r#"{"sid":"6e2fb550-c457-11e9-bb97-0800200c9a66","stream":"demo",
        "event":"heartbeat","rendition":"480p","bitrate_kbps":1200,"buffer_ms":1500,
        "latency_ms":1800.5,"stall_ms":300,"dropped_frames":0,"bytes":12345}"#;

    fn one(body: &str) -> BeaconEvent {
        let mut events = parse_beacon(body.as_bytes()).expect("valid beacon");
        assert_eq!(events.len(), 1);
        events.remove(0)
    }

    #[test]
    fn full_heartbeat() {
        assert_eq!(
            one(HEARTBEAT),
            BeaconEvent {
                sid: "6e2fb550-c457-11e9-bb97-0800200c9a66".into(),
                stream: "demo".into(),
                kind: BeaconKind::Heartbeat,
                rendition: Some("480p".into()),
                bitrate_kbps: Some(1200),
                buffer_ms: Some(1500),
                latency_ms: Some(1800.5),
                stall_ms: Some(300),
                dropped_frames: Some(0),
                bytes: Some(12345),
                message: None,
            }
        );
    }

    #[test]
    fn minimal_event_and_every_kind() {
        for kind in BeaconKind::ALL {
            let body = format!(
                r#"{{"sid":"s.1","stream":"a_b-C","event":"{}"}}"#,
                kind.as_str()
            );
            let e = one(&body);
            assert_eq!(
                (e.kind, e.sid.as_str(), e.stream.as_str()),
                (kind, "s.1", "a_b-C")
            );
            assert_eq!(e.rendition, None);
            assert_eq!(e.latency_ms, None);
            assert_eq!(e.message, None);
        }
    }

    #[test]
    fn batches() {
        let body = format!(
            r#" [{HEARTBEAT}, {{"sid":"x","stream":"demo","event":"stall","stall_ms":2300}},
                {{"sid":"x","stream":"demo","event":"end"}}] "#
        );
        let events = parse_beacon(body.as_bytes()).unwrap();
        let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [BeaconKind::Heartbeat, BeaconKind::Stall, BeaconKind::End]
        );
        assert_eq!(events[1].stall_ms, Some(2300));
        assert!(parse_beacon(b"[]").unwrap().is_empty());

        let event = r#"{"sid":"x","stream":"demo","event":"heartbeat"}"#;
        let full = format!("[{}]", vec![event; MAX_EVENTS].join(","));
        assert_eq!(parse_beacon(full.as_bytes()).unwrap().len(), MAX_EVENTS);
        let over = format!("[{}]", vec![event; MAX_EVENTS + 1].join(","));
        assert!(matches!(
            parse_beacon(over.as_bytes()),
            Err(BeaconError::TooManyEvents { count: 33, max: 32 })
        ));
    }

    #[test]
    fn unknown_fields_and_nulls_are_ignored() {
        let e = one(
            r#"{"sid":"x","stream":"demo","event":"start","rendition":null,
                "player":{"name":"hls.js","version":"1.7.4","extra":[1,[2,[3]]]},"v":2}"#,
        );
        assert_eq!(e.kind, BeaconKind::Start);
        assert_eq!(e.rendition, None);
    }

    #[test]
    fn message_is_cut_at_256_characters() {
        let long = "é".repeat(300);
        let e = one(&format!(
            r#"{{"sid":"x","stream":"demo","event":"error","message":"{long}"}}"#
        ));
        let m = e.message.unwrap();
        assert_eq!(m.chars().count(), MAX_MESSAGE_CHARS);
        assert!(long.starts_with(&m));
        let e = one(r#"{"sid":"x","stream":"demo","event":"error","message":"fragLoadError\n"}"#);
        assert_eq!(e.message.as_deref(), Some("fragLoadError\n"));
    }

    #[test]
    fn refusals() {
        type Expect = fn(&BeaconError) -> bool;
        let cases: [(&str, Expect); 16] = [
            (
                r#"{"sid":"x","stream":"demo","event":"pause"}"#,
                |e| matches!(e, BeaconError::UnknownEvent { index: 0, event } if event == "pause"),
            ),
            (
                r#"[{"sid":"x","stream":"demo","event":"end"},{"sid":"x","stream":"demo","event":"Start"}]"#,
                |e| matches!(e, BeaconError::UnknownEvent { index: 1, event } if event == "Start"),
            ),
            (r#"{"sid":"","stream":"demo","event":"end"}"#, |e| {
                matches!(e, BeaconError::InvalidField { field: "sid", .. })
            }),
            (r#"{"sid":"a b","stream":"demo","event":"end"}"#, |e| {
                matches!(e, BeaconError::InvalidField { field: "sid", .. })
            }),
            (r#"{"sid":"x","stream":"de.mo","event":"end"}"#, |e| {
                matches!(
                    e,
                    BeaconError::InvalidField {
                        field: "stream",
                        ..
                    }
                )
            }),
            (r#"{"sid":"x","stream":"","event":"end"}"#, |e| {
                matches!(
                    e,
                    BeaconError::InvalidField {
                        field: "stream",
                        ..
                    }
                )
            }),
            (
                r#"{"sid":"x","stream":"demo","event":"end","rendition":"4/80p"}"#,
                |e| {
                    matches!(
                        e,
                        BeaconError::InvalidField {
                            field: "rendition",
                            ..
                        }
                    )
                },
            ),
            (
                r#"{"sid":"x","stream":"demo","event":"end","latency_ms":-1}"#,
                |e| matches!(e, BeaconError::InvalidField { field: "latency_ms", value, .. } if value == "-1"),
            ),
            (
                r#"{"sid":"x","stream":"demo","event":"end","latency_ms":1e999}"#,
                |e| matches!(e, BeaconError::Json(_)),
            ),
            (
                r#"{"sid":"x","stream":"demo","event":"end","bitrate_kbps":-5}"#,
                |e| matches!(e, BeaconError::Json(_)),
            ),
            (
                r#"{"sid":"x","stream":"demo","event":"end","buffer_ms":4294967296}"#,
                |e| matches!(e, BeaconError::Json(_)),
            ),
            (r#"{"sid":"x","stream":"demo"}"#, |e| {
                matches!(e, BeaconError::Json(_))
            }),
            (
                r#"{"sid":"x","sid":"y","stream":"demo","event":"end"}"#,
                |e| matches!(e, BeaconError::Json(_)),
            ),
            (
                r#"{"sid":"x","stream":"demo","event":"end"} trailing"#,
                |e| matches!(e, BeaconError::Json(_)),
            ),
            ("", |e| matches!(e, BeaconError::Json(_))),
            ("\u{feff}{}", |e| matches!(e, BeaconError::Json(_))),
        ];
        for (body, expected) in cases {
            let err = parse_beacon(body.as_bytes()).expect_err(body);
            assert!(expected(&err), "{body}: {err:?}");
        }
        let long_sid = format!(
            r#"{{"sid":"{}","stream":"demo","event":"end"}}"#,
            "s".repeat(65)
        );
        let err = parse_beacon(long_sid.as_bytes()).unwrap_err();
        assert!(
            matches!(&err, BeaconError::InvalidField { field: "sid", value, .. } if value.len() == MAX_ECHO_CHARS),
            "{err:?}"
        );
        assert!(matches!(
            parse_beacon(b"{\"sid\":\"\xff\"}"),
            Err(BeaconError::NotUtf8)
        ));
    }

    #[test]
    fn size_is_checked_before_parsing() {
        let mut body = HEARTBEAT.as_bytes().to_vec();
        body.resize(MAX_BEACON_BYTES, b' ');
        assert_eq!(parse_beacon(&body).unwrap().len(), 1);
        body.push(b' ');
        assert!(matches!(
            parse_beacon(&body),
            Err(BeaconError::TooLarge { len, max: MAX_BEACON_BYTES }) if len == MAX_BEACON_BYTES + 1
        ));
    }

    #[test]
    fn deep_nesting_never_recurses() {
        // In an ignored field, serde_json skips nesting with a loop and a byte stack.
        let nested = |depth: usize| {
            format!(
                r#"{{"sid":"x","stream":"demo","event":"end","x":{}{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            )
        };
        assert_eq!(parse_beacon(nested(8000).as_bytes()).unwrap().len(), 1);
        assert!(matches!(
            parse_beacon(&nested(7000).as_bytes()[..9000]),
            Err(BeaconError::Json(_))
        ));
        // Where an event or a field is expected, the first '[' or '{' too many is an error.
        let deep = format!("{}{}", "[".repeat(8000), "]".repeat(8000));
        assert!(matches!(
            parse_beacon(deep.as_bytes()),
            Err(BeaconError::Json(_))
        ));
        let deep_field = format!(
            r#"{{"sid":{}{},"stream":"demo","event":"end"}}"#,
            "{\"a\":".repeat(2000),
            "}".repeat(2000)
        );
        assert!(matches!(
            parse_beacon(deep_field.as_bytes()),
            Err(BeaconError::Json(_))
        ));
    }

    #[test]
    fn negative_zero_latency_is_zero() {
        let e = one(r#"{"sid":"x","stream":"demo","event":"end","latency_ms":-0.0}"#);
        assert!(e.latency_ms.unwrap().is_sign_positive());
    }

    proptest! {
        /// Arbitrary bytes never panic, and whatever parses passes the checks.
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            check(&body);
        }

        /// Arbitrary JSON-ish text (the alphabet of a beacon) never panics either.
        #[test]
        fn arbitrary_json_text_never_panics(
            body in r#"[\[\]{}",:0-9a-z_. \-e]{0,200}"#,
            prefix in prop::sample::select(vec!["", "[", r#"{"sid":"x","stream":"demo","event":"#]),
        ) {
            check(format!("{prefix}{body}").as_bytes());
        }

        /// Valid events in any batch size up to the limit parse back to what was written.
        #[test]
        fn valid_events_round_trip(
            events in proptest::collection::vec(
                (
                    "[A-Za-z0-9._-]{1,64}",
                    "[A-Za-z0-9_-]{1,64}",
                    prop::sample::select(BeaconKind::ALL.to_vec()),
                    proptest::option::of("[A-Za-z0-9_-]{1,32}"),
                    proptest::option::of(any::<u32>()),
                    proptest::option::of(0.0f64..1e7),
                    proptest::option::of(any::<u64>()),
                    proptest::option::of("\\PC{0,40}"),
                ),
                0..=MAX_EVENTS,
            ),
        ) {
            let mut written = Vec::new();
            let mut expected = Vec::new();
            for (sid, stream, kind, rendition, bitrate, latency, bytes, message) in events {
                let mut obj = serde_json::json!({"sid": sid, "stream": stream, "event": kind.as_str()});
                obj["rendition"] = serde_json::json!(rendition);
                obj["bitrate_kbps"] = serde_json::json!(bitrate);
                obj["latency_ms"] = serde_json::json!(latency);
                obj["bytes"] = serde_json::json!(bytes);
                obj["message"] = serde_json::json!(message);
                written.push(obj);
                expected.push(BeaconEvent {
                    sid, stream, kind, rendition, bitrate_kbps: bitrate, buffer_ms: None,
                    latency_ms: latency, stall_ms: None, dropped_frames: None, bytes, message,
                });
            }
            let body = serde_json::to_vec(&written).unwrap();
            prop_assume!(body.len() <= MAX_BEACON_BYTES);
            let parsed = parse_beacon(&body).unwrap();
            prop_assert_eq!(parsed.len(), expected.len());
            for (p, e) in parsed.iter().zip(&expected) {
                // serde_json's default float parser may be 1 ulp off on a round trip.
                let (pl, el) = (p.latency_ms, e.latency_ms);
                prop_assert_eq!(pl.is_some(), el.is_some());
                if let (Some(pl), Some(el)) = (pl, el) {
                    prop_assert!((pl - el).abs() <= el * 4.0 * f64::EPSILON);
                }
                let strip = |e: &BeaconEvent| BeaconEvent { latency_ms: None, ..e.clone() };
                prop_assert_eq!(strip(p), strip(e));
            }
        }
    }

    /// The invariants the fuzz target checks too, in short.
    fn check(body: &[u8]) {
        match parse_beacon(body) {
            Ok(events) => {
                assert!(events.len() <= MAX_EVENTS);
                for e in events {
                    assert!(name_ok(&e.sid, MAX_SID_LEN, true));
                    assert!(name_ok(&e.stream, MAX_STREAM_LEN, false));
                    assert!(e.latency_ms.is_none_or(|l| l.is_finite() && l >= 0.0));
                    assert!(e
                        .message
                        .is_none_or(|m| m.chars().count() <= MAX_MESSAGE_CHARS));
                }
            }
            Err(BeaconError::UnknownEvent { event, .. }) => {
                assert!(event.chars().count() <= MAX_ECHO_CHARS)
            }
            Err(BeaconError::InvalidField { value, .. }) => {
                assert!(value.chars().count() <= MAX_ECHO_CHARS)
            }
            Err(_) => {}
        }
    }
}
