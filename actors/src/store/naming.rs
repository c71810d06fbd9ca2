//! Media file names inside a rendition's directory.
//!
//! Every name carries the epoch, so a name never repeats across publish sessions and restarts
//! (a CDN must never serve an older session's bytes under a reused name):
//! `init-{epoch}.mp4`, `{epoch}-{msn}.m4s`, `{epoch}-{msn}.{part}.m4s`, `{epoch}-{msn}.ts`.

use crate::types::Epoch;

/// A parsed media file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaName {
    /// `index.m3u8`
    Playlist,
    /// `init-{epoch}.mp4`
    Init {
        /// Session.
        epoch: Epoch,
    },
    /// `{epoch}-{msn}.m4s`
    Segment {
        /// Session.
        epoch: Epoch,
        /// Media sequence number.
        msn: u64,
    },
    /// `{epoch}-{msn}.{part}.m4s`
    Part {
        /// Session.
        epoch: Epoch,
        /// Media sequence number of the parent segment.
        msn: u64,
        /// Part index within the segment.
        part: u64,
    },
    /// `{epoch}-{msn}.ts`
    TsSegment {
        /// Session.
        epoch: Epoch,
        /// Media sequence number.
        msn: u64,
    },
}

impl MediaName {
    /// The file name.
    pub fn file_name(&self) -> String {
        match *self {
            Self::Playlist => "index.m3u8".to_owned(),
            Self::Init { epoch } => format!("init-{epoch}.mp4"),
            Self::Segment { epoch, msn } => format!("{epoch}-{msn}.m4s"),
            Self::Part { epoch, msn, part } => format!("{epoch}-{msn}.{part}.m4s"),
            Self::TsSegment { epoch, msn } => format!("{epoch}-{msn}.ts"),
        }
    }
}

fn num(s: &str) -> Option<u64> {
    // Digits only: no sign, no whitespace; at most 19 digits so it fits u64.
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parse a file name from a request path; `None` for anything else.
pub fn parse_media_name(file: &str) -> Option<MediaName> {
    if file == "index.m3u8" {
        return Some(MediaName::Playlist);
    }
    if let Some(rest) = file.strip_prefix("init-") {
        let e = rest.strip_suffix(".mp4")?;
        return Some(MediaName::Init {
            epoch: Epoch(num(e)?),
        });
    }
    if let Some(stem) = file.strip_suffix(".ts") {
        let (e, m) = stem.split_once('-')?;
        return Some(MediaName::TsSegment {
            epoch: Epoch(num(e)?),
            msn: num(m)?,
        });
    }
    let stem = file.strip_suffix(".m4s")?;
    let (e, rest) = stem.split_once('-')?;
    let epoch = Epoch(num(e)?);
    match rest.split_once('.') {
        None => Some(MediaName::Segment {
            epoch,
            msn: num(rest)?,
        }),
        Some((m, p)) => Some(MediaName::Part {
            epoch,
            msn: num(m)?,
            part: num(p)?,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_round_trip() {
        for n in [
            MediaName::Playlist,
            MediaName::Init { epoch: Epoch(7) },
            MediaName::Segment {
                epoch: Epoch(7),
                msn: 12,
            },
            MediaName::Part {
                epoch: Epoch(7),
                msn: 12,
                part: 3,
            },
            MediaName::TsSegment {
                epoch: Epoch(1),
                msn: 0,
            },
        ] {
            assert_eq!(parse_media_name(&n.file_name()), Some(n));
        }
    }

    #[test]
    fn rejects_junk() {
        for s in [
            "",
            "x.m4s",
            "1-.m4s",
            "-1.m4s",
            "1-2.3.4.m4s",
            "init-.mp4",
            "1-2.ts.ts",
            "../1-2.ts",
            "1-+2.m4s",
            "1-99999999999999999999.m4s",
        ] {
            assert_eq!(parse_media_name(s), None, "{s}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,40}") {
            let _ = parse_media_name(&s);
        }
    }
}
