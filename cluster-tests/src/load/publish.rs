//! An RTMP publisher inside the load generator: publishes the tags of an FLV file at real-time
//! pace with rml_rtmp's client session, looping the file for as long as asked (timestamps keep
//! growing; the sequence headers are sent once). A hundred of these cost far less CPU than a
//! hundred ffmpeg processes, which matters when they share the cores with the node measured.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use hivecast_proto::flv::file::{FlvFileReader, FlvTag, TAG_AUDIO, TAG_VIDEO};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;

/// The tags of an FLV file.
pub fn read_flv(path: &std::path::Path) -> anyhow::Result<Vec<FlvTag>> {
    let b = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    FlvFileReader::new(Bytes::from(b))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", path.display()))
}

/// A sequence header (AVC decoder configuration or AAC AudioSpecificConfig) or script data:
/// sent once, not on every loop.
fn is_header(tag: &FlvTag) -> bool {
    match tag.tag_type {
        TAG_VIDEO => tag.data.len() > 1 && tag.data[1] == 0,
        TAG_AUDIO => tag.data.len() > 1 && tag.data[0] >> 4 == 10 && tag.data[1] == 0,
        _ => true,
    }
}

/// A publishing RTMP session.
pub struct RtmpPublisher {
    session: ClientSession,
    wr: OwnedWriteHalf,
    reader: tokio::task::JoinHandle<()>,
}

impl RtmpPublisher {
    /// Handshake, `connect` to app `live`, `publish` `key`. Fails with the server's status
    /// code (e.g. a refusal) or when the server closes the connection.
    pub async fn connect(
        addr: &str,
        key: &str,
        timeout: Duration,
    ) -> anyhow::Result<RtmpPublisher> {
        tokio::time::timeout(timeout, Self::connect_inner(addr, key))
            .await
            .with_context(|| format!("publishing to {addr} timed out"))?
    }

    async fn connect_inner(addr: &str, key: &str) -> anyhow::Result<RtmpPublisher> {
        let mut sock = TcpStream::connect(addr).await?;
        sock.set_nodelay(true)?;
        let mut hs = Handshake::new(PeerType::Client);
        sock.write_all(&hs.generate_outbound_p0_and_p1()?).await?;
        let mut buf = vec![0u8; 16384];
        let leftover = loop {
            let n = sock.read(&mut buf).await?;
            if n == 0 {
                bail!("server closed during handshake");
            }
            match hs.process_bytes(&buf[..n])? {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    sock.write_all(&response_bytes).await?
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    sock.write_all(&response_bytes).await?;
                    break remaining_bytes;
                }
            }
        };
        let (mut session, initial) = ClientSession::new(ClientSessionConfig::new())?;
        let mut pending: Vec<ClientSessionResult> = initial;
        pending.extend(session.handle_input(&leftover)?);
        pending.push(session.request_connection("live".to_owned())?);
        loop {
            let mut published = false;
            for r in std::mem::take(&mut pending) {
                match r {
                    ClientSessionResult::OutboundResponse(p) => sock.write_all(&p.bytes).await?,
                    ClientSessionResult::RaisedEvent(
                        ClientSessionEvent::ConnectionRequestAccepted,
                    ) => {
                        let r =
                            session.request_publishing(key.to_owned(), PublishRequestType::Live)?;
                        if let ClientSessionResult::OutboundResponse(p) = r {
                            sock.write_all(&p.bytes).await?;
                        }
                    }
                    ClientSessionResult::RaisedEvent(
                        ClientSessionEvent::PublishRequestAccepted,
                    ) => published = true,
                    ClientSessionResult::RaisedEvent(
                        ClientSessionEvent::ConnectionRequestRejected { description },
                    ) => bail!("connect rejected: {description}"),
                    ClientSessionResult::RaisedEvent(
                        ClientSessionEvent::UnhandleableOnStatusCode { code },
                    ) => bail!("publish refused: {code}"),
                    _ => {}
                }
            }
            if published {
                break;
            }
            let n = sock.read(&mut buf).await?;
            if n == 0 {
                bail!("server closed the connection before accepting the publish");
            }
            pending.extend(session.handle_input(&buf[..n])?);
        }
        // Drain the server's bytes (acks, pings) so its writes never block.
        let (mut rd, wr) = sock.into_split();
        let reader = tokio::spawn(async move {
            let mut b = vec![0u8; 4096];
            while rd.read(&mut b).await.is_ok_and(|n| n > 0) {}
        });
        Ok(RtmpPublisher {
            session,
            wr,
            reader,
        })
    }

    /// Send one tag with timestamp `ts_ms`.
    pub async fn send(&mut self, tag: &FlvTag, ts_ms: u32) -> anyhow::Result<()> {
        let ts = RtmpTimestamp::new(ts_ms);
        let r = match tag.tag_type {
            TAG_AUDIO => self
                .session
                .publish_audio_data(tag.data.clone(), ts, false)?,
            TAG_VIDEO => self
                .session
                .publish_video_data(tag.data.clone(), ts, false)?,
            _ => return Ok(()),
        };
        if let ClientSessionResult::OutboundResponse(p) = r {
            self.wr.write_all(&p.bytes).await?;
        }
        Ok(())
    }

    /// Publish `tags` at real-time pace, looping, until `until`; then stop publishing.
    pub async fn play_loop(&mut self, tags: &[FlvTag], until: Instant) -> anyhow::Result<()> {
        let Some(last) = tags.iter().map(|t| t.timestamp_ms).max() else {
            bail!("no tags");
        };
        // One loop lasts the file plus one video frame (the gap after the last frame).
        let frame = video_frame_ms(tags).unwrap_or(33);
        let span = last + frame;
        let start = Instant::now();
        for round in 0u32.. {
            for tag in tags {
                if round > 0 && is_header(tag) {
                    continue;
                }
                let ts = round * span + tag.timestamp_ms;
                let due = start + Duration::from_millis(u64::from(ts));
                if due >= until {
                    return self.stop().await;
                }
                tokio::time::sleep_until(due.into()).await;
                self.send(tag, ts).await?;
            }
        }
        self.stop().await
    }

    /// Write `bytes` as they are (hand-made chunks, for tests of hostile peers).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.wr.write_all(bytes).await?;
        Ok(())
    }

    /// Whether the server closes the connection within `limit`.
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        tokio::time::timeout(limit, &mut self.reader).await.is_ok()
    }

    /// `deleteStream`/`FCUnpublish`, then close.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        for r in self.session.stop_publishing()? {
            if let ClientSessionResult::OutboundResponse(p) = r {
                self.wr.write_all(&p.bytes).await?;
            }
        }
        self.wr.shutdown().await.ok();
        Ok(())
    }
}

impl Drop for RtmpPublisher {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The most common gap between video timestamps.
fn video_frame_ms(tags: &[FlvTag]) -> Option<u32> {
    let ts: Vec<u32> = tags
        .iter()
        .filter(|t| t.tag_type == TAG_VIDEO && !is_header(t))
        .map(|t| t.timestamp_ms)
        .collect();
    let mut counts = std::collections::HashMap::new();
    for w in ts.windows(2) {
        *counts.entry(w[1].saturating_sub(w[0])).or_insert(0u32) += 1;
    }
    counts.into_iter().max_by_key(|(_, c)| *c).map(|(d, _)| d)
}

/// Publish `tags` to `key` in a task until `until`. The task's result says how it ended.
pub fn spawn_publisher(
    addr: String,
    key: String,
    tags: Arc<Vec<FlvTag>>,
    until: Instant,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        let mut p = RtmpPublisher::connect(&addr, &key, Duration::from_secs(10)).await?;
        p.play_loop(&tags, until).await
    })
}

/// Encodes a `seconds`-long test FLV (lavfi `testsrc2` at `size`, e.g. `"640x360"`, 30 fps
/// H.264 with a 1 s GOP and no B-frames, 600 kbit/s, plus a 440 Hz AAC tone) into `dir` with the
/// ffmpeg CLI, for the looping publishers; its path.
pub fn make_flv(dir: &std::path::Path, size: &str, seconds: u32) -> std::path::PathBuf {
    let out = dir.join(format!("src-{size}-{seconds}s.flv"));
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi"])
        .args(["-i", &format!("testsrc2=size={size}:rate=30")])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-bf",
            "0",
            "-g",
            "30",
        ])
        .args([
            "-keyint_min",
            "30",
            "-sc_threshold",
            "0",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-b:v", "600k", "-c:a", "aac", "-b:a", "64k", "-f", "flv"])
        .arg(&out)
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg could not make {}", out.display());
    out
}
