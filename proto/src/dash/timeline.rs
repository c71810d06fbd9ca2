//! `SegmentTimeline` entries (ISO 23009-1 5.3.9.6) and their run-length form: consecutive
//! segments with the same duration and no gap between them share one `S` element whose `@r`
//! counts the repeats.
//!
//! Not here: writing the XML (see `mpd`), or deciding which segments are listed.
//!
//! Invariants: [`expand_timeline`] of [`compact_timeline`] of a list gives the list back, for
//! any list (gaps, overlaps and zero durations included), and `compact_timeline` merges two
//! segments only when the second starts exactly where the first ends and lasts as long.

/// One `S` element: `r + 1` segments of duration `d`, the first starting at `t`, each one
/// starting where the previous one ends. Times are in the template's `timescale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineEntry {
    /// `@t`: start of the first segment. Always known here; the writer omits it when it
    /// equals the end of the previous entry.
    pub t: u64,
    /// `@d`: duration of each segment.
    pub d: u64,
    /// `@r`: how many more segments follow the first (0 = one segment). Never negative here:
    /// hivecast lists every segment explicitly.
    pub r: u32,
}

impl TimelineEntry {
    /// How many segments this entry stands for (`r + 1`).
    pub fn count(&self) -> u64 {
        u64::from(self.r) + 1
    }

    /// End of the last segment of the entry, or `None` if it does not fit in `u64`.
    pub fn end(&self) -> Option<u64> {
        self.d
            .checked_mul(self.count())
            .and_then(|span| self.t.checked_add(span))
    }
}

/// Compacts `(start, duration)` pairs, oldest first, into `S` entries: a segment joins the
/// previous entry when it has the same duration, starts exactly at that entry's end, and the
/// entry's `r` has room.
pub fn compact_timeline(segments: impl IntoIterator<Item = (u64, u64)>) -> Vec<TimelineEntry> {
    let mut out: Vec<TimelineEntry> = Vec::new();
    for (start, duration) in segments {
        if let Some(last) = out.last_mut() {
            if last.d == duration && last.end() == Some(start) && last.r < u32::MAX {
                last.r += 1;
                continue;
            }
        }
        out.push(TimelineEntry {
            t: start,
            d: duration,
            r: 0,
        });
    }
    out
}

/// Expands entries back into `(start, duration)` pairs, one per segment. Start times that
/// would overflow `u64` saturate (validated MPDs never have them).
pub fn expand_timeline(entries: &[TimelineEntry]) -> impl Iterator<Item = (u64, u64)> + '_ {
    entries
        .iter()
        .flat_map(|e| (0..e.count()).map(move |i| (e.t.saturating_add(e.d.saturating_mul(i)), e.d)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn equal_contiguous_durations_merge() {
        let got = compact_timeline([(0, 2), (2, 2), (4, 2), (6, 3), (9, 3), (20, 3), (23, 2)]);
        assert_eq!(
            got,
            vec![
                TimelineEntry { t: 0, d: 2, r: 2 },
                TimelineEntry { t: 6, d: 3, r: 1 },
                // A gap (12 -> 20) starts a new entry even with the same duration.
                TimelineEntry { t: 20, d: 3, r: 0 },
                TimelineEntry { t: 23, d: 2, r: 0 },
            ]
        );
        assert_eq!(compact_timeline(std::iter::empty()), vec![]);
    }

    #[test]
    fn overflowing_end_never_merges() {
        let got = compact_timeline([(u64::MAX - 1, 2), (u64::MAX, 2)]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].end(), None);
    }

    proptest! {
        /// Expanding the compacted form gives back exactly the input, and the compacted form
        /// is as short as possible: no two neighbours could have been merged.
        #[test]
        fn compaction_round_trips(
            start in 0u64..1_000_000,
            steps in proptest::collection::vec((0u64..4, 1u64..5, any::<bool>()), 0..200),
        ) {
            // Mostly contiguous runs of few distinct durations (so that runs form), with
            // occasional gaps.
            let mut t = start;
            let mut input = Vec::new();
            for (gap, d, extra) in steps {
                if extra { t += gap; }
                let d = d * 1000;
                input.push((t, d));
                t += d;
            }
            let compact = compact_timeline(input.iter().copied());
            let expanded: Vec<_> = expand_timeline(&compact).collect();
            prop_assert_eq!(&expanded, &input);
            for pair in compact.windows(2) {
                prop_assert!(!(pair[0].d == pair[1].d && pair[0].end() == Some(pair[1].t)));
            }
        }

        /// Arbitrary (even overlapping or zero-length) input still round-trips.
        #[test]
        fn arbitrary_pairs_round_trip(input in proptest::collection::vec((0u64..1u64 << 40, 0u64..1u64 << 20), 0..100)) {
            let compact = compact_timeline(input.iter().copied());
            let expanded: Vec<_> = expand_timeline(&compact).collect();
            prop_assert_eq!(expanded, input);
        }
    }
}
