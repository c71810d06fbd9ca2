//! The rendition ladder: which renditions a source gets. Pure functions, unit-tested.
//!
//! Rules (issue: never upscale, cap what is too big):
//! - a rung is produced when its height is at most the source's height;
//! - its width keeps the source's aspect ratio, rounded to an even number of pixels;
//! - the `source` passthrough rendition is offered when the node allows it and the source is
//!   within the caps (height and declared bitrate); a source above them is served only through
//!   the ladder (capped). With no rung applicable (a source smaller than the smallest rung),
//!   the source is always offered: a stream is never left without a rendition.

use crate::types::RenditionId;

/// One rung of the configured ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rung {
    /// Rendition name, used in URLs (`720p`).
    pub name: String,
    /// Output height in pixels.
    pub height: u32,
    /// Video bitrate (also the VBV max rate), kbit/s.
    pub video_kbps: u32,
    /// x264 profile (`high`, `main`, `baseline`).
    pub profile: String,
}

impl Rung {
    /// The default ladder: 1080p 5000k, 720p 2800k, 480p 1200k.
    pub fn default_ladder() -> Vec<Rung> {
        [
            ("1080p", 1080, 5000, "high"),
            ("720p", 720, 2800, "high"),
            ("480p", 480, 1200, "main"),
        ]
        .into_iter()
        .map(|(n, h, k, p)| Rung {
            name: n.to_owned(),
            height: h,
            video_kbps: k,
            profile: p.to_owned(),
        })
        .collect()
    }
}

/// What one transcoded rendition will be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenditionPlan {
    /// Index of the rung in the configured ladder (the packager's slot).
    pub rung: usize,
    /// Rendition id (the rung's name).
    pub id: RenditionId,
    /// Output width.
    pub width: u32,
    /// Output height.
    pub height: u32,
    /// Video bitrate, kbit/s.
    pub video_kbps: u32,
    /// x264 profile.
    pub profile: String,
}

/// The rungs a `width` x `height` source gets (never upscaled), in ladder order.
pub fn plan(ladder: &[Rung], width: u32, height: u32) -> Vec<RenditionPlan> {
    if width == 0 || height == 0 {
        return Vec::new();
    }
    ladder
        .iter()
        .enumerate()
        .filter(|(_, r)| r.height > 0 && r.height <= height)
        .map(|(i, r)| {
            // The nearest even width to width * rung / height (854 for 1920x1080 -> 480p).
            let num = u64::from(width) * u64::from(r.height);
            let den = 2 * u64::from(height);
            let w = (((num + den / 2) / den) * 2).max(2) as u32;
            RenditionPlan {
                rung: i,
                id: RenditionId(r.name.clone()),
                width: w,
                height: r.height & !1,
                video_kbps: r.video_kbps,
                profile: r.profile.clone(),
            }
        })
        .collect()
}

/// Limits on passing the source through.
#[derive(Debug, Clone, PartialEq)]
pub struct SourcePolicy {
    /// The node offers `source` at all.
    pub offer: bool,
    /// Above this height the source is not offered (capped to the ladder).
    pub max_height: u32,
    /// Above this declared video bitrate (kbit/s) the source is not offered.
    pub max_kbps: u32,
}

impl Default for SourcePolicy {
    fn default() -> Self {
        Self {
            offer: true,
            max_height: 1080,
            max_kbps: 8000,
        }
    }
}

/// Whether `source` is offered, and why not.
pub fn source_offered(
    policy: &SourcePolicy,
    transcoding: bool,
    ladder_len: usize,
    height: u32,
    declared_kbps: Option<f64>,
) -> Result<(), &'static str> {
    if !transcoding || ladder_len == 0 {
        return Ok(()); // the only rendition there is
    }
    if !policy.offer {
        return Err("source passthrough disabled on this node");
    }
    if height > policy.max_height {
        return Err("source resolution above the cap: served through the ladder only");
    }
    if declared_kbps.is_some_and(|k| k > f64::from(policy.max_kbps)) {
        return Err("source bitrate above the cap: served through the ladder only");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &[RenditionPlan]) -> Vec<(&str, u32, u32)> {
        p.iter()
            .map(|r| (r.id.as_str(), r.width, r.height))
            .collect()
    }

    #[test]
    fn never_upscales() {
        let l = Rung::default_ladder();
        assert_eq!(
            names(&plan(&l, 1920, 1080)),
            vec![
                ("1080p", 1920, 1080),
                ("720p", 1280, 720),
                ("480p", 854, 480)
            ]
        );
        assert_eq!(
            names(&plan(&l, 1280, 720)),
            vec![("720p", 1280, 720), ("480p", 854, 480)]
        );
        assert_eq!(names(&plan(&l, 854, 480)), vec![("480p", 854, 480)]);
        assert!(plan(&l, 640, 360).is_empty());
        assert!(plan(&l, 0, 0).is_empty());
    }

    #[test]
    fn keeps_aspect_even_widths() {
        let l = Rung::default_ladder();
        assert_eq!(names(&plan(&l, 640, 480)), vec![("480p", 640, 480)]);
        assert_eq!(names(&plan(&l, 3840, 2160))[0], ("1080p", 1920, 1080));
        // 4:3 at 1440x1080 -> 960x720 and 640x480.
        assert_eq!(
            names(&plan(&l, 1440, 1080)),
            vec![
                ("1080p", 1440, 1080),
                ("720p", 960, 720),
                ("480p", 640, 480)
            ]
        );
        assert_eq!(names(&plan(&l, 854, 480)), vec![("480p", 854, 480)]);
        let small = [Rung {
            name: "360p".into(),
            height: 360,
            video_kbps: 800,
            profile: "main".into(),
        }];
        assert_eq!(names(&plan(&small, 854, 480)), vec![("360p", 640, 360)]);
        for p in plan(&l, 1001, 999) {
            assert_eq!(p.width % 2, 0);
        }
    }

    #[test]
    fn source_caps() {
        let p = SourcePolicy::default();
        assert!(source_offered(&p, true, 3, 1080, Some(6000.0)).is_ok());
        assert!(source_offered(&p, true, 3, 2160, None).is_err());
        assert!(source_offered(&p, true, 3, 1080, Some(20_000.0)).is_err());
        assert!(
            source_offered(&p, true, 3, 1080, None).is_ok(),
            "unknown rate: offered"
        );
        let off = SourcePolicy {
            offer: false,
            ..p.clone()
        };
        assert!(source_offered(&off, true, 2, 720, None).is_err());
        assert!(
            source_offered(&off, false, 2, 720, None).is_ok(),
            "passthrough-only stream"
        );
        assert!(
            source_offered(&off, true, 0, 360, None).is_ok(),
            "no rung applies"
        );
    }
}
