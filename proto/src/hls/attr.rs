//! Value encoding shared by the HLS writers: RFC 8216bis 4.2 attribute values and the
//! checks that keep a value from breaking the line-oriented format.
//!
//! Owns the one rounding rule of the module: decimal-floating-point values are written with
//! exactly three decimals (milliseconds), and every numeric comparison made by validation uses
//! those written milliseconds, so clients see values that satisfy the rules.

use std::fmt::Write as _;

use super::PlaylistError;

/// Largest duration-like value accepted, in seconds (about 31 years). Anything above is a bug
/// upstream, and the bound keeps millisecond arithmetic far from `u64` overflow.
const MAX_SECONDS: f64 = 1e9;

/// Seconds -> the milliseconds that will be written (round half away from zero).
pub(super) fn millis(what: &'static str, secs: f64) -> Result<u64, PlaylistError> {
    if !secs.is_finite() || !(0.0..=MAX_SECONDS).contains(&secs) {
        return Err(PlaylistError::InvalidDuration { what, value: secs });
    }
    // In range and finite, so the cast neither saturates nor truncates meaningfully.
    Ok((secs * 1000.0).round() as u64)
}

/// Rounds written milliseconds to the nearest whole second, halves up, as a client reading the
/// decimal value would (RFC 8216bis 4.4.3.1 compares "rounded to the nearest integer").
pub(super) fn round_to_secs(ms: u64) -> u64 {
    ms / 1000 + u64::from(ms % 1000 >= 500)
}

/// Writes milliseconds as a decimal-floating-point with three decimals (`2.000`).
pub(super) fn push_millis(out: &mut String, ms: u64) {
    let _ = write!(out, "{}.{:03}", ms / 1000, ms % 1000);
}

/// Writes `NAME="value"` (RFC 8216bis 4.2 quoted-string). The value must have passed
/// [`check_quoted`] or [`check_uri`].
pub(super) fn push_quoted(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str("=\"");
    out.push_str(value);
    out.push('"');
}

/// A quoted-string value: non-empty, no `"`, no CR/LF, no other control character
/// (RFC 8216bis 4.1 forbids control characters anywhere; 4.2 forbids `"`, CR and LF inside
/// quotes).
pub(super) fn check_quoted(attribute: &'static str, value: &str) -> Result<(), PlaylistError> {
    let reason = if value.is_empty() {
        Some("empty")
    } else if value.contains('"') {
        Some("contains a double quote")
    } else if value.chars().any(char::is_control) {
        Some("contains a control character")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(PlaylistError::InvalidText {
            attribute,
            value: value.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// A URI, whether quoted or on its own line: a quoted-string that also has no whitespace
/// (RFC 3986 has none, and RFC 8216bis 4.1 forbids stray whitespace on a line) and does not
/// start with `#` (a line starting with `#` is a tag or comment, not a URI).
pub(super) fn check_uri(attribute: &'static str, value: &str) -> Result<(), PlaylistError> {
    check_quoted(attribute, value)?;
    let reason = if value.chars().any(char::is_whitespace) {
        Some("contains whitespace")
    } else if value.starts_with('#') {
        Some("starts with '#'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(PlaylistError::InvalidText {
            attribute,
            value: value.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// A URI of a playlist we publish must not carry a reserved `_HLS_` query parameter
/// (RFC 8216bis 6.2.5: those are the client's delivery directives). A fragment is not part of
/// the query, so it is cut off first.
pub(super) fn check_no_directives(uri: &str) -> Result<(), PlaylistError> {
    let without_fragment = uri.split('#').next().unwrap_or(uri);
    let Some((_, query)) = without_fragment.split_once('?') else {
        return Ok(());
    };
    if query.split('&').any(|pair| pair.starts_with("_HLS_")) {
        return Err(PlaylistError::ReservedQueryParameter {
            uri: uri.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_rounds_and_bounds() {
        assert_eq!(millis("x", 2.0), Ok(2000));
        assert_eq!(millis("x", 0.3335), Ok(334));
        assert_eq!(millis("x", 0.0004), Ok(0));
        assert!(millis("x", -0.001).is_err());
        assert!(millis("x", f64::NAN).is_err());
        assert!(millis("x", f64::INFINITY).is_err());
        assert!(millis("x", 2e9).is_err());
    }

    #[test]
    fn rounding_to_seconds_is_half_up() {
        assert_eq!(round_to_secs(4_499), 4);
        assert_eq!(round_to_secs(4_500), 5);
        assert_eq!(round_to_secs(0), 0);
    }

    #[test]
    fn text_checks() {
        assert!(check_quoted("NAME", "English (US)").is_ok());
        assert!(check_quoted("NAME", "").is_err());
        assert!(check_quoted("NAME", "a\"b").is_err());
        assert!(check_quoted("NAME", "a\nb").is_err());
        assert!(check_quoted("NAME", "a\u{85}b").is_err());
        assert!(check_uri("URI", "seg 1.ts").is_err());
        assert!(check_uri("URI", "#EXT-X-ENDLIST").is_err());
        assert!(check_uri("URI", "../720p/seg-3-17.m4s?token=a%20b").is_ok());
    }

    #[test]
    fn reserved_query_parameters() {
        assert!(check_no_directives("index.m3u8").is_ok());
        assert!(check_no_directives("index.m3u8?cdn=1").is_ok());
        assert!(check_no_directives("index.m3u8#_HLS_msn=1").is_ok());
        assert!(check_no_directives("index.m3u8?_HLS_msn=3").is_err());
        assert!(check_no_directives("index.m3u8?a=1&_HLS_skip=YES").is_err());
    }
}
