//! The Multivariant ("master") Playlist (RFC 8216bis 4.4.6): alternative renditions
//! (`EXT-X-MEDIA`) and variant streams (`EXT-X-STREAM-INF`), and its writer.
//!
//! Not here: choosing the ladder or measuring bandwidth (the caller states BANDWIDTH as the
//! peak bit rate of the variant, audio included, RFC 8216bis 4.4.6.2), and URL prefixes (a
//! CDN prefix is already part of each URI).
//!
//! Invariants: the writer validates first and writes nothing on error; every `AUDIO` group a
//! variant names is defined; within a group NAMEs are unique and at most one rendition is
//! DEFAULT=YES; attribute values follow RFC 8216bis 4.2 (quoted-strings for URI, CODECS,
//! GROUP-ID, NAME, CHANNELS, AUDIO; enumerated strings unquoted; `RESOLUTION` as a
//! decimal-resolution `1280x720`; `FRAME-RATE` with three decimals).

use std::collections::HashSet;
use std::fmt::Write as _;

use super::attr::{check_no_directives, check_quoted, check_uri, push_quoted};
use super::PlaylistError;

/// `EXT-X-MEDIA` (RFC 8216bis 4.4.6.1) with `TYPE=AUDIO`: one audio rendition in a group.
/// hivecast has no alternative video or subtitle renditions, so the type is fixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaTag {
    /// `GROUP-ID`: what variants name in their `AUDIO` attribute.
    pub group_id: String,
    /// `NAME`: human-readable, unique within the group.
    pub name: String,
    /// `URI` of the rendition's media playlist. `None` means the audio is carried in every
    /// variant of the group.
    pub uri: Option<String>,
    /// `DEFAULT=YES`: play this one unless the user chose otherwise.
    pub default: bool,
    /// `AUTOSELECT=YES`: the client may pick it from the user's preferences. Must be set when
    /// `default` is.
    pub autoselect: bool,
    /// `CHANNELS`: a quoted-string whose first parameter is the channel count (`"2"`,
    /// `"16/JOC"`).
    pub channels: Option<String>,
}

impl MediaTag {
    /// An audio rendition with its mandatory `GROUP-ID` and `NAME`; DEFAULT and AUTOSELECT
    /// off, no URI, no CHANNELS.
    pub fn audio(group_id: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            group_id: group_id.into(),
            name: name.into(),
            uri: None,
            default: false,
            autoselect: false,
            channels: None,
        }
    }

    fn validate(&self) -> Result<(), PlaylistError> {
        check_quoted("GROUP-ID", &self.group_id)?;
        check_quoted("NAME", &self.name)?;
        if let Some(channels) = &self.channels {
            check_quoted("CHANNELS", channels)?;
        }
        if let Some(uri) = &self.uri {
            check_uri("EXT-X-MEDIA URI", uri)?;
            check_no_directives(uri)?;
        }
        if self.default && !self.autoselect {
            return Err(PlaylistError::DefaultWithoutAutoselect {
                name: self.name.clone(),
            });
        }
        Ok(())
    }

    fn write(&self, out: &mut String) {
        out.push_str("#EXT-X-MEDIA:TYPE=AUDIO,");
        push_quoted(out, "GROUP-ID", &self.group_id);
        out.push(',');
        push_quoted(out, "NAME", &self.name);
        out.push_str(if self.default {
            ",DEFAULT=YES"
        } else {
            ",DEFAULT=NO"
        });
        out.push_str(if self.autoselect {
            ",AUTOSELECT=YES"
        } else {
            ",AUTOSELECT=NO"
        });
        if let Some(channels) = &self.channels {
            out.push(',');
            push_quoted(out, "CHANNELS", channels);
        }
        if let Some(uri) = &self.uri {
            out.push(',');
            push_quoted(out, "URI", uri);
        }
        out.push('\n');
    }
}

/// `EXT-X-STREAM-INF` and its URI line (RFC 8216bis 4.4.6.2): one variant stream.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantStream {
    /// The variant's media playlist URI.
    pub uri: String,
    /// `BANDWIDTH`: peak segment bit rate in bits per second, audio group included.
    pub bandwidth: u64,
    /// `AVERAGE-BANDWIDTH`: average segment bit rate in bits per second.
    pub average_bandwidth: Option<u64>,
    /// `CODECS`: every codec of the variant, audio group included (e.g.
    /// `avc1.64001f,mp4a.40.2`). RFC 8216bis: every EXT-X-STREAM-INF SHOULD have it.
    pub codecs: Option<String>,
    /// `RESOLUTION` of the video as `(width, height)`, written `1280x720`.
    pub resolution: Option<(u32, u32)>,
    /// `FRAME-RATE`, the maximum frame rate, written with three decimals (`29.970`).
    pub frame_rate: Option<f64>,
    /// `AUDIO`: the `GROUP-ID` of the audio renditions to play with this variant.
    pub audio_group: Option<String>,
}

impl VariantStream {
    /// A variant with its mandatory URI and `BANDWIDTH`.
    pub fn new(uri: impl Into<String>, bandwidth: u64) -> Self {
        Self {
            uri: uri.into(),
            bandwidth,
            average_bandwidth: None,
            codecs: None,
            resolution: None,
            frame_rate: None,
            audio_group: None,
        }
    }

    fn validate(&self) -> Result<(), PlaylistError> {
        check_uri("EXT-X-STREAM-INF URI", &self.uri)?;
        check_no_directives(&self.uri)?;
        if let Some(codecs) = &self.codecs {
            check_quoted("CODECS", codecs)?;
        }
        if let Some(audio) = &self.audio_group {
            check_quoted("AUDIO", audio)?;
        }
        if self.resolution.is_some_and(|(w, h)| w == 0 || h == 0) {
            return Err(PlaylistError::InvalidVideoAttribute {
                uri: self.uri.clone(),
                what: "RESOLUTION",
            });
        }
        // Finite, positive, and not absurd (the three-decimal value must not round to 0).
        if self
            .frame_rate
            .is_some_and(|f| !f.is_finite() || !(0.0005..=10_000.0).contains(&f))
        {
            return Err(PlaylistError::InvalidVideoAttribute {
                uri: self.uri.clone(),
                what: "FRAME-RATE",
            });
        }
        Ok(())
    }

    fn write(&self, out: &mut String) {
        let _ = write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={}", self.bandwidth);
        if let Some(average) = self.average_bandwidth {
            let _ = write!(out, ",AVERAGE-BANDWIDTH={average}");
        }
        if let Some(codecs) = &self.codecs {
            out.push(',');
            push_quoted(out, "CODECS", codecs);
        }
        if let Some((width, height)) = self.resolution {
            let _ = write!(out, ",RESOLUTION={width}x{height}");
        }
        if let Some(fps) = self.frame_rate {
            let _ = write!(out, ",FRAME-RATE={fps:.3}");
        }
        if let Some(audio) = &self.audio_group {
            out.push(',');
            push_quoted(out, "AUDIO", audio);
        }
        out.push('\n');
        out.push_str(&self.uri);
        out.push('\n');
    }
}

/// A Multivariant Playlist snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct MasterPlaylist {
    /// `EXT-X-VERSION`. Nothing written here needs more than 1; hivecast writes the version
    /// of its media playlists so clients see one protocol level.
    pub version: u8,
    /// `EXT-X-INDEPENDENT-SEGMENTS`: applies to every media playlist of the stream.
    pub independent_segments: bool,
    /// `EXT-X-MEDIA` renditions, written first, in order.
    pub media: Vec<MediaTag>,
    /// Variant streams, in order (clients start with the first one listed).
    pub variants: Vec<VariantStream>,
}

impl MasterPlaylist {
    /// Checks the rules listed in the module documentation and returns the first violation.
    pub fn validate(&self) -> Result<(), PlaylistError> {
        if self.variants.is_empty() {
            return Err(PlaylistError::NoVariants);
        }
        let mut names = HashSet::new();
        let mut defaults = HashSet::new();
        for media in &self.media {
            media.validate()?;
            if !names.insert((&media.group_id, &media.name)) {
                return Err(PlaylistError::DuplicateRenditionName {
                    group_id: media.group_id.clone(),
                    name: media.name.clone(),
                });
            }
            if media.default && !defaults.insert(&media.group_id) {
                return Err(PlaylistError::MultipleDefaults {
                    group_id: media.group_id.clone(),
                });
            }
        }
        for variant in &self.variants {
            variant.validate()?;
            if let Some(group) = &variant.audio_group {
                let known = self.media.iter().any(|m| &m.group_id == group);
                if !known {
                    return Err(PlaylistError::UnknownAudioGroup {
                        uri: variant.uri.clone(),
                        group_id: group.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Validates `m` and appends the Multivariant Playlist to `out`. On error nothing is written.
pub fn render_master_playlist(m: &MasterPlaylist, out: &mut String) -> Result<(), PlaylistError> {
    m.validate()?;
    out.push_str("#EXTM3U\n");
    let _ = writeln!(out, "#EXT-X-VERSION:{}", m.version);
    if m.independent_segments {
        out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    }
    for media in &m.media {
        media.write(out);
    }
    for variant in &m.variants {
        variant.write(out);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> MasterPlaylist {
        let mut audio = MediaTag::audio("aac", "English");
        audio.default = true;
        audio.autoselect = true;
        audio.channels = Some("2".into());
        audio.uri = Some("audio/index.m3u8".into());
        let mut v720 = VariantStream::new("720p/index.m3u8", 3_128_000);
        v720.codecs = Some("avc1.64001f,mp4a.40.2".into());
        v720.average_bandwidth = Some(2_900_000);
        v720.resolution = Some((1280, 720));
        v720.frame_rate = Some(30_000.0 / 1_001.0);
        v720.audio_group = Some("aac".into());
        let mut v480 = VariantStream::new("480p/index.m3u8", 1_628_000);
        v480.codecs = Some("avc1.4d401e,mp4a.40.2".into());
        v480.resolution = Some((854, 480));
        v480.frame_rate = Some(25.0);
        v480.audio_group = Some("aac".into());
        MasterPlaylist {
            version: 9,
            independent_segments: true,
            media: vec![audio],
            variants: vec![v720, v480],
        }
    }

    fn render(m: &MasterPlaylist) -> String {
        let mut out = String::new();
        render_master_playlist(m, &mut out).expect("valid");
        out
    }

    /// By hand from RFC 8216bis 4.2 and 4.4.6: GROUP-ID, NAME, CHANNELS, URI, CODECS and
    /// AUDIO are quoted-strings; TYPE, DEFAULT and AUTOSELECT enumerated strings; RESOLUTION
    /// a decimal-resolution; FRAME-RATE 30000/1001 = 29.97002997... written with three
    /// decimals; each EXT-X-STREAM-INF is followed by its URI line.
    #[test]
    fn golden_master_playlist() {
        assert_eq!(
            render(&fixture()),
            "#EXTM3U
#EXT-X-VERSION:9
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"English\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"audio/index.m3u8\"
#EXT-X-STREAM-INF:BANDWIDTH=3128000,AVERAGE-BANDWIDTH=2900000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=29.970,AUDIO=\"aac\"
720p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=1628000,CODECS=\"avc1.4d401e,mp4a.40.2\",RESOLUTION=854x480,FRAME-RATE=25.000,AUDIO=\"aac\"
480p/index.m3u8
"
        );
    }

    #[test]
    fn minimal_ts_master_playlist() {
        let m = MasterPlaylist {
            version: 3,
            independent_segments: false,
            media: Vec::new(),
            variants: vec![VariantStream::new("source/index.m3u8", 5_000_000)],
        };
        assert_eq!(
            render(&m),
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-STREAM-INF:BANDWIDTH=5000000\nsource/index.m3u8\n"
        );
    }

    #[test]
    fn round_trips_through_m3u8_rs() {
        let text = render(&fixture());
        let parsed = m3u8_rs::parse_master_playlist_res(text.as_bytes()).expect("parses");
        assert_eq!(parsed.version, Some(9));
        assert!(parsed.independent_segments);
        assert_eq!(parsed.variants.len(), 2);
        let v = &parsed.variants[0];
        assert_eq!(v.uri, "720p/index.m3u8");
        assert_eq!(v.bandwidth, 3_128_000);
        assert_eq!(v.average_bandwidth, Some(2_900_000));
        assert_eq!(v.codecs.as_deref(), Some("avc1.64001f,mp4a.40.2"));
        assert_eq!(
            v.resolution,
            Some(m3u8_rs::Resolution {
                width: 1280,
                height: 720
            })
        );
        assert_eq!(v.frame_rate, Some(29.97));
        assert_eq!(v.audio.as_deref(), Some("aac"));
        let a = &parsed.alternatives[0];
        assert_eq!(a.media_type, m3u8_rs::AlternativeMediaType::Audio);
        assert_eq!(a.group_id, "aac");
        assert_eq!(a.name, "English");
        assert!(a.default && a.autoselect);
        assert_eq!(a.channels.as_deref(), Some("2"));
        assert_eq!(a.uri.as_deref(), Some("audio/index.m3u8"));
    }

    #[test]
    fn group_rules() {
        let mut m = fixture();
        m.variants[1].audio_group = Some("ac3".into());
        assert_eq!(
            m.validate(),
            Err(PlaylistError::UnknownAudioGroup {
                uri: "480p/index.m3u8".into(),
                group_id: "ac3".into()
            })
        );
        let mut m = fixture();
        m.media.push(m.media[0].clone());
        assert!(matches!(
            m.validate(),
            Err(PlaylistError::DuplicateRenditionName { .. })
        ));
        let mut m = fixture();
        let mut second = m.media[0].clone();
        second.name = "English (AD)".into();
        m.media.push(second.clone());
        assert_eq!(
            m.validate(),
            Err(PlaylistError::MultipleDefaults {
                group_id: "aac".into()
            })
        );
        second.default = false;
        m.media[1] = second;
        assert_eq!(m.validate(), Ok(()));
        m.media[0].autoselect = false;
        assert_eq!(
            m.validate(),
            Err(PlaylistError::DefaultWithoutAutoselect {
                name: "English".into()
            })
        );
    }

    #[test]
    fn attribute_values_are_checked() {
        let mut m = fixture();
        m.variants.clear();
        assert_eq!(m.validate(), Err(PlaylistError::NoVariants));
        let mut m = fixture();
        m.variants[0].codecs = Some("avc1\"".into());
        assert!(matches!(
            m.validate(),
            Err(PlaylistError::InvalidText {
                attribute: "CODECS",
                ..
            })
        ));
        let mut m = fixture();
        m.variants[0].uri = "720p/index.m3u8?_HLS_msn=1".into();
        assert!(matches!(
            m.validate(),
            Err(PlaylistError::ReservedQueryParameter { .. })
        ));
        let mut m = fixture();
        m.variants[0].frame_rate = Some(f64::NAN);
        assert!(matches!(
            m.validate(),
            Err(PlaylistError::InvalidVideoAttribute {
                what: "FRAME-RATE",
                ..
            })
        ));
        let mut m = fixture();
        m.variants[0].resolution = Some((0, 720));
        assert!(matches!(
            m.validate(),
            Err(PlaylistError::InvalidVideoAttribute {
                what: "RESOLUTION",
                ..
            })
        ));
        let mut m = fixture();
        m.media[0].name = "Eng\nlish".into();
        let mut out = String::new();
        assert!(render_master_playlist(&m, &mut out).is_err());
        assert!(out.is_empty());
    }
}
