//! Common Media Client Data (CMCD, CTA-5004): what a player reports about itself with each
//! request, read from the `CMCD` query parameter or the `CMCD-Request`, `CMCD-Object`,
//! `CMCD-Status` and `CMCD-Session` headers, and written back for the load generator and tests.
//!
//! A payload is a Structured Field Dictionary (RFC 8941 3.2, which CTA-5004 section 3.1 builds
//! on): comma-separated `key=value` members, or a bare `key` for a boolean true (false is sent
//! by leaving the key out). Strings are double-quoted with `\"` and `\\` escapes; `ot`, `sf` and
//! `st` are unquoted tokens; numbers are integers, except `pr`, which may be a decimal.
//!
//! Not here: what the server does with the data (the HTTP edge decides whether a refused
//! payload fails the request or is just not recorded), and CMCD v2's event mode (a POST body).
//!
//! Leniency, so that every player seen in the field parses: optional whitespace around members
//! (`CMCD-Request: bl=21300, su`) and empty members are skipped; `?1`/`?0` booleans are read like
//! bare keys; parameters (`;name=value`) are skipped; a CMCD v2 inner list (hls.js in v2 mode
//! sends `br=(3200)` and `nor=("seg.m4s")`) gives its first item; strings may hold non-ASCII
//! characters (hls.js serializes them, although RFC 8941 strings are ASCII); a token value this
//! version does not know (`ot=zz`) leaves the field unset. Keys this version does not know,
//! including the hyphenated custom keys (`com.example-myKey`), are checked for syntax and then
//! ignored, so a newer player never breaks the parse.
//!
//! Invariants: parsing never panics; it allocates only the strings it returns (O(input)); a
//! payload is at most [`MAX_PAYLOAD_LEN`] bytes; errors name the key (at most
//! [`MAX_ERROR_KEY_CHARS`] characters of it); [`encode`] writes a payload that [`parse_payload`]
//! reads back to an equal value and that is never longer than the payload it came from.

use std::fmt::Write as _;

/// Largest payload accepted, in bytes: the query parameter's value after percent-decoding, or
/// the header values together, counted as if joined with one separator each. CTA-5004 sets no
/// limit; a full v1 payload with 64-character ids and a long `nor` is well under 1 KiB, so 4 KiB
/// leaves room for custom keys while bounding the work per request.
pub const MAX_PAYLOAD_LEN: usize = 4096;

/// Longest `sid` and `cid`, in characters (CTA-5004: "maximum length is 64 characters").
pub const MAX_ID_CHARS: usize = 64;

/// Longest other string value (`nor`, `nrr`), in characters: a relative URL or a byte range.
pub const MAX_STRING_CHARS: usize = 256;

/// Largest playback rate (`pr`) accepted. Browsers clamp `HTMLMediaElement.playbackRate` to 16
/// (Chrome) and trick play rarely goes past 64x; the bound also keeps [`encode`] from writing a
/// longer number than it read (a 39-digit rate rounds up to a 40-digit `f32`).
pub const MAX_PLAYBACK_RATE: f32 = 1000.0;

/// Most characters of a key echoed in an error (custom keys have no length limit of their own).
pub const MAX_ERROR_KEY_CHARS: usize = 32;

/// The query parameter that carries CMCD (CTA-5004 section 2.2).
pub const QUERY_PARAM: &str = "CMCD";

/// The request headers that carry CMCD (CTA-5004 section 2.1), in the order [`encode_headers`]
/// writes them.
pub const HEADER_NAMES: [&str; 4] = ["CMCD-Object", "CMCD-Request", "CMCD-Session", "CMCD-Status"];

/// The CMCD v1 data of one request (CTA-5004 section 3.3). Every field is optional: a player
/// sends only the keys it knows and has enabled, and a boolean is `false` when its key is absent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cmcd {
    /// `sid`, Session ID: a GUID identifying the playback session (at most 64 characters).
    pub sid: Option<String>,
    /// `cid`, Content ID: identifies the content being played (at most 64 characters).
    pub cid: Option<String>,
    /// `br`, Encoded bitrate of the requested object, in kbps.
    pub br: Option<u32>,
    /// `bl`, Buffer length when the request was made, in ms (rounded to 100 ms).
    pub bl: Option<u32>,
    /// `bs`, Buffer starvation: the buffer ran empty since the previous request.
    pub bs: bool,
    /// `su`, Startup: the object is needed urgently, at startup, a seek or after a stall.
    pub su: bool,
    /// `mtp`, Measured throughput between client and server, in kbps (rounded to 100 kbps).
    pub mtp: Option<u32>,
    /// `d`, Object duration: the playback duration of the requested object, in ms.
    pub d: Option<u32>,
    /// `dl`, Deadline: how soon the object must arrive to avoid a stall, in ms (rounded to 100).
    pub dl: Option<u32>,
    /// `rtp`, Requested maximum throughput the client considers enough, in kbps.
    pub rtp: Option<u32>,
    /// `tb`, Top bitrate: the highest bitrate rendition the client may switch to, in kbps.
    pub tb: Option<u32>,
    /// `nor`, Next object request: the relative URL of the next object (URL-encoded, as sent).
    pub nor: Option<String>,
    /// `nrr`, Next range request: the byte range of the next object, `"<start>-<end>"`.
    pub nrr: Option<String>,
    /// `ot`, Object type of the requested object.
    pub ot: Option<ObjectType>,
    /// `sf`, Streaming format of the session.
    pub sf: Option<StreamingFormat>,
    /// `st`, Stream type: VOD or live.
    pub st: Option<StreamType>,
    /// `pr`, Playback rate: 1 for real time, 2 for double speed, 0 when not playing; finite and
    /// at most [`MAX_PLAYBACK_RATE`].
    pub pr: Option<f32>,
    /// `v`, CMCD version; absent means version 1.
    pub v: Option<u32>,
}

/// `ot`, the type of the requested object (CTA-5004 table 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectType {
    /// `m`: a text file, such as a manifest or playlist.
    Manifest,
    /// `a`: audio only.
    Audio,
    /// `v`: video only.
    Video,
    /// `av`: muxed audio and video.
    Muxed,
    /// `i`: an init segment.
    Init,
    /// `c`: a caption or subtitle.
    Caption,
    /// `tt`: an ISOBMFF timed text track.
    TimedText,
    /// `k`: a cryptographic key, license or certificate.
    Key,
    /// `o`: other.
    Other,
}

impl ObjectType {
    /// Every object type, in table order.
    pub const ALL: [ObjectType; 9] = [
        Self::Manifest,
        Self::Audio,
        Self::Video,
        Self::Muxed,
        Self::Init,
        Self::Caption,
        Self::TimedText,
        Self::Key,
        Self::Other,
    ];

    /// The token on the wire.
    pub fn token(self) -> &'static str {
        match self {
            Self::Manifest => "m",
            Self::Audio => "a",
            Self::Video => "v",
            Self::Muxed => "av",
            Self::Init => "i",
            Self::Caption => "c",
            Self::TimedText => "tt",
            Self::Key => "k",
            Self::Other => "o",
        }
    }

    /// The object type a token names, if this version knows it.
    pub fn from_token(token: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.token() == token)
    }
}

/// `sf`, the streaming format of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamingFormat {
    /// `d`: MPEG DASH.
    Dash,
    /// `h`: HTTP Live Streaming.
    Hls,
    /// `s`: Smooth Streaming.
    Smooth,
    /// `o`: other.
    Other,
}

impl StreamingFormat {
    /// Every streaming format.
    pub const ALL: [StreamingFormat; 4] = [Self::Dash, Self::Hls, Self::Smooth, Self::Other];

    /// The token on the wire.
    pub fn token(self) -> &'static str {
        match self {
            Self::Dash => "d",
            Self::Hls => "h",
            Self::Smooth => "s",
            Self::Other => "o",
        }
    }

    /// The streaming format a token names, if this version knows it.
    pub fn from_token(token: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.token() == token)
    }
}

/// `st`, the stream type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamType {
    /// `v`: all segments are available (video on demand).
    Vod,
    /// `l`: segments become available over time (live).
    Live,
}

impl StreamType {
    /// Every stream type.
    pub const ALL: [StreamType; 2] = [Self::Vod, Self::Live];

    /// The token on the wire.
    pub fn token(self) -> &'static str {
        match self {
            Self::Vod => "v",
            Self::Live => "l",
        }
    }

    /// The stream type a token names, if this version knows it.
    pub fn from_token(token: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.token() == token)
    }
}

/// Why a CMCD payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmcdError {
    /// The payload is longer than [`MAX_PAYLOAD_LEN`].
    #[error("CMCD payload of {len} bytes is over the limit of {max}")]
    TooLong {
        /// Its length in bytes (decoded, for a query parameter; joined, for headers).
        len: usize,
        /// [`MAX_PAYLOAD_LEN`].
        max: usize,
    },
    /// A header value, or the query parameter once percent-decoded, is not UTF-8.
    #[error("CMCD payload is not UTF-8")]
    NotUtf8,
    /// A member is malformed.
    #[error("CMCD key {key:?}: {problem}")]
    Malformed {
        /// The member's key (its first [`MAX_ERROR_KEY_CHARS`] characters; empty when the key
        /// itself is missing).
        key: String,
        /// What is wrong with it.
        problem: CmcdProblem,
    },
    /// A string value is longer than its key allows.
    #[error("CMCD key {key:?}: string of {len} characters is over the limit of {max}")]
    StringTooLong {
        /// The key.
        key: &'static str,
        /// The string's length in characters, once unescaped.
        len: usize,
        /// [`MAX_ID_CHARS`] or [`MAX_STRING_CHARS`].
        max: usize,
    },
}

/// What is wrong with a malformed member ([`CmcdError::Malformed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CmcdProblem {
    /// The key is empty or holds characters other than printable ASCII (or `"`, `(`, `)`).
    #[error("invalid key")]
    InvalidKey,
    /// `key=` with nothing after it.
    #[error("missing value")]
    MissingValue,
    /// A control character, a non-ASCII character or a quote outside a string.
    #[error("invalid character outside a string")]
    InvalidChar,
    /// A control character inside a string.
    #[error("control character in a string")]
    ControlCharInString,
    /// A string without its closing quote.
    #[error("unterminated string")]
    UnterminatedString,
    /// A backslash not followed by `"` or `\`.
    #[error("invalid escape in a string")]
    InvalidEscape,
    /// An inner list without its closing parenthesis, or items not separated by spaces.
    #[error("malformed inner list")]
    MalformedList,
    /// Something other than `,` after the member.
    #[error("unexpected characters after the value")]
    TrailingCharacters,
    /// A boolean other than `?0` or `?1`, or a value on a boolean key.
    #[error("expected a boolean (bare key, ?1 or ?0)")]
    NotABoolean,
    /// The value of an integer key is not a non-negative decimal integer.
    #[error("expected a non-negative integer")]
    NotAnInteger,
    /// The integer does not fit in 32 bits.
    #[error("integer over 4294967295")]
    IntegerOverflow,
    /// The value of `pr` is not a non-negative decimal number.
    #[error("expected a non-negative decimal number")]
    NotADecimal,
    /// The value of `pr` is over [`MAX_PLAYBACK_RATE`].
    #[error("playback rate over the limit")]
    DecimalOutOfRange,
    /// The value of a string key is not a quoted string.
    #[error("expected a quoted string")]
    NotAString,
    /// The value of a token key is not a token.
    #[error("expected a token")]
    NotAToken,
}

/// Parses one CMCD payload: the decoded value of the `CMCD` query parameter, or the value of
/// one `CMCD-*` header. An empty payload gives `Cmcd::default()`. A key given twice takes its
/// last value.
pub fn parse_payload(s: &str) -> Result<Cmcd, CmcdError> {
    if s.len() > MAX_PAYLOAD_LEN {
        return Err(CmcdError::TooLong {
            len: s.len(),
            max: MAX_PAYLOAD_LEN,
        });
    }
    let mut out = Cmcd::default();
    parse_into(s, &mut out)?;
    Ok(out)
}

/// Adds the keys present in `other` to `into`, as the union of the four CMCD headers does: a
/// value `other` has replaces the one in `into`, and a boolean is true when either has it (a
/// false boolean is the absence of its key).
pub fn merge(into: &mut Cmcd, other: Cmcd) {
    // Destructured so that a new field cannot be forgotten here.
    let Cmcd {
        sid,
        cid,
        br,
        bl,
        bs,
        su,
        mtp,
        d,
        dl,
        rtp,
        tb,
        nor,
        nrr,
        ot,
        sf,
        st,
        pr,
        v,
    } = other;
    fn take<T>(into: &mut Option<T>, other: Option<T>) {
        if other.is_some() {
            *into = other;
        }
    }
    take(&mut into.sid, sid);
    take(&mut into.cid, cid);
    take(&mut into.br, br);
    take(&mut into.bl, bl);
    into.bs |= bs;
    into.su |= su;
    take(&mut into.mtp, mtp);
    take(&mut into.d, d);
    take(&mut into.dl, dl);
    take(&mut into.rtp, rtp);
    take(&mut into.tb, tb);
    take(&mut into.nor, nor);
    take(&mut into.nrr, nrr);
    take(&mut into.ot, ot);
    take(&mut into.sf, sf);
    take(&mut into.st, st);
    take(&mut into.pr, pr);
    take(&mut into.v, v);
}

/// Finds the `CMCD` parameter in a query string (with or without its leading `?`) and parses
/// it; `Ok(None)` when there is none.
///
/// Parameters are `&`-separated `name=value` pairs; the first one named exactly `CMCD` is used
/// (as `URLSearchParams.get` does). Its value is decoded as `application/x-www-form-urlencoded`,
/// as the WHATWG URL standard does it: `%XX` is a byte, `+` is a space (hls.js 1.7 writes the
/// parameter with `URLSearchParams.set`, which encodes a space as `+` and a `+` as `%2B`; older
/// players use `encodeURIComponent`, which never leaves a raw `+`), and a `%` not followed by
/// two hex digits stays as it is.
pub fn from_query(raw_query: &str) -> Result<Option<Cmcd>, CmcdError> {
    let query = raw_query.strip_prefix('?').unwrap_or(raw_query);
    let Some(value) = query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (name == QUERY_PARAM).then_some(value)
    }) else {
        return Ok(None);
    };
    let len = decoded_len(value.as_bytes());
    if len > MAX_PAYLOAD_LEN {
        return Err(CmcdError::TooLong {
            len,
            max: MAX_PAYLOAD_LEN,
        });
    }
    let decoded = form_decode(value.as_bytes(), len);
    let payload = String::from_utf8(decoded).map_err(|_| CmcdError::NotUtf8)?;
    parse_payload(&payload).map(Some)
}

/// Parses the raw values of the `CMCD-Request`, `CMCD-Object`, `CMCD-Status` and `CMCD-Session`
/// headers, in any order (a header sent twice gives two values), into their union: each value
/// is parsed alone and [`merge`]d into the result in the order given. `Ok(None)` when no value
/// is given.
///
/// The values together must fit in [`MAX_PAYLOAD_LEN`], counted as if joined with one
/// separator between them (how HTTP folds repeated fields), and [`CmcdError::TooLong`] wins
/// over any other error.
pub fn from_headers<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Option<Cmcd>, CmcdError> {
    let mut out: Option<Cmcd> = None;
    let mut first_error = None;
    let mut len = 0usize;
    for (i, value) in values.into_iter().enumerate() {
        len = len
            .saturating_add(value.len())
            .saturating_add(usize::from(i > 0));
        if first_error.is_some() || len > MAX_PAYLOAD_LEN {
            // Keep counting: the reported length is the whole.
            continue;
        }
        let cmcd = out.get_or_insert_with(Cmcd::default);
        let parsed = std::str::from_utf8(value)
            .map_err(|_| CmcdError::NotUtf8)
            .and_then(|s| {
                let mut one = Cmcd::default();
                parse_into(s, &mut one).map(|()| one)
            });
        match parsed {
            Ok(one) => merge(cmcd, one),
            Err(e) => first_error = Some(e),
        }
    }
    if len > MAX_PAYLOAD_LEN {
        return Err(CmcdError::TooLong {
            len,
            max: MAX_PAYLOAD_LEN,
        });
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Writes the payload of `cmcd`: its keys in alphabetical order (CTA-5004 section 3.2 asks
/// clients to sort them), without whitespace, booleans as bare keys, `pr` as the shortest
/// decimal that reads back as the same `f32`. Empty when nothing is set.
pub fn encode(cmcd: &Cmcd) -> String {
    let mut w = Writer::default();
    w.int("bl", cmcd.bl);
    w.int("br", cmcd.br);
    w.flag("bs", cmcd.bs);
    w.string("cid", cmcd.cid.as_deref());
    w.int("d", cmcd.d);
    w.int("dl", cmcd.dl);
    w.int("mtp", cmcd.mtp);
    w.string("nor", cmcd.nor.as_deref());
    w.string("nrr", cmcd.nrr.as_deref());
    w.token("ot", cmcd.ot.map(ObjectType::token));
    if let Some(pr) = cmcd.pr {
        w.key("pr");
        // Display writes the shortest digits that round-trip, never an exponent.
        let _ = write!(w.out, "{pr}");
    }
    w.int("rtp", cmcd.rtp);
    w.token("sf", cmcd.sf.map(StreamingFormat::token));
    w.string("sid", cmcd.sid.as_deref());
    w.token("st", cmcd.st.map(StreamType::token));
    w.flag("su", cmcd.su);
    w.int("tb", cmcd.tb);
    w.int("v", cmcd.v);
    w.out
}

/// Writes `CMCD=<payload>` for a query string, the payload percent-encoded as
/// `encodeURIComponent` does (CTA-5004 section 2.2). Empty when nothing is set.
pub fn encode_query(cmcd: &Cmcd) -> String {
    let payload = encode(cmcd);
    if payload.is_empty() {
        return String::new();
    }
    let mut out = String::with_capacity(QUERY_PARAM.len() + 1 + payload.len() * 3);
    out.push_str(QUERY_PARAM);
    out.push('=');
    for b in payload.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Writes `cmcd` as CMCD headers: each key in the header CTA-5004 table 1 assigns it
/// (`CMCD-Object`: br d ot tb; `CMCD-Request`: bl dl mtp nor nrr su; `CMCD-Session`: cid pr sf
/// sid st v; `CMCD-Status`: bs rtp), as `(name, value)` pairs in [`HEADER_NAMES`] order, without
/// the headers that would be empty.
pub fn encode_headers(cmcd: &Cmcd) -> Vec<(&'static str, String)> {
    let object = Cmcd {
        br: cmcd.br,
        d: cmcd.d,
        ot: cmcd.ot,
        tb: cmcd.tb,
        ..Cmcd::default()
    };
    let request = Cmcd {
        bl: cmcd.bl,
        dl: cmcd.dl,
        mtp: cmcd.mtp,
        nor: cmcd.nor.clone(),
        nrr: cmcd.nrr.clone(),
        su: cmcd.su,
        ..Cmcd::default()
    };
    let session = Cmcd {
        cid: cmcd.cid.clone(),
        pr: cmcd.pr,
        sf: cmcd.sf,
        sid: cmcd.sid.clone(),
        st: cmcd.st,
        v: cmcd.v,
        ..Cmcd::default()
    };
    let status = Cmcd {
        bs: cmcd.bs,
        rtp: cmcd.rtp,
        ..Cmcd::default()
    };
    HEADER_NAMES
        .into_iter()
        .zip([object, request, session, status])
        .map(|(name, shard)| (name, encode(&shard)))
        .filter(|(_, value)| !value.is_empty())
        .collect()
}

/// Appends `key=value` members to a payload.
#[derive(Default)]
struct Writer {
    out: String,
}

impl Writer {
    fn key(&mut self, key: &str) {
        if !self.out.is_empty() {
            self.out.push(',');
        }
        self.out.push_str(key);
        self.out.push('=');
    }

    fn int(&mut self, key: &str, value: Option<u32>) {
        if let Some(v) = value {
            self.key(key);
            let _ = write!(self.out, "{v}");
        }
    }

    fn flag(&mut self, key: &str, value: bool) {
        if value {
            if !self.out.is_empty() {
                self.out.push(',');
            }
            self.out.push_str(key);
        }
    }

    fn token(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.key(key);
            self.out.push_str(v);
        }
    }

    fn string(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.key(key);
            self.out.push('"');
            for c in v.chars() {
                if c == '"' || c == '\\' {
                    self.out.push('\\');
                }
                self.out.push(c);
            }
            self.out.push('"');
        }
    }
}

/// The known keys, and the type of each one's value.
#[derive(Clone, Copy)]
enum Field {
    Br,
    Bl,
    Bs,
    Cid,
    D,
    Dl,
    Mtp,
    Nor,
    Nrr,
    Ot,
    Pr,
    Rtp,
    Sf,
    Sid,
    St,
    Su,
    Tb,
    V,
}

impl Field {
    fn from_key(key: &str) -> Option<Self> {
        Some(match key {
            "br" => Self::Br,
            "bl" => Self::Bl,
            "bs" => Self::Bs,
            "cid" => Self::Cid,
            "d" => Self::D,
            "dl" => Self::Dl,
            "mtp" => Self::Mtp,
            "nor" => Self::Nor,
            "nrr" => Self::Nrr,
            "ot" => Self::Ot,
            "pr" => Self::Pr,
            "rtp" => Self::Rtp,
            "sf" => Self::Sf,
            "sid" => Self::Sid,
            "st" => Self::St,
            "su" => Self::Su,
            "tb" => Self::Tb,
            "v" => Self::V,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Br => "br",
            Self::Bl => "bl",
            Self::Bs => "bs",
            Self::Cid => "cid",
            Self::D => "d",
            Self::Dl => "dl",
            Self::Mtp => "mtp",
            Self::Nor => "nor",
            Self::Nrr => "nrr",
            Self::Ot => "ot",
            Self::Pr => "pr",
            Self::Rtp => "rtp",
            Self::Sf => "sf",
            Self::Sid => "sid",
            Self::St => "st",
            Self::Su => "su",
            Self::Tb => "tb",
            Self::V => "v",
        }
    }
}

/// A member's value, as far as this parser cares: `None` for an empty inner list.
#[derive(Clone, Copy)]
enum Bare<'a> {
    /// A bare key, `?1` or `?0`.
    Bool(bool),
    /// The raw contents of a quoted string, between the quotes, escapes still in (checked).
    Str(&'a str),
    /// Anything else (an integer, a decimal, a token, a byte sequence, a date, a display
    /// string), as written: printable ASCII without `"` or `(`.
    Other(&'a str),
}

fn malformed(key: &str, problem: CmcdProblem) -> CmcdError {
    CmcdError::Malformed {
        key: key.chars().take(MAX_ERROR_KEY_CHARS).collect(),
        problem,
    }
}

/// Parses the members of `s` into `out` (the length was checked by the caller).
fn parse_into(s: &str, out: &mut Cmcd) -> Result<(), CmcdError> {
    let mut lx = Lexer { s, pos: 0 };
    loop {
        lx.skip_ows();
        match lx.peek() {
            None => return Ok(()),
            // Empty member (`a=1,,b=2`, a trailing comma): skipped.
            Some(b',') => {
                lx.pos += 1;
                continue;
            }
            Some(_) => {}
        }
        let key = lx.key().map_err(|(k, p)| malformed(k, p))?;
        let value = lx.member_value().map_err(|p| malformed(key, p))?;
        lx.skip_ows();
        match lx.peek() {
            None | Some(b',') => {}
            Some(_) => return Err(malformed(key, CmcdProblem::TrailingCharacters)),
        }
        if let Some(field) = Field::from_key(key) {
            apply(out, field, value)?;
        }
    }
}

/// Stores one member's value.
fn apply(out: &mut Cmcd, field: Field, value: Option<Bare<'_>>) -> Result<(), CmcdError> {
    let key = field.name();
    let bad = |problem| malformed(key, problem);
    match field {
        Field::Br => out.br = integer(value).map_err(bad)?,
        Field::Bl => out.bl = integer(value).map_err(bad)?,
        Field::D => out.d = integer(value).map_err(bad)?,
        Field::Dl => out.dl = integer(value).map_err(bad)?,
        Field::Mtp => out.mtp = integer(value).map_err(bad)?,
        Field::Rtp => out.rtp = integer(value).map_err(bad)?,
        Field::Tb => out.tb = integer(value).map_err(bad)?,
        Field::V => out.v = integer(value).map_err(bad)?,
        Field::Bs => out.bs = boolean(value).map_err(bad)?,
        Field::Su => out.su = boolean(value).map_err(bad)?,
        Field::Sid => out.sid = string(key, value, MAX_ID_CHARS)?,
        Field::Cid => out.cid = string(key, value, MAX_ID_CHARS)?,
        Field::Nor => out.nor = string(key, value, MAX_STRING_CHARS)?,
        Field::Nrr => out.nrr = string(key, value, MAX_STRING_CHARS)?,
        Field::Ot => out.ot = token(value).map_err(bad)?.and_then(ObjectType::from_token),
        Field::Sf => {
            out.sf = token(value)
                .map_err(bad)?
                .and_then(StreamingFormat::from_token)
        }
        Field::St => out.st = token(value).map_err(bad)?.and_then(StreamType::from_token),
        Field::Pr => out.pr = decimal(value).map_err(bad)?,
    }
    Ok(())
}

fn integer(value: Option<Bare<'_>>) -> Result<Option<u32>, CmcdProblem> {
    let digits = match value {
        None => return Ok(None),
        Some(Bare::Other(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s,
        Some(_) => return Err(CmcdProblem::NotAnInteger),
    };
    let mut n: u32 = 0;
    for b in digits.bytes() {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u32::from(b - b'0')))
            .ok_or(CmcdProblem::IntegerOverflow)?;
    }
    Ok(Some(n))
}

fn decimal(value: Option<Bare<'_>>) -> Result<Option<f32>, CmcdProblem> {
    let s = match value {
        None => return Ok(None),
        Some(Bare::Other(s)) => s,
        Some(_) => return Err(CmcdProblem::NotADecimal),
    };
    // RFC 8941 3.3.2 without the sign (and without its digit limits): 1.08, 2, 0.5.
    let (int, frac) = match s.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (s, None),
    };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return Err(CmcdProblem::NotADecimal);
    }
    // Only digits and one dot reach the float parser: no sign, exponent, "inf" or "nan", so
    // the value is finite (or +inf for hundreds of digits, refused below) and not negative.
    let v: f32 = s.parse().map_err(|_| CmcdProblem::NotADecimal)?;
    if v > MAX_PLAYBACK_RATE {
        return Err(CmcdProblem::DecimalOutOfRange);
    }
    Ok(Some(v))
}

fn boolean(value: Option<Bare<'_>>) -> Result<bool, CmcdProblem> {
    match value {
        None => Ok(false),
        Some(Bare::Bool(b)) => Ok(b),
        Some(_) => Err(CmcdProblem::NotABoolean),
    }
}

fn token(value: Option<Bare<'_>>) -> Result<Option<&str>, CmcdProblem> {
    match value {
        None => Ok(None),
        // RFC 8941 3.3.4: ( ALPHA / "*" ) *( tchar / ":" / "/" ).
        Some(Bare::Other(s))
            if s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '*')
                && s.bytes().all(|b| is_tchar(b) || b == b':' || b == b'/') =>
        {
            Ok(Some(s))
        }
        Some(_) => Err(CmcdProblem::NotAToken),
    }
}

fn string(
    key: &'static str,
    value: Option<Bare<'_>>,
    max: usize,
) -> Result<Option<String>, CmcdError> {
    let raw = match value {
        None => return Ok(None),
        Some(Bare::Str(raw)) => raw,
        Some(_) => return Err(malformed(key, CmcdProblem::NotAString)),
    };
    // The lexer checked the escapes: each backslash starts a two-character escape.
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' {
            chars.next().unwrap_or(c)
        } else {
            c
        });
    }
    let len = out.chars().count();
    if len > max {
        return Err(CmcdError::StringTooLong { key, len, max });
    }
    Ok(Some(out))
}

/// RFC 9110 5.6.2 tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A cursor over a payload. Positions only ever stop on ASCII bytes or at the end, so every
/// slice taken is on a character boundary.
struct Lexer<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// A key: everything up to `=`, `,`, `;`, whitespace or the end. Keys this version knows are
    /// lowercase (RFC 8941 3.1.2); custom keys in CTA-5004's own examples are not
    /// (`com.example-myNumericKey`), so any printable ASCII but `"`, `(` and `)` is accepted.
    fn key(&mut self) -> Result<&'a str, (&'a str, CmcdProblem)> {
        let start = self.pos;
        // The delimiters are ASCII, so the cursor stops on a character boundary.
        while let Some(b) = self.peek() {
            if matches!(b, b'=' | b',' | b';' | b')' | b' ' | b'\t') {
                break;
            }
            self.pos += 1;
        }
        let key = &self.s[start..self.pos];
        let valid = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'(' | b')'));
        if valid {
            Ok(key)
        } else {
            Err((key, CmcdProblem::InvalidKey))
        }
    }

    /// What follows a key: `=` and an item or an inner list, or nothing (a boolean true); then
    /// parameters, which are skipped. An inner list gives its first item.
    fn member_value(&mut self) -> Result<Option<Bare<'a>>, CmcdProblem> {
        let value = if self.peek() == Some(b'=') {
            self.pos += 1;
            if self.peek() == Some(b'(') {
                self.inner_list()?
            } else {
                Some(self.bare_item()?)
            }
        } else {
            Some(Bare::Bool(true))
        };
        self.parameters()?;
        Ok(value)
    }

    /// `(item item ...)`, each item with its parameters; gives the first item.
    fn inner_list(&mut self) -> Result<Option<Bare<'a>>, CmcdProblem> {
        self.pos += 1; // '('
        let mut first = None;
        loop {
            self.skip_ows();
            match self.peek() {
                None => return Err(CmcdProblem::MalformedList),
                Some(b')') => {
                    self.pos += 1;
                    return Ok(first);
                }
                Some(_) => {}
            }
            let item = self.bare_item()?;
            self.parameters()?;
            first.get_or_insert(item);
            if !matches!(self.peek(), Some(b' ' | b'\t' | b')')) {
                return Err(CmcdProblem::MalformedList);
            }
        }
    }

    /// `;key` or `;key=item`, any number of times.
    fn parameters(&mut self) -> Result<(), CmcdProblem> {
        while self.peek() == Some(b';') {
            self.pos += 1;
            self.skip_ows();
            self.key().map_err(|(_, p)| p)?;
            if self.peek() == Some(b'=') {
                self.pos += 1;
                self.bare_item()?;
            }
        }
        Ok(())
    }

    fn bare_item(&mut self) -> Result<Bare<'a>, CmcdProblem> {
        match self.peek() {
            Some(b'"') => self.string().map(Bare::Str),
            Some(b'%') if self.s.as_bytes().get(self.pos + 1) == Some(&b'"') => {
                // RFC 9651 display string: skipped as a string.
                let start = self.pos;
                self.pos += 1;
                self.string()?;
                Ok(Bare::Other(&self.s[start..self.pos]))
            }
            _ => {
                let start = self.pos;
                while let Some(b) = self.peek() {
                    if matches!(b, b' ' | b'\t' | b',' | b';' | b')') {
                        break;
                    }
                    if !b.is_ascii_graphic() || b == b'"' || b == b'(' {
                        return Err(CmcdProblem::InvalidChar);
                    }
                    self.pos += 1;
                }
                match &self.s[start..self.pos] {
                    "" => Err(CmcdProblem::MissingValue),
                    "?1" => Ok(Bare::Bool(true)),
                    "?0" => Ok(Bare::Bool(false)),
                    s if s.starts_with('?') => Err(CmcdProblem::NotABoolean),
                    s => Ok(Bare::Other(s)),
                }
            }
        }
    }

    /// A quoted string at the cursor; gives its raw contents.
    fn string(&mut self) -> Result<&'a str, CmcdProblem> {
        self.pos += 1; // '"'
        let start = self.pos;
        let mut chars = self.s[start..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos = start + i + 1;
                    return Ok(&self.s[start..start + i]);
                }
                '\\' => match chars.next() {
                    Some((_, '"' | '\\')) => {}
                    Some(_) => return Err(CmcdProblem::InvalidEscape),
                    None => return Err(CmcdProblem::UnterminatedString),
                },
                c if c.is_control() => return Err(CmcdProblem::ControlCharInString),
                _ => {}
            }
        }
        Err(CmcdProblem::UnterminatedString)
    }
}

/// Length of `raw` once form-decoded (each valid `%XX` is one byte).
fn decoded_len(raw: &[u8]) -> usize {
    let mut len = 0;
    let mut i = 0;
    while i < raw.len() {
        i += if hex_escape(raw, i).is_some() { 3 } else { 1 };
        len += 1;
    }
    len
}

/// `application/x-www-form-urlencoded` decoding of a value (WHATWG URL 5.1).
fn form_decode(raw: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut i = 0;
    while i < raw.len() {
        if let Some(b) = hex_escape(raw, i) {
            out.push(b);
            i += 3;
        } else {
            out.push(if raw[i] == b'+' { b' ' } else { raw[i] });
            i += 1;
        }
    }
    out
}

/// The byte of a `%XX` escape starting at `i`.
fn hex_escape(raw: &[u8], i: usize) -> Option<u8> {
    if raw.get(i) != Some(&b'%') {
        return None;
    }
    let hex = |b: u8| char::from(b).to_digit(16);
    let hi = hex(*raw.get(i + 1)?)?;
    let lo = hex(*raw.get(i + 2)?)?;
    u8::try_from(hi * 16 + lo).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// CTA-5004 section 5's example, as the query argument (the `nor` value is itself
    /// URL-encoded, hence `%252F`).
    const SPEC_QUERY: &str = "CMCD=bl%3D21300%2Cbr%3D3200%2Cbs%2Ccid%3D%22faec5fc2-ac30-11eabb37-0242ac130002%22%2Cd%3D4004%2Cdl%3D18500%2Cmtp%3D48100%2Cnor%3D%22..%252F300kbps%252Ftrack.m4v%22%2Cnrr%3D%2212323-48763%22%2Cot%3Dv%2Cpr%3D1.08%2Crtp%3D12000%2Csf%3Dd%2Csid%3D%226e2fb550-c457-11e9-bb97-0800200c9a66%22%2Cst%3Dv%2Csu%2Ctb%3D6000";

    /// The same example as headers (CTA-5004 section 5).
    const SPEC_HEADERS: [(&str, &str); 4] = [
        ("CMCD-Object", "br=3200,d=4004,ot=v,tb=6000"),
        (
            "CMCD-Request",
            r#"bl=21300,dl=18500,mtp=48100,nor="..%2F300kbps%2Ftrack.m4v",nrr="12323-48763",su"#,
        ),
        (
            "CMCD-Session",
            r#"cid="faec5fc2-ac30-11eabb37-0242ac130002",pr=1.08,sf=d,sid="6e2fb550-c457-11e9-bb97-0800200c9a66",st=v"#,
        ),
        ("CMCD-Status", "bs,rtp=12000"),
    ];

    fn spec() -> Cmcd {
        Cmcd {
            sid: Some("6e2fb550-c457-11e9-bb97-0800200c9a66".into()),
            cid: Some("faec5fc2-ac30-11eabb37-0242ac130002".into()),
            br: Some(3200),
            bl: Some(21300),
            bs: true,
            su: true,
            mtp: Some(48100),
            d: Some(4004),
            dl: Some(18500),
            rtp: Some(12000),
            tb: Some(6000),
            nor: Some("..%2F300kbps%2Ftrack.m4v".into()),
            nrr: Some("12323-48763".into()),
            ot: Some(ObjectType::Video),
            sf: Some(StreamingFormat::Dash),
            st: Some(StreamType::Vod),
            pr: Some(1.08),
            v: None,
        }
    }

    fn err(key: &str, problem: CmcdProblem) -> CmcdError {
        CmcdError::Malformed {
            key: key.into(),
            problem,
        }
    }

    #[test]
    fn spec_example_as_query() {
        assert_eq!(from_query(SPEC_QUERY), Ok(Some(spec())));
        assert_eq!(from_query(&format!("?{SPEC_QUERY}")), Ok(Some(spec())));
        // The spec's payload is already in alphabetical order, so writing it back is exact.
        assert_eq!(encode_query(&spec()), SPEC_QUERY);
    }

    #[test]
    fn spec_example_as_headers() {
        let values = SPEC_HEADERS.map(|(_, v)| v.as_bytes());
        assert_eq!(from_headers(values), Ok(Some(spec())));
        // Any order.
        assert_eq!(from_headers(values.into_iter().rev()), Ok(Some(spec())));
        let written = encode_headers(&spec());
        let expected: Vec<_> = SPEC_HEADERS
            .iter()
            .map(|(n, v)| (*n, v.to_string()))
            .collect();
        assert_eq!(written, expected);
        assert_eq!(from_headers([]), Ok(None));
        assert_eq!(from_headers([&b""[..]]), Ok(Some(Cmcd::default())));
    }

    #[test]
    fn hlsjs_forms() {
        // hls.js 1.7 (v1 mode, URLSearchParams.set) on a manifest and on a segment request.
        let manifest =
            "CMCD=ot%3Dm%2Csf%3Dh%2Csid%3D%2240d0a5f1-0a4f-4d4e-8a3b-2b8a3c0e1f00%22%2Csu";
        let c = from_query(manifest).unwrap().unwrap();
        assert_eq!(c.ot, Some(ObjectType::Manifest));
        assert_eq!(c.sf, Some(StreamingFormat::Hls));
        assert!(c.su && !c.bs);
        let segment = "_HLS_msn=12&_HLS_part=3&CMCD=bl%3D1200%2Cbr%3D1465%2Cd%3D2000%2Cmtp%3D25400%2Cot%3Dav%2Csf%3Dh%2Csid%3D%22x%22%2Cst%3Dl%2Ctb%3D4628";
        let c = from_query(segment).unwrap().unwrap();
        assert_eq!(
            (c.bl, c.br, c.d, c.mtp, c.tb),
            (Some(1200), Some(1465), Some(2000), Some(25400), Some(4628))
        );
        assert_eq!(
            (c.ot, c.st),
            (Some(ObjectType::Muxed), Some(StreamType::Live))
        );
        // URLSearchParams writes a space as '+' and a '+' as %2B.
        let c = from_query("CMCD=cid%3D%22my+movie%2B1%22")
            .unwrap()
            .unwrap();
        assert_eq!(c.cid.as_deref(), Some("my movie+1"));
        // hls.js in v2 mode: inner lists, parameters, v2 keys.
        let v2 = r#"bl=(1200),br=(3200;ot=v 128;ot=a),msd=1234,nor=("seg2.m4s";r="100-200"),ot=v,sf=h,sid="s",sn=4,sta=p,v=2"#;
        let c = parse_payload(v2).unwrap();
        assert_eq!((c.bl, c.br, c.v), (Some(1200), Some(3200), Some(2)));
        assert_eq!(c.nor.as_deref(), Some("seg2.m4s"));
    }

    #[test]
    fn query_parameter_lookup() {
        assert_eq!(from_query(""), Ok(None));
        assert_eq!(from_query("?"), Ok(None));
        assert_eq!(from_query("token=abc&cmcd=br%3D1&XCMCD=br%3D1"), Ok(None));
        assert_eq!(from_query("CMCD"), Ok(Some(Cmcd::default())));
        assert_eq!(from_query("a=1&CMCD=&b=2"), Ok(Some(Cmcd::default())));
        // The first one counts, as with URLSearchParams.get.
        let c = from_query("CMCD=br%3D1&CMCD=br%3D2").unwrap().unwrap();
        assert_eq!(c.br, Some(1));
        // A '%' without two hex digits stays as it is (WHATWG URL).
        let c = from_query("CMCD=nor%3D%22a%zz%25%22").unwrap().unwrap();
        assert_eq!(c.nor.as_deref(), Some("a%zz%"));
        assert_eq!(from_query("CMCD=cid%3D%22%FF%22"), Err(CmcdError::NotUtf8));
        // Raw (unencoded) payloads work too where they are legal in a query.
        assert_eq!(
            from_query("CMCD=br=3200,bs").unwrap().unwrap().br,
            Some(3200)
        );
    }

    #[test]
    fn lenient_forms() {
        let c = parse_payload("  bl=21300, br=3200 ,\tbs=?1 ,su=?0,,mtp=4;x=1;y ,").unwrap();
        assert_eq!(
            (c.bl, c.br, c.bs, c.su, c.mtp),
            (Some(21300), Some(3200), true, false, Some(4))
        );
        // CTA-5004's custom-key examples, and keys from later versions, are ignored.
        let c = parse_payload(
            r#"com.example-myNumericKey=500,com.example-myStringKey="myStringValue",br=1,ltc=300,bsa=(1 2),e=ps,ts=1700000000000,cen=%"caf%c3%a9",x=:aGk=:,y=@12"#,
        )
        .unwrap();
        assert_eq!(
            c,
            Cmcd {
                br: Some(1),
                ..Cmcd::default()
            }
        );
        // A token this version does not know leaves the field unset; the last value wins.
        assert_eq!(parse_payload("ot=zz").unwrap().ot, None);
        assert_eq!(parse_payload("ot=v,ot=zz").unwrap().ot, None);
        assert_eq!(parse_payload("bl=1,bl=2").unwrap().bl, Some(2));
        assert!(!parse_payload("bs,bs=?0").unwrap().bs);
        assert_eq!(parse_payload("br=()").unwrap().br, None);
        assert_eq!(parse_payload("bl=007").unwrap().bl, Some(7));
        assert_eq!(parse_payload("pr=2").unwrap().pr, Some(2.0));
        assert_eq!(parse_payload("pr=0.500").unwrap().pr, Some(0.5));
        assert_eq!(parse_payload("br=4294967295").unwrap().br, Some(u32::MAX));
        // Strings: escapes, non-ASCII, commas and parentheses inside.
        let c = parse_payload(r#"cid="a \"b\" \\ ,c=(d) é""#).unwrap();
        assert_eq!(c.cid.as_deref(), Some(r#"a "b" \ ,c=(d) é"#));
        let keys_are_lowercase = parse_payload("BR=5").unwrap();
        assert_eq!(keys_are_lowercase, Cmcd::default());
    }

    #[test]
    fn malformed_entries_name_their_key() {
        let cases = [
            ("bl=abc", err("bl", CmcdProblem::NotAnInteger)),
            ("bl=-1", err("bl", CmcdProblem::NotAnInteger)),
            ("bl=1.5", err("bl", CmcdProblem::NotAnInteger)),
            ("bl", err("bl", CmcdProblem::NotAnInteger)),
            ("bl=\"1\"", err("bl", CmcdProblem::NotAnInteger)),
            ("br=4294967296", err("br", CmcdProblem::IntegerOverflow)),
            (
                "v=99999999999999999999",
                err("v", CmcdProblem::IntegerOverflow),
            ),
            ("bl=", err("bl", CmcdProblem::MissingValue)),
            ("bl=,br=1", err("bl", CmcdProblem::MissingValue)),
            ("bl=1 2", err("bl", CmcdProblem::TrailingCharacters)),
            ("bl=1\n", err("bl", CmcdProblem::InvalidChar)),
            ("bl=1 \n", err("bl", CmcdProblem::TrailingCharacters)),
            ("bl =1", err("bl", CmcdProblem::TrailingCharacters)),
            ("sid=\"abc", err("sid", CmcdProblem::UnterminatedString)),
            ("sid=\"abc\\", err("sid", CmcdProblem::UnterminatedString)),
            ("sid=\"a\nb\"", err("sid", CmcdProblem::ControlCharInString)),
            (
                "sid=\"a\u{85}b\"",
                err("sid", CmcdProblem::ControlCharInString),
            ),
            ("sid=\"a\\x\"", err("sid", CmcdProblem::InvalidEscape)),
            ("sid=abc", err("sid", CmcdProblem::NotAString)),
            ("sid", err("sid", CmcdProblem::NotAString)),
            ("sid=\"a\"b", err("sid", CmcdProblem::TrailingCharacters)),
            ("ot=vé", err("ot", CmcdProblem::InvalidChar)),
            ("ot=v\u{1}", err("ot", CmcdProblem::InvalidChar)),
            ("ot=\"v\"", err("ot", CmcdProblem::NotAToken)),
            ("ot=5", err("ot", CmcdProblem::NotAToken)),
            ("sf", err("sf", CmcdProblem::NotAToken)),
            ("su=1", err("su", CmcdProblem::NotABoolean)),
            ("su=?2", err("su", CmcdProblem::NotABoolean)),
            ("bs=true", err("bs", CmcdProblem::NotABoolean)),
            ("pr=abc", err("pr", CmcdProblem::NotADecimal)),
            ("pr=inf", err("pr", CmcdProblem::NotADecimal)),
            ("pr=-1", err("pr", CmcdProblem::NotADecimal)),
            ("pr=1.", err("pr", CmcdProblem::NotADecimal)),
            ("pr=.5", err("pr", CmcdProblem::NotADecimal)),
            ("pr=1e3", err("pr", CmcdProblem::NotADecimal)),
            ("pr=1000.5", err("pr", CmcdProblem::DecimalOutOfRange)),
            (
                "pr=99999999999999999999999999999999999999999",
                err("pr", CmcdProblem::DecimalOutOfRange),
            ),
            ("=5", err("", CmcdProblem::InvalidKey)),
            (";a", err("", CmcdProblem::InvalidKey)),
            ("b\"l=5", err("b\"l", CmcdProblem::InvalidKey)),
            ("clé=5", err("clé", CmcdProblem::InvalidKey)),
            ("br=1;=2", err("br", CmcdProblem::InvalidKey)),
            (
                "com.example-k=\"abc",
                err("com.example-k", CmcdProblem::UnterminatedString),
            ),
            ("x=(1 2", err("x", CmcdProblem::MalformedList)),
            ("br=(\"a\"1)", err("br", CmcdProblem::MalformedList)),
            ("br=(1\"a\")", err("br", CmcdProblem::InvalidChar)),
            ("br=(1,2)", err("br", CmcdProblem::MalformedList)),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_payload(input), Err(expected), "{input:?}");
        }
        let long_key = format!("{}=\"", "k".repeat(100));
        assert_eq!(
            parse_payload(&long_key),
            Err(err(
                &"k".repeat(MAX_ERROR_KEY_CHARS),
                CmcdProblem::UnterminatedString
            ))
        );
    }

    #[test]
    fn string_limits() {
        let id = |n: usize| format!("sid=\"{}\"", "é".repeat(n));
        assert_eq!(
            parse_payload(&id(64)).unwrap().sid.unwrap().chars().count(),
            64
        );
        assert_eq!(
            parse_payload(&id(65)),
            Err(CmcdError::StringTooLong {
                key: "sid",
                len: 65,
                max: 64
            })
        );
        // Escapes count once.
        let quotes = format!("cid=\"{}\"", "\\\"".repeat(64));
        assert_eq!(
            parse_payload(&quotes).unwrap().cid.unwrap(),
            "\"".repeat(64)
        );
        let nor = |n: usize| format!("nor=\"{}\"", "a".repeat(n));
        assert!(parse_payload(&nor(256)).is_ok());
        assert_eq!(
            parse_payload(&nor(257)),
            Err(CmcdError::StringTooLong {
                key: "nor",
                len: 257,
                max: 256
            })
        );
    }

    #[test]
    fn payload_limit() {
        let fill = |len: usize| format!("com.example-pad=\"{}\"", "a".repeat(len - 18));
        assert_eq!(fill(MAX_PAYLOAD_LEN).len(), MAX_PAYLOAD_LEN);
        assert_eq!(parse_payload(&fill(MAX_PAYLOAD_LEN)), Ok(Cmcd::default()));
        let too_long = CmcdError::TooLong {
            len: MAX_PAYLOAD_LEN + 1,
            max: MAX_PAYLOAD_LEN,
        };
        assert_eq!(
            parse_payload(&fill(MAX_PAYLOAD_LEN + 1)),
            Err(too_long.clone())
        );
        // Query: the decoded length counts ('"' is 3 bytes encoded, 1 decoded).
        let q = |len: usize| format!("CMCD={}", fill(len).replace('"', "%22"));
        assert_eq!(from_query(&q(MAX_PAYLOAD_LEN)), Ok(Some(Cmcd::default())));
        assert_eq!(from_query(&q(MAX_PAYLOAD_LEN + 1)), Err(too_long.clone()));
        // Headers: the values joined with one separator each; TooLong wins over other errors.
        let half = fill(MAX_PAYLOAD_LEN / 2);
        let shorter = fill(MAX_PAYLOAD_LEN / 2 - 1);
        assert!(from_headers([half.as_bytes(), shorter.as_bytes()]).is_ok());
        assert_eq!(
            from_headers([half.as_bytes(), half.as_bytes()]),
            Err(too_long)
        );
        assert_eq!(
            from_headers([&b"bl=x"[..], half.as_bytes(), half.as_bytes(), b"br=1"]),
            Err(CmcdError::TooLong {
                len: MAX_PAYLOAD_LEN + 11,
                max: MAX_PAYLOAD_LEN
            })
        );
        assert_eq!(
            from_headers([&b"bl=x"[..], b"br=\xff"]),
            Err(err("bl", CmcdProblem::NotAnInteger))
        );
        assert_eq!(
            from_headers([&b"br=1"[..], b"\xff"]),
            Err(CmcdError::NotUtf8)
        );
    }

    #[test]
    fn merge_is_a_union_where_later_values_win() {
        let mut a = parse_payload("bl=1,bs,sid=\"a\",ot=v").unwrap();
        merge(&mut a, parse_payload("bl=2,su,cid=\"c\"").unwrap());
        assert_eq!(
            a,
            parse_payload("bl=2,bs,su,sid=\"a\",cid=\"c\",ot=v").unwrap()
        );
        let c = from_headers([&b"bs"[..], b"bs=?0"]).unwrap().unwrap();
        assert!(c.bs, "a false boolean is an absent key");
    }

    #[test]
    fn encoding() {
        assert_eq!(encode(&Cmcd::default()), "");
        assert_eq!(encode_query(&Cmcd::default()), "");
        assert!(encode_headers(&Cmcd::default()).is_empty());
        let c = Cmcd {
            sid: Some("a \"q\" \\ é,".into()),
            pr: Some(0.1),
            v: Some(1),
            ot: Some(ObjectType::TimedText),
            ..Cmcd::default()
        };
        assert_eq!(encode(&c), r#"ot=tt,pr=0.1,sid="a \"q\" \\ é,",v=1"#);
        assert_eq!(
            encode_query(&c),
            "CMCD=ot%3Dtt%2Cpr%3D0.1%2Csid%3D%22a%20%5C%22q%5C%22%20%5C%5C%20%C3%A9%2C%22%2Cv%3D1"
        );
        assert_eq!(from_query(&encode_query(&c)), Ok(Some(c)));
        for t in ObjectType::ALL {
            assert_eq!(ObjectType::from_token(t.token()), Some(t));
        }
        for t in StreamingFormat::ALL {
            assert_eq!(StreamingFormat::from_token(t.token()), Some(t));
        }
        for t in StreamType::ALL {
            assert_eq!(StreamType::from_token(t.token()), Some(t));
        }
    }

    fn arb_string(max: usize) -> impl Strategy<Value = String> {
        // Any character but the controls (refused in strings), weighted towards the ones
        // that need escaping or encoding.
        prop_oneof![
            proptest::collection::vec(
                prop::sample::select(vec!['"', '\\', ',', ' ', '+', '%', '=', ';', '(', 'a', 'é']),
                0..=max
            )
            .prop_map(|v| v.into_iter().collect()),
            proptest::string::string_regex(&format!("\\PC{{0,{max}}}")).unwrap(),
        ]
    }

    prop_compose! {
        fn arb_cmcd()(
            sid in proptest::option::of(arb_string(MAX_ID_CHARS)),
            cid in proptest::option::of(arb_string(MAX_ID_CHARS)),
            nor in proptest::option::of(arb_string(MAX_STRING_CHARS)),
            nrr in proptest::option::of("[0-9]{1,10}-[0-9]{0,10}"),
            ints in proptest::array::uniform8(proptest::option::of(any::<u32>())),
            bs in any::<bool>(),
            su in any::<bool>(),
            ot in proptest::option::of(prop::sample::select(ObjectType::ALL.to_vec())),
            sf in proptest::option::of(prop::sample::select(StreamingFormat::ALL.to_vec())),
            st in proptest::option::of(prop::sample::select(StreamType::ALL.to_vec())),
            pr in proptest::option::of(prop_oneof![0.0f32..=MAX_PLAYBACK_RATE, Just(0.0), Just(1.0), Just(MAX_PLAYBACK_RATE)]),
        ) -> Cmcd {
            let [br, bl, mtp, d, dl, rtp, tb, v] = ints;
            Cmcd { sid, cid, br, bl, bs, su, mtp, d, dl, rtp, tb, nor, nrr, ot, sf, st, pr, v }
        }
    }

    /// A test-side writer, independent of [`encode`]: one member per set key, in the
    /// given order, with the form of booleans and whitespace picked by `style`'s bits.
    fn members(c: &Cmcd, style: u64) -> Vec<String> {
        let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        let mut m = Vec::new();
        let mut int = |k: &str, v: Option<u32>| {
            if let Some(v) = v {
                m.push(format!("{k}={v}"));
            }
        };
        int("br", c.br);
        int("bl", c.bl);
        int("mtp", c.mtp);
        int("d", c.d);
        int("dl", c.dl);
        int("rtp", c.rtp);
        int("tb", c.tb);
        int("v", c.v);
        for (k, v) in [
            ("sid", &c.sid),
            ("cid", &c.cid),
            ("nor", &c.nor),
            ("nrr", &c.nrr),
        ] {
            if let Some(v) = v {
                m.push(format!("{k}={}", q(v)));
            }
        }
        for (k, v, bit) in [("bs", c.bs, 1), ("su", c.su, 2)] {
            match (v, style & bit != 0) {
                (true, false) => m.push(k.to_string()),
                (true, true) => m.push(format!("{k}=?1")),
                (false, true) => m.push(format!("{k}=?0")),
                (false, false) => {}
            }
        }
        if let Some(t) = c.ot {
            m.push(format!("ot={}", t.token()));
        }
        if let Some(t) = c.sf {
            m.push(format!("sf={}", t.token()));
        }
        if let Some(t) = c.st {
            m.push(format!("st={}", t.token()));
        }
        if let Some(pr) = c.pr {
            // A fixed 9-decimal form, unlike `encode`'s shortest one, when the value allows.
            let fixed = format!("{pr:.9}");
            m.push(if style & 4 != 0 && fixed.parse::<f32>() == Ok(pr) {
                format!("pr={fixed}")
            } else {
                format!("pr={pr}")
            });
        }
        if style & 8 != 0 {
            m.push("com.example-myStringKey=\"x,y\"".into());
        }
        m
    }

    fn join(members: &[String], style: u64) -> String {
        members.join(if style & 16 != 0 { ", " } else { "," })
    }

    /// `encodeURIComponent`, or `URLSearchParams` (space as '+').
    fn percent_encode(s: &str, plus_for_space: bool) -> String {
        let mut out = String::new();
        for b in s.bytes() {
            match b {
                b' ' if plus_for_space => out.push('+'),
                b if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) => {
                    out.push(char::from(b))
                }
                b => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// A value written by the test-side writer, in any member order, parses back equal,
        /// as a payload, as a query parameter among others, and split across headers.
        #[test]
        fn test_side_encoding_parses_back((c, order, style) in arb_cmcd().prop_flat_map(|c| {
            let n = members(&c, 0).len() + 1;
            (Just(c), Just((0..n).collect::<Vec<usize>>()).prop_shuffle(), any::<u64>())
        })) {
            let mut m = members(&c, style);
            let order: Vec<usize> = order.into_iter().filter(|&i| i < m.len()).collect();
            m = order.iter().map(|&i| m[i].clone()).chain(m.iter().skip(order.len()).cloned()).collect();
            let payload = join(&m, style);
            prop_assert_eq!(parse_payload(&payload), Ok(c.clone()));
            let query = format!("a=1&CMCD={}&b=%2", percent_encode(&payload, style & 32 != 0));
            prop_assert_eq!(from_query(&query), Ok(Some(c.clone())));
            let cut = (style >> 8) as usize % (m.len() + 1);
            let (first, second) = m.split_at(cut);
            let values = [join(first, style), join(second, style)];
            prop_assert_eq!(from_headers(values.iter().map(|v| v.as_bytes())), Ok(Some(c.clone())));
        }

        /// `encode`, `encode_query` and `encode_headers` round-trip through the parsers.
        #[test]
        fn encode_round_trips(c in arb_cmcd()) {
            let payload = encode(&c);
            prop_assert!(payload.len() <= MAX_PAYLOAD_LEN);
            prop_assert_eq!(parse_payload(&payload), Ok(c.clone()));
            // An empty payload is written as no parameter at all.
            let expected = Some(c.clone()).filter(|_| !payload.is_empty());
            prop_assert_eq!(from_query(&encode_query(&c)), Ok(expected));
            let headers = encode_headers(&c);
            prop_assert!(headers.windows(2).all(|w| w[0].0 < w[1].0));
            prop_assert_eq!(
                from_headers(headers.iter().map(|(_, v)| v.as_bytes())),
                Ok(Some(c.clone()).filter(|_| !headers.is_empty()))
            );
        }

        /// Arbitrary text never panics, and whatever parses writes back to at most as many
        /// bytes, which parse to the same value.
        #[test]
        fn arbitrary_text_never_panics(
            s in prop_oneof![
                any::<String>(),
                "[a-z=,;\"()?\\\\ 0-9.:*%+&\t\u{e9}\u{1}-]{0,80}",
                "(bl|br|bs|cid|d|dl|mtp|nor|nrr|ot|pr|rtp|sf|sid|st|su|tb|v|x-y)(=[a-z0-9\"(). ;?\\\\,-]{0,12})?(,(bl|br|bs|cid|ot|pr|sid|su|v)(=[a-z0-9\"(). ;?\\\\-]{0,12})?){0,6}",
            ],
        ) {
            let parsed = [parse_payload(&s), from_query(&s).map(Option::unwrap_or_default)];
            for c in parsed.into_iter().flatten() {
                prop_assert_eq!(parse_payload(&encode(&c)), Ok(c));
            }
            if let Ok(c) = parse_payload(&s) {
                prop_assert!(encode(&c).len() <= s.len());
            }
            let values: Vec<&[u8]> = s.as_bytes().split(|&b| b == b'\n').collect();
            if let Ok(Some(c)) = from_headers(values) {
                prop_assert!(encode(&c).len() <= s.len());
            }
        }
    }
}
