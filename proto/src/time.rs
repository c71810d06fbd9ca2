//! Wall-clock and duration formatting for manifests: RFC 3339 timestamps (HLS
//! `EXT-X-PROGRAM-DATE-TIME`, DASH `xs:dateTime`) and `xs:duration` values (DASH).
//!
//! This module owns only formatting. It never reads a clock: wall-clock instants arrive as
//! `unix_ms: i64` (milliseconds since 1970-01-01T00:00:00Z, negative before the epoch), chosen
//! by the caller. It does not parse, and it knows nothing of leap seconds (Unix time has none,
//! and neither RFC 8216bis nor ISO 23009-1 asks for them).
//!
//! Invariants: output is always ASCII; dates are in the proleptic Gregorian calendar, in UTC
//! (`Z`), with exactly three fractional digits, which is the millisecond accuracy RFC 8216bis
//! 4.4.4.6 asks of `EXT-X-PROGRAM-DATE-TIME`.

use std::fmt::Write as _;
use std::time::Duration;

const MS_PER_DAY: i64 = 86_400_000;

/// Formats `unix_ms` as an RFC 3339 UTC timestamp with milliseconds, e.g.
/// `2026-11-24T13:28:00.123Z`.
///
/// RFC 3339 only covers the years 0000 to 9999. Outside that range (which `i64` milliseconds
/// can reach) the year is written ISO 8601 "expanded" style with a sign (`+10000`, `-0001`), so
/// the output stays unambiguous even though strict RFC 3339 parsers will reject it.
pub fn format_rfc3339_ms(unix_ms: i64) -> String {
    let mut out = String::with_capacity(24);
    write_rfc3339_ms(unix_ms, &mut out);
    out
}

/// Appends the [`format_rfc3339_ms`] form of `unix_ms` to `out` (no allocation when `out` has
/// room), for renderers that write a whole manifest into one buffer.
pub fn write_rfc3339_ms(unix_ms: i64, out: &mut String) {
    // Euclidean division keeps the time of day non-negative before the epoch:
    // -1 ms is 1969-12-31T23:59:59.999Z, not "day 0, -1 ms".
    let days = unix_ms.div_euclid(MS_PER_DAY);
    let ms_of_day = unix_ms.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let hour = ms_of_day / 3_600_000;
    let minute = ms_of_day / 60_000 % 60;
    let second = ms_of_day / 1_000 % 60;
    let milli = ms_of_day % 1_000;
    if (0..=9999).contains(&year) {
        let _ = write!(out, "{year:04}");
    } else {
        let _ = write!(out, "{year:+05}");
    }
    let _ = write!(
        out,
        "-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z"
    );
}

/// Converts a count of days since 1970-01-01 into a proleptic Gregorian `(year, month, day)`.
///
/// This is the "civil from days" construction: shift the epoch to 0000-03-01 so that the leap
/// day is the last day of the (March-based) year, split into 400-year eras of 146 097 days
/// (the Gregorian cycle), then find the year of the era, the day of that year, and the month
/// from a linear formula on March-based months (153 days per 5 months). Every intermediate
/// fits easily in `i64` for any `i64` millisecond input (|days| < 1.1e11).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // 719 468 days separate 0000-03-01 from 1970-01-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097); // [0, 146096]
                                            // Subtract the leap days seen so far in the era (one per 4 years, minus one per century,
                                            // plus the one at the very end of the era) to get a 365-day-per-year count.
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365; // [0, 399]
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100); // [0, 365]
    let march_month = (5 * day_of_year + 2) / 153; // [0, 11], 0 = March
    let day = day_of_year - (153 * march_month + 2) / 5 + 1; // [1, 31]
    let month = if march_month < 10 {
        march_month + 3
    } else {
        march_month - 9
    }; // [1, 12]
       // January and February belong to the next civil year in the March-based count.
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // Both values are range-limited above, so the narrowing cannot truncate.
    (year, month as u32, day as u32)
}

/// Formats a span as an `xs:duration` in seconds, e.g. `PT1.500S`, `PT0S`, `PT3600S`.
///
/// Whole seconds are written without a fraction (`PT2S`; DASH-IF IOP examples and
/// `Period@start="PT0S"` use that form); otherwise the value is rounded to the nearest
/// millisecond and written with exactly three decimals. Hours and minutes are never split
/// out: `xs:duration` allows any number of seconds, and one form is easier to compare.
pub fn format_xs_duration(d: Duration) -> String {
    let mut out = String::with_capacity(12);
    write_xs_duration(d, &mut out);
    out
}

/// Appends the [`format_xs_duration`] form of `d` to `out`.
pub fn write_xs_duration(d: Duration, out: &mut String) {
    // Round to the nearest millisecond in u128 so that u64::MAX seconds plus a carry cannot
    // overflow.
    let total_ms = (d.as_nanos() + 500_000) / 1_000_000;
    let secs = total_ms / 1_000;
    let ms = total_ms % 1_000;
    if ms == 0 {
        let _ = write!(out, "PT{secs}S");
    } else {
        let _ = write!(out, "PT{secs}.{ms:03}S");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn epoch_and_its_neighbours() {
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339_ms(1), "1970-01-01T00:00:00.001Z");
        assert_eq!(format_rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_rfc3339_ms(-MS_PER_DAY), "1969-12-31T00:00:00.000Z");
        assert_eq!(
            format_rfc3339_ms(MS_PER_DAY - 1),
            "1970-01-01T23:59:59.999Z"
        );
    }

    #[test]
    fn well_known_instants() {
        // 1 700 000 000 s after the epoch is the widely quoted 2023-11-14 22:13:20 UTC.
        assert_eq!(
            format_rfc3339_ms(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
        // The 32-bit time_t rollover.
        assert_eq!(
            format_rfc3339_ms(2_147_483_647_000),
            "2038-01-19T03:14:07.000Z"
        );
        // 1 000 000 000 s.
        assert_eq!(
            format_rfc3339_ms(1_000_000_000_000),
            "2001-09-09T01:46:40.000Z"
        );
    }

    /// Days from 1970-01-01 to `y-m-d`, counted by walking whole years and months: slow and
    /// obviously correct, so it can check the closed-form conversion independently.
    fn days_by_walking(y: i64, m: u32, d: u32) -> i64 {
        fn leap(y: i64) -> bool {
            (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
        }
        fn month_len(y: i64, m: u32) -> i64 {
            match m {
                2 if leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            }
        }
        let mut days = 0i64;
        if y >= 1970 {
            for yy in 1970..y {
                days += if leap(yy) { 366 } else { 365 };
            }
        } else {
            for yy in y..1970 {
                days -= if leap(yy) { 366 } else { 365 };
            }
        }
        for mm in 1..m {
            days += month_len(y, mm);
        }
        days + i64::from(d) - 1
    }

    #[test]
    fn leap_years() {
        let at = |y, m, d| format_rfc3339_ms(days_by_walking(y, m, d) * MS_PER_DAY);
        // 2024 is a leap year (divisible by 4).
        assert_eq!(at(2024, 2, 29), "2024-02-29T00:00:00.000Z");
        // 2000 is a leap year (divisible by 400) ...
        assert_eq!(at(2000, 2, 29), "2000-02-29T00:00:00.000Z");
        // ... 1900 and 2100 are not (divisible by 100 only): the day after Feb 28 is Mar 1.
        assert_eq!(
            format_rfc3339_ms((days_by_walking(2100, 2, 28) + 1) * MS_PER_DAY),
            "2100-03-01T00:00:00.000Z"
        );
        assert_eq!(
            format_rfc3339_ms((days_by_walking(1900, 2, 28) + 1) * MS_PER_DAY),
            "1900-03-01T00:00:00.000Z"
        );
        // The last millisecond of a leap year's Dec 31 (day 366).
        assert_eq!(
            format_rfc3339_ms((days_by_walking(2024, 12, 31) + 1) * MS_PER_DAY - 1),
            "2024-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn year_range_edges() {
        // 0000-01-01 and 9999-12-31 are the RFC 3339 limits; one step beyond switches to the
        // signed expanded form.
        assert_eq!(
            format_rfc3339_ms(days_by_walking(0, 1, 1) * MS_PER_DAY),
            "0000-01-01T00:00:00.000Z"
        );
        assert_eq!(
            format_rfc3339_ms(days_by_walking(0, 1, 1) * MS_PER_DAY - 1),
            "-0001-12-31T23:59:59.999Z"
        );
        assert_eq!(
            format_rfc3339_ms(days_by_walking(10_000, 1, 1) * MS_PER_DAY - 1),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(
            format_rfc3339_ms(days_by_walking(10_000, 1, 1) * MS_PER_DAY),
            "+10000-01-01T00:00:00.000Z"
        );
        // The extremes of i64 must not panic.
        assert!(format_rfc3339_ms(i64::MIN).ends_with('Z'));
        assert!(format_rfc3339_ms(i64::MAX).ends_with('Z'));
    }

    #[test]
    fn xs_durations() {
        assert_eq!(format_xs_duration(Duration::ZERO), "PT0S");
        assert_eq!(format_xs_duration(Duration::from_millis(1_500)), "PT1.500S");
        assert_eq!(format_xs_duration(Duration::from_secs(2)), "PT2S");
        assert_eq!(format_xs_duration(Duration::from_secs(3_600)), "PT3600S");
        assert_eq!(
            format_xs_duration(Duration::from_micros(2_002_000)),
            "PT2.002S"
        );
        // Rounded to the nearest millisecond, carrying into the seconds.
        assert_eq!(
            format_xs_duration(Duration::from_nanos(1_999_600_000)),
            "PT2S"
        );
        assert_eq!(
            format_xs_duration(Duration::from_nanos(1_000_499_999)),
            "PT1S"
        );
        assert_eq!(
            format_xs_duration(Duration::from_nanos(1_000_500_000)),
            "PT1.001S"
        );
        assert_eq!(
            format_xs_duration(Duration::new(u64::MAX, 999_999_999)),
            "PT18446744073709551616S"
        );
    }

    proptest! {
        /// The closed form agrees with walking the calendar, day by day, for 1600..2400.
        #[test]
        fn civil_matches_walk(y in 1600i64..2400, m in 1u32..=12, d in 1u32..=28, ms in 0i64..MS_PER_DAY) {
            let days = days_by_walking(y, m, d);
            let s = format_rfc3339_ms(days * MS_PER_DAY + ms);
            let prefix = format!("{y:04}-{m:02}-{d:02}T");
            prop_assert!(s.starts_with(&prefix), "{} vs {}", s, prefix);
        }

        /// Within years 1019..=9999 the output always has the fixed 24-byte RFC 3339 shape.
        #[test]
        fn shape_is_fixed(unix_ms in -30_000_000_000_000i64..253_402_300_799_999) {
            let s = format_rfc3339_ms(unix_ms);
            prop_assert_eq!(s.len(), 24);
            let b = s.as_bytes();
            prop_assert_eq!(b[4], b'-');
            prop_assert_eq!(b[10], b'T');
            prop_assert_eq!(b[19], b'.');
            prop_assert_eq!(b[23], b'Z');
        }
    }
}
