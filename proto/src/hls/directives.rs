//! Delivery directives of a Media Playlist request (RFC 8216bis 6.2.5): parsing the
//! `_HLS_msn`, `_HLS_part` and `_HLS_skip` query parameters, and the two decisions a blocking
//! reload needs: "can I answer now?" and "is this too far ahead to wait for?".
//!
//! Not here: the waiting itself (the HTTP edge waits on the rendition's watch channel, with
//! [`crate::hls::MediaPlaylist::blocking_reload_timeout`] as its deadline) and status codes
//! (every [`DirectiveError`] is a Bad Request).
//!
//! Invariants: parsing never panics and never allocates more than the error value; numbers are
//! decimal-integers of at most 20 digits that fit in `u64`; unknown parameters are ignored
//! (other query parameters, such as CDN tokens or CMCD, share the query string).

use super::playlist::MediaPlaylist;
use super::DirectiveError;

/// The delivery directives found in a playlist request's query string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeliveryDirectives {
    /// `_HLS_msn` (and `_HLS_part`): hold the response until the playlist has that media.
    pub blocking: Option<BlockingRequest>,
    /// `_HLS_skip=YES` or `_HLS_skip=v2`: answer with a Playlist Delta Update
    /// (`render_media_playlist_delta`). Legal with or without `_HLS_msn` (6.3.7).
    pub skip: bool,
}

/// A Blocking Playlist Reload request (RFC 8216bis 6.2.5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockingRequest {
    /// `_HLS_msn`: the Media Sequence Number waited for.
    pub msn: u64,
    /// `_HLS_part`: the Part Index within that segment, if given.
    pub part: Option<u64>,
}

/// Longest value echoed back in an error, in bytes.
const MAX_ECHO: usize = 32;

/// Parses the query string of a Media Playlist request (without or with the leading `?`).
///
/// Errors (all Bad Request): `_HLS_part` without `_HLS_msn` (6.2.5.2 MUST); a value that is not
/// a decimal-integer fitting in 64 bits, or a `_HLS_skip` other than `YES`/`v2`; a directive
/// given twice. Parameters not starting with `_HLS_` are ignored, and so are the `_HLS_`
/// names this version of the RFC does not define.
pub fn parse_delivery_directives(query: &str) -> Result<DeliveryDirectives, DirectiveError> {
    let query = query.strip_prefix('?').unwrap_or(query);
    let mut msn = None;
    let mut part = None;
    let mut skip = None;
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "_HLS_msn" => set_once(&mut msn, "_HLS_msn", parse_integer("_HLS_msn", value)?)?,
            "_HLS_part" => set_once(&mut part, "_HLS_part", parse_integer("_HLS_part", value)?)?,
            "_HLS_skip" => {
                let wanted = match value {
                    // v2 also skips EXT-X-DATERANGE tags; hivecast writes none, so both
                    // forms ask for the same delta update.
                    "YES" | "v2" => true,
                    _ => return Err(invalid("_HLS_skip", value)),
                };
                set_once(&mut skip, "_HLS_skip", wanted)?;
            }
            _ => {}
        }
    }
    let blocking = match (msn, part) {
        (None, Some(_)) => return Err(DirectiveError::PartWithoutMsn),
        (None, None) => None,
        (Some(msn), part) => Some(BlockingRequest { msn, part }),
    };
    Ok(DeliveryDirectives {
        blocking,
        skip: skip.unwrap_or(false),
    })
}

/// The blocking part of [`parse_delivery_directives`]: `Ok(None)` when the request has no
/// `_HLS_msn` (a plain or delta-only reload), with the same errors.
pub fn parse_blocking_request(query: &str) -> Result<Option<BlockingRequest>, DirectiveError> {
    parse_delivery_directives(query).map(|d| d.blocking)
}

fn set_once<T>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), DirectiveError> {
    if slot.is_some() {
        return Err(DirectiveError::Duplicate { name });
    }
    *slot = Some(value);
    Ok(())
}

/// A decimal-integer (RFC 8216bis 4.2): one to twenty ASCII digits, at most `u64::MAX`. No
/// sign, no spaces, no percent-encoding.
fn parse_integer(name: &'static str, value: &str) -> Result<u64, DirectiveError> {
    if value.is_empty() || value.len() > 20 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(name, value));
    }
    value.parse().map_err(|_| invalid(name, value))
}

fn invalid(name: &'static str, value: &str) -> DirectiveError {
    let mut end = value.len().min(MAX_ECHO);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    DirectiveError::InvalidValue {
        name,
        value: value.get(..end).unwrap_or_default().to_owned(),
    }
}

impl BlockingRequest {
    /// Whether `p` already answers this request (RFC 8216bis 6.2.5.2):
    /// - with `_HLS_msn=M` only: the playlist holds a complete segment with MSN >= M;
    /// - with `_HLS_part=N` too: it holds part N of segment M, or anything later. A Part
    ///   Index past the final part of a completed segment M means part 0 of M + 1.
    ///
    /// An ended playlist answers everything (the server MUST ignore the directives then), and
    /// so does a request for media already older than the playlist: the RFC has the server
    /// deliver the whole playlist even when the requested segment is no longer in it.
    pub fn is_satisfied_by(&self, p: &MediaPlaylist) -> bool {
        if p.ended {
            return true;
        }
        let Some(in_progress) = u64::try_from(p.segments.len())
            .ok()
            .and_then(|n| p.media_sequence.checked_add(n))
        else {
            // Unrepresentable window: validation would reject it; do not hold the client.
            return true;
        };
        let m = self.msn;
        let Some(n) = self.part else {
            return m < in_progress;
        };
        if m == in_progress {
            return u64::try_from(p.trailing_parts.len()).is_ok_and(|have| have > n);
        }
        if m > in_progress {
            return false;
        }
        // Segment M is complete (or gone). Only when it is the newest complete segment can
        // the request still be waiting, for part 0 of the segment after it.
        let Some(last) = p.segments.last().filter(|_| m + 1 == in_progress) else {
            return true;
        };
        let parts = u64::try_from(last.parts.len()).unwrap_or(u64::MAX);
        parts == 0 || n < parts || !p.trailing_parts.is_empty()
    }

    /// Whether the server should refuse at once instead of blocking (RFC 8216bis 6.2.5.2,
    /// SHOULD return Bad Request): `_HLS_msn` beyond the last segment's MSN plus two, or
    /// `_HLS_part` more than the Advance Part Limit past the newest part. The Advance Part
    /// Limit is 3 / PART-TARGET parts when PART-TARGET is under a second, else 3.
    ///
    /// When M is past the newest segment, the distance is counted as N + 1 (the parts of M
    /// up to N), a lower bound, since the parts still to come in the current segment are not
    /// known: the check never refuses a request it should accept.
    pub fn check_advance(&self, p: &MediaPlaylist) -> Result<(), DirectiveError> {
        if p.ended {
            return Ok(());
        }
        let segments = u64::try_from(p.segments.len()).unwrap_or(u64::MAX);
        // Last segment's MSN + 2 = media_sequence + len - 1 + 2.
        let limit = p.media_sequence.saturating_add(segments).saturating_add(1);
        if self.msn > limit {
            return Err(DirectiveError::MsnTooFarAhead {
                msn: self.msn,
                limit,
            });
        }
        let Some(n) = self.part else {
            return Ok(());
        };
        let ahead = match p.last_msn_and_part() {
            Some((last_msn, _)) if self.msn < last_msn => 0,
            Some((last_msn, Some(last_part))) if self.msn == last_msn => {
                n.saturating_sub(last_part)
            }
            Some((last_msn, None)) if self.msn == last_msn => 0,
            // The playlist lists nothing yet and M is older than the segment in progress
            // (MSN `media_sequence`): that media is gone, which `is_satisfied_by` answers at
            // once, so it is not ahead at all (found by the hls_query fuzz target).
            None if self.msn < p.media_sequence => 0,
            _ => n.saturating_add(1),
        };
        // ahead > 3 / part_target  <=>  ahead * part_target_ms > 3000, in integers.
        let (too_far, limit_parts) = match p.part_inf.map(|pi| pi.part_target_ms()) {
            Some(pt_ms) if pt_ms < 1000 => (ahead.saturating_mul(pt_ms) > 3000, 3000 / pt_ms),
            _ => (ahead > 3, 3),
        };
        if too_far {
            return Err(DirectiveError::PartTooFarAhead {
                msn: self.msn,
                part: n,
                ahead,
                limit_parts,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::{PartEntry, PartInf, SegmentEntry, ServerControl};
    use proptest::prelude::*;

    fn blocking(msn: u64, part: Option<u64>) -> DeliveryDirectives {
        DeliveryDirectives {
            blocking: Some(BlockingRequest { msn, part }),
            skip: false,
        }
    }

    #[test]
    fn parses_the_defined_directives() {
        assert_eq!(
            parse_delivery_directives(""),
            Ok(DeliveryDirectives::default())
        );
        assert_eq!(
            parse_delivery_directives("?_HLS_msn=5"),
            Ok(blocking(5, None))
        );
        assert_eq!(
            parse_delivery_directives("_HLS_msn=273&_HLS_part=2"),
            Ok(blocking(273, Some(2)))
        );
        assert_eq!(
            parse_delivery_directives("_HLS_skip=YES"),
            Ok(DeliveryDirectives {
                blocking: None,
                skip: true
            })
        );
        assert_eq!(
            parse_delivery_directives("_HLS_part=0&_HLS_skip=v2&_HLS_msn=0"),
            Ok(DeliveryDirectives {
                blocking: Some(BlockingRequest {
                    msn: 0,
                    part: Some(0)
                }),
                skip: true
            })
        );
        assert_eq!(
            parse_delivery_directives("_HLS_msn=18446744073709551615"),
            Ok(blocking(u64::MAX, None))
        );
    }

    #[test]
    fn blocking_request_shortcut() {
        assert_eq!(
            parse_blocking_request("_HLS_msn=4&_HLS_part=1&_HLS_skip=YES"),
            Ok(Some(BlockingRequest {
                msn: 4,
                part: Some(1)
            }))
        );
        assert_eq!(parse_blocking_request("_HLS_skip=YES"), Ok(None));
        assert_eq!(
            parse_blocking_request("_HLS_part=1"),
            Err(DirectiveError::PartWithoutMsn)
        );
    }

    #[test]
    fn ignores_unknown_parameters() {
        assert_eq!(
            parse_delivery_directives("token=abc&CMCD=bl%3D300&_HLS_future=1&&=&_HLS_msn=9"),
            Ok(blocking(9, None))
        );
        // Names are case-sensitive: `_hls_msn` is not a directive.
        assert_eq!(
            parse_delivery_directives("_hls_msn=9"),
            Ok(DeliveryDirectives::default())
        );
    }

    #[test]
    fn part_without_msn_is_a_bad_request() {
        assert_eq!(
            parse_delivery_directives("_HLS_part=1"),
            Err(DirectiveError::PartWithoutMsn)
        );
        assert_eq!(
            parse_delivery_directives("_HLS_skip=YES&_HLS_part=1"),
            Err(DirectiveError::PartWithoutMsn)
        );
    }

    #[test]
    fn malformed_numbers_are_bad_requests() {
        for value in [
            "",
            "-1",
            "+1",
            " 1",
            "1.0",
            "0x10",
            "%31",
            "18446744073709551616",
            "000000000000000000001",
        ] {
            assert_eq!(
                parse_delivery_directives(&format!("_HLS_msn={value}")),
                Err(DirectiveError::InvalidValue {
                    name: "_HLS_msn",
                    value: value.into()
                }),
                "{value:?}"
            );
        }
        assert!(matches!(
            parse_delivery_directives("_HLS_msn=1&_HLS_part=x"),
            Err(DirectiveError::InvalidValue {
                name: "_HLS_part",
                ..
            })
        ));
        assert!(matches!(
            parse_delivery_directives("_HLS_skip=NO"),
            Err(DirectiveError::InvalidValue {
                name: "_HLS_skip",
                ..
            })
        ));
        assert_eq!(
            parse_delivery_directives("_HLS_msn=1&_HLS_msn=1"),
            Err(DirectiveError::Duplicate { name: "_HLS_msn" })
        );
    }

    #[test]
    fn echoed_values_are_truncated_on_a_char_boundary() {
        let long = "é".repeat(40);
        let Err(DirectiveError::InvalidValue { value, .. }) =
            parse_delivery_directives(&format!("_HLS_msn={long}"))
        else {
            panic!("expected an invalid value");
        };
        assert_eq!(value, "é".repeat(16));
    }

    /// Segments 10..=11 complete; 11 lists parts 0..=3; segment 12 in progress with parts
    /// 0..=1; PART-TARGET 0.25 s (Advance Part Limit 3 / 0.25 = 12 parts).
    fn live() -> MediaPlaylist {
        let part_inf = PartInf::new(0.25).expect("valid");
        let mut p = MediaPlaylist::new(9, 1, 10);
        p.server_control = Some(ServerControl::low_latency(&part_inf, 0.75).expect("3x"));
        p.part_inf = Some(part_inf);
        let mut s11 = SegmentEntry::new("s11.m4s", 1.0);
        s11.parts = (0..4)
            .map(|i| PartEntry::new(format!("p11.{i}.m4s"), 0.25, i == 0))
            .collect();
        p.segments = vec![SegmentEntry::new("s10.m4s", 1.0), s11];
        p.trailing_parts = (0..2)
            .map(|i| PartEntry::new(format!("p12.{i}.m4s"), 0.25, i == 0))
            .collect();
        p
    }

    fn req(msn: u64, part: Option<u64>) -> BlockingRequest {
        BlockingRequest { msn, part }
    }

    #[test]
    fn satisfied_when_the_media_is_listed() {
        let p = live();
        // Whole segments: 11 is complete, 12 is not.
        assert!(req(11, None).is_satisfied_by(&p));
        assert!(!req(12, None).is_satisfied_by(&p));
        // Parts of the segment in progress.
        assert!(req(12, Some(1)).is_satisfied_by(&p));
        assert!(!req(12, Some(2)).is_satisfied_by(&p));
        assert!(!req(13, Some(0)).is_satisfied_by(&p));
        // Old media is answered at once, even if gone from the window.
        assert!(req(3, Some(7)).is_satisfied_by(&p));
        assert!(req(11, Some(3)).is_satisfied_by(&p));
        // Part 4 of 11 does not exist: it means part 0 of 12, which is listed.
        assert!(req(11, Some(4)).is_satisfied_by(&p));
        let mut no_trailing = p.clone();
        no_trailing.trailing_parts.clear();
        assert!(!req(11, Some(4)).is_satisfied_by(&no_trailing));
        // An ended playlist ignores the directives.
        let mut ended = no_trailing;
        ended.ended = true;
        assert!(req(99, Some(9)).is_satisfied_by(&ended));
    }

    #[test]
    fn satisfied_without_parts_for_a_classic_playlist() {
        let mut p = MediaPlaylist::new(3, 2, 0);
        p.segments = vec![SegmentEntry::new("a.ts", 2.0)];
        assert!(req(0, Some(5)).is_satisfied_by(&p));
        assert!(!req(1, Some(0)).is_satisfied_by(&p));
        assert!(!req(1, None).is_satisfied_by(&p));
    }

    #[test]
    fn too_far_ahead_is_refused() {
        let p = live();
        // Last segment 11: up to 13 is acceptable.
        assert_eq!(req(13, None).check_advance(&p), Ok(()));
        assert_eq!(
            req(14, None).check_advance(&p),
            Err(DirectiveError::MsnTooFarAhead { msn: 14, limit: 13 })
        );
        // Newest part is 12.1; the limit is 12 parts ahead.
        assert_eq!(req(12, Some(13)).check_advance(&p), Ok(()));
        assert_eq!(
            req(12, Some(14)).check_advance(&p),
            Err(DirectiveError::PartTooFarAhead {
                msn: 12,
                part: 14,
                ahead: 13,
                limit_parts: 12
            })
        );
        // In the next segment the distance is at least part + 1.
        assert_eq!(req(13, Some(11)).check_advance(&p), Ok(()));
        assert!(req(13, Some(12)).check_advance(&p).is_err());
        // Past media is never too far ahead; an ended playlist ignores the directives.
        assert_eq!(req(11, Some(1_000)).check_advance(&p), Ok(()));
        // Not even when the playlist lists nothing yet (fuzz-regressions/hls_query-*).
        let empty = MediaPlaylist::new(9, 2, 20);
        assert!(req(19, Some(9)).is_satisfied_by(&empty));
        assert_eq!(req(19, Some(9)).check_advance(&empty), Ok(()));
        assert!(req(20, Some(9)).check_advance(&empty).is_err());
        let mut ended = p.clone();
        ended.trailing_parts.clear();
        ended.ended = true;
        assert_eq!(req(1_000, Some(1_000)).check_advance(&ended), Ok(()));
    }

    #[test]
    fn advance_part_limit_is_three_with_long_parts() {
        let part_inf = PartInf::new(1.0).expect("valid");
        let mut p = MediaPlaylist::new(9, 4, 0);
        p.server_control = Some(ServerControl::low_latency(&part_inf, 3.0).expect("3x"));
        p.part_inf = Some(part_inf);
        p.trailing_parts = vec![PartEntry::new("p0.0.m4s", 1.0, true)];
        assert_eq!(req(0, Some(3)).check_advance(&p), Ok(()));
        assert!(matches!(
            req(0, Some(4)).check_advance(&p),
            Err(DirectiveError::PartTooFarAhead { limit_parts: 3, .. })
        ));
    }

    proptest! {
        /// Arbitrary query strings never panic.
        #[test]
        fn never_panics(q in ".{0,200}") {
            let _ = parse_delivery_directives(&q);
        }

        /// Well-formed directives parse back to their values, among other parameters.
        #[test]
        fn well_formed_round_trip(msn in any::<u64>(), part in proptest::option::of(any::<u64>()), skip in any::<bool>(), noise in "[a-z]{1,8}=[a-z0-9]{0,8}") {
            let mut q = format!("{noise}&_HLS_msn={msn}");
            if let Some(part) = part { q.push_str(&format!("&_HLS_part={part}")); }
            if skip { q.push_str("&_HLS_skip=YES"); }
            prop_assert_eq!(parse_delivery_directives(&q), Ok(DeliveryDirectives {
                blocking: Some(BlockingRequest { msn, part }),
                skip,
            }));
        }
    }
}
